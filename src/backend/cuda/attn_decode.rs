//! Paged decode attention (`kernels/attn_decode.cu`): one query per sequence, unsplit or
//! split-KV (partials + log-sum-exp, then a merge kernel). The split is decided on the host by
//! the pure [`choose_variant`], which dispatch and the conformance tests both use, so every
//! variant that can run is tested (STYLE §4.4/§4.5). Partials live in a caller-owned
//! [`DecodeWorkspace`] sized per step (no globals).
//! CPU twin: `backend/cpu/attn_decode.rs`. spec: model.md §5.3, §11.4.
//! May use: device, launch, storage, attn_prefill (shared args).

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::attn_prefill::AttnArgs;
use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::{Error, Result};

params_struct!(AttnDecodeParams, 120, {
    q: u64, k_cache: u64, v_cache: u64, block_tables: u64, seq_pos: u64, key_skip: u64,
    out: u64, partial_o: u64, partial_lse: u64, n_seqs: i32, n_heads: i32, n_kv_heads: i32,
    head_dim: i32, block_size: i32, max_blocks: i32, max_ctx: i32, n_splits: i32,
    chunk_len: i32, scale: f32, num_slots: i32, _pad: i32,
});
params_struct!(AttnMergeParams, 40, {
    partial_o: u64, partial_lse: u64, out: u64, n_seqs: i32, n_heads: i32, n_splits: i32,
    head_dim: i32,
});

/// What the chooser looks at.
#[derive(Clone, Copy, Debug)]
pub struct DecodeShape {
    pub n_seqs: usize,
    pub n_kv_heads: usize,
    /// Longest context in the batch (max over sequences of position + 1).
    pub max_ctx_len: usize,
    pub num_sms: usize,
}

/// How decode attention runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeVariant {
    /// One block per (sequence, KV head) walks all keys and writes the output.
    Single,
    /// `n_splits` blocks per (sequence, KV head), `chunk_len` keys each, then a merge.
    Split { n_splits: u32, chunk_len: u32 },
}

/// Keys below which splitting never pays for the extra merge launch.
pub const MIN_KEYS_PER_SPLIT: usize = 256;
pub const MAX_SPLITS: usize = 64;

/// Picks unsplit vs split-KV: split only when (sequences × KV heads) leaves SMs idle, into the
/// fewest splits reaching ~2 blocks per SM, each at least [`MIN_KEYS_PER_SPLIT`] keys.
pub fn choose_variant(s: &DecodeShape) -> DecodeVariant {
    let base = (s.n_seqs * s.n_kv_heads).max(1);
    let target = 2 * s.num_sms.max(1);
    if base >= s.num_sms || s.max_ctx_len < 2 * MIN_KEYS_PER_SPLIT {
        return DecodeVariant::Single;
    }
    let by_len = s.max_ctx_len / MIN_KEYS_PER_SPLIT;
    let want = target.div_ceil(base).min(by_len).min(MAX_SPLITS);
    if want <= 1 {
        return DecodeVariant::Single;
    }
    // Whole 32-key tiles per split, then as many splits as that chunk needs.
    let chunk_len = s.max_ctx_len.div_ceil(want).div_ceil(32) * 32;
    let n_splits = s.max_ctx_len.div_ceil(chunk_len);
    if n_splits <= 1 {
        return DecodeVariant::Single;
    }
    DecodeVariant::Split {
        n_splits: n_splits as u32,
        chunk_len: chunk_len as u32,
    }
}

/// Split-KV scratch: partial outputs and log-sum-exps, grown on demand, owned by the caller.
#[derive(Debug, Default)]
pub struct DecodeWorkspace {
    partial_o: Option<CudaSlice<f32>>,
    partial_lse: Option<CudaSlice<f32>>,
    /// Outgrown buffers are kept, not freed: a captured step graph may still point at them.
    /// Growth is rare (the largest split-KV batch seen), so this stays small.
    retired: Vec<CudaSlice<f32>>,
}

impl DecodeWorkspace {
    pub fn new() -> Self {
        Self::default()
    }

    /// Room for `rows` partial rows of `head_dim` (before a graph capture, which must not
    /// allocate here: the graph would own the buffer).
    pub fn reserve(&mut self, dev: &CudaDevice, rows: usize, head_dim: usize) -> Result<()> {
        self.ensure(dev, rows, head_dim).map(|_| ())
    }

    fn ensure(&mut self, dev: &CudaDevice, rows: usize, head_dim: usize) -> Result<(u64, u64)> {
        let short = self.partial_lse.as_ref().is_none_or(|s| s.len() < rows)
            || self
                .partial_o
                .as_ref()
                .is_none_or(|s| s.len() < rows * head_dim);
        if short && dev.is_capturing() {
            return Err(Error::Other(
                "split-KV workspace must grow inside a graph capture (reserve it first)".into(),
            ));
        }
        if self.partial_lse.as_ref().is_none_or(|s| s.len() < rows) {
            if let Some(old) = self.partial_lse.replace(dev.alloc_zeros::<f32>(rows)?) {
                self.retired.push(old);
            }
        }
        if self
            .partial_o
            .as_ref()
            .is_none_or(|s| s.len() < rows * head_dim)
        {
            let new = dev.alloc_zeros::<f32>(rows * head_dim)?;
            if let Some(old) = self.partial_o.replace(new) {
                self.retired.push(old);
            }
        }
        match (&self.partial_o, &self.partial_lse) {
            (Some(o), Some(l)) => Ok((ptr(dev, o), ptr(dev, l))),
            _ => Err(Error::Other("decode workspace allocation vanished".into())),
        }
    }
}

/// Decode attention with an explicit variant (normally `choose_variant(..)`): sequence `s`
/// attends its keys `0..=seq_pos[s]` (minus `key_skip`). `args.n_q` must equal `args.n_seqs`.
#[allow(clippy::too_many_arguments)]
pub fn attn_decode(
    dev: &CudaDevice,
    ws: &mut DecodeWorkspace,
    variant: DecodeVariant,
    q: &CudaStorage,
    k_cache: &CudaStorage,
    v_cache: &CudaStorage,
    block_tables: &CudaSlice<i32>,
    seq_pos: &CudaSlice<i32>,
    key_skip: Option<&CudaSlice<u8>>,
    out: &mut CudaStorage,
    a: &AttnArgs,
) -> Result<()> {
    const OP: &str = "cuda::attn_decode";
    a.validate(OP, q, k_cache, v_cache, out)?;
    if a.n_q != a.n_seqs {
        return Err(Error::Shape {
            op: OP,
            arg: "n_q",
            expected: format!("n_seqs = {}", a.n_seqs),
            got: a.n_q.to_string(),
        });
    }
    check::idx_len(OP, "block_tables", block_tables, a.n_seqs * a.max_blocks)?;
    check::idx_len(OP, "seq_pos", seq_pos, a.n_seqs)?;
    if let Some(s) = key_skip {
        check::idx_len(OP, "key_skip", s, a.n_seqs * a.max_ctx)?;
    }
    let (n_splits, chunk_len) = match variant {
        DecodeVariant::Single => (1usize, a.max_ctx.max(1)),
        DecodeVariant::Split {
            n_splits,
            chunk_len,
        } => (n_splits as usize, chunk_len as usize),
    };
    if n_splits == 0 || chunk_len == 0 {
        return Err(Error::Unsupported(format!("{OP}: variant {variant:?}")));
    }
    let (partial_o, partial_lse) = if n_splits > 1 {
        ws.ensure(dev, a.n_seqs * a.n_heads * n_splits, a.head_dim)?
    } else {
        (0, 0)
    };
    let dtype = q.dtype();
    let kernel = if a.group() <= 4 {
        by_dtype(OP, dtype, Kernel::AttnDecodeG4Bf16, Kernel::AttnDecodeG4F32)?
    } else {
        by_dtype(OP, dtype, Kernel::AttnDecodeBf16, Kernel::AttnDecodeF32)?
    };
    let p = AttnDecodeParams {
        q: q.ptr(dev),
        k_cache: k_cache.ptr(dev),
        v_cache: v_cache.ptr(dev),
        block_tables: ptr(dev, block_tables),
        seq_pos: ptr(dev, seq_pos),
        key_skip: key_skip.map_or(0, |s| ptr(dev, s)),
        out: out.ptr(dev),
        partial_o,
        partial_lse,
        n_seqs: check::fits_i32(OP, "n_seqs", a.n_seqs)?,
        n_heads: a.n_heads as i32,
        n_kv_heads: a.n_kv_heads as i32,
        head_dim: a.head_dim as i32,
        block_size: check::fits_i32(OP, "block_size", a.block_size)?,
        max_blocks: check::fits_i32(OP, "max_blocks", a.max_blocks)?,
        max_ctx: check::fits_i32(OP, "max_ctx", a.max_ctx)?,
        n_splits: check::fits_i32(OP, "n_splits", n_splits)?,
        chunk_len: check::fits_i32(OP, "chunk_len", chunk_len)?,
        scale: a.scale,
        num_slots: (a.num_blocks * a.block_size) as i32,
        _pad: 0,
    };
    // 128 threads: 8 key groups x 16 lanes x 8 dims (kernels/attn_decode.cu); HEAD_DIM is
    // 128 and the GQA group at most ATTN_MAX_GROUP (both checked by `a.validate`).
    let cfg = LaunchConfig {
        grid_dim: (p.n_seqs as u32, a.n_kv_heads as u32, n_splits as u32),
        block_dim: (128, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, kernel, cfg, &p)?;
    if n_splits == 1 {
        return Ok(());
    }
    let merge = by_dtype(
        OP,
        dtype,
        Kernel::AttnDecodeMergeBf16,
        Kernel::AttnDecodeMergeF32,
    )?;
    let m = AttnMergeParams {
        partial_o,
        partial_lse,
        out: p.out,
        n_seqs: p.n_seqs,
        n_heads: p.n_heads,
        n_splits: p.n_splits,
        head_dim: p.head_dim,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_seqs as u32, a.n_heads as u32, 1),
        block_dim: (a.head_dim as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, merge, cfg, &m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooser_splits_only_when_sms_idle_and_covers_context() {
        let one = DecodeShape {
            n_seqs: 1,
            n_kv_heads: 8,
            max_ctx_len: 4096,
            num_sms: 132,
        };
        match choose_variant(&one) {
            DecodeVariant::Split {
                n_splits,
                chunk_len,
            } => {
                assert!(n_splits > 1 && chunk_len % 32 == 0);
                assert!((n_splits * chunk_len) as usize >= 4096);
            }
            v => panic!("expected a split, got {v:?}"),
        }
        let short = DecodeShape {
            max_ctx_len: 300,
            ..one
        };
        assert_eq!(choose_variant(&short), DecodeVariant::Single);
        let busy = DecodeShape { n_seqs: 64, ..one };
        assert_eq!(choose_variant(&busy), DecodeVariant::Single);
    }
}
