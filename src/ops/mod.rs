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

pub use act::silu_mul;
pub use attention::{kv_write, paged_attention, AttnMeta, KeyMask};
pub use embed::{embed_audio, embed_text};
pub use matmul::matmul;
pub use norm::{add_inplace, rmsnorm};
pub use rope::rope_inplace;
pub use routing::{gather_rows, scatter_add_rows};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

pub(crate) fn check_rank2(op: &'static str, arg: &'static str, t: &Tensor, cols: usize) -> Result<usize> {
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

pub(crate) fn check_shape(op: &'static str, arg: &'static str, t: &Tensor, shape: &[usize]) -> Result<()> {
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

pub(crate) fn check_len(op: &'static str, arg: &'static str, len: usize, expected: usize) -> Result<()> {
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

pub(crate) fn check_index(op: &'static str, arg: &'static str, idx: impl IntoIterator<Item = usize>, bound: usize) -> Result<()> {
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
