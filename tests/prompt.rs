//! Prompt building (spec: model.md §7, §9): every golden case of
//! `tests/fixtures/reference/prompts/cases.json` with the real tokenizer and voices from
//! `shared/` (skipped with a message when absent), plus structural tests on a tiny WordLevel
//! tokenizer and a generated WAV that need no shared data.

use std::path::{Path, PathBuf};

use higgs_engine::prompt::chatml::{chatml_ids, prompt_ids};
use higgs_engine::prompt::{
    serve_model_input, AudioClip, AudioInCodes, AudioItem, AudioKind, AudioSource, ChunkMethod,
    Chunking, Content, GenerationPrompt, LongFormPrompt, Message, PromptRequest, Role, RunKind,
    VoiceLibrary, VoicePlacement,
};
use higgs_engine::reference::prompts::{check_prompts_with_voices, standin_codes};
use higgs_engine::tokenizer::TextTokenizer;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn shared_path(env: &str, rel: &str) -> PathBuf {
    std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("..").join("shared").join(rel))
}

fn real_tokenizer() -> Option<PathBuf> {
    let p = shared_path("HIGGS_TOKENIZER", "tokenizer/tokenizer.json");
    if p.is_file() {
        Some(p)
    } else {
        println!(
            "skipped: no tokenizer at {} (set HIGGS_TOKENIZER)",
            p.display()
        );
        None
    }
}

#[test]
fn golden_cases() {
    let Some(tokenizer) = real_tokenizer() else {
        return;
    };
    let voices = shared_path("HIGGS_VOICES_DIR", "voices");
    if !voices.is_dir() {
        println!(
            "skipped: no voices folder at {} (set HIGGS_VOICES_DIR)",
            voices.display()
        );
        return;
    }
    let fixtures = manifest_dir().join("tests/fixtures/reference");
    let results =
        check_prompts_with_voices(&fixtures, &tokenizer, &voices).expect("cases.json runs");
    for r in &results {
        println!("{r}");
    }
    let failed: Vec<_> = results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.name.as_str())
        .collect();
    assert!(!results.is_empty());
    assert!(failed.is_empty(), "failed: {failed:?}");
}

/// Spec §9.5 worked example A: 56 ids, checked with the real tokenizer.
#[test]
fn worked_example_a() {
    let Some(tokenizer) = real_tokenizer() else {
        return;
    };
    let tok = TextTokenizer::from_file(&tokenizer).unwrap();
    let req = PromptRequest {
        transcript: "The sun rises in the east and sets in the west. This simple fact has been observed by humans for thousands of years.".into(),
        scene: Some("Audio is recorded from a quiet room.".into()),
        ..Default::default()
    };
    let mut no_audio = |_: &AudioClip| -> higgs_engine::Result<Vec<Vec<u32>>> { unreachable!() };
    let mut p = LongFormPrompt::new(&req, &mut no_audio).unwrap();
    let input = p.next_input(&tok).unwrap().unwrap();
    let want: Vec<u32> = vec![
        128000, 128006, 9125, 128007, 271, 32215, 7855, 2768, 7754, 382, 128018, 198, 15097, 374,
        12715, 505, 264, 11594, 3130, 627, 128019, 128009, 128006, 882, 128007, 271, 791, 7160,
        38268, 304, 279, 11226, 323, 7437, 304, 279, 9909, 13, 1115, 4382, 2144, 706, 1027, 13468,
        555, 12966, 369, 9214, 315, 1667, 13, 128009, 128006, 78191, 128007, 271,
    ];
    assert_eq!(input.ids, want);
    assert_eq!(tok.special().audio_out.0, 128016);
    assert!(tok
        .decode(&input.ids, false)
        .unwrap()
        .starts_with("<|begin_of_text|><|start_header_id|>system"));
}

// ---- tiny tokenizer: no shared data needed ----

const SPECIALS: [&str; 22] = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|audio_out_bos|>",
    "<|AUDIO|>",
    "<|AUDIO_OUT|>",
    "<|recipient|>",
    "<|scene_desc_start|>",
    "<|scene_desc_end|>",
    "<|generation_instruction_start|>",
    "<|generation_instruction_end|>",
    "<SE>",
    "</SE>",
    "<SE_s>",
    "</SE_s>",
    "<SE_e>",
    "</SE_e>",
];
const WORDS: [&str; 12] = [
    "[UNK]",
    "system",
    "user",
    "assistant",
    "hello",
    "world",
    "hi",
    "a",
    "says",
    ".",
    "Generate",
    "audio",
];
const SPECIAL_BASE: u32 = 1000;

/// A WordLevel tokenizer (whitespace pre-tokenizer) with a few words and every special token
/// at 1000 + its index in `SPECIALS`.
fn tiny_tokenizer() -> TextTokenizer {
    // Specials are in the model vocab as well, so the added-token ids are kept as given.
    let vocab: serde_json::Map<String, serde_json::Value> = WORDS
        .iter()
        .enumerate()
        .map(|(i, w)| (w.to_string(), serde_json::json!(i)))
        .chain(
            SPECIALS
                .iter()
                .enumerate()
                .map(|(i, s)| (s.to_string(), serde_json::json!(SPECIAL_BASE + i as u32))),
        )
        .collect();
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": SPECIAL_BASE + i as u32, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let json = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added,
        "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null, "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"}
    });
    TextTokenizer::from_bytes(json.to_string().as_bytes()).unwrap()
}

fn sp(name: &str) -> u32 {
    SPECIAL_BASE + SPECIALS.iter().position(|s| *s == name).unwrap() as u32
}

fn word(w: &str) -> u32 {
    WORDS.iter().position(|x| *x == w).unwrap() as u32
}

#[test]
fn tokenizer_specials_by_name() {
    let tok = tiny_tokenizer();
    assert_eq!(tok.special().begin_of_text.0, sp("<|begin_of_text|>"));
    assert_eq!(tok.special().audio_in.0, sp("<|AUDIO|>"));
    assert_eq!(tok.special().se_e_end.0, sp("</SE_e>"));
    // No BOS is added; special strings inside a piece become their ids.
    assert_eq!(
        tok.encode("hello <SE> world").unwrap(),
        vec![word("hello"), sp("<SE>"), word("world")]
    );
    assert!(tok.encode("").unwrap().is_empty());
    let missing = TextTokenizer::from_bytes(br#"{"version":"1.0","added_tokens":[],"normalizer":null,"pre_tokenizer":null,"post_processor":null,"decoder":null,"model":{"type":"WordLevel","vocab":{"a":0},"unk_token":"a"}}"#);
    assert!(missing
        .unwrap_err()
        .to_string()
        .contains("<|begin_of_text|>"));
}

#[test]
fn chatml_structure() {
    let tok = tiny_tokenizer();
    let msgs = vec![
        Message::text(Role::User, "hello"),
        Message {
            role: Role::Assistant,
            recipient: None,
            content: vec![Content::Text("hi".into())],
        },
        Message::audio(Role::Assistant, AudioSource::Slot),
        Message {
            role: Role::System,
            recipient: None,
            content: vec![
                Content::Text(String::new()),
                Content::Audio(AudioSource::Slot),
                Content::Text("world".into()),
            ],
        },
    ];
    let ids = chatml_ids(&tok, &msgs).unwrap();
    let (bot, sh, eh) = (
        sp("<|begin_of_text|>"),
        sp("<|start_header_id|>"),
        sp("<|end_header_id|>"),
    );
    let want = vec![
        bot,
        sh,
        word("user"),
        eh,
        word("hello"),
        sp("<|eot_id|>"),
        sh,
        word("assistant"),
        eh,
        word("hi"),
        sp("<|eom_id|>"),
        sh,
        word("assistant"),
        eh,
        sp("<|audio_out_bos|>"),
        sp("<|AUDIO_OUT|>"),
        sp("<|audio_eos|>"),
        sp("<|eot_id|>"),
        sh,
        word("system"),
        eh,
        sp("<|audio_bos|>"),
        sp("<|AUDIO|>"),
        sp("<|audio_eos|>"),
        word("world"),
        sp("<|eot_id|>"),
    ];
    assert_eq!(ids, want);
    let full = prompt_ids(&tok, &msgs[..1], GenerationPrompt::ForceAudio).unwrap();
    assert_eq!(
        full[full.len() - 4..],
        [sh, word("assistant"), eh, sp("<|audio_out_bos|>")]
    );
    assert_eq!(full.iter().filter(|&&i| i == bot).count(), 1);
}

#[test]
fn serve_input_pairs_audio_in_order() {
    let tok = tiny_tokenizer();
    let mut msgs = vec![
        Message::text(Role::User, "hello"),
        Message::audio(Role::Assistant, AudioSource::Raw(vec![1, 2, 3])),
        Message {
            role: Role::User,
            recipient: None,
            content: vec![Content::Audio(AudioSource::Url("x.wav".into()))],
        },
    ];
    let mut n = 0u64;
    let mut load = |_: &AudioSource| {
        n += 1;
        Ok(AudioItem {
            label: format!("a{n}"),
            codes: standin_codes(n, 2 + n as usize),
        })
    };
    let input = serve_model_input(
        &tok,
        &msgs,
        GenerationPrompt::Assistant,
        AudioInCodes::Embed,
        &mut load,
    )
    .unwrap();
    assert_eq!(input.placeholders.len(), 2);
    assert_eq!(input.audio_out[0].label, "a1");
    assert_eq!(input.segments(AudioKind::In)[0].label, "a2");
    assert_eq!(input.audio_out[0].n_columns(), 3 + 9);
    let dropped = serve_model_input(
        &tok,
        &msgs,
        GenerationPrompt::Assistant,
        AudioInCodes::DropLikeServeEngine,
        &mut load,
    )
    .unwrap();
    assert!(dropped.audio_in.is_none());
    assert!(dropped
        .expanded_runs()
        .iter()
        .any(|r| matches!(r.kind, RunKind::Unfilled { .. })));

    // A part with neither URL nor bytes is skipped but keeps its placeholder: one audio short.
    msgs.insert(
        1,
        Message::audio(Role::Assistant, AudioSource::Url("placeholder".into())),
    );
    let err = serve_model_input(
        &tok,
        &msgs,
        GenerationPrompt::Assistant,
        AudioInCodes::Embed,
        &mut load,
    );
    assert!(err.is_err());
}

/// A temporary voice folder: `a.wav` (44.1 kHz stereo, 44100 frames), `a.txt`, `b.wav`
/// (24 kHz mono), `b.txt`, and `profile.yaml`.
fn voice_folder(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("higgs-prompt-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, rate: u32, channels: u16, frames: usize| {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(dir.join(name), spec).unwrap();
        for i in 0..frames * channels as usize {
            w.write_sample((i % 100) as i16).unwrap();
        }
        w.finalize().unwrap();
    };
    write("a.wav", 44_100, 2, 44_100);
    write("b.wav", 24_000, 1, 12_000);
    std::fs::write(dir.join("a.txt"), "  hi a says .\n").unwrap();
    std::fs::write(dir.join("b.txt"), "hello world").unwrap();
    std::fs::write(dir.join("profile.yaml"), "profiles:\n  calm: a says hi\n").unwrap();
    dir
}

fn standin(clip: &AudioClip) -> higgs_engine::Result<Vec<Vec<u32>>> {
    Ok(standin_codes(clip.n_samples_24k as u64, clip.frames()))
}

#[test]
fn long_form_voice_turns_and_buffer() {
    let tok = tiny_tokenizer();
    let lib = VoiceLibrary::open(&voice_folder("turns")).unwrap();
    let voices = lib.resolve_list("a,b").unwrap();
    // 44100 frames at 44.1 kHz → 24000 samples → floor((24000 + 841) / 960) = 25 frames.
    let frames: Vec<usize> = voices
        .iter()
        .map(|v| match v {
            higgs_engine::prompt::VoiceRef::Clip { clip, .. } => clip.frames(),
            _ => 0,
        })
        .collect();
    assert_eq!(frames, vec![25, 13]);
    let req = PromptRequest {
        transcript: "[SPEAKER0] hello\n\n[SPEAKER1] world\n[SPEAKER0] hi".into(),
        scene: None,
        voices,
        voice_placement: VoicePlacement::Turns,
        chunking: Chunking {
            method: ChunkMethod::Speaker,
            max_word_num: 200,
            max_num_turns: 1,
        },
        generation_chunk_buffer_size: Some(1),
    };
    let mut p = LongFormPrompt::new(&req, &mut standin).unwrap();
    assert_eq!(
        p.chunks,
        vec!["[SPEAKER0] hello", "[SPEAKER1] world", "[SPEAKER0] hi."]
    );
    let mut outs = Vec::new();
    while let Some(input) = p.next_input(&tok).unwrap() {
        // No scene: no system message, begin_of_text precedes the first user header.
        assert_eq!(
            input.ids[..2],
            [sp("<|begin_of_text|>"), sp("<|start_header_id|>")]
        );
        let k = outs.len();
        outs.push(input);
        p.push_generated(standin_codes(1000 + k as u64, 4 + k))
            .unwrap();
    }
    assert_eq!(outs.len(), 3);
    // Call 0: the two voices only; call 1: + chunk 0; call 2: buffer 1 keeps chunk 1 only.
    let labels = |i: usize| {
        outs[i]
            .audio_out
            .iter()
            .map(|s| s.label.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(labels(0).len(), 2);
    assert_eq!(labels(1)[2], "generated:chunk0");
    assert_eq!(labels(2)[2], "generated:chunk1");
    assert_eq!(labels(2).len(), 3);
    let runs = outs[2].expanded_runs();
    let audio_cols: usize = runs
        .iter()
        .filter(|r| matches!(r.kind, RunKind::Audio { .. }))
        .map(|r| r.length)
        .sum();
    assert_eq!(audio_cols, (25 + 9) + (13 + 9) + (5 + 9));
    assert_eq!(outs[2].expanded_len(), outs[2].ids.len() - 3 + audio_cols);
    assert!(p.push_generated(standin_codes(1, 1)).is_err());
}

#[test]
fn long_form_voices_in_system_message() {
    let tok = tiny_tokenizer();
    let lib = VoiceLibrary::open(&voice_folder("system")).unwrap();
    let req = PromptRequest {
        transcript: "hello world".into(),
        scene: Some("a".into()),
        voices: lib.resolve_list("profile:calm,b").unwrap(),
        ..Default::default()
    };
    let mut p = LongFormPrompt::new(&req, &mut standin).unwrap();
    let input = p.next_input(&tok).unwrap().unwrap();
    assert_eq!(input.placeholders.len(), 1);
    assert_eq!(input.placeholders[0].kind, AudioKind::In);
    assert_eq!(input.segments(AudioKind::In)[0].frames, 13);
    assert_eq!(p.reference_audio().len(), 1);
}

#[test]
fn bad_requests_are_errors() {
    let lib = VoiceLibrary::open(&voice_folder("errors")).unwrap();
    assert!(lib
        .resolve("nobody")
        .unwrap_err()
        .to_string()
        .contains("nobody"));
    assert!(lib
        .resolve("profile:nobody")
        .unwrap_err()
        .to_string()
        .contains("nobody"));
    assert!(lib.resolve("../a").is_err());
    assert!(VoiceLibrary::open(Path::new("/nonexistent/voices")).is_err());
    let req = PromptRequest {
        transcript: " \n ".into(),
        ..Default::default()
    };
    assert!(LongFormPrompt::new(&req, &mut standin).is_err());
    let req = PromptRequest {
        transcript: "x".into(),
        voices: lib.resolve_list("a").unwrap(),
        ..Default::default()
    };
    let mut bad_codec =
        |_: &AudioClip| -> higgs_engine::Result<Vec<Vec<u32>>> { Ok(vec![vec![1, 2]; 3]) };
    assert!(LongFormPrompt::new(&req, &mut bad_codec).is_err());
}

#[test]
fn voice_library_config_json() {
    let dir = voice_folder("config");
    std::fs::write(
        dir.join("config.json"),
        r#"{"narrator": {"transcript": "hello world", "audio_file": "b.wav"}}"#,
    )
    .unwrap();
    let lib = VoiceLibrary::open(&dir).unwrap();
    match lib.resolve("narrator").unwrap() {
        higgs_engine::prompt::VoiceRef::Clip {
            transcript, clip, ..
        } => {
            assert_eq!(transcript, "hello world");
            assert_eq!(clip.frames(), 13);
        }
        other => panic!("expected a clip, got {other:?}"),
    }
    // With a config.json, only its names are voices.
    assert!(lib.resolve("a").is_err());
    assert!(lib.resolve("profile:calm").is_ok());
}
