//! `/v1/audio/voices`: create (multipart upload of a clip, or a described voice), list,
//! retrieve, delete; and the voice resolution every generating endpoint shares.
//!
//! A `voice` names, in this order: a custom voice id (`voice_...`), a preset of
//! `--voices-dir` (`NAME`, `profile:NAME`), a custom voice by name (the newest), or the smart
//! voice (`smart`, empty, or one of OpenAI's built-in names such as `alloy` when no preset has
//! that name: the model picks a voice, as `higgs tts` without `--voice`). A comma-separated
//! list gives one voice per `[SPEAKERn]` tag.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::events::Tracker;
use super::params::{body_error, check_user_text, parse_json};
use super::state::{random_id, unix_now, AppState};
use super::voice_store::{CustomVoice, VoiceKind};
use crate::audio::decode::decode_bytes;
use crate::prompt::system::resampled_len;
use crate::prompt::{AudioClip, VoiceRef};

/// Largest `audio_sample` accepted (OpenAI's limit).
pub const MAX_SAMPLE_BYTES: usize = 10 << 20;

/// OpenAI's built-in voice names: the smart voice here unless a preset has the name.
const OPENAI_VOICES: [&str; 13] = [
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];

/// A request's `voice`: a name, or `{"id": ...}`.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum VoiceParam {
    Name(String),
    Id { id: String },
}

/// What a request speaks with.
#[derive(Clone, Debug, Default)]
pub struct Resolved {
    /// Empty: the smart voice.
    pub refs: Vec<VoiceRef>,
    /// Codes of custom voices, by the clip path of their `VoiceRef`.
    pub codes: HashMap<PathBuf, Vec<Vec<u32>>>,
    /// For the log line.
    pub label: String,
}

pub fn resolve(
    st: &AppState,
    param: &str,
    voice: Option<&VoiceParam>,
) -> Result<Resolved, ApiError> {
    let mut out = Resolved {
        label: "smart".into(),
        ..Default::default()
    };
    let names: Vec<&str> = match voice {
        None => return Ok(out),
        Some(VoiceParam::Id { id }) => vec![id.as_str()],
        Some(VoiceParam::Name(n)) => n.split(',').map(str::trim).collect(),
    };
    if names.len() == 1 && is_smart(st, names[0]) {
        return Ok(out);
    }
    for name in &names {
        resolve_one(st, param, name, &mut out)?;
    }
    out.label = names.join(",");
    Ok(out)
}

fn is_smart(st: &AppState, name: &str) -> bool {
    let name = name.trim();
    name.is_empty() || name == "smart" || (OPENAI_VOICES.contains(&name) && !is_preset(st, name))
}

fn resolve_one(st: &AppState, param: &str, name: &str, out: &mut Resolved) -> Result<(), ApiError> {
    if let Some(v) = st.voices.get(name) {
        push_custom(st, v, out);
        return Ok(());
    }
    if let Some(lib) = st.presets.as_ref().filter(|_| is_preset(st, name)) {
        {
            let r = lib.resolve(name).map_err(|e| {
                ApiError::internal(format!("preset voice `{name}` cannot be read: {e}"))
            })?;
            out.refs.push(r);
            return Ok(());
        }
    }
    if let Some(v) = st.voices.by_name(name) {
        push_custom(st, v, out);
        return Ok(());
    }
    Err(ApiError::not_found(
        Some(param),
        format!("voice `{name}` is neither a preset nor a custom voice (GET /v1/audio/voices lists them)"),
    ))
}

fn push_custom(st: &AppState, v: CustomVoice, out: &mut Resolved) {
    match v.kind {
        VoiceKind::AudioSample {
            transcript,
            codes,
            n_samples_24k,
            ..
        } => {
            let path = st.voices.path_of(&v.id);
            out.codes.insert(path.clone(), codes);
            out.refs.push(VoiceRef::Clip {
                name: v.name,
                transcript,
                clip: AudioClip {
                    path,
                    n_samples_24k,
                },
            });
        }
        VoiceKind::Prompt { prompt } => out.refs.push(VoiceRef::Profile {
            name: v.name,
            description: prompt,
        }),
    }
}

/// Whether `--voices-dir` has a voice of this name.
fn is_preset(st: &AppState, name: &str) -> bool {
    st.presets
        .as_ref()
        .is_some_and(|p| p.names().iter().any(|n| n == name))
}

fn preset_object(name: &str) -> Value {
    json!({"object": "audio.voice", "id": name, "name": name, "type": "preset"})
}

pub async fn list(State(st): State<Arc<AppState>>) -> Json<Value> {
    let mut data: Vec<Value> = Vec::new();
    if let Some(lib) = &st.presets {
        data.extend(lib.names().iter().map(|n| preset_object(n)));
    }
    data.extend(st.voices.list().iter().map(CustomVoice::object));
    Json(json!({"object": "list", "data": data}))
}

pub async fn retrieve(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if let Some(v) = st.voices.get(&id) {
        return Ok(Json(v.object()));
    }
    if is_preset(&st, &id) {
        return Ok(Json(preset_object(&id)));
    }
    Err(ApiError::not_found(
        Some("voice_id"),
        format!("no voice `{id}`"),
    ))
}

pub async fn delete(
    State(st): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let st2 = st.clone();
    let id2 = id.clone();
    let removed = tokio::task::spawn_blocking(move || st2.voices.remove(&id2))
        .await
        .map_err(|e| ApiError::internal(format!("voice delete task: {e}")))??;
    if removed {
        return Ok(Json(
            json!({"id": id, "deleted": true, "object": "audio.voice.deleted"}),
        ));
    }
    if is_preset(&st, &id) {
        return Err(ApiError::invalid(
            "voice_id",
            format!("`{id}` is a preset of --voices-dir, which the server does not change"),
        ));
    }
    Err(ApiError::not_found(
        Some("voice_id"),
        format!("no custom voice `{id}`"),
    ))
}

/// The fields of a create request, from multipart or JSON.
#[derive(Default, Deserialize)]
struct CreateFields {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    prompt: Option<String>,
    transcript: Option<String>,
    consent: Option<String>,
    #[serde(skip)]
    audio_sample: Option<Vec<u8>>,
}

async fn read_multipart(req: Request, st: &Arc<AppState>) -> Result<CreateFields, ApiError> {
    let mut mp = Multipart::from_request(req, st)
        .await
        .map_err(|e| body_error(e.status(), e.body_text()))?;
    let mut f = CreateFields::default();
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| body_error(e.status(), e.body_text()))?
    {
        let name = field.name().unwrap_or("").to_string();
        let bytes = field
            .bytes()
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        if name == "audio_sample" {
            if bytes.len() > MAX_SAMPLE_BYTES {
                return Err(ApiError::too_large(format!(
                    "audio_sample is {} bytes; at most {MAX_SAMPLE_BYTES} are accepted",
                    bytes.len()
                )));
            }
            f.audio_sample = Some(bytes.to_vec());
            continue;
        }
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::invalid(&name, format!("form field `{name}` is not UTF-8")))?;
        match name.as_str() {
            "name" => f.name = Some(text),
            "type" => f.kind = Some(text),
            "prompt" => f.prompt = Some(text),
            "transcript" => f.transcript = Some(text),
            "consent" => f.consent = Some(text),
            _ => {} // model, script_hint, ...: not used here.
        }
    }
    Ok(f)
}

pub async fn create(
    State(st): State<Arc<AppState>>,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let mut tracker = Tracker::new(&st, "/v1/audio/voices");
    let r = create_inner(&st, req).await;
    match &r {
        Ok(v) => {
            tracker.voice = v["id"].as_str().unwrap_or("-").to_string();
            tracker.finish("200");
        }
        Err(e) => tracker.finish(e.status.as_u16().to_string()),
    }
    r.map(Json)
}

async fn create_inner(st: &Arc<AppState>, req: Request) -> Result<Value, ApiError> {
    let ctype = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let f = if ctype.starts_with("multipart/form-data") {
        read_multipart(req, st).await?
    } else if ctype.starts_with("application/json") {
        let bytes = axum::body::Bytes::from_request(req, st)
            .await
            .map_err(|e| body_error(e.status(), e.body_text()))?;
        parse_json::<CreateFields>(&bytes)?
    } else {
        return Err(ApiError::bad_request(format!(
            "Content-Type `{ctype}`: send multipart/form-data (or JSON for type=prompt)"
        )));
    };
    let name = f
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("name", "name is required"))?
        .to_string();
    if name.chars().count() > 256 || name.contains(',') {
        return Err(ApiError::invalid(
            "name",
            "name must be at most 256 characters and hold no comma",
        ));
    }
    let kind = f
        .kind
        .as_deref()
        .unwrap_or("audio_sample")
        .trim()
        .to_string();
    let kind = match kind.as_str() {
        "prompt" => {
            let prompt = f
                .prompt
                .as_deref()
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid("prompt", "type=prompt needs a non-empty prompt")
                })?;
            check_user_text(st, "prompt", prompt)?;
            if prompt.chars().count() > st.cfg.max_input_chars {
                return Err(ApiError::invalid(
                    "prompt",
                    format!(
                        "prompt is longer than {} characters",
                        st.cfg.max_input_chars
                    ),
                ));
            }
            VoiceKind::Prompt {
                prompt: prompt.to_string(),
            }
        }
        "audio_sample" => {
            let audio = f.audio_sample.ok_or_else(|| {
                ApiError::invalid(
                    "audio_sample",
                    "audio_sample (a wav, mp3, flac or ogg file) is required",
                )
            })?;
            let transcript = f
                .transcript
                .as_deref()
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "transcript",
                        "transcript (the words spoken in audio_sample) is required to clone a voice",
                    )
                })?
                .to_string();
            check_user_text(st, "transcript", &transcript)?;
            if transcript.chars().count() > st.cfg.max_input_chars {
                return Err(ApiError::invalid(
                    "transcript",
                    format!(
                        "transcript is longer than {} characters",
                        st.cfg.max_input_chars
                    ),
                ));
            }
            let (samples, rate) = decode_upload(st, audio, "audio_sample").await?;
            let n_samples_24k = resampled_len(samples.len(), rate);
            let codes = st.engines.encode_async(samples, rate).await?;
            VoiceKind::AudioSample {
                transcript,
                codes,
                n_samples_24k,
                consent: f.consent,
            }
        }
        other => {
            return Err(ApiError::invalid(
                "type",
                format!("type `{other}`: expected audio_sample or prompt"),
            ))
        }
    };
    let voice = CustomVoice {
        id: random_id("voice_"),
        name,
        created_at: unix_now(),
        kind,
    };
    let obj = voice.object();
    let st2 = st.clone();
    tokio::task::spawn_blocking(move || st2.voices.insert(voice))
        .await
        .map_err(|e| ApiError::internal(format!("voice store task: {e}")))??;
    Ok(obj)
}

/// Decodes uploaded or inlined audio (any supported container) under the server's clip limits,
/// off the async threads. Returns mono samples and their rate.
pub async fn decode_upload(
    st: &AppState,
    bytes: Vec<u8>,
    param: &str,
) -> Result<(Vec<f32>, u32), ApiError> {
    let limits = st.cfg.clip_limits.clone();
    let w = tokio::task::spawn_blocking(move || decode_bytes(&bytes, &limits))
        .await
        .map_err(|e| ApiError::internal(format!("audio decode task: {e}")))?
        .map_err(|e| ApiError {
            param: Some(param.to_string()),
            code: Some("invalid_audio"),
            ..ApiError::bad_request(format!("{param}: {e}"))
        })?;
    if w.samples.is_empty() {
        return Err(ApiError::invalid(
            param,
            format!("{param} holds no audio samples"),
        ));
    }
    Ok((w.samples, w.sample_rate_hz))
}
