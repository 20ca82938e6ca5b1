//! Fuzz targets for the server's request bodies: speech JSON, chat-completions JSON (with an
//! inlined clip) and the voices multipart form, fed through the real router in-process (no
//! socket) on the fixture model. Valid requests reach the engine's queue, which holds none
//! (`max_queue` 0), so they end as 429 after every check ran. Each response must be a 2xx or
//! a 4xx with an OpenAI error object: never a 5xx, a panic, an allocation above the cap or a
//! case slower than 5 s. Bounded like tests/fuzz.rs (`HIGGS_FUZZ_CASES`, `HIGGS_FUZZ_SECONDS`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use higgs_engine::codec::model::AudioTokenizer;
use higgs_engine::engine::{EngineConfig, EngineHandle, EngineParts, HandleConfig};
use higgs_engine::reference::llm::LlmFixture;
use higgs_engine::server::{AppState, ServerConfig, VoiceStore};
use higgs_engine::tokenizer::TextTokenizer;
use proptest::prelude::*;
use serde_json::json;
use tower::ServiceExt;

#[path = "common/fuzz_harness.rs"]
mod harness;
use harness::*;

fn router() -> &'static axum::Router {
    static R: OnceLock<axum::Router> = OnceLock::new();
    R.get_or_init(|| {
        let dir = fixture("llm");
        let handle = EngineHandle::spawn(
            move || {
                let fx = LlmFixture::load(&dir)?;
                let codec = AudioTokenizer::load(&fixture("codec"))?;
                let tok = TextTokenizer::from_file(
                    &Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("tests/fixtures/toy-tokenizer.json"),
                )?;
                Ok(EngineParts {
                    model: fx.model,
                    codec,
                    tokenizer: Arc::new(tok),
                    config: EngineConfig {
                        num_blocks: 64,
                        ..EngineConfig::default()
                    },
                })
            },
            HandleConfig { max_queue: 0 },
        )
        .unwrap();
        let cfg = ServerConfig {
            served_model_name: "higgs-test".into(),
            max_body_bytes: 1 << 20,
            ..ServerConfig::default()
        };
        higgs_engine::server::router(Arc::new(AppState::new(
            higgs_engine::engine::EnginePool::single(handle),
            cfg,
            None,
            VoiceStore::in_memory(),
        )))
    })
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
}

/// Sends one request through the router and checks the answer's shape.
fn check(path: &str, ctype: &str, body: Vec<u8>) -> Result<(), TestCaseError> {
    let t0 = Instant::now();
    let req = Request::post(path)
        .header("content-type", ctype)
        .body(Body::from(body))
        .unwrap();
    let (status, bytes) = runtime().block_on(async {
        let r = router().clone().oneshot(req).await.unwrap();
        let status = r.status();
        let bytes = axum::body::to_bytes(r.into_body(), 16 << 20).await.unwrap();
        (status, bytes)
    });
    prop_assert!(
        t0.elapsed() < Duration::from_secs(5),
        "{path}: a case took {:?}",
        t0.elapsed()
    );
    prop_assert!(
        !status.is_server_error(),
        "{path}: {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| TestCaseError::fail(format!("{path}: {status}: not JSON: {e}")))?;
        prop_assert!(v["error"]["message"].is_string(), "{path}: {v}");
    }
    Ok(())
}

fn tiny_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for i in 0..1600 {
        w.write_sample(((i * 131) % 16_000 - 8000) as i16).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

#[test]
fn fuzz_speech_json() {
    let base = json!({
        "model": "higgs-test", "input": "The quick brown fox.", "voice": "alloy",
        "instructions": "A calm voice.", "response_format": "wav", "speed": 1.0,
        "stream_format": "audio", "seed": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 40,
        "max_new_tokens": 30, "ras_win_len": 7, "chunk_method": "word", "chunk_max_word_num": 100,
        "scene": "quiet room"
    });
    fuzz("speech_json", json_mutation(base.to_string()), |text| {
        check("/v1/audio/speech", "application/json", text.into_bytes())
    });
}

#[test]
fn fuzz_chat_json() {
    let clip = base64::engine::general_purpose::STANDARD.encode(tiny_wav());
    let base = json!({
        "model": "higgs-test",
        "messages": [
            {"role": "system", "content": "Generate audio following instruction."},
            {"role": "user", "content": "The baker opens the shop."},
            {"role": "assistant", "content": [{"type": "input_audio", "input_audio": {"data": clip, "format": "wav"}}]},
            {"role": "user", "content": [{"type": "text", "text": "The fox."}]}
        ],
        "modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"},
        "stop": ["<|eot_id|>"], "max_completion_tokens": 20, "seed": 1, "stream": true,
        "stream_options": {"include_usage": true}, "temperature": 0.5
    });
    fuzz("chat_json", json_mutation(base.to_string()), |text| {
        check(
            "/v1/chat/completions",
            "application/json",
            text.into_bytes(),
        )
    });
}

#[test]
fn fuzz_voices_multipart() {
    let boundary = "fuzzboundary";
    let mut body = Vec::new();
    for (name, file, data) in [
        ("name", None, b"narrator".to_vec()),
        ("transcript", None, b"The baker opens the shop.".to_vec()),
        ("consent", None, b"cons_1".to_vec()),
        ("audio_sample", Some("a.wav"), tiny_wav()),
    ] {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disp = match file {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: audio/wav\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disp.as_bytes());
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let focus = body.len() - 3000;
    fuzz("voices_multipart", bytes_or_mutation(body, focus), |b| {
        check("/v1/audio/voices", &ctype, b)
    });
}
