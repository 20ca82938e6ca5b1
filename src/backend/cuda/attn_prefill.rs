//! Paged causal GQA attention for prompt chunks (`kernels/attn_prefill.cu`).
//! CPU twin: `backend/cpu/attn_prefill.rs`. spec: model.md §5.3, §5.8, §11.4.
//! May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::{Error, Result};

params_struct!(AttnPrefillParams, 104, {
    q: u64, k_cache: u64, v_cache: u64, block_tables: u64, query_seq: u64, query_pos: u64,
    key_skip: u64, out: u64, n_q: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32,
    block_size: i32, max_blocks: i32, max_ctx: i32, scale: f32, num_slots: i32, _pad: i32,
});

/// The only head dim the kernels instantiate (STYLE: ship only what we use).
pub const HEAD_DIM: usize = 128;
/// Largest GQA group (query heads per KV head) the shared-memory layout holds.
pub const MAX_GROUP: usize = 8;

/// Shape of one attention call over the paged cache.
#[derive(Clone, Copy, Debug)]
pub struct AttnArgs {
    /// Query rows (prefill: tokens of all chunks; decode: sequences).
    pub n_q: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub block_size: usize,
    /// Columns of `block_tables` ([n_seqs, max_blocks]).
    pub max_blocks: usize,
    pub n_seqs: usize,
    /// Columns of `key_skip` ([n_seqs, max_ctx]); every position must be `< max_ctx`.
    pub max_ctx: usize,
    pub num_blocks: usize,
    pub scale: f32,
}

impl AttnArgs {
    /// Head-dim/group/size checks shared by prefill and decode.
    pub(crate) fn validate(
        &self,
        op: &'static str,
        q: &CudaStorage,
        k_cache: &CudaStorage,
        v_cache: &CudaStorage,
        out: &CudaStorage,
    ) -> Result<()> {
        if self.head_dim != HEAD_DIM {
            return Err(Error::Unsupported(format!(
                "{op}: head_dim {} (only {HEAD_DIM} is compiled)",
                self.head_dim
            )));
        }
        if self.n_kv_heads == 0
            || !self.n_heads.is_multiple_of(self.n_kv_heads)
            || self.n_heads / self.n_kv_heads > MAX_GROUP
        {
            return Err(Error::Unsupported(format!(
                "{op}: {} query heads over {} KV heads (group must divide and be <= {MAX_GROUP})",
                self.n_heads, self.n_kv_heads
            )));
        }
        if self.block_size == 0 {
            return Err(Error::Unsupported(format!("{op}: block_size 0")));
        }
        let row = self.n_heads * self.head_dim;
        let slots = self.num_blocks * self.block_size;
        check::len(op, "q", q, self.n_q * row)?;
        check::len(op, "out", out, self.n_q * row)?;
        check::len(
            op,
            "k_cache",
            k_cache,
            slots * self.n_kv_heads * self.head_dim,
        )?;
        check::len(
            op,
            "v_cache",
            v_cache,
            slots * self.n_kv_heads * self.head_dim,
        )?;
        for (arg, s) in [("k_cache", k_cache), ("v_cache", v_cache), ("out", out)] {
            check::dtype(op, arg, s, q.dtype())?;
        }
        if self.max_ctx > self.max_blocks * self.block_size {
            return Err(Error::Shape {
                op,
                arg: "max_ctx",
                expected: format!(
                    "<= max_blocks * block_size = {}",
                    self.max_blocks * self.block_size
                ),
                got: self.max_ctx.to_string(),
            });
        }
        check::fits_i32(op, "num_slots", slots)?;
        Ok(())
    }

    pub(crate) fn group(&self) -> u32 {
        (self.n_heads / self.n_kv_heads) as u32
    }
}

/// Attention of every query row `i` (sequence `query_seq[i]`, position `query_pos[i]`) over
/// keys `0..=query_pos[i]` of its sequence, except those with `key_skip[seq*max_ctx+pos] = 1`.
///
/// The host guarantees `query_pos[i] < max_ctx`, `query_seq[i] < n_seqs` and block-table
/// entries `< num_blocks` (out-of-range blocks read as zeros, never fault).
#[allow(clippy::too_many_arguments)]
pub fn attn_prefill(
    dev: &CudaDevice,
    q: &CudaStorage,
    k_cache: &CudaStorage,
    v_cache: &CudaStorage,
    block_tables: &CudaSlice<i32>,
    query_seq: &CudaSlice<i32>,
    query_pos: &CudaSlice<i32>,
    key_skip: Option<&CudaSlice<u8>>,
    out: &mut CudaStorage,
    a: &AttnArgs,
) -> Result<()> {
    const OP: &str = "cuda::attn_prefill";
    a.validate(OP, q, k_cache, v_cache, out)?;
    check::idx_len(OP, "block_tables", block_tables, a.n_seqs * a.max_blocks)?;
    check::idx_len(OP, "query_seq", query_seq, a.n_q)?;
    check::idx_len(OP, "query_pos", query_pos, a.n_q)?;
    if let Some(s) = key_skip {
        check::idx_len(OP, "key_skip", s, a.n_seqs * a.max_ctx)?;
    }
    let kernel = by_dtype(
        OP,
        q.dtype(),
        Kernel::AttnPrefillBf16,
        Kernel::AttnPrefillF32,
    )?;
    let p = AttnPrefillParams {
        q: q.ptr(dev),
        k_cache: k_cache.ptr(dev),
        v_cache: v_cache.ptr(dev),
        block_tables: ptr(dev, block_tables),
        query_seq: ptr(dev, query_seq),
        query_pos: ptr(dev, query_pos),
        key_skip: key_skip.map_or(0, |s| ptr(dev, s)),
        out: out.ptr(dev),
        n_q: check::fits_i32(OP, "n_q", a.n_q)?,
        n_heads: a.n_heads as i32,
        n_kv_heads: a.n_kv_heads as i32,
        head_dim: a.head_dim as i32,
        block_size: check::fits_i32(OP, "block_size", a.block_size)?,
        max_blocks: check::fits_i32(OP, "max_blocks", a.max_blocks)?,
        max_ctx: check::fits_i32(OP, "max_ctx", a.max_ctx)?,
        scale: a.scale,
        num_slots: (a.num_blocks * a.block_size) as i32,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_q as u32, a.n_kv_heads as u32, 1),
        block_dim: (32, a.group(), 1),
        shared_mem_bytes: 0,
    };
    launch(dev, kernel, cfg, &p)
}
