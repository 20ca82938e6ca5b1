//! The flags that say what to load and where, shared by `higgs tts`, `higgs serve` and the
//! Dynamo worker (`deploy/dynamo`), so that all three spell them, check them and turn them into
//! a [`LoadSpec`] the same way.

use std::path::PathBuf;

use crate::engine::{EngineConfig, LoadSpec};
use crate::quant::Quantization;
use crate::tensor::DType;

use super::dual_ffn_flags::DualFfnFlags;

#[derive(clap::Args, Clone, Debug)]
pub struct ModelFlags {
    /// Generation model: a local folder (config.json + safetensors) or a Hugging Face id.
    #[arg(long)]
    pub model: String,
    /// Audio tokenizer (codec): a local folder (config.json + model.pth) or a Hugging Face id.
    #[arg(long)]
    pub audio_tokenizer: String,
    /// tokenizer.json (default: the model folder's).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Where the model and the codec's decoder run: cpu, or cuda (a build with `--features
    /// cuda`). Voice-clip encoding stays on the host.
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    pub device: String,
    /// Weight and activation dtype on CUDA (the CPU computes in f32 with the stored weights).
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "f32"])]
    pub dtype: String,
    /// Linear weights after load: none, or fp8 (E4M3 with one scale per output channel,
    /// W8A16: attention, FFNs, audio projector and text head; the audio head, embeddings,
    /// norms and codec keep their dtype).
    #[arg(long, default_value = "none")]
    pub quantization: Quantization,
    #[command(flatten)]
    pub dual_ffn: DualFfnFlags,
}

impl ModelFlags {
    /// What to load, with `engine` as the engine's sizes; `--device cuda` means GPU 0 (callers
    /// that place replicas set `device` to `cuda:N` afterwards). Bad DualFFN flags are an
    /// error naming the flag.
    pub fn load_spec(&self, engine: EngineConfig) -> crate::Result<LoadSpec> {
        Ok(LoadSpec {
            model: self.model.clone(),
            audio_tokenizer: self.audio_tokenizer.clone(),
            tokenizer: self.tokenizer.clone(),
            device: self.device.clone(),
            dtype: self.dtype(),
            engine,
            overrides: self.dual_ffn.overrides()?,
            quantization: self.quantization,
        })
    }

    pub fn dtype(&self) -> DType {
        match self.dtype.as_str() {
            "f32" => DType::F32,
            _ => DType::BF16,
        }
    }

    /// How the weights run, for the "loaded" line: `cpu`, `cuda, bf16`, `cuda, bf16, fp8
    /// linears`.
    pub fn describe(&self, cuda: bool) -> String {
        let mut s = if cuda {
            format!("cuda, {}", self.dtype)
        } else {
            "cpu".to_string()
        };
        if self.quantization != Quantization::None {
            s += &format!(", {} linears", self.quantization);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        m: ModelFlags,
    }

    fn parse(args: &[&str]) -> Result<ModelFlags, clap::Error> {
        let base = ["higgs", "--model", "m", "--audio-tokenizer", "c"];
        Cmd::try_parse_from(base.iter().chain(args)).map(|c| c.m)
    }

    #[test]
    fn flags_to_spec() {
        let m = parse(&[
            "--device",
            "cuda",
            "--dtype",
            "f32",
            "--quantization",
            "fp8",
        ])
        .unwrap();
        let spec = m
            .load_spec(EngineConfig::for_context(1000).unwrap())
            .unwrap();
        assert_eq!(
            (spec.model.as_str(), spec.audio_tokenizer.as_str()),
            ("m", "c")
        );
        assert_eq!(spec.device, "cuda");
        assert_eq!(spec.dtype, DType::F32);
        assert_eq!(spec.quantization, Quantization::Fp8);
        assert_eq!((spec.engine.block_size, spec.engine.num_blocks), (16, 63));
        assert_eq!(m.describe(true), "cuda, f32, fp8 linears");

        let m = parse(&[]).unwrap();
        let spec = m.load_spec(EngineConfig::default()).unwrap();
        assert_eq!((spec.device.as_str(), spec.dtype), ("cpu", DType::BF16));
        assert_eq!(spec.quantization, Quantization::None);
        assert_eq!(m.describe(false), "cpu");
    }

    #[test]
    fn max_context_is_bounded() {
        for bad in [0, 15, EngineConfig::MAX_CONTEXT + 1, usize::MAX] {
            let e = EngineConfig::for_context(bad).unwrap_err().to_string();
            assert!(
                e.contains("--max-context") && e.contains("out of range"),
                "{e}"
            );
        }
        let top = EngineConfig::for_context(EngineConfig::MAX_CONTEXT).unwrap();
        assert_eq!(top.num_blocks * top.block_size, EngineConfig::MAX_CONTEXT);
    }

    #[test]
    fn bad_flags_are_named() {
        assert!(parse(&["--device", "tpu"]).is_err());
        assert!(parse(&["--quantization", "int3"]).is_err());
        let m = parse(&["--dual-ffn-layers", "3-1"]).unwrap();
        let e = m
            .load_spec(EngineConfig::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--dual-ffn-layers"), "{e}");
    }
}
