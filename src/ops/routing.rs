//! DualFFN routing: gather rows of one modality, add results back.
use super::{check_index, check_rank2};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::Tensor;

/// Rows `idx` of `x` [n, h] -> [idx.len(), h].
pub fn gather_rows(x: &Tensor, idx: &[u32]) -> Result<Tensor> {
    let (n, h) = x.dims2();
    check_index("gather_rows", "idx", idx.iter().map(|&i| i as usize), n)?;
    let mut y = vec![0f32; idx.len() * h];
    cpu::dual_ffn::gather_rows(x.as_f32()?, h, idx, &mut y);
    Tensor::from_f32(vec![idx.len(), h], y)
}

/// `dst[idx[i]] += src[i]`.
pub fn scatter_add_rows(dst: &mut Tensor, idx: &[u32], src: &Tensor) -> Result<()> {
    let (n, h) = dst.dims2();
    check_index("scatter_add_rows", "idx", idx.iter().map(|&i| i as usize), n)?;
    let m = check_rank2("scatter_add_rows", "src", src, h)?;
    super::check_len("scatter_add_rows", "idx", idx.len(), m)?;
    cpu::dual_ffn::scatter_add_rows(dst.as_f32_mut()?, h, idx, src.as_f32()?);
    Ok(())
}
