//! Resamplers (spec: codec.md §2.1 and §5.1).
//!
//! * [`resample_24k_to_16k`]: the reference's semantic-branch resampler, a bit-faithful port of
//!   `torchaudio.functional.resample(x, 24000, 16000)` with its defaults (Hann-windowed sinc,
//!   lowpass_filter_width 6, rolloff 0.99). The kernel is built in f32 exactly as torchaudio
//!   builds it for a float32 waveform, so the HuBERT input matches the reference to ~1 ulp.
//! * [`resample`]: the general-rate resampler for voice prompts and uploads, the reference's
//!   own: `librosa.load(path, sr=24000)` resamples with libsoxr at `soxr_hq`, and so does this,
//!   through the `soxr` crate (libsoxr from the system, scripts/bootstrap.sh), configured as
//!   python-soxr configures it, with librosa's length fix. tests/resample.rs compares it with
//!   fixtures made by PyPI `soxr` (scripts/make-resample-fixtures.py).
//!
//! May use: error.

use crate::error::{Error, Result};
use rayon::prelude::*;
use soxr::format::Mono;
use soxr::params::{QualityRecipe, QualitySpec, RuntimeSpec};
use soxr::Soxr;

/// torchaudio's half-width for 24 kHz -> 16 kHz (reduced rates 3 -> 2): ceil(6·3/1.98).
const TA_WIDTH: usize = 10;
/// Reduced rates after dividing 24000 and 16000 by their gcd 8000.
const TA_ORIG: usize = 3;
const TA_NEW: usize = 2;
const TA_TAPS: usize = 2 * TA_WIDTH + TA_ORIG;

/// The two 23-tap phases of torchaudio's 24 -> 16 kHz kernel, built in f32 in torchaudio's
/// operation order (`_get_sinc_resample_kernel` with dtype float32).
fn torchaudio_kernel_24k_16k() -> [[f32; TA_TAPS]; TA_NEW] {
    let lowpass_filter_width = 6.0f32;
    // base_freq = min(3, 2) · 0.99, computed in f64 by Python, then used as an f32 scalar.
    let base_freq = (2.0f64 * 0.99) as f32;
    let scale = (2.0f64 * 0.99 / 3.0) as f32;
    let pi = std::f32::consts::PI;
    let mut k = [[0f32; TA_TAPS]; TA_NEW];
    for (j, row) in k.iter_mut().enumerate() {
        let shift = -(j as f32) / TA_NEW as f32;
        for (i, v) in row.iter_mut().enumerate() {
            let idx = (i as f32 - TA_WIDTH as f32) / TA_ORIG as f32;
            let mut t = (shift + idx) * base_freq;
            t = t.clamp(-lowpass_filter_width, lowpass_filter_width);
            let c = (t * pi / lowpass_filter_width / 2.0).cos();
            let window = c * c;
            t *= pi;
            let sinc = if t == 0.0 { 1.0 } else { t.sin() / t };
            *v = sinc * (window * scale);
        }
    }
    k
}

/// `torchaudio.functional.resample(x, 24000, 16000)`: output length ceil(2L/3).
pub fn resample_24k_to_16k(x: &[f32]) -> Vec<f32> {
    let kernel = torchaudio_kernel_24k_16k();
    let n = x.len();
    let n_out = (2 * n).div_ceil(3);
    // Zero-pad 10 on the left and 13 on the right (torchaudio pads (width, width + orig)).
    let at = |p: usize| -> f32 {
        if p < TA_WIDTH || p - TA_WIDTH >= n {
            0.0
        } else {
            x[p - TA_WIDTH]
        }
    };
    let mut y = vec![0f32; n_out];
    y.par_chunks_mut(4096).enumerate().for_each(|(c, out)| {
        for (o, v) in out.iter_mut().enumerate() {
            let k = c * 4096 + o;
            let (m, j) = (k / TA_NEW, k % TA_NEW);
            let base = TA_ORIG * m;
            let row = &kernel[j];
            let mut acc = 0f32;
            if base >= TA_WIDTH && base + TA_TAPS <= n + TA_WIDTH {
                let xs = &x[base - TA_WIDTH..base - TA_WIDTH + TA_TAPS];
                for (w, s) in row.iter().zip(xs) {
                    acc += w * s;
                }
            } else {
                for (i, w) in row.iter().enumerate() {
                    acc += w * at(base + i);
                }
            }
            *v = acc;
        }
    });
    y
}

/// Output length of [`resample`], as `librosa.resample` fixes it: `ceil(n * (to / from))` with
/// the ratio and the product in float64. This is not always the exact ceil(n·to/from): for
/// 44.1 -> 24 kHz every n that is a multiple of 147 makes an exact integer whose float product
/// lands one ulp above it, and the reference keeps the extra (zero-padded) sample.
pub fn resampled_len(n: usize, from_hz: u32, to_hz: u32) -> usize {
    if from_hz == to_hz || from_hz == 0 {
        return n;
    }
    let ratio = f64::from(to_hz) / f64::from(from_hz);
    (n as f64 * ratio).ceil() as usize
}

/// Input samples per `soxr_process` call, as python-soxr's `resample` feeds libsoxr:
/// `(size_t)(48000 * in_rate / out_rate)`, so about 48k output samples a call.
fn soxr_chunk_len(from_hz: u32, to_hz: u32) -> usize {
    ((48_000.0 * f64::from(from_hz) / f64::from(to_hz)) as usize).max(1)
}

/// Resample mono `x` from `from_hz` to `to_hz` as the reference's `librosa.load(path, sr=..)`
/// does: libsoxr with python-soxr's `quality="soxr_hq"` (recipe `SOXR_HQ` = 20-bit, flags 0 =
/// `SOXR_ROLLOFF_SMALL`, float32 in and out, scale 1, one thread), the input fed in
/// python-soxr's chunks, one flush, then `librosa.util.fix_length` to [`resampled_len`]
/// (zero-padded or trimmed). Spec: codec.md §2.1.
pub fn resample(x: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::Audio(format!(
            "cannot resample from {from_hz} Hz to {to_hz} Hz"
        )));
    }
    if from_hz == to_hz {
        return Ok(x.to_vec());
    }
    let soxr_err = |e: soxr::Error| {
        Error::Audio(format!(
            "libsoxr resampling {from_hz} Hz -> {to_hz} Hz: {}",
            e.as_str()
        ))
    };
    let quality = QualitySpec::new(QualityRecipe::high());
    let mut soxr = Soxr::<Mono<f32>>::new_with_params(
        f64::from(from_hz),
        f64::from(to_hz),
        quality,
        RuntimeSpec::new(1),
    )
    .map_err(soxr_err)?;
    // python-soxr's output buffer: (size_t)(ilen * out_rate / in_rate) + 1 samples; libsoxr
    // stops writing when it is full. fix_length never keeps more than ceil(..) <= that.
    let capacity = (x.len() as f64 * f64::from(to_hz) / f64::from(from_hz)) as usize + 1;
    let mut y = vec![0f32; capacity];
    let mut done = 0usize;
    for chunk in x.chunks(soxr_chunk_len(from_hz, to_hz)) {
        let p = soxr.process(chunk, &mut y[done..]).map_err(soxr_err)?;
        done += p.output_frames;
    }
    done += soxr.drain(&mut y[done..]).map_err(soxr_err)?;
    // librosa.util.fix_length: trim, or pad with zeros (y past `done` is still zero).
    y.truncate(done);
    y.resize(resampled_len(x.len(), from_hz, to_hz), 0.0);
    Ok(y)
}

/// Resample to the codec's 24 kHz.
pub fn resample_to_24k(x: &[f32], from_hz: u32) -> Result<Vec<f32>> {
    resample(x, from_hz, 24_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torchaudio_kernel_check_values() {
        let k = torchaudio_kernel_24k_16k();
        assert!((k[0][10] - 0.66).abs() < 1e-7);
        assert!((k[0][9] - 0.270_691_8).abs() < 1e-6 && k[0][9] == k[0][11]);
        assert!((k[1][11] - 0.543_885_6).abs() < 1e-6);
        let s0: f32 = k[0].iter().sum();
        let s1: f32 = k[1].iter().sum();
        assert!(
            (s0 - 1.0004).abs() < 1e-3 && (s1 - 1.0005).abs() < 1e-3,
            "{s0} {s1}"
        );
    }

    #[test]
    fn lengths_follow_ceil() {
        for n in [1usize, 2, 3, 4, 5, 100, 101] {
            assert_eq!(
                resample_24k_to_16k(&vec![0.1; n]).len(),
                (2 * n).div_ceil(3)
            );
        }
        assert_eq!(resampled_len(448_366, 44_100, 24_000), 244_009);
        assert_eq!(resampled_len(229_376, 22_050, 24_000), 249_661);
    }

    fn sine(n: usize, hz: f64, rate: f64) -> Vec<f32> {
        (0..n)
            .map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / rate).sin() as f32)
            .collect()
    }

    #[test]
    fn general_resampler_keeps_in_band_tones() {
        for from in [44_100u32, 22_050, 16_000, 48_000, 8_000, 44_056] {
            let hz = 1000.0;
            let x = sine(from as usize / 2, hz, f64::from(from));
            let y = resample(&x, from, 24_000).unwrap();
            assert_eq!(y.len(), resampled_len(x.len(), from, 24_000));
            let want = sine(y.len(), hz, 24_000.0);
            // Away from the edges the band-limited tone is reproduced almost exactly.
            let margin = 2000;
            let err = y[margin..y.len() - margin]
                .iter()
                .zip(&want[margin..])
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-4, "{from} Hz: max error {err}");
        }
    }

    #[test]
    fn general_resampler_rejects_above_nyquist() {
        // 15 kHz at 44.1 kHz is above the 12 kHz output Nyquist: it must vanish.
        let x = sine(44_100, 15_000.0, 44_100.0);
        let y = resample(&x, 44_100, 24_000).unwrap();
        let peak = y[2000..y.len() - 2000]
            .iter()
            .fold(0f32, |m, v| m.max(v.abs()));
        assert!(peak < 1e-5, "alias peak {peak}");
    }
}
