//! Codec encode side against the reference fixtures (tests/fixtures/reference/codec): every
//! intermediate of the `encode`, `encode_odd` and `voice_clone_ref` cases within 1e-4 of the
//! tensor's scale, identical codes, the exact 24 -> 16 kHz resampler, WAV reading, and the real
//! voice clips (`/work/shared/voices`, or `HIGGS_VOICES_DIR`). spec: codec.md §2, §4–§6.

use higgs_engine::audio::resample::{resample_24k_to_16k, resample_to_24k, resampled_len};
use higgs_engine::audio::wav::read_wav;
use higgs_engine::codec::encode::EncodeTrace;
use higgs_engine::codec::AudioTokenizer;
use higgs_engine::Error;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/codec")
}

fn expected_bytes() -> Vec<u8> {
    std::fs::read(fixture_dir().join("expected.safetensors")).expect("read expected.safetensors")
}

/// A float tensor of expected.safetensors with its shape.
fn expected_f32(bytes: &[u8], name: &str) -> (Vec<usize>, Vec<f32>) {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
    let data = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v.shape().to_vec(), data)
}

/// An int64 code matrix `[n_q, T]` of expected.safetensors.
fn expected_codes(bytes: &[u8], name: &str) -> Vec<Vec<u32>> {
    let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::I64, "{name}");
    let t = *v.shape().last().unwrap();
    let flat: Vec<u32> = v
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect();
    flat.chunks(t.max(1)).map(<[u32]>::to_vec).collect()
}

/// Max |got - want| relative to the reference tensor's max |value|; fails above `tol`.
fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        assert!(a.is_finite(), "{what}: non-finite value at {i}");
        let e = (a - b).abs() / scale;
        if e > worst {
            (worst, at) = (e, i);
        }
    }
    println!("{what}: max relative error {worst:.3e} (at {at}, scale {scale:.3e})");
    assert!(
        worst <= tol,
        "{what}: max relative error {worst:e} at {at}: {} vs {}",
        got[at],
        want[at]
    );
}

fn codec() -> AudioTokenizer {
    AudioTokenizer::load(&fixture_dir()).expect("load fixture codec")
}

const TOL: f32 = 1e-4;

fn check_case(tok: &AudioTokenizer, bytes: &[u8], case: &str, wav_file: &str, intermediates: bool) {
    let (_, wave) = expected_f32(bytes, &format!("{case}.waveform"));
    // The WAV on disk is the same signal: int16 / 32768 exactly.
    let from_file = read_wav(&fixture_dir().join(wav_file)).unwrap();
    assert_eq!(from_file.sample_rate_hz, 24_000);
    assert_eq!(
        from_file.samples, wave,
        "{case}: WAV read differs from the float input"
    );

    let tr: EncodeTrace = tok.encode_trace(&wave).unwrap();
    let want_codes = expected_codes(bytes, &format!("{case}.codes"));
    let t = want_codes[0].len();
    assert_eq!(tr.frames, t, "{case}: frame count");
    assert_eq!(
        t,
        (wave.len() + 841) / 960,
        "{case}: T = floor((L + 841) / 960)"
    );
    if intermediates {
        let e = |n: &str| expected_f32(bytes, &format!("{case}.{n}")).1;
        assert_close(
            &format!("{case}.hubert_input"),
            &tr.semantic.hubert_input,
            &e("hubert_input"),
            1e-5,
        );
        let states: Vec<f32> = tr.semantic.hidden_states.concat();
        assert_close(
            &format!("{case}.hubert_hidden_states"),
            &states,
            &e("hubert_hidden_states"),
            TOL,
        );
        assert_close(
            &format!("{case}.semantic_mean"),
            &tr.semantic.mean,
            &e("semantic_mean"),
            TOL,
        );
        assert_close(
            &format!("{case}.semantic_target"),
            &tr.semantic.target,
            &e("semantic_target"),
            TOL,
        );
        assert_close(
            &format!("{case}.e_semantic"),
            &tr.e_semantic,
            &e("e_semantic"),
            TOL,
        );
        assert_close(
            &format!("{case}.e_acoustic_call0"),
            &tr.e_acoustic_call0.0,
            &e("e_acoustic_call0"),
            TOL,
        );
        let st = safetensors::SafeTensors::deserialize(bytes).unwrap();
        let has_call1 = st.tensor(&format!("{case}.e_acoustic_call1")).is_ok();
        assert_eq!(
            tr.e_acoustic_call1.is_some(),
            has_call1,
            "{case}: re-encode path"
        );
        if let Some((call1, _)) = &tr.e_acoustic_call1 {
            assert_close(
                &format!("{case}.e_acoustic_call1"),
                call1,
                &e("e_acoustic_call1"),
                TOL,
            );
        }
        assert_close(
            &format!("{case}.fc_prior_out"),
            &tr.fc_prior_out,
            &e("fc_prior_out"),
            TOL,
        );
        assert_close(
            &format!("{case}.quantized_sum"),
            &tr.quantized_sum,
            &e("quantized_sum"),
            TOL,
        );
    }
    assert_eq!(tr.codes, want_codes, "{case}: codes");
    // The file path (WAV read, already 24 kHz) gives the same codes.
    assert_eq!(
        tok.encode_file(&fixture_dir().join(wav_file)).unwrap(),
        want_codes,
        "{case}: encode_file"
    );
}

#[test]
fn encode_matches_reference() {
    check_case(
        &codec(),
        &expected_bytes(),
        "encode",
        "test_signal.wav",
        true,
    );
}

#[test]
fn encode_odd_matches_reference_with_repad() {
    check_case(
        &codec(),
        &expected_bytes(),
        "encode_odd",
        "test_signal_odd.wav",
        true,
    );
}

#[test]
fn voice_clone_ref_codes_match_reference() {
    check_case(
        &codec(),
        &expected_bytes(),
        "voice_clone_ref",
        "ref_signal.wav",
        false,
    );
}

#[test]
fn resampler_matches_torchaudio_fixture() {
    let bytes = expected_bytes();
    for case in ["encode", "encode_odd"] {
        let (_, wave) = expected_f32(&bytes, &format!("{case}.waveform"));
        let (_, want) = expected_f32(&bytes, &format!("{case}.hubert_input"));
        let y = resample_24k_to_16k(&wave);
        assert_eq!(y.len() + 320, want.len(), "{case}: ceil(2L/3) + 2·160");
        assert!(want[..160]
            .iter()
            .chain(&want[want.len() - 160..])
            .all(|&v| v == 0.0));
        let err = y
            .iter()
            .zip(&want[160..])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("{case}: resampler max abs error {err:e}");
        assert!(err <= 1e-5, "{case}: resampler max abs error {err}");
    }
}

#[test]
fn round_trip_decode_of_fixture_codes() {
    let tok = codec();
    let bytes = expected_bytes();
    let codes = expected_codes(&bytes, "encode.codes");
    let (_, want) = expected_f32(&bytes, "encode.roundtrip_waveform");
    let y = tok.decode(&codes).unwrap();
    assert_close("encode.roundtrip_waveform", &y, &want, TOL);
}

#[test]
fn too_short_clips_are_clear_errors() {
    let tok = codec();
    let enc = tok.encoder().unwrap();
    assert_eq!(
        enc.min_samples(),
        632,
        "spec §2.2: the reference fails below 632 samples"
    );
    for n in [0usize, 1, 100, 631] {
        match tok.encode(&vec![0.01; n]) {
            Err(Error::Audio(m)) => assert!(m.contains("too short"), "{m}"),
            other => panic!("{n} samples: expected an audio error, got {other:?}"),
        }
    }
    let codes = tok.encode(&vec![0.01; 632]).unwrap();
    assert_eq!(codes[0].len(), (632 + 841) / 960);
    assert!(matches!(
        tok.encode(&[f32::NAN; 2000]),
        Err(Error::Audio(_))
    ));
}

#[test]
fn frame_counts_follow_the_three_ranges() {
    // r <= 118: no re-encode; 119..=631: re-encode; >= 632: no re-encode (spec §2.2).
    let tok = codec();
    for (l, repad) in [
        (1920 + 100, false),
        (1920 + 119, true),
        (1920 + 631, true),
        (1920 + 632, false),
        (2880, false),
    ] {
        let x: Vec<f32> = (0..l).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
        let tr = tok.encode_trace(&x).unwrap();
        assert_eq!(tr.frames, (l + 841) / 960, "L = {l}");
        assert_eq!(tr.e_acoustic_call1.is_some(), repad, "L = {l}");
    }
}

fn voices_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("HIGGS_VOICES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/voices"));
    if dir.is_dir() {
        Some(dir)
    } else {
        println!(
            "skipped: no voice clips at {} (set HIGGS_VOICES_DIR)",
            dir.display()
        );
        None
    }
}

/// (name, sample rate, n_samples, n_24k) of the clips the prompt fixtures list.
fn listed_voices() -> Vec<(String, u32, usize, usize)> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/prompts/cases.json");
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let Some(voices) = v["voices"].as_object() else {
        return Vec::new();
    };
    voices
        .iter()
        .map(|(name, e)| {
            (
                name.clone(),
                e["sample_rate_hz"].as_u64().unwrap() as u32,
                e["n_samples"].as_u64().unwrap() as usize,
                e["n_samples_24k"].as_u64().unwrap() as usize,
            )
        })
        .collect()
}

#[test]
fn voice_clip_lengths_match_soxr() {
    let Some(dir) = voices_dir() else { return };
    for (name, sr, n, n24) in listed_voices() {
        assert_eq!(
            resampled_len(n, sr, 24_000),
            n24,
            "{name}: ceil(n·24000/sr)"
        );
        let path = dir.join(format!("{name}.wav"));
        if !path.is_file() {
            println!("skipped {name}: {} is absent", path.display());
            continue;
        }
        let w = read_wav(&path).unwrap();
        assert_eq!((w.sample_rate_hz, w.samples.len()), (sr, n), "{name}");
        assert_eq!(
            resample_to_24k(&w.samples, sr).unwrap().len(),
            n24,
            "{name}"
        );
    }
}

#[test]
fn voice_clips_encode_and_round_trip() {
    let Some(dir) = voices_dir() else { return };
    let tok = codec();
    let mut clips: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    clips.sort();
    assert!(!clips.is_empty(), "no .wav in {}", dir.display());
    for path in clips {
        let w = read_wav(&path).unwrap();
        assert!(
            w.samples.iter().all(|v| v.is_finite()),
            "{}",
            path.display()
        );
        let x = resample_to_24k(&w.samples, w.sample_rate_hz).unwrap();
        assert_eq!(
            x.len(),
            resampled_len(w.samples.len(), w.sample_rate_hz, 24_000)
        );
        assert!(x.iter().all(|v| v.is_finite()));
        let tr = tok.encode_trace(&x).unwrap();
        let t = tr.frames;
        assert_eq!(t, (x.len() + 841) / 960, "{}", path.display());
        assert!(
            tr.fc_prior_out.iter().all(|v| v.is_finite()),
            "{}: NaN in the latent",
            path.display()
        );
        assert!(tr.codes.iter().all(|row| row.len() == t));
        assert_eq!(
            tok.encode_file(&path).unwrap(),
            tr.codes,
            "{}: encode_file",
            path.display()
        );
        let y = tok.decode(&tr.codes).unwrap();
        assert_eq!(y.len(), 960 * t, "{}", path.display());
        assert!(y.iter().all(|v| v.is_finite()));
        println!(
            "{}: {} Hz, {} samples -> {} at 24 kHz -> {t} frames",
            path.display(),
            w.sample_rate_hz,
            w.samples.len(),
            x.len()
        );
    }
}

fn released_random_weights() -> (
    higgs_engine::codec::CodecConfig,
    higgs_engine::weights::WeightMap,
) {
    let cfg = higgs_engine::codec::CodecConfig::released();
    let w = higgs_engine::codec::weights::random_encode_weights(&cfg, 12345);
    (cfg, w)
}

#[test]
#[ignore = "timing of the released shapes on random weights; run by hand"]
fn released_shapes_encode_timing() {
    use higgs_engine::codec::encode::CodecEncoder;
    use higgs_engine::codec::encoder::AcousticEncoder;
    use higgs_engine::codec::hubert::{Hubert, HubertConfig};
    use higgs_engine::codec::rvq::Rvq;
    let (cfg, mut w) = released_random_weights();
    let rvq = Rvq::from_weights(&cfg, &mut w).unwrap();
    let secs = 5usize;
    let x: Vec<f32> = (0..24_000 * secs)
        .map(|i| ((i as f32) * 0.031).sin() * 0.3)
        .collect();
    let t0 = std::time::Instant::now();
    let ac = AcousticEncoder::new(&cfg, &w).unwrap().forward(&x).unwrap();
    println!("acoustic encoder: {:?} ({} frames)", t0.elapsed(), ac.1);
    let hubert = Hubert::new(HubertConfig::base(), &w, "semantic_model.").unwrap();
    let x16 = vec![0.1f32; 16_000 * secs + 320];
    let t0 = std::time::Instant::now();
    let states = hubert.forward(&x16).unwrap();
    println!("hubert: {:?} ({} states)", t0.elapsed(), states.len());
    let enc = CodecEncoder::new(&cfg, &w, HubertConfig::base(), &rvq).unwrap();
    let t0 = std::time::Instant::now();
    let tr = enc.trace(&x).unwrap();
    println!(
        "full encode of {secs} s: {:?} ({} frames)",
        t0.elapsed(),
        tr.frames
    );
    assert_eq!(tr.frames, 25 * secs);
}
