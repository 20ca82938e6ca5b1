//! Scheduler output -> `BatchInputs` -> forward -> heads -> draws. One batched forward per
//! step over every scheduled sequence (prefill chunks and decode rows, text or audio, mixed),
//! then one audio-head GEMM for all sequences in an audio step and one text-head GEMM for
//! those that need text logits; each result crosses to the host once, and for audio on a
//! device that samples (CUDA) only the drawn symbols do.
//! May use: `model`, `ops`, `scheduler` (its output and rows), `engine::sequence`.
//!
//! Counterpart: vLLM `v1/worker/gpu_model_runner.py` (`_prepare_inputs`, `execute_model`).

use super::sequence::{GenState, Mode, SeqHeads};
use crate::error::{Error, Result};
use crate::kv::cache::KvCache;
use crate::kv::manager::SeqId;
use crate::model::{BatchInputs, ForwardOptions, Model};
use crate::scheduler::{Scheduler, SchedulerOutput};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// The model inputs of one step plus, per scheduled sequence, the row whose hidden state
/// comes back (its last fed row).
pub(crate) struct StepBatch {
    pub inputs: BatchInputs,
    pub last_rows: Vec<u32>,
}

/// Builds the batch of `out` from the scheduler's rows and block tables.
pub(crate) fn build_batch(sched: &Scheduler, out: &SchedulerOutput) -> Result<StepBatch> {
    let kv = sched.kv();
    let bs = kv.block_size();
    let mut b = BatchInputs {
        block_size: bs,
        ..Default::default()
    };
    let max_ctx = out.seqs.iter().map(|s| s.start + s.len).max().unwrap_or(0);
    b.max_blocks = max_ctx.div_ceil(bs).max(1);
    b.max_ctx = b.max_blocks * bs;
    let n_rows = out.num_rows();
    b.rows.reserve(n_rows);
    b.positions.reserve(n_rows);
    b.query_seq.reserve(n_rows);
    b.block_tables.reserve(out.seqs.len() * b.max_blocks);
    b.audio_keys.reserve(out.seqs.len() * b.max_ctx);
    let mut last_rows = Vec::with_capacity(out.seqs.len());
    for (k, s) in out.seqs.iter().enumerate() {
        let seq = sched.seq(s.id)?;
        let table = kv.block_table(s.id)?;
        let row_start = b.block_tables.len();
        b.block_tables.resize(row_start + b.max_blocks, 0);
        for (d, blk) in b.block_tables[row_start..].iter_mut().zip(table) {
            *d = blk.0 as i32;
        }
        let end = s.start + s.len;
        let flags_start = b.audio_keys.len();
        b.audio_keys.resize(flags_start + b.max_ctx, 0);
        for (d, r) in b.audio_keys[flags_start..].iter_mut().zip(&seq.rows[..end]) {
            *d = u8::from(r.is_audio());
        }
        b.slot_mapping
            .extend(kv.slot_mapping(s.id, s.start, s.len)?);
        for (j, r) in seq.rows[s.start..end].iter().enumerate() {
            b.rows.push(r.clone());
            b.positions.push((s.start + j) as i32);
            b.query_seq.push(k as u32);
        }
        last_rows.push((b.rows.len() - 1) as u32);
    }
    Ok(StepBatch {
        inputs: b,
        last_rows,
    })
}

/// One step's head outputs for the sampled sequences.
#[derive(Default)]
pub(crate) struct StepHeads {
    /// Per sampled sequence: its row in the audio results, its row in the text logits.
    slot: Vec<(Option<usize>, Option<usize>)>,
    audio_logits: Option<Vec<f32>>,
    audio_symbols: Option<Vec<u32>>,
    text_logits: Option<Vec<f32>>,
    audio_width: usize,
    n_codebooks: usize,
    vocab: usize,
}

impl StepHeads {
    pub fn of(&self, k: usize) -> SeqHeads<'_> {
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

/// The heads over `hidden` (`[sampled.len(), hidden]`, one row per sampled sequence).
pub(crate) fn run_heads(
    model: &Model,
    sampled: &[SeqId],
    gens: &HashMap<SeqId, GenState>,
    hidden: &Tensor,
) -> Result<StepHeads> {
    let cfg = &model.cfg;
    let n = sampled.len();
    let mut heads = StepHeads {
        slot: vec![(None, None); n],
        audio_width: cfg.n_codebooks * cfg.codebook_rows(),
        n_codebooks: cfg.n_codebooks,
        vocab: cfg.vocab,
        ..Default::default()
    };
    let gen = |id: &SeqId| {
        gens.get(id)
            .ok_or_else(|| Error::Other(format!("engine: no state for sequence {}", id.0)))
    };
    let (mut audio_k, mut text_k) = (Vec::new(), Vec::new());
    for (k, id) in sampled.iter().enumerate() {
        let g = gen(id)?;
        match g.mode(cfg) {
            Mode::AudioInProgress => {
                heads.slot[k].0 = Some(audio_k.len());
                audio_k.push(k as u32);
            }
            Mode::AudioInit if !g.params.record_logits => {}
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
        let seqs: Vec<&GenState> = audio_k
            .iter()
            .map(|&k| gen(&sampled[k as usize]))
            .collect::<Result<_>>()?;
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
    Ok(heads)
}

/// Runs the forward of a built batch: the hidden states of each sequence's last row, and,
/// when any sampled sequence records hidden states, the per-layer inputs of those rows.
pub(crate) fn forward(
    model: &Model,
    kv: &mut KvCache,
    batch: &StepBatch,
    capture_layers: bool,
) -> Result<crate::model::ForwardOutput> {
    let opts = ForwardOptions {
        out_rows: batch.last_rows.clone(),
        capture_layers,
    };
    model.forward(&batch.inputs, kv, &opts)
}
