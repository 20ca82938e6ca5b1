//! Prompt building identical to the reference: user request (transcript, scene, voices,
//! chunking) → per generation call the compressed ids, the audio segments at their placeholders
//! and the expanded layout the decoder runs on.
//! May use: tokenizer, error (and hound for WAV headers). Spec: model.md §4.4, §7, §9; the
//! rules in `tests/fixtures/reference/prompts/README.md`.
//!
//! Two drivers, as in the reference:
//! * [`LongFormPrompt`]: `examples/generation.py` (normalisation, system message and voice
//!   turns, chunking, one call per chunk with earlier chunks' audio as context).
//! * [`serve_model_input`]: `HiggsAudioServeEngine` (messages taken as given).
//!
//! Audio codes come from the caller (the codec encodes a clip; tests use stand-in codes).

pub mod chatml;
pub mod chunk;
pub mod collate;
pub mod normalize;
pub mod system;

use crate::error::{Error, Result};
use crate::tokenizer::TextTokenizer;

pub use chatml::{AudioSource, Content, GenerationPrompt, Message, Role};
pub use chunk::{ChunkMethod, Chunking};
pub use collate::{
    build_delay_pattern, check_codes, generated_to_frames, revert_delay_pattern, wrap_and_delay,
    AudioInCodes, AudioItem, AudioKind, ModelInput, Placeholder, Run, RunKind, Segment,
};
pub use system::{AudioClip, VoiceLibrary, VoicePlacement, VoiceRef};

/// What a user asks the CLI-style driver for.
#[derive(Clone, Debug, Default)]
pub struct PromptRequest {
    /// The transcript as given (normalised here).
    pub transcript: String,
    /// The scene description text (None or "" = no scene). The CLI's default is
    /// "Audio is recorded from a quiet room.".
    pub scene: Option<String>,
    /// Voice k is `SPEAKERk`. Empty = smart voice.
    pub voices: Vec<VoiceRef>,
    /// `--ref_audio_in_system_message` (forced by any profile voice).
    pub voice_placement: VoicePlacement,
    pub chunking: Chunking,
    /// Generated chunks kept as context (None = all; Some(0) also keeps all, as the reference).
    pub generation_chunk_buffer_size: Option<usize>,
}

/// The scene text of the CLI's default `--scene_prompt` (`scene_prompts/quiet_indoor.txt`).
pub const DEFAULT_SCENE: &str = "Audio is recorded from a quiet room.";

/// One long-form request: its chunks and the conversation carried from chunk to chunk.
///
/// Loop: `while let Some(input) = p.next_input(&tok)? { generate; p.push_generated(frames)? }`.
#[derive(Clone, Debug)]
pub struct LongFormPrompt {
    pub normalized_transcript: String,
    pub speaker_tags: Vec<String>,
    pub chunks: Vec<String>,
    /// Messages before the chunks (system message, voice turns).
    pub context: Vec<Message>,
    /// Codes of the reference voices, in voice order; never dropped.
    reference_audio: Vec<AudioItem>,
    history: chunk::ChunkHistory,
    next_chunk: usize,
    awaiting_audio: bool,
}

impl LongFormPrompt {
    /// Normalises, chunks, builds the context and encodes every recorded voice with `encode`
    /// (which returns the clip's [8, T] codec frames).
    pub fn new(
        req: &PromptRequest,
        encode: &mut dyn FnMut(&AudioClip) -> Result<Vec<Vec<u32>>>,
    ) -> Result<Self> {
        if normalize::py_strip(&req.transcript).is_empty() {
            return Err(Error::BadRequest("transcript is empty".into()));
        }
        let speaker_tags = normalize::speaker_tags(&req.transcript);
        let normalized_transcript = normalize::normalize_transcript(&req.transcript);
        let chunks = chunk::chunk_text(&normalized_transcript, &req.chunking)?;
        let ctx = system::generation_context(
            req.scene.as_deref(),
            &req.voices,
            req.voice_placement,
            &speaker_tags,
        );
        let mut reference_audio = Vec::with_capacity(ctx.clips.len());
        for clip in &ctx.clips {
            let codes = encode(clip)?;
            let label = clip_label(clip);
            let frames = collate::check_codes(&codes, &label)?;
            if frames == 0 {
                return Err(Error::Audio(format!(
                    "{label}: the clip encodes to no frames"
                )));
            }
            reference_audio.push(AudioItem { label, codes });
        }
        Ok(LongFormPrompt {
            normalized_transcript,
            speaker_tags,
            chunks,
            context: ctx.messages,
            reference_audio,
            history: chunk::ChunkHistory::new(req.generation_chunk_buffer_size),
            next_chunk: 0,
            awaiting_audio: false,
        })
    }

    pub fn reference_audio(&self) -> &[AudioItem] {
        &self.reference_audio
    }

    /// Index of the chunk the next [`Self::next_input`] builds.
    pub fn next_chunk(&self) -> usize {
        self.next_chunk
    }

    /// The messages of the pending call (context + history), for display.
    pub fn messages(&self) -> Vec<Message> {
        let mut m = self.context.clone();
        m.extend_from_slice(self.history.messages());
        m
    }

    /// Builds the next chunk's model input, or None when every chunk is done. The generated
    /// audio of this call must be given to [`Self::push_generated`] before the next one.
    pub fn next_input(&mut self, tok: &TextTokenizer) -> Result<Option<ModelInput>> {
        if self.awaiting_audio {
            return Err(Error::BadRequest(format!(
                "chunk {}: push_generated must be called before the next chunk",
                self.next_chunk - 1
            )));
        }
        let Some(text) = self.chunks.get(self.next_chunk) else {
            return Ok(None);
        };
        self.history.push_user(text);
        self.next_chunk += 1;
        self.awaiting_audio = true;
        let ids = chatml::prompt_ids(tok, &self.messages(), GenerationPrompt::Assistant)?;
        let mut audios = self.reference_audio.clone();
        audios.extend_from_slice(self.history.generated());
        let sp = tok.special();
        ModelInput::collate(
            ids,
            sp.audio_in.0,
            sp.audio_out.0,
            &audios,
            AudioInCodes::Embed,
        )
        .map(Some)
    }

    /// Gives the last call's generated audio as codec frames [8, T] (delay reverted, clipped,
    /// stream BOS/EOS frames removed: see [`generated_to_frames`]; concatenate several
    /// segments first).
    pub fn push_generated(&mut self, frames: Vec<Vec<u32>>) -> Result<()> {
        if !self.awaiting_audio {
            return Err(Error::BadRequest(
                "push_generated called with no chunk in flight".into(),
            ));
        }
        let label = format!("generated:chunk{}", self.next_chunk - 1);
        collate::check_codes(&frames, &label)?;
        self.history.push_generated(AudioItem {
            label,
            codes: frames,
        });
        self.awaiting_audio = false;
        Ok(())
    }
}

fn clip_label(clip: &AudioClip) -> String {
    clip.path.display().to_string()
}

/// Whether the serve engine loads an audio part: from a URL unless it is `""` or
/// `"placeholder"`, else from raw bytes. Parts with neither are silently skipped by the
/// reference, which shifts the audios of later placeholders (kept: spec §12).
pub fn serve_loads(source: &AudioSource) -> bool {
    match source {
        AudioSource::Url(u) => !u.is_empty() && u != "placeholder",
        AudioSource::Raw(_) => true,
        AudioSource::Slot => false,
    }
}

/// The serve engine's `_prepare_inputs`: messages as given, the generation prompt, and the
/// audio parts loaded in order by `load` (only those [`serve_loads`] accepts). Use
/// [`AudioInCodes::Embed`] for a working engine; `DropLikeServeEngine` reproduces the
/// reference's dropped audio-in codes.
pub fn serve_model_input(
    tok: &TextTokenizer,
    messages: &[Message],
    generation_prompt: GenerationPrompt,
    audio_in: AudioInCodes,
    load: &mut dyn FnMut(&AudioSource) -> Result<AudioItem>,
) -> Result<ModelInput> {
    if messages.is_empty() {
        return Err(Error::BadRequest("no messages".into()));
    }
    let ids = chatml::prompt_ids(tok, messages, generation_prompt)?;
    let mut audios = Vec::new();
    for msg in messages {
        for part in &msg.content {
            if let Content::Audio(src) = part {
                if serve_loads(src) {
                    audios.push(load(src)?);
                }
            }
        }
    }
    let sp = tok.special();
    ModelInput::collate(ids, sp.audio_in.0, sp.audio_out.0, &audios, audio_in)
}
