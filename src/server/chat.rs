//! `POST /v1/chat/completions` as the reference vLLM image serves it: ChatML messages (text,
//! or content parts with `input_audio` clips, which in an assistant turn are voice-clone
//! references), `modalities`, `audio: {voice, format}`, sampling fields, `stop`,
//! `max_completion_tokens`, `seed`; whole (`message.audio.data` = base64 of the file in
//! `audio.format`, WAV by default) or streamed (SSE chunks whose `delta.audio.data` is base64
//! PCM16 24 kHz mono, whatever `audio.format` says, as the reference streams; then a final
//! usage chunk with `stream_options.include_usage`, then `[DONE]`).
//!
//! `audio.voice` (a preset or custom voice) adds its clone turns (user: transcript, assistant:
//! clip) after the leading system messages. Audio parts in user or system messages are
//! reference audio (`<|AUDIO|>`, embedded).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::events::{collect, finish_reason, Chunk, Driver, Tracker};
use super::params::{check_model, check_user_text, JsonBody, Knobs};
use super::state::{random_id, unix_now, AppState};
use super::voices::{decode_upload, resolve, VoiceParam};
use crate::audio::encode::{encode_all, AudioEncoder, AudioFormat};
use crate::engine::{TtsInput, TtsRequest};
use crate::prompt::{
    serve_model_input, AudioInCodes, AudioItem, AudioSource, Content, GenerationPrompt, Message,
    Role, VoiceRef,
};

#[derive(Deserialize)]
pub struct ChatRequest {
    model: Option<String>,
    messages: Option<Vec<ChatMessage>>,
    modalities: Option<Vec<String>>,
    audio: Option<AudioParam>,
    stop: Option<StopParam>,
    max_completion_tokens: Option<i64>,
    max_tokens: Option<i64>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    n: Option<i64>,
    #[serde(flatten)]
    knobs: Knobs,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<ContentParam>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ContentParam {
    Text(String),
    Parts(Vec<Value>),
}

#[derive(Deserialize)]
struct AudioParam {
    voice: Option<VoiceParam>,
    format: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StopParam {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// Audio the prompt needs, in placeholder order.
enum PendingAudio {
    Bytes(Vec<u8>, String),
    Codes(Vec<Vec<u32>>, String),
}

pub async fn create(
    State(st): State<Arc<AppState>>,
    body: Result<JsonBody<ChatRequest>, ApiError>,
) -> Response {
    let mut tracker = Some(Tracker::new(&st, "/v1/chat/completions"));
    let r = match body {
        Ok(JsonBody(req)) => run(&st, req, &mut tracker).await,
        Err(e) => Err(e),
    };
    match r {
        Ok(resp) => resp,
        Err(e) => {
            if let Some(t) = tracker.as_mut() {
                t.finish(e.status.as_u16().to_string());
            }
            e.into_response()
        }
    }
}

fn chat_format(name: Option<&str>) -> Result<AudioFormat, ApiError> {
    match name.map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None | Some("wav") => Ok(AudioFormat::Wav),
        Some("pcm16") | Some("pcm") => Ok(AudioFormat::Pcm),
        Some(f) => AudioFormat::parse(f).map_err(|_| {
            ApiError::invalid(
                "audio.format",
                format!("audio.format `{f}`: expected wav, mp3, flac, opus, aac or pcm16"),
            )
        }),
    }
}

/// The messages as ChatML, and the audio of each audio part in order.
fn build_messages(
    st: &AppState,
    msgs: &[ChatMessage],
    voice: &[VoiceRef],
    voice_codes: &std::collections::HashMap<std::path::PathBuf, Vec<Vec<u32>>>,
) -> Result<(Vec<Message>, Vec<PendingAudio>, String), ApiError> {
    let mut out = Vec::new();
    let mut audio = Vec::new();
    let mut transcript = String::new();
    // Voice turns go after the leading system messages.
    let lead = msgs
        .iter()
        .take_while(|m| m.role == "system" || m.role == "developer")
        .count();
    for (i, m) in msgs.iter().enumerate() {
        if i == lead {
            for v in voice {
                match v {
                    VoiceRef::Clip {
                        transcript: t,
                        clip,
                        name,
                    } => {
                        out.push(Message::text(Role::User, t.clone()));
                        out.push(Message::audio(Role::Assistant, AudioSource::Raw(Vec::new())));
                        match voice_codes.get(&clip.path) {
                            Some(c) => audio.push(PendingAudio::Codes(c.clone(), name.clone())),
                            None => {
                                let bytes = std::fs::read(&clip.path).map_err(|e| {
                                    ApiError::internal(format!(
                                        "preset voice `{name}`: cannot read {}: {e}",
                                        clip.path.display()
                                    ))
                                })?;
                                audio.push(PendingAudio::Bytes(bytes, format!("voice `{name}`")));
                            }
                        }
                    }
                    VoiceRef::Profile { name, .. } => {
                        return Err(ApiError::unsupported(
                            "audio.voice",
                            format!("`{name}` is a described voice; chat completions take recorded voices (use /v1/audio/speech for described ones)"),
                        ))
                    }
                }
            }
        }
        let param = format!("messages[{i}]");
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::invalid(
                    &format!("{param}.role"),
                    format!("role `{other}`: expected system, user or assistant"),
                ))
            }
        };
        let mut content = Vec::new();
        match &m.content {
            None => {}
            Some(ContentParam::Text(t)) => {
                check_user_text(st, &format!("{param}.content"), t)?;
                content.push(Content::Text(t.clone()));
                if role == Role::User {
                    transcript = t.clone();
                }
            }
            Some(ContentParam::Parts(parts)) => {
                for (j, p) in parts.iter().enumerate() {
                    let pp = format!("{param}.content[{j}]");
                    match p.get("type").and_then(Value::as_str) {
                        Some("text") => {
                            let t = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                                ApiError::invalid(&format!("{pp}.text"), "a text part needs `text`")
                            })?;
                            check_user_text(st, &format!("{pp}.text"), t)?;
                            content.push(Content::Text(t.to_string()));
                            if role == Role::User {
                                transcript = t.to_string();
                            }
                        }
                        Some("input_audio") => {
                            let data = p
                                .pointer("/input_audio/data")
                                .and_then(Value::as_str)
                                .ok_or_else(|| {
                                    ApiError::invalid(
                                        &format!("{pp}.input_audio.data"),
                                        "an input_audio part needs base64 `data`",
                                    )
                                })?;
                            let bytes = base64::engine::general_purpose::STANDARD
                                .decode(data.trim())
                                .map_err(|e| {
                                    ApiError::invalid(
                                        &format!("{pp}.input_audio.data"),
                                        format!("input_audio.data is not base64: {e}"),
                                    )
                                })?;
                            content.push(Content::Audio(AudioSource::Raw(Vec::new())));
                            audio.push(PendingAudio::Bytes(bytes, format!("{pp}.input_audio")));
                        }
                        other => {
                            return Err(ApiError::unsupported(
                                &format!("{pp}.type"),
                                format!(
                                    "content part type {:?} is not supported (text and input_audio are)",
                                    other.unwrap_or("<missing>")
                                ),
                            ))
                        }
                    }
                }
            }
        }
        out.push(Message {
            role,
            recipient: None,
            content,
        });
    }
    Ok((out, audio, transcript))
}

async fn run(
    st: &Arc<AppState>,
    req: ChatRequest,
    tracker: &mut Option<Tracker>,
) -> Result<Response, ApiError> {
    check_model(st, req.model.as_deref())?;
    let msgs = req
        .messages
        .as_deref()
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("messages", "messages must hold at least one message"))?;
    if let Some(n) = req.n.filter(|&n| n != 1) {
        return Err(ApiError::unsupported(
            "n",
            format!("n = {n}: one choice per request is supported"),
        ));
    }
    let want_audio = match &req.modalities {
        None => true,
        Some(m) => {
            if let Some(bad) = m.iter().find(|x| *x != "text" && *x != "audio") {
                return Err(ApiError::invalid(
                    "modalities",
                    format!("modality `{bad}`: expected text or audio"),
                ));
            }
            m.iter().any(|x| x == "audio")
        }
    };
    let format = chat_format(req.audio.as_ref().and_then(|a| a.format.as_deref()))?;
    let voice = resolve(
        st,
        "audio.voice",
        req.audio.as_ref().and_then(|a| a.voice.as_ref()),
    )?;
    if let Some(t) = tracker.as_mut() {
        t.voice = voice.label.clone();
    }
    let tok = st.engines.tokenizer().clone();
    let sp = tok.special();
    let mut stop_ids = vec![sp.eot_id.0, sp.end_of_text.0];
    let stops: Vec<String> = match &req.stop {
        None => vec![],
        Some(StopParam::One(s)) => vec![s.clone()],
        Some(StopParam::Many(v)) => v.clone(),
    };
    for s in &stops {
        let ids = tok
            .encode(s)
            .map_err(|e| ApiError::invalid("stop", e.to_string()))?;
        match ids.as_slice() {
            [id] => {
                if !stop_ids.contains(id) {
                    stop_ids.push(*id);
                }
            }
            _ => {
                return Err(ApiError::unsupported(
                    "stop",
                    format!("stop `{s}` is {} tokens; only single-token stops (e.g. <|eot_id|>, <|audio_eos|>) are supported", ids.len()),
                ))
            }
        }
    }
    let gen = req
        .knobs
        .generation(st, req.max_completion_tokens.or(req.max_tokens), stop_ids)?;
    let (messages, pending, transcript) = build_messages(st, msgs, &voice.refs, &voice.codes)?;
    // Every clip is decoded here and encoded on the engine thread, before the prompt is built.
    let mut items = VecDeque::new();
    for p in pending {
        let item = match p {
            PendingAudio::Codes(codes, label) => AudioItem { label, codes },
            PendingAudio::Bytes(bytes, label) => {
                let (samples, rate) = decode_upload(st, bytes, &label).await?;
                let codes = st.engines.encode_async(samples, rate).await?;
                AudioItem { label, codes }
            }
        };
        items.push_back(item);
    }
    let input = serve_model_input(
        &tok,
        &messages,
        GenerationPrompt::Assistant,
        AudioInCodes::Embed,
        &mut |_src| {
            items
                .pop_front()
                .ok_or_else(|| crate::Error::Other("audio parts and clips out of step".into()))
        },
    )?;
    let mut treq = TtsRequest::new(TtsInput::Collated(input), gen);
    treq.force_audio = want_audio;
    let (replica, events) = st.engines.submit_async(treq).await?;
    let mut t = tracker
        .take()
        .ok_or_else(|| ApiError::internal("request tracker missing"))?;
    t.replica = Some(replica);
    let mut driver = Driver::new(st, events, t);
    let id = random_id("chatcmpl-");
    let created = unix_now();
    let model = st.cfg.served_model_name.clone();
    if req.stream == Some(true) {
        let include_usage = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        return Ok(stream_response(
            driver,
            tok,
            id,
            created,
            model,
            include_usage,
            want_audio,
        ));
    }
    let out = match collect(&mut driver).await {
        Ok(o) => o,
        Err(e) => {
            driver.tracker.finish(e.status.as_u16().to_string());
            return Err(e);
        }
    };
    let text = tok.decode(&out.text_ids, true).unwrap_or_default();
    let mut message = json!({"role": "assistant", "content": text});
    if want_audio {
        let samples = out.samples;
        let bytes = tokio::task::spawn_blocking(move || encode_all(format, &samples))
            .await
            .map_err(|e| ApiError::internal(format!("encoder task: {e}")))??;
        message["audio"] = json!({
            "id": random_id("audio_"),
            "data": base64::engine::general_purpose::STANDARD.encode(bytes),
            "expires_at": created + 3600,
            "transcript": transcript,
        });
    }
    let u = out.usage;
    driver.tracker.finish("200");
    Ok(axum::Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(&out.finish)}],
        "usage": {
            "prompt_tokens": u.prompt_tokens,
            "completion_tokens": u.completion_tokens,
            "total_tokens": u.prompt_tokens + u.completion_tokens,
        },
    }))
    .into_response())
}

/// PCM16 little-endian bytes of samples, through the `pcm` response encoder (frame size 1, so
/// every sample comes out at once; the same clamping as every other format).
fn pcm16(samples: &[f32]) -> Result<Vec<u8>, ApiError> {
    Ok(AudioEncoder::new(AudioFormat::Pcm)?.push(samples)?)
}

struct ChatStream {
    driver: Box<Driver>,
    tok: Arc<crate::tokenizer::TextTokenizer>,
    id: String,
    audio_id: String,
    created: u64,
    model: String,
    include_usage: bool,
    want_audio: bool,
    sent_role: bool,
    /// Events still to send before the stream ends.
    tail: VecDeque<String>,
    done: bool,
}

impl ChatStream {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> String {
        let v = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {v}\n\n")
    }

    async fn next_event(&mut self) -> Option<String> {
        if let Some(e) = self.tail.pop_front() {
            return Some(e);
        }
        if self.done {
            return None;
        }
        if !self.sent_role {
            self.sent_role = true;
            return Some(self.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        loop {
            match self.driver.next().await {
                Ok(Some(Chunk::Audio(pcm))) => {
                    if !self.want_audio {
                        continue;
                    }
                    let bytes = match pcm16(&pcm) {
                        Ok(b) => b,
                        Err(e) => {
                            self.done = true;
                            self.driver.tracker.finish("encoder-error");
                            return Some(format!("data: {}\n\n", e.body()));
                        }
                    };
                    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
                    return Some(
                        self.chunk(json!({"audio": {"id": self.audio_id, "data": data}}), None),
                    );
                }
                Ok(Some(Chunk::Text(ids))) => {
                    let text = self.tok.decode(&ids, true).unwrap_or_default();
                    if text.is_empty() {
                        continue;
                    }
                    return Some(self.chunk(json!({"content": text}), None));
                }
                Ok(Some(Chunk::Done { finish, usage })) => {
                    self.done = true;
                    self.driver.tracker.finish("200");
                    let last = self.chunk(json!({}), Some(finish_reason(&finish)));
                    if self.include_usage {
                        let v = json!({
                            "id": self.id,
                            "object": "chat.completion.chunk",
                            "created": self.created,
                            "model": self.model,
                            "choices": [],
                            "usage": {
                                "prompt_tokens": usage.prompt_tokens,
                                "completion_tokens": usage.completion_tokens,
                                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                            },
                        });
                        self.tail.push_back(format!("data: {v}\n\n"));
                    }
                    self.tail.push_back("data: [DONE]\n\n".into());
                    return Some(last);
                }
                Ok(None) => {
                    self.done = true;
                    return self.tail.pop_front();
                }
                Err(e) => {
                    self.done = true;
                    self.driver
                        .tracker
                        .finish(format!("{}-midstream", e.status.as_u16()));
                    return Some(format!("data: {}\n\n", e.body()));
                }
            }
        }
    }
}

fn stream_response(
    driver: Driver,
    tok: Arc<crate::tokenizer::TextTokenizer>,
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    want_audio: bool,
) -> Response {
    let s = ChatStream {
        driver: Box::new(driver),
        tok,
        id,
        audio_id: random_id("audio_"),
        created,
        model,
        include_usage,
        want_audio,
        sent_role: false,
        tail: VecDeque::new(),
        done: false,
    };
    let body = stream::unfold(s, |mut s| async move {
        let e = s.next_event().await?;
        Some((Ok::<_, std::io::Error>(Bytes::from(e)), s))
    })
    .boxed();
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
