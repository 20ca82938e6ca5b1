//! `BatchInputs`: everything one forward step needs, for several sequences at once, each
//! contributing a prefill chunk or a single decode position, in text or audio mode.

/// What enters one decoder position.
#[derive(Clone, Debug, PartialEq)]
pub enum RowInput {
    /// A text token id (embedded from `embed_tokens`).
    Text(u32),
    /// One audio column of `n_codebooks` codes (delayed layout, values < codebook_size + 2).
    /// `out` marks audio-out positions (they produce audio logits); audio-in positions use the
    /// audio FFN too but never produce logits (spec §4.4).
    Audio { codes: Vec<u32>, out: bool },
}

impl RowInput {
    pub fn is_audio(&self) -> bool {
        matches!(self, RowInput::Audio { .. })
    }
}

#[derive(Clone, Debug, Default)]
pub struct BatchInputs {
    pub rows: Vec<RowInput>,
    /// Position of each row in its sequence's KV cache.
    pub positions: Vec<i32>,
    /// Sequence index (into the block tables) of each row.
    pub query_seq: Vec<u32>,
    /// KV slot of each row.
    pub slot_mapping: Vec<i32>,
    pub block_size: usize,
    /// `max_blocks` block ids per sequence (unused entries 0).
    pub block_tables: Vec<i32>,
    pub max_blocks: usize,
    /// Per sequence, `max_ctx` flags: 1 where the cached position is audio (fast-forward layers
    /// hide those keys from text queries).
    pub audio_keys: Vec<u8>,
    pub max_ctx: usize,
}

/// True when `idx` is exactly `0, 1, .., n - 1` (every row, in order).
pub(crate) fn is_every_row(idx: &[u32], n: usize) -> bool {
    idx.len() == n && idx.iter().enumerate().all(|(i, &r)| r as usize == i)
}
