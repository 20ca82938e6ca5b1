//! Device K/V storage: per layer one K and one V tensor of [num_blocks * block_size, kv_dim]
//! (keys after RoPE). Which slots belong to whom is decided by `manager`; this only holds memory.
//! May use: tensor, ops.

use crate::error::Result;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};

pub struct KvCache {
    pub block_size: usize,
    pub num_blocks: usize,
    pub kv_dim: usize,
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Unique per cache in this process: device step graphs bake the cache's buffers in and
    /// are keyed by it.
    id: u64,
}

static NEXT_CACHE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_id() -> u64 {
    NEXT_CACHE_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl KvCache {
    /// This cache's process-unique id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Host f32 cache (the CPU backend's activation dtype).
    pub fn new(n_layers: usize, num_blocks: usize, block_size: usize, kv_dim: usize) -> Self {
        let slots = num_blocks * block_size;
        KvCache {
            block_size,
            num_blocks,
            kv_dim,
            k: (0..n_layers)
                .map(|_| Tensor::zeros_f32(vec![slots, kv_dim]))
                .collect(),
            v: (0..n_layers)
                .map(|_| Tensor::zeros_f32(vec![slots, kv_dim]))
                .collect(),
            id: next_id(),
        }
    }

    /// A zeroed cache of `dtype` on `device` (the activations' dtype: K/V rows are written as
    /// the attention projections produce them).
    pub fn new_on(
        n_layers: usize,
        num_blocks: usize,
        block_size: usize,
        kv_dim: usize,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let slots = num_blocks * block_size;
        let alloc = || {
            (0..n_layers)
                .map(|_| Tensor::zeros(vec![slots, kv_dim], dtype, device))
                .collect::<Result<Vec<_>>>()
        };
        Ok(KvCache {
            block_size,
            num_blocks,
            kv_dim,
            k: alloc()?,
            v: alloc()?,
            id: next_id(),
        })
    }

    /// Bytes of K+V per token over all layers.
    pub fn bytes_per_token(&self) -> usize {
        let elem = self.k.first().map_or(4, |t| t.dtype().size_bytes());
        2 * self.k.len() * self.kv_dim * elem
    }

    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor, slots: &[i32]) -> Result<()> {
        match (self.k.get_mut(layer), self.v.get_mut(layer)) {
            (Some(kc), Some(vc)) => ops::kv_write_pair(kc, vc, k, v, slots),
            _ => Err(crate::error::Error::Other(format!(
                "KV cache has no layer {layer}"
            ))),
        }
    }

    /// RoPE on the Q and K of one fused QKV projection output, K and V written into this
    /// layer's cache at `slots` (see [`ops::rope_qkv_write`]); returns the rotated queries.
    pub fn rope_write_qkv(
        &mut self,
        layer: usize,
        qkv: &Tensor,
        heads: ops::RopeHeads,
        positions: &[i32],
        inv_freq: &[f32],
        slots: &[i32],
    ) -> Result<Tensor> {
        match (self.k.get_mut(layer), self.v.get_mut(layer)) {
            (Some(kc), Some(vc)) => {
                ops::rope_qkv_write(qkv, kc, vc, heads, positions, inv_freq, slots)
            }
            _ => Err(crate::error::Error::Other(format!(
                "KV cache has no layer {layer}"
            ))),
        }
    }

    /// Copy whole blocks (copy-on-write of a shared partial block), every layer.
    pub fn copy_blocks(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        for (k, v) in self.k.iter_mut().zip(self.v.iter_mut()) {
            ops::kv_copy_blocks(k, v, self.block_size, pairs)?;
        }
        Ok(())
    }
}
