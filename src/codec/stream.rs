//! Sample-exact chunked and streaming decode. The decoder is not causal, but the samples of
//! frame f depend only on frames f-10 ..= f+10, so frames [a, b) are decoded from the window
//! [max(0, a-10), min(T, b+10)) and cut to their own samples; at the true start and end the
//! window's zero padding equals the full decode's. Away from the edges the decoder is
//! shift-equivariant (one frame = 960 samples), so the result equals the full decode.
//! spec: codec.md §9.
//! May use: error, codec::model.

use super::model::AudioTokenizer;
use crate::error::{Error, Result};

/// Frames of context needed on each side for an exact chunk (spec §9.1: 10, not 9).
pub const CONTEXT_FRAMES: usize = 10;

impl AudioTokenizer {
    /// Audio of frames `[a, b)` of `codes` (`[n][T]`), equal to the same samples of
    /// `decode(codes)`: `hop * (b - a)` samples.
    pub fn decode_frames(&self, codes: &[Vec<u32>], a: usize, b: usize) -> Result<Vec<f32>> {
        let t = self.rvq.check_codes(codes)?;
        if a > b || b > t {
            return Err(Error::BadRequest(format!(
                "frame range [{a}, {b}) outside [0, {t})"
            )));
        }
        if a == b {
            return Ok(Vec::new());
        }
        let start = a.saturating_sub(CONTEXT_FRAMES);
        let end = (b + CONTEXT_FRAMES).min(t);
        let window: Vec<Vec<u32>> = codes.iter().map(|row| row[start..end].to_vec()).collect();
        let audio = self.decode(&window)?;
        let hop = self.hop_length();
        Ok(audio[(a - start) * hop..(b - start) * hop].to_vec())
    }
}

/// Streaming decoder: push code frames as the LLM completes them, get back the audio of every
/// frame that has 10 frames of lookahead (or all of it at `finish`). The concatenation of all
/// returned chunks equals `decode` of all pushed frames, sample for sample.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    codec: &'a AudioTokenizer,
    /// Codes from absolute frame `base` on; older frames are no longer needed as context.
    codes: Vec<Vec<u32>>,
    base: usize,
    total: usize,
    emitted: usize,
    min_chunk: usize,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder for `n_codebooks` rows (usually the codec's n_q).
    pub fn new(codec: &'a AudioTokenizer, n_codebooks: usize) -> Result<Self> {
        if n_codebooks == 0 || n_codebooks > codec.n_q() {
            return Err(Error::BadRequest(format!(
                "stream decoder with {n_codebooks} codebooks (the codec has {})",
                codec.n_q()
            )));
        }
        Ok(StreamDecoder {
            codec,
            codes: vec![Vec::new(); n_codebooks],
            base: 0,
            total: 0,
            emitted: 0,
            min_chunk: 1,
        })
    }

    /// Emit audio only in chunks of at least `frames` frames (except at `finish`); larger
    /// chunks cost less recompute: (C + 20) / C decoder work per frame.
    pub fn with_min_chunk(mut self, frames: usize) -> Self {
        self.min_chunk = frames.max(1);
        self
    }

    pub fn frames_pushed(&self) -> usize {
        self.total
    }
    pub fn frames_emitted(&self) -> usize {
        self.emitted
    }

    /// Append frames `[n_codebooks][k]`; returns the samples that became final (maybe none).
    pub fn push(&mut self, frames: &[Vec<u32>]) -> Result<Vec<f32>> {
        if frames.len() != self.codes.len() {
            return Err(Error::BadRequest(format!(
                "pushed {} codebooks, the stream has {}",
                frames.len(),
                self.codes.len()
            )));
        }
        let k = self.codec.rvq.check_codes(frames)?;
        for (row, new) in self.codes.iter_mut().zip(frames) {
            row.extend_from_slice(new);
        }
        self.total += k;
        let ready = self.total.saturating_sub(CONTEXT_FRAMES);
        if ready >= self.emitted + self.min_chunk {
            self.emit(ready)
        } else {
            Ok(Vec::new())
        }
    }

    /// Audio of every frame not yet returned; the stream then holds no pending frames.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        let total = self.total;
        self.emit(total)
    }

    fn emit(&mut self, ready: usize) -> Result<Vec<f32>> {
        if ready <= self.emitted {
            return Ok(Vec::new());
        }
        // The window's left edge is >= base because base never passes emitted - CONTEXT.
        let start = self.emitted.saturating_sub(CONTEXT_FRAMES);
        let end = (ready + CONTEXT_FRAMES).min(self.total);
        let window: Vec<Vec<u32>> = self
            .codes
            .iter()
            .map(|row| row[start - self.base..end - self.base].to_vec())
            .collect();
        let audio = self.codec.decode(&window)?;
        let hop = self.codec.hop_length();
        let out = audio[(self.emitted - start) * hop..(ready - start) * hop].to_vec();
        self.emitted = ready;
        let keep_from = ready.saturating_sub(CONTEXT_FRAMES);
        if keep_from > self.base {
            for row in &mut self.codes {
                row.drain(..keep_from - self.base);
            }
            self.base = keep_from;
        }
        Ok(out)
    }
}
