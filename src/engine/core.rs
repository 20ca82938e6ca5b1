//! The engine core: schedule -> execute -> update, on the caller's thread. Owns the model's
//! KV cache, the scheduler and every sequence's generation state. A step that fails (a forward
//! error, an injected fault) fails only the sequences in it, with the error, and frees their
//! blocks; every exit of a sequence goes through `Scheduler::remove`, the one place blocks
//! return. `engine::handle` runs this on its own thread for servers and the CLI.
//! May use: `model`, `kv`, `scheduler`, `engine::{runner, sequence, types}`, `delay`.
//!
//! Counterpart: vLLM `v1/engine/core.py` (`EngineCore.step`).

use super::runner::{build_batch, forward, run_heads};
use super::sequence::GenState;
use super::types::{Event, FinishReason, GenerationParams, Output, Prompt};
use crate::delay::DelayPattern;
use crate::error::{Error, Result};
use crate::kv::cache::KvCache;
use crate::kv::manager::{KvCacheManager, SeqId};
use crate::model::{Model, RowInput};
use crate::scheduler::{ArrivalOrder, Scheduler, SchedulerConfig, SchedulerOutput};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// KV pool and step budget.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    pub num_blocks: usize,
    pub block_size: usize,
    /// Rows per step (prefill chunk rows + decode rows).
    pub max_num_batched_tokens: usize,
    /// Sequences running at once.
    pub max_num_seqs: usize,
    pub prefix_caching: bool,
}

impl EngineConfig {
    /// The largest `--max-context` taken: 2^24 positions, far past any prompt, and a KV cache
    /// whose block table a host can always allocate.
    pub const MAX_CONTEXT: usize = 1 << 24;

    /// A KV cache of 16-position blocks with room for `max_context` positions (16 ..=
    /// [`Self::MAX_CONTEXT`], else an error naming `--max-context`); the other sizes at their
    /// defaults.
    pub fn for_context(max_context: usize) -> crate::Result<EngineConfig> {
        let block_size = 16;
        if !(block_size..=Self::MAX_CONTEXT).contains(&max_context) {
            return Err(crate::Error::Other(format!(
                "--max-context {max_context} is out of range ({block_size}..={})",
                Self::MAX_CONTEXT
            )));
        }
        Ok(EngineConfig {
            num_blocks: max_context.div_ceil(block_size),
            block_size,
            ..Default::default()
        })
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            num_blocks: 512,
            block_size: 16,
            max_num_batched_tokens: 2048,
            max_num_seqs: 256,
            prefix_caching: true,
        }
    }
}

/// Wall time per phase of `Engine::step`, accumulated while timing is on (each phase then ends
/// with a device sync, so the split is exact and the total slightly slower).
#[derive(Clone, Copy, Debug, Default)]
pub struct StepTimes {
    pub steps: u64,
    /// Scheduling and batch building on the host.
    pub schedule_s: f64,
    /// The model forward (embeddings, layers, final norm).
    pub forward_s: f64,
    /// Heads, sampling and the read-back of the drawn symbols.
    pub heads_s: f64,
    /// Per-sequence bookkeeping (delay pattern, stops, events, scheduler update).
    pub finish_s: f64,
}

/// Counters of the work done, for benchmarks and metrics.
#[derive(Clone, Copy, Debug, Default)]
pub struct EngineCounters {
    pub steps: u64,
    /// Rows fed in all steps.
    pub rows: u64,
    /// Decode rows (one-row sequences) in all steps, and those a replayed CUDA graph served.
    pub decode_rows: u64,
    pub graph_decode_rows: u64,
    /// Audio columns drawn.
    pub audio_columns: u64,
    /// Host time of steps outside the forward and heads (schedule, batch build, update).
    pub host_s: f64,
    pub failed_steps: u64,
    /// Sequences scheduled, summed over steps (divided by `steps`: the mean batch).
    pub seqs_scheduled: u64,
}

pub struct Engine {
    pub model: Arc<Model>,
    kv: KvCache,
    sched: Scheduler,
    gens: HashMap<SeqId, GenState>,
    finished: HashMap<SeqId, Output>,
    next_id: u64,
    next_arrival: u64,
    timing: Option<StepTimes>,
    counters: EngineCounters,
    /// Fault injection: the next step with work fails before its forward.
    fail_next: bool,
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Step graphs captured for this engine's KV cache must not outlive it.
        self.model.forget_kv_cache(self.kv.id());
    }
}

impl Engine {
    pub fn new(model: Arc<Model>, cfg: EngineConfig) -> Result<Self> {
        let kv = model.try_new_kv_cache(cfg.num_blocks, cfg.block_size)?;
        let mut mgr = KvCacheManager::new(cfg.num_blocks, cfg.block_size)?;
        mgr.set_prefix_caching(cfg.prefix_caching)?;
        let sched = Scheduler::new(
            SchedulerConfig {
                max_num_batched_tokens: cfg.max_num_batched_tokens,
                max_num_seqs: cfg.max_num_seqs,
            },
            mgr,
        )?;
        Ok(Engine {
            model,
            kv,
            sched,
            gens: HashMap::new(),
            finished: HashMap::new(),
            next_id: 0,
            next_arrival: 0,
            timing: None,
            counters: EngineCounters::default(),
            fail_next: false,
        })
    }

    /// Starts (or stops) per-phase timing of `step`; see [`StepTimes`].
    pub fn set_timing(&mut self, on: bool) {
        self.timing = on.then(StepTimes::default);
    }

    /// The phase times accumulated since timing was turned on.
    pub fn step_times(&self) -> StepTimes {
        self.timing.unwrap_or_default()
    }

    /// DualFFN routing counters of the model's forward steps since the last reset: per layer,
    /// text and audio rows, FFN rows computed, FFN and attention weight bytes read.
    pub fn routing_stats(&self) -> crate::model::RoutingStats {
        self.model.routing_stats()
    }

    pub fn reset_routing_stats(&self) {
        self.model.reset_routing_stats()
    }

    pub fn counters(&self) -> EngineCounters {
        self.counters
    }

    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// Fault injection for tests: the next step that has work fails as a forward error would.
    pub fn fail_next_step(&mut self) {
        self.fail_next = true;
    }

    /// Ends a timed phase: waits for the device, adds the time since `*t` to `slot`.
    fn lap(&mut self, t: &mut Instant, slot: fn(&mut StepTimes) -> &mut f64) -> Result<()> {
        if self.timing.is_some() {
            self.model.device().synchronize()?;
            let now = Instant::now();
            if let Some(st) = self.timing.as_mut() {
                *slot(st) += (now - *t).as_secs_f64();
            }
            *t = now;
        }
        Ok(())
    }

    /// Blocks an allocation can take now (free + evictable cached).
    pub fn num_free_blocks(&self) -> usize {
        self.sched.kv().num_free_blocks()
    }

    /// Sequences queued or running.
    pub fn num_active(&self) -> usize {
        self.gens.len()
    }

    pub fn has_work(&self) -> bool {
        !self.gens.is_empty()
    }

    /// Expand a prompt into decoder rows (spec §4.4): each placeholder is replaced by its
    /// segment's wrapped + delayed columns.
    pub fn expand_prompt(&self, p: &Prompt) -> Result<Vec<RowInput>> {
        let cfg = &self.model.cfg;
        let (mut ins, mut outs) = (p.audio_in.iter(), p.audio_out.iter());
        let mut rows = Vec::with_capacity(p.ids.len());
        let push_seg = |rows: &mut Vec<RowInput>, codes: &Vec<Vec<u32>>, out: bool| -> Result<()> {
            if codes.len() != cfg.n_codebooks {
                return Err(Error::BadRequest(format!(
                    "audio segment has {} codebooks, the model has {}",
                    codes.len(),
                    cfg.n_codebooks
                )));
            }
            let t = codes[0].len();
            if let Some(bad) = codes
                .iter()
                .flatten()
                .find(|&&c| c as usize >= cfg.codebook_size)
            {
                return Err(Error::BadRequest(format!(
                    "audio code {bad} is outside the codebook (size {})",
                    cfg.codebook_size
                )));
            }
            if codes.iter().any(|r| r.len() != t) {
                return Err(Error::BadRequest(
                    "audio segment rows have different lengths".into(),
                ));
            }
            let d = DelayPattern::of(cfg).wrap_and_delay(codes);
            for j in 0..d[0].len() {
                rows.push(RowInput::Audio {
                    codes: d.iter().map(|r| r[j]).collect(),
                    out,
                });
            }
            Ok(())
        };
        for &id in &p.ids {
            if id as usize >= cfg.vocab {
                return Err(Error::BadRequest(format!(
                    "token id {id} is outside the vocabulary ({})",
                    cfg.vocab
                )));
            }
            if id == cfg.audio_in_token {
                if !cfg.encode_audio_in_tokens {
                    return Err(Error::Unsupported(
                        "audio-in segments with encode_audio_in_tokens=false".into(),
                    ));
                }
                let seg = ins.next().ok_or_else(|| {
                    Error::BadRequest("more <|AUDIO|> placeholders than audio-in segments".into())
                })?;
                push_seg(&mut rows, seg, false)?;
            } else if id == cfg.audio_out_token {
                let seg = outs.next().ok_or_else(|| {
                    Error::BadRequest(
                        "more <|AUDIO_OUT|> placeholders than audio-out segments".into(),
                    )
                })?;
                push_seg(&mut rows, seg, true)?;
            } else {
                rows.push(RowInput::Text(id));
            }
        }
        if ins.next().is_some() || outs.next().is_some() {
            return Err(Error::BadRequest(
                "more audio segments than placeholders in the prompt".into(),
            ));
        }
        Ok(rows)
    }

    /// A fresh arrival number: sequences added with it queue behind every earlier one.
    pub fn next_arrival(&mut self) -> u64 {
        self.next_arrival += 1;
        self.next_arrival - 1
    }

    /// Queue a request as a new arrival; it is prefilled from the next `step` on.
    pub fn add(&mut self, prompt: &Prompt, params: GenerationParams) -> Result<SeqId> {
        let order = ArrivalOrder {
            arrival: self.next_arrival(),
            chunk: 0,
        };
        self.add_ordered(prompt, params, order)
    }

    /// Queue a request at `order` (the next chunk of a long-form request keeps its arrival).
    pub fn add_ordered(
        &mut self,
        prompt: &Prompt,
        params: GenerationParams,
        order: ArrivalOrder,
    ) -> Result<SeqId> {
        let cfg = &self.model.cfg;
        params.sampling.validate()?;
        if prompt.ids.is_empty() {
            return Err(Error::BadRequest("empty prompt".into()));
        }
        if prompt.ids.last() == Some(&cfg.audio_out_token) {
            return Err(Error::Unsupported(
                "a prompt ending in <|AUDIO_OUT|> (continuing a prompt audio segment)".into(),
            ));
        }
        let rows = self.expand_prompt(prompt)?;
        let total = rows.len().saturating_add(params.max_new_tokens);
        if total > cfg.max_positions {
            return Err(Error::BadRequest(format!(
                "prompt ({} positions) + max_new_tokens ({}) exceeds the model context ({})",
                rows.len(),
                params.max_new_tokens,
                cfg.max_positions
            )));
        }
        let id = SeqId(self.next_id);
        let gen = GenState::new(params, &prompt.ids, &rows);
        let max_new = gen.params.max_new_tokens;
        self.sched.add(id, order, rows, max_new)?;
        self.next_id += 1;
        self.gens.insert(id, gen);
        Ok(id)
    }

    /// Stops a queued or running sequence and frees its blocks. Returns false when it is not
    /// active (already finished or unknown); a finished output not yet taken is dropped.
    pub fn abort(&mut self, id: SeqId) -> Result<bool> {
        self.finished.remove(&id);
        if self.gens.remove(&id).is_none() {
            return Ok(false);
        }
        self.sched.remove(id)?;
        Ok(true)
    }

    /// Take a finished request's output.
    pub fn take_output(&mut self, id: SeqId) -> Option<Output> {
        self.finished.remove(&id)
    }

    /// Ends a sequence: its state becomes its output, its blocks go back.
    fn retire(&mut self, id: SeqId, finish: Option<FinishReason>) -> Result<()> {
        self.sched.remove(id)?;
        if let Some(mut g) = self.gens.remove(&id) {
            if let Some(f) = finish {
                g.out.finish = Some(f);
            }
            self.finished.insert(id, g.out);
        }
        Ok(())
    }

    /// Fails every sequence of a step with `err` (typed message), freeing their blocks.
    fn fail_step(
        &mut self,
        out: &SchedulerOutput,
        err: &Error,
        events: &mut Vec<(SeqId, Event)>,
    ) -> Result<()> {
        self.counters.failed_steps += 1;
        for s in &out.seqs {
            let r = FinishReason::Error(err.to_string());
            self.retire(s.id, Some(r.clone()))?;
            events.push((s.id, Event::Finished(r)));
        }
        Ok(())
    }

    /// One scheduler + model step. Returns the events per sequence, in order.
    pub fn step(&mut self) -> Result<Vec<(SeqId, Event)>> {
        let t_step = Instant::now();
        let mut t = t_step;
        let mut events = Vec::new();
        let out = self.sched.schedule()?;
        if out.seqs.is_empty() {
            return Ok(events);
        }
        let mut device_s = 0.0;
        match self.execute(&out, &mut t, &mut device_s, &mut events) {
            Ok(()) => {}
            Err(e) => self.fail_step(&out, &e, &mut events)?,
        }
        self.counters.steps += 1;
        self.counters.rows += out.num_rows() as u64;
        self.counters.seqs_scheduled += out.seqs.len() as u64;
        self.counters.host_s += (t_step.elapsed().as_secs_f64() - device_s).max(0.0);
        if let Some(st) = self.timing.as_mut() {
            st.steps += 1;
        }
        self.lap(&mut t, |s| &mut s.finish_s)?;
        Ok(events)
    }

    fn execute(
        &mut self,
        out: &SchedulerOutput,
        t: &mut Instant,
        device_s: &mut f64,
        events: &mut Vec<(SeqId, Event)>,
    ) -> Result<()> {
        if std::mem::take(&mut self.fail_next) {
            return Err(Error::Other("injected step failure".into()));
        }
        if !out.copies.is_empty() {
            let pairs: Vec<(u32, u32)> = out.copies.iter().map(|c| (c.from.0, c.to.0)).collect();
            self.kv.copy_blocks(&pairs)?;
        }
        let batch = build_batch(&self.sched, out)?;
        let record_hidden = out.seqs.iter().any(|s| {
            s.samples && s.start > 0 && self.gens.get(&s.id).is_some_and(|g| g.params.record_hidden)
        });
        self.lap(t, |s| &mut s.schedule_s)?;
        let t_dev = Instant::now();
        let replays_before = self.model.step_graph_stats().1;
        let fwd = forward(&self.model, &mut self.kv, &batch, record_hidden)?;
        let decode_rows = out.seqs.iter().filter(|s| s.len == 1).count() as u64;
        self.counters.decode_rows += decode_rows;
        if self.model.step_graph_stats().1 > replays_before {
            self.counters.graph_decode_rows += decode_rows;
        }
        self.lap(t, |s| &mut s.forward_s)?;
        // Only recorded runs read hidden states back (a sync and a copy otherwise wasted).
        let hidden = if record_hidden {
            fwd.hidden.to_f32_vec()?
        } else {
            Vec::new()
        };
        let h = self.model.cfg.hidden;
        let sampled: Vec<usize> = (0..out.seqs.len())
            .filter(|&k| out.seqs[k].samples)
            .collect();
        let sampled_ids: Vec<SeqId> = sampled.iter().map(|&k| out.seqs[k].id).collect();
        if record_hidden {
            for (k, s) in out.seqs.iter().enumerate() {
                let Some(g) = self.gens.get_mut(&s.id) else {
                    continue;
                };
                if s.samples && s.start > 0 && g.params.record_hidden {
                    let row = batch.last_rows[k] as usize;
                    let mut per_layer: Vec<Vec<f32>> = fwd.layers[..fwd.layers.len() - 1]
                        .iter()
                        .map(|t| t.as_f32().map(|v| v[row * h..(row + 1) * h].to_vec()))
                        .collect::<Result<_>>()?;
                    per_layer.push(hidden[k * h..(k + 1) * h].to_vec());
                    g.out.step_hidden.push(per_layer);
                }
            }
        }
        let heads = if sampled.is_empty() {
            None
        } else {
            let rows: Vec<u32> = sampled.iter().map(|&k| k as u32).collect();
            let picked = if rows.len() == out.seqs.len() {
                None
            } else {
                Some(crate::ops::gather_rows(&fwd.hidden, &rows)?)
            };
            Some(run_heads(
                &self.model,
                &sampled_ids,
                &self.gens,
                picked.as_ref().unwrap_or(&fwd.hidden),
            )?)
        };
        self.lap(t, |s| &mut s.heads_s)?;
        *device_s += t_dev.elapsed().as_secs_f64();
        self.sched.commit(out)?;
        let Some(heads) = heads else {
            return Ok(());
        };
        for (j, id) in sampled_ids.iter().enumerate() {
            self.update_sampled(*id, &heads.of(j), events)?;
        }
        Ok(())
    }

    /// Draws one sampled sequence's step and feeds the result back, or retires it.
    fn update_sampled(
        &mut self,
        id: SeqId,
        heads: &super::sequence::SeqHeads<'_>,
        events: &mut Vec<(SeqId, Event)>,
    ) -> Result<()> {
        let Some(g) = self.gens.get_mut(&id) else {
            return Ok(());
        };
        match g.step(&self.model.cfg, heads) {
            Ok((evs, next)) => {
                self.counters.audio_columns +=
                    evs.iter().filter(|e| matches!(e, Event::Audio(_))).count() as u64;
                events.extend(evs.into_iter().map(|e| (id, e)));
                match next {
                    Some(row) => self.sched.append_row(id, row)?,
                    None => self.retire(id, None)?,
                }
            }
            Err(e) => {
                let r = FinishReason::Error(e.to_string());
                self.retire(id, Some(r.clone()))?;
                events.push((id, Event::Finished(r)));
            }
        }
        Ok(())
    }

    /// Run one request to completion (other queued requests advance too).
    pub fn generate(&mut self, prompt: &Prompt, params: GenerationParams) -> Result<Output> {
        let id = self.add(prompt, params)?;
        loop {
            self.step()?;
            if let Some(o) = self.take_output(id) {
                return Ok(o);
            }
            if !self.gens.contains_key(&id) {
                return Err(Error::Other("request vanished without an output".into()));
            }
        }
    }
}
