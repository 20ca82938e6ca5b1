//! RMSNorm on the GPU (`kernels/rmsnorm.cu`): plain, and fused with the residual add.
//! CPU twin: `backend/cpu/rmsnorm.rs`. spec: model.md §5.2, §11.2.
//! May use: device, launch, storage.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::Result;

params_struct!(RmsnormParams, 56, {
    x: u64, residual: u64, weight: u64, out: u64, h_out: u64,
    rows: i32, cols: i32, eps: f32, _pad: i32,
});

/// Validated arguments: `rows × cols` activations, `cols` weights.
#[derive(Clone, Copy, Debug)]
pub struct RmsNormArgs {
    pub rows: usize,
    pub cols: usize,
    pub eps: f32,
}

const OP: &str = "cuda::rmsnorm";
const BLOCK: u32 = 256;

fn checks(
    x: &CudaStorage,
    weight: &CudaStorage,
    out: &CudaStorage,
    a: &RmsNormArgs,
) -> Result<(i32, i32)> {
    let n = a.rows * a.cols;
    check::len(OP, "x", x, n)?;
    check::len(OP, "weight", weight, a.cols)?;
    check::len(OP, "out", out, n)?;
    check::dtype(OP, "weight", weight, x.dtype())?;
    check::dtype(OP, "out", out, x.dtype())?;
    Ok((
        check::fits_i32(OP, "rows", a.rows)?,
        check::fits_i32(OP, "cols", a.cols)?,
    ))
}

/// One block per row, about 4 columns per thread (a decode row of 3072 is latency-bound: fewer
/// serial loads per thread is what makes it fast), between BLOCK and 1024 threads.
fn cfg(rows: i32, cols: i32) -> LaunchConfig {
    let threads = ((cols.max(1) as u32).div_ceil(4).next_power_of_two()).clamp(BLOCK, 1024);
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `out = w ⊙ T(x · rsqrt(mean(x²) + eps))` per row.
pub fn rmsnorm(
    dev: &CudaDevice,
    x: &CudaStorage,
    weight: &CudaStorage,
    out: &mut CudaStorage,
    a: &RmsNormArgs,
) -> Result<()> {
    let (rows, cols) = checks(x, weight, out, a)?;
    let k = by_dtype(OP, x.dtype(), Kernel::RmsnormBf16, Kernel::RmsnormF32)?;
    let p = RmsnormParams {
        x: x.ptr(dev),
        weight: weight.ptr(dev),
        out: out.ptr(dev),
        rows,
        cols,
        eps: a.eps,
        ..Default::default()
    };
    launch(dev, k, cfg(rows, cols), &p)
}

/// `h = T(x + residual)` written to `h_out`, then `out = rmsnorm(h)`.
pub fn rmsnorm_residual(
    dev: &CudaDevice,
    x: &CudaStorage,
    residual: &CudaStorage,
    weight: &CudaStorage,
    h_out: &mut CudaStorage,
    out: &mut CudaStorage,
    a: &RmsNormArgs,
) -> Result<()> {
    let (rows, cols) = checks(x, weight, out, a)?;
    check::len(OP, "residual", residual, a.rows * a.cols)?;
    check::len(OP, "h_out", h_out, a.rows * a.cols)?;
    check::dtype(OP, "residual", residual, x.dtype())?;
    check::dtype(OP, "h_out", h_out, x.dtype())?;
    let k = by_dtype(
        OP,
        x.dtype(),
        Kernel::RmsnormResidualBf16,
        Kernel::RmsnormResidualF32,
    )?;
    let p = RmsnormParams {
        x: x.ptr(dev),
        residual: residual.ptr(dev),
        weight: weight.ptr(dev),
        out: out.ptr(dev),
        h_out: h_out.ptr(dev),
        rows,
        cols,
        eps: a.eps,
        _pad: 0,
    };
    launch(dev, k, cfg(rows, cols), &p)
}

/// As [`rmsnorm_residual`] with `h` written over `x_h` (the residual stream updated in place:
/// `x_h ← T(x_h + residual)`, `out = rmsnorm(x_h)`). The kernel reads and writes each element
/// from the same thread, so the aliasing is safe.
pub fn rmsnorm_residual_inplace(
    dev: &CudaDevice,
    x_h: &mut CudaStorage,
    residual: &CudaStorage,
    weight: &CudaStorage,
    out: &mut CudaStorage,
    a: &RmsNormArgs,
) -> Result<()> {
    let (rows, cols) = checks(x_h, weight, out, a)?;
    check::len(OP, "residual", residual, a.rows * a.cols)?;
    check::dtype(OP, "residual", residual, x_h.dtype())?;
    let k = by_dtype(
        OP,
        x_h.dtype(),
        Kernel::RmsnormResidualBf16,
        Kernel::RmsnormResidualF32,
    )?;
    let xp = x_h.ptr(dev);
    let p = RmsnormParams {
        x: xp,
        residual: residual.ptr(dev),
        weight: weight.ptr(dev),
        out: out.ptr(dev),
        h_out: xp,
        rows,
        cols,
        eps: a.eps,
        _pad: 0,
    };
    launch(dev, k, cfg(rows, cols), &p)
}
