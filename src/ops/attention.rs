//! Paged KV writes and causal GQA attention.
use super::{check_index, check_len, check_rank2};
use crate::backend::cpu;
pub use crate::backend::cpu::attention::{AttnMeta, KeyMask};
use crate::error::{Error, Result};
use crate::tensor::{Storage, Tensor};

/// Head size the device attention kernels are compiled for.
pub const DEVICE_ATTN_HEAD_DIM: usize = 128;
/// Largest GQA group (query heads per KV head) the device attention kernels take.
pub const DEVICE_ATTN_MAX_GROUP: usize = 8;

/// Which attention implementation a device runs for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPath {
    /// One query row per sequence, row `i` of sequence `i` (so each is its sequence's last
    /// position): the split-KV decode kernel.
    Decode,
    /// Any mix of prompt chunks and decode rows: the prefill kernel.
    Prefill,
    /// A head size or GQA group no device kernel is compiled for (the tiny fixture model):
    /// computed on the host from downloaded operands. Correct, not fast.
    Host,
}

/// The one place the device attention path is chosen (pure; the CPU backend always runs its
/// own kernel). `n_seqs` is the number of block-table rows.
pub fn choose_attn_path(
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    query_seq: &[u32],
    n_seqs: usize,
) -> AttnPath {
    let group_ok = n_kv_heads > 0
        && n_heads.is_multiple_of(n_kv_heads)
        && n_heads / n_kv_heads <= DEVICE_ATTN_MAX_GROUP;
    if head_dim != DEVICE_ATTN_HEAD_DIM || !group_ok {
        return AttnPath::Host;
    }
    if !query_seq.is_empty()
        && query_seq.len() == n_seqs
        && query_seq.iter().enumerate().all(|(i, &s)| s as usize == i)
    {
        AttnPath::Decode
    } else {
        AttnPath::Prefill
    }
}

#[cfg(feature = "cuda")]
const _: () = assert!(
    DEVICE_ATTN_HEAD_DIM == crate::backend::cuda::attn_prefill::HEAD_DIM
        && DEVICE_ATTN_MAX_GROUP == crate::backend::cuda::attn_prefill::MAX_GROUP
);

pub(super) fn check_slots(
    op: &'static str,
    cache: &Tensor,
    src: &Tensor,
    slots: &[i32],
) -> Result<()> {
    let (num_slots, kv_dim) = cache.dims2();
    let n = check_rank2(op, "src", src, kv_dim)?;
    check_len(op, "slots", slots.len(), n)?;
    check_index(
        op,
        "slots",
        slots.iter().filter(|&&s| s >= 0).map(|&s| s as usize),
        num_slots,
    )
}

/// Write rows of `src` [n, kv_dim] into `cache` [num_slots, kv_dim] at `slots` (-1 skips).
pub fn kv_write(cache: &mut Tensor, src: &Tensor, slots: &[i32]) -> Result<()> {
    check_slots("kv_write", cache, src, slots)?;
    match cache.device() {
        crate::tensor::Device::Cpu => {
            let kv_dim = cache.dims2().1;
            cpu::kv_cache::kv_write(cache.as_f32_mut()?, kv_dim, src.as_f32()?, slots);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut};
            use crate::backend::cuda::dual_ffn::{scatter_rows, RowsArgs};
            if slots.is_empty() {
                return Ok(());
            }
            let (num_slots, kv_dim) = cache.dims2();
            // The scatter kernel skips rows whose index is negative, as -1 slots must be.
            let d_slots = dev.upload_cached("slots", slots)?;
            let s = on("kv_write", "src", &dev, src)?;
            let a = RowsArgs {
                n_rows: slots.len(),
                n_tokens: num_slots,
                hidden: kv_dim,
            };
            scatter_rows(
                &dev,
                s,
                &d_slots,
                on_mut("kv_write", "cache", &dev, cache)?,
                &a,
            )
        }
    }
}

/// [`kv_write`] of K and V of the same rows into their caches (one launch on CUDA).
pub fn kv_write_pair(
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
    k: &Tensor,
    v: &Tensor,
    slots: &[i32],
) -> Result<()> {
    check_slots("kv_write", k_cache, k, slots)?;
    check_slots("kv_write", v_cache, v, slots)?;
    check_len(
        "kv_write",
        "v_cache rows",
        v_cache.dims2().0,
        k_cache.dims2().0,
    )?;
    match k_cache.device() {
        crate::tensor::Device::Cpu => {
            kv_write(k_cache, k, slots)?;
            kv_write(v_cache, v, slots)
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::{on, on_mut};
            use crate::backend::cuda::kv_cache::{kv_cache_write, KvWriteArgs};
            if slots.is_empty() {
                return Ok(());
            }
            let (num_slots, kv_dim) = k_cache.dims2();
            let d_slots = dev.upload_cached("slots", slots)?;
            let (ks, vs) = (on("kv_write", "k", &dev, k)?, on("kv_write", "v", &dev, v)?);
            let a = KvWriteArgs {
                n_tokens: slots.len(),
                n_kv_heads: 1,
                head_dim: kv_dim,
                num_slots,
            };
            kv_cache_write(
                &dev,
                ks,
                vs,
                on_mut("kv_write", "k_cache", &dev, k_cache)?,
                on_mut("kv_write", "v_cache", &dev, v_cache)?,
                &d_slots,
                &a,
            )
        }
    }
}

/// Copy whole blocks `(from, to)` of both caches [num_blocks * block_size, kv_dim].
pub fn kv_copy_blocks(
    k_cache: &mut Tensor,
    v_cache: &mut Tensor,
    block_size: usize,
    pairs: &[(u32, u32)],
) -> Result<()> {
    let (num_slots, kv_dim) = k_cache.dims2();
    check_len(
        "kv_copy_blocks",
        "v_cache rows",
        v_cache.dims2().0,
        num_slots,
    )?;
    check_len("kv_copy_blocks", "v_cache cols", v_cache.dims2().1, kv_dim)?;
    let num_blocks = num_slots / block_size.max(1);
    check_index(
        "kv_copy_blocks",
        "pairs",
        pairs.iter().flat_map(|&(a, b)| [a as usize, b as usize]),
        num_blocks,
    )?;
    if pairs.is_empty() {
        return Ok(());
    }
    match k_cache.device() {
        crate::tensor::Device::Cpu => {
            cpu::kv_cache::copy_blocks(k_cache.as_f32_mut()?, kv_dim, block_size, pairs);
            cpu::kv_cache::copy_blocks(v_cache.as_f32_mut()?, kv_dim, block_size, pairs);
            Ok(())
        }
        #[cfg(feature = "cuda")]
        crate::tensor::Device::Cuda(dev) => {
            use super::cuda_arm::on_mut;
            use crate::backend::cuda::kv_cache::{kv_cache_copy_blocks, KvCopyArgs};
            let flat: Vec<i32> = pairs
                .iter()
                .flat_map(|&(a, b)| [a as i32, b as i32])
                .collect();
            let d_pairs = dev.upload(&flat)?;
            let a = KvCopyArgs {
                n_pairs: pairs.len(),
                num_blocks,
                block_size,
                n_kv_heads: 1,
                head_dim: kv_dim,
            };
            kv_cache_copy_blocks(
                &dev,
                on_mut("kv_copy_blocks", "k_cache", &dev, k_cache)?,
                on_mut("kv_copy_blocks", "v_cache", &dev, v_cache)?,
                &d_pairs,
                &a,
            )
        }
    }
}

/// Attention of `q` [n, n_heads*head_dim] over the paged caches -> [n, n_heads*head_dim].
#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    meta: &AttnMeta<'_>,
    mask: Option<KeyMask<'_>>,
) -> Result<Tensor> {
    let n = check_rank2("attention", "q", q, n_heads * head_dim)?;
    let (num_slots, kv_dim) = k_cache.dims2();
    check_len("attention", "k_cache cols", kv_dim, n_kv_heads * head_dim)?;
    check_len("attention", "v_cache rows", v_cache.dims2().0, num_slots)?;
    check_len("attention", "v_cache cols", v_cache.dims2().1, kv_dim)?;
    check_len("attention", "query_seq", meta.query_seq.len(), n)?;
    check_len("attention", "query_pos", meta.query_pos.len(), n)?;
    if n_kv_heads == 0 || !n_heads.is_multiple_of(n_kv_heads) || meta.block_size == 0 {
        return Err(Error::Unsupported(format!(
            "attention: {n_heads} query heads over {n_kv_heads} KV heads, block size {}",
            meta.block_size
        )));
    }
    let n_seqs = meta.block_tables.len() / meta.max_blocks.max(1);
    check_index(
        "attention",
        "query_seq",
        meta.query_seq.iter().map(|&s| s as usize),
        n_seqs,
    )?;
    check_index(
        "attention",
        "query_pos",
        meta.query_pos.iter().map(|&p| p as usize),
        meta.max_blocks * meta.block_size,
    )?;
    check_index(
        "attention",
        "block_tables",
        meta.block_tables.iter().map(|&b| b as usize),
        num_slots / meta.block_size.max(1),
    )?;
    if let Some(m) = &mask {
        check_len("attention", "key mask", m.skip.len(), n_seqs * m.max_ctx)?;
        check_index(
            "attention",
            "query_pos",
            meta.query_pos.iter().map(|&p| p as usize),
            m.max_ctx,
        )?;
    }
    match q.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; n * n_heads * head_dim];
            cpu::attention::paged_attention(
                q.as_f32()?,
                k_cache.as_f32()?,
                v_cache.as_f32()?,
                n_heads,
                n_kv_heads,
                head_dim,
                meta,
                mask,
                &mut y,
            );
            Tensor::from_f32(vec![n, n_heads * head_dim], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(qs) => cuda_attention(
            qs,
            k_cache,
            v_cache,
            (n, n_heads, n_kv_heads, head_dim, n_seqs),
            meta,
            mask,
        ),
    }
}

#[cfg(feature = "cuda")]
fn cuda_attention(
    qs: &crate::backend::cuda::DeviceStorage,
    k_cache: &Tensor,
    v_cache: &Tensor,
    dims: (usize, usize, usize, usize, usize),
    meta: &AttnMeta<'_>,
    mask: Option<KeyMask<'_>>,
) -> Result<Tensor> {
    use super::cuda_arm::{on, on_mut, output};
    use crate::backend::cuda::attn_decode::{attn_decode, choose_variant, DecodeShape};
    use crate::backend::cuda::attn_prefill::{attn_prefill, AttnArgs};
    const OP: &str = "attention";
    let (n, n_heads, n_kv_heads, head_dim, n_seqs) = dims;
    let dev = &qs.dev;
    let (num_slots, _) = k_cache.dims2();
    let (ks, vs) = (
        on(OP, "k_cache", dev, k_cache)?,
        on(OP, "v_cache", dev, v_cache)?,
    );
    let mut y = output(dev, vec![n, n_heads * head_dim], qs.dtype())?;
    if n == 0 {
        return Ok(y);
    }
    let path = choose_attn_path(n_heads, n_kv_heads, head_dim, meta.query_seq, n_seqs);
    if path == AttnPath::Host {
        let (q, k, v) = (qs.data.to_f32_vec()?, ks.to_f32_vec()?, vs.to_f32_vec()?);
        let mut out = vec![0f32; n * n_heads * head_dim];
        cpu::attention::paged_attention(
            &q[..out.len()],
            &k[..num_slots * n_kv_heads * head_dim],
            &v[..num_slots * n_kv_heads * head_dim],
            n_heads,
            n_kv_heads,
            head_dim,
            meta,
            mask,
            &mut out,
        );
        return Tensor::from_f32_on(
            vec![n, n_heads * head_dim],
            &out,
            qs.dtype(),
            &crate::tensor::Device::Cuda(dev.clone()),
        );
    }
    let max_pos = meta.query_pos.iter().copied().max().unwrap_or(0).max(0) as usize;
    let a = AttnArgs {
        n_q: n,
        n_heads,
        n_kv_heads,
        head_dim,
        block_size: meta.block_size,
        max_blocks: meta.max_blocks,
        n_seqs,
        max_ctx: mask.map_or(max_pos + 1, |m| m.max_ctx),
        num_blocks: num_slots / meta.block_size,
        scale: 1.0 / (head_dim as f32).sqrt(),
    };
    let tables = dev.upload_cached("block_tables", meta.block_tables)?;
    let pos = dev.upload_cached("positions", meta.query_pos)?;
    let skip = match mask {
        Some(m) => Some(dev.upload_cached("key_skip", m.skip)?),
        None => None,
    };
    let out = on_mut(OP, "out", dev, &mut y)?;
    match path {
        AttnPath::Decode => {
            let variant = choose_variant(&DecodeShape {
                n_seqs,
                n_kv_heads,
                max_ctx_len: max_pos + 1,
                num_sms: dev.num_sms() as usize,
            });
            let mut ws = dev.decode_workspace()?;
            attn_decode(
                dev,
                &mut ws,
                variant,
                &qs.data,
                ks,
                vs,
                &tables,
                &pos,
                skip.as_deref(),
                out,
                &a,
            )?;
        }
        _ => {
            let seq = super::cuda_arm::idx(dev, "query_seq", meta.query_seq)?;
            attn_prefill(
                dev,
                &qs.data,
                ks,
                vs,
                &tables,
                &seq,
                &pos,
                skip.as_deref(),
                out,
                &a,
            )?;
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every path the chooser can return, and the shapes that lead there.
    #[test]
    fn attention_path_chooser_covers_every_path() {
        let d = DEVICE_ATTN_HEAD_DIM;
        assert_eq!(choose_attn_path(24, 8, d, &[0, 1, 2], 3), AttnPath::Decode);
        assert_eq!(choose_attn_path(24, 8, d, &[0], 1), AttnPath::Decode);
        // A prompt chunk (several rows of one sequence), a mixed batch, reordered rows.
        assert_eq!(choose_attn_path(24, 8, d, &[0, 0, 0], 1), AttnPath::Prefill);
        assert_eq!(choose_attn_path(24, 8, d, &[0, 0, 1], 2), AttnPath::Prefill);
        assert_eq!(choose_attn_path(24, 8, d, &[1, 0], 2), AttnPath::Prefill);
        assert_eq!(choose_attn_path(24, 8, d, &[0, 1], 3), AttnPath::Prefill);
        assert_eq!(choose_attn_path(24, 8, d, &[], 0), AttnPath::Prefill);
        // Shapes without a compiled kernel.
        assert_eq!(choose_attn_path(4, 2, 16, &[0], 1), AttnPath::Host);
        assert_eq!(choose_attn_path(24, 2, d, &[0], 1), AttnPath::Host);
        assert_eq!(choose_attn_path(24, 0, d, &[0], 1), AttnPath::Host);
        assert_eq!(choose_attn_path(24, 9, d, &[0], 1), AttnPath::Host);
    }
}
