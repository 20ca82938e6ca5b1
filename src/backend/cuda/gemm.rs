//! Dense projections and heads on the GPU through cuBLAS (`cublasGemmEx`, f32 accumulation):
//! `y[n, out] = x[n, k] · W[out, k]ᵀ`, W in the checkpoint's row-major `[out, in]` layout.
//! CPU twin: `backend/cpu/gemm.rs`. spec: model.md §5.3, §5.4, §6, §11.1.
//! May use: device, launch, storage.

use super::device::CudaDevice;
use super::launch::{gemm, GemmCall, GemmType};
use super::storage::{check, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

#[derive(Clone, Copy, Debug)]
pub struct MatmulArgs {
    pub n: usize,
    pub k: usize,
    pub out: usize,
}

/// `y = x · wᵀ`; x, w and y share one dtype (bf16 with bf16 output, or f32).
pub fn matmul_wt(
    dev: &CudaDevice,
    x: &CudaStorage,
    w: &CudaStorage,
    y: &mut CudaStorage,
    a: &MatmulArgs,
) -> Result<()> {
    gemm_wt(dev, x, w, y, a, false)
}

/// `y += x · wᵀ`: the residual add done by the GEMM's epilogue (cuBLAS beta = 1), so the
/// projection output is never written out and read back. In f32 the sum is rounded once,
/// as `y + (x · wᵀ)` is; in bf16 once instead of twice (closer to exact than the two ops).
pub fn matmul_wt_acc(
    dev: &CudaDevice,
    x: &CudaStorage,
    w: &CudaStorage,
    y: &mut CudaStorage,
    a: &MatmulArgs,
) -> Result<()> {
    gemm_wt(dev, x, w, y, a, true)
}

fn gemm_wt(
    dev: &CudaDevice,
    x: &CudaStorage,
    w: &CudaStorage,
    y: &mut CudaStorage,
    a: &MatmulArgs,
    accumulate: bool,
) -> Result<()> {
    const OP: &str = "cuda::matmul_wt";
    check::len(OP, "x", x, a.n * a.k)?;
    check::len(OP, "w", w, a.out * a.k)?;
    check::len(OP, "y", y, a.n * a.out)?;
    check::dtype(OP, "w", w, x.dtype())?;
    check::dtype(OP, "y", y, x.dtype())?;
    let ty = match x.dtype() {
        DType::BF16 => GemmType::Bf16,
        DType::F32 => GemmType::F32,
        DType::F16 | DType::F8E4M3 => {
            return Err(Error::Unsupported(format!("{OP}: {}", x.dtype().name())))
        }
    };
    let call = GemmCall {
        ty,
        x: x.ptr(dev),
        w: w.ptr(dev),
        y: y.ptr(dev),
        n: a.n,
        k: a.k,
        out: a.out,
        accumulate,
    };
    gemm(dev, &call)
}
