//! Fuzz targets for every parser that reads user-supplied files: the safetensors header and the
//! shard index, the `model.pth` pickle (alone and inside its zip), the LLM and codec
//! `config.json`, `.npy` code files, WAV and every decoded audio container (FLAC, MP3, AAC,
//! Ogg Vorbis); tests/fuzz_server.rs fuzzes the server's request bodies. Each target feeds arbitrary bytes and structured
//! mutations (flip, insert, delete, truncate, overwrite with boundary values; for JSON, a field
//! replaced by a hostile value) of the fixture files, and asserts the parser returns Ok or a
//! clean Err: no panic, no allocation above `ALLOC_CAP`, and an accepted config yields finite
//! derived values. proptest drives the inputs (stable Rust, runs under `cargo test`).
//!
//! Bounded by default (`HIGGS_FUZZ_CASES`, default 2000 per target); `scripts/fuzz.sh SECONDS`
//! sets `HIGGS_FUZZ_SECONDS` to run each target for that long instead. Failures found are kept
//! as regression cases in tests/hostile_input.rs. spec: issue 12 §2.

use higgs_engine::audio::decode::{decode_bytes, probe_bytes, DecodeLimits};
use higgs_engine::audio::encode::{encode_all, AudioFormat};
use higgs_engine::codec::config::CodecConfig;
use higgs_engine::codec::npy;
use higgs_engine::codec::pth;
use higgs_engine::config::ModelConfig;
use higgs_engine::weights::safetensors::{self as st, Checkpoint};
use proptest::prelude::*;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

#[path = "common/fuzz_harness.rs"]
mod harness;
use harness::*;

#[test]
fn fuzz_safetensors_header() {
    let base = std::fs::read(fixture("llm/model.safetensors")).unwrap();
    let header_len = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let p = Path::new("fuzz.safetensors");
    fuzz("safetensors", bytes_or_mutation(base, header_len), |b| {
        if let Ok(t) = st::deserialize(p, &b) {
            for (name, view) in t.tensors() {
                let _ = st::view_to_storage(p, &name, &view);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_shard_index() {
    let dir = scratch("index");
    std::fs::copy(
        fixture("llm/model.safetensors"),
        dir.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    let bytes = std::fs::read(fixture("llm/model.safetensors")).unwrap();
    let names: Vec<String> = st::deserialize(Path::new("x"), &bytes)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect();
    let map: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| (n.clone(), "model-00001-of-00001.safetensors".into()))
        .collect();
    let index = serde_json::json!({"metadata": {"total_size": 1}, "weight_map": map}).to_string();
    let seq = AtomicUsize::new(0);
    fuzz("shard-index", json_mutation(index), |text| {
        // One file per case: the index is read from the folder.
        let case = dir.join(format!("c{}", seq.fetch_add(1, Ordering::Relaxed) % 4));
        std::fs::create_dir_all(&case).unwrap();
        let shard = case.join("model-00001-of-00001.safetensors");
        if !shard.exists() {
            std::fs::hard_link(dir.join("model-00001-of-00001.safetensors"), &shard)
                .or_else(|_| {
                    std::fs::copy(dir.join("model-00001-of-00001.safetensors"), &shard).map(|_| ())
                })
                .unwrap();
        }
        std::fs::write(case.join("model.safetensors.index.json"), text).unwrap();
        if let Ok(ck) = Checkpoint::open(&case) {
            // Every path it opened must be inside the case folder.
            let root = case.canonicalize().unwrap();
            for k in ck.keys().cloned().collect::<Vec<_>>() {
                if let Ok(info) = ck.info(&k) {
                    prop_assert!(info.file.canonicalize().unwrap().starts_with(&root));
                }
            }
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn fixture_pickle() -> Vec<u8> {
    use std::io::Read;
    let mut z =
        zip::ZipArchive::new(std::fs::File::open(fixture("codec/model.pth")).unwrap()).unwrap();
    let name = (0..z.len())
        .map(|i| z.name_for_index(i).unwrap().to_string())
        .find(|n| n.ends_with("data.pkl"))
        .unwrap();
    let mut b = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut b).unwrap();
    b
}

#[test]
fn fuzz_pickle() {
    let base = fixture_pickle();
    let p = Path::new("fuzz.pkl");
    fuzz("pickle", bytes_or_mutation(base, 0), |b| {
        if let Ok(refs) = pth::parse_state_dict_pickle(p, &b) {
            // Geometry checks must be clean on any view the pickle can describe.
            for (k, t) in &refs {
                let _ = pth::view_extent(p, k, t);
                let _ = pth::materialize(p, k, t, &[0u8; 64]);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_pth_zip() {
    let base = std::fs::read(fixture("codec/model.pth")).unwrap();
    let dir = scratch("pth");
    let seq = AtomicUsize::new(0);
    // Most edits land in the first 100 kB: local headers, data.pkl and the first storages.
    fuzz("pth-zip", bytes_or_mutation(base, 100_000), |b| {
        let f = dir.join(format!("m{}.pth", seq.fetch_add(1, Ordering::Relaxed) % 4));
        std::fs::write(&f, &b).unwrap();
        let _ = pth::read_pth(&f);
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fuzz_llm_config() {
    let text = std::fs::read_to_string(fixture("llm/config.json")).unwrap();
    let p = Path::new("config.json");
    fuzz("llm-config", json_mutation(text), |t| {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
            return Ok(());
        };
        if let Ok(c) = ModelConfig::from_json(p, &v) {
            prop_assert!(c.rope_inv_freq().iter().all(|f| f.is_finite()));
            prop_assert!(c.rms_eps > 0.0);
            let _ = (c.q_dim(), c.kv_dim(), c.codebook_rows());
        }
        Ok(())
    });
}

#[test]
fn fuzz_codec_config() {
    let text = std::fs::read_to_string(fixture("codec/config.json")).unwrap();
    let p = Path::new("config.json");
    fuzz("codec-config", json_mutation(text), |t| {
        if let Ok(c) = CodecConfig::from_json(p, &t) {
            let _ = (
                c.hop_length(),
                c.frame_rate(),
                c.quantizer_dim(),
                c.encoder_out_channels(),
                c.semantic_downsample_factor(),
                c.n_q_for_bandwidth(Some(1.5)),
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_npy() {
    let dir = scratch("npy");
    let good = dir.join("good.npy");
    npy::write_codes(&good, &[vec![1, 2, 3, 4], vec![5, 6, 7, 63]]).unwrap();
    let base = std::fs::read(&good).unwrap();
    let seq = AtomicUsize::new(0);
    fuzz("npy", bytes_or_mutation(base, 64), |b| {
        let _ = npy::parse_npy(Path::new("fuzz.npy"), &b);
        // The code-file path too (shape and value checks), on a few of the cases.
        let i = seq.fetch_add(1, Ordering::Relaxed);
        if i.is_multiple_of(8) {
            let f = dir.join(format!("c{}.npy", i % 4));
            std::fs::write(&f, &b).unwrap();
            if let Ok(codes) = npy::read_codes(&f) {
                prop_assert!(!codes.is_empty() && !codes[0].is_empty());
                let _ = npy::check_codes(&f, &codes, 8, 64);
            }
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A short 16-bit WAV (two tones, 0.1 s at 16 kHz).
fn small_wav() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cur = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for i in 0..3200 {
        w.write_sample(((i * 97) % 20_000 - 10_000) as i16).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

/// A decode that succeeded must respect the limits and give finite samples.
fn check_decoded(
    r: higgs_engine::Result<higgs_engine::audio::wav::Waveform>,
    limits: &DecodeLimits,
) -> Result<(), TestCaseError> {
    if let Ok(w) = r {
        prop_assert!((limits.min_rate_hz..=limits.max_rate_hz).contains(&w.sample_rate_hz));
        let max = (limits.max_seconds * f64::from(w.sample_rate_hz)) as usize;
        prop_assert!(
            w.samples.len() <= max,
            "{} samples past the cap",
            w.samples.len()
        );
        prop_assert!(w.samples.iter().all(|s| s.is_finite()));
    }
    Ok(())
}

#[test]
fn fuzz_wav() {
    let limits = DecodeLimits {
        max_seconds: 5.0,
        ..DecodeLimits::default()
    };
    fuzz("wav", bytes_or_mutation(small_wav(), 44), |b| {
        check_decoded(decode_bytes(&b, &limits), &limits)?;
        let _ = probe_bytes(&b, &limits);
        let _ = higgs_engine::audio::wav::read_wav_bytes(&b);
        Ok(())
    });
}

/// Ogg Vorbis from libvorbis (an encoder independent of ours), mono 24 kHz.
fn ogg_vorbis(x: &[f32]) -> Vec<u8> {
    use std::num::{NonZeroU32, NonZeroU8};
    let mut enc = vorbis_rs::VorbisEncoderBuilder::new_with_serial(
        NonZeroU32::new(24_000).unwrap(),
        NonZeroU8::new(1).unwrap(),
        Vec::new(),
        1,
    )
    .build()
    .unwrap();
    for block in x.chunks(1024) {
        enc.encode_audio_block([block]).unwrap();
    }
    enc.finish().unwrap()
}

#[test]
fn fuzz_audio_formats() {
    // Every container the upload decoder accepts, as our encoders write them.
    let signal: Vec<f32> = (0..4800).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let mut bases: Vec<Vec<u8>> = [AudioFormat::Flac, AudioFormat::Mp3, AudioFormat::Aac]
        .into_iter()
        .map(|f| encode_all(f, &signal).unwrap())
        .collect();
    bases.push(ogg_vorbis(&signal));
    let limits = DecodeLimits {
        max_seconds: 5.0,
        ..DecodeLimits::default()
    };
    let strategy =
        (0..bases.len()).prop_flat_map(move |k| bytes_or_mutation(bases[k].clone(), 256));
    fuzz("audio_formats", strategy, |b| {
        check_decoded(decode_bytes(&b, &limits), &limits)?;
        let _ = probe_bytes(&b, &limits);
        Ok(())
    });
}
