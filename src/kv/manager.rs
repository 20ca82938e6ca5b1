//! Per-sequence block tables over a `BlockPool`: admission (`can_allocate`), growth
//! (`allocate_slots`), prefix sharing with copy-on-write (`fork`, `fork_prefix`), the hashed
//! prefix cache of full blocks (`kv::prefix`: `cached_prefix`, `add_sequence_with_prefix`,
//! `cache_full_blocks`), release (`free`) and the token → slot mapping handed to the
//! `kv_cache` kernels. Host-only; never touches device memory.
//! May use: `error`, `kv::block_pool`, `kv::prefix`.
//!
//! Counterparts: vLLM `v1/core/kv_cache_manager.py` (`allocate_slots`, `free`), vLLM v0
//! `core/interfaces.py` (`AllocStatus`) and `core/block_manager.py` (fork + copy-on-write), and
//! mistral.rs `mistralrs-core/src/paged_attention/kv_cache_manager.rs`.
//!
//! Sharing rule: a block may sit in several tables (ref count = number of tables), but a slot is
//! written only through a block whose ref count is 1. Full blocks are never written again
//! (tables are append-only), so sharing them is free; a shared *partial* last block is replaced
//! by a private copy the first time its holder appends, and the caller is told to copy it.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::kv::block_pool::{BlockId, BlockPool};
use crate::kv::prefix::{BlockHash, PrefixCache, PrefixStats};

/// One sequence's handle in the manager (the scheduler maps request ids onto these).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

/// Whether a sequence of a given length can get its blocks (vLLM v0 `AllocStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocStatus {
    /// Enough blocks are free now.
    Ok,
    /// Fits in the pool, but not until other sequences release blocks.
    Later,
    /// Needs more blocks than the whole pool holds: reject the request.
    Never,
}

/// A device block copy the caller must perform before writing the new slots: `to` receives
/// every slot of `from` (copy-on-write of a shared partial block).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockCopy {
    pub from: BlockId,
    pub to: BlockId,
}

#[derive(Debug, Default)]
struct SeqBlocks {
    blocks: Vec<BlockId>,
    /// Tokens with a reserved slot; covered by `blocks` (`blocks.len() == ceil(num_tokens / block_size)`).
    num_tokens: usize,
}

#[derive(Debug)]
pub struct KvCacheManager {
    pool: BlockPool,
    block_size: usize,
    seqs: HashMap<SeqId, SeqBlocks>,
    /// Full blocks kept by content hash; holds one reference on each (see `kv::prefix`).
    prefix: PrefixCache,
}

impl KvCacheManager {
    /// Errors when `block_size` is 0 or when the largest slot index would not fit the `i32`
    /// slot mapping the kernels take.
    pub fn new(num_blocks: usize, block_size: usize) -> Result<Self> {
        if block_size == 0 {
            return Err(Error::BadRequest("kv cache: block_size must be > 0".into()));
        }
        let n_slots = num_blocks.checked_mul(block_size);
        let num_blocks_u32 = u32::try_from(num_blocks).ok();
        match (n_slots, num_blocks_u32) {
            (Some(n), Some(nb)) if n <= i32::MAX as usize => Ok(Self {
                pool: BlockPool::new(nb),
                block_size,
                seqs: HashMap::new(),
                prefix: PrefixCache::new(nb as usize),
            }),
            _ => Err(Error::BadRequest(format!(
                "kv cache: {num_blocks} blocks x {block_size} slots exceeds the i32 slot range"
            ))),
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn num_blocks(&self) -> usize {
        self.pool.num_blocks()
    }

    /// Blocks an allocation can take now: free ones plus cached blocks nobody references
    /// (evicted on demand, least recently used first).
    pub fn num_free_blocks(&self) -> usize {
        self.pool.num_free() + self.prefix.num_evictable()
    }

    /// Blocks on the free list proper (not counting evictable cached blocks).
    pub fn num_unused_blocks(&self) -> usize {
        self.pool.num_free()
    }

    /// Blocks held by the prefix cache (referenced by sequences or not).
    pub fn num_cached_blocks(&self) -> usize {
        self.prefix.num_cached()
    }

    /// Cached blocks no sequence references (the LRU eviction candidates).
    pub fn num_evictable_blocks(&self) -> usize {
        self.prefix.num_evictable()
    }

    /// Turns the prefix cache on or off (on by default). Turning it off drops every
    /// unreferenced cached block back to the free list.
    pub fn set_prefix_caching(&mut self, on: bool) -> Result<()> {
        self.prefix.set_enabled(on);
        if !on {
            while let Some(b) = self.prefix.evict_lru() {
                self.pool.release(b)?;
            }
        }
        Ok(())
    }

    pub fn prefix_caching(&self) -> bool {
        self.prefix.enabled()
    }

    pub fn prefix_stats(&self) -> PrefixStats {
        self.prefix.stats()
    }

    /// The cached blocks that hold the longest prefix of `hashes` (a chain: block i's hash
    /// covers blocks 0..=i), at most `max_blocks` of them.
    pub fn cached_prefix(&self, hashes: &[BlockHash], max_blocks: usize) -> Vec<BlockId> {
        self.prefix.lookup(&hashes[..hashes.len().min(max_blocks)])
    }

    /// Counts an admitted sequence's prefix lookup in the stats.
    pub fn record_prefix_lookup(&mut self, queried_blocks: usize, hit_blocks: usize) {
        if self.prefix.enabled() {
            self.prefix.record(queried_blocks, hit_blocks);
        }
    }

    /// Registers `seq` holding `blocks` (from `cached_prefix`) as its first tokens: each block
    /// gains a reference and leaves the eviction list; no block is taken from the pool.
    pub fn add_sequence_with_prefix(&mut self, seq: SeqId, blocks: &[BlockId]) -> Result<()> {
        if self.seqs.contains_key(&seq) {
            return Err(Error::Other(format!(
                "kv cache: sequence {} already exists",
                seq.0
            )));
        }
        for (i, &b) in blocks.iter().enumerate() {
            if let Err(e) = self.pool.incref(b) {
                for &done in &blocks[..i] {
                    let _ = self.release_block(done);
                }
                return Err(e);
            }
            self.prefix.touch_referenced(b);
        }
        self.seqs.insert(
            seq,
            SeqBlocks {
                blocks: blocks.to_vec(),
                num_tokens: blocks.len() * self.block_size,
            },
        );
        Ok(())
    }

    /// Offers blocks `first .. first + hashes.len()` of `seq` (full and computed; `hashes`
    /// are their chain hashes) to the prefix cache. A hash the cache already holds keeps its
    /// own block; new ones take a reference.
    pub fn cache_full_blocks(
        &mut self,
        seq: SeqId,
        first: usize,
        hashes: &[BlockHash],
    ) -> Result<()> {
        if !self.prefix.enabled() {
            return Ok(());
        }
        let s = self.seqs.get(&seq).ok_or_else(|| unknown(seq))?;
        let full = s.num_tokens / self.block_size;
        if first + hashes.len() > full {
            return Err(Error::Other(format!(
                "kv cache: blocks {first}+{} offered for sequence {} with {full} full blocks",
                hashes.len(),
                seq.0
            )));
        }
        let blocks = s.blocks[first..first + hashes.len()].to_vec();
        for (&b, &h) in blocks.iter().zip(hashes) {
            if self.prefix.insert(h, b) {
                self.pool.incref(b)?;
            }
        }
        Ok(())
    }

    pub fn num_sequences(&self) -> usize {
        self.seqs.len()
    }

    pub fn contains(&self, seq: SeqId) -> bool {
        self.seqs.contains_key(&seq)
    }

    /// Ref count of a block (for schedulers and tests that audit sharing).
    pub fn ref_count(&self, id: BlockId) -> Result<u32> {
        self.pool.ref_count(id)
    }

    /// Blocks needed to hold `n_tokens` tokens.
    pub fn blocks_for_tokens(&self, n_tokens: usize) -> usize {
        n_tokens.div_ceil(self.block_size)
    }

    /// Admission check for a new sequence of `total_tokens` tokens.
    pub fn can_allocate(&self, total_tokens: usize) -> AllocStatus {
        let needed = self.blocks_for_tokens(total_tokens);
        if needed > self.pool.num_blocks() {
            AllocStatus::Never
        } else if needed > self.num_free_blocks() {
            AllocStatus::Later
        } else {
            AllocStatus::Ok
        }
    }

    /// Registers an empty sequence (no blocks until `allocate_slots`).
    pub fn add_sequence(&mut self, seq: SeqId) -> Result<()> {
        if self.seqs.contains_key(&seq) {
            return Err(Error::Other(format!(
                "kv cache: sequence {} already exists",
                seq.0
            )));
        }
        self.seqs.insert(seq, SeqBlocks::default());
        Ok(())
    }

    /// Blocks `allocate_slots(seq, n_new_tokens)` would take from the pool, copy-on-write
    /// included, so a scheduler can budget a step without trying it.
    pub fn blocks_needed(&self, seq: SeqId, n_new_tokens: usize) -> Result<usize> {
        let s = self.seq(seq)?;
        Ok(self.growth(s, n_new_tokens)?.total())
    }

    /// Reserves slots for `n_new_tokens` more tokens of `seq`: afterwards `num_tokens(seq)` has
    /// grown by `n_new_tokens` and `slot_mapping(seq, old_num_tokens, n_new_tokens)` names the
    /// slots to write. If the last block was shared and partially filled, it is replaced by a
    /// fresh block and the returned `BlockCopy` must be executed on the device before the
    /// writes. When the pool is short, returns `Error::Capacity` and changes nothing.
    pub fn allocate_slots(&mut self, seq: SeqId, n_new_tokens: usize) -> Result<Option<BlockCopy>> {
        let growth = self.growth(self.seq(seq)?, n_new_tokens)?;
        let free_blocks = self.num_free_blocks();
        if growth.total() > free_blocks {
            return Err(Error::Capacity {
                needed_blocks: growth.total(),
                free_blocks,
            });
        }
        // Past this check the pool (free list + evictable cached blocks) holds
        // `growth.total()` blocks and the copy-on-write source has ref count > 1, so no step
        // below can fail: all-or-nothing without a rollback path.
        let mut fresh = Vec::with_capacity(growth.total());
        for _ in 0..growth.total() {
            fresh.push(self.take_block()?);
        }
        let mut fresh = fresh.into_iter();
        let s = self.seqs.get_mut(&seq).ok_or_else(|| unknown(seq))?;
        let mut copy = None;
        if growth.cow {
            if let (Some(last), Some(to)) = (s.blocks.last_mut(), fresh.next()) {
                let from = std::mem::replace(last, to);
                copy = Some(BlockCopy { from, to });
            }
        }
        s.blocks.extend(fresh);
        s.num_tokens += n_new_tokens;
        if let Some(c) = copy {
            // Drops our share only; the other holders keep `from` with its contents.
            self.release_block(c.from)?;
        }
        Ok(copy)
    }

    /// `dst` (new) shares all of `src`'s blocks and tokens; see `fork_prefix`.
    pub fn fork(&mut self, src: SeqId, dst: SeqId) -> Result<()> {
        let n = self.num_tokens(src)?;
        self.fork_prefix(src, dst, n)
    }

    /// Creates `dst` holding the first `n_tokens` tokens of `src` by reference: the blocks
    /// covering them are shared (ref count + 1), no block is taken from the pool, and the
    /// sequences diverge through copy-on-write in `allocate_slots`.
    pub fn fork_prefix(&mut self, src: SeqId, dst: SeqId, n_tokens: usize) -> Result<()> {
        if self.seqs.contains_key(&dst) {
            return Err(Error::Other(format!(
                "kv cache: fork target {} already exists",
                dst.0
            )));
        }
        let s = self.seq(src)?;
        if n_tokens > s.num_tokens {
            return Err(Error::BadRequest(format!(
                "kv cache: fork of {} tokens from sequence {} holding {}",
                n_tokens, src.0, s.num_tokens
            )));
        }
        let blocks = s.blocks[..self.blocks_for_tokens(n_tokens)].to_vec();
        for (i, &b) in blocks.iter().enumerate() {
            if let Err(e) = self.pool.incref(b) {
                // Unreachable while tables and pool agree; undo so a broken invariant cannot
                // also leak references.
                for &done in &blocks[..i] {
                    let _ = self.release_block(done);
                }
                return Err(e);
            }
            self.prefix.touch_referenced(b);
        }
        self.seqs.insert(
            dst,
            SeqBlocks {
                blocks,
                num_tokens: n_tokens,
            },
        );
        Ok(())
    }

    /// Removes `seq` and releases every block it holds: the one place blocks go back, so error
    /// paths that drop a request call this and nothing else.
    pub fn free(&mut self, seq: SeqId) -> Result<()> {
        let s = self.seqs.remove(&seq).ok_or_else(|| unknown(seq))?;
        let mut first_err = None;
        for b in s.blocks {
            // Keep releasing after an error so one bad id cannot leak the rest.
            if let Err(e) = self.release_block(b) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    pub fn block_table(&self, seq: SeqId) -> Result<&[BlockId]> {
        Ok(&self.seq(seq)?.blocks)
    }

    pub fn num_tokens(&self, seq: SeqId) -> Result<usize> {
        Ok(self.seq(seq)?.num_tokens)
    }

    /// Flat cache slot of token `pos` of `seq`: `block * block_size + pos % block_size`.
    pub fn slot(&self, seq: SeqId, pos: usize) -> Result<usize> {
        let s = self.seq(seq)?;
        if pos >= s.num_tokens {
            return Err(Error::BadRequest(format!(
                "kv cache: position {pos} of sequence {} beyond its {} reserved tokens",
                seq.0, s.num_tokens
            )));
        }
        Ok(self.slot_of(s, pos))
    }

    /// Slots of positions `start_pos .. start_pos + n` as the `i32` index tensor the kernels
    /// take (`new` proved every slot fits in `i32`).
    pub fn slot_mapping(&self, seq: SeqId, start_pos: usize, n: usize) -> Result<Vec<i32>> {
        let s = self.seq(seq)?;
        match start_pos.checked_add(n) {
            Some(end) if end <= s.num_tokens => Ok((start_pos..end)
                .map(|pos| self.slot_of(s, pos) as i32)
                .collect()),
            _ => Err(Error::BadRequest(format!(
                "kv cache: positions {start_pos}+{n} of sequence {} beyond its {} reserved tokens",
                seq.0, s.num_tokens
            ))),
        }
    }

    /// `pos < s.num_tokens` is the caller's check; the table covers every such position.
    fn slot_of(&self, s: &SeqBlocks, pos: usize) -> usize {
        s.blocks[pos / self.block_size].0 as usize * self.block_size + pos % self.block_size
    }

    /// A block for a table: from the free list, else the least recently used unreferenced
    /// cached block (its hash is forgotten). The caller checked `num_free_blocks` first.
    fn take_block(&mut self) -> Result<BlockId> {
        if let Some(b) = self.pool.allocate() {
            return Ok(b);
        }
        let victim = self.prefix.evict_lru().ok_or(Error::Capacity {
            needed_blocks: 1,
            free_blocks: 0,
        })?;
        // The cache held the only reference: this returns it to the free list.
        self.pool.release(victim)?;
        self.pool.allocate().ok_or(Error::Capacity {
            needed_blocks: 1,
            free_blocks: 0,
        })
    }

    /// Drops one table's reference; a cached block left with only the cache's reference
    /// becomes evictable.
    fn release_block(&mut self, b: BlockId) -> Result<()> {
        self.pool.release(b)?;
        if self.pool.ref_count(b)? == 1 {
            self.prefix.touch_unreferenced(b);
        }
        Ok(())
    }

    fn seq(&self, seq: SeqId) -> Result<&SeqBlocks> {
        self.seqs.get(&seq).ok_or_else(|| unknown(seq))
    }

    fn growth(&self, s: &SeqBlocks, n_new_tokens: usize) -> Result<Growth> {
        let new_total = s
            .num_tokens
            .checked_add(n_new_tokens)
            .ok_or_else(|| Error::BadRequest("kv cache: token count overflow".into()))?;
        let append = self.blocks_for_tokens(new_total) - s.blocks.len();
        let partial = !s.num_tokens.is_multiple_of(self.block_size);
        let cow = match s.blocks.last() {
            Some(&last) if n_new_tokens > 0 && partial => self.pool.ref_count(last)? > 1,
            _ => false,
        };
        Ok(Growth { append, cow })
    }
}

/// Blocks one `allocate_slots` call takes: `append` new table entries, plus one replacement
/// block when the shared partial last block must be copied.
struct Growth {
    append: usize,
    cow: bool,
}

impl Growth {
    fn total(&self) -> usize {
        self.append + usize::from(self.cow)
    }
}

fn unknown(seq: SeqId) -> Error {
    Error::Other(format!("kv cache: unknown sequence {}", seq.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_by_blocks_and_maps_slots() {
        let mut m = KvCacheManager::new(4, 4).unwrap();
        m.add_sequence(SeqId(1)).unwrap();
        assert_eq!(m.allocate_slots(SeqId(1), 5).unwrap(), None);
        assert_eq!(m.block_table(SeqId(1)).unwrap(), &[BlockId(0), BlockId(1)]);
        assert_eq!(m.slot_mapping(SeqId(1), 3, 2).unwrap(), vec![3, 4]);
        assert!(m.slot(SeqId(1), 5).is_err());
    }

    #[test]
    fn capacity_error_changes_nothing() {
        let mut m = KvCacheManager::new(2, 4).unwrap();
        m.add_sequence(SeqId(1)).unwrap();
        m.allocate_slots(SeqId(1), 3).unwrap();
        let err = m.allocate_slots(SeqId(1), 10).unwrap_err();
        assert!(matches!(
            err,
            Error::Capacity {
                needed_blocks: 3,
                free_blocks: 1
            }
        ));
        assert_eq!(m.num_tokens(SeqId(1)).unwrap(), 3);
        assert_eq!(m.num_free_blocks(), 1);
    }

    #[test]
    fn fork_copies_partial_block_on_first_write() {
        let mut m = KvCacheManager::new(8, 4).unwrap();
        m.add_sequence(SeqId(1)).unwrap();
        m.allocate_slots(SeqId(1), 6).unwrap();
        m.fork(SeqId(1), SeqId(2)).unwrap();
        assert_eq!(m.num_free_blocks(), 6);
        let copy = m.allocate_slots(SeqId(2), 1).unwrap().unwrap();
        assert_eq!(copy.from, BlockId(1));
        assert_eq!(m.block_table(SeqId(2)).unwrap(), &[BlockId(0), copy.to]);
        // The source now owns its partial block alone and appends in place.
        assert_eq!(m.allocate_slots(SeqId(1), 1).unwrap(), None);
        m.free(SeqId(1)).unwrap();
        m.free(SeqId(2)).unwrap();
        assert_eq!(m.num_free_blocks(), 8);
    }

    #[test]
    fn admission() {
        let m = KvCacheManager::new(2, 16).unwrap();
        assert_eq!(m.can_allocate(32), AllocStatus::Ok);
        assert_eq!(m.can_allocate(33), AllocStatus::Never);
        assert!(KvCacheManager::new(1 << 20, 1 << 12).is_err());
        assert!(KvCacheManager::new(1, 0).is_err());
    }
}
