//! Device K/V storage: per layer one K and one V tensor of [num_blocks * block_size, kv_dim]
//! (keys after RoPE). Which slots belong to whom is decided by `manager`; this only holds memory.
//! May use: tensor, ops.

use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;

pub struct KvCache {
    pub block_size: usize,
    pub num_blocks: usize,
    pub kv_dim: usize,
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
}

impl KvCache {
    pub fn new(n_layers: usize, num_blocks: usize, block_size: usize, kv_dim: usize) -> Self {
        let slots = num_blocks * block_size;
        KvCache {
            block_size,
            num_blocks,
            kv_dim,
            k: (0..n_layers).map(|_| Tensor::zeros_f32(vec![slots, kv_dim])).collect(),
            v: (0..n_layers).map(|_| Tensor::zeros_f32(vec![slots, kv_dim])).collect(),
        }
    }

    /// Bytes of K+V per token over all layers.
    pub fn bytes_per_token(&self) -> usize {
        2 * self.k.len() * self.kv_dim * 4
    }

    pub fn write(&mut self, layer: usize, k: &Tensor, v: &Tensor, slots: &[i32]) -> Result<()> {
        ops::kv_write(&mut self.k[layer], k, slots)?;
        ops::kv_write(&mut self.v[layer], v, slots)
    }

    /// Copy whole blocks (copy-on-write of a shared partial block), every layer.
    pub fn copy_blocks(&mut self, pairs: &[(u32, u32)]) -> Result<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            crate::backend::cpu::kv_cache::copy_blocks(t.as_f32_mut()?, self.kv_dim, self.block_size, pairs);
        }
        Ok(())
    }
}
