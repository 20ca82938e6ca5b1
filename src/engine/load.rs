//! Loading what the engine thread owns from disk: the generation model (folder or Hugging
//! Face id), the codec, the text tokenizer, on a device and dtype. Shared by `higgs tts`,
//! `higgs serve` and benchmarks. May use: config, weights, model, codec, tokenizer, tensor.

use std::path::PathBuf;
use std::sync::Arc;

use super::core::EngineConfig;
use super::handle::EngineParts;
use crate::codec::model::AudioTokenizer;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::layer_overrides::{describe, LayerOverrides};
use crate::model::{LoadOptions, Model, ModelWeights};
use crate::quant::Quantization;
use crate::tensor::{DType, Device};
use crate::tokenizer::TextTokenizer;
use crate::weights::hub::resolve_model;
use crate::weights::safetensors::Checkpoint;

/// Where the parts come from.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Model folder or HF id.
    pub model: String,
    /// Codec folder or HF id.
    pub audio_tokenizer: String,
    /// tokenizer.json (default: the model folder's).
    pub tokenizer: Option<PathBuf>,
    /// "cpu", "cuda" (GPU 0) or "cuda:N" (GPU N).
    pub device: String,
    /// Weights and activations on CUDA (the CPU computes in f32 from the stored weights).
    pub dtype: DType,
    pub engine: EngineConfig,
    /// DualFFN research overrides of the checkpoint's layer table (default: none).
    pub overrides: LayerOverrides,
    /// Linear weights re-stored after load (`--quantization`; default none).
    pub quantization: Quantization,
}

impl LoadSpec {
    /// The model folder (resolving an HF id).
    pub fn model_dir(&self) -> Result<PathBuf> {
        resolve_model(&self.model, &["config.json"])
    }

    /// The same spec with Hugging Face ids resolved to local folders (downloaded when
    /// missing), so that several loaders in parallel do not download the same files.
    pub fn resolved(&self) -> Result<LoadSpec> {
        let mut s = self.clone();
        s.model = resolve_model(&self.model, &["config.json"])?
            .to_string_lossy()
            .into_owned();
        s.audio_tokenizer = resolve_model(&self.audio_tokenizer, &["config.json"])?
            .to_string_lossy()
            .into_owned();
        Ok(s)
    }

    /// Loads everything; run it on the engine thread (`EngineHandle::spawn`).
    pub fn load(&self) -> Result<EngineParts> {
        let model_dir = self.model_dir()?;
        let codec_dir = resolve_model(&self.audio_tokenizer, &["config.json"])?;
        let tok_path = self
            .tokenizer
            .clone()
            .unwrap_or_else(|| model_dir.join("tokenizer.json"));
        let tokenizer = TextTokenizer::from_file(&tok_path)
            .map_err(|e| Error::Tokenizer(format!("loading {}: {e}", tok_path.display())))?;
        let mut cfg = ModelConfig::load(&model_dir)?;
        // Refuse bad overrides before reading any weight (a checkpoint has audio weights for
        // exactly its config's dual layers).
        self.overrides.layer_kinds(&cfg, |i| cfg.has_audio_ffn(i))?;
        let ck = Checkpoint::open(&model_dir)?;
        let device = match self.device.as_str() {
            "cpu" => Device::Cpu,
            "cuda" => Device::cuda(0)?,
            other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Device::cuda(n)?,
                _ => {
                    return Err(Error::BadRequest(format!(
                        "device `{other}`: expected cpu, cuda or cuda:N"
                    )))
                }
            },
        };
        let mut w = ModelWeights::load(&ck, &cfg, LoadOptions::default())?;
        drop(ck);
        if !self.overrides.is_default() {
            let kinds = w.apply_overrides(&mut cfg, &self.overrides)?;
            // The load log: a research run says what it changed.
            eprintln!(
                "DualFFN overrides: {}",
                describe(&kinds, self.overrides.audio_ffn)
            );
        }
        // On the host, before the upload: FP8 weights are quantized from the loaded values
        // and stay FP8 through `to_device`.
        w = w.quantize(self.quantization)?;
        if !device.is_cpu() {
            w = w.to_device(&device, self.dtype)?;
        }
        let codec = AudioTokenizer::load(&codec_dir)?.to_device(&device)?;
        Ok(EngineParts {
            model: Arc::new(Model::new(cfg, w)),
            codec,
            tokenizer: Arc::new(tokenizer),
            config: self.engine,
        })
    }
}
