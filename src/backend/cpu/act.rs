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

/// [`silu_mul`] on one `[n_rows, 2·cols]` gate|up GEMM output (gate in columns `0..cols`, up
/// in `cols..2·cols` of each row): the same arithmetic, without splitting the halves first.
pub fn silu_mul_fused(gate_up: &[f32], cols: usize, y: &mut [f32]) {
    debug_assert_eq!(gate_up.len(), 2 * y.len());
    if cols == 0 {
        return;
    }
    // Whole rows per task: FFN rows are 8192 wide, so one row is already a useful chunk.
    let rows_per_task = (4096 / cols).max(1);
    y.par_chunks_mut(rows_per_task * cols)
        .zip(gate_up.par_chunks(rows_per_task * 2 * cols))
        .for_each(|(yc, gc)| {
            for (yr, gr) in yc.chunks_exact_mut(cols).zip(gc.chunks_exact(2 * cols)) {
                let (g, u) = gr.split_at(cols);
                for ((o, &g), &u) in yr.iter_mut().zip(g).zip(u) {
                    *o = g / (1.0 + (-g).exp()) * u;
                }
            }
        });
}
