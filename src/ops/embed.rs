//! Text and audio embeddings.
use super::{check_index, check_len};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

/// Rows of `table` [vocab, h] at `ids`.
pub fn embed_text(table: &Tensor, ids: &[u32]) -> Result<Tensor> {
    let (vocab, h) = table.dims2();
    check_index("embed_text", "ids", ids.iter().map(|&i| i as usize), vocab)?;
    match table.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let t = table.cpu()?;
            let mut y = vec![0f32; ids.len() * h];
            cpu::embed::embed_text(t, h, ids, &mut y);
            Tensor::from_f32(vec![ids.len(), h], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(t) => {
            use super::cuda_arm::{idx, on_mut, output};
            use crate::backend::cuda::embed::{embed_text, EmbedTextArgs};
            let dev = &t.dev;
            let mut y = output(dev, vec![ids.len(), h], t.dtype())?;
            if ids.is_empty() {
                return Ok(y);
            }
            let d_ids = idx(dev, "text_ids", ids)?;
            embed_text(
                dev,
                &t.data,
                &d_ids,
                on_mut("embed_text", "out", dev, &mut y)?,
                &EmbedTextArgs {
                    n_tokens: ids.len(),
                    hidden: h,
                    vocab,
                },
            )?;
            Ok(y)
        }
    }
}

/// Audio column embeddings: `codes` holds `n_codebooks` codes per column (column-major runs).
pub fn embed_audio(
    table: &Tensor,
    rows_per_codebook: usize,
    n_codebooks: usize,
    codes: &[u32],
    avg: bool,
) -> Result<Tensor> {
    let (rows, h) = table.dims2();
    check_len(
        "embed_audio",
        "table rows",
        rows,
        rows_per_codebook * n_codebooks,
    )?;
    check_index(
        "embed_audio",
        "codes",
        codes.iter().map(|&c| c as usize),
        rows_per_codebook,
    )?;
    let n = codes.len() / n_codebooks.max(1);
    check_len("embed_audio", "codes", codes.len(), n * n_codebooks)?;
    match table.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let t = table.cpu()?;
            let mut y = vec![0f32; n * h];
            cpu::embed::embed_audio(t, h, rows_per_codebook, n_codebooks, codes, avg, &mut y);
            Tensor::from_f32(vec![n, h], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(t) => {
            use super::cuda_arm::{idx, on_mut, output};
            use crate::backend::cuda::embed::{embed_audio, EmbedAudioArgs};
            let dev = &t.dev;
            let mut y = output(dev, vec![n, h], t.dtype())?;
            if n == 0 {
                return Ok(y);
            }
            let d_codes = idx(dev, "audio_codes", codes)?;
            let a = EmbedAudioArgs {
                n_tokens: n,
                hidden: h,
                n_codebooks,
                rows_per_codebook,
                avg,
            };
            embed_audio(
                dev,
                &t.data,
                &d_codes,
                on_mut("embed_audio", "out", dev, &mut y)?,
                &a,
            )?;
            Ok(y)
        }
    }
}
