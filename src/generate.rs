//! Generation as the reference does it (spec: model.md §8), for many sequences at once: each
//! step runs one batched forward over every running sequence (prefill chunks and single decode
//! positions, text or audio mode, mixed), then samples per sequence: text tokens, the forced
//! `<|AUDIO_OUT|>` + all-BOS column at `<|audio_out_bos|>`, audio columns with the delay
//! pattern (forced stream BOS at the start, forced EOS after the first codebook ends,
//! `<|audio_eos|>`), RAS, and the stop rules. KV memory comes from the paged block manager.
//! May use: model, kv, sampling, prompt (delay pattern), config.

use crate::error::{Error, Result};
use crate::kv::cache::KvCache;
use crate::kv::manager::{AllocStatus, KvCacheManager, SeqId};
use crate::model::{BatchInputs, ForwardOptions, Model, RowInput};
use crate::prompt::collate::wrap_and_delay;
use crate::sampling::processors::{ras_count, ras_redraw, sample, SamplingParams};
use crate::sampling::rng::SeededRng;
use crate::tensor::Tensor;
use std::sync::Arc;

/// Per-request generation settings (spec §8.5, §8.8, §8.13).
#[derive(Clone, Debug)]
pub struct GenerationParams {
    pub sampling: SamplingParams,
    /// Repetition-aware sampling window (0 = off) and repeat threshold.
    pub ras_win_len: usize,
    pub ras_max_repeat: usize,
    /// At most this many loop steps (every audio column counts as one).
    pub max_new_tokens: usize,
    pub seed: Option<u64>,
    /// Generation stops after any of these text tokens (`<|eot_id|>`, `<|end_of_text|>`).
    pub stop_tokens: Vec<u32>,
    /// Ids set to -inf before sampling (transformers' `suppress_tokens`), text and audio rows.
    pub suppress_text: Vec<usize>,
    pub suppress_audio: Vec<usize>,
    /// Keep per-step logits (and, with `record_hidden`, layer inputs of each decoded row).
    pub record_logits: bool,
    pub record_hidden: bool,
}

impl GenerationParams {
    /// The serve engine's defaults: temperature 0.7, top-p 0.95, RAS (7, 2).
    pub fn new(max_new_tokens: usize, stop_tokens: Vec<u32>) -> Self {
        GenerationParams {
            sampling: SamplingParams::default(),
            ras_win_len: 7,
            ras_max_repeat: 2,
            max_new_tokens,
            seed: None,
            stop_tokens,
            suppress_text: vec![],
            suppress_audio: vec![],
            record_logits: false,
            record_hidden: false,
        }
    }
}

/// A prompt as the model takes it: compressed ids with one `<|AUDIO|>` / `<|AUDIO_OUT|>` per
/// audio, and each audio's codec codes `[n_codebooks][T]` (wrapped and delayed here, §7.1).
#[derive(Clone, Debug, Default)]
pub struct Prompt {
    pub ids: Vec<u32>,
    pub audio_in: Vec<Vec<Vec<u32>>>,
    pub audio_out: Vec<Vec<Vec<u32>>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    Stop(u32),
    Length,
    Error(String),
}

/// What one step produced for one sequence, in order (the streaming interface).
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A text-mode token (including `<|AUDIO_OUT|>` at AUDIO_INIT); not the `<|audio_eos|>`
    /// that ends a segment, which comes as `SegmentEnd`.
    Text(u32),
    /// One delayed audio column (may hold stream BOS/EOS symbols).
    Audio(Vec<u32>),
    SegmentEnd,
    Finished(FinishReason),
}

/// Everything a finished sequence produced.
#[derive(Clone, Debug, Default)]
pub struct Output {
    /// Generated compressed ids (one `<|AUDIO_OUT|>` per segment, `<|audio_eos|>` at its end).
    pub ids: Vec<u32>,
    /// Generated audio segments as delayed columns, `[segment][column][codebook]`.
    pub segments: Vec<Vec<Vec<u32>>>,
    pub finish: Option<FinishReason>,
    /// Recorded per audio step: raw audio logits `[n_codebooks * rows]`.
    pub step_audio_logits: Vec<Vec<f32>>,
    /// Recorded per text step (including step 0): raw text logits.
    pub step_text_logits: Vec<Vec<f32>>,
    /// Recorded per decode step: layer inputs + final-norm output of the decoded row.
    pub step_hidden: Vec<Vec<Vec<f32>>>,
    pub prompt_positions: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Text,
    AudioInit,
    AudioInProgress,
}

struct SeqState {
    id: SeqId,
    params: GenerationParams,
    rng: SeededRng,
    /// Seed of device-side draws (the request's seed, else a random one).
    draw_seed: u64,
    /// Rows still to be fed (the whole expanded prompt at first, then one row per step).
    pending: Vec<RowInput>,
    /// Audio flag of every cached position (fast-forward layers hide audio keys).
    audio_pos: Vec<bool>,
    n_cached: usize,
    /// Compressed ids: prompt + generated.
    ids: Vec<u32>,
    /// Length of `ids_full` (one entry per loop step after the prompt).
    ids_full_len: usize,
    prompt_len: usize,
    last_full: u32,
    /// Every audio-out column so far (prompt's, then generated), for RAS.
    audio_out: Vec<Vec<u32>>,
    num_delay: usize,
    num_remaining_delays: Option<isize>,
    out: Output,
    finished: bool,
}

/// KV pool sizing.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    pub num_blocks: usize,
    pub block_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            num_blocks: 512,
            block_size: 16,
        }
    }
}

/// One step's head outputs for the scheduled sequences (see `Engine::run_heads`).
#[derive(Default)]
struct StepHeads {
    /// Per scheduled sequence: its row in the audio results, its row in the text logits.
    slot: Vec<(Option<usize>, Option<usize>)>,
    /// `[audio rows, audio_width]` host logits (host sampling or recording).
    audio_logits: Option<Vec<f32>>,
    /// `[audio rows, n_codebooks]` symbols drawn on the device (after RAS).
    audio_symbols: Option<Vec<u32>>,
    /// `[text rows, vocab]`.
    text_logits: Option<Vec<f32>>,
    audio_width: usize,
    n_codebooks: usize,
    vocab: usize,
}

impl StepHeads {
    fn of(&self, k: usize) -> SeqHeads<'_> {
        let (a, t) = self.slot[k];
        fn part(v: &Option<Vec<f32>>, r: Option<usize>, w: usize) -> Option<&[f32]> {
            v.as_ref().zip(r).map(|(v, r)| &v[r * w..(r + 1) * w])
        }
        SeqHeads {
            audio_logits: part(&self.audio_logits, a, self.audio_width),
            audio_symbols: self
                .audio_symbols
                .as_ref()
                .zip(a)
                .map(|(v, r)| &v[r * self.n_codebooks..(r + 1) * self.n_codebooks]),
            text_logits: part(&self.text_logits, t, self.vocab),
        }
    }
}

/// One sequence's slice of [`StepHeads`].
struct SeqHeads<'a> {
    audio_logits: Option<&'a [f32]>,
    audio_symbols: Option<&'a [u32]>,
    text_logits: Option<&'a [f32]>,
}

impl SeqHeads<'_> {
    fn missing(what: &str) -> Error {
        Error::Other(format!("engine: no {what} computed for this step"))
    }
    fn audio_logits(&self) -> Result<&[f32]> {
        self.audio_logits
            .ok_or_else(|| Self::missing("audio logits"))
    }
    fn text_logits(&self) -> Result<&[f32]> {
        self.text_logits.ok_or_else(|| Self::missing("text logits"))
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
    /// Per-sequence bookkeeping (delay pattern, stops, events).
    pub finish_s: f64,
}

pub struct Engine {
    pub model: Arc<Model>,
    timing: Option<StepTimes>,
    kv: KvCache,
    mgr: KvCacheManager,
    seqs: Vec<SeqState>,
    finished: Vec<(SeqId, Output)>,
    next_id: u64,
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
        Ok(Engine {
            model,
            timing: None,
            kv,
            mgr: KvCacheManager::new(cfg.num_blocks, cfg.block_size)?,
            seqs: Vec::new(),
            finished: Vec::new(),
            next_id: 0,
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

    /// Ends a timed phase: waits for the device, adds the time since `*t` to `slot`.
    fn lap(
        &mut self,
        t: &mut std::time::Instant,
        slot: fn(&mut StepTimes) -> &mut f64,
    ) -> Result<()> {
        if self.timing.is_some() {
            self.model.device().synchronize()?;
            let now = std::time::Instant::now();
            if let Some(st) = self.timing.as_mut() {
                *slot(st) += (now - *t).as_secs_f64();
            }
            *t = now;
        }
        Ok(())
    }

    pub fn num_free_blocks(&self) -> usize {
        self.mgr.num_free_blocks()
    }

    pub fn num_active(&self) -> usize {
        self.seqs.len()
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
            let d = wrap_and_delay(codes, cfg.stream_bos, cfg.stream_eos);
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

    /// Queue a request; it is prefilled on the next `step`.
    pub fn add(&mut self, prompt: &Prompt, params: GenerationParams) -> Result<SeqId> {
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
        let total = rows.len() + params.max_new_tokens;
        if total > cfg.max_positions {
            return Err(Error::BadRequest(format!(
                "prompt ({} positions) + max_new_tokens ({}) exceeds the model context ({})",
                rows.len(),
                params.max_new_tokens,
                cfg.max_positions
            )));
        }
        if self.mgr.can_allocate(rows.len() + 1) == AllocStatus::Never {
            return Err(Error::BadRequest(format!(
                "prompt of {} positions can never fit the KV cache ({} blocks of {})",
                rows.len(),
                self.mgr.num_blocks(),
                self.mgr.block_size()
            )));
        }
        let id = SeqId(self.next_id);
        self.next_id += 1;
        let prompt_audio_out: Vec<Vec<u32>> = rows
            .iter()
            .filter_map(|r| match r {
                RowInput::Audio { codes, out: true } => Some(codes.clone()),
                _ => None,
            })
            .collect();
        let rng = params
            .seed
            .map_or_else(SeededRng::from_entropy, SeededRng::from_seed);
        let draw_seed = params.seed.unwrap_or_else(rand::random);
        self.seqs.push(SeqState {
            id,
            rng,
            draw_seed,
            pending: rows,
            audio_pos: Vec::new(),
            n_cached: 0,
            ids: prompt.ids.clone(),
            ids_full_len: prompt.ids.len(),
            prompt_len: prompt.ids.len(),
            last_full: *prompt.ids.last().unwrap_or(&0),
            audio_out: prompt_audio_out,
            num_delay: 0,
            num_remaining_delays: None,
            out: Output::default(),
            finished: false,
            params,
        });
        Ok(id)
    }

    /// Take a finished request's output.
    pub fn take_output(&mut self, id: SeqId) -> Option<Output> {
        let i = self.finished.iter().position(|(s, _)| *s == id)?;
        Some(self.finished.swap_remove(i).1)
    }

    /// One scheduler + model step over every active sequence. Returns the events per sequence.
    pub fn step(&mut self) -> Result<Vec<(SeqId, Event)>> {
        let mut t = std::time::Instant::now();
        let mut events = Vec::new();
        // Reserve KV slots; a sequence that cannot get them waits (prefill) or fails (decode).
        let mut scheduled = Vec::new();
        for (i, s) in self.seqs.iter_mut().enumerate() {
            if s.pending.is_empty() || s.finished {
                continue;
            }
            if !self.mgr.contains(s.id) {
                if self.mgr.can_allocate(s.pending.len()) != AllocStatus::Ok {
                    continue;
                }
                self.mgr.add_sequence(s.id)?;
            }
            match self.mgr.allocate_slots(s.id, s.pending.len()) {
                Ok(copy) => {
                    if let Some(c) = copy {
                        self.kv.copy_blocks(&[(c.from.0, c.to.0)])?;
                    }
                    scheduled.push(i);
                }
                Err(Error::Capacity { .. }) if s.n_cached == 0 => continue,
                Err(e) => {
                    s.finished = true;
                    s.out.finish = Some(FinishReason::Error(e.to_string()));
                    events.push((s.id, Event::Finished(FinishReason::Error(e.to_string()))));
                }
            }
        }
        if !scheduled.is_empty() {
            let record_hidden = scheduled
                .iter()
                .any(|&i| self.seqs[i].params.record_hidden && self.seqs[i].n_cached > 0);
            let (inputs, last_rows) = self.build_batch(&scheduled)?;
            let opts = ForwardOptions {
                out_rows: last_rows.clone(),
                capture_layers: record_hidden,
            };
            self.lap(&mut t, |s| &mut s.schedule_s)?;
            let fwd = self.model.forward(&inputs, &mut self.kv, &opts)?;
            self.lap(&mut t, |s| &mut s.forward_s)?;
            // Only recorded runs read hidden states back (a sync and a copy otherwise wasted).
            let hidden = if record_hidden {
                fwd.hidden.to_f32_vec()?
            } else {
                Vec::new()
            };
            let h = self.model.cfg.hidden;
            for (k, &si) in scheduled.iter().enumerate() {
                let n_rows = self.seqs[si].pending.len();
                let s = &mut self.seqs[si];
                for r in s.pending.drain(..) {
                    s.audio_pos.push(r.is_audio());
                }
                s.n_cached += n_rows;
                if s.params.record_hidden && s.n_cached > n_rows {
                    let row = last_rows[k] as usize;
                    let mut per_layer: Vec<Vec<f32>> = fwd.layers[..fwd.layers.len() - 1]
                        .iter()
                        .map(|t| t.as_f32().map(|v| v[row * h..(row + 1) * h].to_vec()))
                        .collect::<Result<_>>()?;
                    per_layer.push(hidden[k * h..(k + 1) * h].to_vec());
                    s.out.step_hidden.push(per_layer);
                }
                if s.out.prompt_positions == 0 {
                    s.out.prompt_positions = n_rows;
                }
            }
            let heads = self.run_heads(&scheduled, &fwd.hidden)?;
            self.lap(&mut t, |s| &mut s.heads_s)?;
            for (k, &si) in scheduled.iter().enumerate() {
                let s = &mut self.seqs[si];
                let evs = Self::sample_step(&self.model.cfg, s, &heads.of(k))?;
                for e in evs {
                    events.push((s.id, e));
                }
            }
        }
        if let Some(st) = self.timing.as_mut() {
            st.steps += 1;
        }
        self.lap(&mut t, |s| &mut s.finish_s)?;
        // Retire finished sequences; their blocks go back to the pool here, in one place.
        let mut i = 0;
        while i < self.seqs.len() {
            if self.seqs[i].finished {
                let s = self.seqs.swap_remove(i);
                if self.mgr.contains(s.id) {
                    self.mgr.free(s.id)?;
                }
                self.finished.push((s.id, s.out));
            } else {
                i += 1;
            }
        }
        Ok(events)
    }

    fn build_batch(&self, scheduled: &[usize]) -> Result<(BatchInputs, Vec<u32>)> {
        let bs = self.mgr.block_size();
        let mut b = BatchInputs {
            block_size: bs,
            ..Default::default()
        };
        let max_ctx = scheduled
            .iter()
            .map(|&i| self.seqs[i].n_cached + self.seqs[i].pending.len())
            .max()
            .unwrap_or(0);
        b.max_blocks = max_ctx.div_ceil(bs).max(1);
        b.max_ctx = b.max_blocks * bs;
        let mut last_rows = Vec::new();
        for (k, &i) in scheduled.iter().enumerate() {
            let s = &self.seqs[i];
            let table = self.mgr.block_table(s.id)?;
            let mut row = vec![0i32; b.max_blocks];
            for (d, blk) in row.iter_mut().zip(table) {
                *d = blk.0 as i32;
            }
            b.block_tables.extend(row);
            let mut flags = vec![0u8; b.max_ctx];
            let cached_then_new = s
                .audio_pos
                .iter()
                .copied()
                .chain(s.pending.iter().map(RowInput::is_audio));
            for (p, a) in cached_then_new.enumerate() {
                flags[p] = a as u8;
            }
            b.audio_keys.extend(flags);
            b.slot_mapping
                .extend(self.mgr.slot_mapping(s.id, s.n_cached, s.pending.len())?);
            for (j, r) in s.pending.iter().enumerate() {
                b.rows.push(r.clone());
                b.positions.push((s.n_cached + j) as i32);
                b.query_seq.push(k as u32);
            }
            last_rows.push((b.rows.len() - 1) as u32);
        }
        Ok((b, last_rows))
    }

    /// The heads, batched: one audio-head GEMM over every sequence in an audio step and one
    /// text-head GEMM over those that need text logits; each result crosses to the host once,
    /// and for audio on a device that samples (CUDA) only the drawn symbols do.
    fn run_heads(&self, scheduled: &[usize], hidden: &Tensor) -> Result<StepHeads> {
        let model = &self.model;
        let cfg = &model.cfg;
        let n = scheduled.len();
        let mut heads = StepHeads {
            slot: vec![(None, None); n],
            ..Default::default()
        };
        let (mut audio_k, mut text_k) = (Vec::new(), Vec::new());
        for (k, &si) in scheduled.iter().enumerate() {
            let s = &self.seqs[si];
            match Self::mode(cfg, *s.ids.last().unwrap_or(&0)) {
                Mode::AudioInProgress => {
                    heads.slot[k].0 = Some(audio_k.len());
                    audio_k.push(k as u32);
                }
                Mode::AudioInit if !s.params.record_logits => {}
                Mode::Text | Mode::AudioInit => {
                    heads.slot[k].1 = Some(text_k.len());
                    text_k.push(k as u32);
                }
            }
        }
        let rows_of = |ks: &[u32]| -> Result<Option<Tensor>> {
            Ok(if ks.len() == n {
                None
            } else {
                Some(crate::ops::gather_rows(hidden, ks)?)
            })
        };
        if !audio_k.is_empty() {
            let picked = rows_of(&audio_k)?;
            let z = model.audio_logits(picked.as_ref().unwrap_or(hidden))?;
            let seqs: Vec<&SeqState> = audio_k
                .iter()
                .map(|&k| &self.seqs[scheduled[k as usize]])
                .collect();
            // One suppress list per launch; mixed lists sample on the host.
            let suppress = &seqs[0].params.suppress_audio;
            if seqs.iter().all(|s| &s.params.suppress_audio == suppress) {
                let rows: Vec<crate::ops::AudioDraw<'_>> = seqs
                    .iter()
                    .map(|s| crate::ops::AudioDraw {
                        sampling: s.params.sampling,
                        ras_win_len: s.params.ras_win_len,
                        ras_max_repeat: s.params.ras_max_repeat,
                        seed: s.draw_seed,
                        step: s.ids_full_len as u64,
                        history: &s.audio_out,
                    })
                    .collect();
                heads.audio_symbols = crate::ops::draw_audio(&z, cfg.n_codebooks, &rows, suppress)?;
            }
            if heads.audio_symbols.is_none() || seqs.iter().any(|s| s.params.record_logits) {
                heads.audio_logits = Some(z.to_f32_vec()?);
            }
        }
        if !text_k.is_empty() {
            let picked = rows_of(&text_k)?;
            let z = model.text_logits(picked.as_ref().unwrap_or(hidden))?;
            heads.text_logits = Some(z.to_f32_vec()?);
        }
        heads.audio_width = cfg.n_codebooks * cfg.codebook_rows();
        heads.n_codebooks = cfg.n_codebooks;
        heads.vocab = cfg.vocab;
        Ok(heads)
    }

    /// One audio column sampled on the host from `z` (`[c, rows]` raw logits): per codebook
    /// the request's sampler, then RAS against its recent columns (spec §8.5, §8.8).
    fn draw_column(s: &mut SeqState, z: &[f32], c: usize, rows: usize) -> Vec<u32> {
        (0..c)
            .map(|cb| {
                let zr = &z[cb * rows..(cb + 1) * rows];
                let mut t =
                    sample(zr, &s.params.sampling, &s.params.suppress_audio, &mut s.rng) as u32;
                if s.params.ras_win_len > 0 {
                    let start = s.audio_out.len().saturating_sub(s.params.ras_win_len);
                    let rep = ras_count(s.audio_out[start..].iter().map(|col| col[cb]), t);
                    if rep >= s.params.ras_max_repeat {
                        t = ras_redraw(zr, &mut s.rng) as u32;
                    }
                }
                t
            })
            .collect()
    }

    fn mode(cfg: &crate::config::ModelConfig, last: u32) -> Mode {
        if last == cfg.audio_out_bos_token {
            Mode::AudioInit
        } else if last == cfg.audio_out_token {
            Mode::AudioInProgress
        } else {
            Mode::Text
        }
    }

    /// Sample this step's outputs for one sequence from its final hidden state (spec §8.4-8.8).
    fn sample_step(
        cfg: &crate::config::ModelConfig,
        s: &mut SeqState,
        heads: &SeqHeads<'_>,
    ) -> Result<Vec<Event>> {
        let c = cfg.n_codebooks;
        let rows = cfg.codebook_rows();
        let mut ev = Vec::new();
        let last_id = *s.ids.last().unwrap_or(&0);
        let full_tok;
        match Self::mode(cfg, last_id) {
            Mode::AudioInProgress => {
                if s.params.record_logits {
                    s.out.step_audio_logits.push(heads.audio_logits()?.to_vec());
                }
                // Drawn on the device (CUDA), or here from the host logits (CPU).
                let mut col = match heads.audio_symbols {
                    Some(drawn) => drawn.to_vec(),
                    None => Self::draw_column(s, heads.audio_logits()?, c, rows),
                };
                let mut tok = cfg.audio_out_token;
                if cfg.use_delay_pattern {
                    if s.num_delay + 1 < c {
                        for v in col.iter_mut().skip(s.num_delay + 1) {
                            *v = cfg.stream_bos;
                        }
                        s.num_delay += 1;
                    }
                    if let Some(r) = s.num_remaining_delays.as_mut() {
                        let upto = (c as isize - *r).clamp(0, c as isize) as usize;
                        for v in col.iter_mut().take(upto) {
                            *v = cfg.stream_eos;
                        }
                        *r -= 1;
                    } else if let Some(i_eos) = col.iter().position(|&v| v == cfg.stream_eos) {
                        // The reference names it last_eos_idx but takes the FIRST row with EOS (§12).
                        for v in col.iter_mut().take(i_eos) {
                            *v = cfg.stream_eos;
                        }
                        s.num_remaining_delays = Some(c as isize - i_eos as isize - 1);
                    }
                    if matches!(s.num_remaining_delays, Some(r) if r <= 0) {
                        tok = cfg.audio_eos_token;
                        s.num_delay = 0;
                        s.num_remaining_delays = None;
                    }
                }
                s.audio_out.push(col.clone());
                if let Some(seg) = s.out.segments.last_mut() {
                    seg.push(col.clone());
                }
                ev.push(Event::Audio(col.clone()));
                if tok == cfg.audio_eos_token {
                    s.ids.push(tok);
                    s.out.ids.push(tok);
                    ev.push(Event::SegmentEnd);
                    // The final column is never fed back: the next input is <|audio_eos|> (§8.6).
                    s.pending.push(RowInput::Text(tok));
                } else {
                    s.pending.push(RowInput::Audio {
                        codes: col,
                        out: true,
                    });
                }
                full_tok = tok;
            }
            Mode::AudioInit => {
                if s.params.record_logits {
                    s.out.step_text_logits.push(heads.text_logits()?.to_vec());
                }
                let tok = cfg.audio_out_token;
                let col = vec![cfg.stream_bos; c];
                s.ids.push(tok);
                s.out.ids.push(tok);
                s.audio_out.push(col.clone());
                s.out.segments.push(vec![col.clone()]);
                s.num_delay = 0;
                s.num_remaining_delays = None;
                ev.push(Event::Text(tok));
                ev.push(Event::Audio(col.clone()));
                s.pending.push(RowInput::Audio {
                    codes: col,
                    out: true,
                });
                full_tok = tok;
            }
            Mode::Text => {
                let z = heads.text_logits()?;
                let mut tok =
                    sample(z, &s.params.sampling, &s.params.suppress_text, &mut s.rng) as u32;
                if s.params.record_logits {
                    s.out.step_text_logits.push(z.to_vec());
                }
                if tok == cfg.audio_out_token || tok == cfg.audio_in_token {
                    // The reference would crash on a placeholder without a segment (§8.4); treat
                    // it as the end of text generation instead.
                    tok = cfg.eos_token;
                }
                s.ids.push(tok);
                s.out.ids.push(tok);
                ev.push(Event::Text(tok));
                s.pending.push(RowInput::Text(tok));
                full_tok = tok;
            }
        }
        s.ids_full_len += 1;
        s.last_full = full_tok;
        let reason = if s.params.stop_tokens.contains(&full_tok) {
            Some(FinishReason::Stop(full_tok))
        } else if s.ids_full_len >= s.prompt_len + s.params.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        if let Some(r) = reason {
            s.finished = true;
            s.pending.clear();
            s.out.finish = Some(r.clone());
            ev.push(Event::Finished(r));
        }
        Ok(ev)
    }

    /// Run one request to completion (other queued requests advance too).
    pub fn generate(&mut self, prompt: &Prompt, params: GenerationParams) -> Result<Output> {
        let id = self.add(prompt, params)?;
        loop {
            self.step()?;
            if let Some(o) = self.take_output(id) {
                return Ok(o);
            }
            if self.seqs.iter().all(|s| s.pending.is_empty()) {
                return Err(Error::Other("scheduler made no progress".into()));
            }
        }
    }
}
