//! Rotary embedding in place.
use super::{check_len, check_rank2};
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::Tensor;

/// Rotate `x` [n, n_heads*head_dim] at `positions` [n] with `inv_freq` [head_dim/2].
pub fn rope_inplace(
    x: &mut Tensor,
    n_heads: usize,
    head_dim: usize,
    positions: &[i32],
    inv_freq: &[f32],
) -> Result<()> {
    let n = check_rank2("rope", "x", x, n_heads * head_dim)?;
    check_len("rope", "positions", positions.len(), n)?;
    check_len("rope", "inv_freq", inv_freq.len(), head_dim / 2)?;
    match x.device() {
        crate::tensor::Device::Cpu => {
            cpu::rope::rope_inplace(x.as_f32_mut()?, n_heads, head_dim, positions, inv_freq);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use crate::backend::cuda::rope::{rope, RopeArgs};
            if n == 0 {
                return Ok(());
            }
            let pos = dev.upload_cached(positions)?;
            let freq = dev.upload_cached(inv_freq)?;
            let xs = super::cuda_arm::on_mut("rope", "x", &dev, x)?;
            rope(
                &dev,
                xs,
                &pos,
                &freq,
                &RopeArgs {
                    n_tokens: n,
                    n_heads,
                    head_dim,
                },
            )
        }
    }
}
