//! Paged KV-cache maintenance on the GPU (`kernels/kv_cache.cu`): K/V row writes through the
//! slot mapping, and block copies for copy-on-write. Per-layer layout
//! `[num_slots = num_blocks * block_size, n_kv_heads, head_dim]`.
//! CPU twin: `backend/cpu/kv_cache.rs`. spec: model.md §5.7.
//! May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::{Error, Result};

params_struct!(KvWriteParams, 56, {
    k: u64, v: u64, k_cache: u64, v_cache: u64, slot_mapping: u64,
    n_tokens: i32, row_elems: i32, num_slots: i32, _pad: i32,
});
params_struct!(KvCopyBlocksParams, 32, {
    k_cache: u64, v_cache: u64, block_pairs: u64, n_pairs: i32, block_words: i32,
});

#[derive(Clone, Copy, Debug)]
pub struct KvWriteArgs {
    pub n_tokens: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub num_slots: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct KvCopyArgs {
    /// Number of (src, dst) pairs in `block_pairs` ([n_pairs, 2] i32).
    pub n_pairs: usize,
    pub num_blocks: usize,
    pub block_size: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// `k_cache[slot_mapping[t]] = k[t]`, same for V; −1 and out-of-range slots are skipped.
#[allow(clippy::too_many_arguments)]
pub fn kv_cache_write(
    dev: &CudaDevice,
    k: &CudaStorage,
    v: &CudaStorage,
    k_cache: &mut CudaStorage,
    v_cache: &mut CudaStorage,
    slot_mapping: &CudaSlice<i32>,
    a: &KvWriteArgs,
) -> Result<()> {
    const OP: &str = "cuda::kv_cache_write";
    let row = a.n_kv_heads * a.head_dim;
    check::len(OP, "k", k, a.n_tokens * row)?;
    check::len(OP, "v", v, a.n_tokens * row)?;
    check::len(OP, "k_cache", k_cache, a.num_slots * row)?;
    check::len(OP, "v_cache", v_cache, a.num_slots * row)?;
    for (arg, s) in [("v", v), ("k_cache", &*k_cache), ("v_cache", &*v_cache)] {
        check::dtype(OP, arg, s, k.dtype())?;
    }
    check::idx_len(OP, "slot_mapping", slot_mapping, a.n_tokens)?;
    let kernel = by_dtype(
        OP,
        k.dtype(),
        Kernel::KvCacheWriteBf16,
        Kernel::KvCacheWriteF32,
    )?;
    let p = KvWriteParams {
        k: k.ptr(dev),
        v: v.ptr(dev),
        k_cache: k_cache.ptr(dev),
        v_cache: v_cache.ptr(dev),
        slot_mapping: ptr(dev, slot_mapping),
        n_tokens: check::fits_i32(OP, "n_tokens", a.n_tokens)?,
        row_elems: check::fits_i32(OP, "n_kv_heads*head_dim", row)?,
        num_slots: check::fits_i32(OP, "num_slots", a.num_slots)?,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_tokens as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, kernel, cfg, &p)
}

/// Copies whole blocks `src → dst` in both caches for each pair of `block_pairs` (i32
/// `[n_pairs, 2]`). The host must pass ids `< num_blocks` and `src != dst`.
pub fn kv_cache_copy_blocks(
    dev: &CudaDevice,
    k_cache: &mut CudaStorage,
    v_cache: &mut CudaStorage,
    block_pairs: &CudaSlice<i32>,
    a: &KvCopyArgs,
) -> Result<()> {
    const OP: &str = "cuda::kv_cache_copy_blocks";
    let block_elems = a.block_size * a.n_kv_heads * a.head_dim;
    let block_bytes = block_elems * k_cache.dtype().size_bytes();
    if !block_bytes.is_multiple_of(4) {
        return Err(Error::Unsupported(format!(
            "{OP}: block of {block_bytes} bytes is not a multiple of 4"
        )));
    }
    check::len(OP, "k_cache", k_cache, a.num_blocks * block_elems)?;
    check::len(OP, "v_cache", v_cache, a.num_blocks * block_elems)?;
    check::dtype(OP, "v_cache", v_cache, k_cache.dtype())?;
    check::idx_len(OP, "block_pairs", block_pairs, 2 * a.n_pairs)?;
    let p = KvCopyBlocksParams {
        k_cache: k_cache.ptr(dev),
        v_cache: v_cache.ptr(dev),
        block_pairs: ptr(dev, block_pairs),
        n_pairs: check::fits_i32(OP, "n_pairs", a.n_pairs)?,
        block_words: check::fits_i32(OP, "block words", block_bytes / 4)?,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_pairs as u32, 64, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, Kernel::KvCacheCopyBlocks, cfg, &p)
}
