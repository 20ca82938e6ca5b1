//! Audio side inputs of one forward call: the delay pattern (build and revert), the assignment
//! of audios to placeholders, the wrapped+delayed segments of each kind, and the expanded
//! sequence the decoder runs on (which position holds which text id or audio column).
//! May use: tokenizer, error. Spec: model.md §4.1, §4.4 (expansion), §7 (delay pattern); the
//! reference is `HiggsAudioSampleCollator.__call__` and `merge_input_ids_with_audio_features`.

use crate::delay::DelayPattern;
use crate::error::{Error, Result};

/// The prompt builder collates with the released layout (it sees tokens, not the model
/// config); the engine delays prompt audio with the model's own pattern (`delay::DelayPattern`).
const AUDIO_STREAM_BOS: u32 = DelayPattern::released().bos;
const AUDIO_STREAM_EOS: u32 = DelayPattern::released().eos;
const NUM_CODEBOOKS: usize = DelayPattern::released().n_codebooks;

fn pattern(bos: u32, eos: u32) -> DelayPattern {
    DelayPattern {
        bos,
        eos,
        ..DelayPattern::released()
    }
}

/// [`DelayPattern::delay`] with the given BOS/EOS (`build_delay_pattern_mask`).
pub fn build_delay_pattern(codes: &[Vec<u32>], bos: u32, eos: u32) -> Vec<Vec<u32>> {
    pattern(bos, eos).delay(codes)
}

/// [`DelayPattern::revert`] (`revert_delay_pattern`).
pub fn revert_delay_pattern(delayed: &[Vec<u32>]) -> Vec<Vec<u32>> {
    DelayPattern::released().revert(delayed)
}

/// [`DelayPattern::wrap_and_delay`]: [C, T] -> [C, T+C+1].
pub fn wrap_and_delay(codes: &[Vec<u32>], bos: u32, eos: u32) -> Vec<Vec<u32>> {
    pattern(bos, eos).wrap_and_delay(codes)
}

/// [`DelayPattern::to_frames`] of the released pattern.
pub fn generated_to_frames(delayed: &[Vec<u32>]) -> Vec<Vec<u32>> {
    DelayPattern::released().to_frames(delayed)
}

/// Checks a code matrix is C rows of equal length with codes below 1024.
pub fn check_codes(codes: &[Vec<u32>], what: &str) -> Result<usize> {
    if codes.len() != NUM_CODEBOOKS {
        return Err(Error::BadRequest(format!(
            "{what}: expected {NUM_CODEBOOKS} codebook rows, got {}",
            codes.len()
        )));
    }
    let frames = codes[0].len();
    for (q, row) in codes.iter().enumerate() {
        if row.len() != frames {
            return Err(Error::BadRequest(format!(
                "{what}: codebook {q} has {} frames, codebook 0 has {frames}",
                row.len()
            )));
        }
        if let Some(&c) = row.iter().find(|&&c| c >= AUDIO_STREAM_BOS) {
            return Err(Error::BadRequest(format!(
                "{what}: codebook {q} holds code {c} (must be < 1024)"
            )));
        }
    }
    Ok(frames)
}

/// One audio of the list handed to the collator: its codec frames [C, T] and a label saying
/// where it came from (`voice_prompts/NAME.wav`, `generated:chunkK`, ...), for diagnostics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioItem {
    pub label: String,
    pub codes: Vec<Vec<u32>>,
}

impl AudioItem {
    pub fn frames(&self) -> usize {
        self.codes.first().map_or(0, Vec::len)
    }
}

/// Which placeholder an audio fills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AudioKind {
    /// `<|AUDIO|>` in a system/user message: reference audio, no logits.
    In,
    /// `<|AUDIO_OUT|>` in an assistant message: gets audio logits.
    Out,
}

/// One placeholder of the compressed ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placeholder {
    /// Position in the compressed ids.
    pub position: usize,
    pub kind: AudioKind,
    /// Order among all placeholders = index into the audio list.
    pub audio_index: usize,
    /// Order among placeholders of its kind = segment index in `audio_in` / `audio_out`.
    pub kind_index: usize,
    /// Whether codes were attached (false only for serve-engine-style dropped audio-in).
    pub filled: bool,
}

/// One segment: its codec codes and their wrapped and delayed layout, [C, T+C+1] (the
/// collator's view, checked against the reference; the engine delays `codes` itself, once).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    pub label: String,
    /// Codec frames T before wrapping.
    pub frames: usize,
    /// The codec codes, [C, T].
    pub codes: Vec<Vec<u32>>,
    /// C rows of T+C+1 columns.
    pub columns: Vec<Vec<u32>>,
}

impl Segment {
    pub fn n_columns(&self) -> usize {
        self.columns.first().map_or(0, Vec::len)
    }
}

/// Whether `<|AUDIO|>` placeholders receive their codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AudioInCodes {
    /// Audio-in codes are embedded (`examples/generation.py`, `encode_audio_in_tokens=true`).
    #[default]
    Embed,
    /// The serve engine's `return_audio_in_tokens=False`: audio-in placeholders stay one
    /// unfilled position (a reference defect; spec §12). Only for reproducing the reference.
    DropLikeServeEngine,
}

/// What the model is given for one generation call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelInput {
    /// Compressed ids: one `<|AUDIO|>` / `<|AUDIO_OUT|>` per audio.
    pub ids: Vec<u32>,
    pub placeholders: Vec<Placeholder>,
    /// Audio-in segments in order; `None` when dropped ([`AudioInCodes::DropLikeServeEngine`]).
    pub audio_in: Option<Vec<Segment>>,
    pub audio_out: Vec<Segment>,
}

/// Kind of one run of the expanded sequence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunKind {
    /// Holds `ids[source_start .. source_start + length]`.
    Text { source_start: usize },
    /// Holds every column of segment `segment` of that kind; replaces the placeholder at
    /// `source_position`.
    Audio {
        kind: AudioKind,
        segment: usize,
        source_position: usize,
    },
    /// A placeholder without codes: one position, zero embedding, attention mask 0.
    Unfilled { source_position: usize },
}

/// Consecutive positions of the expanded sequence with one origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    pub kind: RunKind,
    pub start: usize,
    pub length: usize,
}

impl ModelInput {
    /// Collates: finds the placeholders of `ids`, gives placeholder j audio j of `audios`, and
    /// wraps+delays each segment. Fails when there are fewer audios than placeholders (the
    /// reference collator raises there too); extra audios are ignored.
    pub fn collate(
        ids: Vec<u32>,
        audio_in_token: u32,
        audio_out_token: u32,
        audios: &[AudioItem],
        audio_in_codes: AudioInCodes,
    ) -> Result<Self> {
        let mut placeholders = Vec::new();
        let mut audio_in = Vec::new();
        let mut audio_out = Vec::new();
        let (mut n_in, mut n_out) = (0usize, 0usize);
        for (position, &id) in ids.iter().enumerate() {
            let kind = if id == audio_in_token {
                AudioKind::In
            } else if id == audio_out_token {
                AudioKind::Out
            } else {
                continue;
            };
            let audio_index = placeholders.len();
            let audio = audios.get(audio_index).ok_or_else(|| {
                Error::BadRequest(format!(
                    "the prompt has an audio placeholder #{audio_index} at position {position} but only {} audios were given",
                    audios.len()
                ))
            })?;
            let kind_index = match kind {
                AudioKind::In => n_in,
                AudioKind::Out => n_out,
            };
            let filled = kind == AudioKind::Out || audio_in_codes == AudioInCodes::Embed;
            if filled {
                let frames = check_codes(&audio.codes, &audio.label)?;
                let seg = Segment {
                    label: audio.label.clone(),
                    frames,
                    codes: audio.codes.clone(),
                    columns: wrap_and_delay(&audio.codes, AUDIO_STREAM_BOS, AUDIO_STREAM_EOS),
                };
                match kind {
                    AudioKind::In => audio_in.push(seg),
                    AudioKind::Out => audio_out.push(seg),
                }
            }
            match kind {
                AudioKind::In => n_in += 1,
                AudioKind::Out => n_out += 1,
            }
            placeholders.push(Placeholder {
                position,
                kind,
                audio_index,
                kind_index,
                filled,
            });
        }
        let audio_in = match audio_in_codes {
            AudioInCodes::Embed => Some(audio_in),
            AudioInCodes::DropLikeServeEngine => None,
        };
        Ok(ModelInput {
            ids,
            placeholders,
            audio_in,
            audio_out,
        })
    }

    /// The segments of one kind (empty for dropped audio-in).
    pub fn segments(&self, kind: AudioKind) -> &[Segment] {
        match kind {
            AudioKind::In => self.audio_in.as_deref().unwrap_or(&[]),
            AudioKind::Out => &self.audio_out,
        }
    }

    /// The [C, N] matrix of one kind's segments side by side, and each segment's first column
    /// (`audio_in_ids` / `audio_in_ids_start`). Empty rows when there are none.
    pub fn concat(&self, kind: AudioKind) -> (Vec<Vec<u32>>, Vec<usize>) {
        let segs = self.segments(kind);
        if segs.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut rows = vec![Vec::new(); NUM_CODEBOOKS];
        let mut starts = Vec::with_capacity(segs.len());
        for seg in segs {
            starts.push(rows[0].len());
            for (row, src) in rows.iter_mut().zip(&seg.columns) {
                row.extend_from_slice(src);
            }
        }
        (rows, starts)
    }

    /// The expanded sequence as runs: every filled placeholder is replaced by all columns of
    /// its segment, an unfilled one stays one position, every other id keeps one position.
    pub fn expanded_runs(&self) -> Vec<Run> {
        let mut runs = Vec::new();
        let mut pos = 0usize;
        let mut text_start = 0usize;
        let flush_text = |runs: &mut Vec<Run>, pos: &mut usize, from: usize, to: usize| {
            if to > from {
                runs.push(Run {
                    kind: RunKind::Text { source_start: from },
                    start: *pos,
                    length: to - from,
                });
                *pos += to - from;
            }
        };
        for ph in &self.placeholders {
            flush_text(&mut runs, &mut pos, text_start, ph.position);
            let (kind, length) = if ph.filled {
                // `collate` pushes one segment per filled placeholder, in kind order.
                let cols = self
                    .segments(ph.kind)
                    .get(ph.kind_index)
                    .map_or(0, Segment::n_columns);
                (
                    RunKind::Audio {
                        kind: ph.kind,
                        segment: ph.kind_index,
                        source_position: ph.position,
                    },
                    cols,
                )
            } else {
                (
                    RunKind::Unfilled {
                        source_position: ph.position,
                    },
                    1,
                )
            };
            runs.push(Run {
                kind,
                start: pos,
                length,
            });
            pos += length;
            text_start = ph.position + 1;
        }
        flush_text(&mut runs, &mut pos, text_start, self.ids.len());
        runs
    }

    /// Length P of the expanded sequence (= KV-cache slots of the prefill).
    pub fn expanded_len(&self) -> usize {
        self.expanded_runs().iter().map(|r| r.length).sum()
    }

    /// Rotary position of every expanded position: `cumsum(attention_mask) − 1`, with masked
    /// positions set to 1 (the reference's `masked_fill_`), so it is `0..P` unless an unfilled
    /// placeholder is present.
    pub fn position_ids(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut seen = 0usize;
        for run in self.expanded_runs() {
            for _ in 0..run.length {
                if let RunKind::Unfilled { .. } = run.kind {
                    out.push(1);
                } else {
                    out.push(seen);
                    seen += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: u32 = AUDIO_STREAM_BOS;
    const E: u32 = AUDIO_STREAM_EOS;

    /// Spec §7.3: 3 codebooks, 4 frames (a = 10.., b = 20.., c = 30..).
    #[test]
    fn delay_pattern_worked_example() {
        let codes = vec![
            vec![10, 11, 12, 13],
            vec![20, 21, 22, 23],
            vec![30, 31, 32, 33],
        ];
        let y = wrap_and_delay(&codes, B, E);
        assert_eq!(y[0], vec![B, 10, 11, 12, 13, E, E, E]);
        assert_eq!(y[1], vec![B, B, 20, 21, 22, 23, E, E]);
        assert_eq!(y[2], vec![B, B, B, 30, 31, 32, 33, E]);
        let r = revert_delay_pattern(&y);
        assert_eq!(r[0], vec![B, 10, 11, 12, 13, E]);
        assert_eq!(r[1], vec![B, 20, 21, 22, 23, E]);
        assert_eq!(r[2], vec![B, 30, 31, 32, 33, E]);
        assert_eq!(generated_to_frames(&y), codes);
    }

    #[test]
    fn delay_pattern_shapes() {
        let codes: Vec<Vec<u32>> = (0..8)
            .map(|q| (0..5).map(|t| q * 10 + t).collect())
            .collect();
        let y = wrap_and_delay(&codes, B, E);
        assert_eq!(y.len(), 8);
        assert!(y.iter().all(|r| r.len() == 5 + 9));
        assert!(y.iter().all(|r| r[0] == B && r[13] == E));
        assert_eq!(build_delay_pattern(&[], B, E), Vec::<Vec<u32>>::new());
        assert_eq!(revert_delay_pattern(&y).len(), 8);
        assert_eq!(revert_delay_pattern(&y)[7].len(), 7);
    }

    #[test]
    fn generated_codes_are_clipped() {
        let mut y = wrap_and_delay(&[vec![5, 6], vec![7, 8]], B, E);
        y[0][2] = E; // a stray EOS sampled inside the segment is clipped to 1023
        assert_eq!(generated_to_frames(&y), vec![vec![5, 1023], vec![7, 8]]);
    }

    fn item(label: &str, frames: usize) -> AudioItem {
        AudioItem {
            label: label.into(),
            codes: (0..8)
                .map(|q| (0..frames as u32).map(|t| q + t).collect())
                .collect(),
        }
    }

    #[test]
    fn collate_assigns_in_order_and_expands() {
        // ids: 1 IN 2 OUT 3 with IN = 100, OUT = 101
        let ids = vec![1, 100, 2, 101, 3];
        let audios = [item("a", 3), item("b", 5)];
        let mi = ModelInput::collate(ids.clone(), 100, 101, &audios, AudioInCodes::Embed).unwrap();
        assert_eq!(mi.placeholders.len(), 2);
        assert_eq!(mi.segments(AudioKind::In)[0].label, "a");
        assert_eq!(mi.segments(AudioKind::Out)[0].n_columns(), 14);
        let runs = mi.expanded_runs();
        assert_eq!(runs.len(), 5);
        assert_eq!(runs[1].start, 1);
        assert_eq!(runs[1].length, 12);
        assert_eq!(
            runs[2],
            Run {
                kind: RunKind::Text { source_start: 2 },
                start: 13,
                length: 1
            }
        );
        assert_eq!(mi.expanded_len(), 5 - 2 + 12 + 14);
        assert_eq!(
            mi.position_ids(),
            (0..mi.expanded_len()).collect::<Vec<_>>()
        );

        let dropped = ModelInput::collate(
            ids.clone(),
            100,
            101,
            &audios,
            AudioInCodes::DropLikeServeEngine,
        )
        .unwrap();
        assert!(dropped.audio_in.is_none());
        assert_eq!(dropped.position_ids()[..4], [0, 1, 1, 2]);

        let err = ModelInput::collate(ids, 100, 101, &audios[..1], AudioInCodes::Embed);
        assert!(matches!(err, Err(Error::BadRequest(_))));
    }
}
