//! Snake activation on the GPU (`kernels/snake.cu`), in place on a single-batch
//! `[channels, t]` f32 buffer with per-channel alpha. The same activation fused into a conv's
//! input load lives in `conv1d.rs`. CPU twin: `codec::layers::snake_inplace`.
//! spec: codec.md §3.2, §11.4. May use: device, launch, storage.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{check, CudaStorage};
use crate::error::Result;
use crate::tensor::DType;

params_struct!(SnakeParams, 24, {
    x: u64, alpha: u64, channels: i32, t: i32,
});

/// Validated arguments: `x` is `[channels, t]`, `alpha` is `[channels]`.
#[derive(Clone, Copy, Debug)]
pub struct SnakeArgs {
    pub channels: usize,
    pub t: usize,
}

const OP: &str = "cuda::snake";
const BLOCK: u32 = 256;

/// `x ← x + 1/(alpha + 1e-9) · sin(alpha · x)²` per channel (f32 only, like the codec).
pub fn snake_inplace(
    dev: &CudaDevice,
    x: &mut CudaStorage,
    alpha: &CudaStorage,
    a: &SnakeArgs,
) -> Result<()> {
    check::dtype(OP, "x", x, DType::F32)?;
    check::dtype(OP, "alpha", alpha, DType::F32)?;
    check::len(OP, "x", x, a.channels * a.t)?;
    check::len(OP, "alpha", alpha, a.channels)?;
    let p = SnakeParams {
        x: x.ptr(dev),
        alpha: alpha.ptr(dev),
        channels: check::fits_i32(OP, "channels", a.channels)?,
        t: check::fits_i32(OP, "t", a.t)?,
    };
    let cfg = LaunchConfig {
        grid_dim: ((p.t as u32).div_ceil(BLOCK), p.channels as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    // launch() rejects channels > 65535 (grid.y); the grid covers exactly channels × t, which
    // the length checks above bound.
    launch(dev, Kernel::SnakeF32, cfg, &p)
}
