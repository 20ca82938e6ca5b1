//! Text-to-speech end to end: a prompt request (transcript, scene, voices, chunking) -> per
//! chunk the reference's prompt -> batched generation -> delay-pattern revert as columns
//! arrive -> the sample-exact streaming codec decoder -> 24 kHz audio, streamed in chunks.
//! The concatenated stream equals the decode of all frames at once (spec §8.9, §9.4).
//! May use: generate, prompt, codec, tokenizer.

use crate::codec::model::AudioTokenizer;
use crate::codec::stream::StreamDecoder;
use crate::error::{Error, Result};
use crate::generate::{Engine, Event, FinishReason, GenerationParams, Prompt};
use crate::kv::manager::SeqId;
use crate::prompt::{revert_delay_pattern, AudioClip, LongFormPrompt, ModelInput, PromptRequest};
use crate::tokenizer::TextTokenizer;

/// Options of one synthesis beyond the prompt.
#[derive(Clone, Debug)]
pub struct TtsOptions {
    pub gen: GenerationParams,
    /// Append `<|audio_out_bos|>` to every prompt (the serve engine's `force_audio_gen`).
    pub force_audio: bool,
}

/// What a synthesis produced.
#[derive(Clone, Debug, Default)]
pub struct TtsOutput {
    /// Codec frames of all chunks, `[n_codebooks][T]`.
    pub codes: Vec<Vec<u32>>,
    /// 24 kHz mono samples (`960 * T`).
    pub samples: Vec<f32>,
    /// Generated text ids per chunk.
    pub text_ids: Vec<Vec<u32>>,
    pub finish: Vec<FinishReason>,
}

/// Turns streamed delayed columns into codec frames: frame t of a segment is complete when
/// column t + C - 1 arrives; the first (stream BOS) and last (stream EOS) frames are dropped,
/// so one completed frame is held back until the next one proves it is not the last.
pub struct FrameReverter {
    n_codebooks: usize,
    max_code: u32,
    cols: Vec<Vec<u32>>,
    next_frame: usize,
    held: Option<Vec<u32>>,
}

impl FrameReverter {
    pub fn new(n_codebooks: usize, codebook_size: usize) -> Self {
        FrameReverter {
            n_codebooks,
            max_code: codebook_size.saturating_sub(1) as u32,
            cols: Vec::new(),
            next_frame: 0,
            held: None,
        }
    }

    /// Add one delayed column; returns the frames (`[frame][codebook]`) now known to be final.
    pub fn push(&mut self, col: Vec<u32>) -> Vec<Vec<u32>> {
        self.cols.push(col);
        let mut out = Vec::new();
        while self.next_frame + self.n_codebooks <= self.cols.len() {
            let t = self.next_frame;
            // Reverted R[c][t] = Y[c][t + c], clipped like the reference (§7.2).
            let frame: Vec<u32> = (0..self.n_codebooks)
                .map(|c| self.cols[t + c][c].min(self.max_code))
                .collect();
            self.next_frame += 1;
            if t == 0 {
                continue; // the wrapped stream-BOS frame
            }
            if let Some(prev) = self.held.replace(frame) {
                out.push(prev);
            }
        }
        out
    }

    /// Frames (`[frame][codebook]`, as `push` returns them) as codec rows `[codebook][frame]`.
    pub fn rows(&self, frames: &[Vec<u32>]) -> Vec<Vec<u32>> {
        (0..self.n_codebooks)
            .map(|cb| frames.iter().map(|f| f[cb]).collect())
            .collect()
    }

    /// The segment ended (or generation stopped): the held frame was the last one and is
    /// dropped, as `[:, 1:-1]` drops it. Resets for the next segment.
    pub fn end_segment(&mut self) {
        self.cols.clear();
        self.next_frame = 0;
        self.held = None;
    }
}

/// Raw codec codes of a collated segment (undo the wrap + delay; exact for codes < BOS).
fn segment_codes(columns: &[Vec<u32>]) -> Vec<Vec<u32>> {
    revert_delay_pattern(columns)
        .into_iter()
        .map(|r| {
            if r.len() < 2 {
                vec![]
            } else {
                r[1..r.len() - 1].to_vec()
            }
        })
        .collect()
}

/// The engine's prompt for one collated model input.
pub fn model_prompt(input: &ModelInput, force_audio_token: Option<u32>) -> Prompt {
    let mut ids = input.ids.clone();
    if let Some(t) = force_audio_token {
        ids.push(t);
    }
    Prompt {
        ids,
        audio_in: input
            .audio_in
            .as_ref()
            .map(|v| v.iter().map(|s| segment_codes(&s.columns)).collect())
            .unwrap_or_default(),
        audio_out: input
            .audio_out
            .iter()
            .map(|s| segment_codes(&s.columns))
            .collect(),
    }
}

pub struct Tts<'a> {
    pub engine: &'a mut Engine,
    pub codec: &'a AudioTokenizer,
    pub tokenizer: &'a TextTokenizer,
}

impl Tts<'_> {
    /// Synthesize `req`. `on_audio` receives each audio chunk as soon as it is decoded,
    /// `on_progress` the total frames so far.
    pub fn synthesize(
        &mut self,
        req: &PromptRequest,
        opts: &TtsOptions,
        on_audio: &mut dyn FnMut(&[f32]) -> Result<()>,
        on_progress: &mut dyn FnMut(usize),
    ) -> Result<TtsOutput> {
        let cfg = self.engine.model.cfg.clone();
        let codec = self.codec;
        if codec.n_q() < cfg.n_codebooks {
            return Err(Error::BadRequest(format!(
                "the audio tokenizer has {} codebooks, the model needs {}",
                codec.n_q(),
                cfg.n_codebooks
            )));
        }
        let mut encode = |clip: &AudioClip| codec.encode_file(&clip.path);
        let mut lf = LongFormPrompt::new(req, &mut encode)?;
        let mut out = TtsOutput {
            codes: vec![Vec::new(); cfg.n_codebooks],
            ..Default::default()
        };
        let mut decoder = StreamDecoder::new(codec, cfg.n_codebooks)?;
        let force = opts.force_audio.then_some(cfg.audio_out_bos_token);
        while let Some(input) = lf.next_input(self.tokenizer)? {
            let prompt = model_prompt(&input, force);
            let id = self.engine.add(&prompt, opts.gen.clone())?;
            let chunk_frames = self.run_chunk(id, &mut decoder, &mut out, on_audio, on_progress)?;
            lf.push_generated(chunk_frames)?;
        }
        let tail = decoder.finish()?;
        if !tail.is_empty() {
            on_audio(&tail)?;
            out.samples.extend_from_slice(&tail);
        }
        Ok(out)
    }

    fn run_chunk(
        &mut self,
        id: SeqId,
        decoder: &mut StreamDecoder<'_>,
        out: &mut TtsOutput,
        on_audio: &mut dyn FnMut(&[f32]) -> Result<()>,
        on_progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<Vec<u32>>> {
        let cfg = &self.engine.model.cfg;
        let c = cfg.n_codebooks;
        let mut rev = FrameReverter::new(c, cfg.codebook_size);
        let mut chunk: Vec<Vec<u32>> = vec![Vec::new(); c];
        loop {
            let events = self.engine.step()?;
            let mut frames = Vec::new();
            let mut done = false;
            for (s, e) in events {
                if s != id {
                    continue;
                }
                match e {
                    Event::Audio(col) => frames.extend(rev.push(col)),
                    Event::SegmentEnd => rev.end_segment(),
                    Event::Finished(r) => {
                        rev.end_segment();
                        if let FinishReason::Error(msg) = &r {
                            return Err(Error::Other(format!("generation failed: {msg}")));
                        }
                        out.finish.push(r);
                        done = true;
                    }
                    Event::Text(_) => {}
                }
            }
            if !frames.is_empty() {
                let rows = rev.rows(&frames);
                for (cb, r) in rows.iter().enumerate() {
                    chunk[cb].extend_from_slice(r);
                    out.codes[cb].extend_from_slice(r);
                }
                let pcm = decoder.push(&rows)?;
                if !pcm.is_empty() {
                    on_audio(&pcm)?;
                    out.samples.extend_from_slice(&pcm);
                }
                on_progress(out.codes[0].len());
            }
            if done {
                let o = self
                    .engine
                    .take_output(id)
                    .ok_or_else(|| Error::Other("finished request has no output".into()))?;
                out.text_ids.push(o.ids);
                return Ok(chunk);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::{generated_to_frames, wrap_and_delay};

    #[test]
    fn reverter_matches_batch_revert() {
        for t in [0usize, 1, 2, 5, 13] {
            let codes: Vec<Vec<u32>> = (0..8)
                .map(|c| (0..t).map(|i| ((c * 31 + i * 7) % 1024) as u32).collect())
                .collect();
            let delayed = wrap_and_delay(&codes, 1024, 1025);
            let mut rev = FrameReverter::new(8, 1024);
            let mut got = Vec::new();
            for j in 0..delayed[0].len() {
                got.extend(rev.push(delayed.iter().map(|r| r[j]).collect()));
            }
            rev.end_segment();
            let want = generated_to_frames(&delayed);
            let got_rows = rev.rows(&got);
            assert_eq!(got_rows, want, "T = {t}");
            assert_eq!(want[0], codes[0]);
        }
    }
}
