//! The general-rate resampler against the reference's (spec: codec.md §2.1): fixtures written by
//! scripts/make-resample-fixtures.py from PyPI `soxr` exactly as `librosa.load(path, sr=24000)`
//! calls it (soxr_hq, float32, then librosa's fix_length), for 44.1, 22.05, 16 and 48 kHz input.

use std::path::{Path, PathBuf};

use higgs_engine::audio::resample::{resample, resampled_len};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resample")
}

fn read_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(bytes.len() % 4, 0, "{}", path.display());
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Max abs difference against python-soxr's output allowed: libsoxr is the same library, but
/// the system build (Debian 0.1.3) and the wheel's (0.1.3 + later commits) may differ in SIMD
/// code paths and compiler contraction.
const TOL: f32 = 1e-6;

#[test]
fn matches_python_soxr_hq_as_librosa_calls_it() {
    for from_hz in [44_100u32, 22_050, 16_000, 48_000] {
        let x = read_f32(&fixture_dir().join(format!("in_{from_hz}.f32")));
        let want = read_f32(&fixture_dir().join(format!("out_{from_hz}_24000.f32")));
        let got = resample(&x, from_hz, 24_000).unwrap();
        assert_eq!(got.len(), want.len(), "{from_hz} Hz: length");
        let (mut worst, mut at) = (0f32, 0usize);
        for (i, (a, b)) in got.iter().zip(&want).enumerate() {
            let d = (a - b).abs();
            if d > worst {
                (worst, at) = (d, i);
            }
        }
        println!(
            "{from_hz} Hz -> 24 kHz: {} samples, max |diff| {worst:e} at {at}",
            got.len()
        );
        assert!(
            worst <= TOL,
            "{from_hz} Hz: max |diff| {worst:e} at sample {at} (ours {}, soxr {})",
            got[at],
            want[at]
        );
    }
}

#[test]
fn length_is_librosas_float_ceil() {
    // 22050 and 44100 samples are multiples of 147: n·(24000/44100) in float64 lands just above
    // the exact integer, and librosa keeps one more sample than ceil(n·24000/44100) would.
    assert_eq!(resampled_len(22_050, 44_100, 24_000), 12_001);
    assert_eq!(resampled_len(11_025, 22_050, 24_000), 12_001);
    assert_eq!(resampled_len(8_000, 16_000, 24_000), 12_000);
    assert_eq!(resampled_len(24_000, 48_000, 24_000), 12_000);
    assert_eq!(resampled_len(448_366, 44_100, 24_000), 244_009);
    assert_eq!(resampled_len(7, 24_000, 24_000), 7);
    for n in [0usize, 1, 2, 146, 147, 148, 1000] {
        let y = resample(&vec![0.25; n], 44_100, 24_000).unwrap();
        assert_eq!(y.len(), resampled_len(n, 44_100, 24_000), "n = {n}");
    }
}

#[test]
fn rejects_zero_rates() {
    assert!(resample(&[0.0; 4], 0, 24_000).is_err());
    assert!(resample(&[0.0; 4], 44_100, 0).is_err());
}
