//! Causal GQA attention over a paged KV cache (spec §5.3), for any mix of prefill chunks and
//! single decode tokens from several sequences. Query row i belongs to sequence `query_seq[i]`
//! at position `query_pos[i]` and sees that sequence's keys 0..=query_pos, read through its
//! block table; an optional per-sequence key mask hides keys (fast-forward layers hide audio
//! keys from text queries, spec §5.8). Softmax in f32 with max subtraction.

use rayon::prelude::*;

/// Paged-attention metadata shared by every layer of one step.
#[derive(Clone, Debug)]
pub struct AttnMeta<'a> {
    pub block_size: usize,
    /// Block table of each sequence, `max_blocks` entries per sequence (row-major).
    pub block_tables: &'a [i32],
    pub max_blocks: usize,
    pub query_seq: &'a [u32],
    pub query_pos: &'a [i32],
}

/// Per-sequence key mask: `skip[seq * max_ctx + pos] != 0` hides key `pos` of `seq`.
#[derive(Clone, Copy, Debug)]
pub struct KeyMask<'a> {
    pub skip: &'a [u8],
    pub max_ctx: usize,
}

#[allow(clippy::too_many_arguments)]
pub fn paged_attention(
    q: &[f32],
    k_cache: &[f32],
    v_cache: &[f32],
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    meta: &AttnMeta<'_>,
    mask: Option<KeyMask<'_>>,
    out: &mut [f32],
) {
    let q_dim = n_heads * head_dim;
    let kv_dim = n_kv_heads * head_dim;
    let group = n_heads / n_kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    out.par_chunks_mut(head_dim)
        .enumerate()
        .for_each(|(qi, o)| {
            let (row, h) = (qi / n_heads, qi % n_heads);
            let seq = meta.query_seq[row] as usize;
            let pos = meta.query_pos[row] as usize;
            let qv = &q[row * q_dim + h * head_dim..row * q_dim + (h + 1) * head_dim];
            let kvh = h / group;
            let table = &meta.block_tables[seq * meta.max_blocks..(seq + 1) * meta.max_blocks];
            let mut scores = Vec::with_capacity(pos + 1);
            let mut slots = Vec::with_capacity(pos + 1);
            for p in 0..=pos {
                if let Some(m) = &mask {
                    if m.skip[seq * m.max_ctx + p] != 0 {
                        continue;
                    }
                }
                let slot =
                    table[p / meta.block_size] as usize * meta.block_size + p % meta.block_size;
                let kv =
                    &k_cache[slot * kv_dim + kvh * head_dim..slot * kv_dim + (kvh + 1) * head_dim];
                scores.push(super::matmul::dot(qv, kv) * scale);
                slots.push(slot);
            }
            o.iter_mut().for_each(|v| *v = 0.0);
            if scores.is_empty() {
                return;
            }
            let m = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - m).exp();
                sum += *s;
            }
            let inv = 1.0 / sum;
            for (s, &slot) in scores.iter().zip(&slots) {
                let vv =
                    &v_cache[slot * kv_dim + kvh * head_dim..slot * kv_dim + (kvh + 1) * head_dim];
                let w = s * inv;
                for (a, b) in o.iter_mut().zip(vv) {
                    *a += w * b;
                }
            }
        });
}
