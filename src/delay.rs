//! The delay pattern, once (spec: model.md §7, §8.6): codebook q of an audio segment runs q
//! columns late, a stream-BOS column wraps the start and a stream-EOS column the end. Used by
//! prompt collation (wrap + delay), by generation (the forced BOS/EOS cells of each drawn
//! column, `DelayState`) and by the revert back to codec frames (whole, or streamed as columns
//! arrive: `FrameReverter`). Sizes come from the model config (`DelayPattern::of`).
//! May use: `config`.

use crate::config::ModelConfig;

/// The pattern's constants: codebooks per column, the stream BOS/EOS codes, the codebook size
/// (codes >= it are clipped to `codebook_size - 1` on revert, as the reference does).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DelayPattern {
    pub n_codebooks: usize,
    pub bos: u32,
    pub eos: u32,
    pub codebook_size: usize,
}

impl DelayPattern {
    /// The model's pattern.
    pub fn of(cfg: &ModelConfig) -> Self {
        DelayPattern {
            n_codebooks: cfg.n_codebooks,
            bos: cfg.stream_bos,
            eos: cfg.stream_eos,
            codebook_size: cfg.codebook_size,
        }
    }

    /// The released checkpoint's pattern (8 codebooks of 1024, BOS 1024, EOS 1025): what the
    /// prompt builder collates with when it has no model config at hand.
    pub const fn released() -> Self {
        DelayPattern {
            n_codebooks: 8,
            bos: 1024,
            eos: 1025,
            codebook_size: 1024,
        }
    }

    fn max_code(&self) -> u32 {
        self.codebook_size.saturating_sub(1) as u32
    }

    /// Delays codebook q by q columns: [C, L] -> [C, L+C-1]; the q cells opened at the start
    /// of row q hold BOS, the cells past its end hold EOS (`build_delay_pattern_mask`).
    pub fn delay(&self, codes: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let len = codes.first().map_or(0, Vec::len);
        let out_len = len + codes.len().saturating_sub(1);
        codes
            .iter()
            .enumerate()
            .map(|(q, row)| {
                (0..out_len)
                    .map(|j| {
                        if j < q {
                            self.bos
                        } else {
                            row.get(j - q).copied().unwrap_or(self.eos)
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// What collation does to every segment: a BOS column before, an EOS column after (T+2
    /// columns), then the delay: [C, T] -> [C, T+C+1].
    pub fn wrap_and_delay(&self, codes: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let wrapped: Vec<Vec<u32>> = codes
            .iter()
            .map(|row| {
                let mut w = Vec::with_capacity(row.len() + 2);
                w.push(self.bos);
                w.extend_from_slice(row);
                w.push(self.eos);
                w
            })
            .collect();
        self.delay(&wrapped)
    }

    /// Inverse of `delay`: [C, L] -> [C, L-C+1] with `R[q][t] = Y[q][t + q]`. A ragged
    /// (malformed) row reads as EOS rather than panicking.
    pub fn revert(&self, delayed: &[Vec<u32>]) -> Vec<Vec<u32>> {
        let len = delayed.first().map_or(0, Vec::len);
        let out_len = (len + 1).saturating_sub(delayed.len());
        delayed
            .iter()
            .enumerate()
            .map(|(q, row)| {
                (0..out_len)
                    .map(|t| row.get(t + q).copied().unwrap_or(self.eos))
                    .collect()
            })
            .collect()
    }

    /// A generated (delayed) segment as codec frames, as both reference drivers do it:
    /// revert, clip to the codebook, drop the wrapped first and last frame.
    pub fn to_frames(&self, delayed: &[Vec<u32>]) -> Vec<Vec<u32>> {
        self.revert(delayed)
            .into_iter()
            .map(|row| {
                let n = row.len();
                if n < 2 {
                    return Vec::new();
                }
                row[1..n - 1]
                    .iter()
                    .map(|&c| c.min(self.max_code()))
                    .collect()
            })
            .collect()
    }
}

/// The generation side (spec §8.6): a segment starts with an all-BOS column; the next drawn
/// columns keep BOS in the codebooks that have not started yet; once a codebook draws EOS,
/// every codebook up to it is forced to EOS and the remaining ones end one per column, after
/// which the segment ends (`<|audio_eos|>`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DelayState {
    num_delay: usize,
    num_remaining_delays: Option<isize>,
}

impl DelayState {
    /// Applies the forced cells to a drawn column; returns true when it ends the segment.
    pub fn apply(&mut self, p: &DelayPattern, col: &mut [u32]) -> bool {
        let c = p.n_codebooks;
        if self.num_delay + 1 < c {
            for v in col.iter_mut().skip(self.num_delay + 1) {
                *v = p.bos;
            }
            self.num_delay += 1;
        }
        if let Some(r) = self.num_remaining_delays.as_mut() {
            let upto = (c as isize - *r).clamp(0, c as isize) as usize;
            for v in col.iter_mut().take(upto) {
                *v = p.eos;
            }
            *r -= 1;
        } else if let Some(i_eos) = col.iter().position(|&v| v == p.eos) {
            // The reference names it last_eos_idx but takes the FIRST row with EOS (§12).
            for v in col.iter_mut().take(i_eos) {
                *v = p.eos;
            }
            self.num_remaining_delays = Some(c as isize - i_eos as isize - 1);
        }
        let ended = matches!(self.num_remaining_delays, Some(r) if r <= 0);
        if ended {
            *self = DelayState::default();
        }
        ended
    }

    /// A new segment starts (after its all-BOS column).
    pub fn reset(&mut self) {
        *self = DelayState::default();
    }
}

/// Turns streamed delayed columns into codec frames: frame t of a segment is complete when
/// column t + C - 1 arrives; the first (stream BOS) and last (stream EOS) frames are dropped,
/// so one completed frame is held back until the next one proves it is not the last. Equal to
/// `DelayPattern::to_frames` of the whole segment.
#[derive(Clone, Debug)]
pub struct FrameReverter {
    pattern: DelayPattern,
    cols: Vec<Vec<u32>>,
    next_frame: usize,
    held: Option<Vec<u32>>,
}

impl FrameReverter {
    pub fn new(pattern: DelayPattern) -> Self {
        FrameReverter {
            pattern,
            cols: Vec::new(),
            next_frame: 0,
            held: None,
        }
    }

    /// Add one delayed column; returns the frames (`[frame][codebook]`) now known to be final.
    pub fn push(&mut self, col: Vec<u32>) -> Vec<Vec<u32>> {
        let c = self.pattern.n_codebooks;
        self.cols.push(col);
        let mut out = Vec::new();
        while self.next_frame + c <= self.cols.len() {
            let t = self.next_frame;
            let frame: Vec<u32> = (0..c)
                .map(|q| {
                    let v = self.cols[t + q].get(q).copied().unwrap_or(self.pattern.eos);
                    v.min(self.pattern.max_code())
                })
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
        (0..self.pattern.n_codebooks)
            .map(|q| frames.iter().map(|f| f[q]).collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverter_matches_whole_revert() {
        let p = DelayPattern::released();
        for t in [0usize, 1, 2, 5, 13, 200] {
            let codes: Vec<Vec<u32>> = (0..8)
                .map(|c| (0..t).map(|i| ((c * 31 + i * 7) % 1024) as u32).collect())
                .collect();
            let delayed = p.wrap_and_delay(&codes);
            assert_eq!(p.revert(&p.delay(&codes)), codes);
            let mut rev = FrameReverter::new(p);
            let mut got = Vec::new();
            for j in 0..delayed[0].len() {
                got.extend(rev.push(delayed.iter().map(|r| r[j]).collect()));
            }
            rev.end_segment();
            let want = p.to_frames(&delayed);
            assert_eq!(rev.rows(&got), want, "T = {t}");
            assert_eq!(want[0], codes[0]);
        }
    }

    #[test]
    fn generation_state_reproduces_the_collated_layout() {
        // Feeding the columns of a wrapped + delayed segment (after its all-BOS column) through
        // the generation rules leaves them unchanged and ends exactly at the last column.
        let p = DelayPattern {
            n_codebooks: 4,
            bos: 64,
            eos: 65,
            codebook_size: 64,
        };
        let codes: Vec<Vec<u32>> = (0..4)
            .map(|q| (0..6).map(|t| q * 10 + t).collect())
            .collect();
        let d = p.wrap_and_delay(&codes);
        let mut st = DelayState::default();
        let n = d[0].len();
        for j in 1..n {
            let mut col: Vec<u32> = d.iter().map(|r| r[j]).collect();
            let want = col.clone();
            // A model that draws garbage in not-yet-started codebooks still gets BOS there.
            for v in col.iter_mut().skip(j) {
                *v = 3;
            }
            let ended = st.apply(&p, &mut col);
            assert_eq!(col, want, "column {j}");
            assert_eq!(ended, j == n - 1, "column {j}");
        }
    }
}
