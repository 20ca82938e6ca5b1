//! `higgs bench serve`: the serving stack under open-loop load. Requests arrive as a Poisson
//! process at `--rate` per second (arrivals do not wait for completions), with prompt,
//! voice-reuse and output-length distributions, through the engine thread handle, exactly as
//! the HTTP server drives it; every stream is read on its own thread. Reports throughput,
//! time to first audio, playback underruns (a chunk that arrives after the audio already
//! delivered to its stream has run out, playback starting at the first chunk), the prefix
//! cache's hit rate, the share of decode rows served by CUDA graphs, and the host time per
//! step (scheduling and bookkeeping, excluding the forward and heads). Random weights of a
//! named shape; a random codec (released size with `--shape real`, else a small one).
//! May use: engine, model, codec, bench; anyhow allowed.

use crate::codec::{config::CodecConfig, model::AudioTokenizer, weights};
use crate::engine::{
    EngineConfig, EngineHandle, EngineParts, GenerationParams, HandleConfig, RequestEvent,
    TtsInput, TtsRequest,
};
use crate::model::{Model, ModelWeights};
use crate::prompt::{AudioKind, ModelInput, Placeholder, Segment};
use crate::sampling::processors::SamplingParams;
use crate::tensor::{DType, Device};
use crate::tokenizer::TextTokenizer;
use anyhow::{bail, Context};
use rand::{Rng, SeedableRng};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Flags of `higgs bench serve` (with `--shape`, `--device`, `--dtype`).
#[derive(clap::Args, Clone, Debug)]
pub struct ServeBenchArgs {
    /// Requests to send.
    #[arg(long, default_value_t = 64)]
    pub requests: usize,
    /// Mean arrival rate, requests per second (Poisson).
    #[arg(long, default_value_t = 4.0)]
    pub rate: f64,
    /// Seed of the arrival times, prompts, voices and lengths.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Distinct voice prompts; each request uses one with probability --voice-reuse.
    #[arg(long, default_value_t = 4)]
    pub voices: usize,
    #[arg(long, default_value_t = 0.8)]
    pub voice_reuse: f64,
    /// Seconds of audio in each voice prompt (25 frames per second).
    #[arg(long, default_value_t = 10.0)]
    pub voice_seconds: f64,
    /// Text prompt length range in tokens, `MIN,MAX`.
    #[arg(long, value_delimiter = ',', default_value = "8,64")]
    pub text_tokens: Vec<usize>,
    /// Output length range in codec frames, `MIN,MAX` (25 frames = 1 s).
    #[arg(long, value_delimiter = ',', default_value = "25,100")]
    pub output_frames: Vec<usize>,
    /// Sequences running at once.
    #[arg(long, default_value_t = 256)]
    pub max_num_seqs: usize,
    /// Rows per engine step.
    #[arg(long, default_value_t = 2048)]
    pub max_num_batched_tokens: usize,
    /// KV cache size in positions.
    #[arg(long, default_value_t = 262_144)]
    pub kv_positions: usize,
    /// Prefix cache off (to measure what it saves).
    #[arg(long)]
    pub no_prefix_cache: bool,
    /// Measure `higgs serve`'s overhead: run one speech workload twice on fresh engines, once
    /// submitted to the engine handle directly and once as HTTP requests to the server on
    /// 127.0.0.1 (streamed PCM), and print both lines and their ratios.
    #[arg(long)]
    pub http: bool,
    /// With --http: rounds of (engine, HTTP), alternating which goes first; the medians of the
    /// per-round ratios are printed.
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
}

const MAX_REQUESTS: usize = 100_000;

fn range(v: &[usize], what: &str) -> anyhow::Result<(usize, usize)> {
    match v {
        [a, b] if a <= b && *b > 0 && *b <= 100_000 => Ok((*a, *b)),
        _ => bail!("--{what} {v:?}: give MIN,MAX with MIN <= MAX <= 100000"),
    }
}

/// A codec for the benchmark: the released sizes, or a narrow one (decoder width 64) whose
/// CPU decode keeps up with a small model.
pub(super) fn codec(released: bool, device: &Device) -> anyhow::Result<AudioTokenizer> {
    let mut cfg = CodecConfig::released();
    if !released {
        cfg.decoder_channels = 64;
    }
    let w = weights::random_decode_weights(&cfg, 7);
    Ok(AudioTokenizer::from_weights(cfg, w)?.to_device(device)?)
}

/// Timeline of one request, seen by its reader.
#[derive(Default)]
pub(super) struct Trace {
    pub ttfa_s: Option<f64>,
    pub underruns: usize,
    pub frames: usize,
    pub samples: usize,
    pub ok: bool,
}

pub(super) fn read_stream(mut s: crate::engine::EventStream, sent: Instant, rate: f64) -> Trace {
    let mut t = Trace::default();
    let mut first: Option<Instant> = None;
    let mut delivered_s = 0.0;
    loop {
        match s.blocking_next() {
            Some(RequestEvent::Audio(pcm)) => {
                let now = Instant::now();
                match first {
                    None => {
                        first = Some(now);
                        t.ttfa_s = Some((now - sent).as_secs_f64());
                    }
                    Some(f0) => {
                        if (now - f0).as_secs_f64() > delivered_s {
                            t.underruns += 1;
                        }
                    }
                }
                delivered_s += pcm.len() as f64 / rate;
                t.samples += pcm.len();
            }
            Some(RequestEvent::Codes(rows)) => t.frames += rows.first().map_or(0, Vec::len),
            Some(RequestEvent::Text(_)) => {}
            Some(RequestEvent::Finished { .. }) => {
                t.ok = true;
                return t;
            }
            Some(RequestEvent::Failed(e)) => {
                eprintln!("request failed: {e}");
                return t;
            }
            None => return t,
        }
    }
}

pub(super) fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// The flags' values checked; the text-token and output-frame ranges.
pub(super) fn checked_ranges(
    a: &ServeBenchArgs,
) -> anyhow::Result<((usize, usize), (usize, usize))> {
    if a.requests == 0 || a.requests > MAX_REQUESTS {
        bail!("--requests {}: must be in 1..={MAX_REQUESTS}", a.requests);
    }
    if !(a.rate > 0.0 && a.rate.is_finite()) {
        bail!("--rate {}: must be > 0", a.rate);
    }
    if !(0.0..=1.0).contains(&a.voice_reuse) || !(0.0..=600.0).contains(&a.voice_seconds) {
        bail!("--voice-reuse must be in [0, 1] and --voice-seconds in [0, 600]");
    }
    if a.kv_positions == 0 || a.kv_positions > super::MAX_KV_TOKENS {
        bail!(
            "--kv-positions {}: must be in 1..={}",
            a.kv_positions,
            super::MAX_KV_TOKENS
        );
    }
    Ok((
        range(&a.text_tokens, "text-tokens")?,
        range(&a.output_frames, "output-frames")?,
    ))
}

pub fn run(shape: &str, dtype: DType, device: Device, a: &ServeBenchArgs) -> anyhow::Result<()> {
    if a.http {
        return super::http::run(shape, dtype, device, a);
    }
    let ((t_lo, t_hi), (f_lo, f_hi)) = checked_ranges(a)?;
    let cfg = super::shape_config(shape)?;
    let block_size = 16;
    let engine_cfg = EngineConfig {
        num_blocks: a.kv_positions.div_ceil(block_size),
        block_size,
        max_num_batched_tokens: a.max_num_batched_tokens,
        max_num_seqs: a.max_num_seqs,
        prefix_caching: !a.no_prefix_cache,
    };
    let released = shape == "real";
    let dev = device.clone();
    let t0 = Instant::now();
    let cfg2 = cfg.clone();
    let handle = EngineHandle::spawn(
        move || {
            let w = ModelWeights::random_on(&cfg2, dtype, 1234, 0.02, &dev)?;
            let codec = codec(released, &dev).map_err(|e| crate::Error::Other(e.to_string()))?;
            // The requests come collated; the tokenizer is only named, never used.
            let tok = TextTokenizer::from_bytes(include_bytes!(
                "../../tests/fixtures/toy-tokenizer.json"
            ))?;
            Ok(EngineParts {
                model: Arc::new(Model::new(cfg2, w)),
                codec,
                tokenizer: Arc::new(tok),
                config: engine_cfg,
            })
        },
        HandleConfig {
            max_queue: a.requests + 1,
        },
    )
    .context("starting the engine")?;
    eprintln!(
        "serve bench: {shape} model and {} codec on {} in {:.1} s",
        if released { "released-size" } else { "small" },
        if device.is_cpu() {
            "cpu".into()
        } else {
            device.name()
        },
        t0.elapsed().as_secs_f64()
    );

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let voice_frames = (a.voice_seconds * 25.0).round() as usize;
    let voices: Vec<Vec<Vec<u32>>> = (0..a.voices)
        .map(|_| {
            (0..cfg.n_codebooks)
                .map(|_| {
                    (0..voice_frames)
                        .map(|_| rng.gen_range(0..cfg.codebook_size as u32))
                        .collect()
                })
                .collect()
        })
        .collect();
    let make = |rng: &mut rand_chacha::ChaCha8Rng, i: usize| -> TtsRequest {
        let mut ids = vec![cfg.bos_token];
        let mut audio_out = Vec::new();
        let mut placeholders = Vec::new();
        if !voices.is_empty() && voice_frames > 0 && rng.gen_bool(a.voice_reuse) {
            let v = rng.gen_range(0..voices.len());
            ids.extend([11, 12, 13]);
            placeholders.push(Placeholder {
                position: ids.len(),
                kind: AudioKind::Out,
                audio_index: 0,
                kind_index: 0,
                filled: true,
            });
            ids.push(cfg.audio_out_token);
            audio_out.push(Segment {
                label: format!("voice{v}"),
                frames: voice_frames,
                codes: voices[v].clone(),
                columns: Vec::new(),
            });
        }
        let n_text = rng.gen_range(t_lo..=t_hi);
        ids.extend((0..n_text).map(|_| rng.gen_range(20..1000u32)));
        let frames = rng.gen_range(f_lo..=f_hi);
        // Greedy with the stream EOS suppressed: every request yields exactly its frames.
        let mut gen = GenerationParams::new(frames + cfg.n_codebooks + 1, vec![]);
        gen.sampling = SamplingParams::greedy();
        gen.ras_win_len = 0;
        gen.suppress_audio = vec![cfg.stream_eos as usize];
        gen.seed = Some(i as u64);
        let mut r = TtsRequest::new(
            TtsInput::Collated(ModelInput {
                ids,
                placeholders,
                audio_in: Some(Vec::new()),
                audio_out,
            }),
            gen,
        );
        r.force_audio = true;
        r
    };
    let reqs: Vec<TtsRequest> = (0..a.requests).map(|i| make(&mut rng, i)).collect();
    let gaps: Vec<f64> = (0..a.requests)
        .map(|_| -(1.0 - rng.gen::<f64>()).ln() / a.rate)
        .collect();

    let sample_rate = handle.sample_rate() as f64;
    let start = Instant::now();
    let mut readers = Vec::with_capacity(a.requests);
    let mut due = 0.0;
    for (req, gap) in reqs.into_iter().zip(gaps) {
        due += gap;
        let wait = due - start.elapsed().as_secs_f64();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        let sent = Instant::now();
        let s = handle.submit(req).context("submitting")?;
        readers.push(std::thread::spawn(move || {
            read_stream(s, sent, sample_rate)
        }));
    }
    let traces: Vec<Trace> = readers
        .into_iter()
        .map(|r| r.join().unwrap_or_default())
        .collect();
    let wall = start.elapsed().as_secs_f64();
    handle.wait_idle(Duration::from_secs(10));
    let st = handle.stats();
    let ok = traces.iter().filter(|t| t.ok).count();
    let frames: usize = traces.iter().map(|t| t.frames).sum();
    let samples: usize = traces.iter().map(|t| t.samples).sum();
    let underruns: usize = traces.iter().map(|t| t.underruns).sum();
    let mut ttfa: Vec<f64> = traces.iter().filter_map(|t| t.ttfa_s).collect();
    let p50 = percentile(&mut ttfa, 0.5) * 1e3;
    let p99 = percentile(&mut ttfa, 0.99) * 1e3;
    let e = st.engine;
    let graph_pct = if e.decode_rows == 0 {
        0.0
    } else {
        100.0 * e.graph_decode_rows as f64 / e.decode_rows as f64
    };
    let host_us = if e.steps == 0 {
        0.0
    } else {
        1e6 * e.host_s / e.steps as f64
    };
    let running = if e.steps == 0 {
        0.0
    } else {
        e.seqs_scheduled as f64 / e.steps as f64
    };
    eprintln!(
        "{ok}/{} requests completed; {} engine steps, {} preemptions, {} prefill rows saved by \
         the prefix cache, {} codec calls for {} windows",
        a.requests,
        e.steps,
        st.sched.preemptions,
        st.sched.prefill_rows_saved,
        st.codec_decode_calls,
        st.codec_windows
    );
    println!(
        "serve bench: {} requests, {:.0} frames/s, {:.2} audio-s/s, TTFA p50 {:.0} ms p99 {:.0} \
         ms, underruns {underruns}, prefix hit {:.0}%, graph rows {graph_pct:.0}%, host {:.0} \
         us/step at {running:.0} running",
        a.requests,
        frames as f64 / wall,
        samples as f64 / sample_rate / wall,
        p50,
        p99,
        100.0 * st.prefix.hit_rate(),
        host_us,
    );
    if ok < a.requests {
        bail!("{} of {} requests failed", a.requests - ok, a.requests);
    }
    Ok(())
}
