//! Block hashes of what the model sees, for the prefix cache (`kv::prefix`): block i of a
//! sequence is named by SHA-256 chained over blocks 0..=i, each row's text id, or audio codes
//! plus its audio-in/out flag. May use: `kv::prefix`, `model::batch`.
//!
//! Counterpart: vLLM `v1/core/kv_cache_utils.py` (`hash_block_tokens`).

use sha2::{Digest, Sha256};

use crate::kv::prefix::BlockHash;
use crate::model::RowInput;

/// Hash of one block of rows given its parent's hash (None for the first block). A
/// cryptographic hash: a collision would silently give one prompt another's K/V, and it runs
/// once per full block on the host.
pub fn hash_block(parent: Option<BlockHash>, rows: &[RowInput]) -> BlockHash {
    let mut h = Sha256::new();
    h.update(parent.map_or([0u8; 16], |p| p.0.to_le_bytes()));
    h.update((rows.len() as u64).to_le_bytes());
    for r in rows {
        match r {
            RowInput::Text(id) => {
                h.update([0u8]);
                h.update(id.to_le_bytes());
            }
            RowInput::Audio { codes, out } => {
                h.update([1u8, u8::from(*out)]);
                h.update((codes.len() as u32).to_le_bytes());
                for c in codes {
                    h.update(c.to_le_bytes());
                }
            }
        }
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    BlockHash(u128::from_le_bytes(b))
}

/// Extends `hashes` (the chain of the first `hashes.len()` full blocks of `rows`) to every
/// full block of `rows`.
pub fn extend_chain(hashes: &mut Vec<BlockHash>, rows: &[RowInput], block_size: usize) {
    let full = rows.len() / block_size;
    while hashes.len() < full {
        let i = hashes.len();
        let h = hash_block(
            hashes.last().copied(),
            &rows[i * block_size..(i + 1) * block_size],
        );
        hashes.push(h);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depends_on_every_earlier_row() {
        let a = [RowInput::Text(1), RowInput::Text(2)];
        let b = [RowInput::Text(1), RowInput::Text(3)];
        let c = [RowInput::Text(7), RowInput::Text(7)];
        assert_ne!(hash_block(None, &a), hash_block(None, &b));
        let ha = hash_block(Some(hash_block(None, &a)), &c);
        let hb = hash_block(Some(hash_block(None, &b)), &c);
        assert_ne!(ha, hb, "same block after different prefixes");
        let audio = [RowInput::Audio {
            codes: vec![1, 2],
            out: true,
        }];
        let audio_in = [RowInput::Audio {
            codes: vec![1, 2],
            out: false,
        }];
        assert_ne!(hash_block(None, &audio), hash_block(None, &audio_in));
        let mut chain = Vec::new();
        let rows: Vec<RowInput> = (0..7).map(RowInput::Text).collect();
        extend_chain(&mut chain, &rows, 3);
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], hash_block(Some(chain[0]), &rows[3..6]));
    }
}
