//! RMSNorm and the residual add.
use super::{check_rank2, check_shape};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::Tensor;

/// Row-wise RMSNorm of `x` [n, h] with weight `w` [h].
pub fn rmsnorm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let h = w.elem_count();
    let n = check_rank2("rmsnorm", "x", x, h)?;
    let mut y = vec![0f32; n * h];
    cpu::rmsnorm::rmsnorm(x.as_f32()?, h, w.cpu()?, eps, &mut y);
    Tensor::from_f32(vec![n, h], y)
}

/// `dst += src`, same shape.
pub fn add_inplace(dst: &mut Tensor, src: &Tensor) -> Result<()> {
    check_shape("add", "src", src, &dst.shape().to_vec())?;
    cpu::elementwise::add_inplace(dst.as_f32_mut()?, src.as_f32()?);
    Ok(())
}
