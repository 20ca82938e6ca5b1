//! One sequence's generation state and its draw rules (spec: model.md §8.4-8.8): text tokens,
//! the forced `<|AUDIO_OUT|>` + all-BOS column at `<|audio_out_bos|>`, audio columns under the
//! delay pattern, RAS, and the stop rules. Nothing here touches the KV cache or the batch: the
//! state survives preemption untouched, so a recomputed sequence draws exactly what it would
//! have drawn. May use: `delay`, `sampling`, `model::batch`, `engine::types`.

use super::types::{Event, FinishReason, GenerationParams, Output};
use crate::config::ModelConfig;
use crate::delay::{DelayPattern, DelayState};
use crate::error::{Error, Result};
use crate::model::RowInput;
use crate::sampling::processors::{ras_count, ras_redraw, sample};
use crate::sampling::rng::SeededRng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Text,
    AudioInit,
    AudioInProgress,
}

pub(crate) fn mode(cfg: &ModelConfig, last: u32) -> Mode {
    if last == cfg.audio_out_bos_token {
        Mode::AudioInit
    } else if last == cfg.audio_out_token {
        Mode::AudioInProgress
    } else {
        Mode::Text
    }
}

/// The head outputs of one sampled sequence.
pub(crate) struct SeqHeads<'a> {
    /// `[n_codebooks * rows]` raw audio logits (host sampling or recording).
    pub audio_logits: Option<&'a [f32]>,
    /// `[n_codebooks]` symbols drawn on the device (after RAS).
    pub audio_symbols: Option<&'a [u32]>,
    pub text_logits: Option<&'a [f32]>,
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

pub(crate) struct GenState {
    pub params: GenerationParams,
    rng: SeededRng,
    /// Seed of device-side draws (the request's seed, else a random one).
    pub draw_seed: u64,
    /// Compressed ids: prompt + generated.
    pub ids: Vec<u32>,
    /// Loop steps so far counting the prompt's ids (one per step after the prompt).
    pub ids_full_len: usize,
    prompt_len: usize,
    /// Every audio-out column so far (prompt's, then generated), for RAS.
    pub audio_out: Vec<Vec<u32>>,
    delay: DelayState,
    pub out: Output,
}

impl GenState {
    pub fn new(params: GenerationParams, prompt_ids: &[u32], prompt_rows: &[RowInput]) -> GenState {
        let audio_out = prompt_rows
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
        GenState {
            params,
            rng,
            draw_seed,
            ids: prompt_ids.to_vec(),
            ids_full_len: prompt_ids.len(),
            prompt_len: prompt_ids.len(),
            audio_out,
            delay: DelayState::default(),
            out: Output {
                prompt_positions: prompt_rows.len(),
                ..Default::default()
            },
        }
    }

    pub fn mode(&self, cfg: &ModelConfig) -> Mode {
        mode(cfg, *self.ids.last().unwrap_or(&0))
    }

    /// One audio column sampled on the host from `z` (`[c, rows]` raw logits): per codebook
    /// the request's sampler, then RAS against its recent columns (spec §8.5, §8.8).
    fn draw_column(&mut self, z: &[f32], c: usize, rows: usize) -> Vec<u32> {
        (0..c)
            .map(|cb| {
                let zr = &z[cb * rows..(cb + 1) * rows];
                let p = &self.params;
                let mut t = sample(zr, &p.sampling, &p.suppress_audio, &mut self.rng) as u32;
                if p.ras_win_len > 0 {
                    let start = self.audio_out.len().saturating_sub(p.ras_win_len);
                    let rep = ras_count(self.audio_out[start..].iter().map(|col| col[cb]), t);
                    if rep >= p.ras_max_repeat {
                        t = ras_redraw(zr, &mut self.rng) as u32;
                    }
                }
                t
            })
            .collect()
    }

    /// Draws this step's outputs from the heads. Returns the events and the row to feed next
    /// (None when the sequence finished).
    pub fn step(
        &mut self,
        cfg: &ModelConfig,
        heads: &SeqHeads<'_>,
    ) -> Result<(Vec<Event>, Option<RowInput>)> {
        let pattern = DelayPattern::of(cfg);
        let mut ev = Vec::new();
        let (full_tok, next) = match self.mode(cfg) {
            Mode::AudioInProgress => self.audio_step(cfg, &pattern, heads, &mut ev)?,
            Mode::AudioInit => {
                if self.params.record_logits {
                    self.out
                        .step_text_logits
                        .push(heads.text_logits()?.to_vec());
                }
                let tok = cfg.audio_out_token;
                let col = vec![cfg.stream_bos; cfg.n_codebooks];
                self.ids.push(tok);
                self.out.ids.push(tok);
                self.audio_out.push(col.clone());
                self.out.segments.push(vec![col.clone()]);
                self.delay.reset();
                ev.push(Event::Text(tok));
                ev.push(Event::Audio(col.clone()));
                (
                    tok,
                    RowInput::Audio {
                        codes: col,
                        out: true,
                    },
                )
            }
            Mode::Text => {
                let z = heads.text_logits()?;
                check_finite(z, "text", self.out.steps)?;
                let p = &self.params;
                let mut tok = sample(z, &p.sampling, &p.suppress_text, &mut self.rng) as u32;
                if self.params.record_logits {
                    self.out.step_text_logits.push(z.to_vec());
                }
                if tok == cfg.audio_out_token || tok == cfg.audio_in_token {
                    // The reference would crash on a placeholder without a segment (§8.4);
                    // treat it as the end of text generation instead.
                    tok = cfg.eos_token;
                }
                self.ids.push(tok);
                self.out.ids.push(tok);
                ev.push(Event::Text(tok));
                (tok, RowInput::Text(tok))
            }
        };
        self.ids_full_len += 1;
        self.out.steps += 1;
        let reason = if self.params.stop_tokens.contains(&full_tok) {
            Some(FinishReason::Stop(full_tok))
        } else if self.ids_full_len >= self.prompt_len + self.params.max_new_tokens {
            Some(FinishReason::Length)
        } else {
            None
        };
        match reason {
            Some(r) => {
                self.out.finish = Some(r.clone());
                ev.push(Event::Finished(r));
                Ok((ev, None))
            }
            None => Ok((ev, Some(next))),
        }
    }

    fn audio_step(
        &mut self,
        cfg: &ModelConfig,
        pattern: &DelayPattern,
        heads: &SeqHeads<'_>,
        ev: &mut Vec<Event>,
    ) -> Result<(u32, RowInput)> {
        if self.params.record_logits {
            self.out
                .step_audio_logits
                .push(heads.audio_logits()?.to_vec());
        }
        // Drawn on the device (CUDA), or here from the host logits (CPU).
        let mut col = match heads.audio_symbols {
            Some(drawn) => drawn.to_vec(),
            None => {
                let z = heads.audio_logits()?;
                check_finite(z, "audio", self.out.steps)?;
                self.draw_column(z, cfg.n_codebooks, cfg.codebook_rows())
            }
        };
        if let Some(bad) = col.iter().find(|&&v| v as usize >= cfg.codebook_rows()) {
            return Err(Error::Other(format!(
                "engine: drawn audio symbol {bad} outside the {} codebook rows",
                cfg.codebook_rows()
            )));
        }
        let ended = cfg.use_delay_pattern && self.delay.apply(pattern, &mut col);
        self.audio_out.push(col.clone());
        if let Some(seg) = self.out.segments.last_mut() {
            seg.push(col.clone());
        }
        ev.push(Event::Audio(col.clone()));
        if ended {
            let tok = cfg.audio_eos_token;
            self.ids.push(tok);
            self.out.ids.push(tok);
            ev.push(Event::SegmentEnd);
            // The final column is never fed back: the next input is <|audio_eos|> (§8.6).
            Ok((tok, RowInput::Text(tok)))
        } else {
            Ok((
                cfg.audio_out_token,
                RowInput::Audio {
                    codes: col,
                    out: true,
                },
            ))
        }
    }
}

/// Fails the sequence (only it) on a NaN or +Inf logit: sampling would otherwise draw from a
/// NaN distribution and stream garbage with a success status. (-Inf is a legal masked logit.)
/// Audio columns drawn on the device are not scanned here.
fn check_finite(z: &[f32], head: &str, step: usize) -> Result<()> {
    match z.iter().position(|v| v.is_nan() || *v == f32::INFINITY) {
        None => Ok(()),
        Some(i) => Err(Error::Other(format!(
            "the model produced a non-finite {head} logit ({}) at index {i}, generation step \
             {step}: the weights or the inputs are broken",
            z[i]
        ))),
    }
}
