//! Public op API on `Tensor`s: validate shapes and dtypes once (one helper per check), then
//! dispatch on the device. Backends receive validated slices and only `debug_assert!`.
//! CPU tensors hold f32 activations; weights may be bf16/f16/f32.
//! May use: tensor, backend.

mod act;
mod attention;
mod embed;
mod matmul;
mod norm;
mod rope;
mod routing;
mod sample;

pub use act::{silu_mul, silu_mul_fused};
pub use attention::{
    choose_attn_path, kv_copy_blocks, kv_write, kv_write_pair, paged_attention, AttnMeta, AttnPath,
    KeyMask, DEVICE_ATTN_HEAD_DIM, DEVICE_ATTN_MAX_GROUP,
};
pub use embed::{embed_audio, embed_text};
pub use matmul::{matmul, matmul_add};
pub use norm::{add_inplace, add_rmsnorm, rmsnorm};
pub use rope::{rope_inplace, rope_kv_write, rope_qkv_write, RopeHeads};
pub use routing::{copy, gather_rows, scatter_add_rows, select_rows};
pub use sample::{draw_audio, AudioDraw};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(crate) fn check_rank2(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    cols: usize,
) -> Result<usize> {
    let s = t.shape();
    if s.len() != 2 || s[1] != cols {
        return Err(Error::Shape {
            op,
            arg,
            expected: format!("[_, {cols}]"),
            got: format!("{s:?}"),
        });
    }
    Ok(s[0])
}

pub(crate) fn check_shape(
    op: &'static str,
    arg: &'static str,
    t: &Tensor,
    shape: &[usize],
) -> Result<()> {
    if t.shape() != shape {
        return Err(Error::Shape {
            op,
            arg,
            expected: format!("{shape:?}"),
            got: format!("{:?}", t.shape()),
        });
    }
    Ok(())
}

pub(crate) fn check_len(
    op: &'static str,
    arg: &'static str,
    len: usize,
    expected: usize,
) -> Result<()> {
    if len != expected {
        return Err(Error::Shape {
            op,
            arg,
            expected: format!("length {expected}"),
            got: format!("length {len}"),
        });
    }
    Ok(())
}

pub(crate) fn check_index(
    op: &'static str,
    arg: &'static str,
    idx: impl IntoIterator<Item = usize>,
    bound: usize,
) -> Result<()> {
    for i in idx {
        if i >= bound {
            return Err(Error::Shape {
                op,
                arg,
                expected: format!("indices < {bound}"),
                got: format!("{i}"),
            });
        }
    }
    Ok(())
}

/// CUDA-arm helpers: operand access with a same-device check, output allocation and the
/// upload of host index lists (once per step per role and contents: `CudaDevice::upload_cached`,
/// which also hands a captured step graph its persistent input buffers).
#[cfg(feature = "cuda")]
pub(crate) mod cuda_arm {
    use crate::backend::cuda::{CudaDevice, CudaStorage, DeviceStorage};
    use crate::error::{Error, Result};
    use crate::tensor::{DType, Storage, Tensor};
    use cudarc::driver::CudaSlice;
    use std::sync::Arc;

    /// The device buffer of `t`, which must live on `dev`.
    pub fn on<'a>(
        op: &'static str,
        arg: &'static str,
        dev: &Arc<CudaDevice>,
        t: &'a Tensor,
    ) -> Result<&'a CudaStorage> {
        match t.storage() {
            Storage::Cuda(s) if Arc::ptr_eq(&s.dev, dev) => Ok(&s.data),
            _ => Err(mismatch(op, arg)),
        }
    }

    pub fn on_mut<'a>(
        op: &'static str,
        arg: &'static str,
        dev: &Arc<CudaDevice>,
        t: &'a mut Tensor,
    ) -> Result<&'a mut CudaStorage> {
        match t.storage_mut() {
            Storage::Cuda(s) if Arc::ptr_eq(&s.dev, dev) => Ok(&mut s.data),
            _ => Err(mismatch(op, arg)),
        }
    }

    fn mismatch(op: &'static str, arg: &'static str) -> Error {
        Error::Unsupported(format!(
            "{op}: `{arg}` is not on the same CUDA device as the first operand"
        ))
    }

    /// A zeroed output tensor on `dev`.
    pub fn output(dev: &Arc<CudaDevice>, shape: Vec<usize>, dtype: DType) -> Result<Tensor> {
        let n = shape.iter().product();
        let data = CudaStorage::zeros(dev, n, dtype)?;
        Ok(Tensor::from_storage(
            shape,
            Storage::Cuda(DeviceStorage {
                dev: dev.clone(),
                data,
            }),
        ))
    }

    /// An output tensor on `dev` whose contents are undefined until a kernel writes it.
    ///
    /// # Safety
    /// The op must write every element (a GEMM with beta = 0, a row-wise kernel over all
    /// rows) before the tensor is returned.
    pub unsafe fn output_uninit(
        dev: &Arc<CudaDevice>,
        shape: Vec<usize>,
        dtype: DType,
    ) -> Result<Tensor> {
        let n = shape.iter().product();
        let data = CudaStorage::uninit(dev, n, dtype)?;
        Ok(Tensor::from_storage(
            shape,
            Storage::Cuda(DeviceStorage {
                dev: dev.clone(),
                data,
            }),
        ))
    }

    /// Uploads a non-empty host index list as i32 (callers validated the values fit); shared
    /// by every op of the step that uploads the same list.
    pub fn idx(dev: &CudaDevice, role: &'static str, v: &[u32]) -> Result<Arc<CudaSlice<i32>>> {
        let v: &[i32] = bytemuck::cast_slice(v);
        dev.upload_cached(role, v)
    }
}
