//! Who runs in each step (host only; never touches device memory): request state (`request`),
//! the FCFS policy with a token budget, chunked prefill and recompute preemption (`policy`),
//! and the block hashes of the prefix cache (`hash`). The KV manager only answers fit / no fit;
//! the scheduler decides whom to admit and whom to preempt.
//! May use: `kv::{manager, prefix}`, `model::batch` (row contents), `error`.
//!
//! Counterparts: vLLM `v1/core/sched/scheduler.py`, `v1/request.py`, `v1/core/sched/output.py`.

pub mod hash;
pub mod policy;
pub mod request;

pub use policy::{ScheduledSeq, Scheduler, SchedulerConfig, SchedulerOutput};
pub use request::{ArrivalOrder, SeqStatus};
