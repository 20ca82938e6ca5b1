//! DualFFN routing on the GPU (`kernels/dual_ffn.cu`): gather one modality's rows into a compact
//! buffer, scatter-add the FFN output back into the residual, and the fast-forward pass-through
//! scatter. The routing plan (row index lists) is built on the host once per step by
//! [`route_rows`] and uploaded; the SwiGLU itself is `act::silu_mul_fused`.
//! CPU twin: `backend/cpu/dual_ffn.rs`. spec: model.md §5.1, §5.8.
//! May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::Result;

params_struct!(RowsParams, 40, {
    src: u64, idx: u64, dst: u64, n_rows: i32, hidden: i32, n_tokens: i32, _pad: i32,
});

/// `n_rows` indices into a `[n_tokens, hidden]` tensor.
#[derive(Clone, Copy, Debug)]
pub struct RowsArgs {
    pub n_rows: usize,
    pub n_tokens: usize,
    pub hidden: usize,
}

/// Splits row indices by the per-row audio mask (0 = text, nonzero = audio), in order.
pub fn route_rows(audio_mask: &[u8]) -> (Vec<i32>, Vec<i32>) {
    let mut text = Vec::new();
    let mut audio = Vec::new();
    for (i, &m) in audio_mask.iter().enumerate() {
        if m != 0 {
            audio.push(i as i32)
        } else {
            text.push(i as i32)
        }
    }
    (text, audio)
}

/// `what` = (op name, entry); `rows` = (rows of src, rows of dst).
fn run(
    dev: &CudaDevice,
    what: (&'static str, Kernel),
    src: &CudaStorage,
    idx: &CudaSlice<i32>,
    dst: &mut CudaStorage,
    a: &RowsArgs,
    rows: (usize, usize),
) -> Result<()> {
    let ((op, kernel), (src_rows, dst_rows)) = (what, rows);
    check::len(op, "src", src, src_rows * a.hidden)?;
    check::len(op, "dst", dst, dst_rows * a.hidden)?;
    check::dtype(op, "dst", dst, src.dtype())?;
    check::idx_len(op, "idx", idx, a.n_rows)?;
    let p = RowsParams {
        src: src.ptr(dev),
        idx: ptr(dev, idx),
        dst: dst.ptr(dev),
        n_rows: check::fits_i32(op, "n_rows", a.n_rows)?,
        hidden: check::fits_i32(op, "hidden", a.hidden)?,
        n_tokens: check::fits_i32(op, "n_tokens", a.n_tokens)?,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_rows as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, kernel, cfg, &p)
}

/// `out[j] = x[idx[j]]` for `j < n_rows` (x: `[n_tokens, hidden]`, out: `[n_rows, hidden]`).
pub fn gather_rows(
    dev: &CudaDevice,
    x: &CudaStorage,
    idx: &CudaSlice<i32>,
    out: &mut CudaStorage,
    a: &RowsArgs,
) -> Result<()> {
    const OP: &str = "cuda::dual_ffn_gather";
    let k = by_dtype(
        OP,
        x.dtype(),
        Kernel::DualFfnGatherBf16,
        Kernel::DualFfnGatherF32,
    )?;
    run(dev, (OP, k), x, idx, out, a, (a.n_tokens, a.n_rows))
}

/// `residual[idx[j]] = T(residual[idx[j]] + y[j])` (indices distinct).
pub fn scatter_add_rows(
    dev: &CudaDevice,
    y: &CudaStorage,
    idx: &CudaSlice<i32>,
    residual: &mut CudaStorage,
    a: &RowsArgs,
) -> Result<()> {
    const OP: &str = "cuda::dual_ffn_scatter_add";
    let k = by_dtype(
        OP,
        y.dtype(),
        Kernel::DualFfnScatterAddBf16,
        Kernel::DualFfnScatterAddF32,
    )?;
    run(dev, (OP, k), y, idx, residual, a, (a.n_rows, a.n_tokens))
}

/// `dst[idx[j]] = src[j]`: fast-forward layers restore the audio rows they gathered (saved)
/// before the layer ran.
pub fn scatter_rows(
    dev: &CudaDevice,
    src: &CudaStorage,
    idx: &CudaSlice<i32>,
    dst: &mut CudaStorage,
    a: &RowsArgs,
) -> Result<()> {
    const OP: &str = "cuda::dual_ffn_scatter";
    let k = by_dtype(
        OP,
        src.dtype(),
        Kernel::DualFfnScatterBf16,
        Kernel::DualFfnScatterF32,
    )?;
    run(dev, (OP, k), src, idx, dst, a, (a.n_rows, a.n_tokens))
}

params_struct!(SelectParams, 40, {
    if_set: u64, if_clear: u64, mask: u64, dst: u64, n_rows: i32, hidden: i32,
});

/// `n_rows` rows of `hidden` in each operand of [`select_rows`].
#[derive(Clone, Copy, Debug)]
pub struct SelectArgs {
    pub n_rows: usize,
    pub hidden: usize,
}

/// `out[j] = mask[j] != 0 ? if_set[j] : if_clear[j]` per row (the masked DualFFN strategy).
pub fn select_rows(
    dev: &CudaDevice,
    if_set: &CudaStorage,
    if_clear: &CudaStorage,
    mask: &CudaSlice<i32>,
    out: &mut CudaStorage,
    a: &SelectArgs,
) -> Result<()> {
    const OP: &str = "cuda::dual_ffn_select";
    let k = by_dtype(
        OP,
        if_set.dtype(),
        Kernel::DualFfnSelectBf16,
        Kernel::DualFfnSelectF32,
    )?;
    let len = a.n_rows * a.hidden;
    check::len(OP, "if_set", if_set, len)?;
    check::len(OP, "if_clear", if_clear, len)?;
    check::len(OP, "out", out, len)?;
    check::dtype(OP, "if_clear", if_clear, if_set.dtype())?;
    check::dtype(OP, "out", out, if_set.dtype())?;
    check::idx_len(OP, "mask", mask, a.n_rows)?;
    let p = SelectParams {
        if_set: if_set.ptr(dev),
        if_clear: if_clear.ptr(dev),
        mask: ptr(dev, mask),
        dst: out.ptr(dev),
        n_rows: check::fits_i32(OP, "n_rows", a.n_rows)?,
        hidden: check::fits_i32(OP, "hidden", a.hidden)?,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_rows as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, k, cfg, &p)
}
