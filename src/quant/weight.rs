//! A Linear weight `[out, k]` quantized to FP8 E4M3 with one f32 scale per output row
//! (W8A16: only the weight is quantized; activations stay f32 on the CPU, bf16 on the GPU).
//! Row `r` is stored as codes `encode(w[r, j] / scale[r])` with `scale[r] = max_j |w[r, j]| /
//! 448`, so the largest magnitude of each row lands on E4M3's largest finite value and the
//! row uses the whole exponent range. Dequantized: `decode(code) · scale[r]`.
//! May use: quant::fp8, error.

use super::fp8;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// `[out, k]` E4M3 codes, row-major, plus one scale per row.
#[derive(Clone, Debug)]
pub struct Fp8Weight {
    out: usize,
    k: usize,
    codes: Vec<u8>,
    scales: Vec<f32>,
}

/// The scale of a row whose largest magnitude is `amax`. A zero row gets 1 (any scale
/// reproduces zeros; 1 keeps `code · scale` finite). Scales are kept at or above the
/// smallest normal f32 so that `w / scale` of a row of f32-subnormal values stays finite.
pub fn row_scale(amax: f32) -> f32 {
    if amax == 0.0 {
        1.0
    } else {
        (amax / fp8::MAX).max(f32::MIN_POSITIVE)
    }
}

impl Fp8Weight {
    /// Quantizes an `[out, k]` weight whose row `r` `read_row(r, buf)` writes into `buf`
    /// (`k` f32s). Rows are quantized in parallel. Errors on a non-finite weight, naming
    /// the row (a NaN or infinity would poison the row's scale).
    pub fn quantize(
        out: usize,
        k: usize,
        read_row: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Result<Self> {
        let mut codes = vec![0u8; out * k];
        let mut scales = vec![1f32; out];
        codes
            .par_chunks_mut(k.max(1))
            .zip(scales.par_iter_mut())
            .enumerate()
            .try_for_each_init(
                || vec![0f32; k],
                |buf, (r, (row_codes, scale))| {
                    read_row(r, buf);
                    let mut amax = 0f32;
                    for &v in buf.iter() {
                        if !v.is_finite() {
                            return Err(Error::Unsupported(format!(
                                "fp8 quantization: row {r} of a {out}x{k} weight holds {v}"
                            )));
                        }
                        amax = amax.max(v.abs());
                    }
                    *scale = row_scale(amax);
                    let s = *scale;
                    for (c, &v) in row_codes.iter_mut().zip(buf.iter()) {
                        // A division, not a multiply by 1/scale: one rounding, so the row's
                        // maximum maps to 448 (or a hair above, which saturates to it).
                        *c = fp8::encode(v / s);
                    }
                    Ok(())
                },
            )?;
        Ok(Fp8Weight {
            out,
            k,
            codes,
            scales,
        })
    }

    /// Quantizes a row-major `[out, k]` f32 slice.
    pub fn quantize_f32(w: &[f32], out: usize, k: usize) -> Result<Self> {
        if w.len() != out * k {
            return Err(Error::Shape {
                op: "Fp8Weight::quantize_f32",
                arg: "w",
                expected: format!("{} elements for [{out}, {k}]", out * k),
                got: w.len().to_string(),
            });
        }
        Self::quantize(out, k, |r, buf| buf.copy_from_slice(&w[r * k..(r + 1) * k]))
    }

    /// A weight from its parts (e.g. downloaded from a device), checked for size, NaN codes
    /// and non-finite scales.
    pub fn from_parts(out: usize, k: usize, codes: Vec<u8>, scales: Vec<f32>) -> Result<Self> {
        if codes.len() != out * k || scales.len() != out {
            return Err(Error::Shape {
                op: "Fp8Weight::from_parts",
                arg: "codes/scales",
                expected: format!("{} codes and {out} scales", out * k),
                got: format!("{} codes and {} scales", codes.len(), scales.len()),
            });
        }
        if let Some(i) = codes.iter().position(|&c| c & 0x7F == fp8::NAN_CODE) {
            return Err(Error::Unsupported(format!(
                "Fp8Weight::from_parts: code {i} is NaN"
            )));
        }
        if let Some(r) = scales.iter().position(|s| !s.is_finite()) {
            return Err(Error::Unsupported(format!(
                "Fp8Weight::from_parts: scale of row {r} is {}",
                scales[r]
            )));
        }
        Ok(Fp8Weight {
            out,
            k,
            codes,
            scales,
        })
    }

    /// (out, k).
    pub fn dims(&self) -> (usize, usize) {
        (self.out, self.k)
    }
    pub fn codes(&self) -> &[u8] {
        &self.codes
    }
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }
    /// Bytes held: one per code plus four per row scale.
    pub fn byte_count(&self) -> usize {
        self.codes.len() + 4 * self.scales.len()
    }

    /// Dequantized elements `start..start + dst.len()` of the row-major weight (may span
    /// rows): `decode(code) · scale[row]`, one f32 rounding per element.
    #[inline]
    pub fn read_f32(&self, start: usize, dst: &mut [f32]) {
        let k = self.k.max(1);
        let mut i = 0;
        while i < dst.len() {
            let at = start + i;
            let (row, col) = (at / k, at % k);
            let run = (k - col).min(dst.len() - i);
            let s = self.scales[row];
            // Codes are never NaN (quantize cannot make one, from_parts refuses them), so the
            // vectorisable bit decode is exact here.
            for (d, &c) in dst[i..i + run].iter_mut().zip(&self.codes[at..at + run]) {
                *d = fp8::decode_finite(c) * s;
            }
            i += run;
        }
    }

    /// The whole weight dequantized to f32, row-major.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.codes.len()];
        v.par_chunks_mut(self.k.max(1))
            .enumerate()
            .for_each(|(r, row)| self.read_f32(r * self.k, row));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Per element: |dequant(w) - w| <= 2^-4 · |w| where w / scale is an E4M3 normal
    /// (3 mantissa bits: half a unit in the last place is 2^-4 of the binade's lower
    /// end), and <= 2^-10 · scale where it falls among the subnormals (spacing 2^-9, half
    /// of it), with 1e-6 relative slack for the f32 division and multiplication.
    fn check_bound(w: &[f32], q: &Fp8Weight) {
        let (out, k) = q.dims();
        let d = q.dequantize();
        for r in 0..out {
            let s = q.scales()[r];
            for j in 0..k {
                let (x, y) = (w[r * k + j], d[r * k + j]);
                assert!(y.is_finite(), "row {r} col {j}: {y}");
                let bound = (x.abs() * 2f32.powi(-4)).max(s * 2f32.powi(-10)) * (1.0 + 1e-6);
                assert!(
                    (y - x).abs() <= bound,
                    "row {r} col {j}: w {x:e} -> {y:e}, error {:e} > bound {bound:e}",
                    (y - x).abs()
                );
            }
        }
    }

    #[test]
    fn quantize_dequantize_within_bound() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        for &(out, k) in &[(1, 1), (3, 7), (64, 300), (17, 1000)] {
            // Rows of very different magnitudes, some with outliers.
            let w: Vec<f32> = (0..out * k)
                .map(|i| {
                    let row_mag = 10f32.powi((i / k) as i32 % 7 - 4);
                    let v: f32 = rng.gen_range(-1.0..1.0) * row_mag;
                    if rng.gen_range(0..50) == 0 {
                        v * 30.0
                    } else {
                        v
                    }
                })
                .collect();
            let q = Fp8Weight::quantize_f32(&w, out, k).unwrap();
            check_bound(&w, &q);
            // Each row's largest magnitude maps to ±448 exactly.
            for r in 0..out {
                let row = &q.codes()[r * k..(r + 1) * k];
                assert!(row.iter().any(|&c| c & 0x7F == fp8::MAX_CODE), "row {r}");
            }
        }
    }

    #[test]
    fn zero_row_gets_scale_one_and_stays_zero() {
        let w = vec![0.0, 0.0, 0.0, 1.0, -2.0, 0.5];
        let q = Fp8Weight::quantize_f32(&w, 2, 3).unwrap();
        assert_eq!(q.scales()[0], 1.0);
        assert_eq!(q.scales()[1], 2.0 / 448.0);
        assert_eq!(&q.dequantize()[..3], &[0.0, 0.0, 0.0]);
        check_bound(&w, &q);
    }

    #[test]
    fn never_nan_on_random_inputs() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..50 {
            let (out, k) = (rng.gen_range(1..20), rng.gen_range(1..200));
            let w: Vec<f32> = (0..out * k)
                .map(|_| {
                    let e = rng.gen_range(-140..120);
                    rng.gen_range(-1.0f32..1.0) * 2f32.powi(e)
                })
                .collect();
            let q = Fp8Weight::quantize_f32(&w, out, k).unwrap();
            assert!(q.dequantize().iter().all(|v| v.is_finite()));
            assert!(q.codes().iter().all(|&c| c & 0x7F != 0x7F));
        }
    }

    #[test]
    fn non_finite_weight_is_an_error_naming_the_row() {
        let w = vec![1.0, 2.0, f32::NAN, 3.0];
        let e = Fp8Weight::quantize_f32(&w, 2, 2).unwrap_err().to_string();
        assert!(e.contains("row 1"), "{e}");
    }

    #[test]
    fn from_parts_refuses_nan_codes() {
        assert!(Fp8Weight::from_parts(1, 2, vec![0x38, 0x7F], vec![1.0]).is_err());
        assert!(Fp8Weight::from_parts(1, 2, vec![0x38, 0xFF], vec![1.0]).is_err());
        assert!(Fp8Weight::from_parts(1, 2, vec![0x38, 0x38], vec![f32::NAN]).is_err());
        let w = Fp8Weight::from_parts(1, 2, vec![0x38, 0xBC], vec![2.0]).unwrap();
        assert_eq!(w.dequantize(), vec![2.0, -3.0]);
    }

    #[test]
    fn read_spans_rows() {
        let w: Vec<f32> = (0..15).map(|i| i as f32 - 7.0).collect();
        let q = Fp8Weight::quantize_f32(&w, 3, 5).unwrap();
        let all = q.dequantize();
        let mut part = vec![0f32; 9];
        q.read_f32(3, &mut part);
        assert_eq!(&part[..], &all[3..12]);
    }
}
