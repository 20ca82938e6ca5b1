//! ChatML messages → compressed ids, exactly `dataset/chatml_dataset.py::prepare_chatml_sample`
//! plus the generation prompt both reference drivers append.
//! May use: tokenizer, error. Spec: model.md §9.1; fixtures README rules 1-2.
//!
//! Every header, content part and terminator is its own piece: BPE never merges across them
//! (a space before an audio part stays the lone token `Ġ`).

use crate::error::Result;
use crate::tokenizer::TextTokenizer;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// Where an audio part's audio comes from. The ChatML builder only writes its placeholder; the
/// caller supplies the codes of every audio in placeholder order (see `collate`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioSource {
    /// A file path or URL (`audio_url` in the reference).
    Url(String),
    /// Encoded audio bytes (the reference's base64 `raw_audio`, decoded).
    Raw(Vec<u8>),
    /// No data attached: the CLI's generated-audio turns (`audio_url=""`) and the
    /// voice slots of a system message, whose codes come from the driver's audio list.
    Slot,
}

/// One content part of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Text(String),
    Audio(AudioSource),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub role: Role,
    /// `"{recipient}<|recipient|>"` after the header; assistant messages only.
    pub recipient: Option<String>,
    pub content: Vec<Content>,
}

impl Message {
    /// A message whose content is one string.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            recipient: None,
            content: vec![Content::Text(text.into())],
        }
    }

    /// A message holding one audio part.
    pub fn audio(role: Role, source: AudioSource) -> Self {
        Message {
            role,
            recipient: None,
            content: vec![Content::Audio(source)],
        }
    }
}

/// The compressed ids of `messages` (`prepare_chatml_sample`), without the generation prompt.
pub fn chatml_ids(tok: &TextTokenizer, messages: &[Message]) -> Result<Vec<u32>> {
    let sp = tok.special();
    let mut ids = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let role = msg.role.as_str();
        // `<|begin_of_text|>` belongs to message 0's header piece, whatever its role.
        let header = if i == 0 {
            format!("<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n")
        } else {
            format!("<|start_header_id|>{role}<|end_header_id|>\n\n")
        };
        ids.extend(tok.encode(&header)?);
        if let Some(recipient) = msg.recipient.as_deref().filter(|r| !r.is_empty()) {
            if msg.role != Role::Assistant {
                return Err(crate::Error::BadRequest(format!(
                    "message {i}: a recipient is only allowed on assistant messages"
                )));
            }
            ids.extend(tok.encode(&format!("{recipient}<|recipient|>"))?);
        }
        for part in &msg.content {
            match part {
                Content::Text(text) => ids.extend(tok.encode(text)?),
                Content::Audio(_) => match msg.role {
                    Role::System | Role::User => {
                        ids.extend([sp.audio_bos.0, sp.audio_in.0, sp.audio_eos.0]);
                    }
                    Role::Assistant => {
                        ids.extend([sp.audio_out_bos.0, sp.audio_out.0, sp.audio_eos.0]);
                    }
                },
            }
        }
        let next_is_assistant = messages
            .get(i + 1)
            .is_some_and(|m| m.role == Role::Assistant);
        let end = if msg.role == Role::Assistant && next_is_assistant {
            sp.eom_id
        } else {
            sp.eot_id
        };
        ids.push(end.0);
    }
    Ok(ids)
}

/// How the generation prompt ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GenerationPrompt {
    /// `<|start_header_id|>assistant<|end_header_id|>\n\n`: the model chooses its first token.
    #[default]
    Assistant,
    /// The serve engine's `force_audio_gen`: `<|audio_out_bos|>` follows in the same piece, so
    /// the prefill itself starts the audio.
    ForceAudio,
}

/// The ids appended after the messages.
pub fn generation_prompt_ids(tok: &TextTokenizer, kind: GenerationPrompt) -> Result<Vec<u32>> {
    match kind {
        GenerationPrompt::Assistant => {
            tok.encode("<|start_header_id|>assistant<|end_header_id|>\n\n")
        }
        GenerationPrompt::ForceAudio => {
            tok.encode("<|start_header_id|>assistant<|end_header_id|>\n\n<|audio_out_bos|>")
        }
    }
}

/// Messages + generation prompt.
pub fn prompt_ids(
    tok: &TextTokenizer,
    messages: &[Message],
    kind: GenerationPrompt,
) -> Result<Vec<u32>> {
    let mut ids = chatml_ids(tok, messages)?;
    ids.extend(generation_prompt_ids(tok, kind)?);
    Ok(ids)
}
