//! Synthetic steps for the reports: `BatchInputs` of a decode step (one row per sequence at a
//! given context length, each row text or audio) or of a prefill chunk (one sequence, a run of
//! text positions), with block tables that give every sequence its own KV blocks.
//! May use: model, kv; anyhow allowed.

use crate::model::{BatchInputs, RowInput};

/// KV block size of the synthetic steps.
pub const BLOCK_SIZE: usize = 16;

/// A step and the KV blocks it needs.
pub struct SyntheticStep {
    pub inputs: BatchInputs,
    pub num_blocks: usize,
}

/// Row `i` of `n` is audio when the audio rows, spread evenly, reach it: `n_audio` of the `n`
/// rows are audio, interleaved with the text rows (as in a serving batch, not sorted).
pub fn is_audio_row(i: usize, n: usize, n_audio: usize) -> bool {
    (i + 1) * n_audio / n.max(1) > i * n_audio / n.max(1)
}

/// Audio row of `n_codebooks` varied codes (below `codebook_size`).
pub fn audio_row(i: usize, n_codebooks: usize, codebook_size: usize) -> RowInput {
    RowInput::Audio {
        codes: (0..n_codebooks)
            .map(|q| ((i * 31 + q * 97) % codebook_size) as u32)
            .collect(),
        out: true,
    }
}

/// One text id below 1000 (any vocabulary has it).
pub fn text_row(i: usize) -> RowInput {
    RowInput::Text(((i * 7919) % 990 + 10) as u32)
}

/// `rows` decode rows, row `i` for sequence `i` at position `ctx` (so it attends over
/// `ctx + 1` keys).
pub fn decode_step(rows: Vec<RowInput>, ctx: usize) -> SyntheticStep {
    let b = rows.len();
    let max_blocks = (ctx + 1).div_ceil(BLOCK_SIZE);
    let block_tables: Vec<i32> = (0..b * max_blocks).map(|i| i as i32).collect();
    let slot_mapping = (0..b)
        .map(|s| {
            (block_tables[s * max_blocks + ctx / BLOCK_SIZE] as usize * BLOCK_SIZE
                + ctx % BLOCK_SIZE) as i32
        })
        .collect();
    let max_ctx = max_blocks * BLOCK_SIZE;
    SyntheticStep {
        inputs: BatchInputs {
            rows,
            positions: vec![ctx as i32; b],
            query_seq: (0..b as u32).collect(),
            slot_mapping,
            block_size: BLOCK_SIZE,
            block_tables,
            max_blocks,
            audio_keys: vec![0; b * max_ctx],
            max_ctx,
        },
        num_blocks: b * max_blocks,
    }
}

/// A prefill chunk of `rows` positions `start..start + rows.len()` of one sequence.
pub fn prefill_chunk(rows: Vec<RowInput>, start: usize) -> SyntheticStep {
    let n = rows.len();
    let end = start + n;
    let max_blocks = end.div_ceil(BLOCK_SIZE).max(1);
    let max_ctx = max_blocks * BLOCK_SIZE;
    SyntheticStep {
        inputs: BatchInputs {
            rows,
            positions: (start..end).map(|p| p as i32).collect(),
            query_seq: vec![0; n],
            slot_mapping: (start..end).map(|p| p as i32).collect(),
            block_size: BLOCK_SIZE,
            block_tables: (0..max_blocks as i32).collect(),
            max_blocks,
            audio_keys: vec![0; max_ctx],
            max_ctx,
        },
        num_blocks: max_blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_rows_are_spread_and_counted() {
        for (n, na) in [(1, 0), (1, 1), (8, 2), (8, 6), (7, 3), (256, 64)] {
            let c = (0..n).filter(|&i| is_audio_row(i, n, na)).count();
            assert_eq!(c, na, "{n} {na}");
        }
    }
}
