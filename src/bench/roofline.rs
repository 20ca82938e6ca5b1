//! `higgs bench --kernels [--report DIR]` on the roofline: measure the peaks, time every op of
//! a decode step and a prefill chunk at each batch (`kernel_report.rs`), print the Markdown
//! table and write the report files. May use: bench, model, weights; anyhow allowed.

use super::kernel_report::{act_name, measure_phase, one_layer, ReportSizes};
use super::report::{write_roofline, RunInfo};
use super::{peaks, shape_config, BenchArgs};
use crate::layer_overrides::{describe, LayerOverrides};
use crate::model::ModelWeights;
use crate::tensor::{DType, Device};
use anyhow::Context;
use std::process::ExitCode;

/// The context every report names.
pub(super) fn run_info(a: &BenchArgs, device: &Device, dtype: DType, layers: String) -> RunInfo {
    let device_name = if device.is_cpu() {
        "cpu".to_string()
    } else {
        format!("cuda ({})", device.name())
    };
    RunInfo {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        shape: a.shape.clone(),
        device: device_name,
        weight_dtype: dtype.name().into(),
        activation_dtype: act_name(device, dtype).into(),
        commit: option_env!("HIGGS_COMMIT").unwrap_or("?").into(),
        threads: rayon::current_num_threads(),
        layers,
    }
}

pub(super) fn run(
    a: &BenchArgs,
    dtype: DType,
    device: &Device,
    overrides: &LayerOverrides,
) -> anyhow::Result<ExitCode> {
    let full = shape_config(&a.shape)?;
    let kinds = overrides.layer_kinds(&full, |i| full.has_audio_ffn(i))?;
    // One layer's weights: per-layer ops are timed on it and counted n_layers times.
    let cfg = one_layer(&full);
    // Packed for the CPU GEMM as `Model::new` does, so each matmul is timed as the engine runs it.
    let w = ModelWeights::random_on(&cfg, dtype, 1234, 0.02, device)
        .context("building random weights")?
        .pack_linears_for_cpu();
    device.synchronize()?;
    let min_s = a.min_time_ms / 1e3;
    let cuda = !device.is_cpu();
    let copy_bytes = a.peak_copy_mib.unwrap_or(if cuda { 1024 } else { 256 }) << 20;
    let n = a.peak_gemm.unwrap_or(if cuda { 8192 } else { 1024 });
    eprintln!(
        "measuring peaks: copy of {} MiB, {n}^3 GEMM",
        copy_bytes >> 20
    );
    let peak_s = min_s.max(0.05);
    let before = peaks::measure(device, dtype, copy_bytes, n, peak_s)?;
    let sizes = ReportSizes {
        batches: a.batches(&[1, 64, 256]),
        decode_ctx: a.prompt_len,
        min_s,
    };
    let mut rows = Vec::new();
    for phase in ["decode", "prefill"] {
        for &b in &sizes.batches {
            eprintln!("timing {phase} ops at batch {b}");
            rows.extend(measure_phase(&full, &w, device, phase, b, &sizes)?);
        }
    }
    // Peaks again after the ops, keeping the higher of each: a machine shared with other work
    // (or still clocking up) is not caught at its peak by one measurement.
    eprintln!("measuring peaks again");
    let peaks = before.max(&peaks::measure(device, dtype, copy_bytes, n, peak_s)?);
    let info = run_info(a, device, dtype, describe(&kinds, overrides.audio_ffn));
    let md = write_roofline(a.report.as_deref(), &info, &peaks, sizes.decode_ctx, &rows)?;
    if let Some(dir) = &a.report {
        eprintln!(
            "wrote {}/report.json, report.md, roofline.svg",
            dir.display()
        );
    }
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}
