//! Dense projection `y[n, out] = x[n, k] · W[out, k]ᵀ` (every Linear of the model, both heads).
//! f32 activations, weights in their stored dtype widened one row at a time; parallel over
//! blocks of output features, four activation rows per pass so each widened weight row is
//! reused from registers/L1 (decode is bandwidth-bound on the weights, prefill on the FMAs).

use super::SyncPtr;
use crate::tensor::CpuStorage;
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
    let mut a0 = [0f32; 8];
    let mut a1 = [0f32; 8];
    let mut a2 = [0f32; 8];
    let mut a3 = [0f32; 8];
    let k8 = w.len() / 8 * 8;
    let mut i = 0;
    while i < k8 {
        for l in 0..8 {
            let wv = w[i + l];
            a0[l] += wv * x0[i + l];
            a1[l] += wv * x1[i + l];
            a2[l] += wv * x2[i + l];
            a3[l] += wv * x3[i + l];
        }
        i += 8;
    }
    let red = |a: [f32; 8]| (a[0] + a[4]) + (a[1] + a[5]) + ((a[2] + a[6]) + (a[3] + a[7]));
    let mut r = [red(a0), red(a1), red(a2), red(a3)];
    for j in k8..w.len() {
        r[0] += w[j] * x0[j];
        r[1] += w[j] * x1[j];
        r[2] += w[j] * x2[j];
        r[3] += w[j] * x3[j];
    }
    r
}

/// `x` [n, k] f32, `w` [out, k] any dtype -> `y` [n, out] (overwritten).
pub fn matmul(x: &[f32], n: usize, k: usize, w: &CpuStorage, out: usize, y: &mut [f32]) {
    debug_assert_eq!(x.len(), n * k);
    debug_assert_eq!(w.len(), out * k);
    debug_assert_eq!(y.len(), n * out);
    if n == 0 || out == 0 {
        return;
    }
    const BLOCK: usize = 16;
    let yp = SyncPtr(y.as_mut_ptr());
    (0..out.div_ceil(BLOCK)).into_par_iter().for_each(|b| {
        let mut wrow = vec![0f32; k];
        for j in b * BLOCK..((b + 1) * BLOCK).min(out) {
            let wr: &[f32] = match w {
                CpuStorage::F32(v) => &v[j * k..(j + 1) * k],
                _ => {
                    w.read_f32(j * k, &mut wrow);
                    &wrow
                }
            };
            let mut i = 0;
            while i + 4 <= n {
                let r = dot4(
                    wr,
                    &x[i * k..(i + 1) * k],
                    &x[(i + 1) * k..(i + 2) * k],
                    &x[(i + 2) * k..(i + 3) * k],
                    &x[(i + 3) * k..(i + 4) * k],
                );
                for (d, v) in r.iter().enumerate() {
                    // SAFETY: column j belongs to this task's block only; row i+d < n.
                    unsafe { *yp.ptr().add((i + d) * out + j) = *v };
                }
                i += 4;
            }
            while i < n {
                let v = dot(wr, &x[i * k..(i + 1) * k]);
                // SAFETY: as above.
                unsafe { *yp.ptr().add(i * out + j) = v };
                i += 1;
            }
        }
    });
}
