//! `higgs bench`: builds random weights of a named shape in memory and measures the engine:
//! prefill tokens/s and audio decode steps/s at several batch sizes, on the CPU backend or
//! (`--device cuda`, a `--features cuda` build) on the GPU, where it also prints the batch-1
//! bandwidth floor: weight bytes one audio step reads / the GPU's memory bandwidth.
//! Shapes: `real` (the released 5.77 B-parameter model), `medium`, `small`.
//! May use: engine, model, weights, config; anyhow allowed.

use crate::config::{LayerKind, ModelConfig};
use crate::engine::{Engine, EngineConfig, GenerationParams, Prompt};
use crate::model::{Model, ModelWeights};
use crate::sampling::processors::SamplingParams;
use crate::tensor::DType;
use crate::tensor::{Device, Tensor};
use anyhow::{bail, Context};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

mod dual_ffn;
mod http;
mod kernel_report;
mod peaks;
pub mod quality;
pub mod report;
mod roofline;
pub mod serve;
mod synthetic;
mod timing;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// `serve`: the serving stack under open-loop Poisson load (see `higgs bench serve --help`
    /// for its flags: --requests, --rate, --seed, ...). Without it: the engine's step
    /// benchmarks below.
    #[arg(value_parser = ["serve"])]
    what: Option<String>,
    #[command(flatten)]
    serve: serve::ServeBenchArgs,
    /// Benchmark the audio tokenizer (codec) at its released sizes instead of the LLM:
    /// decode and encode real-time factors.
    #[arg(long)]
    codec: bool,
    /// Seconds of audio for the codec benchmark.
    #[arg(long, default_value_t = 5)]
    codec_seconds: usize,
    /// Model shape: real or released (the released 3B: 28 layers, H 3072), medium (8 layers,
    /// H 2048), small (4 layers, H 512).
    #[arg(long, default_value = "small", value_parser = ["real", "released", "medium", "small"])]
    shape: String,
    /// Weight dtype.
    #[arg(long, default_value = "bf16", value_parser = ["bf16", "f32"])]
    dtype: String,
    /// Linear weights after building: none, or fp8 (E4M3, per-channel scales; the audio head,
    /// embeddings and norms stay in --dtype).
    #[arg(long, default_value = "none")]
    quantization: crate::quant::Quantization,
    /// Instead of timing: the quantization quality gate (teacher-forced logits cosine and max
    /// relative error per head, greedy-code agreement over --steps) of --quantization against
    /// the same random weights unquantized.
    #[arg(long)]
    quality: bool,
    /// Device: cpu, or cuda (GPU 0; needs a build with --features cuda).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    device: String,
    /// Prompt length in tokens for the prefill measurement.
    #[arg(long, default_value_t = 64)]
    prompt_len: usize,
    /// Decode steps to time per batch size.
    #[arg(long, default_value_t = 8)]
    steps: usize,
    /// Batch sizes: of the decode measurement (default 1,8), of the roofline report
    /// (--kernels on the CPU or with --report; default 1,64,256), of --dual-ffn (default
    /// 1,8,64,256).
    #[arg(long, value_delimiter = ',')]
    batch: Option<Vec<usize>>,
    /// Also measure time to first audio: one request from `add` to its first streamed
    /// samples (prefill, the delay pattern's first C-1 columns, the codec's 10 frames of
    /// lookahead, one chunk of codec decode), with a released-size random codec on the same
    /// device.
    #[arg(long)]
    first_audio: bool,
    /// CUDA step graphs for the decode measurement: on, off, or both (each batch twice).
    #[arg(long, default_value = "both", value_parser = ["on", "off", "both"])]
    graphs: String,
    /// After each decode measurement, time the step's phases (schedule, forward, heads and
    /// sampling, bookkeeping) with a device sync after each.
    #[arg(long)]
    phases: bool,
    /// Time single ops at the model's shapes (GEMMs per weight, batch 1 and the largest batch):
    /// achieved weight bandwidth.
    #[arg(long)]
    ops: bool,
    /// Roofline report of every op of a decode step and a prefill chunk (on the CPU, or with
    /// --report): time, bytes, FLOPs, GB/s, GFLOP/s and the fraction of the peaks measured in
    /// the same run. On CUDA without --report: GPU time per kernel of one decode step (graphs
    /// off, CUDA events around every launch), at batch 1 and at the largest batch.
    #[arg(long, conflicts_with = "dual_ffn")]
    kernels: bool,
    /// DualFFN: per-layer routing counters of a mixed step, then the three execution
    /// strategies (routed, masked, sub-batch) timed on the same steps across --audio-percent
    /// and --batch, outputs compared.
    #[arg(long)]
    dual_ffn: bool,
    /// Audio fractions (% of the rows) of the --dual-ffn comparison.
    #[arg(long, value_delimiter = ',', default_value = "0,25,50,75,100")]
    audio_percent: Vec<usize>,
    /// Write report.json, report.md and an SVG chart of --kernels or --dual-ffn into DIR.
    #[arg(long, value_name = "DIR")]
    report: Option<std::path::PathBuf>,
    /// Minimum time per measured op or step of the reports (ms); each is also called once
    /// untimed first.
    #[arg(long, default_value_t = 20.0)]
    min_time_ms: f64,
    /// Bytes of the peak-bandwidth copy, MiB (default 256 on the CPU, 1024 on CUDA).
    #[arg(long)]
    peak_copy_mib: Option<usize>,
    /// M = N = K of the peak-compute GEMM (default 1024 on the CPU, 8192 on CUDA).
    #[arg(long)]
    peak_gemm: Option<usize>,
    #[command(flatten)]
    dual_ffn_flags: crate::cli::dual_ffn_flags::DualFfnFlags,
}

impl BenchArgs {
    /// `--batch`, or `default` when it was not given.
    fn batches(&self, default: &[usize]) -> Vec<usize> {
        self.batch.clone().unwrap_or_else(|| default.to_vec())
    }
}

/// A config of the released family, scaled by layers/width.
pub fn shape_config(name: &str) -> anyhow::Result<ModelConfig> {
    let (layers, hidden, heads, kv, ffn, vocab) = match name {
        "real" | "released" => return Ok(ModelConfig::released()),
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
    Ok(ModelConfig::from_json(
        std::path::Path::new(&format!("<{name}>")),
        &v,
    )?)
}

/// A released-size codec with random weights (decode path only), on `device`.
fn random_codec(device: &Device) -> anyhow::Result<crate::codec::AudioTokenizer> {
    use crate::codec::{config::CodecConfig, model::AudioTokenizer, weights};
    let cfg = CodecConfig::released();
    let w = weights::random_decode_weights(&cfg, 7);
    Ok(AudioTokenizer::from_weights(cfg, w)?.to_device(device)?)
}

/// `seconds` of deterministic, varied codes `[n_q][frames]`: (frames, codes).
fn bench_codes(cfg: &crate::codec::CodecConfig, seconds: usize) -> (usize, Vec<Vec<u32>>) {
    let frames = seconds * 25;
    let codes = (0..cfg.n_q)
        .map(|q| {
            (0..frames)
                .map(|t| ((q * 131 + t * 17) % cfg.bins) as u32)
                .collect()
        })
        .collect();
    (frames, codes)
}

/// Codec real-time factors with random weights of the released sizes: decode on `device`
/// (whole clip, then streamed in 1 s chunks), encode on the host (CPU only).
fn run_codec(seconds: usize, device: &Device) -> anyhow::Result<ExitCode> {
    use crate::codec::{config::CodecConfig, model::AudioTokenizer, weights};
    let cfg = CodecConfig::released();
    if !device.is_cpu() {
        let codec = random_codec(device)?;
        let (frames, codes) = bench_codes(&cfg, seconds);
        println!(
            "higgs bench --codec: released sizes, random weights, decode on cuda ({}), {seconds} s of audio",
            device.name()
        );
        codec.decode(&codes)?; // warm-up (module load, pool growth)
        let reps = 5;
        let t = Instant::now();
        for _ in 0..reps {
            codec.decode(&codes)?;
        }
        let d = t.elapsed().as_secs_f64() / reps as f64;
        println!(
            "decode  {frames} frames -> {} samples   {:>8.4} s   real-time factor {:.0}x",
            frames * cfg.hop_length(),
            d,
            seconds as f64 / d
        );
        // Streaming: 25-frame chunks, each decoded with its 10 frames of context per side.
        let t = Instant::now();
        let mut s = crate::codec::stream::StreamDecoder::new(&codec, cfg.n_q)?;
        let mut n = 0;
        for a in (0..frames).step_by(25) {
            let b = (a + 25).min(frames);
            let part: Vec<Vec<u32>> = codes.iter().map(|r| r[a..b].to_vec()).collect();
            n += s.push(&part)?.len();
        }
        n += s.finish()?.len();
        let d = t.elapsed().as_secs_f64();
        println!(
            "stream  {frames} frames in 25-frame pushes -> {n} samples   {d:>8.4} s   real-time factor {:.0}x",
            seconds as f64 / d
        );
        return Ok(ExitCode::SUCCESS);
    }
    let t0 = Instant::now();
    let mut w = weights::random_decode_weights(&cfg, 7);
    let enc_w = weights::random_encode_weights(&cfg, 11);
    for k in enc_w.keys() {
        if !w.contains(k) {
            w.insert(k.clone(), enc_w.get(k)?.clone());
        }
    }
    let codec = AudioTokenizer::from_weights(cfg.clone(), w)?;
    eprintln!(
        "built released-size random codec weights in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let (frames, codes) = bench_codes(&cfg, seconds);
    println!("higgs bench --codec: released sizes, random weights, device cpu ({} threads), {seconds} s of audio", rayon::current_num_threads());
    let t = Instant::now();
    let pcm = codec.decode(&codes)?;
    let d = t.elapsed().as_secs_f64();
    println!(
        "decode  {frames} frames -> {} samples   {d:>8.3} s   real-time factor {:.3}x",
        pcm.len(),
        seconds as f64 / d
    );
    let x: Vec<f32> = (0..24_000 * seconds)
        .map(|i| 0.3 * ((i as f32) * 0.031).sin() + 0.05 * ((i as f32) * 0.17).sin())
        .collect();
    let t = Instant::now();
    let enc = codec.encode(&x)?;
    let e = t.elapsed().as_secs_f64();
    println!(
        "encode  {} samples -> {} frames   {e:>8.3} s   real-time factor {:.3}x",
        x.len(),
        enc.first().map_or(0, Vec::len),
        seconds as f64 / e
    );
    Ok(ExitCode::SUCCESS)
}

/// Caps on the size flags: a benchmark never needs more, and a typo (`--batch 1000000000`)
/// gets an error naming the flag instead of an attempt to allocate its KV cache.
const MAX_BATCH: usize = 4096;
const MAX_KV_TOKENS: usize = 1 << 22;
const MAX_CODEC_SECONDS: usize = 3600;

/// Check the size flags against the caps above, in checked arithmetic.
fn check_sizes(a: &BenchArgs) -> anyhow::Result<()> {
    let batch = a.batches(&[1, 8, 64, 256]);
    let max_batch = batch.iter().copied().max().unwrap_or(1);
    if batch.contains(&0) || max_batch > MAX_BATCH {
        bail!("--batch {batch:?}: each batch size must be in 1..={MAX_BATCH}");
    }
    if let Some(p) = a.audio_percent.iter().find(|&&p| p > 100) {
        bail!("--audio-percent {p}: must be in 0..=100");
    }
    if !(a.min_time_ms.is_finite() && a.min_time_ms >= 0.0 && a.min_time_ms <= 60_000.0) {
        bail!("--min-time-ms {}: must be in 0..=60000", a.min_time_ms);
    }
    if a.peak_copy_mib.is_some_and(|m| m == 0 || m > 65536) {
        bail!("--peak-copy-mib: must be in 1..=65536");
    }
    if a.peak_gemm.is_some_and(|n| n == 0 || n > 65536) {
        bail!("--peak-gemm: must be in 1..=65536");
    }
    if a.codec_seconds == 0 || a.codec_seconds > MAX_CODEC_SECONDS {
        bail!(
            "--codec-seconds {}: must be in 1..={MAX_CODEC_SECONDS}",
            a.codec_seconds
        );
    }
    let kv_tokens = a
        .prompt_len
        .checked_add(a.steps)
        .and_then(|n| n.checked_add(32))
        .and_then(|n| n.checked_mul(max_batch));
    match kv_tokens {
        Some(n) if n <= MAX_KV_TOKENS => Ok(()),
        _ => bail!(
            "--prompt-len {} + --steps {} at --batch {max_batch} needs more than {MAX_KV_TOKENS} \
             KV-cache tokens",
            a.prompt_len,
            a.steps
        ),
    }
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    check_sizes(&a)?;
    let device = match a.device.as_str() {
        "cuda" => Device::cuda(0).context("opening CUDA device 0")?,
        _ => Device::Cpu,
    };
    if a.codec {
        return run_codec(a.codec_seconds, &device);
    }
    let dtype = if a.dtype == "f32" {
        DType::F32
    } else {
        DType::BF16
    };
    let quantization = a.quantization;
    if a.quality {
        if quantization == crate::quant::Quantization::None {
            bail!("--quality compares a quantized model with the unquantized one: add --quantization fp8");
        }
        let r = quality::run(
            &a.shape,
            dtype,
            &device,
            quantization,
            a.prompt_len,
            a.steps,
        )?;
        println!(
            "higgs bench --quality: shape {}, dtype {}, --quantization {quantization}, device {}, {} steps",
            a.shape,
            a.dtype,
            device.name(),
            a.steps
        );
        println!("{r}");
        return Ok(ExitCode::SUCCESS);
    }
    if a.what.as_deref() == Some("serve") {
        if quantization != crate::quant::Quantization::None {
            bail!(
                "--quantization applies to the step benchmark and --quality, not to `bench serve`"
            );
        }
        serve::run(&a.shape, dtype, device, &a.serve)?;
        return Ok(ExitCode::SUCCESS);
    }
    let overrides = a.dual_ffn_flags.overrides()?;
    let roofline_mode = a.kernels && (device.is_cpu() || a.report.is_some());
    if roofline_mode && quantization != crate::quant::Quantization::None {
        bail!("--quantization is not supported by the --kernels roofline report (it builds its own weights)");
    }
    if roofline_mode {
        return roofline::run(&a, dtype, &device, &overrides);
    }
    let mut cfg = shape_config(&a.shape)?;
    // Overrides are checked against the shape before any weight is built.
    overrides.layer_kinds(&cfg, |i| cfg.has_audio_ffn(i))?;
    let t0 = Instant::now();
    let mut w = if quantization == crate::quant::Quantization::None {
        ModelWeights::random_on(&cfg, dtype, 1234, 0.02, &device)
            .context("building random weights")?
    } else {
        // Quantized on the host from the same values, then uploaded (FP8 stays FP8).
        let w = ModelWeights::random(&cfg, dtype, 1234, 0.02)
            .context("building random weights")?
            .quantize(quantization)?;
        if device.is_cpu() {
            w
        } else {
            w.to_device(&device, dtype)?
        }
    };
    let kinds = w.apply_overrides(&mut cfg, &overrides)?;
    eprintln!(
        "{}",
        crate::layer_overrides::describe(&kinds, overrides.audio_ffn)
    );
    device.synchronize()?;
    let params = w.param_count();
    let where_ = if device.is_cpu() {
        "in memory"
    } else {
        "uploaded"
    };
    eprintln!(
        "built {} random weights {where_} ({:.2} B params, {:.1} GB) in {:.1} s",
        a.shape,
        params as f64 / 1e9,
        w.byte_count() as f64 / 1e9,
        t0.elapsed().as_secs_f64()
    );
    let step_bytes = audio_step_weight_bytes(&w);
    let model = Arc::new(Model::new(cfg.clone(), w));
    if a.dual_ffn {
        return dual_ffn::run(&a, &model, &kinds, &overrides);
    }
    let batch = a.batches(&[1, 8]);
    let max_batch = batch.iter().copied().max().unwrap_or(1).max(1);
    let block_size = 16;
    let per_seq = (a.prompt_len + a.steps + 16).div_ceil(block_size) + 1;
    let mut engine = Engine::new(
        model.clone(),
        EngineConfig {
            num_blocks: per_seq * max_batch.max(1) + 4,
            block_size,
            // Whole prompts in one step, and no cache: the rounds repeat the same prompts
            // and must measure their prefill each time.
            max_num_batched_tokens: usize::MAX,
            max_num_seqs: max_batch.max(1),
            prefix_caching: false,
        },
    )?;

    // Prompt: plain text ids, ending in <|audio_out_bos|> so decoding runs in audio mode.
    let prompt = |seed: usize| {
        let mut ids: Vec<u32> = (0..a.prompt_len.saturating_sub(1))
            .map(|i| ((i * 7919 + seed * 31) % 1000) as u32 + 10)
            .collect();
        ids.push(cfg.audio_out_bos_token);
        Prompt {
            ids,
            ..Default::default()
        }
    };
    let gen_params = || {
        let mut p = GenerationParams::new(a.steps + 10, vec![]);
        p.sampling = SamplingParams::greedy();
        p.ras_win_len = 0;
        p.suppress_audio = vec![cfg.stream_eos as usize];
        p
    };

    let dev_desc = if device.is_cpu() {
        format!("cpu ({} threads)", rayon::current_num_threads())
    } else {
        format!("cuda ({})", device.name())
    };
    println!(
        "higgs bench: shape {} ({:.2} B params), dtype {}, quantization {quantization}, device {dev_desc}, commit {}",
        a.shape,
        params as f64 / 1e9,
        a.dtype,
        option_env!("HIGGS_COMMIT").unwrap_or("?")
    );
    if !device.is_cpu() {
        match gpu_bandwidth(&device.name()) {
            Some((label, bw)) => println!(
                "bandwidth floor, batch-1 audio step: {:.2} GB weights / {:.2} TB/s ({label}) = {:.3} ms/step ({:.1} steps/s max)",
                step_bytes as f64 / 1e9,
                bw / 1e12,
                1e3 * step_bytes as f64 / bw,
                bw / step_bytes as f64
            ),
            None => println!("bandwidth floor: unknown GPU `{}` (known: H100 3.35 TB/s, H200 4.8 TB/s); {:.2} GB weights per audio step", device.name(), step_bytes as f64 / 1e9),
        }
    }
    // Warm-up (cuBLAS handles and heuristics, the memory pool, first-launch module costs):
    // one whole request, not timed.
    let id = engine.add(&prompt(500), gen_params())?;
    drain(&mut engine, &[id])?;
    // Prefill.
    let id = engine.add(&prompt(0), gen_params())?;
    let t = Instant::now();
    engine.step()?;
    let prefill_s = t.elapsed().as_secs_f64();
    println!(
        "prefill  {:>6} tokens   {:>9.3} s   {:>10.1} tokens/s",
        a.prompt_len,
        prefill_s,
        a.prompt_len as f64 / prefill_s
    );
    drain(&mut engine, &[id])?;

    let modes: &[bool] = match (device.is_cpu(), a.graphs.as_str()) {
        (true, _) | (false, "off") => &[false],
        (false, "on") => &[true],
        _ => &[false, true],
    };
    for &b in &batch {
        for &graphs in modes {
            model.set_step_graphs(graphs);
            let ids: Vec<_> = (0..b)
                .map(|i| engine.add(&prompt(i + 1), gen_params()))
                .collect::<Result<_, _>>()?;
            engine.step()?; // prefill all (AUDIO_INIT)
            engine.step()?; // first audio step (warm-up; captures this batch's graph)
            engine.step()?;
            let (c0, r0) = model.step_graph_stats();
            let t = Instant::now();
            let mut n = 0;
            while n < a.steps && engine.num_active() > 0 {
                engine.step()?;
                n += 1;
            }
            let s = t.elapsed().as_secs_f64();
            let (c1, r1) = model.step_graph_stats();
            let steps_s = n as f64 / s;
            let how = if device.is_cpu() {
                String::new()
            } else if graphs {
                format!(
                    "   graphs on ({} of {n} steps replayed, {} captured)",
                    r1 - r0,
                    c1 - c0
                )
            } else {
                "   graphs off".to_string()
            };
            println!("decode   batch {:>4}   {:>9.3} ms/step   {:>8.2} steps/s   {:>9.1} frames/s   RTF {:.3}{how}", b, 1e3 * s / n as f64, steps_s, steps_s * b as f64, steps_s * b as f64 / 25.0);
            if a.phases && graphs == *modes.last().unwrap_or(&false) {
                // A few more steps with a device sync after each phase.
                engine.set_timing(true);
                let mut k = 0;
                while k < 4 && engine.num_active() > 0 {
                    engine.step()?;
                    k += 1;
                }
                let st = engine.step_times();
                engine.set_timing(false);
                let per = |x: f64| 1e3 * x / st.steps.max(1) as f64;
                println!(
                    "         phases (ms/step, synced): schedule {:.3}  forward {:.3}  heads+sampling {:.3}  bookkeeping {:.3}",
                    per(st.schedule_s),
                    per(st.forward_s),
                    per(st.heads_s),
                    per(st.finish_s)
                );
            }
            drain(&mut engine, &ids)?;
        }
    }
    model.set_step_graphs(true);
    if a.ops {
        op_profile(&model, &device, &batch)?;
    }
    if a.kernels {
        let big = batch.iter().copied().max().unwrap_or(1);
        for b in [1, big] {
            let ids: Vec<_> = (0..b)
                .map(|i| engine.add(&prompt(i + 700), gen_params()))
                .collect::<Result<_, _>>()?;
            engine.step()?;
            engine.step()?;
            engine.step()?;
            model.set_step_graphs(false);
            kernel_table(&mut engine, &device, b)?;
            model.set_step_graphs(true);
            drain(&mut engine, &ids)?;
        }
    }
    if a.first_audio {
        first_audio(&mut engine, &prompt(999), gen_params, &device)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Steps the engine until every request has finished, then drops their outputs.
fn drain(engine: &mut Engine, ids: &[crate::kv::manager::SeqId]) -> anyhow::Result<()> {
    while engine.num_active() > 0 {
        engine.step()?;
    }
    for &id in ids {
        engine.take_output(id);
    }
    Ok(())
}

/// GPU time per kernel name over two eager decode steps, printed per step.
#[cfg(feature = "cuda")]
fn kernel_table(engine: &mut Engine, device: &Device, b: usize) -> anyhow::Result<()> {
    let Device::Cuda(dev) = device else {
        return Ok(());
    };
    let steps = 2;
    dev.start_kernel_timing();
    let t = Instant::now();
    for _ in 0..steps {
        engine.step()?;
    }
    let rows = dev.take_kernel_timing()?;
    let wall = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let total: f64 = rows.iter().map(|r| r.1).sum::<f64>() / steps as f64;
    println!("kernels  batch {b}: {total:.3} ms of GPU time per step in {} kernel names ({wall:.3} ms wall, timed)", rows.len());
    for (name, ms, n) in rows.iter().take(16) {
        println!(
            "  {:>8.1} us/step  {:>4} launches/step  {name}",
            1e3 * ms / steps as f64,
            n / steps
        );
    }
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn kernel_table(_: &mut Engine, _: &Device, _: usize) -> anyhow::Result<()> {
    Ok(())
}

/// Per-op timing at the model's shapes: each GEMM of layer 0 and the heads, at batch 1 and
/// at the largest batch, averaged over repeated calls (device synced once per op).
fn op_profile(model: &Model, device: &Device, batches: &[usize]) -> anyhow::Result<()> {
    use crate::ops;
    let w = &model.w;
    let l = &w.layers[0];
    let h = model.cfg.hidden;
    let mut gemms: Vec<(&str, &Tensor)> = vec![("qkv", &l.qkv), ("o", &l.o)];
    if let Some(af) = l.audio.as_ref().and_then(|a| a.ffn.as_ref()) {
        gemms.extend([("audio gate|up", &af.gate_up), ("audio down", &af.down)]);
    }
    gemms.push(("audio head", &w.audio_head));
    let big = batches.iter().copied().max().unwrap_or(1);
    let reps = 50;
    for n in [1, big] {
        for (name, wt) in &gemms {
            let k = wt.shape()[1];
            let x = Tensor::from_f32_on(
                vec![n, k],
                &vec![0.01; n * k],
                model.activation_dtype(),
                device,
            )?;
            ops::matmul(&x, wt)?;
            device.synchronize()?;
            let t = Instant::now();
            for _ in 0..reps {
                ops::matmul(&x, wt)?;
            }
            device.synchronize()?;
            let s = t.elapsed().as_secs_f64() / reps as f64;
            let bytes = wt.elem_count() * wt.dtype().size_bytes();
            println!(
                "op  matmul {name:<10} n {n:>4}  [{}x{}]  {:>8.1} us  {:>7.0} GB/s of weights",
                wt.shape()[0],
                wt.shape()[1],
                1e6 * s,
                bytes as f64 / s / 1e9
            );
        }
        let x = Tensor::from_f32_on(
            vec![n, h],
            &vec![0.5; n * h],
            model.activation_dtype(),
            device,
        )?;
        let t = Instant::now();
        for _ in 0..reps {
            ops::rmsnorm(&x, &l.input_norm, 1e-5)?;
        }
        device.synchronize()?;
        println!(
            "op  rmsnorm           n {n:>4}  {:>8.1} us",
            1e6 * t.elapsed().as_secs_f64() / reps as f64
        );
    }
    Ok(())
}

/// Time from `add` to the first streamed samples of one request (engine otherwise idle).
fn first_audio(
    engine: &mut Engine,
    prompt: &Prompt,
    gen_params: impl Fn() -> GenerationParams,
    device: &Device,
) -> anyhow::Result<()> {
    use crate::codec::stream::StreamDecoder;
    use crate::delay::{DelayPattern, FrameReverter};
    use crate::engine::Event;
    let codec = random_codec(device)?;
    let cfg = engine.model.cfg.clone();
    let mut p = gen_params();
    p.max_new_tokens = p.max_new_tokens.max(cfg.n_codebooks + 40);
    for round in 0..2 {
        // Round 0 warms the codec's kernels and the pool; round 1 is reported.
        let mut rev = FrameReverter::new(DelayPattern::of(&cfg));
        let mut dec = StreamDecoder::new(&codec, cfg.n_codebooks)?;
        let t = Instant::now();
        let id = engine.add(prompt, p.clone())?;
        let (mut steps, mut first) = (0, None);
        'gen: while engine.num_active() > 0 {
            let events = engine.step()?;
            steps += 1;
            for (s, e) in events {
                if let (true, Event::Audio(col)) = (s == id, e) {
                    let frames = rev.push(col);
                    if frames.is_empty() {
                        continue;
                    }
                    let audio = dec.push(&rev.rows(&frames))?;
                    if !audio.is_empty() {
                        first = Some((t.elapsed().as_secs_f64(), audio.len()));
                        break 'gen;
                    }
                }
            }
        }
        drain(engine, &[id])?;
        if round == 1 {
            match first {
                Some((s, n)) => println!(
                    "first audio   {:>9.1} ms   ({} prompt tokens, {steps} engine steps, first chunk {n} samples = {:.0} ms of audio, codec on {})",
                    1e3 * s,
                    prompt.ids.len(),
                    1e3 * n as f64 / 24_000.0,
                    if device.is_cpu() { "cpu" } else { "cuda" }
                ),
                None => println!("first audio   none: the request ended before its first chunk"),
            }
        }
    }
    Ok(())
}

/// Weight bytes one audio decode step reads at batch 1: per layer what an audio row touches
/// (dual: attention + audio norms + audio FFN; fast-forward: nothing; plain: everything), then
/// the final norm and the audio head. Embedding rows (8 per column) are negligible.
pub fn audio_step_weight_bytes(w: &ModelWeights) -> usize {
    let bytes = |ts: &[&Tensor]| {
        ts.iter()
            .map(|t| t.elem_count() * t.dtype().size_bytes())
            .sum::<usize>()
    };
    let mut n = bytes(&[&w.norm, &w.audio_head]);
    for l in &w.layers {
        let attn = bytes(&[&l.qkv, &l.o]);
        n += match (l.kind, &l.audio) {
            (LayerKind::FastForward, _) => 0,
            (LayerKind::Dual, Some(a)) => {
                let f = a.ffn.as_ref().unwrap_or(&l.ffn);
                attn + bytes(&[&a.input_norm, &a.post_norm, &f.gate_up, &f.down])
            }
            _ => attn + bytes(&[&l.input_norm, &l.post_norm, &l.ffn.gate_up, &l.ffn.down]),
        };
    }
    n
}

/// Peak memory bandwidth of a GPU picked by its name: (label, bytes/s).
pub fn gpu_bandwidth(name: &str) -> Option<(&'static str, f64)> {
    let n = name.to_ascii_uppercase();
    if n.contains("H200") {
        Some(("H200 HBM3e", 4.8e12))
    } else if n.contains("H100") {
        Some(("H100 HBM3", 3.35e12))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_is_picked_by_name() {
        assert_eq!(
            gpu_bandwidth("NVIDIA H100 80GB HBM3").map(|b| b.1),
            Some(3.35e12)
        );
        assert_eq!(gpu_bandwidth("NVIDIA H200").map(|b| b.1), Some(4.8e12));
        assert_eq!(gpu_bandwidth("NVIDIA A100-SXM4-80GB"), None);
    }

    #[test]
    fn audio_step_reads_attention_and_audio_ffn_per_dual_layer() {
        let cfg = shape_config("small").unwrap();
        let w = ModelWeights::random(&cfg, DType::BF16, 1, 0.02).unwrap();
        let (h, f, kv, q) = (cfg.hidden, cfg.ffn, cfg.kv_dim(), cfg.q_dim());
        let per_layer = 2 * (2 * q * h + 2 * kv * h + 3 * f * h + 2 * h);
        let heads = 2 * (h + cfg.n_codebooks * cfg.codebook_rows() * h);
        assert_eq!(
            audio_step_weight_bytes(&w),
            cfg.n_layers * per_layer + heads
        );
    }
}
