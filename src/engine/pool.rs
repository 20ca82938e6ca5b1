//! Several engines behind one front end: one engine thread per device (or per share of the
//! host's cores), each with its own KV cache and prefix cache, and a router that picks the
//! replica of each request.
//!
//! Routing (the cache-aware policy of SGLang's router and vLLM's prefix-aware routing, reduced
//! to what one process needs): a request that carries a voice prompt goes back to the replica
//! that last ran that voice, whose prefix cache likely still holds its blocks, as long as that
//! replica has room (fewer requests in flight than it runs at once, nobody waiting for KV
//! blocks, and not more than `max_imbalance` requests ahead of the least-loaded replica);
//! otherwise, and for requests without a voice prompt, the least-loaded live replica takes it
//! (ties rotate so idle replicas share the work). A replica whose thread died is skipped;
//! a failure inside one replica fails only the requests it holds.
//! May use: `engine::{handle, output}`.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::handle::{EngineHandle, EngineStats, EventStream};
use super::output::{TtsInput, TtsRequest};
use crate::error::{Error, Result};
use crate::model::Model;
use crate::prompt::VoiceRef;
use crate::tokenizer::TextTokenizer;

/// Voices remembered by the router (least recently routed forgotten first).
const AFFINITY_CAPACITY: usize = 4096;

/// Router options.
#[derive(Clone, Copy, Debug)]
pub struct RouterConfig {
    /// Affinity is kept while the preferred replica has at most this many more requests in
    /// flight than the least-loaded one.
    pub max_imbalance: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig { max_imbalance: 4 }
    }
}

/// Per-replica routing counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaCounters {
    /// Requests sent to this replica.
    pub routed: u64,
    /// Of those, sent here because the replica had run their voice before.
    pub affinity_hits: u64,
    /// Voice-prompt requests that found their replica busy and went elsewhere.
    pub affinity_misses: u64,
}

struct Replica {
    handle: EngineHandle,
    routed: AtomicU64,
    affinity_hits: AtomicU64,
    affinity_misses: AtomicU64,
}

/// A bounded voice -> replica map; the oldest entries go first when it is full.
#[derive(Default)]
struct Affinity {
    map: HashMap<u64, (usize, u64)>,
    clock: u64,
}

impl Affinity {
    fn get(&self, key: u64) -> Option<usize> {
        self.map.get(&key).map(|&(r, _)| r)
    }

    fn set(&mut self, key: u64, replica: usize) {
        self.clock += 1;
        if self.map.len() >= AFFINITY_CAPACITY && !self.map.contains_key(&key) {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, &(_, t))| t)
                .map(|(&k, _)| k)
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(key, (replica, self.clock));
    }
}

/// The engines of one server and their router. Cloneable (shared state).
#[derive(Clone)]
pub struct EnginePool {
    inner: Arc<PoolInner>,
}

struct PoolInner {
    replicas: Vec<Replica>,
    affinity: Mutex<Affinity>,
    cfg: RouterConfig,
    /// Rotates the starting point of least-loaded ties.
    turn: AtomicUsize,
}

impl EnginePool {
    /// A pool over started engines (at least one; all must serve the same model).
    pub fn new(handles: Vec<EngineHandle>, cfg: RouterConfig) -> Result<EnginePool> {
        let first = handles
            .first()
            .ok_or_else(|| Error::Other("an engine pool needs at least one engine".into()))?;
        // ModelConfig has no PartialEq; its Debug form names every field.
        let (cfg0, rate) = (format!("{:?}", first.model().cfg), first.sample_rate());
        for (i, h) in handles.iter().enumerate() {
            if h.sample_rate() != rate || format!("{:?}", h.model().cfg) != cfg0 {
                return Err(Error::Other(format!(
                    "replica {i} serves a different model or codec than replica 0"
                )));
            }
        }
        Ok(EnginePool {
            inner: Arc::new(PoolInner {
                replicas: handles
                    .into_iter()
                    .map(|handle| Replica {
                        handle,
                        routed: AtomicU64::new(0),
                        affinity_hits: AtomicU64::new(0),
                        affinity_misses: AtomicU64::new(0),
                    })
                    .collect(),
                affinity: Mutex::new(Affinity::default()),
                cfg,
                turn: AtomicUsize::new(0),
            }),
        })
    }

    /// A pool of one engine.
    pub fn single(handle: EngineHandle) -> EnginePool {
        EnginePool::new(vec![handle], RouterConfig::default()).expect("one engine")
    }

    pub fn len(&self) -> usize {
        self.inner.replicas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.replicas.is_empty()
    }

    /// Replica `i`'s handle.
    pub fn replica(&self, i: usize) -> &EngineHandle {
        &self.inner.replicas[i].handle
    }

    pub fn tokenizer(&self) -> &Arc<TextTokenizer> {
        self.replica(0).tokenizer()
    }

    pub fn model(&self) -> &Arc<Model> {
        self.replica(0).model()
    }

    pub fn sample_rate(&self) -> usize {
        self.replica(0).sample_rate()
    }

    /// Stats of every replica, in order.
    pub fn replica_stats(&self) -> Vec<EngineStats> {
        self.inner
            .replicas
            .iter()
            .map(|r| r.handle.stats())
            .collect()
    }

    pub fn replica_counters(&self) -> Vec<ReplicaCounters> {
        self.inner
            .replicas
            .iter()
            .map(|r| ReplicaCounters {
                routed: r.routed.load(Ordering::Relaxed),
                affinity_hits: r.affinity_hits.load(Ordering::Relaxed),
                affinity_misses: r.affinity_misses.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Whether replica `i`'s engine thread still runs.
    pub fn replica_alive(&self, i: usize) -> bool {
        self.replica(i).is_alive()
    }

    /// The stats of all replicas summed (counters and gauges alike).
    pub fn stats(&self) -> EngineStats {
        let mut t = EngineStats::default();
        for s in self.replica_stats() {
            t.requests += s.requests;
            t.running_seqs += s.running_seqs;
            t.waiting_seqs += s.waiting_seqs;
            t.kv_blocks_total += s.kv_blocks_total;
            t.kv_blocks_used += s.kv_blocks_used;
            t.kv_blocks_cached += s.kv_blocks_cached;
            t.prefix.queried_blocks += s.prefix.queried_blocks;
            t.prefix.hit_blocks += s.prefix.hit_blocks;
            t.sched.preemptions += s.sched.preemptions;
            t.engine.steps += s.engine.steps;
            t.codec_decode_calls += s.codec_decode_calls;
            t.codec_windows += s.codec_windows;
        }
        t
    }

    /// Which replica a request with this affinity key goes to now (and remember it).
    pub fn route(&self, key: Option<u64>) -> Result<usize> {
        let reps = &self.inner.replicas;
        let loads: Vec<Option<usize>> = reps
            .iter()
            .map(|r| r.handle.is_alive().then(|| r.handle.in_flight()))
            .collect();
        let n = reps.len();
        let start = self.inner.turn.fetch_add(1, Ordering::Relaxed) % n;
        let least = (0..n)
            .map(|k| (start + k) % n)
            .filter_map(|i| loads[i].map(|l| (l, i)))
            .min_by_key(|&(l, _)| l)
            .map(|(_, i)| i)
            .ok_or_else(|| Error::Other("every engine replica has stopped".into()))?;
        let Some(key) = key else {
            reps[least].routed.fetch_add(1, Ordering::Relaxed);
            return Ok(least);
        };
        let mut aff = self
            .inner
            .affinity
            .lock()
            .map_err(|_| Error::Other("router state poisoned".into()))?;
        let chosen = match aff.get(key) {
            Some(p) if p < n && self.has_room(p, &loads, least) => {
                reps[p].affinity_hits.fetch_add(1, Ordering::Relaxed);
                p
            }
            Some(p) if p < n => {
                reps[p].affinity_misses.fetch_add(1, Ordering::Relaxed);
                least
            }
            _ => least,
        };
        aff.set(key, chosen);
        reps[chosen].routed.fetch_add(1, Ordering::Relaxed);
        Ok(chosen)
    }

    /// Replica `p` is alive, can admit another sequence now and is not far ahead of `least`.
    fn has_room(&self, p: usize, loads: &[Option<usize>], least: usize) -> bool {
        let (Some(lp), Some(ll)) = (loads[p], loads[least]) else {
            return false;
        };
        let h = &self.inner.replicas[p].handle;
        lp < h.engine_config().max_num_seqs.min(h.max_queue())
            && h.stats().waiting_seqs == 0
            && lp <= ll.saturating_add(self.inner.cfg.max_imbalance)
    }

    /// Routes and submits a request; returns the replica it runs on and its events. A
    /// replica found stopped at submit time is skipped (the request goes to another).
    pub async fn submit_async(&self, req: TtsRequest) -> Result<(usize, EventStream)> {
        let key = affinity_key(&req);
        let mut last = None;
        for _ in 0..self.len() {
            let r = self.route(key)?;
            match self.replica(r).submit_async(req.clone()).await {
                Err(e) if !self.replica(r).is_alive() => last = Some(e),
                other => return other.map(|s| (r, s)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Other("every engine replica has stopped".into())))
    }

    /// Blocking [`EnginePool::submit_async`].
    pub fn submit(&self, req: TtsRequest) -> Result<(usize, EventStream)> {
        let key = affinity_key(&req);
        let mut last = None;
        for _ in 0..self.len() {
            let r = self.route(key)?;
            match self.replica(r).submit(req.clone()) {
                Err(e) if !self.replica(r).is_alive() => last = Some(e),
                other => return other.map(|s| (r, s)),
            }
        }
        Err(last.unwrap_or_else(|| Error::Other("every engine replica has stopped".into())))
    }

    /// Encodes a clip on the least-loaded replica (the codes are the same on every one).
    pub async fn encode_async(
        &self,
        samples: Vec<f32>,
        sample_rate_hz: u32,
    ) -> Result<Vec<Vec<u32>>> {
        let r = self.route(None)?;
        self.replica(r).encode_async(samples, sample_rate_hz).await
    }

    /// Waits until every replica is idle or `timeout` passes.
    pub fn wait_idle(&self, timeout: std::time::Duration) -> bool {
        let t0 = std::time::Instant::now();
        self.inner
            .replicas
            .iter()
            .all(|r| r.handle.wait_idle(timeout.saturating_sub(t0.elapsed())))
    }
}

/// What makes requests share a cached prefix: the voice prompt (recorded clips with their
/// transcripts, or profile descriptions, plus the scene, which precedes them in the system
/// message), or a collated prompt's audio-in codes. `None`: nothing worth keeping together
/// (the smart voice's system prompt is cached on every replica after its first use).
pub fn affinity_key(req: &TtsRequest) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match &req.input {
        TtsInput::LongForm(p) => {
            if p.voices.is_empty() {
                return None;
            }
            p.scene.hash(&mut h);
            for v in &p.voices {
                match v {
                    VoiceRef::Clip {
                        transcript, clip, ..
                    } => {
                        0u8.hash(&mut h);
                        transcript.hash(&mut h);
                        match req.clip_codes.get(&clip.path) {
                            Some(codes) => codes.hash(&mut h),
                            None => clip.path.hash(&mut h),
                        }
                    }
                    VoiceRef::Profile { description, .. } => {
                        1u8.hash(&mut h);
                        description.hash(&mut h);
                    }
                }
            }
        }
        TtsInput::Collated(m) => {
            // The voice is the first audio of the prompt (a reference clip in a user turn, or
            // the reference's cloning form, an assistant turn holding the clip): its codes and
            // the ids before its placeholder (system prompt, the clip's transcript).
            use crate::prompt::AudioKind;
            let audio_in = m.audio_in.as_deref().unwrap_or(&[]);
            let seg = |kind: AudioKind, i: usize| match kind {
                AudioKind::In => audio_in.get(i),
                AudioKind::Out => m.audio_out.get(i),
            };
            let (before, seg) = match m.placeholders.first() {
                Some(p) => (
                    &m.ids[..p.position.min(m.ids.len())],
                    seg(p.kind, p.kind_index),
                ),
                None => (&[][..], audio_in.first().or(m.audio_out.first())),
            };
            before.hash(&mut h);
            seg?.codes.hash(&mut h);
        }
    }
    Some(h.finish())
}
