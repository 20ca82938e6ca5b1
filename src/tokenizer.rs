//! Text tokenizer: a wrapper over the `tokenizers` crate loading the Higgs (Llama-3 byte-level
//! BPE) `tokenizer.json`, plus the special-token ids the prompt builder and the sampler need.
//! May use: error. Spec: model.md §3 (special tokens), §9.1 (pieces are encoded one by one).
//!
//! The reference always calls `tokenizer.encode(piece, add_special_tokens=False)`: no BOS is ever
//! added by the tokenizer, and special-token strings inside a piece (`<SE>`, `<|AUDIO|>`, ...)
//! are split out by the added-token matcher, so BPE never merges across them.

use std::path::Path;

use crate::error::{Error, Result};

/// A text-vocabulary id (0..128256 for the released tokenizer).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenId(pub u32);

impl TokenId {
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Every special token the engine uses, looked up by name in the loaded tokenizer (never
/// hard-coded, so a tokenizer with other ids still works).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecialTokens {
    pub begin_of_text: TokenId,
    pub end_of_text: TokenId,
    pub start_header_id: TokenId,
    pub end_header_id: TokenId,
    pub eom_id: TokenId,
    pub eot_id: TokenId,
    pub audio_bos: TokenId,
    pub audio_eos: TokenId,
    pub audio_out_bos: TokenId,
    /// `<|AUDIO|>`: placeholder of an audio-in segment.
    pub audio_in: TokenId,
    /// `<|AUDIO_OUT|>`: placeholder of an audio-out segment, and the text token of audio steps.
    pub audio_out: TokenId,
    pub recipient: TokenId,
    pub scene_desc_start: TokenId,
    pub scene_desc_end: TokenId,
    pub generation_instruction_start: TokenId,
    pub generation_instruction_end: TokenId,
    pub se: TokenId,
    pub se_end: TokenId,
    pub se_s: TokenId,
    pub se_s_end: TokenId,
    pub se_e: TokenId,
    pub se_e_end: TokenId,
}

impl SpecialTokens {
    fn lookup(tok: &tokenizers::Tokenizer) -> Result<Self> {
        let id = |name: &str| -> Result<TokenId> {
            tok.token_to_id(name).map(TokenId).ok_or_else(|| {
                Error::Tokenizer(format!("special token `{name}` is not in the tokenizer"))
            })
        };
        Ok(SpecialTokens {
            begin_of_text: id("<|begin_of_text|>")?,
            end_of_text: id("<|end_of_text|>")?,
            start_header_id: id("<|start_header_id|>")?,
            end_header_id: id("<|end_header_id|>")?,
            eom_id: id("<|eom_id|>")?,
            eot_id: id("<|eot_id|>")?,
            audio_bos: id("<|audio_bos|>")?,
            audio_eos: id("<|audio_eos|>")?,
            audio_out_bos: id("<|audio_out_bos|>")?,
            audio_in: id("<|AUDIO|>")?,
            audio_out: id("<|AUDIO_OUT|>")?,
            recipient: id("<|recipient|>")?,
            scene_desc_start: id("<|scene_desc_start|>")?,
            scene_desc_end: id("<|scene_desc_end|>")?,
            generation_instruction_start: id("<|generation_instruction_start|>")?,
            generation_instruction_end: id("<|generation_instruction_end|>")?,
            se: id("<SE>")?,
            se_end: id("</SE>")?,
            se_s: id("<SE_s>")?,
            se_s_end: id("</SE_s>")?,
            se_e: id("<SE_e>")?,
            se_e_end: id("</SE_e>")?,
        })
    }
}

/// The loaded text tokenizer with its special ids resolved.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialTokens,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.vocab_size())
            .field("special", &self.special)
            .finish()
    }
}

impl TextTokenizer {
    /// Loads a `tokenizer.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))
    }

    /// Parses the JSON text of a `tokenizer.json`.
    pub fn from_bytes(json: &[u8]) -> Result<Self> {
        let inner =
            tokenizers::Tokenizer::from_bytes(json).map_err(|e| Error::Tokenizer(e.to_string()))?;
        let special = SpecialTokens::lookup(&inner)?;
        Ok(TextTokenizer { inner, special })
    }

    pub fn special(&self) -> &SpecialTokens {
        &self.special
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes one piece without adding special tokens (the reference's
    /// `encode(piece, add_special_tokens=False)`). Special-token strings in the piece become
    /// their ids.
    pub fn encode(&self, piece: &str) -> Result<Vec<u32>> {
        if piece.is_empty() {
            return Ok(Vec::new());
        }
        let enc = self
            .inner
            .encode(piece, false)
            .map_err(|e| Error::Tokenizer(format!("encoding {:?}: {e}", preview(piece))))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The first special (control) token whose text occurs in `text`, if any. User-supplied
    /// strings go through `encode`, which turns special-token text into control ids, so the
    /// server refuses such strings instead of letting a client end a turn or open audio.
    pub fn find_control_token(&self, text: &str) -> Option<String> {
        let mut found: Option<(usize, String)> = None;
        for tok in self.inner.get_added_tokens_decoder().values() {
            if !tok.special || tok.content.is_empty() {
                continue;
            }
            if let Some(at) = text.find(tok.content.as_str()) {
                if found.as_ref().is_none_or(|(best, _)| at < *best) {
                    found = Some((at, tok.content.clone()));
                }
            }
        }
        found.map(|(_, t)| t)
    }

    /// Decodes ids to text; special tokens are kept unless `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| Error::Tokenizer(format!("decoding {} ids: {e}", ids.len())))
    }

    /// The id of a token string (plain or special), if the vocabulary has it.
    pub fn token_id(&self, token: &str) -> Option<TokenId> {
        self.inner.token_to_id(token).map(TokenId)
    }

    /// The token string of an id (byte-level BPE form, e.g. `Ġ` for a space).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}

/// First characters of a piece, for error messages.
fn preview(s: &str) -> String {
    s.chars().take(40).collect()
}
