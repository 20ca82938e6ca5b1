//! `y = x · Wᵀ` for every Linear and both heads; `W` dense, panel-packed (CPU) or FP8 E4M3
//! with per-row scales (W8A16: `x` stays f32 on the CPU, bf16/f32 on CUDA).
use super::check_rank2;
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

/// `x` [n, k], `w` [out, k] -> [n, out].
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (out, k) = (
        w.shape().first().copied().unwrap_or(0),
        w.shape().last().copied().unwrap_or(0),
    );
    check_rank2("matmul", "w", w, k)?;
    let n = check_rank2("matmul", "x", x, k)?;
    match x.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; n * out];
            match w.storage() {
                // Packed at load (see `Tensor::pack_for_cpu_matmul`): the same sums, bit for
                // bit, without re-laying the weight out on every call.
                Storage::CpuPanels(p) => cpu::panels::matmul_panels(x.as_f32()?, n, p, &mut y),
                // FP8 codes dequantized block by block into the GEMM's f32 weight buffer
                // (`WeightRows for Fp8Weight`): the sums of an f32 weight equal to
                // dequant(W), bit for bit.
                Storage::CpuFp8(q) => cpu::matmul::matmul(x.as_f32()?, n, k, q, out, &mut y),
                _ => cpu::matmul::matmul(x.as_f32()?, n, k, w.cpu()?, out, &mut y),
            }
            Tensor::from_f32(vec![n, out], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(xs) => {
            use super::cuda_arm::{on, on_mut, output_uninit};
            use crate::backend::cuda::gemm::{matmul_wt, MatmulArgs};
            let dev = &xs.dev;
            // SAFETY: the GEMM (beta = 0), or the FP8 GEMV / dequant + GEMM, writes all n·out
            // elements; n = 0 has none.
            let mut y = unsafe { output_uninit(dev, vec![n, out], xs.dtype())? };
            if n == 0 {
                return Ok(y);
            }
            let ws = on("matmul", "w", dev, w)?;
            let ys = on_mut("matmul", "y", dev, &mut y)?;
            let args = MatmulArgs { n, k, out };
            if ws.dtype() == crate::tensor::DType::F8E4M3 {
                crate::backend::cuda::fp8_gemv::matmul_fp8(dev, &xs.data, ws, ys, &args)?;
            } else {
                matmul_wt(dev, &xs.data, ws, ys, &args)?;
            }
            Ok(y)
        }
    }
}

/// `y += x · wᵀ` (`y` `[n, out]`): a residual add fused into the projection. On CUDA the
/// GEMM's epilogue adds into `y` (cuBLAS beta = 1); on the CPU the product is made and added,
/// which rounds exactly like [`matmul`] followed by [`super::add_inplace`].
pub fn matmul_add(y: &mut Tensor, x: &Tensor, w: &Tensor) -> Result<()> {
    let (out, k) = (
        w.shape().first().copied().unwrap_or(0),
        w.shape().last().copied().unwrap_or(0),
    );
    check_rank2("matmul_add", "w", w, k)?;
    let n = check_rank2("matmul_add", "x", x, k)?;
    let yn = check_rank2("matmul_add", "y", y, out)?;
    super::check_len("matmul_add", "y rows", yn, n)?;
    match x.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let p = matmul(x, w)?;
            super::add_inplace(y, &p)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(xs) => {
            use super::cuda_arm::{on, on_mut};
            use crate::backend::cuda::gemm::{matmul_wt_acc, MatmulArgs};
            let dev = &xs.dev;
            if n == 0 {
                return Ok(());
            }
            let ws = on("matmul_add", "w", dev, w)?;
            if ws.dtype() == crate::tensor::DType::F8E4M3 {
                // The FP8 GEMV has no accumulating epilogue: product, then the add.
                let p = matmul(x, w)?;
                return super::add_inplace(y, &p);
            }
            matmul_wt_acc(
                dev,
                &xs.data,
                ws,
                on_mut("matmul_add", "y", dev, y)?,
                &MatmulArgs { n, k, out },
            )
        }
    }
}
