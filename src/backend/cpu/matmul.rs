//! Dense projection `y[n, out] = x[n, k] · W[out, k]ᵀ` (every Linear of the model, both heads,
//! HuBERT, the codec's im2col convolutions). The product goes through `matrixmultiply`'s packed
//! sgemm (BLIS-style: packed panels, a register-blocked AVX2/FMA micro-kernel chosen at run
//! time). rayon splits the output features into blocks, one single-threaded sgemm each; weights
//! stored as bf16/f16 are widened block by block into a reused f32 buffer.

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

/// Output features per rayon task: one sgemm call, and for non-f32 weights the rows widened at
/// once (COLS·k f32, 2 MiB at k = 8192).
const COLS: usize = 64;

/// `x` [n, k] f32, `w` [out, k] any dtype -> `y` [n, out] (overwritten).
///
/// Batch-invariant: sgemm cuts k into fixed `kc` (256) panels and every element of C is its own
/// accumulator lane, summed over k in order within a panel and panel after panel, whatever the
/// number of rows or which block of features it sits in. So a row gives bit-identical results
/// alone, in a decode batch or inside a prefill chunk; the serving scheduler relies on this
/// (chunked prefill, recompute after preemption and prefix-cache hits must not change any output).
pub fn matmul<W: WeightRows + ?Sized>(
    x: &[f32],
    n: usize,
    k: usize,
    w: &W,
    out: usize,
    y: &mut [f32],
) {
    assert_eq!(x.len(), n * k, "matmul: x");
    assert_eq!(w.len(), out * k, "matmul: w");
    assert_eq!(y.len(), n * out, "matmul: y");
    if n == 0 || out == 0 {
        return;
    }
    if k == 0 {
        y.fill(0.0);
        return;
    }
    let yp = SyncPtr(y.as_mut_ptr());
    let direct = w.as_f32();
    (0..out.div_ceil(COLS))
        .into_par_iter()
        .for_each_init(Vec::new, |wbuf: &mut Vec<f32>, b| {
            let (j0, j1) = (b * COLS, ((b + 1) * COLS).min(out));
            let cols = j1 - j0;
            let wblock: &[f32] = match direct {
                Some(v) => &v[j0 * k..j1 * k],
                None => {
                    wbuf.resize(cols * k, 0.0);
                    w.read(j0 * k, &mut wbuf[..cols * k]);
                    &wbuf[..cols * k]
                }
            };
            // SAFETY: A = x is n×k row-major (rsa k, csa 1; asserted above); B = this block's
            // weights read as k×cols with element (kk, j) at j·k + kk (rsb 1, csb k), wblock holding
            // cols·k elements; C = columns j0..j1 of y (rsc out, csc 1), rows < n and j0 + cols <= out
            // so every write is inside y, and no other task writes these columns.
            unsafe {
                matrixmultiply::sgemm(
                    n,
                    k,
                    cols,
                    1.0,
                    x.as_ptr(),
                    k as isize,
                    1,
                    wblock.as_ptr(),
                    1,
                    k as isize,
                    0.0,
                    yp.ptr().add(j0),
                    out as isize,
                    1,
                );
            }
        });
}
