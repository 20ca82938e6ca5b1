//! `POST /v1/audio/speech`: text to audio in one of OpenAI's response formats, whole, as a
//! chunked audio body (`stream_format: "audio"`), or as SSE events (`stream_format: "sse"`).
//!
//! The request becomes a long-form `higgs tts` request: `voice` picks the reference voices,
//! `instructions` becomes the scene description of the system message (after `scene` when
//! both are given; without either the CLI's default quiet-room scene is used; `scene: ""`
//! gives none), and input longer than `chunk_max_word_num` words is chunked by words unless
//! `chunk_method` says otherwise. A streamed body is the same bytes as the whole one, except
//! the length fields of a WAV or FLAC header, which a stream cannot know (a streamed WAV has
//! one header with unknown sizes, 0xFFFFFFFF).

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;

use super::error::ApiError;
use super::events::{collect, Chunk, Driver, Tracker};
use super::params::{check_model, check_user_text, JsonBody, Knobs};
use super::state::AppState;
use super::voices::{resolve, VoiceParam};
use crate::audio::encode::{encode_all, AudioEncoder, AudioFormat};
use crate::engine::{TtsInput, TtsRequest};
use crate::prompt::{ChunkMethod, Chunking, PromptRequest, VoicePlacement, DEFAULT_SCENE};

#[derive(Deserialize)]
pub struct SpeechRequest {
    model: Option<String>,
    input: Option<String>,
    voice: Option<VoiceParam>,
    instructions: Option<String>,
    response_format: Option<String>,
    speed: Option<f64>,
    stream_format: Option<String>,
    scene: Option<String>,
    chunk_method: Option<String>,
    chunk_max_word_num: Option<i64>,
    chunk_max_num_turns: Option<i64>,
    generation_chunk_buffer_size: Option<i64>,
    ref_audio_in_system_message: Option<bool>,
    #[serde(flatten)]
    knobs: Knobs,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum StreamFormat {
    Whole,
    Audio,
    Sse,
}

pub async fn create(
    State(st): State<Arc<AppState>>,
    body: Result<JsonBody<SpeechRequest>, ApiError>,
) -> Response {
    let mut tracker = Some(Tracker::new(&st, "/v1/audio/speech"));
    let r = match body {
        Ok(JsonBody(req)) => run(&st, req, &mut tracker).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(Reply::Whole(resp)) => resp,
        Ok(Reply::Streamed(driver, format, encoder)) => match format {
            StreamFormat::Sse => sse_response(driver, encoder),
            _ => audio_response(driver, encoder),
        },
        Err(e) => {
            if let Some(t) = tracker.as_mut() {
                t.finish(e.status.as_u16().to_string());
            }
            e.into_response()
        }
    }
}

enum Reply {
    Whole(Response),
    Streamed(Box<Driver>, StreamFormat, AudioEncoder),
}

fn positive(v: Option<i64>, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    match v {
        None => Ok(default),
        Some(x) if x >= 1 && x as u64 <= max as u64 => Ok(x as usize),
        Some(x) => Err(ApiError::invalid(
            name,
            format!("{name} must be between 1 and {max}, got {x}"),
        )),
    }
}

/// A checked speech request, ready for the engine.
pub struct Prepared {
    pub request: TtsRequest,
    format: AudioFormat,
    stream_format: StreamFormat,
    voice_label: String,
}

/// The engine request a speech body asks for, exactly as the handler submits it (also used by
/// `higgs bench serve --http` to run the same work without HTTP).
pub fn prepare_body(st: &AppState, body: &[u8]) -> Result<TtsRequest, ApiError> {
    let req: SpeechRequest = super::params::parse_json(body)?;
    prepare(st, req).map(|p| p.request)
}

/// [`prepare_body`] with the response format the body asks for: what another front end (the
/// Dynamo worker, `deploy/dynamo`) needs to serve a speech body exactly as this server does.
pub fn prepare_body_with_format(
    st: &AppState,
    body: &[u8],
) -> Result<(TtsRequest, AudioFormat), ApiError> {
    let req: SpeechRequest = super::params::parse_json(body)?;
    prepare(st, req).map(|p| (p.request, p.format))
}

async fn run(
    st: &Arc<AppState>,
    req: SpeechRequest,
    tracker: &mut Option<Tracker>,
) -> Result<Reply, ApiError> {
    let p = prepare(st, req)?;
    if let Some(t) = tracker.as_mut() {
        t.voice = p.voice_label.clone();
    }
    let (format, stream_format) = (p.format, p.stream_format);
    let (replica, events) = st.engines.submit_async(p.request).await?;
    // From here the driver holds the tracker (and logs the request when dropped).
    let mut t = tracker
        .take()
        .ok_or_else(|| ApiError::internal("request tracker missing"))?;
    t.replica = Some(replica);
    let mut driver = Driver::new(st, events, t);
    let encoder = AudioEncoder::new(format)?;
    if stream_format != StreamFormat::Whole {
        return Ok(Reply::Streamed(Box::new(driver), stream_format, encoder));
    }
    drop(encoder);
    let out = match collect(&mut driver).await {
        Ok(o) => o,
        Err(e) => {
            driver.tracker.finish(e.status.as_u16().to_string());
            return Err(e);
        }
    };
    let samples = out.samples;
    let bytes = tokio::task::spawn_blocking(move || encode_all(format, &samples))
        .await
        .map_err(|e| ApiError::internal(format!("encoder task: {e}")))??;
    driver.tracker.finish("200");
    Ok(Reply::Whole(
        ([(header::CONTENT_TYPE, format.content_type())], bytes).into_response(),
    ))
}

/// Words for the auto-chunking decision: whitespace-separated words, with each CJK character
/// counted as one (Chinese has no spaces; the chunker itself segments with jieba).
fn word_count(text: &str) -> usize {
    text.split_whitespace()
        .map(|w| {
            let cjk = w
                .chars()
                .filter(|&c| {
                    ('\u{4e00}'..='\u{9fff}').contains(&c) || ('\u{3400}'..='\u{4dbf}').contains(&c)
                })
                .count();
            cjk.max(1)
        })
        .sum()
}

fn prepare(st: &AppState, req: SpeechRequest) -> Result<Prepared, ApiError> {
    check_model(st, req.model.as_deref())?;
    let input = req
        .input
        .as_deref()
        .ok_or_else(|| ApiError::invalid("input", "input (the text to speak) is required"))?;
    if input.trim().is_empty() {
        return Err(ApiError::invalid("input", "input is empty"));
    }
    let n_chars = input.chars().count();
    if n_chars > st.cfg.max_input_chars {
        return Err(ApiError::invalid(
            "input",
            format!(
                "input has {n_chars} characters; this server takes at most {} (--max-input-chars)",
                st.cfg.max_input_chars
            ),
        ));
    }
    check_user_text(st, "input", input)?;
    let format = match req.response_format.as_deref() {
        None => AudioFormat::Mp3,
        Some(f) => AudioFormat::parse(f).map_err(|e| {
            ApiError::invalid(
                "response_format",
                e.to_string()
                    .trim_start_matches("bad request: ")
                    .to_string(),
            )
        })?,
    };
    match req.speed {
        None => {}
        Some(s) if !(0.25..=4.0).contains(&s) => {
            return Err(ApiError::invalid("speed", format!("speed must be between 0.25 and 4.0, got {s}")))
        }
        Some(s) if s != 1.0 => {
            return Err(ApiError::invalid(
                "speed",
                format!("speed {s} is not supported: this server has no pitch-preserving time-stretch, only 1.0"),
            ))
        }
        Some(_) => {}
    }
    let stream_format = match req.stream_format.as_deref() {
        None => StreamFormat::Whole,
        Some("audio") => StreamFormat::Audio,
        Some("sse") => StreamFormat::Sse,
        Some(other) => {
            return Err(ApiError::invalid(
                "stream_format",
                format!("stream_format `{other}`: expected audio or sse"),
            ))
        }
    };
    let mut scene_parts: Vec<String> = Vec::new();
    for (name, v) in [("scene", &req.scene), ("instructions", &req.instructions)] {
        if let Some(t) = v {
            check_user_text(st, name, t)?;
            if t.chars().count() > st.cfg.max_input_chars {
                return Err(ApiError::invalid(
                    name,
                    format!(
                        "{name} is longer than {} characters",
                        st.cfg.max_input_chars
                    ),
                ));
            }
            if !t.trim().is_empty() && t != "empty" {
                scene_parts.push(t.trim().to_string());
            }
        }
    }
    let scene = if scene_parts.is_empty() {
        (req.scene.is_none() && req.instructions.is_none()).then(|| DEFAULT_SCENE.to_string())
    } else {
        Some(scene_parts.join("\n"))
    };
    let voice = resolve(st, "voice", req.voice.as_ref())?;
    let max_word_num = positive(req.chunk_max_word_num, "chunk_max_word_num", 200, 100_000)?;
    let method = match req.chunk_method.as_deref() {
        None if word_count(input) > max_word_num => ChunkMethod::Word,
        None | Some("none") => ChunkMethod::None,
        Some("word") => ChunkMethod::Word,
        Some("speaker") => ChunkMethod::Speaker,
        Some(other) => {
            return Err(ApiError::invalid(
                "chunk_method",
                format!("chunk_method `{other}`: expected none, speaker or word"),
            ))
        }
    };
    let buffer = match req.generation_chunk_buffer_size {
        None => None,
        Some(n) if n >= 0 => Some(n as usize),
        Some(n) => {
            return Err(ApiError::invalid(
                "generation_chunk_buffer_size",
                format!("must be >= 0, got {n}"),
            ))
        }
    };
    let prompt = PromptRequest {
        transcript: input.to_string(),
        scene,
        voices: voice.refs,
        voice_placement: if req.ref_audio_in_system_message == Some(true) {
            VoicePlacement::SystemMessage
        } else {
            VoicePlacement::Turns
        },
        chunking: Chunking {
            method,
            max_word_num,
            max_num_turns: positive(req.chunk_max_num_turns, "chunk_max_num_turns", 1, 10_000)?,
        },
        generation_chunk_buffer_size: buffer,
    };
    let sp = st.engines.tokenizer().special();
    let gen = req
        .knobs
        .generation(st, None, vec![sp.eot_id.0, sp.end_of_text.0])?;
    let mut request = TtsRequest::new(TtsInput::LongForm(prompt), gen);
    request.force_audio = true;
    request.clip_codes = voice.codes;
    Ok(Prepared {
        request,
        format,
        stream_format,
        voice_label: voice.label,
    })
}

/// A chunked audio body. An error mid-stream ends the body early (the client sees a cut
/// chunked transfer, never a hang).
fn audio_response(driver: Box<Driver>, encoder: AudioEncoder) -> Response {
    let format = encoder.format();
    let body = Body::from_stream(encoded_chunks(driver, encoder).map(|r| match r {
        Ok(Piece::Bytes(b)) => Ok(Bytes::from(b)),
        Ok(Piece::Done(_)) => Ok(Bytes::new()),
        Err(e) => Err(std::io::Error::other(e.message)),
    }));
    ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
}

fn sse_response(driver: Box<Driver>, encoder: AudioEncoder) -> Response {
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = Body::from_stream(encoded_chunks(driver, encoder).map(move |r| {
        let ev = match r {
            Ok(Piece::Bytes(b)) => json!({"type": "speech.audio.delta", "audio": b64.encode(b)}),
            Ok(Piece::Done(u)) => json!({
                "type": "speech.audio.done",
                "usage": {
                    "input_tokens": u.prompt_tokens,
                    "output_tokens": u.completion_tokens,
                    "total_tokens": u.prompt_tokens + u.completion_tokens,
                }
            }),
            Err(e) => {
                let mut v = e.body();
                v["type"] = "error".into();
                v
            }
        };
        Ok::<_, std::io::Error>(Bytes::from(format!("data: {ev}\n\n")))
    }));
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

enum Piece {
    Bytes(Vec<u8>),
    Done(crate::engine::Usage),
}

/// Where an encoded stream stands.
enum Progress {
    Running(Box<Driver>, AudioEncoder),
    /// The encoder's tail was sent; `Done` comes next.
    Finishing(Box<Driver>, crate::engine::Usage),
}

/// Encoded bytes as they become ready (empty pieces skipped), then `Done`; after an error,
/// nothing more. The tracker inside the driver logs the outcome when the stream is dropped
/// (a client that disconnects drops it, which also aborts the request in the engine).
fn encoded_chunks(
    driver: Box<Driver>,
    encoder: AudioEncoder,
) -> impl Stream<Item = Result<Piece, ApiError>> + Send {
    stream::unfold(
        Some(Progress::Running(driver, encoder)),
        |state| async move {
            let (mut d, mut enc) = match state? {
                Progress::Running(d, enc) => (d, enc),
                Progress::Finishing(_d, usage) => return Some((Ok(Piece::Done(usage)), None)),
            };
            loop {
                match d.next().await {
                    Ok(Some(Chunk::Audio(pcm))) => match enc.push(&pcm) {
                        Ok(b) if b.is_empty() => continue,
                        Ok(b) => {
                            return Some((Ok(Piece::Bytes(b)), Some(Progress::Running(d, enc))))
                        }
                        Err(err) => {
                            d.tracker.finish("encoder-error");
                            return Some((Err(ApiError::from(err)), None));
                        }
                    },
                    Ok(Some(Chunk::Text(_))) => continue,
                    Ok(Some(Chunk::Done { usage, .. })) => {
                        let tail = match enc.finish() {
                            Ok(b) => b,
                            Err(err) => {
                                d.tracker.finish("encoder-error");
                                return Some((Err(ApiError::from(err)), None));
                            }
                        };
                        d.tracker.finish("200");
                        if tail.is_empty() {
                            return Some((Ok(Piece::Done(usage)), None));
                        }
                        return Some((Ok(Piece::Bytes(tail)), Some(Progress::Finishing(d, usage))));
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        d.tracker.finish(format!("{}-midstream", e.status.as_u16()));
                        return Some((Err(e), None));
                    }
                }
            }
        },
    )
}
