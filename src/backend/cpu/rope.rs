//! Rotary position embedding with precomputed (llama3-scaled) inverse frequencies, split-half
//! pairing (j, j + d/2), per-token positions (spec §5.5). In place on [n_tokens, n_heads * d].

use rayon::prelude::*;

pub fn rope_inplace(
    x: &mut [f32],
    n_heads: usize,
    head_dim: usize,
    positions: &[i32],
    inv_freq: &[f32],
) {
    let half = head_dim / 2;
    debug_assert_eq!(inv_freq.len(), half);
    let row = n_heads * head_dim;
    debug_assert_eq!(x.len(), positions.len() * row);
    x.par_chunks_mut(row.max(1))
        .zip(positions.par_iter())
        .for_each(|(xr, &pos)| {
            let mut cs = vec![(0f32, 0f32); half];
            for (c, &f) in cs.iter_mut().zip(inv_freq) {
                // fp32 angle, fp32 cos/sin, as HF (spec §5.5).
                let a = pos as f32 * f;
                *c = (a.cos(), a.sin());
            }
            for h in xr.chunks_mut(head_dim) {
                let (lo, hi) = h.split_at_mut(half);
                for ((a, b), &(c, s)) in lo.iter_mut().zip(hi.iter_mut()).zip(&cs) {
                    let (x0, x1) = (*a, *b);
                    *a = x0 * c - x1 * s;
                    *b = x1 * c + x0 * s;
                }
            }
        });
}
