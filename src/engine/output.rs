//! Per-request output processing, shared by every front end (CLI, HTTP server, workers): a
//! text-to-speech request runs as one engine sequence per long-form chunk; each sequence's
//! delayed columns are reverted to codec frames as they arrive, a finished chunk's frames
//! become context of the next chunk's prompt, and the frames of all chunks stream through one
//! sample-exact codec stream. The codec decode of every request with new audio runs as one
//! batched call per engine step (`decode_ready`).
//! May use: `engine::{core, types}`, `prompt`, `codec`, `delay`, `tokenizer`.
//!
//! Chunking policy (so playback does not starve): a stream's first audio chunk is emitted as
//! soon as `first_chunk_frames` frames are final (default 4 frames = 160 ms of audio, for a
//! short time to first audio); each later chunk waits for twice the previous chunk's frames,
//! up to `max_chunk_frames` (default 25 = 1 s). While generation runs at least at real time
//! (25 frames/s per stream), a chunk of n frames takes at most n/25 s to produce, and the
//! audio delivered before it lasts at least as long (the previous chunks sum to >= n - 1
//! frames by the doubling), so the client's buffer never runs dry; larger later chunks also
//! cut the decoder's recompute overhead ((n + 20) / n decoded frames per frame).
//!
//! Counterpart: vLLM `v1/engine/output_processor.py`.

use std::collections::HashMap;
use std::path::PathBuf;

use super::core::Engine;
use super::types::{Event, FinishReason, GenerationParams, Prompt};
use crate::codec::model::AudioTokenizer;
use crate::codec::stream::{StreamState, StreamWindow};
use crate::delay::{DelayPattern, FrameReverter};
use crate::error::{Error, Result};
use crate::kv::manager::SeqId;
use crate::prompt::{AudioClip, LongFormPrompt, ModelInput, PromptRequest};
use crate::scheduler::ArrivalOrder;
use crate::tokenizer::TextTokenizer;

/// What is spoken: a long-form request built the way `examples/generation.py` does, or a
/// prompt already collated by the caller (chat messages as the serve engine takes them).
#[derive(Clone, Debug)]
pub enum TtsInput {
    LongForm(PromptRequest),
    Collated(ModelInput),
}

/// When a stream's audio chunks are emitted (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamPolicy {
    pub first_chunk_frames: usize,
    pub max_chunk_frames: usize,
}

impl Default for StreamPolicy {
    fn default() -> Self {
        StreamPolicy {
            first_chunk_frames: 4,
            max_chunk_frames: 25,
        }
    }
}

impl StreamPolicy {
    /// Frames the `k`-th chunk (0-based) waits for.
    pub fn chunk_frames(&self, k: usize) -> usize {
        let first = self.first_chunk_frames.max(1);
        let grown = first.saturating_mul(1usize << k.min(16));
        grown.min(self.max_chunk_frames.max(first))
    }
}

/// One text-to-speech request.
#[derive(Clone, Debug)]
pub struct TtsRequest {
    pub input: TtsInput,
    pub gen: GenerationParams,
    /// Append `<|audio_out_bos|>` to every prompt (the serve engine's `force_audio_gen`).
    pub force_audio: bool,
    /// Codec codes of clips already encoded (custom voices), by the clip's path; other clips
    /// are encoded when the request is admitted (and cached by the engine thread).
    pub clip_codes: HashMap<PathBuf, Vec<Vec<u32>>>,
    pub stream: StreamPolicy,
}

impl TtsRequest {
    pub fn new(input: TtsInput, gen: GenerationParams) -> Self {
        TtsRequest {
            input,
            gen,
            force_audio: false,
            clip_codes: HashMap::new(),
            stream: StreamPolicy::default(),
        }
    }
}

/// Token and frame counts of a request (all chunks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Prompt positions fed to the model (expanded: text ids + audio columns).
    pub prompt_tokens: usize,
    /// Generation steps (every text token and audio column counts one).
    pub completion_tokens: usize,
    /// Codec frames of audio produced (25 per second).
    pub audio_frames: usize,
}

/// What a request's stream carries, in order.
#[derive(Debug)]
pub enum RequestEvent {
    /// Generated text-mode ids of one step (including `<|AUDIO_OUT|>` at a segment start).
    Text(Vec<u32>),
    /// Codec frames `[n_codebooks][k]` that became final.
    Codes(Vec<Vec<u32>>),
    /// 24 kHz mono samples, in order; their concatenation is the whole clip's decode.
    Audio(Vec<f32>),
    /// The request ended: per chunk its finish reason, and the usage.
    Finished {
        finish: Vec<FinishReason>,
        usage: Usage,
    },
    /// The request failed (nothing follows).
    Failed(Error),
}

/// Where a request's events go; a send that fails means the receiver went away.
pub trait EventSink {
    fn send(&mut self, ev: RequestEvent) -> bool;
}

impl EventSink for tokio::sync::mpsc::UnboundedSender<RequestEvent> {
    fn send(&mut self, ev: RequestEvent) -> bool {
        tokio::sync::mpsc::UnboundedSender::send(self, ev).is_ok()
    }
}

impl EventSink for Vec<RequestEvent> {
    fn send(&mut self, ev: RequestEvent) -> bool {
        self.push(ev);
        true
    }
}

struct Pipeline<S> {
    sink: S,
    arrival: u64,
    chunk: u32,
    seq: SeqId,
    long_form: Option<LongFormPrompt>,
    gen: GenerationParams,
    force_audio: bool,
    rev: FrameReverter,
    /// This chunk's frames `[codebook][frame]` (context for the next chunk).
    chunk_codes: Vec<Vec<u32>>,
    stream: StreamState,
    policy: StreamPolicy,
    audio_chunks: usize,
    /// Every sequence of this request is done; the tail of the audio is still to come.
    generation_done: bool,
    finish: Vec<FinishReason>,
    usage: Usage,
}

/// Every request in flight, keyed by its id.
pub struct OutputProcessor<S: EventSink> {
    pattern: DelayPattern,
    requests: HashMap<u64, Pipeline<S>>,
    by_seq: HashMap<SeqId, u64>,
    /// Encoded clips by path (voice presets are encoded once per engine).
    clip_cache: HashMap<PathBuf, Vec<Vec<u32>>>,
    /// Audio frames the codec decoded in batched calls, and the calls (stats).
    pub decode_calls: u64,
    pub decoded_windows: u64,
}

/// The prompt of one collated model input: ids (plus the forced audio start) and each
/// segment's raw codes, which the engine wraps and delays once.
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
            .map(|v| v.iter().map(|s| s.codes.clone()).collect())
            .unwrap_or_default(),
        audio_out: input.audio_out.iter().map(|s| s.codes.clone()).collect(),
    }
}

impl<S: EventSink> OutputProcessor<S> {
    pub fn new(pattern: DelayPattern) -> Self {
        OutputProcessor {
            pattern,
            requests: HashMap::new(),
            by_seq: HashMap::new(),
            clip_cache: HashMap::new(),
            decode_calls: 0,
            decoded_windows: 0,
        }
    }

    pub fn num_requests(&self) -> usize {
        self.requests.len()
    }

    pub fn contains(&self, id: u64) -> bool {
        self.requests.contains_key(&id)
    }

    /// Builds the request's first prompt and queues it under id `id` (its arrival number,
    /// from `engine.next_arrival()`). Errors (bad voice, prompt that can never fit, ...) come
    /// back here, before anything is queued.
    pub fn submit(
        &mut self,
        engine: &mut Engine,
        codec: &AudioTokenizer,
        tokenizer: &TextTokenizer,
        id: u64,
        req: TtsRequest,
        sink: S,
    ) -> Result<()> {
        let cfg = &engine.model.cfg;
        if codec.n_q() < cfg.n_codebooks {
            return Err(Error::BadRequest(format!(
                "the audio tokenizer has {} codebooks, the model needs {}",
                codec.n_q(),
                cfg.n_codebooks
            )));
        }
        let n_cb = cfg.n_codebooks;
        let force = req.force_audio.then_some(cfg.audio_out_bos_token);
        let (long_form, input) = match req.input {
            TtsInput::LongForm(pr) => {
                check_clips_can_fit(engine, &pr, req.gen.max_new_tokens)?;
                let cache = &mut self.clip_cache;
                let given = &req.clip_codes;
                let mut encode = |clip: &AudioClip| -> Result<Vec<Vec<u32>>> {
                    if let Some(c) = given.get(&clip.path).or_else(|| cache.get(&clip.path)) {
                        return Ok(c.clone());
                    }
                    let codes = codec.encode_file(&clip.path)?;
                    cache.insert(clip.path.clone(), codes.clone());
                    Ok(codes)
                };
                let mut lf = LongFormPrompt::new(&pr, &mut encode)?;
                let input = lf
                    .next_input(tokenizer)?
                    .ok_or_else(|| Error::BadRequest("the text has no chunk to speak".into()))?;
                (Some(lf), input)
            }
            TtsInput::Collated(mi) => (None, mi),
        };
        let prompt = model_prompt(&input, force);
        let order = ArrivalOrder {
            arrival: id,
            chunk: 0,
        };
        let seq = engine.add_ordered(&prompt, req.gen.clone(), order)?;
        let prompt_tokens = engine.scheduler().seq(seq).map_or(0, |s| s.rows.len());
        self.by_seq.insert(seq, id);
        self.requests.insert(
            id,
            Pipeline {
                sink,
                arrival: id,
                chunk: 0,
                seq,
                long_form,
                gen: req.gen,
                force_audio: req.force_audio,
                rev: FrameReverter::new(self.pattern),
                chunk_codes: vec![Vec::new(); n_cb],
                stream: StreamState::new(n_cb),
                policy: req.stream,
                audio_chunks: 0,
                generation_done: false,
                finish: Vec::new(),
                usage: Usage {
                    prompt_tokens,
                    ..Default::default()
                },
            },
        );
        Ok(())
    }

    /// Stops request `id`: its sequence leaves the engine (blocks freed), nothing more is
    /// sent. Returns false when it is not in flight.
    pub fn abort(&mut self, engine: &mut Engine, id: u64) -> Result<bool> {
        let Some(p) = self.requests.remove(&id) else {
            return Ok(false);
        };
        self.by_seq.remove(&p.seq);
        engine.abort(p.seq)?;
        Ok(true)
    }

    /// Fails every request in flight (the engine loop hit an internal error).
    pub fn fail_all(&mut self, engine: &mut Engine, err: &Error) {
        let ids: Vec<u64> = self.requests.keys().copied().collect();
        for id in ids {
            if let Some(mut p) = self.requests.remove(&id) {
                self.by_seq.remove(&p.seq);
                let _ = engine.abort(p.seq);
                p.sink
                    .send(RequestEvent::Failed(Error::Other(err.to_string())));
            }
        }
    }

    /// Routes one step's events to their requests: frames are reverted, finished chunks
    /// chain into the next chunk's prompt. Requests whose receiver went away are aborted.
    pub fn process(
        &mut self,
        engine: &mut Engine,
        tokenizer: &TextTokenizer,
        events: Vec<(SeqId, Event)>,
    ) {
        let mut gone = Vec::new();
        let mut text: HashMap<u64, Vec<u32>> = HashMap::new();
        let mut frames: HashMap<u64, Vec<Vec<u32>>> = HashMap::new();
        let mut finished = Vec::new();
        for (seq, ev) in events {
            let Some(&id) = self.by_seq.get(&seq) else {
                // A request that already failed or went away: drop its output.
                if matches!(ev, Event::Finished(_)) {
                    let _ = engine.take_output(seq);
                }
                continue;
            };
            let Some(p) = self.requests.get_mut(&id) else {
                continue;
            };
            match ev {
                Event::Text(t) => text.entry(id).or_default().push(t),
                Event::Audio(col) => {
                    let f = p.rev.push(col);
                    frames.entry(id).or_default().extend(f);
                }
                Event::SegmentEnd => p.rev.end_segment(),
                Event::Finished(r) => {
                    p.rev.end_segment();
                    finished.push((id, seq, r));
                }
            }
        }
        for (id, t) in text {
            if let Some(p) = self.requests.get_mut(&id) {
                if !p.sink.send(RequestEvent::Text(t)) {
                    gone.push(id);
                }
            }
        }
        for (id, f) in frames {
            let Some(p) = self.requests.get_mut(&id) else {
                continue;
            };
            if f.is_empty() {
                continue;
            }
            let rows = p.rev.rows(&f);
            for (dst, r) in p.chunk_codes.iter_mut().zip(&rows) {
                dst.extend_from_slice(r);
            }
            p.usage.audio_frames += f.len();
            if let Err(e) = p.stream.push(&rows) {
                p.sink.send(RequestEvent::Failed(e));
                gone.push(id);
                continue;
            }
            if !p.sink.send(RequestEvent::Codes(rows)) {
                gone.push(id);
            }
        }
        for (id, seq, reason) in finished {
            self.by_seq.remove(&seq);
            if let (Some(out), Some(p)) = (engine.take_output(seq), self.requests.get_mut(&id)) {
                p.usage.completion_tokens += out.steps;
            }
            if let Err(e) = self.finish_chunk(engine, tokenizer, id, reason) {
                if let Some(mut p) = self.requests.remove(&id) {
                    p.sink.send(RequestEvent::Failed(e));
                }
            }
        }
        for id in gone {
            let _ = self.abort(engine, id);
        }
    }

    /// A chunk's sequence ended: chain the next chunk, or mark the generation done.
    fn finish_chunk(
        &mut self,
        engine: &mut Engine,
        tokenizer: &TextTokenizer,
        id: u64,
        reason: FinishReason,
    ) -> Result<()> {
        let Some(p) = self.requests.get_mut(&id) else {
            return Ok(());
        };
        if let FinishReason::Error(msg) = &reason {
            return Err(Error::Other(format!("generation failed: {msg}")));
        }
        p.finish.push(reason);
        let codes = std::mem::replace(
            &mut p.chunk_codes,
            vec![Vec::new(); self.pattern.n_codebooks],
        );
        let next = match p.long_form.as_mut() {
            Some(lf) => {
                lf.push_generated(codes)?;
                lf.next_input(tokenizer)?
            }
            None => None,
        };
        let Some(input) = next else {
            p.generation_done = true;
            return Ok(());
        };
        let force = p
            .force_audio
            .then_some(engine.model.cfg.audio_out_bos_token);
        let prompt = model_prompt(&input, force);
        p.chunk += 1;
        let order = ArrivalOrder {
            arrival: p.arrival,
            chunk: p.chunk,
        };
        let seq = engine.add_ordered(&prompt, p.gen.clone(), order)?;
        p.usage.prompt_tokens += engine.scheduler().seq(seq).map_or(0, |s| s.rows.len());
        p.seq = seq;
        self.by_seq.insert(seq, id);
        Ok(())
    }

    /// Decodes, in one batched codec call, every stream whose next chunk is due (or whose
    /// generation is done), sends the audio, and ends the requests that are complete.
    pub fn decode_ready(&mut self, engine: &mut Engine, codec: &AudioTokenizer) {
        let mut due: Vec<(u64, StreamWindow)> = Vec::new();
        for (&id, p) in &self.requests {
            let done = p.generation_done;
            let ready = p.stream.ready(done);
            let need = p.policy.chunk_frames(p.audio_chunks);
            if done || ready >= p.stream.frames_emitted() + need {
                if let Some(w) = p.stream.window(ready) {
                    due.push((id, w));
                }
            }
        }
        if !due.is_empty() {
            let windows: Vec<&[Vec<u32>]> = due.iter().map(|(_, w)| w.codes.as_slice()).collect();
            self.decode_calls += 1;
            self.decoded_windows += due.len() as u64;
            match codec.decode_batch(&windows) {
                Ok(audios) => {
                    let mut failed = Vec::new();
                    for ((id, w), audio) in due.iter().zip(audios) {
                        let Some(p) = self.requests.get_mut(id) else {
                            continue;
                        };
                        match p.stream.complete(w, &audio, codec.hop_length()) {
                            Ok(pcm) => {
                                p.audio_chunks += 1;
                                p.sink.send(RequestEvent::Audio(pcm));
                            }
                            Err(e) => {
                                p.sink.send(RequestEvent::Failed(e));
                                failed.push(*id);
                            }
                        }
                    }
                    for id in failed {
                        if let Some(p) = self.requests.remove(&id) {
                            self.by_seq.remove(&p.seq);
                            let _ = engine.abort(p.seq);
                        }
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (id, _) in &due {
                        if let Some(mut p) = self.requests.remove(id) {
                            self.by_seq.remove(&p.seq);
                            let _ = engine.abort(p.seq);
                            p.sink
                                .send(RequestEvent::Failed(Error::Other(format!("codec: {msg}"))));
                        }
                    }
                }
            }
        }
        let complete: Vec<u64> = self
            .requests
            .iter()
            .filter(|(_, p)| {
                p.generation_done && p.stream.frames_emitted() == p.stream.frames_pushed()
            })
            .map(|(&id, _)| id)
            .collect();
        for id in complete {
            if let Some(mut p) = self.requests.remove(&id) {
                p.sink.send(RequestEvent::Finished {
                    finish: std::mem::take(&mut p.finish),
                    usage: p.usage,
                });
            }
        }
    }
}

/// Refuses, before any clip is encoded, a long-form request whose reference clips alone (their
/// frame counts come from the file headers) plus `max_new_tokens` exceed the KV cache: each
/// clip is at least its frames of prompt positions. The exact check follows at `add`.
fn check_clips_can_fit(engine: &Engine, pr: &PromptRequest, max_new: usize) -> Result<()> {
    let frames: usize = pr
        .voices
        .iter()
        .map(|v| match v {
            crate::prompt::VoiceRef::Clip { clip, .. } => clip.frames(),
            crate::prompt::VoiceRef::Profile { .. } => 0,
        })
        .sum();
    let kv = engine.scheduler().kv();
    let capacity = kv.num_blocks() * kv.block_size();
    if frames.saturating_add(max_new) > capacity {
        return Err(Error::BadRequest(format!(
            "request can never fit the KV cache: its reference clips alone are {frames} frames \
             (prompt positions) and max_new_tokens is {max_new}, the cache holds {capacity} \
             positions; use shorter clips, lower max_new_tokens or raise --max-context"
        )));
    }
    Ok(())
}
