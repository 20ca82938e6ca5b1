//! Skinny bf16 products for decode batches (`kernels/gemv.cu`): `y[n, out] = x[n, k] · W[out, k]ᵀ`
//! for n ≤ [`GEMV_MAX_N`], one warp per output row streaming W with 16-byte loads. `gemm.rs`
//! routes here when [`gemv_fits`] holds and to cuBLAS otherwise.
//! CPU twin: `backend/cpu/matmul.rs`. spec: model.md §5.3, §5.4, §6, §11.1.
//! May use: device, launch, storage.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::gemm::MatmulArgs;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{check, CudaStorage};
use crate::error::Result;
use crate::tensor::DType;

params_struct!(GemvParams, 40, {
    x: u64, w: u64, y: u64, n: i32, k: i32, out: i32, _pad: i32,
});

/// Most input rows one launch takes (`GEMV_MAX_N`).
pub const GEMV_MAX_N: usize = 8;
const WARPS: u32 = 8;
const OP: &str = "cuda::gemv";

/// True when the skinny kernel takes this product: bf16, 1..=8 rows, `k` a multiple of 8 (whole
/// 16-byte chunks; every buffer starts 256-byte aligned, so rows stay 16-byte aligned).
pub fn gemv_fits(dtype: DType, a: &MatmulArgs) -> bool {
    dtype == DType::BF16
        && (1..=GEMV_MAX_N).contains(&a.n)
        && a.k > 0
        && a.k.is_multiple_of(8)
        && a.out > 0
        && a.k <= i32::MAX as usize
        && a.out <= i32::MAX as usize
}

/// `y = x · wᵀ` through the skinny kernel; the caller checked [`gemv_fits`] and the lengths.
pub fn gemv(
    dev: &CudaDevice,
    x: &CudaStorage,
    w: &CudaStorage,
    y: &mut CudaStorage,
    a: &MatmulArgs,
) -> Result<()> {
    check::len(OP, "x", x, a.n * a.k)?;
    check::len(OP, "w", w, a.out * a.k)?;
    check::len(OP, "y", y, a.n * a.out)?;
    for (arg, s) in [("x", x), ("w", w)] {
        check::dtype(OP, arg, s, DType::BF16)?;
    }
    check::dtype(OP, "y", y, DType::BF16)?;
    let p = GemvParams {
        x: x.ptr(dev),
        w: w.ptr(dev),
        y: y.ptr(dev),
        n: a.n as i32,
        k: a.k as i32,
        out: a.out as i32,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: ((a.out as u32).div_ceil(WARPS), 1, 1),
        block_dim: (32 * WARPS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY (bounds, for launch.rs): x holds n·k, w out·k, y n·out elements (checked above);
    // the kernel reads k/8 whole 16-byte chunks per row (k % 8 == 0 by gemv_fits).
    launch(dev, Kernel::GemvBf16, cfg, &p)
}
