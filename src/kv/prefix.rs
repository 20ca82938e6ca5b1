//! Prefix cache of full KV blocks, keyed on what the model saw: block i of a sequence is named
//! by a hash chained over blocks 0..=i (each row's text id or audio codes and audio flag), so
//! equal hashes mean equal K/V in every layer (causal attention: position p depends only on
//! rows 0..=p). A voice prompt or a repeated system prompt is prefilled once and afterwards
//! only referenced. Host-only bookkeeping. May use: `kv::block_pool`.
//!
//! Counterpart: vLLM `v1/core/kv_cache_utils.py` (`hash_block_tokens`, chained block hashes)
//! and `v1/core/block_pool.py` (cached blocks stay in the free queue, evicted LRU).
//!
//! Ownership rule: the cache holds one reference on every block it names. A cached block whose
//! only reference is the cache's is *evictable*: it sits on an LRU list and is handed out again
//! (forgetting its hash) only when the free list is empty. The manager tells the cache when a
//! block gains or loses its last table (`touch_referenced`, `touch_unreferenced`).

use std::collections::{BTreeMap, HashMap};

use crate::kv::block_pool::BlockId;

/// The name of one full block's content and everything before it (computed by
/// `scheduler::hash`: 128 bits of a SHA-256 chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockHash(pub u128);

/// Lookup counters, in blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PrefixStats {
    /// Full blocks looked up at admission.
    pub queried_blocks: u64,
    /// Of those, found in the cache (their prefill was skipped).
    pub hit_blocks: u64,
    /// Cached blocks evicted to make room.
    pub evicted_blocks: u64,
}

impl PrefixStats {
    pub fn hit_rate(&self) -> f64 {
        if self.queried_blocks == 0 {
            0.0
        } else {
            self.hit_blocks as f64 / self.queried_blocks as f64
        }
    }
}

#[derive(Debug)]
pub struct PrefixCache {
    enabled: bool,
    by_hash: HashMap<BlockHash, BlockId>,
    /// Per block id: its hash while cached.
    hash_of: Vec<Option<BlockHash>>,
    /// Evictable blocks by the tick they became unreferenced (oldest first).
    lru: BTreeMap<u64, BlockId>,
    /// Per block id: its key in `lru` while evictable.
    lru_key: Vec<Option<u64>>,
    tick: u64,
    stats: PrefixStats,
}

impl PrefixCache {
    pub fn new(num_blocks: usize) -> Self {
        PrefixCache {
            enabled: true,
            by_hash: HashMap::new(),
            hash_of: vec![None; num_blocks],
            lru: BTreeMap::new(),
            lru_key: vec![None; num_blocks],
            tick: 0,
            stats: PrefixStats::default(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
    }

    pub fn stats(&self) -> PrefixStats {
        self.stats
    }

    pub fn num_cached(&self) -> usize {
        self.by_hash.len()
    }

    pub fn num_evictable(&self) -> usize {
        self.lru.len()
    }

    /// The blocks holding the longest cached prefix of `hashes` (no side effects: a
    /// scheduler may look up a request it then cannot admit yet).
    pub fn lookup(&self, hashes: &[BlockHash]) -> Vec<BlockId> {
        if !self.enabled {
            return Vec::new();
        }
        hashes
            .iter()
            .map_while(|h| self.by_hash.get(h).copied())
            .collect()
    }

    /// Counts one admission's lookup: `queried` full blocks, `hit` of them found.
    pub fn record(&mut self, queried: usize, hit: usize) {
        self.stats.queried_blocks += queried as u64;
        self.stats.hit_blocks += hit as u64;
    }

    /// Names `block` by `hash`. Returns false (and changes nothing) when the hash is already
    /// cached or the block already is: the caller then keeps its block private. On true the
    /// caller must add the cache's reference to the block.
    pub fn insert(&mut self, hash: BlockHash, block: BlockId) -> bool {
        let i = block.0 as usize;
        if !self.enabled
            || i >= self.hash_of.len()
            || self.hash_of[i].is_some()
            || self.by_hash.contains_key(&hash)
        {
            return false;
        }
        self.by_hash.insert(hash, block);
        self.hash_of[i] = Some(hash);
        true
    }

    /// `block` gained a table reference: it is no longer an eviction candidate.
    pub fn touch_referenced(&mut self, block: BlockId) {
        if let Some(k) = self
            .lru_key
            .get_mut(block.0 as usize)
            .and_then(Option::take)
        {
            self.lru.remove(&k);
        }
    }

    /// `block` lost its last table reference: a cached block becomes evictable (most
    /// recently used end of the list).
    pub fn touch_unreferenced(&mut self, block: BlockId) {
        let i = block.0 as usize;
        if self.hash_of.get(i).copied().flatten().is_none() || self.lru_key[i].is_some() {
            return;
        }
        self.tick += 1;
        self.lru.insert(self.tick, block);
        self.lru_key[i] = Some(self.tick);
    }

    /// Forgets the least recently used evictable block and returns it; the caller drops the
    /// cache's reference (the block's last), which frees it.
    pub fn evict_lru(&mut self) -> Option<BlockId> {
        let (_, block) = self.lru.pop_first()?;
        let i = block.0 as usize;
        self.lru_key[i] = None;
        if let Some(h) = self.hash_of[i].take() {
            self.by_hash.remove(&h);
        }
        self.stats.evicted_blocks += 1;
        Some(block)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lru_evicts_oldest_unreferenced() {
        let mut c = PrefixCache::new(4);
        assert!(c.insert(BlockHash(1), BlockId(0)));
        assert!(c.insert(BlockHash(2), BlockId(1)));
        assert!(!c.insert(BlockHash(2), BlockId(2)), "hash already cached");
        c.touch_unreferenced(BlockId(1));
        c.touch_unreferenced(BlockId(0));
        c.touch_referenced(BlockId(1));
        assert_eq!(c.num_evictable(), 1);
        assert_eq!(c.evict_lru(), Some(BlockId(0)));
        assert_eq!(c.lookup(&[BlockHash(1)]), vec![]);
        assert_eq!(c.lookup(&[BlockHash(2), BlockHash(1)]), vec![BlockId(1)]);
        assert_eq!(c.evict_lru(), None);
    }
}
