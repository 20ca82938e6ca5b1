//! Encode: 24 kHz waveform -> codes `[n_q][T]` (`HAT._xcodec_encode`, spec: codec.md §2.2,
//! §2.3, §6.1, §6.3). The semantic target and its encoder run first, then the acoustic
//! encoder; when the two frame counts differ the acoustic encoder runs AGAIN on the input
//! zero-padded by 160·semantic_downsample_factor (= 320) samples at both ends, and both are cut
//! to the shorter length. Then [acoustic | semantic] -> `fc_prior` -> RVQ.
//! Every intermediate is exposed through [`EncodeTrace`] for the fixture tests and
//! `check-reference`.
//! May use: error, weights, audio, codec::*.

use super::config::CodecConfig;
use super::encoder::{acoustic_frames, AcousticEncoder};
use super::hubert::{linear, transpose, Hubert, HubertConfig};
use super::model::AudioTokenizer;
use super::rvq::Rvq;
use super::semantic::{semantic_target, SemanticEncoder, SemanticTarget, HUBERT_PAD};
use super::weights::HUBERT_PREFIX;
use crate::audio::decode::read_audio;
use crate::audio::resample::resample;
use crate::error::{Error, Result};
use crate::weights::WeightMap;
use std::path::Path;

/// Every tensor of one encode call, in the reference's layouts where it has one.
#[derive(Clone, Debug)]
pub struct EncodeTrace {
    /// HuBERT input, hidden states, their mean and the step-down target.
    pub semantic: SemanticTarget,
    /// `encoder_semantic` output `[encoder_semantic_dim, semantic.frames]`.
    pub e_semantic: Vec<f32>,
    /// First acoustic encoder call on the unpadded input: `[D, frames]` and its frame count.
    pub e_acoustic_call0: (Vec<f32>, usize),
    /// Second call on the input padded by 320 each side, when the counts differed.
    pub e_acoustic_call1: Option<(Vec<f32>, usize)>,
    /// Final frame count T.
    pub frames: usize,
    /// `fc_prior` output, time-major `[T, quantizer_dim]` (the reference's `[1, T, Q]`).
    pub fc_prior_out: Vec<f32>,
    /// RVQ forward output `[quantizer_dim, T]`.
    pub quantized_sum: Vec<f32>,
    /// Codes `[n_q][T]`.
    pub codes: Vec<Vec<u32>>,
}

/// The encode-side modules, borrowing the weights of an [`AudioTokenizer`] (or of any folded
/// weight map), so building one per call copies nothing.
pub struct CodecEncoder<'a> {
    cfg: &'a CodecConfig,
    acoustic: AcousticEncoder<'a>,
    hubert: Hubert<'a>,
    semantic: SemanticEncoder<'a>,
    fc_prior_w: &'a [f32],
    fc_prior_b: &'a [f32],
    rvq: &'a Rvq,
}

impl<'a> CodecEncoder<'a> {
    /// `w` holds `encoder.*`, `encoder_semantic.*`, `fc_prior.*` and HuBERT under
    /// `semantic_model.*`, with weight norm folded.
    pub fn new(
        cfg: &'a CodecConfig,
        w: &'a WeightMap,
        hubert_cfg: HubertConfig,
        rvq: &'a Rvq,
    ) -> Result<Self> {
        let acoustic = AcousticEncoder::new(cfg, w)?;
        let hubert = Hubert::new(hubert_cfg, w, HUBERT_PREFIX)?;
        if hubert.cfg.hidden_size != cfg.semantic_dim {
            return Err(Error::checkpoint(
                w.source(),
                format!("{HUBERT_PREFIX}encoder.layer_norm.weight"),
                format!(
                    "HuBERT width {} but the codec expects semantic_dim {}",
                    hubert.cfg.hidden_size, cfg.semantic_dim
                ),
            ));
        }
        let semantic = SemanticEncoder::new(cfg, w)?;
        let fused = acoustic.out_channels() + semantic.out_channels();
        let q = rvq.dim;
        Ok(CodecEncoder {
            cfg,
            acoustic,
            hubert,
            semantic,
            fc_prior_w: w
                .get_shaped("fc_prior.weight", &[q, fused])?
                .data
                .as_slice(),
            fc_prior_b: w.get_shaped("fc_prior.bias", &[q])?.data.as_slice(),
            rvq,
        })
    }

    /// Fewest 24 kHz samples the reference can encode (632 for the released ratios): below it
    /// the unpadded acoustic pass or HuBERT has no output frame.
    pub fn min_samples(&self) -> usize {
        (1..=4 * self.cfg.hop_length() + 1000)
            .find(|&l| self.frames_ok(l))
            .unwrap_or(usize::MAX)
    }

    fn frames_ok(&self, l: usize) -> bool {
        let n16 = (2 * l).div_ceil(3) + 2 * HUBERT_PAD;
        acoustic_frames(self.cfg, l) > 0 && self.hubert.cfg.num_frames(n16) > 0
    }

    /// Run the whole encode and keep every intermediate.
    pub fn trace(&self, wav: &[f32]) -> Result<EncodeTrace> {
        if !self.frames_ok(wav.len()) {
            return Err(Error::Audio(format!(
                "audio of {} samples is too short to encode: at least {} samples at {} Hz are needed",
                wav.len(),
                self.min_samples(),
                self.cfg.sample_rate
            )));
        }
        if let Some(i) = wav.iter().position(|v| !v.is_finite()) {
            return Err(Error::Audio(format!("sample {i} is not finite")));
        }
        let semantic = semantic_target(self.cfg, &self.hubert, wav)?;
        let e_semantic = self.semantic.encode_target(&semantic);
        let call0 = self.acoustic.forward(wav)?;
        let mut call1 = None;
        let (mut e_acoustic, mut t_ac) = call0.clone();
        if t_ac != semantic.frames {
            // The reference pads by 160 · semantic_downsample_factor, not by hop/2 (spec §2.2).
            let pad = HUBERT_PAD * self.cfg.semantic_downsample_factor();
            let mut padded = vec![0f32; wav.len() + 2 * pad];
            padded[pad..pad + wav.len()].copy_from_slice(wav);
            let r = self.acoustic.forward(&padded)?;
            (e_acoustic, t_ac) = r.clone();
            call1 = Some(r);
        }
        let frames = t_ac.min(semantic.frames);
        let (d, es) = (self.acoustic.out_channels(), self.semantic.out_channels());
        // Concatenate [acoustic | semantic] per frame, cut to `frames`: time-major [T, D+Es].
        let mut fused = Vec::with_capacity(frames * (d + es));
        for t in 0..frames {
            fused.extend((0..d).map(|c| e_acoustic[c * t_ac + t]));
            fused.extend((0..es).map(|c| e_semantic[c * semantic.frames + t]));
        }
        let fc_prior_out = linear(
            &fused,
            frames,
            d + es,
            self.fc_prior_w,
            Some(self.fc_prior_b),
            self.rvq.dim,
        );
        let latent = transpose(&fc_prior_out, frames, self.rvq.dim);
        let (codes, quantized_sum) = self.rvq.encode_with_sum(&latent, frames, self.rvq.n_q())?;
        Ok(EncodeTrace {
            semantic,
            e_semantic,
            e_acoustic_call0: call0,
            e_acoustic_call1: call1,
            frames,
            fc_prior_out,
            quantized_sum,
            codes,
        })
    }
}

impl AudioTokenizer {
    /// HuBERT's config: `hubert/config.json` next to the codec weights when present (as in the
    /// fixtures), else read off the tensor shapes (hubert-base for the released `model.pth`).
    pub fn hubert_config(&self) -> Result<HubertConfig> {
        let file = self
            .weights
            .source()
            .parent()
            .map(|d| d.join("hubert").join("config.json"));
        match file {
            Some(f) if f.is_file() => HubertConfig::from_file(&f),
            _ => HubertConfig::infer(&self.weights, HUBERT_PREFIX),
        }
    }

    /// The encode-side modules over this tokenizer's weights.
    pub fn encoder(&self) -> Result<CodecEncoder<'_>> {
        CodecEncoder::new(
            &self.config,
            &self.weights,
            self.hubert_config()?,
            &self.rvq,
        )
    }

    /// Codes `[n_q][T]` of a 24 kHz mono clip, T = floor((L + 841) / 960) (spec §2.2).
    pub fn encode(&self, wav_24k: &[f32]) -> Result<Vec<Vec<u32>>> {
        Ok(self.encode_trace(wav_24k)?.codes)
    }

    /// [`AudioTokenizer::encode`] with every intermediate tensor.
    pub fn encode_trace(&self, wav_24k: &[f32]) -> Result<EncodeTrace> {
        self.encoder()?.trace(wav_24k)
    }

    /// Read an audio file (WAV, MP3, FLAC, Ogg Vorbis or AAC, any accepted rate, channels
    /// averaged; `audio::decode` limits), resample to the codec rate, and encode.
    pub fn encode_file(&self, path: &Path) -> Result<Vec<Vec<u32>>> {
        let wav = read_audio(path)?;
        let rate = self.config.sample_rate as u32;
        let samples = resample(&wav.samples, wav.sample_rate_hz, rate)?;
        self.encode(&samples).map_err(|e| match e {
            Error::Audio(m) => Error::Audio(format!("{}: {m}", path.display())),
            other => other,
        })
    }
}
