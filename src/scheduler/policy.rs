//! The scheduling policy: first come, first served with a step budget
//! (`max_num_batched_tokens` rows, `max_num_seqs` sequences), chunked prefill (a long prompt
//! is spread over several steps next to running decodes), and preemption by recompute when
//! blocks run out (the most recently admitted running sequence gives its blocks back and later
//! re-prefills every row it has, so its output continues exactly as if it had never been
//! preempted). There are no prefill and decode phases: each step every sequence's computed
//! rows catch up with its rows, as far as the budget allows.
//! May use: `kv::{manager, prefix}`, `scheduler::{request, hash}`, `model::batch`, `error`.
//!
//! Counterparts: vLLM `v1/core/sched/scheduler.py` (`schedule`, `_preempt_request`,
//! `update_from_output`) and `request_queue.py` (FCFS).
//!
//! Progress: every loop below pops a sequence, schedules it or ends. A sequence alone in the
//! pool always fits (admission refuses one whose `max_rows` need more blocks than the pool),
//! so preemption cannot livelock: the oldest running sequence is never preempted for a
//! younger one.

use std::collections::{HashMap, VecDeque};

use super::hash::extend_chain;
use super::request::{ArrivalOrder, SchedSeq, SeqStatus};
use crate::error::{Error, Result};
use crate::kv::manager::{BlockCopy, KvCacheManager, SeqId};
use crate::model::RowInput;

#[derive(Clone, Copy, Debug)]
pub struct SchedulerConfig {
    /// Rows (prefill positions + decode positions) in one step.
    pub max_num_batched_tokens: usize,
    /// Running sequences at once.
    pub max_num_seqs: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_num_batched_tokens: 2048,
            max_num_seqs: 256,
        }
    }
}

/// One sequence's share of a step: rows `start .. start + len` are fed; `samples` when they
/// end at its last row (its next token is drawn from the last one's hidden state).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduledSeq {
    pub id: SeqId,
    pub start: usize,
    pub len: usize,
    pub samples: bool,
}

/// What one `schedule` decided.
#[derive(Clone, Debug, Default)]
pub struct SchedulerOutput {
    /// In running order (oldest admission first).
    pub seqs: Vec<ScheduledSeq>,
    /// Device block copies (copy-on-write) to run before the forward.
    pub copies: Vec<BlockCopy>,
    /// Sequences that gave their blocks back this step.
    pub preempted: Vec<SeqId>,
}

impl SchedulerOutput {
    pub fn num_rows(&self) -> usize {
        self.seqs.iter().map(|s| s.len).sum()
    }
}

/// Counters for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct SchedulerStats {
    pub steps: u64,
    pub preemptions: u64,
    /// Prompt rows whose prefill was skipped thanks to the prefix cache.
    pub prefill_rows_saved: u64,
    /// Rows fed in prefill chunks (more than one row for a sequence in a step).
    pub prefill_rows: u64,
    pub decode_rows: u64,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    kv: KvCacheManager,
    seqs: HashMap<SeqId, SchedSeq>,
    /// Waiting and preempted sequences, in `ArrivalOrder`.
    waiting: VecDeque<SeqId>,
    /// Admission order; the last one is the first to be preempted.
    running: Vec<SeqId>,
    stats: SchedulerStats,
}

impl Scheduler {
    pub fn new(cfg: SchedulerConfig, kv: KvCacheManager) -> Result<Self> {
        if cfg.max_num_batched_tokens == 0 || cfg.max_num_seqs == 0 {
            return Err(Error::BadRequest(format!(
                "scheduler: max_num_batched_tokens ({}) and max_num_seqs ({}) must be > 0",
                cfg.max_num_batched_tokens, cfg.max_num_seqs
            )));
        }
        Ok(Scheduler {
            cfg,
            kv,
            seqs: HashMap::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
            stats: SchedulerStats::default(),
        })
    }

    pub fn config(&self) -> SchedulerConfig {
        self.cfg
    }

    pub fn kv(&self) -> &KvCacheManager {
        &self.kv
    }

    pub fn kv_mut(&mut self) -> &mut KvCacheManager {
        &mut self.kv
    }

    pub fn stats(&self) -> SchedulerStats {
        self.stats
    }

    pub fn num_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn num_running(&self) -> usize {
        self.running.len()
    }

    pub fn contains(&self, id: SeqId) -> bool {
        self.seqs.contains_key(&id)
    }

    /// Waiting queue, front first (tests audit FCFS with it).
    pub fn waiting(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.waiting.iter().copied()
    }

    pub fn running(&self) -> &[SeqId] {
        &self.running
    }

    pub fn seq(&self, id: SeqId) -> Result<&SchedSeq> {
        self.seqs
            .get(&id)
            .ok_or_else(|| Error::Other(format!("scheduler: unknown sequence {}", id.0)))
    }

    fn seq_mut(&mut self, id: SeqId) -> Result<&mut SchedSeq> {
        self.seqs
            .get_mut(&id)
            .ok_or_else(|| Error::Other(format!("scheduler: unknown sequence {}", id.0)))
    }

    /// Queues a sequence. Refuses at once, naming the sizes, one that can never fit: its
    /// prompt plus `max_new_rows` needs more blocks than the whole pool.
    pub fn add(
        &mut self,
        id: SeqId,
        order: ArrivalOrder,
        rows: Vec<RowInput>,
        max_new_rows: usize,
    ) -> Result<()> {
        if rows.is_empty() {
            return Err(Error::BadRequest("empty prompt".into()));
        }
        if self.seqs.contains_key(&id) {
            return Err(Error::Other(format!(
                "scheduler: sequence {} already queued",
                id.0
            )));
        }
        let max_rows = rows.len().saturating_add(max_new_rows);
        let needed = self.kv.blocks_for_tokens(max_rows);
        if needed > self.kv.num_blocks() {
            return Err(Error::BadRequest(format!(
                "request can never fit the KV cache: the prompt ({} positions) + \
                 max_new_tokens ({max_new_rows}) needs {needed} blocks of {} positions, the \
                 cache holds {} in all ({} positions); shorten the input, lower \
                 max_new_tokens or raise --max-context",
                rows.len(),
                self.kv.block_size(),
                self.kv.num_blocks(),
                self.kv.num_blocks() * self.kv.block_size()
            )));
        }
        self.seqs.insert(
            id,
            SchedSeq {
                id,
                order,
                status: SeqStatus::Waiting,
                rows,
                num_computed: 0,
                hashes: Vec::new(),
                offered_blocks: 0,
                max_rows,
                preemptions: 0,
            },
        );
        self.enqueue(id, order);
        Ok(())
    }

    /// Inserts into the waiting queue behind every sequence of an earlier or equal order.
    fn enqueue(&mut self, id: SeqId, order: ArrivalOrder) {
        let seqs = &self.seqs;
        let at = self
            .waiting
            .partition_point(|w| seqs.get(w).is_some_and(|s| s.order <= order));
        self.waiting.insert(at, id);
    }

    /// Appends the row fed back after a draw (the sequence then has one pending row).
    pub fn append_row(&mut self, id: SeqId, row: RowInput) -> Result<()> {
        self.seq_mut(id)?.rows.push(row);
        Ok(())
    }

    /// Removes a sequence in any state and frees its blocks: the one exit for finished,
    /// aborted and failed sequences.
    pub fn remove(&mut self, id: SeqId) -> Result<()> {
        if self.seqs.remove(&id).is_none() {
            return Ok(());
        }
        self.running.retain(|&r| r != id);
        self.waiting.retain(|&w| w != id);
        if self.kv.contains(id) {
            self.kv.free(id)?;
        }
        Ok(())
    }

    /// Decides this step. Running sequences first, in admission order (their pending rows:
    /// a prefill remainder or one decode row), preempting the youngest when blocks run out;
    /// then, if nobody was preempted, waiting sequences in queue order until one does not
    /// fit, the budget is spent or `max_num_seqs` are running (never skipping the head).
    pub fn schedule(&mut self) -> Result<SchedulerOutput> {
        self.stats.steps += 1;
        let mut out = SchedulerOutput::default();
        let mut budget = self.cfg.max_num_batched_tokens;
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            if self.schedule_running(id, &mut budget, &mut out)? {
                i += 1;
            }
        }
        if out.preempted.is_empty() {
            while budget > 0 && self.running.len() < self.cfg.max_num_seqs {
                let Some(&id) = self.waiting.front() else {
                    break;
                };
                if !self.admit(id, &mut budget, &mut out)? {
                    break;
                }
            }
        }
        for s in &out.seqs {
            if s.len > 1 {
                self.stats.prefill_rows += s.len as u64;
            } else {
                self.stats.decode_rows += 1;
            }
        }
        Ok(out)
    }

    /// Schedules running sequence `id`, preempting younger ones if needed. Returns false when
    /// `id` itself was preempted (it left `running`, so the caller's index stays).
    fn schedule_running(
        &mut self,
        id: SeqId,
        budget: &mut usize,
        out: &mut SchedulerOutput,
    ) -> Result<bool> {
        let s = self.seq(id)?;
        let (start, pending) = (s.num_computed, s.num_pending());
        let len = pending.min(*budget);
        if len == 0 {
            return Ok(true);
        }
        loop {
            match self.kv.allocate_slots(id, len) {
                Ok(copy) => {
                    out.copies.extend(copy);
                    out.seqs.push(ScheduledSeq {
                        id,
                        start,
                        len,
                        samples: len == pending,
                    });
                    *budget -= len;
                    return Ok(true);
                }
                Err(Error::Capacity { .. }) => {
                    // The youngest running sequence is not yet scheduled this step (running
                    // is walked oldest first), unless it is `id` itself.
                    let victim = *self.running.last().unwrap_or(&id);
                    self.preempt(victim)?;
                    out.preempted.push(victim);
                    if victim == id {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn preempt(&mut self, id: SeqId) -> Result<()> {
        self.running.retain(|&r| r != id);
        if self.kv.contains(id) {
            self.kv.free(id)?;
        }
        let s = self.seq_mut(id)?;
        s.status = SeqStatus::Preempted;
        s.num_computed = 0;
        s.offered_blocks = 0;
        s.preemptions += 1;
        let order = s.order;
        self.stats.preemptions += 1;
        self.enqueue(id, order);
        Ok(())
    }

    /// Tries to admit the head of the waiting queue: reuse its cached prefix, reserve slots
    /// for the first chunk. Returns false (changing nothing) when it does not fit now.
    fn admit(&mut self, id: SeqId, budget: &mut usize, out: &mut SchedulerOutput) -> Result<bool> {
        let bs = self.kv.block_size();
        let s = self
            .seqs
            .get_mut(&id)
            .ok_or_else(|| Error::Other(format!("scheduler: unknown sequence {}", id.0)))?;
        extend_chain(&mut s.hashes, &s.rows, bs);
        // At least the last row is computed again: its hidden state gives the next token.
        let max_hit = (s.rows.len() - 1) / bs;
        let hit = self.kv.cached_prefix(&s.hashes, max_hit);
        let start = hit.len() * bs;
        let pending = s.rows.len() - start;
        let len = pending.min(*budget);
        let queried = s.hashes.len().min(max_hit);
        self.kv.add_sequence_with_prefix(id, &hit)?;
        match self.kv.allocate_slots(id, len) {
            Ok(copy) => out.copies.extend(copy),
            Err(Error::Capacity { .. }) => {
                self.kv.free(id)?;
                return Ok(false);
            }
            Err(e) => {
                self.kv.free(id)?;
                return Err(e);
            }
        }
        self.kv.record_prefix_lookup(queried, hit.len());
        self.stats.prefill_rows_saved += start as u64;
        let s = self.seq_mut(id)?;
        s.status = SeqStatus::Running;
        s.num_computed = start;
        s.offered_blocks = hit.len();
        self.waiting.pop_front();
        self.running.push(id);
        out.seqs.push(ScheduledSeq {
            id,
            start,
            len,
            samples: len == pending,
        });
        *budget -= len;
        Ok(true)
    }

    /// After a successful forward of `out`: the scheduled rows are computed; their full blocks
    /// go to the prefix cache.
    pub fn commit(&mut self, out: &SchedulerOutput) -> Result<()> {
        let bs = self.kv.block_size();
        for sch in &out.seqs {
            let Some(s) = self.seqs.get_mut(&sch.id) else {
                continue;
            };
            s.num_computed = sch.start + sch.len;
            let full = s.num_computed / bs;
            if full > s.offered_blocks && self.kv.prefix_caching() {
                extend_chain(&mut s.hashes, &s.rows[..full * bs], bs);
                let first = s.offered_blocks;
                let hashes = s.hashes[first..full].to_vec();
                s.offered_blocks = full;
                self.kv.cache_full_blocks(sch.id, first, &hashes)?;
            }
        }
        Ok(())
    }
}
