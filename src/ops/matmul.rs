//! `y = x · Wᵀ` for every Linear and both heads.
use super::check_rank2;
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::Tensor;

/// `x` [n, k], `w` [out, k] -> [n, out].
pub fn matmul(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (out, k) = (w.shape()[0], *w.shape().last().unwrap_or(&0));
    check_rank2("matmul", "w", w, k)?;
    let n = check_rank2("matmul", "x", x, k)?;
    let mut y = vec![0f32; n * out];
    cpu::matmul::matmul(x.as_f32()?, n, k, w.cpu()?, out, &mut y);
    Tensor::from_f32(vec![n, out], y)
}
