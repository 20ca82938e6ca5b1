//! `AudioTokenizer`: the loaded codec. This file holds loading and decoding (codes `[n_q][T]`
//! -> 24 kHz samples, 960 per frame); encoding is added by `impl AudioTokenizer` in
//! `codec/encode.rs`, which reads the encode-side weights left in `weights`.
//! spec: codec.md §1, §2.4, §6.5, §7.
//! May use: error, weights, codec::*.

use super::config::CodecConfig;
use super::decoder::Decoder;
use super::rvq::Rvq;
use super::weights::load_codec_dir;
use crate::error::Result;
use crate::weights::WeightMap;
use std::path::Path;

/// The codec with weight norm folded.
#[derive(Clone, Debug)]
pub struct AudioTokenizer {
    pub(crate) config: CodecConfig,
    /// Every tensor not taken by the decode path: the acoustic encoder (`encoder.*`, folded to
    /// `X.weight`), `encoder_semantic.*`, `fc_prior.*`, HuBERT under `semantic_model.*`, and
    /// unused training leftovers.
    pub(crate) weights: WeightMap,
    /// All quantizer stages (`project_in` for encode, `project_out` + codebooks for both).
    pub(crate) rvq: Rvq,
    /// `fc_post2` + `decoder_2`.
    pub(crate) decoder: Decoder,
    /// The decode path on a GPU, after [`AudioTokenizer::to_device`]; `decode` (and so chunked
    /// and streaming decode) runs there. Encoding stays on the host.
    #[cfg(feature = "cuda")]
    pub(crate) cuda: Option<std::sync::Arc<super::cuda::CudaDecoder>>,
}

impl AudioTokenizer {
    /// Load a codec folder: `config.json` + `model.safetensors` or `model.pth` (+ `hubert/`).
    pub fn load(dir: &Path) -> Result<Self> {
        let (config, weights) = load_codec_dir(dir)?;
        Self::from_weights(config, weights)
    }

    /// Build from a config and a weight-norm-folded map (see `codec::weights`).
    pub fn from_weights(config: CodecConfig, mut weights: WeightMap) -> Result<Self> {
        let rvq = Rvq::from_weights(&config, &mut weights)?;
        let decoder = Decoder::from_weights(&config, &mut weights)?;
        Ok(AudioTokenizer {
            config,
            weights,
            rvq,
            decoder,
            #[cfg(feature = "cuda")]
            cuda: None,
        })
    }

    /// This codec with its decode path on `device` (weights uploaded once, f32); `Device::Cpu`
    /// gives the host codec back.
    #[cfg_attr(not(feature = "cuda"), allow(unused_mut))]
    pub fn to_device(mut self, device: &crate::tensor::Device) -> Result<Self> {
        match device {
            crate::tensor::Device::Cpu => {
                #[cfg(feature = "cuda")]
                {
                    self.cuda = None;
                }
            }
            #[cfg(feature = "cuda")]
            crate::tensor::Device::Cuda(dev) => {
                self.cuda = Some(std::sync::Arc::new(super::cuda::CudaDecoder::new(
                    dev,
                    &self.rvq,
                    &self.decoder,
                )?));
            }
        }
        Ok(self)
    }

    /// Where `decode` runs.
    pub fn decode_device(&self) -> crate::tensor::Device {
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.cuda {
            return crate::tensor::Device::Cuda(c.device().clone());
        }
        crate::tensor::Device::Cpu
    }

    pub fn config(&self) -> &CodecConfig {
        &self.config
    }
    /// The tensors left after the decode path took its own (see the field).
    pub fn weights(&self) -> &WeightMap {
        &self.weights
    }
    pub fn rvq(&self) -> &Rvq {
        &self.rvq
    }
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }
    pub fn sample_rate(&self) -> usize {
        self.config.sample_rate
    }
    pub fn hop_length(&self) -> usize {
        self.config.hop_length()
    }
    pub fn n_q(&self) -> usize {
        self.config.n_q
    }

    /// Codes `[n][T]` (n <= n_q, codebooks used in order) -> `hop * T` samples. T = 0 gives an
    /// empty waveform. Codes must be < bins; callers clip stream BOS/EOS first (spec §2.4).
    pub fn decode(&self, codes: &[Vec<u32>]) -> Result<Vec<f32>> {
        let t = self.rvq.check_codes(codes)?;
        if t == 0 {
            return Ok(Vec::new());
        }
        #[cfg(feature = "cuda")]
        if let Some(c) = &self.cuda {
            return c.decode(codes);
        }
        let q = self.rvq.decode(codes)?;
        Ok(self.decoder.forward(&q, t))
    }
}
