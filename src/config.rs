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
    /// An id that does not fit a u32 is an error (a cast would wrap it into the vocabulary).
    fn id(&self, k: &str, default: u32) -> Result<u32> {
        let v = match self.get(k) {
            Some(Value::Array(a)) => a.first().ok_or_else(|| {
                Error::config(self.path, self.name(k), "expected a list of token ids")
            })?,
            Some(v) => v,
            None => return Ok(default),
        };
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| {
                Error::config(
                    self.path,
                    self.name(k),
                    format!("expected a token id below 2^32, got {v}"),
                )
            })
    }
    /// A non-negative integer no larger than `max`.
    fn bounded(&self, k: &str, default: Option<usize>, max: usize) -> Result<usize> {
        let x = self.usize(k, default)?;
        if x > max {
            return Err(Error::config(
                self.path,
                self.name(k),
                format!("{x} is larger than the supported maximum {max}"),
            ));
        }
        Ok(x)
    }
    /// A finite number strictly above `min` (and, for f32 use, finite as an f32 too).
    fn positive(&self, k: &str, default: Option<f64>, min: f64) -> Result<f64> {
        let x = self.f64(k, default)?;
        // Checked as the f32 it is used as: 1e-50 is > 0 as an f64 but 0 as an f32 (found by
        // tests/fuzz.rs: a RoPE factor of 1e-50 made every scaled frequency infinite).
        let x32 = x as f32;
        if !(x.is_finite() && x32.is_finite() && x > min && f64::from(x32) > min) {
            return Err(Error::config(
                self.path,
                self.name(k),
                format!("{x} must be a finite number > {min}"),
            ));
        }
        Ok(x)
    }
}

/// Caps on config values: far above any Llama-family model, low enough that derived sizes
/// cannot overflow and a typo (10^12 layers) is refused at load instead of reaching allocators.
pub const MAX_LAYERS: usize = 1024;
const MAX_DIM: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;
const MAX_POSITIONS: usize = 1 << 24;
const MAX_CODEBOOKS: usize = 64;
const MAX_CODEBOOK_SIZE: usize = 1 << 20;
/// Elements of all weights together (2^38, a trillion-parameter model in bf16 is 2^40 bytes).
const MAX_PARAMS: usize = 1 << 38;

/// Attention and FFN widths of the text model, checked.
struct Dims {
    hidden: usize,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    ffn: usize,
    vocab: usize,
    n_layers: usize,
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
        check_text_support(&t)?;
        let dims = read_dims(&t)?;
        let rope_scaling = read_rope_scaling(path, tv)?;
        let (adapter, layer_kinds) = read_layer_kinds(&top, dims.n_layers)?;
        refuse_research_switches(&top)?;
        let cfg = ModelConfig {
            hidden: dims.hidden,
            n_layers: dims.n_layers,
            n_heads: dims.n_heads,
            n_kv_heads: dims.n_kv_heads,
            head_dim: dims.head_dim,
            ffn: dims.ffn,
            vocab: dims.vocab,
            rms_eps: t.positive("rms_norm_eps", Some(1e-6), 0.0)? as f32,
            rope_theta: t.positive("rope_theta", Some(10000.0), 0.0)?,
            rope_scaling,
            max_positions: t.bounded("max_position_embeddings", Some(131072), MAX_POSITIONS)?,
            adapter,
            layer_kinds,
            n_codebooks: top.bounded("audio_num_codebooks", Some(12), MAX_CODEBOOKS)?,
            codebook_size: top.bounded("audio_codebook_size", Some(1024), MAX_CODEBOOK_SIZE)?,
            stream_bos: top.id("audio_stream_bos_id", 1024)?,
            stream_eos: top.id("audio_stream_eos_id", 1025)?,
            audio_in_token: top.id("audio_in_token_idx", 128015)?,
            audio_out_token: top.id("audio_out_token_idx", 128016)?,
            audio_out_bos_token: top.id("audio_out_bos_token_id", 128013)?,
            audio_eos_token: top.id("audio_eos_token_id", 128012)?,
            pad_token: top.id("pad_token_id", 128001)?,
            bos_token: t.id("bos_token_id", 128000)?,
            eos_token: t.id("eos_token_id", 128001)?,
            audio_embed_avg: top.bool("audio_embed_avg", false)?,
            audio_out_embed_projector: top.bool("use_audio_out_embed_projector", false)?,
            encode_audio_in_tokens: top.bool("encode_audio_in_tokens", false)?,
            use_delay_pattern: top.bool("use_delay_pattern", false)?,
        };
        cfg.check_values(path)?;
        Ok(cfg)
    }

    /// Checks across fields, after every field has been read on its own.
    fn check_values(&self, path: &Path) -> Result<()> {
        let t = |f: &str| format!("text_config.{f}");
        // Above 1 an epsilon is a unit mix-up, not a stabiliser; below f32's range it is 0.
        if self.rms_eps <= 0.0 || self.rms_eps > 1.0 {
            return Err(Error::config(
                path,
                t("rms_norm_eps"),
                format!("{} must be in (0, 1] as an f32", self.rms_eps),
            ));
        }
        if self.max_positions == 0 {
            return Err(Error::config(
                path,
                t("max_position_embeddings"),
                "must be > 0",
            ));
        }
        for (f, x) in [
            ("audio_num_codebooks", self.n_codebooks),
            ("audio_codebook_size", self.codebook_size),
        ] {
            if x == 0 {
                return Err(Error::config(path, f, "must be > 0"));
            }
        }
        for (f, id) in [
            ("audio_stream_bos_id", self.stream_bos),
            ("audio_stream_eos_id", self.stream_eos),
        ] {
            if id as usize >= self.codebook_size + 2 {
                return Err(Error::config(
                    path,
                    f,
                    format!(
                        "{id}: stream BOS/EOS must be < audio_codebook_size + 2 ({})",
                        self.codebook_size + 2
                    ),
                ));
            }
        }
        for (f, id) in [
            ("audio_in_token_idx", self.audio_in_token),
            ("audio_out_token_idx", self.audio_out_token),
            ("audio_out_bos_token_id", self.audio_out_bos_token),
            ("audio_eos_token_id", self.audio_eos_token),
        ] {
            if id as usize >= self.vocab {
                return Err(Error::config(
                    path,
                    f,
                    format!("{id} is outside the vocabulary ({})", self.vocab),
                ));
            }
        }
        // The frequencies the model uses must be finite and non-zero whatever combination of
        // theta, head_dim and scaling produced them.
        if let Some(f) = self
            .rope_inv_freq()
            .iter()
            .find(|f| !(f.is_finite() && **f > 0.0))
        {
            return Err(Error::config(
                path,
                t("rope_scaling"),
                format!(
                    "rope_theta {} with this scaling gives the inverse frequency {f}",
                    self.rope_theta
                ),
            ));
        }
        // The audio embedding and head tables: n_codebooks * (codebook_size + 2) rows.
        (self.codebook_size + 2)
            .checked_mul(self.n_codebooks)
            .and_then(|r| r.checked_mul(self.hidden))
            .filter(|&n| n <= MAX_PARAMS)
            .ok_or_else(|| {
                Error::config(
                    path,
                    "audio_codebook_size",
                    format!(
                        "{} codebooks of {} entries at hidden {} is too large",
                        self.n_codebooks, self.codebook_size, self.hidden
                    ),
                )
            })?;
        Ok(())
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

/// Text-model switches the engine does not implement.
fn check_text_support(t: &Fields<'_>) -> Result<()> {
    let model_type = t.str("model_type", "llama")?;
    if model_type != "llama" {
        return Err(Error::config(
            t.path,
            t.name("model_type"),
            format!("`{model_type}` is not supported (only llama)"),
        ));
    }
    let act = t.str("hidden_act", "silu")?;
    if act != "silu" {
        return Err(Error::config(
            t.path,
            t.name("hidden_act"),
            format!("`{act}` is not supported (only silu)"),
        ));
    }
    for f in ["attention_bias", "mlp_bias"] {
        if t.bool(f, false)? {
            return Err(Error::config(t.path, t.name(f), "biases are not supported"));
        }
    }
    if t.usize("pretraining_tp", Some(1))? != 1 {
        return Err(Error::config(
            t.path,
            t.name("pretraining_tp"),
            "only 1 is supported",
        ));
    }
    Ok(())
}

/// Widths and counts, each capped, and the weight-size products checked for overflow.
fn read_dims(t: &Fields<'_>) -> Result<Dims> {
    let hidden = t.bounded("hidden_size", None, MAX_DIM)?;
    let n_heads = t.bounded("num_attention_heads", None, MAX_DIM)?;
    let n_kv_heads = t.bounded("num_key_value_heads", Some(n_heads), MAX_DIM)?;
    let head_dim = t.bounded("head_dim", Some(hidden / n_heads.max(1)), MAX_DIM)?;
    if hidden == 0 {
        return Err(Error::config(t.path, t.name("hidden_size"), "must be > 0"));
    }
    if n_heads == 0 || n_kv_heads == 0 || n_heads % n_kv_heads != 0 {
        return Err(Error::config(
            t.path,
            t.name("num_key_value_heads"),
            format!("{n_kv_heads} does not divide num_attention_heads {n_heads}"),
        ));
    }
    if head_dim % 2 != 0 || head_dim == 0 {
        return Err(Error::config(
            t.path,
            t.name("head_dim"),
            format!("{head_dim}: must be even and > 0"),
        ));
    }
    let d = Dims {
        hidden,
        n_heads,
        n_kv_heads,
        head_dim,
        ffn: t.bounded("intermediate_size", None, MAX_DIM)?,
        vocab: t.bounded("vocab_size", None, MAX_VOCAB)?,
        n_layers: t.bounded("num_hidden_layers", None, MAX_LAYERS)?,
    };
    for (f, x) in [("intermediate_size", d.ffn), ("vocab_size", d.vocab)] {
        if x == 0 {
            return Err(Error::config(t.path, t.name(f), "must be > 0"));
        }
    }
    check_param_count(t, &d)?;
    Ok(d)
}

/// Total weight elements (layers with both a text and an audio FFN, embedding and head), in
/// checked arithmetic: a product that overflows or exceeds MAX_PARAMS is refused, naming it.
fn check_param_count(t: &Fields<'_>, d: &Dims) -> Result<()> {
    let m = |a: usize, b: usize| a.checked_mul(b);
    let total = (|| {
        let q = m(d.n_heads, d.head_dim)?;
        let kv = m(d.n_kv_heads, d.head_dim)?;
        let attn = m(d.hidden, q.checked_add(kv.checked_mul(2)?)?.checked_add(q)?)?;
        let ffn = m(m(d.hidden, d.ffn)?, 6)?;
        let layer = attn.checked_add(ffn)?.checked_add(m(d.hidden, 4)?)?;
        let embed = m(m(d.vocab, d.hidden)?, 2)?;
        m(layer, d.n_layers)?.checked_add(embed)
    })();
    match total {
        Some(n) if n <= MAX_PARAMS => Ok(()),
        _ => Err(Error::config(
            t.path,
            t.prefix.trim_end_matches('.'),
            format!(
                "{} layers of hidden {}, {} x {} heads, FFN {}, vocab {}: more than 2^38 \
                 weights (or the sizes overflow)",
                d.n_layers, d.hidden, d.n_heads, d.head_dim, d.ffn, d.vocab
            ),
        )),
    }
}

/// `text_config.rope_scaling`: llama3 parameters, each finite and positive, high > low.
fn read_rope_scaling(path: &Path, tv: &Value) -> Result<Option<RopeScaling>> {
    let rs = match tv.get("rope_scaling") {
        None | Some(Value::Null) => return Ok(None),
        Some(rs) => rs,
    };
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
        "llama3" => {}
        "default" => return Ok(None),
        other => {
            return Err(Error::config(
                path,
                f.name("rope_type"),
                format!("`{other}` is not supported (llama3 or default)"),
            ))
        }
    }
    let low_freq_factor = f.positive("low_freq_factor", None, 0.0)?;
    let high_freq_factor = f.positive("high_freq_factor", None, 0.0)?;
    // The smoothing divides by high - low.
    if high_freq_factor <= low_freq_factor {
        return Err(Error::config(
            path,
            f.name("high_freq_factor"),
            format!("{high_freq_factor} must be > low_freq_factor {low_freq_factor}"),
        ));
    }
    Ok(Some(RopeScaling {
        factor: f.positive("factor", None, 0.0)?,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings: f.positive(
            "original_max_position_embeddings",
            None,
            0.0,
        )?,
    }))
}

/// The adapter type and each layer's kind; `audio_dual_ffn_layers` entries must be layer
/// indices.
fn read_layer_kinds(top: &Fields<'_>, n_layers: usize) -> Result<(AdapterType, Vec<LayerKind>)> {
    let path = top.path;
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
    let mut dual = vec![false; n_layers];
    match top.get("audio_dual_ffn_layers") {
        None if adapter != AdapterType::Stack => {
            return Err(Error::config(
                path,
                "audio_dual_ffn_layers",
                "required for dual_ffn adapters",
            ))
        }
        None => {}
        Some(Value::Array(a)) => {
            for x in a {
                let i = x
                    .as_u64()
                    .and_then(|i| usize::try_from(i).ok())
                    .filter(|&i| i < n_layers)
                    .ok_or_else(|| {
                        Error::config(
                            path,
                            "audio_dual_ffn_layers",
                            format!("entry {x} is not a layer index < {n_layers}"),
                        )
                    })?;
                dual[i] = true;
            }
        }
        Some(other) => {
            return Err(Error::config(
                path,
                "audio_dual_ffn_layers",
                format!("expected a list, got {other}"),
            ))
        }
    }
    let kinds = dual
        .iter()
        .map(|&is_dual| match adapter {
            AdapterType::Stack => LayerKind::Plain,
            _ if is_dual => LayerKind::Dual,
            AdapterType::DualFfn => LayerKind::Plain,
            AdapterType::DualFfnFastForward => LayerKind::FastForward,
        })
        .collect();
    Ok((adapter, kinds))
}

/// Research switches the engine does not implement: refuse, naming the field.
fn refuse_research_switches(top: &Fields<'_>) -> Result<()> {
    let path = top.path;
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
    Ok(())
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
