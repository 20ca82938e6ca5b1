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

/// [`rope_kv_write`] on one fused QKV GEMM output `qkv` (`[n, (n_heads + 2·n_kv_heads)·
/// head_dim]`, Q columns then K then V, the layout of [`crate::model::LayerWeights::qkv`]):
/// returns the rotated queries `[n, n_heads·head_dim]`; rotated K and V go to the caches.
/// On CUDA one kernel reads the three ranges in place; on the CPU they are split first (a
/// copy of n rows, small next to the GEMM that made them) and take the same path.
#[allow(clippy::too_many_arguments)]
pub fn rope_qkv_write(
    qkv: &Tensor,
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
    heads: RopeHeads,
    positions: &[i32],
    inv_freq: &[f32],
    slots: &[i32],
) -> Result<Tensor> {
    let RopeHeads {
        n_heads,
        n_kv_heads,
        head_dim,
    } = heads;
    let (q_w, kv_w) = (n_heads * head_dim, n_kv_heads * head_dim);
    let n = check_rank2("rope", "qkv", qkv, q_w + 2 * kv_w)?;
    check_len("rope", "positions", positions.len(), n)?;
    check_len("rope", "inv_freq", inv_freq.len(), head_dim / 2)?;
    match qkv.device() {
        crate::tensor::Device::Cpu => {
            let src = qkv.as_f32()?;
            let (mut q, mut k, mut v) = (
                Vec::with_capacity(n * q_w),
                Vec::with_capacity(n * kv_w),
                Vec::with_capacity(n * kv_w),
            );
            for row in src.chunks_exact(q_w + 2 * kv_w) {
                q.extend_from_slice(&row[..q_w]);
                k.extend_from_slice(&row[q_w..q_w + kv_w]);
                v.extend_from_slice(&row[q_w + kv_w..]);
            }
            let mut q = Tensor::from_f32(vec![n, q_w], q)?;
            let mut k = Tensor::from_f32(vec![n, kv_w], k)?;
            let v = Tensor::from_f32(vec![n, kv_w], v)?;
            rope_kv_write(
                &mut q, &mut k, &v, k_cache, v_cache, heads, positions, inv_freq, slots,
            )?;
            Ok(q)
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut, output_uninit};
            use crate::backend::cuda::rope::{rope_qkv, RopeCacheArgs};
            for cache in [&*k_cache, &*v_cache] {
                let (num_slots, width) = cache.dims2();
                check_len("kv_write", "cache width", width, kv_w)?;
                check_len("kv_write", "slots", slots.len(), n)?;
                super::check_index(
                    "kv_write",
                    "slots",
                    slots.iter().filter(|&&s| s >= 0).map(|&s| s as usize),
                    num_slots,
                )?;
            }
            // SAFETY: the kernel writes every element of every Q row.
            let mut q = unsafe { output_uninit(&dev, vec![n, q_w], qkv.dtype())? };
            if n == 0 {
                return Ok(q);
            }
            let num_slots = k_cache.dims2().0;
            check_len("kv_write", "v_cache rows", v_cache.dims2().0, num_slots)?;
            let pos = dev.upload_cached("positions", positions)?;
            let slot = dev.upload_cached("slots", slots)?;
            let freq = dev.upload_cached("inv_freq", inv_freq)?;
            rope_qkv(
                &dev,
                on("rope", "qkv", &dev, qkv)?,
                on_mut("rope", "q", &dev, &mut q)?,
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
            )?;
            Ok(q)
        }
    }
}
