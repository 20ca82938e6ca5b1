//! `higgs check-reference` part "prompts": replays every case of `DIR/prompts/cases.json`
//! through the prompt builder with the README's stand-in codes and compares ids, audio
//! placeholders, collated segment matrices (sha256) and the expanded layout.
//! May use: prompt, tokenizer, error. Spec: model.md §9; `tests/fixtures/reference/prompts/README.md`.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::CaseResult;
use crate::error::{Error, Result};
use crate::prompt::{
    self, AudioClip, AudioInCodes, AudioItem, AudioKind, AudioSource, Chunking, Content,
    GenerationPrompt, LongFormPrompt, Message, ModelInput, PromptRequest, Role, RunKind,
    VoiceLibrary, VoicePlacement,
};
use crate::tokenizer::TextTokenizer;

const PART: &str = "prompts";

/// The README's stand-in codes of an audio with `frames` frames and seed `seed`:
/// `code[q][t] = (s*7919 + q*104729 + t*15485863 + (q+1)*t*t) mod 1024`.
pub fn standin_codes(seed: u64, frames: usize) -> Vec<Vec<u32>> {
    (0..8u64)
        .map(|q| {
            (0..frames as u64)
                .map(|t| {
                    ((seed * 7919 + q * 104_729 + t * 15_485_863 + (q + 1) * t * t) % 1024) as u32
                })
                .collect()
        })
        .collect()
}

/// sha256 of a [C, N] matrix as little-endian int64, row-major (the fixtures' format).
pub fn matrix_sha256(rows: &[Vec<u32>]) -> String {
    let mut h = Sha256::new();
    for row in rows {
        for &v in row {
            h.update((v as i64).to_le_bytes());
        }
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Finds `shared/voices` next to one of `dir`'s ancestors.
pub fn default_voices_dir(dir: &Path) -> Option<PathBuf> {
    let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    abs.ancestors()
        .map(|a| a.join("shared").join("voices"))
        .find(|p| p.is_dir())
}

/// Runs every case with the voices found by [`default_voices_dir`].
pub fn check_prompts(dir: &Path, tokenizer: &Path) -> Result<Vec<CaseResult>> {
    let voices = default_voices_dir(dir).unwrap_or_else(|| dir.join("shared/voices"));
    check_prompts_with_voices(dir, tokenizer, &voices)
}

/// Runs every case of `dir/prompts/cases.json`; `voices` is the folder of the reference voices
/// (`NAME.wav`, `NAME.txt`, `profile.yaml`).
pub fn check_prompts_with_voices(
    dir: &Path,
    tokenizer: &Path,
    voices: &Path,
) -> Result<Vec<CaseResult>> {
    let path = dir.join("prompts").join("cases.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let root: Value =
        serde_json::from_str(&text).map_err(|e| Error::config(&path, "cases", e.to_string()))?;
    let tok = TextTokenizer::from_file(tokenizer)?;
    let cases = root["cases"]
        .as_array()
        .ok_or_else(|| Error::config(&path, "cases", "not a list"))?;
    let library = VoiceLibrary::open(voices);
    let voice_results = root["voices"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, want)| {
            let outcome = match &library {
                Ok(lib) => check_voice(lib, name, want),
                Err(e) => Err(e.to_string()),
            };
            CaseResult {
                part: PART,
                name: format!("voice:{name}"),
                passed: outcome.is_ok(),
                detail: outcome.unwrap_or_else(|why| why),
            }
        });
    let mut results: Vec<CaseResult> = voice_results.collect();
    results.extend(cases.iter().map(|case| {
        let name = case["id"].as_str().unwrap_or("?").to_string();
        let outcome = match &library {
            Ok(lib) => run_case(&tok, lib, voices, case),
            Err(e) => Err(format!("{e}")),
        };
        CaseResult {
            part: PART,
            name,
            passed: outcome.is_ok(),
            detail: outcome.unwrap_or_else(|why| why),
        }
    }));
    Ok(results)
}

type CaseOutcome = std::result::Result<String, String>;

/// A voice of the fixture's `voices` table: our WAV header → 24 kHz length → frames path, and
/// the stripped transcript.
fn check_voice(lib: &VoiceLibrary, name: &str, want: &Value) -> CaseOutcome {
    let Ok(prompt::VoiceRef::Clip {
        transcript, clip, ..
    }) = lib.resolve(name)
    else {
        return Err(format!(
            "voice `{name}` not found in {}",
            lib.dir().display()
        ));
    };
    expect_eq(
        "n_samples_24k",
        Some(clip.n_samples_24k as u64),
        want["n_samples_24k"].as_u64(),
    )?;
    expect_eq(
        "frames",
        Some(clip.frames() as u64),
        want["frames"].as_u64(),
    )?;
    expect_eq(
        "transcript",
        Some(transcript.as_str()),
        want["transcript"].as_str(),
    )?;
    Ok(format!(
        "{} samples at 24 kHz, {} frames",
        clip.n_samples_24k,
        clip.frames()
    ))
}

fn run_case(tok: &TextTokenizer, lib: &VoiceLibrary, voices: &Path, case: &Value) -> CaseOutcome {
    if case["driver"].as_str() == Some("HiggsAudioServeEngine") {
        run_serve_case(tok, voices, case)
    } else {
        run_cli_case(tok, lib, case)
    }
}

fn opt_str(v: &Value) -> Option<&str> {
    v.as_str()
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(
    what: &str,
    got: T,
    want: T,
) -> std::result::Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: got {got:?}, want {want:?}"))
    }
}

fn run_cli_case(tok: &TextTokenizer, lib: &VoiceLibrary, case: &Value) -> CaseOutcome {
    let ui = &case["user_inputs"];
    let voices = match opt_str(&ui["ref_audio"]) {
        Some(list) => lib.resolve_list(list).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let chunk_method = match opt_str(&ui["chunk_method"]) {
        Some(m) => m.parse().map_err(|e: Error| e.to_string())?,
        None => prompt::ChunkMethod::None,
    };
    let req = PromptRequest {
        transcript: opt_str(&ui["transcript_raw"])
            .ok_or("user_inputs.transcript_raw missing")?
            .to_string(),
        scene: opt_str(&ui["scene_prompt"]).map(str::to_string),
        voices,
        voice_placement: if ui["ref_audio_in_system_message_flag"].as_bool() == Some(true) {
            VoicePlacement::SystemMessage
        } else {
            VoicePlacement::Turns
        },
        chunking: Chunking {
            method: chunk_method,
            max_word_num: ui["chunk_max_word_num"].as_u64().unwrap_or(200) as usize,
            max_num_turns: ui["chunk_max_num_turns"].as_u64().unwrap_or(1) as usize,
        },
        generation_chunk_buffer_size: ui["generation_chunk_buffer_size"]
            .as_u64()
            .map(|b| b as usize),
    };
    let mut encode = |clip: &AudioClip| Ok(standin_codes(clip.n_samples_24k as u64, clip.frames()));
    let mut p = LongFormPrompt::new(&req, &mut encode).map_err(|e| e.to_string())?;

    let tags: Vec<&str> = p.speaker_tags.iter().map(String::as_str).collect();
    let want_tags: Vec<&str> = case["speaker_tags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    expect_eq("speaker_tags", tags, want_tags)?;
    expect_eq(
        "normalized_transcript",
        Some(p.normalized_transcript.as_str()),
        case["normalized_transcript"].as_str(),
    )?;
    let want_chunks: Vec<&str> = case["chunks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let chunks: Vec<&str> = p.chunks.iter().map(String::as_str).collect();
    expect_eq("chunks", chunks, want_chunks)?;

    let want_refs = case["context"]["reference_audio"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    expect_eq(
        "reference_audio count",
        p.reference_audio().len(),
        want_refs.len(),
    )?;
    for (k, (got, want)) in p.reference_audio().iter().zip(&want_refs).enumerate() {
        expect_eq(
            &format!("reference_audio[{k}].frames"),
            got.frames() as u64,
            want["frames"].as_u64().unwrap_or(0),
        )?;
        expect_eq(
            &format!("reference_audio[{k}].source"),
            basename(&got.label),
            basename(want["source"].as_str().unwrap_or("")),
        )?;
    }

    let gens = case["generations"]
        .as_array()
        .ok_or("generations missing")?;
    let mut total_ids = 0;
    for (i, g) in gens.iter().enumerate() {
        let input = p
            .next_input(tok)
            .map_err(|e| format!("generation {i}: {e}"))?
            .ok_or_else(|| format!("generation {i}: the builder has only {i} chunks"))?;
        compare_generation(tok, &input, g).map_err(|e| format!("generation {i}: {e}"))?;
        total_ids += input.ids.len();
        let gs = &g["generated_standin"];
        let frames = gs["frames"]
            .as_u64()
            .ok_or("generated_standin.frames missing")? as usize;
        let seed = gs["standin_seed"]
            .as_u64()
            .ok_or("generated_standin.standin_seed missing")?;
        p.push_generated(standin_codes(seed, frames))
            .map_err(|e| e.to_string())?;
    }
    if p.next_input(tok).map_err(|e| e.to_string())?.is_some() {
        return Err(format!(
            "the builder has more chunks than the {} generations",
            gens.len()
        ));
    }
    Ok(format!("{} call(s), {total_ids} ids", gens.len()))
}

fn basename(s: &str) -> &str {
    s.rsplit(['/', '\\']).next().unwrap_or(s)
}

fn parse_messages(v: &Value) -> std::result::Result<Vec<Message>, String> {
    let list = v.as_array().ok_or("messages is not a list")?;
    list.iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m["role"].as_str() {
                Some("system") => Role::System,
                Some("user") => Role::User,
                Some("assistant") => Role::Assistant,
                other => return Err(format!("message {i}: role {other:?}")),
            };
            let content = m["content"]
                .as_array()
                .ok_or_else(|| format!("message {i}: content is not a list"))?
                .iter()
                .map(|part| match part["type"].as_str() {
                    Some("text") => Ok(Content::Text(
                        part["text"].as_str().unwrap_or("").to_string(),
                    )),
                    Some("audio") => {
                        let url = part["audio_url"].as_str().unwrap_or("");
                        let has_raw = !part["raw_audio"].is_null();
                        // The fixture describes the base64 payload instead of holding it; the
                        // loader below takes the audio's length from `context.reference_audio`.
                        Ok(if has_raw && (url.is_empty() || url == "placeholder") {
                            Content::Audio(AudioSource::Raw(Vec::new()))
                        } else {
                            Content::Audio(AudioSource::Url(url.to_string()))
                        })
                    }
                    other => Err(format!("message {i}: content type {other:?}")),
                })
                .collect::<std::result::Result<Vec<_>, String>>()?;
            Ok(Message {
                role,
                recipient: m["recipient"].as_str().map(str::to_string),
                content,
            })
        })
        .collect()
}

fn run_serve_case(tok: &TextTokenizer, voices: &Path, case: &Value) -> CaseOutcome {
    let ui = &case["user_inputs"];
    let messages = parse_messages(&ui["chat_ml_sample"]["messages"])?;
    let force = ui["generate_kwargs"]["force_audio_gen"].as_bool() == Some(true);
    let refs = case["context"]["reference_audio"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // Check our WAV → 24 kHz length against every reference clip we have.
    for (k, r) in refs.iter().enumerate() {
        let n_24k = r["n_samples_24k"].as_u64().unwrap_or(0) as usize;
        expect_eq(
            &format!("reference_audio[{k}] frames"),
            prompt::system::frames_for_samples(n_24k) as u64,
            r["frames"].as_u64().unwrap_or(0),
        )?;
        for f in r["decoded_file_with_this_length"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if let Some(name) = f.strip_prefix("voice_prompts/") {
                let clip = AudioClip::from_wav(&voices.join(name)).map_err(|e| e.to_string())?;
                expect_eq(&format!("{f} n_samples_24k"), clip.n_samples_24k, n_24k)?;
            }
        }
    }
    let mut next = 0usize;
    let mut load = |_src: &AudioSource| -> Result<AudioItem> {
        let r = refs.get(next).ok_or_else(|| {
            Error::BadRequest(format!("the case lists {} reference audios", refs.len()))
        })?;
        next += 1;
        let n_24k = r["n_samples_24k"].as_u64().unwrap_or(0);
        let frames = r["frames"].as_u64().unwrap_or(0) as usize;
        Ok(AudioItem {
            label: "array".into(),
            codes: standin_codes(n_24k, frames),
        })
    };
    let gen_prompt = if force {
        GenerationPrompt::ForceAudio
    } else {
        GenerationPrompt::Assistant
    };
    let input = prompt::serve_model_input(
        tok,
        &messages,
        gen_prompt,
        AudioInCodes::DropLikeServeEngine,
        &mut load,
    )
    .map_err(|e| e.to_string())?;
    let gens = case["generations"]
        .as_array()
        .ok_or("generations missing")?;
    expect_eq("generations", gens.len(), 1)?;
    compare_generation(tok, &input, &gens[0])?;
    Ok(format!("1 call, {} ids", input.ids.len()))
}

fn compare_generation(
    tok: &TextTokenizer,
    input: &ModelInput,
    g: &Value,
) -> std::result::Result<(), String> {
    let want_ids: Vec<u32> = g["prompt"]["input_ids"]
        .as_array()
        .ok_or("prompt.input_ids missing")?
        .iter()
        .map(|v| v.as_u64().unwrap_or(u64::MAX) as u32)
        .collect();
    compare_ids(tok, &input.ids, &want_ids)?;

    let want_ph = g["audio_placeholders"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    expect_eq(
        "audio placeholder count",
        input.placeholders.len(),
        want_ph.len(),
    )?;
    let runs = input.expanded_runs();
    for (k, (ph, w)) in input.placeholders.iter().zip(&want_ph).enumerate() {
        let kind = match ph.kind {
            AudioKind::In => "audio_in",
            AudioKind::Out => "audio_out",
        };
        let run = runs
            .iter()
            .find(|r| match r.kind {
                RunKind::Audio {
                    source_position, ..
                }
                | RunKind::Unfilled { source_position } => source_position == ph.position,
                RunKind::Text { .. } => false,
            })
            .ok_or_else(|| format!("placeholder {k}: no expanded run"))?;
        let got = json!({
            "position": ph.position, "kind": kind, "audio_index": ph.audio_index,
            "kind_index": ph.kind_index, "expanded_start": run.start, "expanded_length": run.length,
        });
        let want = json!({
            "position": w["position"], "kind": w["kind"], "audio_index": w["audio_index"],
            "kind_index": w["kind_index"], "expanded_start": w["expanded_start"],
            "expanded_length": w["expanded_length"],
        });
        expect_eq(&format!("audio_placeholders[{k}]"), got, want)?;
        if ph.filled {
            let seg = &input.segments(ph.kind)[ph.kind_index];
            expect_eq(
                &format!("audio_placeholders[{k}].frames"),
                Some(seg.frames as u64),
                w["frames"].as_u64(),
            )?;
            let want_src = w["source"].as_str().unwrap_or("");
            expect_eq(
                &format!("audio_placeholders[{k}].source"),
                basename(&seg.label),
                basename(want_src),
            )?;
        }
    }

    for (kind, key) in [
        (AudioKind::In, "audio_in_ids"),
        (AudioKind::Out, "audio_out_ids"),
    ] {
        let w = &g["collated"][key];
        let present = kind == AudioKind::Out || input.audio_in.is_some();
        expect_eq(
            &format!("collated.{key}.present"),
            Some(present),
            w["present"].as_bool(),
        )?;
        if !present {
            continue;
        }
        let (rows, starts) = input.concat(kind);
        let shape = if rows.is_empty() {
            json!([0, 0])
        } else {
            json!([rows.len(), rows[0].len()])
        };
        expect_eq(&format!("collated.{key}.shape"), &shape, &w["shape"])?;
        expect_eq(
            &format!("collated.{key}.starts"),
            &json!(starts),
            &w["starts"],
        )?;
        for (s, (seg, ws)) in input
            .segments(kind)
            .iter()
            .zip(w["segments"].as_array().into_iter().flatten())
            .enumerate()
        {
            expect_eq(
                &format!("collated.{key}.segments[{s}].sha256"),
                Some(matrix_sha256(&seg.columns).as_str()),
                ws["sha256"].as_str(),
            )?;
        }
        expect_eq(
            &format!("collated.{key}.sha256"),
            Some(matrix_sha256(&rows).as_str()),
            w["sha256"].as_str(),
        )?;
    }

    let e = &g["expanded"];
    let got_runs: Vec<Value> = runs
        .iter()
        .map(|r| match r.kind {
            RunKind::Text { source_start } => {
                json!({"kind": "text", "start": r.start, "length": r.length, "source_start": source_start})
            }
            RunKind::Audio { kind, segment, source_position } => json!({
                "kind": if kind == AudioKind::In { "audio_in" } else { "audio_out" },
                "start": r.start, "length": r.length, "segment": segment, "source_position": source_position,
            }),
            RunKind::Unfilled { source_position } => json!({
                "kind": "unfilled_placeholder", "start": r.start, "length": r.length,
                "source_position": source_position,
            }),
        })
        .collect();
    let want_runs: Vec<Value> = e["runs"]
        .as_array()
        .ok_or("expanded.runs missing")?
        .iter()
        .map(|r| {
            let mut o = r.clone();
            if let Some(m) = o.as_object_mut() {
                m.remove("source");
                m.remove("token");
            }
            o
        })
        .collect();
    expect_eq(
        "expanded.length",
        Some(input.expanded_len() as u64),
        e["length"].as_u64(),
    )?;
    if let Some(k) =
        (0..got_runs.len().max(want_runs.len())).find(|&k| got_runs.get(k) != want_runs.get(k))
    {
        return Err(format!(
            "expanded.runs[{k}]: got {:?}, want {:?}",
            got_runs.get(k),
            want_runs.get(k)
        ));
    }
    let pos = input.position_ids();
    let identity = pos.iter().enumerate().all(|(i, &p)| i == p);
    expect_eq(
        "expanded.position_ids_are_identity",
        Some(identity),
        e["position_ids_are_identity"].as_bool(),
    )?;
    if !identity {
        expect_eq(
            "expanded.position_ids",
            json!(pos),
            e["position_ids"].clone(),
        )?;
        let masked: Vec<usize> = runs
            .iter()
            .filter(|r| matches!(r.kind, RunKind::Unfilled { .. }))
            .map(|r| r.start)
            .collect();
        expect_eq(
            "expanded.attention_mask_zero_positions",
            json!(masked),
            e["attention_mask_zero_positions"].clone(),
        )?;
    }
    Ok(())
}

fn compare_ids(tok: &TextTokenizer, got: &[u32], want: &[u32]) -> std::result::Result<(), String> {
    if got == want {
        return Ok(());
    }
    let k = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let show = |ids: &[u32]| -> String {
        ids.iter()
            .skip(k)
            .take(6)
            .map(|&i| format!("{i}:{}", tok.id_to_token(i).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Err(format!(
        "input_ids differ at {k} (len got {} / want {}): got [{}], want [{}]",
        got.len(),
        want.len(),
        show(got),
        show(want)
    ))
}
