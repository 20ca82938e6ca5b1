//! What the engine takes and gives per sequence: generation settings, the model-level
//! prompt (compressed ids + raw codec codes per audio), the per-step events and the finished
//! output (spec: model.md §8). May use: `sampling`.

use crate::sampling::processors::SamplingParams;

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
    /// The caller aborted the request (or went away).
    Aborted,
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
    /// Generation steps taken (every text token and audio column counts one).
    pub steps: usize,
}
