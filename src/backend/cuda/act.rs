//! SwiGLU on the GPU (`kernels/act.cu`): `out = T(T(silu(gate)) · up)`.
//! CPU twin: `backend/cpu/act.rs`. spec: model.md §5.4, §11.5.
//! May use: device, launch, storage.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::Result;

params_struct!(SiluMulParams, 48, {
    gate: u64, up: u64, out: u64, n_rows: i32, cols: i32, gate_stride: i32, up_stride: i32,
    out_stride: i32, _pad: i32,
});

/// `n_rows × cols` activations (cols = FFN width, 8192 for Higgs).
#[derive(Clone, Copy, Debug)]
pub struct SiluMulArgs {
    pub n_rows: usize,
    pub cols: usize,
}

const OP: &str = "cuda::silu_mul";

fn run(dev: &CudaDevice, dtype: crate::tensor::DType, p: SiluMulParams) -> Result<()> {
    let k = by_dtype(OP, dtype, Kernel::SiluMulBf16, Kernel::SiluMulF32)?;
    let cfg = LaunchConfig {
        grid_dim: ((p.cols as u32).div_ceil(256), p.n_rows as u32, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, k, cfg, &p)
}

/// `out = silu(gate) ⊙ up` on separate contiguous `[n_rows, cols]` buffers.
pub fn silu_mul(
    dev: &CudaDevice,
    gate: &CudaStorage,
    up: &CudaStorage,
    out: &mut CudaStorage,
    a: &SiluMulArgs,
) -> Result<()> {
    let n = a.n_rows * a.cols;
    check::len(OP, "gate", gate, n)?;
    check::len(OP, "up", up, n)?;
    check::len(OP, "out", out, n)?;
    check::dtype(OP, "up", up, gate.dtype())?;
    check::dtype(OP, "out", out, gate.dtype())?;
    let cols = check::fits_i32(OP, "cols", a.cols)?;
    let p = SiluMulParams {
        gate: gate.ptr(dev),
        up: up.ptr(dev),
        out: out.ptr(dev),
        n_rows: check::fits_i32(OP, "n_rows", a.n_rows)?,
        cols,
        gate_stride: cols,
        up_stride: cols,
        out_stride: cols,
        _pad: 0,
    };
    run(dev, gate.dtype(), p)
}

/// `out = silu(gate) ⊙ up` where `gate_up` is one `[n_rows, 2·cols]` GEMM output (gate in
/// columns `0..cols`, up in `cols..2·cols`, the layout of a concatenated gate|up weight).
pub fn silu_mul_fused(
    dev: &CudaDevice,
    gate_up: &CudaStorage,
    out: &mut CudaStorage,
    a: &SiluMulArgs,
) -> Result<()> {
    check::len(OP, "gate_up", gate_up, 2 * a.n_rows * a.cols)?;
    check::len(OP, "out", out, a.n_rows * a.cols)?;
    check::dtype(OP, "out", out, gate_up.dtype())?;
    let cols = check::fits_i32(OP, "cols", a.cols)?;
    let stride = check::fits_i32(OP, "2*cols", 2 * a.cols)?;
    let base = gate_up.ptr(dev);
    let p = SiluMulParams {
        gate: base,
        up: base + (a.cols * gate_up.dtype().size_bytes()) as u64,
        out: out.ptr(dev),
        n_rows: check::fits_i32(OP, "n_rows", a.n_rows)?,
        cols,
        gate_stride: stride,
        up_stride: stride,
        out_stride: cols,
        _pad: 0,
    };
    run(dev, gate_up.dtype(), p)
}
