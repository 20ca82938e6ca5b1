//! `higgs serve`: load the model, codec and tokenizer on the engine thread, open the voices,
//! then serve the OpenAI-compatible API (`crate::server`) until SIGTERM or ctrl-c, draining
//! the requests in flight. Prints `listening on http://ADDR` once ready (stdout, one line).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::audio::decode::DecodeLimits;
use crate::engine::{
    EngineConfig, EngineHandle, EngineParts, EnginePool, HandleConfig, LoadSpec, RouterConfig,
};
use crate::prompt::VoiceLibrary;
use crate::server::{AppState, ServerConfig, VoiceStore};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: super::model_flags::ModelFlags,
    /// Preset voices (NAME.wav + NAME.txt, profile.yaml, or config.json), read-only.
    #[arg(long)]
    voices_dir: Option<PathBuf>,
    /// Folder where custom voices persist (one JSON file each); without it they live in memory.
    #[arg(long)]
    voices_store: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// 0 picks a free port (printed when ready).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// CUDA devices to serve on, one engine replica each (e.g. `0,1,2,3`); implies
    /// `--device cuda`. Default: GPU 0 alone.
    #[arg(long, value_delimiter = ',')]
    devices: Vec<usize>,
    /// Engine replicas on the CPU, each with its own KV cache and an equal share of the
    /// host's cores; the weights are loaded once and shared.
    #[arg(long, default_value_t = 1)]
    replicas: usize,
    /// Router: a voice stays on the replica that ran it before while that replica has at most
    /// this many more requests in flight than the least-loaded one.
    #[arg(long, default_value_t = 4)]
    max_imbalance: usize,
    /// The name clients send as `model` (default: the model folder's name or the HF id).
    #[arg(long)]
    served_model_name: Option<String>,
    /// Sequences running at once.
    #[arg(long, default_value_t = 256)]
    max_num_seqs: usize,
    /// Rows per engine step (prefill chunks + decode rows).
    #[arg(long, default_value_t = 2048)]
    max_num_batched_tokens: usize,
    /// Requests in flight (queued or running) per replica before new ones get 429.
    #[arg(long, default_value_t = 1024)]
    max_queue: usize,
    /// KV cache size in tokens (positions) of each replica, shared by its requests.
    #[arg(long, default_value_t = 65536)]
    max_context: usize,
    /// Require `Authorization: Bearer KEY` on /v1 routes (default $HIGGS_API_KEY if set).
    #[arg(long)]
    api_key: Option<String>,
    /// Longest speech `input`, in characters.
    #[arg(long, default_value_t = 4096)]
    max_input_chars: usize,
    /// Largest JSON body (chat requests carry base64 audio), in bytes.
    #[arg(long, default_value_t = 32 << 20)]
    max_body_bytes: usize,
    /// Longest uploaded or inlined clip, in seconds.
    #[arg(long, default_value_t = 60.0)]
    max_clip_seconds: f64,
    /// Generation steps per chunk when a request does not say (25 steps = 1 s of audio).
    #[arg(long, default_value_t = 2048)]
    max_new_tokens: usize,
    /// Wall-clock limit of one request, seconds (queueing included).
    #[arg(long, default_value_t = 600)]
    request_timeout: u64,
    /// After SIGTERM / ctrl-c, how long requests in flight may finish, seconds.
    #[arg(long, default_value_t = 30)]
    shutdown_timeout: u64,
    /// Turn the prefix cache off.
    #[arg(long)]
    no_prefix_cache: bool,
}

/// Sanity bounds of the flags that size allocations.
fn check_args(a: &ServeArgs) -> anyhow::Result<()> {
    // --max-context is checked by `EngineConfig::for_context`.
    let checks: [(&str, usize, usize, usize); 5] = [
        ("--max-num-seqs", a.max_num_seqs, 1, 1 << 16),
        (
            "--max-num-batched-tokens",
            a.max_num_batched_tokens,
            1,
            1 << 20,
        ),
        ("--max-queue", a.max_queue, 1, 1 << 20),
        ("--max-input-chars", a.max_input_chars, 1, 1 << 24),
        ("--max-new-tokens", a.max_new_tokens, 1, 1 << 20),
    ];
    for (flag, v, lo, hi) in checks {
        anyhow::ensure!(
            (lo..=hi).contains(&v),
            "{flag} {v} is out of range ({lo}..={hi})"
        );
    }
    anyhow::ensure!(
        a.max_body_bytes >= 1024 && a.max_body_bytes <= 1 << 31,
        "--max-body-bytes {} is out of range (1024..=2 GiB)",
        a.max_body_bytes
    );
    anyhow::ensure!(
        a.max_clip_seconds.is_finite() && a.max_clip_seconds > 0.0 && a.max_clip_seconds <= 3600.0,
        "--max-clip-seconds {} must be in (0, 3600]",
        a.max_clip_seconds
    );
    anyhow::ensure!(
        (1..=256).contains(&a.replicas),
        "--replicas {} is out of range (1..=256)",
        a.replicas
    );
    if !a.devices.is_empty() {
        anyhow::ensure!(
            a.replicas == 1,
            "--replicas is for the CPU; on CUDA, list the devices with --devices"
        );
        let mut seen = a.devices.clone();
        seen.sort_unstable();
        seen.dedup();
        anyhow::ensure!(
            seen.len() == a.devices.len(),
            "--devices lists a device twice: {:?}",
            a.devices
        );
    } else if a.model.device == "cuda" {
        anyhow::ensure!(
            a.replicas == 1,
            "--replicas is for the CPU; on CUDA, list the devices with --devices"
        );
    }
    Ok(())
}

/// Starts the engine replicas: one per CUDA device, loaded in parallel, each on its own
/// thread; on the CPU the weights load once and `replicas` engines share them, each with
/// `cores / replicas` compute threads.
fn start_engines(a: &ServeArgs, spec: LoadSpec) -> anyhow::Result<EnginePool> {
    let handle_cfg = HandleConfig {
        max_queue: a.max_queue,
    };
    let router = RouterConfig {
        max_imbalance: a.max_imbalance,
    };
    let cuda = !a.devices.is_empty() || a.model.device == "cuda";
    if cuda {
        let spec = if a.devices.len() > 1 {
            spec.resolved()?
        } else {
            spec
        };
        let devices = if a.devices.is_empty() {
            vec![0]
        } else {
            a.devices.clone()
        };
        let handles = std::thread::scope(|s| {
            let jobs: Vec<_> = devices
                .iter()
                .enumerate()
                .map(|(i, &d)| {
                    let mut spec = spec.clone();
                    spec.device = format!("cuda:{d}");
                    s.spawn(move || {
                        EngineHandle::spawn_in(
                            move || spec.load(),
                            handle_cfg,
                            None,
                            format!("higgs-engine-{i}"),
                        )
                        .with_context(|| format!("loading replica {i} on CUDA device {d}"))
                    })
                })
                .collect();
            jobs.into_iter()
                .map(|j| {
                    j.join()
                        .map_err(|_| anyhow::anyhow!("a loader thread panicked"))?
                })
                .collect::<anyhow::Result<Vec<_>>>()
        })?;
        return Ok(EnginePool::new(handles, router)?);
    }
    if a.replicas == 1 {
        let h = EngineHandle::spawn(move || spec.load(), handle_cfg)?;
        return Ok(EnginePool::single(h));
    }
    let parts = spec.load()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = (cores / a.replicas).max(1);
    let mut handles = Vec::with_capacity(a.replicas);
    for i in 0..a.replicas {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(per)
            .thread_name(move |k| format!("higgs-cpu-{i}-{k}"))
            .build()
            .context("starting a replica's compute threads")?;
        let p = EngineParts {
            model: parts.model.clone(),
            codec: parts.codec.clone(),
            tokenizer: parts.tokenizer.clone(),
            config: parts.config,
        };
        handles.push(EngineHandle::spawn_in(
            move || Ok(p),
            handle_cfg,
            Some(Arc::new(pool)),
            format!("higgs-engine-{i}"),
        )?);
    }
    Ok(EnginePool::new(handles, router)?)
}

pub fn run(a: ServeArgs) -> anyhow::Result<std::process::ExitCode> {
    check_args(&a)?;
    let presets = a
        .voices_dir
        .as_deref()
        .map(VoiceLibrary::open)
        .transpose()
        .context("--voices-dir")?;
    let voices = match &a.voices_store {
        Some(d) => VoiceStore::open(d).context("--voices-store")?,
        None => VoiceStore::in_memory(),
    };
    let spec = a.model.load_spec(EngineConfig {
        max_num_batched_tokens: a.max_num_batched_tokens,
        max_num_seqs: a.max_num_seqs,
        prefix_caching: !a.no_prefix_cache,
        ..EngineConfig::for_context(a.max_context)?
    })?;
    let served = a.served_model_name.clone().unwrap_or_else(|| {
        let m = &a.model.model;
        let p = std::path::Path::new(m);
        if p.is_dir() {
            p.canonicalize()
                .ok()
                .and_then(|c| c.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| m.clone())
        } else {
            m.clone()
        }
    });
    let t0 = std::time::Instant::now();
    let engines = start_engines(&a, spec)?;
    let cuda = !a.devices.is_empty() || a.model.device == "cuda";
    eprintln!(
        "higgs serve: loaded `{served}` in {:.1} s ({}, {} replica{})",
        t0.elapsed().as_secs_f64(),
        a.model.describe(cuda),
        engines.len(),
        if engines.len() == 1 { "" } else { "s" }
    );
    let cfg = ServerConfig {
        served_model_name: served.clone(),
        api_key: a
            .api_key
            .clone()
            .or_else(|| std::env::var("HIGGS_API_KEY").ok())
            .filter(|k| !k.is_empty()),
        max_body_bytes: a.max_body_bytes,
        max_input_chars: a.max_input_chars,
        clip_limits: DecodeLimits {
            max_seconds: a.max_clip_seconds,
            ..DecodeLimits::default()
        },
        default_max_new_tokens: a.max_new_tokens,
        max_new_tokens_limit: a.max_new_tokens.max(a.max_context),
        request_timeout: Duration::from_secs(a.request_timeout.max(1)),
        shutdown_timeout: Duration::from_secs(a.shutdown_timeout),
    };
    let state = Arc::new(AppState::new(engines, cfg, presets, voices));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("higgs-http")
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind((a.host.as_str(), a.port))
            .await
            .with_context(|| format!("binding {}:{}", a.host, a.port))?;
        let addr = listener.local_addr()?;
        println!("listening on http://{addr}");
        eprintln!("higgs serve: model `{served}` ready on http://{addr}");
        crate::server::serve(listener, state, shutdown_signal()).await?;
        anyhow::Ok(())
    })?;
    eprintln!("higgs serve: stopped");
    Ok(std::process::ExitCode::SUCCESS)
}

/// SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
