//! Embedding lookups: text rows, and the audio column embedding = sum (or mean) of the C
//! codebook rows `table[c * rows_per_codebook + code_c]` (spec §4.2, §4.3), accumulated in f32.

use crate::tensor::CpuStorage;
use rayon::prelude::*;

/// `out[i] = table[ids[i]]`, table [vocab, hidden].
pub fn embed_text(table: &CpuStorage, hidden: usize, ids: &[u32], out: &mut [f32]) {
    out.par_chunks_mut(hidden)
        .zip(ids.par_iter())
        .for_each(|(o, &id)| {
            table.read_f32(id as usize * hidden, o);
        });
}

/// `out[i] = Σ_c table[c*rows_per_codebook + codes[i*C + c]]` (÷ C when `avg`).
pub fn embed_audio(
    table: &CpuStorage,
    hidden: usize,
    rows_per_codebook: usize,
    n_codebooks: usize,
    codes: &[u32],
    avg: bool,
    out: &mut [f32],
) {
    out.par_chunks_mut(hidden)
        .zip(codes.par_chunks(n_codebooks))
        .for_each(|(o, col)| {
            let mut row = vec![0f32; hidden];
            o.iter_mut().for_each(|v| *v = 0.0);
            for (c, &code) in col.iter().enumerate() {
                table.read_f32((c * rows_per_codebook + code as usize) * hidden, &mut row);
                for (a, b) in o.iter_mut().zip(&row) {
                    *a += b;
                }
            }
            if avg {
                let s = 1.0 / n_codebooks as f32;
                o.iter_mut().for_each(|v| *v *= s);
            }
        });
}
