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
            let pos = dev.upload_cached("positions", positions)?;
            let freq = dev.upload_cached("inv_freq", inv_freq)?;
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

/// Head geometry of a RoPE + KV write.
#[derive(Clone, Copy, Debug)]
pub struct RopeHeads {
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// RoPE on `q` and `k` at `positions`, then K and V rows written to the caches at `slots` (−1
/// skips): what `rope_inplace` twice and `kv_write_pair` do, in one kernel on CUDA.
#[allow(clippy::too_many_arguments)]
pub fn rope_kv_write(
    q: &mut Tensor,
    k: &mut Tensor,
    v: &Tensor,
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
    heads: RopeHeads,
    positions: &[i32],
    inv_freq: &[f32],
    slots: &[i32],
) -> Result<()> {
    let RopeHeads {
        n_heads,
        n_kv_heads,
        head_dim,
    } = heads;
    let n = check_rank2("rope", "q", q, n_heads * head_dim)?;
    check_rank2("rope", "k", k, n_kv_heads * head_dim)?;
    check_rank2("rope", "v", v, n_kv_heads * head_dim)?;
    check_len("rope", "k rows", k.shape()[0], n)?;
    check_len("rope", "v rows", v.shape()[0], n)?;
    check_len("rope", "positions", positions.len(), n)?;
    check_len("rope", "inv_freq", inv_freq.len(), head_dim / 2)?;
    match q.device() {
        crate::tensor::Device::Cpu => {
            rope_inplace(q, n_heads, head_dim, positions, inv_freq)?;
            rope_inplace(k, n_kv_heads, head_dim, positions, inv_freq)?;
            super::kv_write_pair(k_cache, v_cache, k, v, slots)
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut};
            use crate::backend::cuda::rope::{rope_cache, RopeCacheArgs};
            super::attention::check_slots("kv_write", k_cache, k, slots)?;
            super::attention::check_slots("kv_write", v_cache, v, slots)?;
            if n == 0 {
                return Ok(());
            }
            let num_slots = k_cache.dims2().0;
            check_len("kv_write", "v_cache rows", v_cache.dims2().0, num_slots)?;
            let pos = dev.upload_cached("positions", positions)?;
            let slot = dev.upload_cached("slots", slots)?;
            let freq = dev.upload_cached("inv_freq", inv_freq)?;
            let vs = on("rope", "v", &dev, v)?;
            rope_cache(
                &dev,
                on_mut("rope", "q", &dev, q)?,
                on_mut("rope", "k", &dev, k)?,
                vs,
                on_mut("kv_write", "k_cache", &dev, k_cache)?,
                on_mut("kv_write", "v_cache", &dev, v_cache)?,
                &pos,
                &slot,
                &freq,
                &RopeCacheArgs {
                    n_tokens: n,
                    n_heads,
                    n_kv_heads,
                    head_dim,
                    num_slots,
                },
            )
        }
    }
}
