//! Input embeddings on the GPU (`kernels/embed.cu`): text row gather and the audio codebook sum.
//! CPU twin: `backend/cpu/embed.rs`. spec: model.md §4.2, §4.3.
//! May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::Result;

params_struct!(EmbedTextParams, 40, {
    table: u64, ids: u64, out: u64, n_tokens: i32, hidden: i32, vocab: i32, _pad: i32,
});
params_struct!(EmbedAudioParams, 48, {
    table: u64, codes: u64, out: u64, n_tokens: i32, hidden: i32, n_codebooks: i32,
    rows_per_codebook: i32, avg: i32, _pad: i32,
});

#[derive(Clone, Copy, Debug)]
pub struct EmbedTextArgs {
    pub n_tokens: usize,
    pub hidden: usize,
    pub vocab: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct EmbedAudioArgs {
    pub n_tokens: usize,
    pub hidden: usize,
    pub n_codebooks: usize,
    pub rows_per_codebook: usize,
    /// Mean instead of sum (`audio_embed_avg`; false in the release).
    pub avg: bool,
}

const BLOCK: u32 = 256;

fn rows_cfg(n: i32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `out[i] = table[ids[i]]`; an id outside `[0, vocab)` yields a zero row.
pub fn embed_text(
    dev: &CudaDevice,
    table: &CudaStorage,
    ids: &CudaSlice<i32>,
    out: &mut CudaStorage,
    a: &EmbedTextArgs,
) -> Result<()> {
    const OP: &str = "cuda::embed_text";
    check::len(OP, "table", table, a.vocab * a.hidden)?;
    check::idx_len(OP, "ids", ids, a.n_tokens)?;
    check::len(OP, "out", out, a.n_tokens * a.hidden)?;
    check::dtype(OP, "out", out, table.dtype())?;
    let k = by_dtype(
        OP,
        table.dtype(),
        Kernel::EmbedTextBf16,
        Kernel::EmbedTextF32,
    )?;
    let p = EmbedTextParams {
        table: table.ptr(dev),
        ids: super::launch::ptr(dev, ids),
        out: out.ptr(dev),
        n_tokens: check::fits_i32(OP, "n_tokens", a.n_tokens)?,
        hidden: check::fits_i32(OP, "hidden", a.hidden)?,
        vocab: check::fits_i32(OP, "vocab", a.vocab)?,
        _pad: 0,
    };
    launch(dev, k, rows_cfg(p.n_tokens), &p)
}

/// `out[i] = T(Σ_c table[c·rows_per_codebook + codes[i·C + c]])` (f32 sum, one rounding).
pub fn embed_audio(
    dev: &CudaDevice,
    table: &CudaStorage,
    codes: &CudaSlice<i32>,
    out: &mut CudaStorage,
    a: &EmbedAudioArgs,
) -> Result<()> {
    const OP: &str = "cuda::embed_audio";
    check::len(
        OP,
        "table",
        table,
        a.n_codebooks * a.rows_per_codebook * a.hidden,
    )?;
    check::idx_len(OP, "codes", codes, a.n_tokens * a.n_codebooks)?;
    check::len(OP, "out", out, a.n_tokens * a.hidden)?;
    check::dtype(OP, "out", out, table.dtype())?;
    let k = by_dtype(
        OP,
        table.dtype(),
        Kernel::EmbedAudioBf16,
        Kernel::EmbedAudioF32,
    )?;
    let p = EmbedAudioParams {
        table: table.ptr(dev),
        codes: super::launch::ptr(dev, codes),
        out: out.ptr(dev),
        n_tokens: check::fits_i32(OP, "n_tokens", a.n_tokens)?,
        hidden: check::fits_i32(OP, "hidden", a.hidden)?,
        n_codebooks: check::fits_i32(OP, "n_codebooks", a.n_codebooks)?,
        rows_per_codebook: check::fits_i32(OP, "rows_per_codebook", a.rows_per_codebook)?,
        avg: a.avg as i32,
        _pad: 0,
    };
    launch(dev, k, rows_cfg(p.n_tokens), &p)
}
