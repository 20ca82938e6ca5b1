//! llama3-scaled RoPE on the GPU (`kernels/rope.cu`): in place on Q or K, and a variant fused
//! with the paged-cache write of rotated K and of V.
//! CPU twin: `backend/cpu/rope.rs`. spec: model.md §5.5, §11.3.
//! May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{by_dtype, check, CudaStorage};
use crate::error::{Error, Result};

params_struct!(RopeParams, 40, {
    x: u64, positions: u64, inv_freq: u64, n_tokens: i32, n_heads: i32, head_dim: i32, _pad: i32,
});
params_struct!(RopeCacheParams, 88, {
    q: u64, k: u64, v: u64, k_cache: u64, v_cache: u64, positions: u64, slot_mapping: u64,
    inv_freq: u64, n_tokens: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32, num_slots: i32,
    _pad: i32,
});

params_struct!(RopeQkvParams, 80, {
    qkv: u64, q: u64, k_cache: u64, v_cache: u64, positions: u64, slot_mapping: u64,
    inv_freq: u64, n_tokens: i32, n_heads: i32, n_kv_heads: i32, head_dim: i32, num_slots: i32,
    _pad: i32,
});

/// RoPE on one `[n_tokens, n_heads * head_dim]` tensor.
#[derive(Clone, Copy, Debug)]
pub struct RopeArgs {
    pub n_tokens: usize,
    pub n_heads: usize,
    pub head_dim: usize,
}

/// RoPE on Q and K plus the cache write; `num_slots` = num_blocks × block_size.
#[derive(Clone, Copy, Debug)]
pub struct RopeCacheArgs {
    pub n_tokens: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub num_slots: usize,
}

fn head_dim_ok(op: &'static str, head_dim: usize) -> Result<()> {
    if head_dim == 0 || !head_dim.is_multiple_of(2) || head_dim / 2 > 1024 {
        return Err(Error::Unsupported(format!(
            "{op}: head_dim {head_dim} (must be even and <= 2048)"
        )));
    }
    Ok(())
}

/// Rotates `x` in place; `positions[n_tokens]` (i32), `inv_freq[head_dim/2]` (f32, llama3-scaled).
pub fn rope(
    dev: &CudaDevice,
    x: &mut CudaStorage,
    positions: &CudaSlice<i32>,
    inv_freq: &CudaSlice<f32>,
    a: &RopeArgs,
) -> Result<()> {
    const OP: &str = "cuda::rope";
    head_dim_ok(OP, a.head_dim)?;
    check::len(OP, "x", x, a.n_tokens * a.n_heads * a.head_dim)?;
    check::idx_len(OP, "positions", positions, a.n_tokens)?;
    check::idx_len(OP, "inv_freq", inv_freq, a.head_dim / 2)?;
    let k = by_dtype(OP, x.dtype(), Kernel::RopeBf16, Kernel::RopeF32)?;
    let p = RopeParams {
        x: x.ptr(dev),
        positions: ptr(dev, positions),
        inv_freq: ptr(dev, inv_freq),
        n_tokens: check::fits_i32(OP, "n_tokens", a.n_tokens)?,
        n_heads: check::fits_i32(OP, "n_heads", a.n_heads)?,
        head_dim: a.head_dim as i32,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_tokens as u32, p.n_heads as u32, 1),
        block_dim: (a.head_dim as u32 / 2, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, k, cfg, &p)
}

/// Rotates `q` and `k` in place and writes rotated K and V rows to the caches at
/// `slot_mapping[t]` (−1 or out-of-range slots are skipped).
#[allow(clippy::too_many_arguments)]
pub fn rope_cache(
    dev: &CudaDevice,
    q: &mut CudaStorage,
    k: &mut CudaStorage,
    v: &CudaStorage,
    k_cache: &mut CudaStorage,
    v_cache: &mut CudaStorage,
    positions: &CudaSlice<i32>,
    slot_mapping: &CudaSlice<i32>,
    inv_freq: &CudaSlice<f32>,
    a: &RopeCacheArgs,
) -> Result<()> {
    const OP: &str = "cuda::rope_cache";
    head_dim_ok(OP, a.head_dim)?;
    let kv_row = a.n_kv_heads * a.head_dim;
    check::len(OP, "q", q, a.n_tokens * a.n_heads * a.head_dim)?;
    check::len(OP, "k", k, a.n_tokens * kv_row)?;
    check::len(OP, "v", v, a.n_tokens * kv_row)?;
    check::len(OP, "k_cache", k_cache, a.num_slots * kv_row)?;
    check::len(OP, "v_cache", v_cache, a.num_slots * kv_row)?;
    for (arg, s) in [
        ("k", &*k),
        ("v", v),
        ("k_cache", &*k_cache),
        ("v_cache", &*v_cache),
    ] {
        check::dtype(OP, arg, s, q.dtype())?;
    }
    check::idx_len(OP, "positions", positions, a.n_tokens)?;
    check::idx_len(OP, "slot_mapping", slot_mapping, a.n_tokens)?;
    check::idx_len(OP, "inv_freq", inv_freq, a.head_dim / 2)?;
    let kernel = by_dtype(OP, q.dtype(), Kernel::RopeCacheBf16, Kernel::RopeCacheF32)?;
    let p = RopeCacheParams {
        q: q.ptr(dev),
        k: k.ptr(dev),
        v: v.ptr(dev),
        k_cache: k_cache.ptr(dev),
        v_cache: v_cache.ptr(dev),
        positions: ptr(dev, positions),
        slot_mapping: ptr(dev, slot_mapping),
        inv_freq: ptr(dev, inv_freq),
        n_tokens: check::fits_i32(OP, "n_tokens", a.n_tokens)?,
        n_heads: check::fits_i32(OP, "n_heads", a.n_heads)?,
        n_kv_heads: check::fits_i32(OP, "n_kv_heads", a.n_kv_heads)?,
        head_dim: a.head_dim as i32,
        num_slots: check::fits_i32(OP, "num_slots", a.num_slots)?,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_tokens as u32, (a.n_heads + a.n_kv_heads) as u32, 1),
        block_dim: (a.head_dim as u32 / 2, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, kernel, cfg, &p)
}

/// [`rope_cache`] reading Q, K and V as the three column ranges of one fused QKV GEMM output
/// `qkv` (`[n_tokens, (n_heads + 2·n_kv_heads)·head_dim]`, left unchanged): rotated Q is
/// written to `q` (`[n_tokens, n_heads·head_dim]`), rotated K and V to the caches.
#[allow(clippy::too_many_arguments)]
pub fn rope_qkv(
    dev: &CudaDevice,
    qkv: &CudaStorage,
    q: &mut CudaStorage,
    k_cache: &mut CudaStorage,
    v_cache: &mut CudaStorage,
    positions: &CudaSlice<i32>,
    slot_mapping: &CudaSlice<i32>,
    inv_freq: &CudaSlice<f32>,
    a: &RopeCacheArgs,
) -> Result<()> {
    const OP: &str = "cuda::rope_qkv";
    head_dim_ok(OP, a.head_dim)?;
    let kv_row = a.n_kv_heads * a.head_dim;
    let q_row = a.n_heads * a.head_dim;
    check::len(OP, "qkv", qkv, a.n_tokens * (q_row + 2 * kv_row))?;
    check::len(OP, "q", q, a.n_tokens * q_row)?;
    check::len(OP, "k_cache", k_cache, a.num_slots * kv_row)?;
    check::len(OP, "v_cache", v_cache, a.num_slots * kv_row)?;
    for (arg, s) in [("q", &*q), ("k_cache", &*k_cache), ("v_cache", &*v_cache)] {
        check::dtype(OP, arg, s, qkv.dtype())?;
    }
    check::idx_len(OP, "positions", positions, a.n_tokens)?;
    check::idx_len(OP, "slot_mapping", slot_mapping, a.n_tokens)?;
    check::idx_len(OP, "inv_freq", inv_freq, a.head_dim / 2)?;
    check::fits_i32(OP, "qkv row", q_row + 2 * kv_row)?;
    let kernel = by_dtype(OP, qkv.dtype(), Kernel::RopeQkvBf16, Kernel::RopeQkvF32)?;
    let p = RopeQkvParams {
        qkv: qkv.ptr(dev),
        q: q.ptr(dev),
        k_cache: k_cache.ptr(dev),
        v_cache: v_cache.ptr(dev),
        positions: ptr(dev, positions),
        slot_mapping: ptr(dev, slot_mapping),
        inv_freq: ptr(dev, inv_freq),
        n_tokens: check::fits_i32(OP, "n_tokens", a.n_tokens)?,
        n_heads: check::fits_i32(OP, "n_heads", a.n_heads)?,
        n_kv_heads: check::fits_i32(OP, "n_kv_heads", a.n_kv_heads)?,
        head_dim: a.head_dim as i32,
        num_slots: check::fits_i32(OP, "num_slots", a.num_slots)?,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_tokens as u32, (a.n_heads + a.n_kv_heads) as u32, 1),
        block_dim: (a.head_dim as u32 / 2, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, kernel, cfg, &p)
}
