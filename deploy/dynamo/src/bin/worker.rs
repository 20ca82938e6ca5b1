//! `higgs-dynamo-worker`: a Higgs Audio engine registered with NVIDIA Dynamo as a speech model
//! (`ModelType::Audios`, text in). Dynamo's OpenAI frontend routes `/v1/audio/speech` across
//! every worker of the model; each request runs exactly as `higgs serve` runs it (the same
//! body parser, voices, limits and engine pool), and its audio goes back as Dynamo speech
//! responses: pcm/wav chunks streamed as they are decoded when the frontend accepts chunks,
//! otherwise (and for mp3/flac/opus/aac, encoded here) one whole file.
//!
//! Discovery and the request plane come from Dynamo's environment (`DYN_DISCOVERY_BACKEND`
//! = etcd (default) / file / kubernetes, `ETCD_ENDPOINTS`, `DYN_FILE_KV`, `DYN_REQUEST_PLANE`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use clap::Parser;
use dynamo_llm::local_model::LocalModelBuilder;
use dynamo_llm::model_type::{ModelInput, ModelType};
use dynamo_llm::protocols::openai::audios::{
    AudioData, NvAudioSpeechResponse, NvCreateAudioSpeechRequest,
};
use dynamo_llm::protocols::Annotated;
use dynamo_llm::worker_type::WorkerType;
use dynamo_runtime::pipeline::network::Ingress;
use dynamo_runtime::pipeline::{
    async_trait, AsyncEngine, AsyncEngineContextProvider, Error, ManyOut, ResponseStream, SingleIn,
};
use dynamo_runtime::{DistributedRuntime, Worker};
use higgs_engine::audio::decode::DecodeLimits;
use higgs_engine::audio::encode::{encode_all, AudioEncoder, AudioFormat};
use higgs_engine::cli::model_flags::ModelFlags;
use higgs_engine::engine::{
    EngineConfig, EngineHandle, EngineParts, EnginePool, HandleConfig, RequestEvent,
};
use higgs_engine::prompt::VoiceLibrary;
use higgs_engine::server::speech::prepare_body_with_format;
use higgs_engine::server::{AppState, ServerConfig, VoiceStore};
use serde_json::{Map, Value};

#[derive(Parser)]
#[command(about = "A Higgs Audio v2 speech worker for NVIDIA Dynamo")]
struct Args {
    /// --model, --audio-tokenizer, --tokenizer, --device, --dtype, --quantization and the
    /// DualFFN research flags, as `higgs serve` takes them.
    #[command(flatten)]
    model: ModelFlags,
    /// Preset voices (NAME.wav + NAME.txt, profile.yaml, or config.json).
    #[arg(long)]
    voices_dir: Option<PathBuf>,
    /// The model name clients send; every worker of one model must use the same name.
    #[arg(long, default_value = "higgs-audio-v2")]
    served_model_name: String,
    /// Dynamo endpoint `namespace.component.endpoint` this worker serves.
    #[arg(long, default_value = "higgs.tts.generate")]
    endpoint: String,
    /// CUDA device of this worker (one worker per GPU).
    #[arg(long, default_value_t = 0)]
    cuda_device: usize,
    #[arg(long, default_value_t = 256)]
    max_num_seqs: usize,
    #[arg(long, default_value_t = 2048)]
    max_num_batched_tokens: usize,
    /// KV cache size in tokens (positions).
    #[arg(long, default_value_t = 65536)]
    max_context: usize,
    /// Requests in flight before new ones are refused.
    #[arg(long, default_value_t = 1024)]
    max_queue: usize,
    /// Generation steps per chunk when a request does not say.
    #[arg(long, default_value_t = 2048)]
    max_new_tokens: usize,
    #[arg(long, default_value_t = 4096)]
    max_input_chars: usize,
    /// Wall-clock limit of one request, seconds.
    #[arg(long, default_value_t = 600)]
    request_timeout: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dynamo_runtime::logging::init();
    let t0 = Instant::now();
    let st = Arc::new(load(&args)?);
    eprintln!(
        "higgs-dynamo-worker: loaded `{}` in {:.1} s ({})",
        args.served_model_name,
        t0.elapsed().as_secs_f64(),
        args.model.describe(args.model.device == "cuda")
    );
    Worker::from_settings()?.execute(move |rt| serve(rt, args, st))
}

fn load(a: &Args) -> anyhow::Result<AppState> {
    let mut spec = a.model.load_spec(EngineConfig {
        max_num_batched_tokens: a.max_num_batched_tokens,
        max_num_seqs: a.max_num_seqs,
        ..EngineConfig::for_context(a.max_context)?
    })?;
    if spec.device == "cuda" {
        spec.device = format!("cuda:{}", a.cuda_device);
    }
    let handle = EngineHandle::spawn(
        move || -> higgs_engine::Result<EngineParts> { spec.load() },
        HandleConfig {
            max_queue: a.max_queue,
        },
    )?;
    let presets = a
        .voices_dir
        .as_deref()
        .map(VoiceLibrary::open)
        .transpose()
        .context("--voices-dir")?;
    let cfg = ServerConfig {
        served_model_name: a.served_model_name.clone(),
        api_key: None,
        max_input_chars: a.max_input_chars,
        clip_limits: DecodeLimits {
            max_seconds: 60.0,
            ..DecodeLimits::default()
        },
        default_max_new_tokens: a.max_new_tokens,
        max_new_tokens_limit: a.max_new_tokens.max(a.max_context),
        request_timeout: Duration::from_secs(a.request_timeout.max(1)),
        ..ServerConfig::default()
    };
    Ok(AppState::new(
        EnginePool::single(handle),
        cfg,
        presets,
        VoiceStore::in_memory(),
    ))
}

async fn serve(rt: dynamo_runtime::Runtime, args: Args, st: Arc<AppState>) -> anyhow::Result<()> {
    let drt = DistributedRuntime::from_settings(rt).await?;
    let id: dynamo_runtime::protocols::EndpointId = args
        .endpoint
        .parse()
        .with_context(|| format!("--endpoint {}", args.endpoint))?;
    let endpoint = drt
        .namespace(&id.namespace)?
        .component(&id.component)?
        .endpoint(&id.name);
    let engine = Arc::new(SpeechEngine {
        st,
        served: args.served_model_name.clone(),
    });
    let ingress = Ingress::for_engine(engine)?;
    let mut model = LocalModelBuilder::default()
        .model_name(Some(args.served_model_name.clone()))
        .build()
        .await?;
    model
        .attach(
            &endpoint,
            ModelType::Audios,
            ModelInput::Text,
            None,
            Some(WorkerType::Aggregated),
            Vec::new(),
        )
        .await?;
    eprintln!(
        "higgs-dynamo-worker: serving `{}` at {} (instance {:x})",
        args.served_model_name,
        args.endpoint,
        drt.connection_id()
    );
    endpoint.endpoint_builder().handler(ingress).start().await
}

struct SpeechEngine {
    st: Arc<AppState>,
    served: String,
}

/// The `higgs serve` speech body of a Dynamo speech request: the OpenAI fields, then the
/// extension fields a client sent through `extra_body` (Dynamo carries them as passthrough,
/// nested under `extra_args.media_passthrough` by its frontend).
fn speech_body(req: &NvCreateAudioSpeechRequest, served: &str) -> Result<Value, String> {
    if req.ref_audio.is_some() || req.ref_text.is_some() {
        return Err(
            "ref_audio/ref_text are not taken here: upload the clip as a voice to a `higgs serve` \
             or name a preset voice (--voices-dir)"
                .into(),
        );
    }
    let mut body = Map::new();
    body.insert("model".into(), Value::from(served));
    body.insert("input".into(), Value::from(req.input.clone()));
    let opt = |v: &Option<String>| v.clone().map(Value::from);
    for (k, v) in [
        ("voice", opt(&req.voice)),
        ("response_format", opt(&req.response_format)),
        ("instructions", opt(&req.instructions)),
        ("speed", req.speed.map(Value::from)),
        ("max_new_tokens", req.max_new_tokens.map(Value::from)),
    ] {
        if let Some(v) = v {
            body.insert(k.into(), v);
        }
    }
    let mut extra: Vec<(String, Value)> = Vec::new();
    for (k, v) in &req.passthrough {
        if k == "extra_args" {
            if let Some(Value::Object(nested)) = v.get("media_passthrough") {
                extra.extend(nested.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        } else {
            extra.push((k.clone(), v.clone()));
        }
    }
    if let Some(args) = &req.extra_args {
        if let Some(Value::Object(nested)) = args.get("media_passthrough") {
            extra.extend(nested.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    for (k, v) in extra {
        if k == "stream_format" {
            continue; // streaming is the frontend's choice
        }
        body.entry(k).or_insert(v);
    }
    Ok(Value::Object(body))
}

fn response(
    id: &str,
    model: &str,
    format: &str,
    bytes: &[u8],
    status: &str,
) -> Annotated<NvAudioSpeechResponse> {
    Annotated::from_data(NvAudioSpeechResponse {
        id: id.to_string(),
        object: "audio.speech".into(),
        model: model.to_string(),
        status: status.into(),
        progress: if status == "completed" { 100 } else { 0 },
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64),
        data: vec![AudioData {
            output_format: format.to_string(),
            url: None,
            b64_json: Some(base64::engine::general_purpose::STANDARD.encode(bytes)),
        }],
        error: None,
        inference_time_s: None,
    })
}

/// A refused request: the frontend answers 400 with this body.
fn failed(id: &str, model: &str, message: String) -> Annotated<NvAudioSpeechResponse> {
    let mut r = NvAudioSpeechResponse::empty();
    r.id = id.to_string();
    r.model = model.to_string();
    r.status = "failed".into();
    r.error = Some(message);
    Annotated::from_data(r)
}

#[async_trait]
impl
    AsyncEngine<
        SingleIn<NvCreateAudioSpeechRequest>,
        ManyOut<Annotated<NvAudioSpeechResponse>>,
        Error,
    > for SpeechEngine
{
    async fn generate(
        &self,
        request: SingleIn<NvCreateAudioSpeechRequest>,
    ) -> Result<ManyOut<Annotated<NvAudioSpeechResponse>>, Error> {
        let (req, context) = request.transfer(());
        let ctx = context.context();
        let id = ctx.id().to_string();
        let model = self.served.clone();
        let chunked = req
            .nvext
            .as_ref()
            .and_then(|n| n.frontend_accepts_audio_chunks)
            .unwrap_or(false);
        let t0 = Instant::now();
        let prepared = speech_body(&req, &self.served).and_then(|b| {
            prepare_body_with_format(&self.st, b.to_string().as_bytes())
                .map_err(|e| e.message.clone())
        });
        let submitted = match prepared {
            Ok((treq, format)) => self
                .st
                .engines
                .submit_async(treq)
                .await
                .map(|(_, ev)| (ev, format))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let (mut events, format) = match submitted {
            Ok(x) => x,
            Err(msg) => {
                eprintln!("req {id} refused: {msg}");
                let once = futures::stream::once(async move { failed(&id, &model, msg) });
                return Ok(ResponseStream::new(Box::pin(once), ctx));
            }
        };
        eprintln!("req {id} started");
        let stop = ctx.clone();
        let stream = async_stream::stream! {
            let fmt = format.name();
            // Chunks only for the formats the frontend streams (pcm, wav); else one file.
            let chunked = chunked && matches!(format, AudioFormat::Pcm | AudioFormat::Wav);
            let mut encoder = if chunked { AudioEncoder::new(format).ok() } else { None };
            let mut samples: Vec<f32> = Vec::new();
            let mut frames = 0usize;
            loop {
                let ev = tokio::select! {
                    ev = events.next() => ev,
                    _ = stop.stopped() => {
                        // Dropping the events aborts the request in the engine.
                        eprintln!("req {id} cancelled by the frontend");
                        break;
                    }
                };
                match ev {
                    Some(RequestEvent::Audio(a)) => match encoder.as_mut() {
                        Some(enc) => match enc.push(&a) {
                            Ok(bytes) if !bytes.is_empty() => {
                                yield response(&id, &model, fmt, &bytes, "in_progress");
                            }
                            Ok(_) => {}
                            Err(e) => {
                                yield Annotated::from_error(e.to_string());
                                break;
                            }
                        },
                        None => samples.extend(a),
                    },
                    Some(RequestEvent::Codes(c)) => frames += c.first().map_or(0, Vec::len),
                    Some(RequestEvent::Text(_)) => {}
                    Some(RequestEvent::Finished { .. }) => {
                        let tail = match encoder.take() {
                            Some(enc) => enc.finish(),
                            None => {
                                // Off the async threads: mp3/aac/opus encodes take a while.
                                let all = std::mem::take(&mut samples);
                                tokio::task::spawn_blocking(move || encode_all(format, &all))
                                    .await
                                    .unwrap_or_else(|e| {
                                        Err(higgs_engine::Error::Other(format!("encoder: {e}")))
                                    })
                            }
                        };
                        match tail {
                            Ok(bytes) => yield response(&id, &model, fmt, &bytes, "completed"),
                            Err(e) => yield Annotated::from_error(e.to_string()),
                        }
                        eprintln!(
                            "req {id} frames={frames} time_ms={:.0} status=ok",
                            t0.elapsed().as_secs_f64() * 1e3
                        );
                        break;
                    }
                    Some(RequestEvent::Failed(e)) => {
                        eprintln!("req {id} failed: {e}");
                        yield Annotated::from_error(e.to_string());
                        break;
                    }
                    None => {
                        yield Annotated::from_error("the engine stopped".to_string());
                        break;
                    }
                }
            }
        };
        Ok(ResponseStream::new(Box::pin(stream), ctx))
    }
}
