//! SwiGLU activation: `silu(gate) ⊙ up`, silu(z) = z·sigmoid(z) (spec §5.4).

use rayon::prelude::*;

pub fn silu_mul(gate: &[f32], up: &[f32], y: &mut [f32]) {
    debug_assert_eq!(gate.len(), up.len());
    y.par_chunks_mut(4096)
        .zip(gate.par_chunks(4096).zip(up.par_chunks(4096)))
        .for_each(|(yc, (gc, uc))| {
            for ((o, &g), &u) in yc.iter_mut().zip(gc).zip(uc) {
                *o = g / (1.0 + (-g).exp()) * u;
            }
        });
}
