//! Flat elementwise ops on the GPU (`kernels/elementwise.cu`): add and the f32 <-> bf16 casts.
//! CPU twin: `backend/cpu/elementwise.rs`. spec: model.md §11.1.
//! May use: device, launch, storage.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

params_struct!(BinaryParams, 32, { a: u64, b: u64, out: u64, n: i64 });
params_struct!(CastParams, 24, { src: u64, dst: u64, n: i64 });

fn flat_cfg(n: usize) -> LaunchConfig {
    // Grid-stride loop: cap the grid, each thread takes several elements.
    let blocks = n.div_ceil(256).clamp(1, 65535) as u32;
    LaunchConfig {
        grid_dim: (if n == 0 { 0 } else { blocks }, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `out = T(a + b)` over the first `n` elements.
pub fn add(
    dev: &CudaDevice,
    a: &CudaStorage,
    b: &CudaStorage,
    out: &mut CudaStorage,
    n: usize,
) -> Result<()> {
    const OP: &str = "cuda::add";
    check::len(OP, "a", a, n)?;
    check::len(OP, "b", b, n)?;
    check::len(OP, "out", out, n)?;
    check::dtype(OP, "b", b, a.dtype())?;
    check::dtype(OP, "out", out, a.dtype())?;
    let k = by_dtype(OP, a.dtype(), Kernel::AddBf16, Kernel::AddF32)?;
    let p = BinaryParams {
        a: a.ptr(dev),
        b: b.ptr(dev),
        out: out.ptr(dev),
        n: n as i64,
    };
    launch(dev, k, flat_cfg(n), &p)
}

/// `acc = T(acc + b)` in place (residual update).
pub fn add_inplace(
    dev: &CudaDevice,
    acc: &mut CudaStorage,
    b: &CudaStorage,
    n: usize,
) -> Result<()> {
    const OP: &str = "cuda::add_inplace";
    check::len(OP, "acc", acc, n)?;
    check::len(OP, "b", b, n)?;
    check::dtype(OP, "b", b, acc.dtype())?;
    let k = by_dtype(OP, acc.dtype(), Kernel::AddBf16, Kernel::AddF32)?;
    let ap = acc.ptr(dev);
    let p = BinaryParams {
        a: ap,
        b: b.ptr(dev),
        out: ap,
        n: n as i64,
    };
    launch(dev, k, flat_cfg(n), &p)
}

/// `dst = dst.dtype(src)` over the first `n` elements (f32 -> bf16 rounds to nearest even).
pub fn cast(dev: &CudaDevice, src: &CudaStorage, dst: &mut CudaStorage, n: usize) -> Result<()> {
    const OP: &str = "cuda::cast";
    check::len(OP, "src", src, n)?;
    check::len(OP, "dst", dst, n)?;
    let k = match (src.dtype(), dst.dtype()) {
        (DType::F32, DType::BF16) => Kernel::CastF32Bf16,
        (DType::BF16, DType::F32) => Kernel::CastBf16F32,
        (s, d) => {
            return Err(Error::Unsupported(format!(
                "{OP}: {} -> {}",
                s.name(),
                d.name()
            )));
        }
    };
    let p = CastParams {
        src: src.ptr(dev),
        dst: dst.ptr(dev),
        n: n as i64,
    };
    launch(dev, k, flat_cfg(n), &p)
}
