//! Dense projection `y[n, out] = x[n, k] · W[out, k]ᵀ` (every Linear of the model, both heads).
//! f32 activations, weights in their stored dtype widened one row at a time; parallel over
//! blocks of output features, four activation rows per pass so each widened weight row is
//! reused from registers/L1 (decode is bandwidth-bound on the weights, prefill on the FMAs).

use super::SyncPtr;
use crate::tensor::CpuStorage;

/// Weight rows the GEMM can read: model storage of any dtype, or a plain f32 slice (codec).
pub trait WeightRows: Sync {
    /// Widen elements `start..start + out.len()` into `out`.
    fn read(&self, start: usize, out: &mut [f32]);
    /// The elements as f32 without copying, when stored that way.
    fn as_f32(&self) -> Option<&[f32]>;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl WeightRows for CpuStorage {
    fn read(&self, start: usize, out: &mut [f32]) {
        self.read_f32(start, out)
    }
    fn as_f32(&self) -> Option<&[f32]> {
        match self {
            CpuStorage::F32(v) => Some(v),
            _ => None,
        }
    }
    fn len(&self) -> usize {
        CpuStorage::len(self)
    }
}

impl WeightRows for [f32] {
    fn read(&self, start: usize, out: &mut [f32]) {
        let n = out.len();
        out.copy_from_slice(&self[start..start + n]);
    }
    fn as_f32(&self) -> Option<&[f32]> {
        Some(self)
    }
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
}
use rayon::prelude::*;

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

#[inline]
fn dot4(w: &[f32], x0: &[f32], x1: &[f32], x2: &[f32], x3: &[f32]) -> [f32; 4] {
    let mut a = [[0f32; 8]; 4];
    let k8 = w.len() / 8 * 8;
    for ((((wc, c0), c1), c2), c3) in w[..k8]
        .chunks_exact(8)
        .zip(x0[..k8].chunks_exact(8))
        .zip(x1[..k8].chunks_exact(8))
        .zip(x2[..k8].chunks_exact(8))
        .zip(x3[..k8].chunks_exact(8))
    {
        for l in 0..8 {
            a[0][l] += wc[l] * c0[l];
            a[1][l] += wc[l] * c1[l];
            a[2][l] += wc[l] * c2[l];
            a[3][l] += wc[l] * c3[l];
        }
    }
    let red = |a: &[f32; 8]| (a[0] + a[4]) + (a[1] + a[5]) + ((a[2] + a[6]) + (a[3] + a[7]));
    let mut r = [red(&a[0]), red(&a[1]), red(&a[2]), red(&a[3])];
    for j in k8..w.len() {
        r[0] += w[j] * x0[j];
        r[1] += w[j] * x1[j];
        r[2] += w[j] * x2[j];
        r[3] += w[j] * x3[j];
    }
    r
}

/// Width of the k chunks both paths sum over (see `matmul`).
const KC: usize = 256;

/// Prefill-sized products (n >= 4): k is cut into L1-sized chunks; each task widens its 16
/// weight rows of one chunk once and runs every group of four activation rows against them,
/// so both operands of the inner `dot4` come from L1 instead of streaming x from L2 per row.
fn matmul_blocked<W: WeightRows + ?Sized>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &W,
    out: usize,
    y: &mut [f32],
) {
    const BLOCK: usize = 16;
    let yp = SyncPtr(y.as_mut_ptr());
    (0..out.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
        let (j0, j1) = (b * BLOCK, ((b + 1) * BLOCK).min(out));
        let bl = j1 - j0;
        let mut acc = vec![0f32; n * bl];
        let mut wchunk = vec![0f32; bl * KC];
        let mut kc = 0;
        while kc < k {
            let kl = KC.min(k - kc);
            for jj in 0..bl {
                w.read((j0 + jj) * k + kc, &mut wchunk[jj * kl..(jj + 1) * kl]);
            }
            let xr = |i: usize| &x[i * k + kc..i * k + kc + kl];
            let mut i = 0;
            while i + 4 <= n {
                for jj in 0..bl {
                    let r = dot4(
                        &wchunk[jj * kl..(jj + 1) * kl],
                        xr(i),
                        xr(i + 1),
                        xr(i + 2),
                        xr(i + 3),
                    );
                    for (d, v) in r.iter().enumerate() {
                        acc[(i + d) * bl + jj] += v;
                    }
                }
                i += 4;
            }
            while i < n {
                for jj in 0..bl {
                    acc[i * bl + jj] += dot(&wchunk[jj * kl..(jj + 1) * kl], xr(i));
                }
                i += 1;
            }
            kc += kl;
        }
        for i in 0..n {
            for jj in 0..bl {
                // SAFETY: columns j0..j1 belong to this task only; i < n.
                unsafe { *yp.ptr().add(i * out + j0 + jj) = acc[i * bl + jj] };
            }
        }
    });
}

/// `x` [n, k] f32, `w` [out, k] any dtype -> `y` [n, out] (overwritten).
///
/// Batch-invariant: every output is the sum, in order, of the `dot`s of its row over the same
/// `KC`-wide chunks of k, whatever `n` is, so a row gives bit-identical results alone, in a
/// decode batch or inside a prefill chunk. The serving scheduler relies on this (chunked
/// prefill, recompute after preemption and prefix-cache hits must not change any output).
pub fn matmul<W: WeightRows + ?Sized>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &W,
    out: usize,
    y: &mut [f32],
) {
    debug_assert_eq!(x.len(), n * k);
    debug_assert_eq!(w.len(), out * k);
    debug_assert_eq!(y.len(), n * out);
    if n == 0 || out == 0 {
        return;
    }
    if n >= 4 {
        return matmul_blocked(x, n, k, w, out, y);
    }
    const BLOCK: usize = 16;
    let yp = SyncPtr(y.as_mut_ptr());
    (0..out.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
        let mut wrow = vec![0f32; k];
        for j in b * BLOCK..((b + 1) * BLOCK).min(out) {
            let wr: &[f32] = match w.as_f32() {
                Some(v) => &v[j * k..(j + 1) * k],
                None => {
                    w.read(j * k, &mut wrow);
                    &wrow
                }
            };
            for i in 0..n {
                let xi = &x[i * k..(i + 1) * k];
                let mut acc = 0f32;
                let mut kc = 0;
                while kc < k {
                    let kl = KC.min(k - kc);
                    acc += dot(&wr[kc..kc + kl], &xi[kc..kc + kl]);
                    kc += kl;
                }
                // SAFETY: column j belongs to this task's block only; row i < n.
                unsafe { *yp.ptr().add(i * out + j) = acc };
            }
        }
    });
}
