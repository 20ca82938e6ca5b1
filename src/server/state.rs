//! What every handler sees: the engine replicas, the voices, the limits and the metrics.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::metrics::Metrics;
use super::voice_store::VoiceStore;
use crate::audio::decode::DecodeLimits;
use crate::engine::EnginePool;
use crate::prompt::VoiceLibrary;

/// Server options (the `higgs serve` flags that are not about loading).
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The model name clients send and `/v1/models` lists.
    pub served_model_name: String,
    /// Required `Authorization: Bearer` key of every `/v1` route, when set.
    pub api_key: Option<String>,
    /// Largest JSON request body (speech, chat with base64 audio), bytes; larger gets 413.
    pub max_body_bytes: usize,
    /// Longest `input` of a speech request, in characters (Unicode scalar values).
    pub max_input_chars: usize,
    /// Decode limits of uploaded or inlined audio (rate range, clip seconds).
    pub clip_limits: DecodeLimits,
    /// Generation steps per long-form chunk when the request does not say.
    pub default_max_new_tokens: usize,
    /// Largest `max_new_tokens` / `max_completion_tokens` a request may ask for.
    pub max_new_tokens_limit: usize,
    /// Wall-clock limit of one request (queueing included); past it the request is aborted.
    pub request_timeout: Duration,
    /// After SIGTERM / ctrl-c: how long requests in flight may still run.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            served_model_name: "higgs-audio-v2".into(),
            api_key: None,
            max_body_bytes: 32 << 20,
            max_input_chars: 4096,
            clip_limits: DecodeLimits {
                max_seconds: 60.0,
                ..DecodeLimits::default()
            },
            default_max_new_tokens: 2048,
            max_new_tokens_limit: 8192,
            request_timeout: Duration::from_secs(600),
            shutdown_timeout: Duration::from_secs(30),
        }
    }
}

pub struct AppState {
    /// The engine replicas and their router (one replica unless `--replicas`/`--devices`).
    pub engines: EnginePool,
    pub cfg: ServerConfig,
    /// Preset voices (`--voices-dir`), read-only.
    pub presets: Option<VoiceLibrary>,
    /// Custom voices (`POST /v1/audio/voices`), persisted under `--voices-store` when given.
    pub voices: VoiceStore,
    pub metrics: Metrics,
    /// Set on shutdown: new work gets 503.
    pub draining: AtomicBool,
    /// HTTP requests whose engine work or response body is still going.
    pub active: AtomicUsize,
    next_id: AtomicU64,
    pub started_unix: u64,
}

impl AppState {
    pub fn new(
        engines: EnginePool,
        cfg: ServerConfig,
        presets: Option<VoiceLibrary>,
        voices: VoiceStore,
    ) -> Self {
        AppState {
            engines,
            cfg,
            presets,
            voices,
            metrics: Metrics::default(),
            draining: AtomicBool::new(false),
            active: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
            started_unix: unix_now(),
        }
    }

    /// A fresh request number for ids and log lines.
    pub fn next_request(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }

    /// No request is running (its engine work or its body).
    pub fn idle(&self) -> bool {
        self.active.load(Ordering::SeqCst) == 0
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `prefix_` + 24 random hex digits (ids of voices, completions, audio).
pub fn random_id(prefix: &str) -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    let n: u128 = rng.gen();
    format!("{prefix}{:024x}", n & ((1u128 << 96) - 1))
}
