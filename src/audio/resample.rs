//! Resamplers (spec: codec.md §2.1 and §5.1).
//!
//! * [`resample_24k_to_16k`]: the reference's semantic-branch resampler, a bit-faithful port of
//!   `torchaudio.functional.resample(x, 24000, 16000)` with its defaults (Hann-windowed sinc,
//!   lowpass_filter_width 6, rolloff 0.99). The kernel is built in f32 exactly as torchaudio
//!   builds it for a float32 waveform, so the HuBERT input matches the reference to ~1 ulp.
//! * [`resample`]: a general-rate resampler for voice prompts (the reference uses librosa's
//!   `soxr_hq`). This one is a Kaiser-windowed sinc evaluated through a polyphase table, with a
//!   passband to 0.91 of the lower Nyquist, stopband from the lower Nyquist, and ~120 dB
//!   rejection. It differs from libsoxr HQ (a multi-stage FFT design with its own filter shape),
//!   so samples differ at the 1e-4 level in the top octave, but the alignment (output sample k
//!   sits at input time k·from/to, first samples coincide) and the output length
//!   ceil(n·to/from) are soxr's, so downstream frame counts are identical.
//!
//! May use: error.

use crate::error::{Error, Result};
use rayon::prelude::*;

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

/// Output length of [`resample`]: ceil(n·to/from), soxr's (and librosa's) length.
pub fn resampled_len(n: usize, from_hz: u32, to_hz: u32) -> usize {
    let num = n as u128 * u128::from(to_hz);
    num.div_ceil(u128::from(from_hz.max(1))) as usize
}

/// Stopband rejection of the general resampler, in dB (soxr HQ is specified at 20 bits).
const REJECTION_DB: f64 = 120.0;
/// Passband end as a fraction of the lower of the two Nyquist frequencies.
const PASSBAND_END: f64 = 0.91;
/// Most polyphase rows kept; odd rate pairs with more phases interpolate between rows.
const MAX_PHASES: usize = 4096;

/// A Kaiser-windowed sinc lowpass sampled on a polyphase grid: row p holds the taps for an
/// output that falls p/phases of an input sample after the tap grid's centre sample.
struct PolyphaseFilter {
    phases: usize,
    /// taps per row (even; the row spans input samples i0-half+1 ..= i0+half).
    taps: usize,
    /// (phases + 1) rows, so interpolation between row p and p+1 needs no wrap-around.
    table: Vec<f32>,
}

impl PolyphaseFilter {
    fn new(up: usize, down: usize) -> Self {
        // Normalised to the input rate: the lower Nyquist is 0.5·r cycles per input sample.
        let r = (up as f64 / down as f64).min(1.0);
        let transition = 0.5 * r * (1.0 - PASSBAND_END);
        // Kaiser's length formula for the given rejection and transition width.
        let length = (REJECTION_DB - 7.95) / (2.285 * 2.0 * std::f64::consts::PI * transition);
        let half = (length / 2.0).ceil() as usize;
        let beta = 0.1102 * (REJECTION_DB - 8.7);
        // Cutoff in the middle of the transition band; the sinc's gain c·r keeps DC gain 1.
        let cutoff = r * (1.0 + PASSBAND_END) / 2.0;
        let phases = up.min(MAX_PHASES);
        let taps = 2 * half;
        let i0_beta = bessel_i0(beta);
        let mut table = vec![0f32; (phases + 1) * taps];
        table.par_chunks_mut(taps).enumerate().for_each(|(p, row)| {
            let frac = p as f64 / phases as f64;
            for (j, v) in row.iter_mut().enumerate() {
                let tau = j as f64 - (half as f64 - 1.0) - frac;
                let u = tau / half as f64;
                if u.abs() >= 1.0 {
                    *v = 0.0;
                    continue;
                }
                let window = bessel_i0(beta * (1.0 - u * u).sqrt()) / i0_beta;
                let arg = std::f64::consts::PI * cutoff * tau;
                let sinc = if arg == 0.0 { 1.0 } else { arg.sin() / arg };
                *v = (cutoff * sinc * window) as f32;
            }
        });
        PolyphaseFilter {
            phases,
            taps,
            table,
        }
    }

    fn row(&self, p: usize) -> &[f32] {
        &self.table[p * self.taps..(p + 1) * self.taps]
    }
}

/// Modified Bessel function of the first kind, order 0 (power series; converges for all x).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let (mut term, mut sum, mut k) = (1.0f64, 1.0f64, 1.0f64);
    while term > sum * 1e-17 {
        term *= q / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Resample mono `x` from `from_hz` to `to_hz` (see the module comment for how this compares
/// with the reference's soxr_hq). Output sample k is the band-limited value at input time
/// k·from/to; the signal is zero outside its support. Length: [`resampled_len`].
pub fn resample(x: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::Audio(format!(
            "cannot resample from {from_hz} Hz to {to_hz} Hz"
        )));
    }
    if from_hz == to_hz {
        return Ok(x.to_vec());
    }
    let g = gcd(u64::from(from_hz), u64::from(to_hz));
    let (up, down) = (
        (u64::from(to_hz) / g) as usize,
        (u64::from(from_hz) / g) as usize,
    );
    let filter = PolyphaseFilter::new(up, down);
    let n = x.len();
    let n_out = resampled_len(n, from_hz, to_hz);
    let half = filter.taps / 2;
    let mut y = vec![0f32; n_out];
    let chunk = 4096;
    y.par_chunks_mut(chunk).enumerate().for_each(|(c, out)| {
        let mut interp = vec![0f32; filter.taps];
        for (o, v) in out.iter_mut().enumerate() {
            let k = (c * chunk + o) as u128;
            let pos = k * down as u128;
            let i0 = (pos / up as u128) as usize;
            let p = (pos % up as u128) as usize;
            // Map the exact phase p/up onto the table; with phases == up this is row p, w = 0.
            let num = p * filter.phases;
            let (row, rem) = (num / up, num % up);
            let coeffs: &[f32] = if rem == 0 {
                filter.row(row)
            } else {
                let w = rem as f32 / up as f32;
                let (a, b) = (filter.row(row), filter.row(row + 1));
                for ((d, &ca), &cb) in interp.iter_mut().zip(a).zip(b) {
                    *d = ca + w * (cb - ca);
                }
                &interp
            };
            // Taps cover input samples i0 - half + 1 ..= i0 + half.
            let first = i0 as isize - half as isize + 1;
            let lo = (-first).max(0) as usize;
            let hi = ((n as isize - first).max(0) as usize).min(filter.taps);
            let mut acc = 0f32;
            if lo < hi {
                let xs = &x[(first + lo as isize) as usize..(first + hi as isize) as usize];
                for (w, s) in coeffs[lo..hi].iter().zip(xs) {
                    acc += w * s;
                }
            }
            *v = acc;
        }
    });
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
