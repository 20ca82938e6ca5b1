//! One scheduled sequence: every row the model has been or will be fed (prompt rows, then the
//! rows fed back after each draw), how many of them have K/V in the cache (`num_computed`),
//! its place in the queue and its block hashes. The generation state (sampling, delay
//! pattern, stops) lives with the engine; this is only what scheduling needs.
//! May use: `kv`, `model::batch`.
//!
//! Counterpart: vLLM `v1/request.py` (`num_computed_tokens` vs `num_tokens`).

use crate::kv::manager::SeqId;
use crate::kv::prefix::BlockHash;
use crate::model::RowInput;

/// Queue position: the user request's arrival number, then the chunk of a long-form request.
/// The waiting queue is kept in this order, so a preempted sequence or the next chunk of an
/// earlier request goes back ahead of requests that arrived after it, and nothing else ever
/// overtakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArrivalOrder {
    pub arrival: u64,
    pub chunk: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqStatus {
    /// Queued, never run.
    Waiting,
    /// Holds blocks and is scheduled every step until it finishes.
    Running,
    /// Gave its blocks back; queued to re-prefill every row it has.
    Preempted,
}

#[derive(Debug)]
pub struct SchedSeq {
    pub id: SeqId,
    pub order: ArrivalOrder,
    pub status: SeqStatus,
    /// Prompt rows, then one fed-back row per draw.
    pub rows: Vec<RowInput>,
    /// Rows whose K/V are in the cache.
    pub num_computed: usize,
    /// Chain hashes of the full blocks of `rows` computed so far (grown lazily).
    pub hashes: Vec<BlockHash>,
    /// Leading full blocks already offered to the prefix cache.
    pub offered_blocks: usize,
    /// Rows this sequence can reach (prompt + its generation limit): admission refuses a
    /// sequence whose blocks for this many rows exceed the whole pool.
    pub max_rows: usize,
    /// Times it was preempted (stats, tests).
    pub preemptions: u32,
}

impl SchedSeq {
    pub fn num_pending(&self) -> usize {
        self.rows.len() - self.num_computed
    }
}
