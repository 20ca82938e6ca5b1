//! Randomised tests of the paged KV-cache bookkeeping (`kv::block_pool`, `kv::manager`): many
//! sequences are added, grown, forked and freed in random order against a simulated device
//! cache, and after every operation the block tables, ref counts, free list and slot contents are
//! audited. Seeds come from a seeded `StdRng`; the seed is printed and `HIGGS_TEST_SEED` replays
//! one case.

use std::collections::{BTreeMap, HashMap};

use higgs_engine::kv::block_pool::BlockId;
use higgs_engine::kv::manager::{AllocStatus, BlockCopy, KvCacheManager, SeqId};
use higgs_engine::Error;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The manager plus everything the test expects it to hold: the simulated device cache
/// (`store[slot]` = the value last written there) and each sequence's logical token values.
struct Sim {
    m: KvCacheManager,
    store: Vec<u64>,
    contents: BTreeMap<SeqId, Vec<u64>>,
    next_seq: u64,
    next_value: u64,
    /// How often the interesting paths ran, so the test can prove it reached them.
    cow_copies: usize,
    capacity_errors: usize,
}

/// Everything observable about the manager, to prove a failed call changed nothing.
#[derive(Debug, PartialEq)]
struct Snapshot {
    free: usize,
    tables: BTreeMap<SeqId, (Vec<BlockId>, usize)>,
    ref_counts: Vec<u32>,
}

impl Sim {
    fn new(num_blocks: usize, block_size: usize) -> Self {
        Self {
            m: KvCacheManager::new(num_blocks, block_size).unwrap(),
            store: vec![0; num_blocks * block_size],
            contents: BTreeMap::new(),
            next_seq: 0,
            next_value: 1,
            cow_copies: 0,
            capacity_errors: 0,
        }
    }

    fn snapshot(&self) -> Snapshot {
        let tables = self
            .contents
            .keys()
            .map(|&s| {
                let t = self.m.block_table(s).unwrap().to_vec();
                (s, (t, self.m.num_tokens(s).unwrap()))
            })
            .collect();
        let ref_counts = (0..self.m.num_blocks() as u32)
            .map(|b| self.m.ref_count(BlockId(b)).unwrap())
            .collect();
        Snapshot {
            free: self.m.num_free_blocks(),
            tables,
            ref_counts,
        }
    }

    fn pick(&self, rng: &mut StdRng) -> Option<SeqId> {
        if self.contents.is_empty() {
            return None;
        }
        let i = rng.gen_range(0..self.contents.len());
        self.contents.keys().nth(i).copied()
    }

    fn add(&mut self) -> SeqId {
        let s = SeqId(self.next_seq);
        self.next_seq += 1;
        self.m.add_sequence(s).unwrap();
        self.contents.insert(s, Vec::new());
        s
    }

    /// Grows `seq` by `n` tokens and writes fresh values into the new slots, executing the
    /// copy-on-write first as the engine must.
    fn grow(&mut self, seq: SeqId, n: usize, ctx: &str) {
        let before = self.snapshot();
        let needed = self.m.blocks_needed(seq, n).unwrap();
        match self.m.allocate_slots(seq, n) {
            Ok(copy) => {
                assert!(
                    needed <= before.free,
                    "{ctx}: succeeded past its own estimate"
                );
                assert_eq!(
                    self.m.num_free_blocks(),
                    before.free - needed,
                    "{ctx}: blocks_needed disagrees with allocate_slots"
                );
                if let Some(BlockCopy { from, to }) = copy {
                    self.cow_copies += 1;
                    let bs = self.m.block_size();
                    let (f, t) = (from.0 as usize * bs, to.0 as usize * bs);
                    self.store.copy_within(f..f + bs, t);
                }
                let start = before.tables[&seq].1;
                let slots = self.m.slot_mapping(seq, start, n).unwrap();
                for slot in slots {
                    let block = BlockId((slot as usize / self.m.block_size()) as u32);
                    assert_eq!(
                        self.m.ref_count(block).unwrap(),
                        1,
                        "{ctx}: write into shared block {block:?}"
                    );
                    self.store[slot as usize] = self.next_value;
                    self.contents.get_mut(&seq).unwrap().push(self.next_value);
                    self.next_value += 1;
                }
            }
            Err(Error::Capacity {
                needed_blocks,
                free_blocks,
            }) => {
                self.capacity_errors += 1;
                assert_eq!(needed_blocks, needed, "{ctx}");
                assert_eq!(free_blocks, before.free, "{ctx}");
                assert!(
                    needed_blocks > free_blocks,
                    "{ctx}: spurious capacity error"
                );
                assert_eq!(self.snapshot(), before, "{ctx}: failed grow changed state");
            }
            Err(e) => panic!("{ctx}: unexpected error {e}"),
        }
    }

    fn fork(&mut self, src: SeqId, n_tokens: Option<usize>) {
        let dst = SeqId(self.next_seq);
        self.next_seq += 1;
        let free = self.m.num_free_blocks();
        let n = n_tokens.unwrap_or(self.contents[&src].len());
        match n_tokens {
            Some(n) => self.m.fork_prefix(src, dst, n).unwrap(),
            None => self.m.fork(src, dst).unwrap(),
        }
        assert_eq!(self.m.num_free_blocks(), free, "fork must not take blocks");
        let prefix = self.contents[&src][..n].to_vec();
        self.contents.insert(dst, prefix);
    }

    fn free(&mut self, seq: SeqId) {
        self.m.free(seq).unwrap();
        self.contents.remove(&seq);
    }

    /// Ref count of every block = number of tables holding it; free count = blocks at 0; tables
    /// cover exactly their tokens; every sequence reads back its own values; two sequences map
    /// a position to the same slot only through a block they share.
    fn audit(&self, ctx: &str) {
        let bs = self.m.block_size();
        let mut holders: HashMap<BlockId, u32> = HashMap::new();
        let mut slot_owner: HashMap<usize, SeqId> = HashMap::new();
        for (&seq, values) in &self.contents {
            let table = self.m.block_table(seq).unwrap();
            assert_eq!(self.m.num_tokens(seq).unwrap(), values.len(), "{ctx}");
            assert_eq!(table.len(), values.len().div_ceil(bs), "{ctx}: table size");
            let mut sorted = table.to_vec();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), table.len(), "{ctx}: block twice in one table");
            for &b in table {
                *holders.entry(b).or_default() += 1;
            }
            for (pos, &v) in values.iter().enumerate() {
                let slot = self.m.slot(seq, pos).unwrap();
                assert_eq!(slot, table[pos / bs].0 as usize * bs + pos % bs, "{ctx}");
                assert_eq!(self.store[slot], v, "{ctx}: {seq:?} pos {pos} clobbered");
                if let Some(&other) = slot_owner.get(&slot) {
                    let rc = self.m.ref_count(BlockId((slot / bs) as u32)).unwrap();
                    assert!(
                        rc >= 2,
                        "{ctx}: {seq:?} and {other:?} collide at slot {slot}"
                    );
                }
                slot_owner.insert(slot, seq);
            }
        }
        let mut zero = 0;
        for b in 0..self.m.num_blocks() as u32 {
            let rc = self.m.ref_count(BlockId(b)).unwrap();
            let held = holders.get(&BlockId(b)).copied().unwrap_or(0);
            assert_eq!(rc, held, "{ctx}: ref count of block {b}");
            zero += usize::from(rc == 0);
        }
        assert_eq!(zero, self.m.num_free_blocks(), "{ctx}: free count");
    }
}

fn seeds(default: impl Iterator<Item = u64>) -> Vec<u64> {
    match std::env::var("HIGGS_TEST_SEED") {
        Ok(s) => vec![s.parse().expect("HIGGS_TEST_SEED must be a u64")],
        Err(_) => default.collect(),
    }
}

/// Returns (copy-on-write copies, capacity errors) seen.
fn random_workload(
    seed: u64,
    num_blocks: usize,
    block_size: usize,
    n_ops: usize,
) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut sim = Sim::new(num_blocks, block_size);
    let start_free = sim.m.num_free_blocks();
    assert_eq!(start_free, num_blocks);
    for op in 0..n_ops {
        let ctx = format!("seed {seed} blocks {num_blocks} bs {block_size} op {op}");
        let choice = rng.gen_range(0..100);
        match (choice, sim.pick(&mut rng)) {
            (0..=14, _) | (_, None) => {
                if sim.contents.len() < 24 {
                    sim.add();
                }
            }
            (15..=59, Some(s)) => {
                // Mostly decode-sized steps, sometimes a prompt-sized chunk.
                let n = if rng.gen_bool(0.7) {
                    1
                } else {
                    rng.gen_range(0..=3 * block_size)
                };
                sim.grow(s, n, &ctx);
            }
            (60..=74, Some(s)) => {
                let len = sim.contents[&s].len();
                let n = rng.gen_bool(0.5).then(|| rng.gen_range(0..=len));
                sim.fork(s, n);
            }
            (_, Some(s)) => sim.free(s),
        }
        sim.audit(&ctx);
    }
    let left: Vec<SeqId> = sim.contents.keys().copied().collect();
    for s in left {
        sim.free(s);
        sim.audit(&format!("seed {seed}: final free"));
    }
    assert_eq!(
        sim.m.num_free_blocks(),
        start_free,
        "seed {seed}: blocks leaked"
    );
    assert_eq!(sim.m.num_sequences(), 0);
    (sim.cow_copies, sim.capacity_errors)
}

#[test]
fn random_add_grow_fork_free() {
    let (mut copies, mut capacity_errors) = (0, 0);
    for seed in seeds(0..24) {
        eprintln!("kv random workload seed {seed}");
        // A tight pool (capacity errors are frequent), block size 1 (no partial blocks) and an
        // odd block size (partial blocks almost always).
        for (num_blocks, block_size, n_ops) in
            [(12, 4, 600), (40, 1, 600), (64, 7, 600), (256, 16, 400)]
        {
            let (c, e) = random_workload(seed, num_blocks, block_size, n_ops);
            copies += c;
            capacity_errors += e;
        }
    }
    eprintln!("copy-on-write copies {copies}, capacity errors {capacity_errors}");
    if std::env::var("HIGGS_TEST_SEED").is_err() {
        assert!(copies > 0 && capacity_errors > 0, "workload missed a path");
    }
}

#[test]
fn admission_status() {
    let mut m = KvCacheManager::new(4, 16).unwrap();
    assert_eq!(m.can_allocate(0), AllocStatus::Ok);
    assert_eq!(m.can_allocate(64), AllocStatus::Ok);
    assert_eq!(m.can_allocate(65), AllocStatus::Never);
    m.add_sequence(SeqId(0)).unwrap();
    m.allocate_slots(SeqId(0), 17).unwrap();
    assert_eq!(m.can_allocate(32), AllocStatus::Ok);
    assert_eq!(m.can_allocate(33), AllocStatus::Later);
    assert_eq!(m.can_allocate(65), AllocStatus::Never);
}

#[test]
fn misuse_is_an_error_and_changes_nothing() {
    let mut m = KvCacheManager::new(4, 4).unwrap();
    m.add_sequence(SeqId(1)).unwrap();
    m.allocate_slots(SeqId(1), 5).unwrap();
    let free = m.num_free_blocks();
    assert!(m.add_sequence(SeqId(1)).is_err());
    assert!(m.allocate_slots(SeqId(9), 1).is_err());
    assert!(m.fork(SeqId(9), SeqId(2)).is_err());
    assert!(m.fork(SeqId(1), SeqId(1)).is_err());
    assert!(m.fork_prefix(SeqId(1), SeqId(2), 6).is_err());
    assert!(m.free(SeqId(9)).is_err());
    assert!(m.block_table(SeqId(9)).is_err());
    assert!(m.slot(SeqId(1), 5).is_err());
    assert!(m.slot_mapping(SeqId(1), 4, 2).is_err());
    assert!(m.slot_mapping(SeqId(1), usize::MAX, 2).is_err());
    assert!(m.allocate_slots(SeqId(1), usize::MAX).is_err());
    assert_eq!(m.num_free_blocks(), free);
    assert_eq!(m.num_tokens(SeqId(1)).unwrap(), 5);
    m.free(SeqId(1)).unwrap();
    assert!(m.free(SeqId(1)).is_err(), "double free must be refused");
    assert_eq!(m.num_free_blocks(), 4);
}

#[test]
fn fork_of_full_blocks_needs_no_copy() {
    let mut m = KvCacheManager::new(8, 4).unwrap();
    m.add_sequence(SeqId(0)).unwrap();
    m.allocate_slots(SeqId(0), 8).unwrap();
    m.fork(SeqId(0), SeqId(1)).unwrap();
    for &b in m.block_table(SeqId(0)).unwrap() {
        assert_eq!(m.ref_count(b).unwrap(), 2);
    }
    assert_eq!(m.allocate_slots(SeqId(1), 1).unwrap(), None);
    assert_eq!(m.allocate_slots(SeqId(0), 1).unwrap(), None);
    assert_ne!(
        m.block_table(SeqId(0)).unwrap()[2],
        m.block_table(SeqId(1)).unwrap()[2]
    );
    // A copy-on-write needs a block too; with none free it is a capacity error, not a clobber.
    m.fork(SeqId(0), SeqId(2)).unwrap();
    while m.num_free_blocks() > 0 {
        m.allocate_slots(SeqId(1), 4).unwrap();
    }
    let err = m.allocate_slots(SeqId(2), 1).unwrap_err();
    assert!(matches!(
        err,
        Error::Capacity {
            needed_blocks: 1,
            free_blocks: 0
        }
    ));
    for s in 0..3 {
        m.free(SeqId(s)).unwrap();
    }
    assert_eq!(m.num_free_blocks(), 8);
}
