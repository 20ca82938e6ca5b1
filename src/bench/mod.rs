//! `higgs bench`: builds random weights of a named shape in memory and measures the engine:
//! prefill tokens/s and audio decode steps/s at several batch sizes, on the CPU backend.
//! Shapes: `real` (the released 5.77 B-parameter model), `medium`, `small`.
//! May use: engine, model, weights, config; anyhow allowed.

use crate::config::ModelConfig;
use crate::generate::{Engine, EngineConfig, GenerationParams, Prompt};
use crate::model::{Model, ModelWeights};
use crate::sampling::processors::SamplingParams;
use crate::tensor::DType;
use anyhow::{bail, Context};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Model shape: real (released 3B: 28 layers, H 3072), medium (8 layers, H 2048), small.
    #[arg(long, default_value = "small", value_parser = ["real", "medium", "small"])]
    shape: String,
    /// Weight dtype.
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "f32"])]
    dtype: String,
    /// Device (only cpu in this build).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Prompt length in tokens for the prefill measurement.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    /// Decode steps to time per batch size.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Batch sizes for the decode measurement.
    #[arg(long, value_delimiter = ',', default_value = "1,8")]
    batch: Vec<usize>,
}

/// A config of the released family, scaled by layers/width.
pub fn shape_config(name: &str) -> anyhow::Result<ModelConfig> {
    let (layers, hidden, heads, kv, ffn, vocab) = match name {
        "real" => return Ok(ModelConfig::released()),
        "medium" => (8, 2048, 16, 8, 8192, 128256),
        "small" => (4, 512, 8, 2, 1536, 128256),
        other => bail!("unknown shape {other}"),
    };
    let v = serde_json::json!({
        "audio_adapter_type": "dual_ffn_fast_forward",
        "audio_dual_ffn_layers": (0..layers).collect::<Vec<_>>(),
        "audio_num_codebooks": 8, "audio_codebook_size": 1024,
        "encode_audio_in_tokens": true, "use_delay_pattern": true, "skip_audio_tower": true,
        "encode_whisper_embed": false,
        "text_config": {
            "hidden_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv, "head_dim": hidden / heads, "intermediate_size": ffn,
            "vocab_size": vocab, "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0,
                "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
        }
    });
    Ok(ModelConfig::from_json(std::path::Path::new(&format!("<{name}>")), &v)?)
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if a.device != "cpu" {
        bail!("device `{}` is not available in this build (build with --features cuda for the GPU backend)", a.device);
    }
    let cfg = shape_config(&a.shape)?;
    let dtype = if a.dtype == "f32" { DType::F32 } else { DType::BF16 };
    let t0 = Instant::now();
    let w = ModelWeights::random(&cfg, dtype, 1234, 0.02).context("building random weights")?;
    let params = w.param_count();
    eprintln!("built {} random weights ({:.2} B params, {:.1} GB) in {:.1} s", a.shape, params as f64 / 1e9, (params * dtype.size_bytes()) as f64 / 1e9, t0.elapsed().as_secs_f64());
    let model = Arc::new(Model::new(cfg.clone(), w));
    let max_batch = a.batch.iter().copied().max().unwrap_or(1).max(1);
    let block_size = 16;
    let per_seq = (a.prompt_len + a.steps + 16).div_ceil(block_size) + 1;
    let mut engine = Engine::new(model.clone(), EngineConfig { num_blocks: per_seq * max_batch.max(1) + 4, block_size })?;

    // Prompt: plain text ids, ending in <|audio_out_bos|> so decoding runs in audio mode.
    let prompt = |seed: usize| {
        let mut ids: Vec<u32> = (0..a.prompt_len.saturating_sub(1)).map(|i| ((i * 7919 + seed * 31) % 1000) as u32 + 10).collect();
        ids.push(cfg.audio_out_bos_token);
        Prompt { ids, ..Default::default() }
    };
    let gen_params = || {
        let mut p = GenerationParams::new(a.steps + 4, vec![]);
        p.sampling = SamplingParams { temperature: 0.0, top_k: None, top_p: 1.0 };
        p.ras_win_len = 0;
        p.suppress_audio = vec![cfg.stream_eos as usize];
        p
    };

    println!("higgs bench: shape {} ({:.2} B params), dtype {}, device cpu ({} threads), commit {}", a.shape, params as f64 / 1e9, a.dtype, rayon::current_num_threads(), option_env!("HIGGS_COMMIT").unwrap_or("?"));
    // Prefill.
    let id = engine.add(&prompt(0), gen_params())?;
    let t = Instant::now();
    engine.step()?;
    let prefill_s = t.elapsed().as_secs_f64();
    println!("prefill  {:>6} tokens   {:>9.3} s   {:>10.1} tokens/s", a.prompt_len, prefill_s, a.prompt_len as f64 / prefill_s);
    while engine.num_active() > 0 {
        engine.step()?;
    }
    engine.take_output(id);

    for &b in &a.batch {
        let ids: Vec<_> = (0..b).map(|i| engine.add(&prompt(i + 1), gen_params())).collect::<Result<_, _>>()?;
        engine.step()?; // prefill all (AUDIO_INIT)
        engine.step()?; // first audio step (warm-up)
        let t = Instant::now();
        let mut n = 0;
        while n < a.steps && engine.num_active() > 0 {
            engine.step()?;
            n += 1;
        }
        let s = t.elapsed().as_secs_f64();
        let steps_s = n as f64 / s;
        println!("decode   batch {:>4}   {:>9.3} ms/step   {:>8.2} steps/s   {:>9.1} frames/s   RTF {:.3}", b, 1e3 * s / n as f64, steps_s, steps_s * b as f64, steps_s * b as f64 / 25.0);
        while engine.num_active() > 0 {
            engine.step()?;
        }
        for id in ids {
            engine.take_output(id);
        }
    }
    Ok(ExitCode::SUCCESS)
}
