//! Text and audio embeddings.
use super::{check_index, check_len};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::Tensor;

/// Rows of `table` [vocab, h] at `ids`.
pub fn embed_text(table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let (vocab, h) = table.dims2();
    check_index("embed_text", "ids", ids.iter().map(|&i| i as usize), vocab)?;
    let mut y = vec![0f32; ids.len() * h];
    cpu::embed::embed_text(table.cpu()?, h, ids, &mut y);
    Tensor::from_f32(vec![ids.len(), h], y)
}

/// Audio column embeddings: `codes` holds `n_codebooks` codes per column (column-major runs).
pub fn embed_audio(table: &Tensor, rows_per_codebook: usize, n_codebooks: usize, codes: &[u32], avg: bool) -> Result<Tensor> {
    let (rows, h) = table.dims2();
    check_len("embed_audio", "table rows", rows, rows_per_codebook * n_codebooks)?;
    check_index("embed_audio", "codes", codes.iter().map(|&c| c as usize), rows_per_codebook)?;
    let n = codes.len() / n_codebooks.max(1);
    check_len("embed_audio", "codes", codes.len(), n * n_codebooks)?;
    let mut y = vec![0f32; n * h];
    cpu::embed::embed_audio(table.cpu()?, h, rows_per_codebook, n_codebooks, codes, avg, &mut y);
    Tensor::from_f32(vec![n, h], y)
}
