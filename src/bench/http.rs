//! `higgs bench serve --http`: what `higgs serve` adds on top of the engine. One speech
//! workload (Poisson arrivals, toy-vocabulary texts, custom voices with random codes reused
//! with `--voice-reuse`, greedy decoding so both runs do the same work) runs twice, each on a
//! fresh engine with the same random weights: submitted straight to the engine handle (the
//! engine request is built by the server's own speech parser), then as HTTP requests to the
//! server on 127.0.0.1 with streamed PCM bodies, one client thread per request. Prints both
//! summary lines and the HTTP/engine ratios of throughput and time to first audio.
//! May use: server, engine, model, bench; anyhow allowed.

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::serve::{checked_ranges, codec, percentile, read_stream, ServeBenchArgs, Trace};
use crate::config::ModelConfig;
use crate::engine::{EngineConfig, EngineHandle, EngineParts, HandleConfig};
use crate::model::{Model, ModelWeights};
use crate::server::voice_store::{CustomVoice, VoiceKind};
use crate::server::{AppState, ServerConfig, VoiceStore};
use crate::tensor::{DType, Device};
use crate::tokenizer::TextTokenizer;

const TOY_WORDS: [&str; 12] = [
    "The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "by", "sea", "shore",
];

fn toy_tokenizer() -> crate::Result<TextTokenizer> {
    TextTokenizer::from_bytes(include_bytes!("../../tests/fixtures/toy-tokenizer.json"))
}

/// The shape's config with the toy tokenizer's special-token ids, so that prompts built from
/// text (as the server builds them) use the ids the model expects.
fn config_for(shape: &str, tok: &TextTokenizer) -> anyhow::Result<ModelConfig> {
    let mut cfg = super::shape_config(shape)?;
    let sp = tok.special();
    cfg.bos_token = sp.begin_of_text.0;
    cfg.eos_token = sp.end_of_text.0;
    cfg.pad_token = sp.end_of_text.0;
    cfg.audio_in_token = sp.audio_in.0;
    cfg.audio_out_token = sp.audio_out.0;
    cfg.audio_out_bos_token = sp.audio_out_bos.0;
    cfg.audio_eos_token = sp.audio_eos.0;
    Ok(cfg)
}

/// A fresh engine and server state with `voices` custom voices.
fn state(
    shape: &str,
    cfg: &ModelConfig,
    dtype: DType,
    device: &Device,
    a: &ServeBenchArgs,
    voices: &[CustomVoice],
) -> anyhow::Result<Arc<AppState>> {
    let block_size = 16;
    let engine_cfg = EngineConfig {
        num_blocks: a.kv_positions.div_ceil(block_size),
        block_size,
        max_num_batched_tokens: a.max_num_batched_tokens,
        max_num_seqs: a.max_num_seqs,
        prefix_caching: !a.no_prefix_cache,
    };
    let (cfg2, dev) = (cfg.clone(), device.clone());
    let released = shape == "real";
    let handle = EngineHandle::spawn(
        move || {
            let w = ModelWeights::random_on(&cfg2, dtype, 1234, 0.02, &dev)?;
            let codec = codec(released, &dev).map_err(|e| crate::Error::Other(e.to_string()))?;
            Ok(EngineParts {
                model: Arc::new(Model::new(cfg2, w)),
                codec,
                tokenizer: Arc::new(toy_tokenizer()?),
                config: engine_cfg,
            })
        },
        HandleConfig {
            max_queue: a.requests + 1,
        },
    )
    .context("starting the engine")?;
    let store = VoiceStore::in_memory();
    for v in voices {
        store.insert(v.clone())?;
    }
    let server_cfg = ServerConfig {
        served_model_name: "bench".into(),
        max_new_tokens_limit: 1 << 20,
        ..ServerConfig::default()
    };
    Ok(Arc::new(AppState::new(
        crate::engine::EnginePool::single(handle),
        server_cfg,
        None,
        store,
    )))
}

/// Reads a streamed PCM body as a player would (see `serve::read_stream`).
fn read_http(base: &str, body: String, sent: Instant, rate: f64) -> Trace {
    let mut t = Trace::default();
    let agent = ureq::Agent::new_with_config(
        ureq::config::Config::builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3600)))
            .build(),
    );
    let resp = agent
        .post(format!("{base}/v1/audio/speech"))
        .header("Content-Type", "application/json")
        .send(body.as_bytes());
    let resp = match resp {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => {
            eprintln!("request failed: HTTP {}", r.status());
            return t;
        }
        Err(e) => {
            eprintln!("request failed: {e}");
            return t;
        }
    };
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut first: Option<Instant> = None;
    let mut delivered_s = 0.0;
    let mut bytes = 0usize;
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = Instant::now();
                match first {
                    None => {
                        first = Some(now);
                        t.ttfa_s = Some((now - sent).as_secs_f64());
                    }
                    Some(f0) => {
                        if (now - f0).as_secs_f64() > delivered_s {
                            t.underruns += 1;
                        }
                    }
                }
                bytes += n;
                delivered_s += n as f64 / 2.0 / rate;
            }
            Err(e) => {
                eprintln!("request failed mid-body: {e}");
                return t;
            }
        }
    }
    t.samples = bytes / 2;
    t.frames = t.samples / 960;
    t.ok = true;
    t
}

struct Summary {
    ok: usize,
    audio_s_per_s: f64,
    frames_per_s: f64,
    ttfa_p50_ms: f64,
    ttfa_p99_ms: f64,
    underruns: usize,
}

fn summarize(traces: &[Trace], wall: f64, rate: f64) -> Summary {
    let samples: usize = traces.iter().map(|t| t.samples).sum();
    let mut ttfa: Vec<f64> = traces.iter().filter_map(|t| t.ttfa_s).collect();
    Summary {
        ok: traces.iter().filter(|t| t.ok).count(),
        audio_s_per_s: samples as f64 / rate / wall,
        frames_per_s: samples as f64 / 960.0 / wall,
        ttfa_p50_ms: percentile(&mut ttfa, 0.5) * 1e3,
        ttfa_p99_ms: percentile(&mut ttfa, 0.99) * 1e3,
        underruns: traces.iter().map(|t| t.underruns).sum(),
    }
}

fn print(label: &str, n: usize, s: &Summary) {
    println!(
        "serve bench ({label}): {}/{n} requests, {:.1} frames/s, {:.2} audio-s/s, TTFA p50 {:.1} ms p99 {:.1} ms, underruns {}",
        s.ok, s.frames_per_s, s.audio_s_per_s, s.ttfa_p50_ms, s.ttfa_p99_ms, s.underruns
    );
}

/// Sends each item at its Poisson arrival time (`gaps` apart) on a thread of its own, which
/// runs `client(item, sent)`; waits for all and summarises.
fn open_loop<T: Send + 'static>(
    items: Vec<T>,
    gaps: &[f64],
    rate: f64,
    client: impl Fn(T, Instant) -> Trace + Send + Sync + Clone + 'static,
) -> Summary {
    let start = Instant::now();
    let mut threads = Vec::new();
    let mut due = 0.0;
    for (item, gap) in items.into_iter().zip(gaps) {
        due += gap;
        wait_until(start, due);
        let sent = Instant::now();
        let c = client.clone();
        threads.push(std::thread::spawn(move || c(item, sent)));
    }
    let traces: Vec<Trace> = threads
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    summarize(&traces, start.elapsed().as_secs_f64(), rate)
}

/// Sleeps until `due` seconds after `start`.
fn wait_until(start: Instant, due: f64) {
    let wait = due - start.elapsed().as_secs_f64();
    if wait > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(wait));
    }
}

pub fn run(shape: &str, dtype: DType, device: Device, a: &ServeBenchArgs) -> anyhow::Result<()> {
    let ((t_lo, t_hi), (f_lo, f_hi)) = checked_ranges(a)?;
    let tok = toy_tokenizer()?;
    let cfg = config_for(shape, &tok)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let voice_frames = (a.voice_seconds * 25.0).round() as usize;
    let voices: Vec<CustomVoice> = (0..a.voices)
        .filter(|_| voice_frames > 0)
        .map(|i| CustomVoice {
            id: format!("voice_{:04x}", i + 1),
            name: format!("bench{i}"),
            created_at: 0,
            kind: VoiceKind::AudioSample {
                transcript: "The baker opens the shop.".into(),
                codes: (0..cfg.n_codebooks)
                    .map(|_| {
                        (0..voice_frames)
                            .map(|_| rng.gen_range(0..cfg.codebook_size as u32))
                            .collect()
                    })
                    .collect(),
                n_samples_24k: voice_frames * 960,
                consent: None,
            },
        })
        .collect();
    let bodies: Vec<String> = (0..a.requests)
        .map(|i| {
            let n = rng.gen_range(t_lo..=t_hi).max(1);
            let text: Vec<&str> = (0..n)
                .map(|_| TOY_WORDS[rng.gen_range(0..TOY_WORDS.len())])
                .collect();
            let voice = if !voices.is_empty() && rng.gen_bool(a.voice_reuse) {
                json!({"id": voices[rng.gen_range(0..voices.len())].id})
            } else {
                json!("smart")
            };
            let frames = rng.gen_range(f_lo..=f_hi);
            json!({
                "input": text.join(" "),
                "voice": voice,
                "scene": "",
                "response_format": "pcm",
                "stream_format": "audio",
                "temperature": 0,
                "ras_win_len": 0,
                "max_new_tokens": frames + cfg.n_codebooks + 1,
                "seed": i,
            })
            .to_string()
        })
        .collect();
    let gaps: Vec<f64> = (0..a.requests)
        .map(|_| -(1.0 - rng.gen::<f64>()).ln() / a.rate)
        .collect();

    let mut ratios = Vec::new();
    let mut d50 = Vec::new();
    let mut d99 = Vec::new();
    let mut failed = 0;
    for round in 0..a.repeats.max(1) {
        // Alternate the order so drift of the machine does not favour one side.
        let (engine, http) = if round % 2 == 0 {
            let e = run_engine(shape, &cfg, dtype, &device, a, &voices, &bodies, &gaps)?;
            let h = run_http(shape, &cfg, dtype, &device, a, &voices, &bodies, &gaps)?;
            (e, h)
        } else {
            let h = run_http(shape, &cfg, dtype, &device, a, &voices, &bodies, &gaps)?;
            let e = run_engine(shape, &cfg, dtype, &device, a, &voices, &bodies, &gaps)?;
            (e, h)
        };
        print("engine handle", a.requests, &engine);
        print("HTTP server", a.requests, &http);
        ratios.push(http.audio_s_per_s / engine.audio_s_per_s);
        d50.push(http.ttfa_p50_ms - engine.ttfa_p50_ms);
        d99.push(http.ttfa_p99_ms - engine.ttfa_p99_ms);
        failed += 2 * a.requests - engine.ok - http.ok;
    }
    println!(
        "serve bench: HTTP/engine over {} rounds (median): throughput {:.3}x, TTFA p50 {:+.1} ms, p99 {:+.1} ms",
        ratios.len(),
        percentile(&mut ratios, 0.5),
        percentile(&mut d50, 0.5),
        percentile(&mut d99, 0.5),
    );
    if failed > 0 {
        bail!("{failed} requests failed");
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn run_engine(
    shape: &str,
    cfg: &ModelConfig,
    dtype: DType,
    device: &Device,
    a: &ServeBenchArgs,
    voices: &[CustomVoice],
    bodies: &[String],
    gaps: &[f64],
) -> anyhow::Result<Summary> {
    let st = state(shape, cfg, dtype, device, a, voices)?;
    let rate = st.engines.sample_rate() as f64;
    let requests = bodies
        .iter()
        .map(|b| crate::server::speech::prepare_body(&st, b.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("building the workload: {e}"))?;
    let engines = st.engines.clone();
    Ok(open_loop(requests, gaps, rate, move |req, sent| {
        // Submitted from the request's own thread, as concurrent HTTP handlers submit.
        match engines.submit(req) {
            Ok((_, s)) => read_stream(s, sent, rate),
            Err(e) => {
                eprintln!("submit failed: {e}");
                Trace::default()
            }
        }
    }))
}

#[allow(clippy::too_many_arguments)]
fn run_http(
    shape: &str,
    cfg: &ModelConfig,
    dtype: DType,
    device: &Device,
    a: &ServeBenchArgs,
    voices: &[CustomVoice],
    bodies: &[String],
    gaps: &[f64],
) -> anyhow::Result<Summary> {
    let st = state(shape, cfg, dtype, device, a, voices)?;
    let rate = st.engines.sample_rate() as f64;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(crate::server::serve(listener, st.clone(), async move {
        let _ = stop_rx.await;
    }));
    let http = open_loop(bodies.to_vec(), gaps, rate, move |body, sent| {
        read_http(&base, body, sent, rate)
    });
    let _ = stop_tx.send(());
    let _ = rt.block_on(server);
    Ok(http)
}
