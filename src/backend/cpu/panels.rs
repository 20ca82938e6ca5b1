//! Linear weights laid out for the CPU GEMM, once, at load.
//!
//! A `[out, k]` row-major weight becomes groups of [`LANES`] output features, each group stored
//! k-major (`[k][LANES]`, the last group padded with zeros), in the weight's own dtype. Decode
//! (fewer than 8 rows) then streams each weight byte once, straight into eight independent
//! 8-lane FMA chains, with no copy or transpose per step: on a memory-bound step those passes
//! cost as much as reading the weights. Prefill hands a group to sgemm as a `k × 64` matrix
//! with row stride 64. Both orders of summation are sgemm's (see [`super::matmul`]), so a
//! token's result is the same bit for bit whichever path, batch or chunk computes it.

use super::matmul::{
    fma_panel_bf16, fma_panel_f32, sgemm_block, store_panel, KC, LANES, SMALL_ROWS,
};
use super::SyncPtr;
use crate::tensor::CpuStorage;
use half::{bf16, f16};
use rayon::prelude::*;

/// A `[out, k]` weight in k-major groups of [`LANES`] features (see the module comment).
#[derive(Clone, Debug)]
pub struct PanelWeight {
    out: usize,
    k: usize,
    /// `out.div_ceil(LANES) · k · LANES` elements: group g, row kk, lane l at
    /// `(g·k + kk)·LANES + l`.
    data: CpuStorage,
}

fn packed<T: Copy + Send + Sync>(src: &[T], out: usize, k: usize, zero: T) -> Vec<T> {
    let mut dst = vec![zero; out.div_ceil(LANES) * k * LANES];
    dst.par_chunks_mut((k * LANES).max(1))
        .enumerate()
        .for_each(|(g, block)| {
            for l in 0..LANES.min(out - g * LANES) {
                let row = &src[(g * LANES + l) * k..(g * LANES + l + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    block[kk * LANES + l] = v;
                }
            }
        });
    dst
}

fn unpacked<T: Copy + Send + Sync>(src: &[T], out: usize, k: usize, zero: T) -> Vec<T> {
    let mut dst = vec![zero; out * k];
    dst.par_chunks_mut(k.max(1))
        .enumerate()
        .for_each(|(j, row)| {
            let (g, l) = (j / LANES, j % LANES);
            for (kk, v) in row.iter_mut().enumerate() {
                *v = src[(g * k + kk) * LANES + l];
            }
        });
    dst
}

impl PanelWeight {
    /// Lays out row-major `w` ([out, k]).
    pub fn pack(w: &CpuStorage, out: usize, k: usize) -> PanelWeight {
        assert_eq!(w.len(), out * k, "PanelWeight::pack: {out}x{k}");
        let data = match w {
            CpuStorage::F32(v) => CpuStorage::F32(packed(v, out, k, 0.0)),
            CpuStorage::BF16(v) => CpuStorage::BF16(packed(v, out, k, bf16::ZERO)),
            CpuStorage::F16(v) => CpuStorage::F16(packed(v, out, k, f16::ZERO)),
        };
        PanelWeight { out, k, data }
    }

    /// The row-major weight back.
    pub fn unpack(&self) -> CpuStorage {
        let (out, k) = (self.out, self.k);
        match &self.data {
            CpuStorage::F32(v) => CpuStorage::F32(unpacked(v, out, k, 0.0)),
            CpuStorage::BF16(v) => CpuStorage::BF16(unpacked(v, out, k, bf16::ZERO)),
            CpuStorage::F16(v) => CpuStorage::F16(unpacked(v, out, k, f16::ZERO)),
        }
    }

    pub fn dtype(&self) -> crate::tensor::DType {
        self.data.dtype()
    }
    /// (out, k) of the original `[out, k]` weight.
    pub fn dims(&self) -> (usize, usize) {
        (self.out, self.k)
    }

    /// Group `g` widened to f32 into `buf` (or borrowed when stored as f32).
    fn group_f32<'a>(&'a self, g: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let len = self.k * LANES;
        let start = g * len;
        match &self.data {
            CpuStorage::F32(v) => &v[start..start + len],
            other => {
                buf.resize(len, 0.0);
                other.read_f32(start, &mut buf[..len]);
                &buf[..len]
            }
        }
    }
}

/// `x` [n, k] f32 · `w`ᵀ -> `y` [n, out] (overwritten), the same sums as
/// [`super::matmul::matmul`] on the row-major weight, bit for bit.
pub fn matmul_panels(x: &[f32], n: usize, w: &PanelWeight, y: &mut [f32]) {
    let (out, k) = (w.out, w.k);
    assert_eq!(x.len(), n * k, "matmul_panels: x");
    assert_eq!(y.len(), n * out, "matmul_panels: y");
    if n == 0 || out == 0 {
        return;
    }
    if k == 0 {
        y.fill(0.0);
        return;
    }
    let yp = SyncPtr(y.as_mut_ptr());
    let groups = out.div_ceil(LANES);
    if n < SMALL_ROWS {
        (0..groups)
            .into_par_iter()
            .for_each_init(Vec::new, |buf: &mut Vec<f32>, g| {
                let lanes = LANES.min(out - g * LANES);
                let base = g * k * LANES;
                // f16 has no cheap inline widening; it is widened group by group instead.
                let wide: Option<&[f32]> = match &w.data {
                    CpuStorage::F16(_) => Some(w.group_f32(g, buf)),
                    _ => None,
                };
                let mut p0 = 0;
                while p0 < k {
                    let kl = KC.min(k - p0);
                    let (s, e) = (p0 * LANES, (p0 + kl) * LANES);
                    for i in 0..n {
                        let xs = &x[i * k + p0..i * k + p0 + kl];
                        let acc = match (&w.data, wide) {
                            (_, Some(v)) => fma_panel_f32(xs, &v[s..e]),
                            (CpuStorage::F32(v), None) => fma_panel_f32(xs, &v[base + s..base + e]),
                            (CpuStorage::BF16(v), None) => {
                                fma_panel_bf16(xs, &v[base + s..base + e])
                            }
                            (CpuStorage::F16(_), None) => unreachable!("f16 is widened above"),
                        };
                        // SAFETY: i < n and the group's features g·LANES..g·LANES + lanes are
                        // < out, inside y (n·out, asserted above); no other task writes them.
                        unsafe { store_panel(yp, i * out + g * LANES, &acc[..lanes], p0 == 0) };
                    }
                    p0 += kl;
                }
            });
        return;
    }
    let n_rb = n.div_ceil(super::matmul::ROWS);
    (0..n_rb * groups)
        .into_par_iter()
        .for_each_init(Vec::new, |buf: &mut Vec<f32>, t| {
            let (rb, g) = (t / groups, t % groups);
            let rows = super::matmul::ROWS;
            let (i0, i1) = (rb * rows, ((rb + 1) * rows).min(n));
            let j0 = g * LANES;
            let cols = LANES.min(out - j0);
            let block = w.group_f32(g, buf);
            // SAFETY: A = rows i0..i1 of x (n×k row-major: rsa k, csa 1; asserted above); B =
            // group g read as k×cols with element (kk, l) at kk·LANES + l (rsb LANES, csb 1),
            // `block` holding k·LANES elements and cols <= LANES; C = rows i0..i1, columns
            // j0..j0 + cols of y (rsc out, csc 1), all inside y; no other task writes them.
            unsafe { sgemm_block(x, i0..i1, k, block.as_ptr(), (LANES, 1), yp, out, j0, cols) };
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::matmul::matmul;
    use rand::{Rng, SeedableRng};

    fn storage(v: &[f32], dtype: crate::tensor::DType) -> CpuStorage {
        CpuStorage::F32(v.to_vec()).to_dtype(dtype)
    }

    #[test]
    fn pack_round_trips() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for &(out, k) in &[(1, 1), (64, 5), (65, 7), (130, 300)] {
            let w: Vec<f32> = (0..out * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for dt in [
                crate::tensor::DType::F32,
                crate::tensor::DType::BF16,
                crate::tensor::DType::F16,
            ] {
                let s = storage(&w, dt);
                let back = PanelWeight::pack(&s, out, k).unpack();
                assert_eq!(back.to_f32_vec(), s.to_f32_vec(), "{out}x{k} {dt:?}");
            }
        }
    }

    /// Every batch size, both paths (few rows and sgemm), every dtype: the panel layout gives
    /// the row-major GEMM's results bit for bit.
    #[test]
    fn panels_match_row_major_bitwise() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        for &(k, out) in &[(3072, 64), (600, 37), (257, 130), (5, 3), (1000, 200)] {
            let w: Vec<f32> = (0..out * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
            for dt in [
                crate::tensor::DType::F32,
                crate::tensor::DType::BF16,
                crate::tensor::DType::F16,
            ] {
                let s = storage(&w, dt);
                let p = PanelWeight::pack(&s, out, k);
                for n in [1, 2, 7, 8, 9, 520] {
                    let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0..1.0)).collect();
                    let mut want = vec![0f32; n * out];
                    matmul(&x, n, k, &s, out, &mut want);
                    let mut got = vec![f32::NAN; n * out];
                    matmul_panels(&x, n, &p, &mut got);
                    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(
                            a.to_bits(),
                            b.to_bits(),
                            "n {n} k {k} out {out} {dt:?}: element {i}"
                        );
                    }
                }
            }
        }
    }
}
