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

/// The codes of one stream and how far its audio has been emitted, without the codec: a
/// serving loop keeps one per request and decodes the windows of many streams in one
/// `AudioTokenizer::decode_batch` call. `StreamDecoder` is the one-stream wrapper.
#[derive(Clone, Debug)]
pub struct StreamState {
    /// Codes from absolute frame `base` on; older frames are no longer needed as context.
    codes: Vec<Vec<u32>>,
    base: usize,
    total: usize,
    emitted: usize,
}

/// One decode to run: `codes` is the window, and its audio from sample `cut_start` on
/// (`cut_len` samples, at the codec's hop per frame) is the stream's next chunk.
#[derive(Clone, Debug)]
pub struct StreamWindow {
    pub codes: Vec<Vec<u32>>,
    /// Frames of context before the emitted frames, and frames emitted.
    skip_frames: usize,
    frames: usize,
    ready: usize,
}

impl StreamWindow {
    /// Frames whose audio this window yields.
    pub fn frames(&self) -> usize {
        self.frames
    }
}

impl StreamState {
    pub fn new(n_codebooks: usize) -> Self {
        StreamState {
            codes: vec![Vec::new(); n_codebooks],
            base: 0,
            total: 0,
            emitted: 0,
        }
    }

    pub fn frames_pushed(&self) -> usize {
        self.total
    }

    pub fn frames_emitted(&self) -> usize {
        self.emitted
    }

    /// Frames whose audio is final now (10 frames of lookahead), or all at the end.
    pub fn ready(&self, finished: bool) -> usize {
        if finished {
            self.total
        } else {
            self.total.saturating_sub(CONTEXT_FRAMES)
        }
    }

    /// Appends frames `[n_codebooks][k]` (checked against the codec when decoded).
    pub fn push(&mut self, frames: &[Vec<u32>]) -> Result<()> {
        if frames.len() != self.codes.len() {
            return Err(Error::BadRequest(format!(
                "pushed {} codebooks, the stream has {}",
                frames.len(),
                self.codes.len()
            )));
        }
        let k = frames.first().map_or(0, Vec::len);
        if frames.iter().any(|r| r.len() != k) {
            return Err(Error::BadRequest(
                "pushed codebook rows of different lengths".into(),
            ));
        }
        for (row, new) in self.codes.iter_mut().zip(frames) {
            row.extend_from_slice(new);
        }
        self.total += k;
        Ok(())
    }

    /// The window that yields the audio of frames `[emitted, ready)`, or None when there is
    /// nothing new.
    pub fn window(&self, ready: usize) -> Option<StreamWindow> {
        let ready = ready.min(self.total);
        if ready <= self.emitted {
            return None;
        }
        // The window's left edge is >= base because base never passes emitted - CONTEXT.
        let start = self.emitted.saturating_sub(CONTEXT_FRAMES);
        let end = (ready + CONTEXT_FRAMES).min(self.total);
        Some(StreamWindow {
            codes: self
                .codes
                .iter()
                .map(|row| row[start - self.base..end - self.base].to_vec())
                .collect(),
            skip_frames: self.emitted - start,
            frames: ready - self.emitted,
            ready,
        })
    }

    /// Takes the decoded audio of `w` (from `window`): returns the stream's next samples and
    /// drops codes no later window needs.
    pub fn complete(&mut self, w: &StreamWindow, audio: &[f32], hop: usize) -> Result<Vec<f32>> {
        let (a, b) = (w.skip_frames * hop, (w.skip_frames + w.frames) * hop);
        if b > audio.len() || w.ready != self.emitted + w.frames {
            return Err(Error::Other(format!(
                "stream decode: window of {} samples for frames {}..{} (emitted {})",
                audio.len(),
                w.ready - w.frames,
                w.ready,
                self.emitted
            )));
        }
        let out = audio[a..b].to_vec();
        self.emitted = w.ready;
        let keep_from = w.ready.saturating_sub(CONTEXT_FRAMES);
        if keep_from > self.base {
            for row in &mut self.codes {
                row.drain(..keep_from - self.base);
            }
            self.base = keep_from;
        }
        Ok(out)
    }
}

impl AudioTokenizer {
    /// Decodes several independent code windows in one call (the serving loop's per-step
    /// batch of every stream with new frames). On the CPU the windows run in parallel; on a
    /// GPU one after another on the one stream (a batched decoder kernel is issue 14).
    pub fn decode_batch(&self, windows: &[&[Vec<u32>]]) -> Result<Vec<Vec<f32>>> {
        if self.decode_device().is_cpu() && windows.len() > 1 {
            use rayon::prelude::*;
            windows.par_iter().map(|w| self.decode(w)).collect()
        } else {
            windows.iter().map(|w| self.decode(w)).collect()
        }
    }
}

/// Streaming decoder: push code frames as the LLM completes them, get back the audio of every
/// frame that has 10 frames of lookahead (or all of it at `finish`). The concatenation of all
/// returned chunks equals `decode` of all pushed frames, sample for sample.
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    codec: &'a AudioTokenizer,
    state: StreamState,
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
            state: StreamState::new(n_codebooks),
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
        self.state.frames_pushed()
    }
    pub fn frames_emitted(&self) -> usize {
        self.state.frames_emitted()
    }

    /// Append frames `[n_codebooks][k]`; returns the samples that became final (maybe none).
    pub fn push(&mut self, frames: &[Vec<u32>]) -> Result<Vec<f32>> {
        self.codec.rvq.check_codes(frames)?;
        self.state.push(frames)?;
        let ready = self.state.ready(false);
        if ready >= self.state.frames_emitted() + self.min_chunk {
            self.emit(ready)
        } else {
            Ok(Vec::new())
        }
    }

    /// Audio of every frame not yet returned; the stream then holds no pending frames.
    pub fn finish(&mut self) -> Result<Vec<f32>> {
        let ready = self.state.ready(true);
        self.emit(ready)
    }

    fn emit(&mut self, ready: usize) -> Result<Vec<f32>> {
        let Some(w) = self.state.window(ready) else {
            return Ok(Vec::new());
        };
        let audio = self.codec.decode(&w.codes)?;
        self.state.complete(&w, &audio, self.codec.hop_length())
    }
}
