//! `CodecConfig`: the codec's `config.json` (the `HiggsAudioTokenizer` constructor kwargs) plus
//! the four widths that the reference `__init__` hard-codes, and the values derived from them
//! (hop 960, 25 frames/s, quantizer width D + 768). spec: codec.md §1, §6.4.
//! May use: error.

use crate::error::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// Caps on config values, far above the released codec (5 blocks, hop 960, widths <= 2048,
/// 1024 bins, 8 codebooks, 24 kHz): derived sizes cannot overflow, and a typo is refused at load.
const MAX_BLOCKS: usize = 16;
const MAX_HOP: usize = 1 << 16;
const MAX_WIDTH: usize = 1 << 16;
const MAX_BINS: usize = 1 << 20;
const MAX_CODEBOOKS: usize = 64;
const MAX_SAMPLE_RATE: usize = 384_000;

/// Raw `config.json`. Unknown keys (`_comment`, `_non_constructor_keys`, ...) are ignored.
#[derive(Clone, Debug, Deserialize)]
struct RawConfig {
    #[serde(default = "default_n_filters")]
    n_filters: usize,
    #[serde(rename = "D", default = "default_d")]
    d: usize,
    #[serde(default = "default_bandwidths")]
    target_bandwidths: Vec<f64>,
    #[serde(default = "default_ratios")]
    ratios: Vec<usize>,
    #[serde(default = "default_sample_rate")]
    sample_rate: usize,
    #[serde(default = "default_bins")]
    bins: usize,
    #[serde(default = "default_n_q")]
    n_q: usize,
    #[serde(default = "default_codebook_dim")]
    codebook_dim: usize,
    // The reference spells it "techer".
    #[serde(default = "default_teacher")]
    semantic_techer: String,
    #[serde(default = "default_encoder_d_model")]
    encoder_d_model: usize,
    #[serde(default = "default_decoder_channels")]
    decoder_channels: usize,
    #[serde(default = "default_semantic_dim")]
    semantic_dim: usize,
    #[serde(default = "default_semantic_dim")]
    encoder_semantic_dim: usize,
}

fn default_n_filters() -> usize {
    32
}
fn default_d() -> usize {
    256
}
fn default_bandwidths() -> Vec<f64> {
    vec![0.5, 1.0, 1.5, 2.0, 4.0]
}
fn default_ratios() -> Vec<usize> {
    vec![8, 5, 4, 2, 3]
}
fn default_sample_rate() -> usize {
    24000
}
fn default_bins() -> usize {
    1024
}
fn default_n_q() -> usize {
    8
}
fn default_codebook_dim() -> usize {
    64
}
fn default_teacher() -> String {
    "hubert_base_general".to_string()
}
fn default_encoder_d_model() -> usize {
    64
}
fn default_decoder_channels() -> usize {
    1024
}
fn default_semantic_dim() -> usize {
    768
}

/// Validated codec configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct CodecConfig {
    /// Unused at inference (the widths below are what count); kept for round-tripping.
    pub n_filters: usize,
    /// Acoustic latent width `D` (released 256).
    pub d: usize,
    pub target_bandwidths: Vec<f64>,
    /// Down-sampling ratios of the encoder; the decoder up-samples in the SAME order (spec §1).
    pub ratios: Vec<usize>,
    pub sample_rate: usize,
    /// Entries per codebook (released 1024).
    pub bins: usize,
    pub n_q: usize,
    pub codebook_dim: usize,
    pub semantic_teacher: String,
    /// Acoustic encoder base width (hard-coded 64 in the reference).
    pub encoder_d_model: usize,
    /// Decoder base width (hard-coded 1024 in the reference).
    pub decoder_channels: usize,
    /// HuBERT hidden size (768 for hubert-base).
    pub semantic_dim: usize,
    /// Output width of `encoder_semantic` (768).
    pub encoder_semantic_dim: usize,
}

impl CodecConfig {
    /// The released `bosonai/higgs-audio-v2-tokenizer` configuration.
    pub fn released() -> Self {
        CodecConfig {
            n_filters: default_n_filters(),
            d: default_d(),
            target_bandwidths: default_bandwidths(),
            ratios: default_ratios(),
            sample_rate: default_sample_rate(),
            bins: default_bins(),
            n_q: default_n_q(),
            codebook_dim: default_codebook_dim(),
            semantic_teacher: default_teacher(),
            encoder_d_model: default_encoder_d_model(),
            decoder_channels: default_decoder_channels(),
            semantic_dim: default_semantic_dim(),
            encoder_semantic_dim: default_semantic_dim(),
        }
    }

    /// Read and validate `path` (a `config.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(path, &text)
    }

    /// Parse and validate JSON text; `path` only names the source in errors.
    pub fn from_json(path: &Path, text: &str) -> Result<Self> {
        let raw: RawConfig =
            serde_json::from_str(text).map_err(|e| Error::config(path, "<json>", e.to_string()))?;
        let cfg = CodecConfig {
            n_filters: raw.n_filters,
            d: raw.d,
            target_bandwidths: raw.target_bandwidths,
            ratios: raw.ratios,
            sample_rate: raw.sample_rate,
            bins: raw.bins,
            n_q: raw.n_q,
            codebook_dim: raw.codebook_dim,
            semantic_teacher: raw.semantic_techer,
            encoder_d_model: raw.encoder_d_model,
            decoder_channels: raw.decoder_channels,
            semantic_dim: raw.semantic_dim,
            encoder_semantic_dim: raw.encoder_semantic_dim,
        };
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(path, field, reason));
        if self.ratios.is_empty() || self.ratios.contains(&0) || self.ratios.len() > MAX_BLOCKS {
            return bad(
                "ratios",
                format!(
                    "{:?}: must be 1 to {MAX_BLOCKS} positive ratios",
                    self.ratios
                ),
            );
        }
        let hop = self
            .ratios
            .iter()
            .try_fold(1usize, |a, &r| a.checked_mul(r))
            .filter(|&h| h <= MAX_HOP);
        if hop.is_none() {
            return bad(
                "ratios",
                format!("{:?}: hop (their product) is above {MAX_HOP}", self.ratios),
            );
        }
        // Each decoder block halves the width; it must stay >= 1 through all blocks.
        if self.decoder_channels >> self.ratios.len() == 0 {
            return bad(
                "decoder_channels",
                format!(
                    "{} is too small for {} up-sampling blocks",
                    self.decoder_channels,
                    self.ratios.len()
                ),
            );
        }
        for (field, v, max) in [
            ("D", self.d, MAX_WIDTH),
            ("bins", self.bins, MAX_BINS),
            ("n_q", self.n_q, MAX_CODEBOOKS),
            ("codebook_dim", self.codebook_dim, MAX_WIDTH),
            ("semantic_dim", self.semantic_dim, MAX_WIDTH),
            ("encoder_semantic_dim", self.encoder_semantic_dim, MAX_WIDTH),
            ("decoder_channels", self.decoder_channels, MAX_WIDTH),
            ("encoder_d_model", self.encoder_d_model, MAX_WIDTH),
            ("sample_rate", self.sample_rate, MAX_SAMPLE_RATE),
        ] {
            if v == 0 || v > max {
                return bad(field, format!("{v} must be in 1..={max}"));
            }
        }
        if self
            .encoder_d_model
            .checked_shl(self.ratios.len() as u32)
            .is_none_or(|w| w > MAX_WIDTH)
        {
            return bad(
                "encoder_d_model",
                format!(
                    "{} doubled over {} blocks is wider than {MAX_WIDTH}",
                    self.encoder_d_model,
                    self.ratios.len()
                ),
            );
        }
        if let Some(bw) = self
            .target_bandwidths
            .iter()
            .find(|b| !(b.is_finite() && **b > 0.0))
        {
            return bad(
                "target_bandwidths",
                format!("{bw} is not a positive finite bandwidth"),
            );
        }
        if self.semantic_teacher != "hubert_base_general" {
            return Err(Error::Unsupported(format!(
                "codec {}: semantic_techer `{}` (only hubert_base_general)",
                path.display(),
                self.semantic_teacher
            )));
        }
        Ok(())
    }

    /// Samples per code frame: the product of the ratios (960).
    pub fn hop_length(&self) -> usize {
        self.ratios.iter().product()
    }

    /// Code frames per second, `ceil(sample_rate / hop)` as the reference computes it (25).
    pub fn frame_rate(&self) -> usize {
        self.sample_rate.div_ceil(self.hop_length())
    }

    /// Width of the fused latent the quantizer works on: D + semantic_dim (1024).
    pub fn quantizer_dim(&self) -> usize {
        self.d + self.semantic_dim
    }

    /// HuBERT's sample rate.
    pub fn semantic_sample_rate(&self) -> usize {
        16000
    }

    /// `int(hop / (sample_rate / 16000) / 320)` (2).
    pub fn semantic_downsample_factor(&self) -> usize {
        let ratio = self.sample_rate as f64 / self.semantic_sample_rate() as f64;
        (self.hop_length() as f64 / ratio / 320.0) as usize
    }

    /// Width of the acoustic encoder's last block: `encoder_d_model * 2^len(ratios)` (2048).
    pub fn encoder_out_channels(&self) -> usize {
        self.encoder_d_model << self.ratios.len()
    }

    /// Number of quantizers for a bandwidth in kbit/s; `None` or a non-positive value means all
    /// (spec §6.4: the reference passes the frame rate as the "sample rate").
    pub fn n_q_for_bandwidth(&self, kbps: Option<f64>) -> usize {
        match kbps {
            Some(bw) if bw > 0.0 => {
                let per_q = (self.bins as f64).log2() * self.frame_rate() as f64 / 1000.0;
                ((bw / per_q).floor() as usize).clamp(1, self.n_q)
            }
            _ => self.n_q,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_derived_values() {
        let c = CodecConfig::released();
        assert_eq!(c.hop_length(), 960);
        assert_eq!(c.frame_rate(), 25);
        assert_eq!(c.quantizer_dim(), 1024);
        assert_eq!(c.semantic_downsample_factor(), 2);
        assert_eq!(c.encoder_out_channels(), 2048);
        assert_eq!(c.n_q_for_bandwidth(None), 8);
        assert_eq!(c.n_q_for_bandwidth(Some(0.5)), 2);
        assert_eq!(c.n_q_for_bandwidth(Some(4.0)), 8);
    }

    #[test]
    fn defaults_fill_missing_width_keys() {
        let c = CodecConfig::from_json(
            Path::new("x"),
            r#"{"D": 16, "bins": 64, "codebook_dim": 8}"#,
        )
        .unwrap();
        assert_eq!(c.decoder_channels, 1024);
        assert_eq!(c.semantic_dim, 768);
        assert_eq!(c.quantizer_dim(), 784);
    }
}
