//! Paged KV writes and causal GQA attention.
use super::{check_index, check_len, check_rank2};
use crate::backend::cpu;
pub use crate::backend::cpu::attention::{AttnMeta, KeyMask};
use crate::error::Result;
use crate::tensor::Tensor;

/// Write rows of `src` [n, kv_dim] into `cache` [num_slots, kv_dim] at `slots` (-1 skips).
pub fn kv_write(cache: &mut Tensor, src: &Tensor, slots: &[i32]) -> Result<()> {
    let (num_slots, kv_dim) = cache.dims2();
    let n = check_rank2("kv_write", "src", src, kv_dim)?;
    check_len("kv_write", "slots", slots.len(), n)?;
    check_index("kv_write", "slots", slots.iter().filter(|&&s| s >= 0).map(|&s| s as usize), num_slots)?;
    cpu::kv_cache::kv_write(cache.as_f32_mut()?, kv_dim, src.as_f32()?, slots);
    Ok(())
}

/// Attention of `q` [n, n_heads*head_dim] over the paged caches -> [n, n_heads*head_dim].
pub fn paged_attention(q: &Tensor, k_cache: &Tensor, v_cache: &Tensor, n_heads: usize, n_kv_heads: usize, head_dim: usize, meta: &AttnMeta<'_>, mask: Option<KeyMask<'_>>) -> Result<Tensor> {
    let n = check_rank2("attention", "q", q, n_heads * head_dim)?;
    let (num_slots, kv_dim) = k_cache.dims2();
    check_len("attention", "k_cache cols", kv_dim, n_kv_heads * head_dim)?;
    check_len("attention", "query_seq", meta.query_seq.len(), n)?;
    check_len("attention", "query_pos", meta.query_pos.len(), n)?;
    let n_seqs = meta.block_tables.len() / meta.max_blocks.max(1);
    check_index("attention", "query_seq", meta.query_seq.iter().map(|&s| s as usize), n_seqs)?;
    check_index("attention", "query_pos", meta.query_pos.iter().map(|&p| p as usize), meta.max_blocks * meta.block_size)?;
    check_index("attention", "block_tables", meta.block_tables.iter().map(|&b| b as usize), num_slots / meta.block_size.max(1))?;
    if let Some(m) = &mask {
        check_len("attention", "key mask", m.skip.len(), n_seqs * m.max_ctx)?;
        check_index("attention", "query_pos", meta.query_pos.iter().map(|&p| p as usize), m.max_ctx)?;
    }
    let mut y = vec![0f32; n * n_heads * head_dim];
    cpu::attention::paged_attention(q.as_f32()?, k_cache.as_f32()?, v_cache.as_f32()?, n_heads, n_kv_heads, head_dim, meta, mask, &mut y);
    Tensor::from_f32(vec![n, n_heads * head_dim], y)
}
