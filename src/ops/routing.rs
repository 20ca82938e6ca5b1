//! DualFFN routing: gather rows of one modality, add results back.
use super::{check_index, check_rank2};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

/// Rows `idx` of `x` [n, h] -> [idx.len(), h].
pub fn gather_rows(x: &Tensor, idx: &[u32]) -> Result<Tensor> {
    let (n, h) = x.dims2();
    check_index("gather_rows", "idx", idx.iter().map(|&i| i as usize), n)?;
    match x.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; idx.len() * h];
            cpu::dual_ffn::gather_rows(x.as_f32()?, h, idx, &mut y);
            Tensor::from_f32(vec![idx.len(), h], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(xs) => {
            use super::cuda_arm::{on_mut, output_uninit};
            use crate::backend::cuda::dual_ffn::{gather_rows, RowsArgs};
            let dev = &xs.dev;
            // SAFETY: every output row is copied from a checked, in-range source row.
            let mut y = unsafe { output_uninit(dev, vec![idx.len(), h], xs.dtype())? };
            if idx.is_empty() {
                return Ok(y);
            }
            let d_idx = super::cuda_arm::idx(dev, "rows", idx)?;
            let a = RowsArgs {
                n_rows: idx.len(),
                n_tokens: n,
                hidden: h,
            };
            gather_rows(
                dev,
                &xs.data,
                &d_idx,
                on_mut("gather_rows", "out", dev, &mut y)?,
                &a,
            )?;
            Ok(y)
        }
    }
}

/// `dst[idx[i]] += src[i]`.
pub fn scatter_add_rows(dst: &mut Tensor, idx: &[u32], src: &Tensor) -> Result<()> {
    let (n, h) = dst.dims2();
    check_index(
        "scatter_add_rows",
        "idx",
        idx.iter().map(|&i| i as usize),
        n,
    )?;
    let m = check_rank2("scatter_add_rows", "src", src, h)?;
    super::check_len("scatter_add_rows", "idx", idx.len(), m)?;
    match dst.device() {
        crate::tensor::Device::Cpu => {
            cpu::dual_ffn::scatter_add_rows(dst.as_f32_mut()?, h, idx, src.as_f32()?);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut};
            use crate::backend::cuda::dual_ffn::{scatter_add_rows, RowsArgs};
            if idx.is_empty() {
                return Ok(());
            }
            let d_idx = super::cuda_arm::idx(&dev, "rows", idx)?;
            let s = on("scatter_add_rows", "src", &dev, src)?;
            let a = RowsArgs {
                n_rows: m,
                n_tokens: n,
                hidden: h,
            };
            scatter_add_rows(
                &dev,
                s,
                &d_idx,
                on_mut("scatter_add_rows", "dst", &dev, dst)?,
                &a,
            )
        }
    }
}

/// `out[i] = if mask[i] != 0 { if_set[i] } else { if_clear[i] }` for rows of two `[n, h]`
/// tensors: the masked DualFFN strategy's per-row choice between the audio and text branch.
pub fn select_rows(mask: &[u32], if_set: &Tensor, if_clear: &Tensor) -> Result<Tensor> {
    let (n, h) = if_set.dims2();
    check_rank2("select_rows", "if_clear", if_clear, h)?;
    super::check_len("select_rows", "if_clear rows", if_clear.dims2().0, n)?;
    super::check_len("select_rows", "mask", mask.len(), n)?;
    match if_set.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; n * h];
            cpu::dual_ffn::select_rows(mask, h, if_set.as_f32()?, if_clear.as_f32()?, &mut y);
            Tensor::from_f32(vec![n, h], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(xs) => {
            use super::cuda_arm::{on, on_mut, output_uninit};
            use crate::backend::cuda::dual_ffn::{select_rows, SelectArgs};
            let dev = &xs.dev;
            // SAFETY: the kernel writes every element of every one of the n rows.
            let mut y = unsafe { output_uninit(dev, vec![n, h], xs.dtype())? };
            if n == 0 {
                return Ok(y);
            }
            let d_mask = super::cuda_arm::idx(dev, "audio_mask", mask)?;
            let b = on("select_rows", "if_clear", dev, if_clear)?;
            let a = SelectArgs {
                n_rows: n,
                hidden: h,
            };
            select_rows(
                dev,
                &xs.data,
                b,
                &d_mask,
                on_mut("select_rows", "out", dev, &mut y)?,
                &a,
            )?;
            Ok(y)
        }
    }
}

/// A copy of `x` on its own device (device-to-device on CUDA).
pub fn copy(x: &Tensor) -> Result<Tensor> {
    match x.storage() {
        Storage::Cpu(s) => Tensor::from_cpu(x.shape().to_vec(), s.clone()),
        Storage::CpuPanels(p) => Ok(Tensor::from_storage(
            x.shape().to_vec(),
            Storage::CpuPanels(p.clone()),
        )),
        Storage::CpuFp8(w) => Ok(Tensor::from_storage(
            x.shape().to_vec(),
            Storage::CpuFp8(w.clone()),
        )),
        #[cfg(feature = "cuda")]
        Storage::Cuda(s) => Ok(Tensor::from_storage(
            x.shape().to_vec(),
            Storage::Cuda(s.copy_prefix(x.elem_count())?),
        )),
    }
}
