//! `GET /metrics`: Prometheus text exposition of the engine (running and waiting requests, KV
//! blocks, prefix-cache hits) and of the server (time to first audio and inter-chunk gap
//! histograms, generated frames, requests by endpoint and status).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::state::AppState;

/// A cumulative histogram with fixed upper bounds (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    inner: Mutex<HistInner>,
}

#[derive(Default)]
struct HistInner {
    counts: Vec<u64>,
    sum: f64,
    n: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            inner: Mutex::new(HistInner {
                counts: vec![0; bounds.len()],
                ..Default::default()
            }),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Ok(mut h) = self.inner.lock() {
            for (i, &b) in self.bounds.iter().enumerate() {
                if v <= b {
                    h.counts[i] += 1;
                }
            }
            h.sum += v;
            h.n += 1;
        }
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        if let Ok(h) = self.inner.lock() {
            for (b, c) in self.bounds.iter().zip(&h.counts) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.n);
            let _ = writeln!(out, "{name}_sum {}", h.sum);
            let _ = writeln!(out, "{name}_count {}", h.n);
        }
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0,
];

pub struct Metrics {
    pub ttfa: Histogram,
    pub inter_chunk: Histogram,
    pub frames: AtomicU64,
    /// (endpoint, status) -> count.
    by_status: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            ttfa: Histogram::new(LATENCY_BOUNDS),
            inter_chunk: Histogram::new(LATENCY_BOUNDS),
            frames: AtomicU64::new(0),
            by_status: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    pub fn count_request(&self, endpoint: &'static str, status: &str) {
        if let Ok(mut m) = self.by_status.lock() {
            *m.entry((endpoint, status.to_string())).or_default() += 1;
        }
    }
}

pub async fn metrics(State(st): State<Arc<AppState>>) -> impl IntoResponse {
    let s = st.engines.stats();
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, kind: &str, v: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
        );
    };
    gauge(
        "higgs_requests_in_flight",
        "Requests the engine holds (each may run several long-form chunks).",
        "gauge",
        s.requests as f64,
    );
    gauge(
        "higgs_http_requests_in_flight",
        "API requests (speech, chat, voice uploads) whose handler, engine work or response \
         body is still going; the shutdown drain waits for these.",
        "gauge",
        st.active.load(Ordering::SeqCst) as f64,
    );
    gauge(
        "higgs_sequences_running",
        "Sequences scheduled in the running set.",
        "gauge",
        s.running_seqs as f64,
    );
    gauge(
        "higgs_sequences_waiting",
        "Sequences waiting for admission (new or preempted).",
        "gauge",
        s.waiting_seqs as f64,
    );
    gauge(
        "higgs_kv_blocks_total",
        "KV-cache blocks of the pool.",
        "gauge",
        s.kv_blocks_total as f64,
    );
    gauge(
        "higgs_kv_blocks_used",
        "KV-cache blocks held by sequences (cached blocks nobody references count as free).",
        "gauge",
        s.kv_blocks_used as f64,
    );
    gauge(
        "higgs_kv_blocks_cached",
        "KV-cache blocks kept by the prefix cache.",
        "gauge",
        s.kv_blocks_cached as f64,
    );
    gauge(
        "higgs_prefix_cache_queried_blocks_total",
        "Full prompt blocks looked up in the prefix cache.",
        "counter",
        s.prefix.queried_blocks as f64,
    );
    gauge(
        "higgs_prefix_cache_hit_blocks_total",
        "Looked-up blocks found in the prefix cache.",
        "counter",
        s.prefix.hit_blocks as f64,
    );
    gauge(
        "higgs_prefix_cache_hit_rate",
        "hit_blocks / queried_blocks since start.",
        "gauge",
        s.prefix.hit_rate(),
    );
    gauge(
        "higgs_engine_steps_total",
        "Engine steps run.",
        "counter",
        s.engine.steps as f64,
    );
    gauge(
        "higgs_preemptions_total",
        "Sequences preempted (recomputed later) for want of KV blocks.",
        "counter",
        s.sched.preemptions as f64,
    );
    gauge(
        "higgs_generated_frames_total",
        "Codec frames (1/25 s of audio each) sent to clients.",
        "counter",
        st.metrics.frames.load(Ordering::Relaxed) as f64,
    );
    st.metrics.ttfa.render(
        &mut out,
        "higgs_time_to_first_audio_seconds",
        "From request arrival to its first audio chunk.",
    );
    st.metrics.inter_chunk.render(
        &mut out,
        "higgs_inter_chunk_seconds",
        "Gap between consecutive audio chunks of one request.",
    );
    replica_series(&mut out, &st.engines);
    let _ = writeln!(
        out,
        "# HELP higgs_requests_total Finished HTTP requests by endpoint and status.\n# TYPE higgs_requests_total counter"
    );
    if let Ok(m) = st.metrics.by_status.lock() {
        for ((endpoint, status), n) in m.iter() {
            let _ = writeln!(
                out,
                "higgs_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}

/// One per-replica metric: name, help, type, value of replica i.
type Series<'a> = (&'a str, &'a str, &'a str, &'a dyn Fn(usize) -> f64);

/// Per-replica series (label `replica`): the aggregate gauges above sum these.
fn replica_series(out: &mut String, pool: &crate::engine::EnginePool) {
    let stats = pool.replica_stats();
    let counters = pool.replica_counters();
    let series: [Series; 9] = [
        (
            "higgs_replica_up",
            "1 while the replica's engine thread runs.",
            "gauge",
            &|i| f64::from(u8::from(pool.replica_alive(i))),
        ),
        (
            "higgs_replica_requests_in_flight",
            "Requests the replica holds.",
            "gauge",
            &|i| stats[i].requests as f64,
        ),
        (
            "higgs_replica_sequences_running",
            "Sequences running on the replica.",
            "gauge",
            &|i| stats[i].running_seqs as f64,
        ),
        (
            "higgs_replica_sequences_waiting",
            "Sequences waiting on the replica.",
            "gauge",
            &|i| stats[i].waiting_seqs as f64,
        ),
        (
            "higgs_replica_kv_blocks_used",
            "KV blocks held on the replica.",
            "gauge",
            &|i| stats[i].kv_blocks_used as f64,
        ),
        (
            "higgs_replica_prefix_cache_hit_blocks_total",
            "Prefix-cache hits on the replica.",
            "counter",
            &|i| stats[i].prefix.hit_blocks as f64,
        ),
        (
            "higgs_replica_routed_requests_total",
            "Requests the router sent to the replica.",
            "counter",
            &|i| counters[i].routed as f64,
        ),
        (
            "higgs_replica_affinity_hits_total",
            "Requests sent to the replica because it ran their voice before.",
            "counter",
            &|i| counters[i].affinity_hits as f64,
        ),
        (
            "higgs_replica_affinity_misses_total",
            "Voice requests whose replica had no room, sent elsewhere.",
            "counter",
            &|i| counters[i].affinity_misses as f64,
        ),
    ];
    for (name, help, kind, value) in series {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for i in 0..pool.len() {
            let _ = writeln!(out, "{name}{{replica=\"{i}\"}} {}", value(i));
        }
    }
}
