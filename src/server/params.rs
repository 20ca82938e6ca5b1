//! Request-body parsing and the generation knobs shared by speech and chat: OpenAI's sampling
//! fields plus the `higgs tts` extensions clients send through `extra_body` (`top_k`, `seed`,
//! `max_new_tokens`, `ras_win_len`, ...). Every value is checked here and a bad one is a 400
//! naming its field; what passes is in range for the engine.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ApiError;
use super::state::AppState;
use crate::engine::GenerationParams;
use crate::sampling::processors::SamplingParams;

/// A JSON body, with OpenAI-shaped errors: 413 past the route's body limit, 400 for malformed
/// JSON or a field of the wrong type (naming the field where serde does).
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// 413 for an over-limit body, else 400.
pub fn body_error(status: axum::http::StatusCode, text: String) -> ApiError {
    if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(format!("request body too large: {text}"))
    } else {
        ApiError::bad_request(format!("cannot read the request body: {text}"))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let msg = e.to_string();
        // serde names the field in "missing field `x`" / "unknown variant ..., expected".
        let param = msg
            .split('`')
            .nth(1)
            .filter(|_| msg.starts_with("missing field"))
            .map(str::to_string);
        ApiError {
            param,
            code: Some("invalid_json"),
            ..ApiError::bad_request(format!("invalid JSON body: {msg}"))
        }
    })
}

/// Sampling and long-form knobs; all optional, unknown fields are ignored (OpenAI clients send
/// fields of their own).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Knobs {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub top_k: Option<i64>,
    pub seed: Option<i64>,
    pub max_new_tokens: Option<i64>,
    pub ras_win_len: Option<i64>,
    pub ras_win_max_num_repeat: Option<i64>,
}

/// The server's sampling defaults: the serve engine's (temperature 0.7, top-p 0.95, RAS 7/2)
/// with `higgs tts`'s top-k 50.
pub const DEFAULT_TOP_K: usize = 50;

impl Knobs {
    /// Generation settings for one request; `max_tokens` is the endpoint's own length field
    /// (`max_completion_tokens`), which wins over `max_new_tokens`.
    pub fn generation(
        &self,
        st: &AppState,
        max_tokens: Option<i64>,
        stop_tokens: Vec<u32>,
    ) -> Result<GenerationParams, ApiError> {
        let limit = st.cfg.max_new_tokens_limit;
        let (len_param, len) = match max_tokens {
            Some(v) => ("max_completion_tokens", Some(v)),
            None => ("max_new_tokens", self.max_new_tokens),
        };
        let max_new = match len {
            None => st.cfg.default_max_new_tokens.min(limit),
            Some(v) if v >= 1 && (v as u64) <= limit as u64 => v as usize,
            Some(v) => {
                return Err(ApiError::invalid(
                    len_param,
                    format!("{len_param} must be between 1 and {limit}, got {v}"),
                ))
            }
        };
        let mut gen = GenerationParams::new(max_new, stop_tokens);
        let defaults = SamplingParams::default();
        let temperature = match self.temperature {
            None => defaults.temperature,
            Some(t) if (0.0..=2.0).contains(&t) => t as f32,
            Some(t) => {
                return Err(ApiError::invalid(
                    "temperature",
                    format!("temperature must be between 0 and 2, got {t}"),
                ))
            }
        };
        let top_p = match self.top_p {
            None => defaults.top_p,
            Some(p) if p > 0.0 && p <= 1.0 => p as f32,
            Some(p) => {
                return Err(ApiError::invalid(
                    "top_p",
                    format!("top_p must be in (0, 1], got {p}"),
                ))
            }
        };
        let top_k = match self.top_k {
            None => Some(DEFAULT_TOP_K),
            Some(0) => None,
            Some(k) if k > 0 && k <= 1 << 20 => Some(k as usize),
            Some(k) => {
                return Err(ApiError::invalid(
                    "top_k",
                    format!("top_k must be between 0 (off) and {}, got {k}", 1 << 20),
                ))
            }
        };
        gen.sampling = SamplingParams {
            temperature,
            top_k,
            top_p,
        };
        gen.seed = match self.seed {
            None => None,
            Some(s) if s >= 0 => Some(s as u64),
            Some(s) => {
                return Err(ApiError::invalid(
                    "seed",
                    format!("seed must be a non-negative integer, got {s}"),
                ))
            }
        };
        gen.ras_win_len = small(self.ras_win_len, "ras_win_len", 7, 0, 1024)?;
        gen.ras_max_repeat = small(
            self.ras_win_max_num_repeat,
            "ras_win_max_num_repeat",
            2,
            1,
            1024,
        )?;
        Ok(gen)
    }
}

fn small(v: Option<i64>, name: &str, default: usize, lo: i64, hi: i64) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(x) if (lo..=hi).contains(&x) => Ok(x as usize),
        Some(x) => Err(ApiError::invalid(
            name,
            format!("{name} must be between {lo} and {hi}, got {x}"),
        )),
    }
}

/// Refuses user text holding a control token of the vocabulary (or the scene delimiters of
/// the system message): such text would otherwise be encoded as control ids and could end a
/// turn, open an audio segment or rewrite the scene.
pub fn check_user_text(st: &AppState, param: &str, text: &str) -> Result<(), ApiError> {
    let found = st.engines.tokenizer().find_control_token(text).or_else(|| {
        ["<|scene_desc_start|>", "<|scene_desc_end|>"]
            .into_iter()
            .find(|d| text.contains(d))
            .map(str::to_string)
    });
    match found {
        Some(tok) => Err(ApiError::invalid(
            param,
            format!("{param} contains the control token `{tok}`, which user text may not hold"),
        )),
        None => Ok(()),
    }
}

/// The `model` field: absent means the served model; anything else must name it.
pub fn check_model(st: &AppState, model: Option<&str>) -> Result<(), ApiError> {
    match model {
        None => Ok(()),
        Some(m) if m == st.cfg.served_model_name => Ok(()),
        Some(m) => Err(ApiError::not_found(
            Some("model"),
            format!(
                "model `{m}` is not served here; this server serves `{}`",
                st.cfg.served_model_name
            ),
        )),
    }
}
