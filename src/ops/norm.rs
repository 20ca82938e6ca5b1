//! RMSNorm and the residual add.
use super::{check_rank2, check_shape};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

/// Row-wise RMSNorm of `x` [n, h] with weight `w` [h].
pub fn rmsnorm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let h = w.elem_count();
    let n = check_rank2("rmsnorm", "x", x, h)?;
    match x.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; n * h];
            cpu::rmsnorm::rmsnorm(x.as_f32()?, h, w.cpu()?, eps, &mut y);
            Tensor::from_f32(vec![n, h], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(xs) => {
            use super::cuda_arm::{on, on_mut, output_uninit};
            use crate::backend::cuda::rmsnorm::{rmsnorm, RmsNormArgs};
            let dev = &xs.dev;
            // SAFETY: the kernel writes all h columns of all n rows.
            let mut y = unsafe { output_uninit(dev, vec![n, h], xs.dtype())? };
            let ws = on("rmsnorm", "w", dev, w)?;
            rmsnorm(
                dev,
                &xs.data,
                ws,
                on_mut("rmsnorm", "out", dev, &mut y)?,
                &RmsNormArgs {
                    rows: n,
                    cols: h,
                    eps,
                },
            )?;
            Ok(y)
        }
    }
}

/// `dst += src`, same shape.
pub fn add_inplace(dst: &mut Tensor, src: &Tensor) -> Result<()> {
    check_shape("add", "src", src, dst.shape())?;
    match dst.device() {
        crate::tensor::Device::Cpu => {
            cpu::elementwise::add_inplace(dst.as_f32_mut()?, src.as_f32()?);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut};
            let n = dst.elem_count();
            let b = on("add", "src", &dev, src)?;
            crate::backend::cuda::elementwise::add_inplace(
                &dev,
                on_mut("add", "dst", &dev, dst)?,
                b,
                n,
            )
        }
    }
}

/// `x += r`, then `rmsnorm(x, w)`: the residual update and the next norm in one pass (one
/// kernel on CUDA; on the CPU the two ops, which round identically).
pub fn add_rmsnorm(x: &mut Tensor, r: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    check_shape("add_rmsnorm", "residual", r, x.shape())?;
    let h = w.elem_count();
    let n = check_rank2("add_rmsnorm", "x", x, h)?;
    match x.device() {
        crate::tensor::Device::Cpu => {
            let _ = n;
            add_inplace(x, r)?;
            rmsnorm(x, w, eps)
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut, output_uninit};
            use crate::backend::cuda::rmsnorm::{rmsnorm_residual_inplace, RmsNormArgs};
            // SAFETY: the kernel writes all h columns of all n rows.
            let mut y = unsafe { output_uninit(&dev, vec![n, h], x.dtype())? };
            let (rs, ws) = (
                on("add_rmsnorm", "residual", &dev, r)?,
                on("add_rmsnorm", "w", &dev, w)?,
            );
            rmsnorm_residual_inplace(
                &dev,
                on_mut("add_rmsnorm", "x", &dev, x)?,
                rs,
                ws,
                on_mut("add_rmsnorm", "out", &dev, &mut y)?,
                &RmsNormArgs {
                    rows: n,
                    cols: h,
                    eps,
                },
            )?;
            Ok(y)
        }
    }
}
