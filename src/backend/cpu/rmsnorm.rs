//! RMSNorm (HF LlamaRMSNorm, spec §5.2): `y = w ⊙ (x · rsqrt(mean(x²) + eps))`, f32 math.

use crate::tensor::CpuStorage;
use rayon::prelude::*;

/// Normalise each row of `x` [rows, cols] with weight `w` [cols] into `y`.
pub fn rmsnorm(x: &[f32], cols: usize, w: &CpuStorage, eps: f32, y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    let mut wf = vec![0f32; cols];
    w.read_f32(0, &mut wf);
    y.par_chunks_mut(cols.max(1))
        .zip(x.par_chunks(cols.max(1)))
        .for_each(|(yr, xr)| {
            let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / cols as f32;
            let r = 1.0 / (ss + eps).sqrt();
            for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(&wf) {
                *o = g * (v * r);
            }
        });
}

/// Fused residual add + norm: `h = x + r` (written to `x`), then `y = rmsnorm(h)`.
pub fn add_rmsnorm(x: &mut [f32], r: &[f32], cols: usize, w: &CpuStorage, eps: f32, y: &mut [f32]) {
    super::elementwise::add_inplace(x, r);
    rmsnorm(x, cols, w, eps, y);
}
