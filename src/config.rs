//! `config.json` of a Higgs Audio v2 checkpoint (HiggsAudioConfig with a nested Llama
//! `text_config`) -> a validated `ModelConfig` with derived dims and the per-layer kind table.
//! Every field that changes the computation is read; unsupported combinations are refused with
//! an error naming the field (spec: model.md §1).
//! May use: error.

use crate::error::{Error, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// What a decoder layer does with audio positions (spec §1.2, §5.1, §5.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Audio positions use the audio norms and audio FFN; text positions the text ones.
    Dual,
    /// Text-only layer: audio positions pass through unchanged, text queries never see audio keys.
    FastForward,
    /// Plain Llama layer: every position uses the text norms and FFN.
    Plain,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterType {
    Stack,
    DualFfn,
    DualFfnFastForward,
}

/// llama3 RoPE scaling parameters (spec §5.5).
#[derive(Clone, Debug, PartialEq)]
pub struct RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: f64,
}

#[derive(Clone, Debug)]
pub struct ModelConfig {
    pub hidden: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rms_eps: f32,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub max_positions: usize,
    pub adapter: AdapterType,
    pub layer_kinds: Vec<LayerKind>,
    pub n_codebooks: usize,
    pub codebook_size: usize,
    pub stream_bos: u32,
    pub stream_eos: u32,
    pub audio_in_token: u32,
    pub audio_out_token: u32,
    pub audio_out_bos_token: u32,
    pub audio_eos_token: u32,
    pub pad_token: u32,
    pub bos_token: u32,
    pub eos_token: u32,
    pub audio_embed_avg: bool,
    pub audio_out_embed_projector: bool,
    pub encode_audio_in_tokens: bool,
    pub use_delay_pattern: bool,
}

struct Fields<'a> {
    path: &'a Path,
    prefix: &'static str,
    v: &'a Value,
}

impl Fields<'_> {
    fn name(&self, k: &str) -> String {
        format!("{}{}", self.prefix, k)
    }
    fn get(&self, k: &str) -> Option<&Value> {
        self.v.get(k).filter(|v| !v.is_null())
    }
    fn usize(&self, k: &str, default: Option<usize>) -> Result<usize> {
        match self.get(k) {
            Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                Error::config(
                    self.path,
                    self.name(k),
                    format!("expected a non-negative integer, got {v}"),
                )
            }),
            None => default.ok_or_else(|| Error::config(self.path, self.name(k), "missing")),
        }
    }
    fn f64(&self, k: &str, default: Option<f64>) -> Result<f64> {
        match self.get(k) {
            Some(v) => v.as_f64().ok_or_else(|| {
                Error::config(
                    self.path,
                    self.name(k),
                    format!("expected a number, got {v}"),
                )
            }),
            None => default.ok_or_else(|| Error::config(self.path, self.name(k), "missing")),
        }
    }
    fn bool(&self, k: &str, default: bool) -> Result<bool> {
        match self.get(k) {
            Some(v) => v.as_bool().ok_or_else(|| {
                Error::config(
                    self.path,
                    self.name(k),
                    format!("expected a boolean, got {v}"),
                )
            }),
            None => Ok(default),
        }
    }
    fn str(&self, k: &str, default: &str) -> Result<String> {
        match self.get(k) {
            Some(v) => v.as_str().map(str::to_string).ok_or_else(|| {
                Error::config(
                    self.path,
                    self.name(k),
                    format!("expected a string, got {v}"),
                )
            }),
            None => Ok(default.to_string()),
        }
    }
    /// An id field that may be an int or a list of ints (HF allows both for eos); takes the first.
    fn id(&self, k: &str, default: u32) -> Result<u32> {
        match self.get(k) {
            Some(Value::Array(a)) => a
                .first()
                .and_then(Value::as_u64)
                .map(|x| x as u32)
                .ok_or_else(|| {
                    Error::config(self.path, self.name(k), "expected a list of token ids")
                }),
            Some(v) => v.as_u64().map(|x| x as u32).ok_or_else(|| {
                Error::config(
                    self.path,
                    self.name(k),
                    format!("expected a token id, got {v}"),
                )
            }),
            None => Ok(default),
        }
    }
}

impl ModelConfig {
    /// Read `dir/config.json` (or the file itself when `path` is a file).
    pub fn load(path: &Path) -> Result<Self> {
        let file: PathBuf = if path.is_dir() {
            path.join("config.json")
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::config(&file, "<json>", e.to_string()))?;
        Self::from_json(&file, &v)
    }

    pub fn from_json(path: &Path, v: &Value) -> Result<Self> {
        let top = Fields {
            path,
            prefix: "",
            v,
        };
        let tv = v
            .get("text_config")
            .ok_or_else(|| Error::config(path, "text_config", "missing"))?;
        let t = Fields {
            path,
            prefix: "text_config.",
            v: tv,
        };

        let model_type = t.str("model_type", "llama")?;
        if model_type != "llama" {
            return Err(Error::config(
                path,
                "text_config.model_type",
                format!("`{model_type}` is not supported (only llama)"),
            ));
        }
        let act = t.str("hidden_act", "silu")?;
        if act != "silu" {
            return Err(Error::config(
                path,
                "text_config.hidden_act",
                format!("`{act}` is not supported (only silu)"),
            ));
        }
        for f in ["attention_bias", "mlp_bias"] {
            if t.bool(f, false)? {
                return Err(Error::config(
                    path,
                    format!("text_config.{f}"),
                    "biases are not supported",
                ));
            }
        }
        if t.usize("pretraining_tp", Some(1))? != 1 {
            return Err(Error::config(
                path,
                "text_config.pretraining_tp",
                "only 1 is supported",
            ));
        }

        let hidden = t.usize("hidden_size", None)?;
        let n_heads = t.usize("num_attention_heads", None)?;
        let n_kv_heads = t.usize("num_key_value_heads", Some(n_heads))?;
        let head_dim = t.usize("head_dim", Some(hidden / n_heads.max(1)))?;
        if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
            return Err(Error::config(
                path,
                "text_config.num_key_value_heads",
                format!("{n_kv_heads} does not divide num_attention_heads {n_heads}"),
            ));
        }
        if head_dim % 2 != 0 || head_dim == 0 {
            return Err(Error::config(
                path,
                "text_config.head_dim",
                "must be even and > 0",
            ));
        }
        let n_layers = t.usize("num_hidden_layers", None)?;

        let rope_scaling = match tv.get("rope_scaling") {
            None | Some(Value::Null) => None,
            Some(rs) => {
                let f = Fields {
                    path,
                    prefix: "text_config.rope_scaling.",
                    v: rs,
                };
                let ty = match f.get("rope_type").or_else(|| f.get("type")) {
                    Some(Value::String(s)) => s.clone(),
                    _ => "default".into(),
                };
                match ty.as_str() {
                    "llama3" => Some(RopeScaling {
                        factor: f.f64("factor", None)?,
                        low_freq_factor: f.f64("low_freq_factor", None)?,
                        high_freq_factor: f.f64("high_freq_factor", None)?,
                        original_max_position_embeddings: f
                            .f64("original_max_position_embeddings", None)?,
                    }),
                    "default" => None,
                    other => {
                        return Err(Error::config(
                            path,
                            "text_config.rope_scaling.rope_type",
                            format!("`{other}` is not supported (llama3 or default)"),
                        ))
                    }
                }
            }
        };

        let adapter = match top.str("audio_adapter_type", "stack")?.as_str() {
            "stack" => AdapterType::Stack,
            "dual_ffn" => AdapterType::DualFfn,
            "dual_ffn_fast_forward" => AdapterType::DualFfnFastForward,
            other => {
                return Err(Error::config(
                    path,
                    "audio_adapter_type",
                    format!("`{other}` is not supported"),
                ))
            }
        };
        let dual_layers: Vec<usize> = match top.get("audio_dual_ffn_layers") {
            None => {
                if adapter != AdapterType::Stack {
                    return Err(Error::config(
                        path,
                        "audio_dual_ffn_layers",
                        "required for dual_ffn adapters",
                    ));
                }
                vec![]
            }
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_u64()
                        .map(|i| i as usize)
                        .filter(|&i| i < n_layers)
                        .ok_or_else(|| {
                            Error::config(
                                path,
                                "audio_dual_ffn_layers",
                                format!("entry {x} is not a layer index < {n_layers}"),
                            )
                        })
                })
                .collect::<Result<_>>()?,
            Some(other) => {
                return Err(Error::config(
                    path,
                    "audio_dual_ffn_layers",
                    format!("expected a list, got {other}"),
                ))
            }
        };
        let layer_kinds = (0..n_layers)
            .map(|i| match adapter {
                AdapterType::Stack => LayerKind::Plain,
                AdapterType::DualFfn if dual_layers.contains(&i) => LayerKind::Dual,
                AdapterType::DualFfn => LayerKind::Plain,
                AdapterType::DualFfnFastForward if dual_layers.contains(&i) => LayerKind::Dual,
                AdapterType::DualFfnFastForward => LayerKind::FastForward,
            })
            .collect();

        // Research switches the engine does not implement: refuse, naming the field.
        if top.bool("use_audio_out_self_attention", false)?
            || top
                .get("use_audio_out_self_attention")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                > 0
        {
            return Err(Error::config(
                path,
                "use_audio_out_self_attention",
                "audio self-attention layers are not supported",
            ));
        }
        if top.usize("audio_decoder_proj_num_layers", Some(0))? != 0 {
            return Err(Error::config(
                path,
                "audio_decoder_proj_num_layers",
                "must be 0 (the reference never builds these layers)",
            ));
        }
        if top.bool("use_rq_transformer", false)? {
            return Err(Error::config(
                path,
                "use_rq_transformer",
                "not implemented by the reference model",
            ));
        }
        if top.bool("encode_whisper_embed", true)? && !top.bool("skip_audio_tower", false)? {
            return Err(Error::config(
                path,
                "encode_whisper_embed",
                "the Whisper audio tower is not supported (needs skip_audio_tower=true)",
            ));
        }
        if !top.bool("skip_audio_tower", false)? {
            return Err(Error::config(
                path,
                "skip_audio_tower",
                "the Whisper audio tower is not supported",
            ));
        }

        let text_eos = t.id("eos_token_id", 128001)?;
        let cfg = ModelConfig {
            hidden,
            n_layers,
            n_heads,
            n_kv_heads,
            head_dim,
            ffn: t.usize("intermediate_size", None)?,
            vocab: t.usize("vocab_size", None)?,
            rms_eps: t.f64("rms_norm_eps", Some(1e-6))? as f32,
            rope_theta: t.f64("rope_theta", Some(10000.0))?,
            rope_scaling,
            max_positions: t.usize("max_position_embeddings", Some(131072))?,
            adapter,
            layer_kinds,
            n_codebooks: top.usize("audio_num_codebooks", Some(12))?,
            codebook_size: top.usize("audio_codebook_size", Some(1024))?,
            stream_bos: top.id("audio_stream_bos_id", 1024)?,
            stream_eos: top.id("audio_stream_eos_id", 1025)?,
            audio_in_token: top.id("audio_in_token_idx", 128015)?,
            audio_out_token: top.id("audio_out_token_idx", 128016)?,
            audio_out_bos_token: top.id("audio_out_bos_token_id", 128013)?,
            audio_eos_token: top.id("audio_eos_token_id", 128012)?,
            pad_token: top.id("pad_token_id", 128001)?,
            bos_token: t.id("bos_token_id", 128000)?,
            eos_token: text_eos,
            audio_embed_avg: top.bool("audio_embed_avg", false)?,
            audio_out_embed_projector: top.bool("use_audio_out_embed_projector", false)?,
            encode_audio_in_tokens: top.bool("encode_audio_in_tokens", false)?,
            use_delay_pattern: top.bool("use_delay_pattern", false)?,
        };
        if cfg.stream_bos as usize >= cfg.codebook_size + 2
            || cfg.stream_eos as usize >= cfg.codebook_size + 2
        {
            return Err(Error::config(
                path,
                "audio_stream_bos_id",
                "stream BOS/EOS must be < audio_codebook_size + 2",
            ));
        }
        for (f, id) in [
            ("audio_in_token_idx", cfg.audio_in_token),
            ("audio_out_token_idx", cfg.audio_out_token),
            ("audio_out_bos_token_id", cfg.audio_out_bos_token),
            ("audio_eos_token_id", cfg.audio_eos_token),
        ] {
            if id as usize >= cfg.vocab {
                return Err(Error::config(
                    path,
                    f,
                    format!("{id} is outside the vocabulary ({})", cfg.vocab),
                ));
            }
        }
        Ok(cfg)
    }

    /// Rows per codebook in the audio tables: codes + stream BOS + stream EOS.
    pub fn codebook_rows(&self) -> usize {
        self.codebook_size + 2
    }
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
    /// Whether any layer has audio weights (audio norms + audio FFN).
    pub fn has_audio_ffn(&self, layer: usize) -> bool {
        self.layer_kinds[layer] == LayerKind::Dual
    }

    /// llama3-scaled inverse frequencies in f32 arithmetic, as HF computes them (spec §5.5).
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let d = self.head_dim;
        let theta = self.rope_theta as f32;
        let base: Vec<f32> = (0..d / 2)
            .map(|i| {
                let e = (2 * i) as f32 / d as f32;
                1.0 / theta.powf(e)
            })
            .collect();
        let Some(rs) = &self.rope_scaling else {
            return base;
        };
        let factor = rs.factor as f32;
        let low = rs.low_freq_factor as f32;
        let high = rs.high_freq_factor as f32;
        let old = rs.original_max_position_embeddings as f32;
        let low_wavelen = old / low;
        let high_wavelen = old / high;
        base.into_iter()
            .map(|f| {
                let wavelen = 2.0 * std::f32::consts::PI / f;
                if wavelen < high_wavelen {
                    f
                } else if wavelen > low_wavelen {
                    f / factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    (1.0 - smooth) * f / factor + smooth * f
                }
            })
            .collect()
    }

    /// The released Higgs Audio v2 3B configuration (spec §1.1), for benchmarks.
    pub fn released() -> Self {
        let v = serde_json::json!({
            "audio_adapter_type": "dual_ffn_fast_forward",
            "audio_dual_ffn_layers": (0..28).collect::<Vec<_>>(),
            "audio_num_codebooks": 8, "audio_codebook_size": 1024,
            "audio_stream_bos_id": 1024, "audio_stream_eos_id": 1025,
            "encode_audio_in_tokens": true, "use_delay_pattern": true, "skip_audio_tower": true,
            "encode_whisper_embed": false,
            "text_config": {
                "model_type": "llama", "hidden_size": 3072, "num_hidden_layers": 28,
                "num_attention_heads": 24, "num_key_value_heads": 8, "head_dim": 128,
                "intermediate_size": 8192, "vocab_size": 128256, "rms_norm_eps": 1e-5,
                "rope_theta": 500000.0, "max_position_embeddings": 131072,
                "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
                "bos_token_id": 128000, "eos_token_id": 128001
            }
        });
        Self::from_json(Path::new("<released>"), &v).expect("the released config is valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn released_inv_freq_matches_spec() {
        let c = ModelConfig::released();
        let f = c.rope_inv_freq();
        assert_eq!(f.len(), 64);
        assert!((f[0] - 1.0).abs() < 1e-7);
        assert!((f[29] - 2.1184e-3).abs() / 2.1184e-3 < 1e-3, "{}", f[29]);
        assert!((f[63] - 7.672e-8).abs() / 7.672e-8 < 1e-3, "{}", f[63]);
        assert!(c.layer_kinds.iter().all(|k| *k == LayerKind::Dual));
    }

    #[test]
    fn unsupported_field_is_named() {
        let mut v: Value = serde_json::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/reference/llm/config.json"
            ))
            .unwrap(),
        )
        .unwrap();
        v["use_audio_out_self_attention"] = Value::Bool(true);
        let e = ModelConfig::from_json(Path::new("c.json"), &v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("use_audio_out_self_attention"), "{e}");
        v["use_audio_out_self_attention"] = Value::Bool(false);
        v["audio_adapter_type"] = Value::String("weird".into());
        let e = ModelConfig::from_json(Path::new("c.json"), &v)
            .unwrap_err()
            .to_string();
        assert!(e.contains("audio_adapter_type"), "{e}");
    }

    #[test]
    fn fixture_layer_kinds() {
        let c = ModelConfig::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/reference/llm"
        )))
        .unwrap();
        assert_eq!(
            c.layer_kinds,
            vec![
                LayerKind::Dual,
                LayerKind::FastForward,
                LayerKind::Dual,
                LayerKind::FastForward
            ]
        );
        assert_eq!(c.codebook_rows(), 66);
    }
}
