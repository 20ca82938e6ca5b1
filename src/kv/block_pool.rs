//! Physical KV-cache blocks: a flat array of reference counts and an O(1) free list.
//! Host-only bookkeeping; device memory lives in `kv::cache`. May use: `error`.
//!
//! Counterparts: vLLM `v1/core/block_pool.py` (`BlockPool`: free queue + ref counts) and
//! mistral.rs `mistralrs-core/src/paged_attention/block_pool.rs`. Unlike vLLM we keep no hashed
//! prefix cache, so the free list is a plain stack (no LRU eviction order to preserve) and no
//! null block is reserved: padding slots are expressed as `-1` in the slot mapping instead.

use crate::error::{Error, Result};

/// Index of one physical block of `block_size` token slots in the device K/V cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId(pub u32);

/// Owns every block id; a block is either free (ref count 0, on the free list) or held by one or
/// more sequences (ref count = number of block tables that contain it).
#[derive(Debug)]
pub struct BlockPool {
    ref_counts: Vec<u32>,
    /// Stack of free ids. Invariant: `id` is on it exactly when `ref_counts[id] == 0`.
    free: Vec<BlockId>,
}

impl BlockPool {
    /// A pool of `num_blocks` free blocks. The id space is `u32` (it is handed to kernels as
    /// `i32` slot indices, which `KvCacheManager::new` bounds separately).
    pub fn new(num_blocks: u32) -> Self {
        // Reverse so that `allocate` hands out 0, 1, 2, … first: easier to read in logs and
        // keeps a fresh pool's first sequence in low, contiguous memory.
        let free = (0..num_blocks).rev().map(BlockId).collect();
        Self {
            ref_counts: vec![0; num_blocks as usize],
            free,
        }
    }

    pub fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }

    pub fn num_free(&self) -> usize {
        self.free.len()
    }

    /// Takes a free block with ref count 1, or `None` when the pool is exhausted (the caller,
    /// not the pool, decides whom to preempt).
    pub fn allocate(&mut self) -> Option<BlockId> {
        let id = self.free.pop()?;
        self.ref_counts[id.0 as usize] = 1;
        Some(id)
    }

    /// Ref count of `id`; 0 for a free block. Errors only for an id outside the pool.
    pub fn ref_count(&self, id: BlockId) -> Result<u32> {
        self.check(id).map(|i| self.ref_counts[i])
    }

    /// Adds a holder to an allocated block (prefix sharing). Incrementing a free block would
    /// let it be handed out again while held, so that is refused.
    pub fn incref(&mut self, id: BlockId) -> Result<()> {
        let i = self.check(id)?;
        match self.ref_counts[i] {
            0 => Err(misuse("incref", id, "block is free")),
            u32::MAX => Err(misuse("incref", id, "ref count overflow")),
            _ => {
                self.ref_counts[i] += 1;
                Ok(())
            }
        }
    }

    /// Drops one holder; at 0 the block returns to the free list. Releasing a free block is an
    /// error and leaves the pool untouched (a double free would otherwise put the id on the
    /// free list twice and hand it to two sequences).
    pub fn release(&mut self, id: BlockId) -> Result<()> {
        let i = self.check(id)?;
        match self.ref_counts[i] {
            0 => Err(misuse("release", id, "block is already free")),
            n => {
                self.ref_counts[i] = n - 1;
                if n == 1 {
                    self.free.push(id);
                }
                Ok(())
            }
        }
    }

    fn check(&self, id: BlockId) -> Result<usize> {
        let i = id.0 as usize;
        if i < self.ref_counts.len() {
            Ok(i)
        } else {
            Err(misuse("lookup", id, "id outside the pool"))
        }
    }
}

fn misuse(op: &str, id: BlockId, reason: &str) -> Error {
    Error::Other(format!("block pool {op} of block {}: {reason}", id.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_until_empty_then_release() {
        let mut pool = BlockPool::new(3);
        let ids: Vec<_> = (0..3).filter_map(|_| pool.allocate()).collect();
        assert_eq!(ids, vec![BlockId(0), BlockId(1), BlockId(2)]);
        assert_eq!(pool.allocate(), None);
        pool.release(ids[1]).unwrap();
        assert_eq!(pool.num_free(), 1);
        assert_eq!(pool.allocate(), Some(BlockId(1)));
    }

    #[test]
    fn shared_block_is_freed_at_zero_only() {
        let mut pool = BlockPool::new(2);
        let id = pool.allocate().unwrap();
        pool.incref(id).unwrap();
        assert_eq!(pool.ref_count(id).unwrap(), 2);
        pool.release(id).unwrap();
        assert_eq!(pool.num_free(), 1);
        pool.release(id).unwrap();
        assert_eq!(pool.num_free(), 2);
    }

    #[test]
    fn misuse_is_an_error_and_changes_nothing() {
        let mut pool = BlockPool::new(2);
        assert!(pool.release(BlockId(0)).is_err());
        assert!(pool.incref(BlockId(0)).is_err());
        assert!(pool.release(BlockId(7)).is_err());
        assert!(pool.ref_count(BlockId(2)).is_err());
        assert_eq!(pool.num_free(), 2);
        assert_eq!(pool.allocate(), Some(BlockId(0)));
        assert_eq!(pool.allocate(), Some(BlockId(1)));
    }
}
