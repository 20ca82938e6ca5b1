//! Text to speech end to end on the fixture model and codec, with a word-level tokenizer.json
//! built from the fixture's toy vocabulary: the codes and samples must equal the reference's
//! `gen_tts` case (serve engine: greedy, no RAS, audio kept alive, forced audio start), the
//! stream must equal the whole output, and bad input must give clear errors from the CLI.

use higgs_engine::codec::model::AudioTokenizer;
use higgs_engine::engine::{
    EngineConfig, EngineHandle, EngineParts, GenerationParams, HandleConfig, TtsInput, TtsRequest,
};
use higgs_engine::prompt::PromptRequest;
use higgs_engine::reference::fixture::{read_json, Expected};
use higgs_engine::reference::llm::LlmFixture;
use higgs_engine::sampling::processors::SamplingParams;
use higgs_engine::tokenizer::TextTokenizer;
use higgs_engine::tts::synthesize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

/// The committed tokenizer.json for the fixture vocabulary (tests/fixtures/toy-tokenizer.json):
/// the toy words of `llm/cases.json` (regex pieces, spaces dropped) and the Llama-3 special
/// names at 224 + (id - 128000). Checked here against the fixture's own id table.
fn toy_tokenizer(_dir: &Path) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-tokenizer.json");
    let tok = TextTokenizer::from_file(&p).unwrap();
    let cases = read_json(&fixtures().join("llm/cases.json")).unwrap();
    for (w, id) in cases["vocab"]["toy_word_ids"].as_object().unwrap() {
        if !w.contains(' ') {
            assert_eq!(tok.token_id(w).map(|t| t.0 as u64), id.as_u64(), "{w:?}");
        }
    }
    for (name, v) in cases["vocab"]["special_tokens"].as_object().unwrap() {
        assert_eq!(
            tok.token_id(name).map(|t| t.0 as u64),
            v["id"].as_u64(),
            "{name}"
        );
    }
    p
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs-tts-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn gen_tts_request() -> (PromptRequest, TtsRequest, LlmFixture) {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let cfg = &fx.model.cfg;
    let messages = &fx.cases["cases"]["gen_tts"]["messages"];
    let text = messages[1]["content"].as_str().unwrap().to_string();
    assert_eq!(
        messages[0]["content"],
        "Generate audio following instruction."
    );
    let req = PromptRequest {
        transcript: text,
        scene: None,
        ..Default::default()
    };
    let mut gen = GenerationParams::new(
        fx.cases["cases"]["gen_tts"]["info"]["max_new_tokens"]
            .as_u64()
            .unwrap() as usize,
        vec![225, 233],
    );
    gen.sampling = SamplingParams::greedy();
    gen.ras_win_len = 0;
    gen.suppress_audio = vec![cfg.stream_eos as usize];
    gen.suppress_text = vec![cfg.stream_eos as usize];
    let mut treq = TtsRequest::new(TtsInput::LongForm(req.clone()), gen);
    treq.force_audio = true;
    (req, treq, fx)
}

#[test]
fn tts_matches_reference_gen_tts_waveform() {
    let dir = tmpdir("e2e");
    let tok = TextTokenizer::from_file(&toy_tokenizer(&dir)).unwrap();
    let (_req, treq, fx) = gen_tts_request();
    let codec = AudioTokenizer::load(&fixtures().join("codec")).unwrap();
    let model = fx.model.clone();
    let handle = EngineHandle::spawn(
        move || {
            Ok(EngineParts {
                model,
                codec: AudioTokenizer::load(&fixtures().join("codec"))?,
                tokenizer: Arc::new(tok),
                config: EngineConfig::default(),
            })
        },
        HandleConfig::default(),
    )
    .unwrap();
    let mut streamed = Vec::new();
    let mut chunks = 0;
    let out = synthesize(
        &handle,
        treq,
        &mut |pcm| {
            streamed.extend_from_slice(pcm);
            chunks += 1;
            Ok(())
        },
        &mut |_| {},
    )
    .unwrap();
    let e = Expected::load(&fixtures().join("llm/expected.safetensors")).unwrap();
    assert_eq!(
        out.codes,
        e.matrix("gen_tts.vq_code_serve").unwrap(),
        "codes"
    );
    let want = &e.f32("gen_tts.serve_waveform").unwrap().1;
    assert_eq!(out.samples.len(), want.len());
    let (abs, rel) = higgs_engine::reference::compare(&out.samples, want);
    assert!(rel < 1e-4, "waveform rel err {rel} (abs {abs})");
    assert_eq!(streamed, out.samples, "stream == whole output");
    assert!(chunks > 1, "audio arrived in {chunks} chunk(s)");
    // The whole-output decode of the same codes gives the same samples.
    let whole = codec.decode(&out.codes).unwrap();
    assert_eq!(whole, out.samples);
}

fn higgs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_higgs"))
}

fn base_args(tok: &Path) -> Vec<String> {
    let f = fixtures();
    vec![
        "tts".into(),
        "--model".into(),
        f.join("llm").display().to_string(),
        "--audio-tokenizer".into(),
        f.join("codec").display().to_string(),
        "--tokenizer".into(),
        tok.display().to_string(),
        "--scene".into(),
        "empty".into(),
        "--seed".into(),
        "3".into(),
        "--max-new-tokens".into(),
        "30".into(),
        "--force-audio".into(),
    ]
}

#[test]
fn cli_writes_wav_and_streams_the_same_pcm() {
    let dir = tmpdir("cli");
    let tok = toy_tokenizer(&dir);
    let wav = dir.join("out.wav");
    let mut args = base_args(&tok);
    args.extend([
        "--text".into(),
        "The quick brown fox jumps over the lazy dog.".into(),
        "-o".into(),
        wav.display().to_string(),
    ]);
    let o = higgs().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("frames/s"), "progress on stderr: {err}");
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().sample_rate, 24000);
    assert_eq!(r.spec().channels, 1);
    let samples: Vec<i16> = r.into_samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(samples.len() % 960, 0);

    let mut args = base_args(&tok);
    args.extend([
        "--text".into(),
        "The quick brown fox jumps over the lazy dog.".into(),
        "--stream".into(),
    ]);
    let o = higgs().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pcm: Vec<i16> = o
        .stdout
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert_eq!(pcm, samples, "same seed: streamed PCM == WAV samples");
}

#[test]
fn cli_quiet_prints_nothing_on_stderr() {
    let dir = tmpdir("quiet");
    let tok = toy_tokenizer(&dir);
    let run = |wav: &Path, quiet: bool| {
        let mut args = base_args(&tok);
        args.extend([
            "--text".into(),
            "The quick brown fox jumps over the lazy dog.".into(),
            "-o".into(),
            wav.display().to_string(),
        ]);
        if quiet {
            args.push("--quiet".into());
        }
        let o = higgs().args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stderr
    };
    let (loud, quiet) = (dir.join("loud.wav"), dir.join("quiet.wav"));
    assert!(
        !run(&loud, false).is_empty(),
        "summary lines without --quiet"
    );
    let err = run(&quiet, true);
    assert!(
        err.is_empty(),
        "--quiet stderr: {}",
        String::from_utf8_lossy(&err)
    );
    assert_eq!(
        std::fs::read(&loud).unwrap(),
        std::fs::read(&quiet).unwrap(),
        "--quiet changes nothing but stderr"
    );
}

#[test]
fn cli_errors_are_clear() {
    let dir = tmpdir("err");
    let tok = toy_tokenizer(&dir);
    let run = |extra: &[&str]| {
        let mut args = base_args(&tok);
        args.extend(extra.iter().map(|s| s.to_string()));
        let o = higgs().args(&args).output().unwrap();
        assert!(!o.status.success(), "expected failure for {extra:?}");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!err.contains("panicked"), "panic for {extra:?}: {err}");
        err
    };
    assert!(run(&["--text", "   ", "-o", "/dev/null"]).contains("empty"));
    // A CUDA run where there is none (no cuda feature, or no device): a clear error, no panic.
    if higgs_engine::tensor::Device::cuda(0).is_err() {
        let e = run(&["--text", "Hello.", "--device", "cuda", "-o", "/dev/null"]);
        assert!(e.contains("CUDA"), "{e}");
    }
    let voices = dir.join("voices");
    std::fs::create_dir_all(&voices).unwrap();
    let e = run(&[
        "--text",
        "Hello.",
        "--voice",
        "nobody",
        "--voices-dir",
        voices.to_str().unwrap(),
        "-o",
        "/dev/null",
    ]);
    assert!(e.contains("nobody"), "{e}");
    let bad = dir.join("bad.wav");
    std::fs::write(&bad, b"not a wav file").unwrap();
    let e = run(&[
        "--text",
        "Hello.",
        "--ref-audio",
        bad.to_str().unwrap(),
        "--ref-text",
        "hi",
        "-o",
        "/dev/null",
    ]);
    assert!(e.contains("bad.wav"), "{e}");
    let e = run(&["--text", "Hello.", "--max-context", "16", "-o", "/dev/null"]);
    assert!(e.contains("never fit"), "{e}");
    // A KV cache no host could hold is refused by name before anything is allocated.
    let huge = (usize::MAX / 2).to_string();
    let e = run(&[
        "--text",
        "Hello.",
        "--max-context",
        &huge,
        "-o",
        "/dev/null",
    ]);
    assert!(
        e.contains("--max-context") && e.contains("out of range"),
        "{e}"
    );
    let e = run(&["--text", "Hello."]);
    assert!(e.contains("-o"), "{e}");
}
