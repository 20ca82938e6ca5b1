//! The semantic branch of encode (`HAT.get_regress_target` + `HAT.encoder_semantic`):
//! 24 -> 16 kHz (torchaudio's sinc, exact), zero-pad 160 samples each side, HuBERT with all
//! hidden states, their mean, keep every `semantic_downsample_factor`-th frame starting at 0
//! ("step_down"), then the semantic encoder: conv k3 (no bias), two blocks of [two ELU residual
//! units (k3 conv, 1x1 conv, both without bias), conv k3 with bias]. spec: codec.md §5, §3.5.
//! May use: error, weights, audio, codec::{config, layers, hubert}.

use super::config::CodecConfig;
use super::hubert::{transpose, Hubert};
use super::layers::conv1d_gemm;
use crate::audio::resample::resample_24k_to_16k;
use crate::error::{Error, Result};
use crate::weights::WeightMap;
use rayon::prelude::*;

type Slice<'a> = &'a [f32];

/// Zero padding added on each side of the 16 kHz signal before HuBERT (`F.pad(x, (160, 160))`).
pub const HUBERT_PAD: usize = 160;

/// Everything the semantic branch computes before `encoder_semantic`.
#[derive(Clone, Debug)]
pub struct SemanticTarget {
    /// HuBERT input: the 16 kHz signal padded by 160 each side.
    pub hubert_input: Vec<f32>,
    /// All HuBERT hidden states (embedding output + one per layer), each `[frames_50hz, hidden]`.
    pub hidden_states: Vec<Vec<f32>>,
    /// HuBERT frames (50 Hz).
    pub frames_50hz: usize,
    /// Mean of the hidden states `[frames_50hz, hidden]`.
    pub mean: Vec<f32>,
    /// Every `downsample`-th row of `mean`, `[frames, hidden]`.
    pub target: Vec<f32>,
    /// Semantic frames at the codec frame rate: ceil(frames_50hz / downsample).
    pub frames: usize,
    pub hidden: usize,
}

/// `get_regress_target`: the semantic target of a 24 kHz clip.
pub fn semantic_target(
    cfg: &CodecConfig,
    hubert: &Hubert,
    wav_24k: &[f32],
) -> Result<SemanticTarget> {
    if cfg.sample_rate != 24_000 {
        return Err(Error::Unsupported(format!(
            "codec sample rate {} Hz (the semantic resampler is 24 -> 16 kHz)",
            cfg.sample_rate
        )));
    }
    let factor = cfg.semantic_downsample_factor().max(1);
    let x16 = resample_24k_to_16k(wav_24k);
    let mut hubert_input = vec![0f32; x16.len() + 2 * HUBERT_PAD];
    hubert_input[HUBERT_PAD..HUBERT_PAD + x16.len()].copy_from_slice(&x16);
    let hidden_states = hubert.forward(&hubert_input)?;
    let h = hubert.cfg.hidden_size;
    let frames_50hz = hidden_states.first().map_or(0, |s| s.len() / h);
    // torch.stack(...).mean(1): sum over states in order, then divide by their count.
    let n_states = hidden_states.len() as f32;
    let mut mean = vec![0f32; frames_50hz * h];
    mean.par_chunks_mut(h.max(1))
        .enumerate()
        .for_each(|(f, row)| {
            for s in &hidden_states {
                for (m, v) in row.iter_mut().zip(&s[f * h..(f + 1) * h]) {
                    *m += v;
                }
            }
            row.iter_mut().for_each(|m| *m /= n_states);
        });
    let target: Vec<f32> = mean
        .chunks_exact(h.max(1))
        .step_by(factor)
        .flatten()
        .copied()
        .collect();
    let frames = frames_50hz.div_ceil(factor);
    Ok(SemanticTarget {
        hubert_input,
        hidden_states,
        frames_50hz,
        mean,
        target,
        frames,
        hidden: h,
    })
}

/// `SEM.ResidualUnit`: x + conv2(ELU(conv1(ELU(x)))), no biases.
struct ResidualUnit<'a> {
    conv1: Slice<'a>,
    conv2: Slice<'a>,
}

/// `SEM.Encoder` with its default arguments (strides 1, kernel 3, dilations 1).
pub struct SemanticEncoder<'a> {
    c_in: usize,
    c: usize,
    conv: Slice<'a>,
    blocks: Vec<(Vec<ResidualUnit<'a>>, Slice<'a>, Slice<'a>)>,
}

impl<'a> SemanticEncoder<'a> {
    /// Borrow `encoder_semantic.*` from `w`.
    pub fn new(cfg: &CodecConfig, w: &'a WeightMap) -> Result<Self> {
        let (ci, c) = (cfg.semantic_dim, cfg.encoder_semantic_dim);
        let get = |key: &str, shape: &[usize]| -> Result<Slice<'a>> {
            Ok(w.get_shaped(&format!("encoder_semantic.{key}"), shape)?
                .data
                .as_slice())
        };
        let conv = get("conv.conv.weight", &[c, ci, 3])?;
        let mut blocks = Vec::new();
        for b in 0..2 {
            let units = (0..2)
                .map(|r| {
                    Ok(ResidualUnit {
                        conv1: get(
                            &format!("conv_blocks.{b}.res_units.{r}.conv1.conv.weight"),
                            &[c, c, 3],
                        )?,
                        conv2: get(
                            &format!("conv_blocks.{b}.res_units.{r}.conv2.weight"),
                            &[c, c, 1],
                        )?,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            blocks.push((
                units,
                get(&format!("conv_blocks.{b}.conv.conv.weight"), &[c, c, 3])?,
                get(&format!("conv_blocks.{b}.conv.conv.bias"), &[c])?,
            ));
        }
        Ok(SemanticEncoder {
            c_in: ci,
            c,
            conv,
            blocks,
        })
    }

    /// Output width (encoder_semantic_dim).
    pub fn out_channels(&self) -> usize {
        self.c
    }

    /// `[semantic_dim, t]` -> `[encoder_semantic_dim, t]` (stride 1 throughout).
    pub fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let c = self.c;
        let mut h = conv1d_gemm(x, self.c_in, t, self.conv, c, 3, None, 1, 1, 1);
        for (units, w, b) in &self.blocks {
            for u in units {
                let mut y = h.clone();
                elu_inplace(&mut y);
                let mut y = conv1d_gemm(&y, c, t, u.conv1, c, 3, None, 1, 1, 1);
                elu_inplace(&mut y);
                let y = conv1d_gemm(&y, c, t, u.conv2, c, 1, None, 1, 0, 1);
                for (a, v) in h.iter_mut().zip(&y) {
                    *a += v;
                }
            }
            h = conv1d_gemm(&h, c, t, w, c, 3, Some(b), 1, 1, 1);
        }
        h
    }

    /// The semantic latent `[encoder_semantic_dim, frames]` of a target `[frames, hidden]`.
    pub fn encode_target(&self, target: &SemanticTarget) -> Vec<f32> {
        let x = transpose(&target.target, target.frames, target.hidden);
        self.forward(&x, target.frames)
    }
}

/// ELU with alpha 1: x for x > 0, exp(x) - 1 otherwise.
fn elu_inplace(x: &mut [f32]) {
    x.par_chunks_mut(4096).for_each(|c| {
        for v in c {
            if *v <= 0.0 {
                *v = v.exp_m1();
            }
        }
    });
}
