//! Files of `higgs bench ... --report DIR`: `report.json` (every measured number and the
//! run's context), `report.md` (the same as Markdown tables) and an SVG chart, for the kernel
//! roofline and for the DualFFN strategy comparison. May use: bench; anyhow allowed.

pub mod chart;

use super::kernel_report::OpRow;
use super::peaks::Peaks;
use anyhow::Context;
use std::fmt::Write as _;
use std::path::Path;

/// Where and how a report was measured.
#[derive(Clone, Debug, serde::Serialize)]
pub struct RunInfo {
    pub command: String,
    pub shape: String,
    pub device: String,
    pub weight_dtype: String,
    pub activation_dtype: String,
    pub commit: String,
    pub threads: usize,
    /// Load-time DualFFN overrides in force (the layer table).
    pub layers: String,
}

impl RunInfo {
    fn markdown_header(&self, title: &str) -> String {
        format!(
            "# {title}\n\n`{}`: shape {}, device {}, weights {}, activations {}, commit {}, {} CPU threads; {}.\n\n",
            self.command,
            self.shape,
            self.device,
            self.weight_dtype,
            self.activation_dtype,
            self.commit,
            self.threads,
            self.layers
        )
    }
}

/// A measured op with its roofline position.
#[derive(Clone, Debug, serde::Serialize)]
struct RooflineRow<'a> {
    #[serde(flatten)]
    row: &'a OpRow,
    gb_per_s: f64,
    gflop_per_s: f64,
    flop_per_byte: f64,
    frac_peak_bandwidth: f64,
    frac_peak_flops: f64,
    /// "memory" below the ridge point (intensity < peak FLOP/s / peak B/s), else "compute".
    bound: &'static str,
}

/// Per (phase, batch): the sum over the step's calls.
#[derive(Clone, Debug, serde::Serialize)]
struct StepTotal {
    phase: &'static str,
    batch: usize,
    time_s: f64,
    bytes: f64,
    flops: f64,
}

fn step_totals(rows: &[OpRow]) -> Vec<StepTotal> {
    let mut out: Vec<StepTotal> = Vec::new();
    for r in rows {
        let c = r.calls_per_step as f64;
        match out
            .iter_mut()
            .find(|t| t.phase == r.phase && t.batch == r.batch)
        {
            Some(t) => {
                t.time_s += c * r.time_s;
                t.bytes += c * r.bytes;
                t.flops += c * r.flops;
            }
            None => out.push(StepTotal {
                phase: r.phase,
                batch: r.batch,
                time_s: c * r.time_s,
                bytes: c * r.bytes,
                flops: c * r.flops,
            }),
        }
    }
    out
}

fn human_bytes(b: f64) -> String {
    match b {
        b if b >= 1e9 => format!("{:.2} GB", b / 1e9),
        b if b >= 1e6 => format!("{:.2} MB", b / 1e6),
        b if b >= 1e3 => format!("{:.1} kB", b / 1e3),
        b => format!("{b:.0} B"),
    }
}

fn human_flops(f: f64) -> String {
    match f {
        f if f >= 1e9 => format!("{:.2} G", f / 1e9),
        f if f >= 1e6 => format!("{:.2} M", f / 1e6),
        f if f >= 1e3 => format!("{:.1} k", f / 1e3),
        f => format!("{f:.0}"),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let p = dir.join(name);
    std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))
}

/// Writes report.json, report.md and roofline.svg into `dir` (None: only renders the
/// Markdown); returns the Markdown.
pub fn write_roofline(
    dir: Option<&Path>,
    info: &RunInfo,
    peaks: &Peaks,
    decode_ctx: usize,
    rows: &[OpRow],
) -> anyhow::Result<String> {
    let (pbw, pfl) = (peaks.bandwidth_bytes_per_s, peaks.flops_per_s);
    let ridge = pfl / pbw;
    let table: Vec<RooflineRow<'_>> = rows
        .iter()
        .map(|r| RooflineRow {
            row: r,
            gb_per_s: r.gb_per_s(),
            gflop_per_s: r.gflop_per_s(),
            flop_per_byte: r.intensity(),
            frac_peak_bandwidth: r.bytes / r.time_s / pbw,
            frac_peak_flops: r.flops / r.time_s / pfl,
            bound: if r.intensity() < ridge {
                "memory"
            } else {
                "compute"
            },
        })
        .collect();
    let totals = step_totals(rows);
    let json = serde_json::json!({
        "kind": "roofline",
        "run": info,
        "peaks": peaks,
        "ridge_flop_per_byte": ridge,
        "decode_context": decode_ctx,
        "ops": table,
        "steps": totals,
    });
    let mut md = info.markdown_header("Roofline report");
    let _ = writeln!(
        md,
        "Peaks measured in this run (the higher of a measurement before and after the ops): bandwidth **{:.1} GB/s** (copy of {}), compute **{:.1} GFLOP/s** \
         ({n}x{n}x{n} GEMM, {} x {} weights); ridge point {ridge:.2} FLOP/byte. Decode rows attend \
         over {} keys; a prefill chunk is one sequence's first `batch` tokens. Per-layer ops are timed on layer 0; \
         `calls` is per step of the whole model.\n",
        pbw / 1e9,
        human_bytes(peaks.copy_bytes as f64),
        pfl / 1e9,
        peaks.gemm_activation_dtype,
        peaks.gemm_weight_dtype,
        decode_ctx + 1,
        n = peaks.gemm_n,
    );
    let _ = writeln!(
        md,
        "The bandwidth peak is a copy far larger than the caches: an op whose operands stay in \
         cache (small activations) can pass 100% of it. Times are the fastest of three rounds.\n"
    );
    let _ = writeln!(md, "| phase | batch | op | calls | us/call | bytes | FLOPs | GB/s | GFLOP/s | % peak BW | % peak FLOP/s | FLOP/B | bound |");
    let _ = writeln!(
        md,
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    );
    for t in &table {
        let r = t.row;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {:.1} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.2} | {} |",
            r.phase,
            r.batch,
            r.op,
            r.calls_per_step,
            1e6 * r.time_s,
            human_bytes(r.bytes),
            human_flops(r.flops),
            t.gb_per_s,
            t.gflop_per_s,
            100.0 * t.frac_peak_bandwidth,
            100.0 * t.frac_peak_flops,
            t.flop_per_byte,
            t.bound
        );
    }
    let _ = writeln!(md, "\nSum over one step (every call of every op above):\n");
    let _ = writeln!(
        md,
        "| phase | batch | ms/step | bytes | FLOPs | GB/s | GFLOP/s |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    for t in &totals {
        let _ = writeln!(
            md,
            "| {} | {} | {:.3} | {} | {} | {:.2} | {:.2} |",
            t.phase,
            t.batch,
            1e3 * t.time_s,
            human_bytes(t.bytes),
            human_flops(t.flops),
            t.bytes / t.time_s / 1e9,
            t.flops / t.time_s / 1e9
        );
    }
    let Some(dir) = dir else {
        return Ok(md);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = writeln!(md, "\n![roofline](roofline.svg)");
    write(dir, "report.json", &serde_json::to_string_pretty(&json)?)?;
    write(dir, "report.md", &md)?;

    let mut series: Vec<chart::Series> = Vec::new();
    for t in &totals {
        series.push(chart::Series {
            name: format!("{} batch {}", t.phase, t.batch),
            points: rows
                .iter()
                .filter(|r| r.phase == t.phase && r.batch == t.batch && r.flops > 0.0)
                .map(|r| (r.intensity(), r.gflop_per_s()))
                .collect(),
        });
    }
    chart::roofline(
        &dir.join("roofline.svg"),
        &format!("roofline: {} shape, {}", info.shape, info.device),
        pbw / 1e9,
        pfl / 1e9,
        &series,
    )?;
    Ok(md)
}

/// One (batch, audio fraction, strategy) measurement of `higgs bench --dual-ffn`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StrategyRow {
    pub batch: usize,
    pub audio_percent: usize,
    pub audio_rows: usize,
    pub strategy: &'static str,
    /// Seconds per forward step (whole model, heads excluded).
    pub time_s: f64,
    /// Routing counters of the step: FFN rows, FFN and attention weight bytes read.
    pub ffn_rows: u64,
    pub ffn_weight_bytes: u64,
    pub attn_weight_bytes: u64,
    /// Largest |difference| of the step's final hidden states from the routed strategy's.
    pub max_abs_diff_vs_routed: f64,
}

/// Writes report.json, report.md and dual_ffn.svg into `dir` (or only renders the Markdown
/// table when `dir` is None); returns the Markdown.
pub fn write_dual_ffn(
    dir: Option<&Path>,
    info: &RunInfo,
    ctx: usize,
    rows: &[StrategyRow],
) -> anyhow::Result<String> {
    let mut md = info.markdown_header("DualFFN execution strategies");
    let _ = writeln!(
        md,
        "One forward step of `batch` sequences (one row each, at position {ctx}); `audio %` of the rows are audio, \
         interleaved with text. routed = gather/scatter per modality (default); masked = both FFNs on every row, \
         then a per-row select (the reference vLLM fork); sub-batch = text and audio rows as two batches through \
         the whole stack. Weight bytes come from the engine's routing counters.\n"
    );
    let _ = writeln!(md, "| batch | audio % | strategy | ms/step | vs routed | FFN rows | FFN weights read | attention weights read | max abs diff vs routed |");
    let _ = writeln!(md, "|---:|---:|---|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let base = rows
            .iter()
            .find(|b| {
                b.batch == r.batch && b.audio_percent == r.audio_percent && b.strategy == "routed"
            })
            .map_or(r.time_s, |b| b.time_s);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.3} | {:.2}x | {} | {} | {} | {:.2e} |",
            r.batch,
            r.audio_percent,
            r.strategy,
            1e3 * r.time_s,
            r.time_s / base,
            r.ffn_rows,
            human_bytes(r.ffn_weight_bytes as f64),
            human_bytes(r.attn_weight_bytes as f64),
            r.max_abs_diff_vs_routed
        );
    }
    let Some(dir) = dir else {
        return Ok(md);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _ = writeln!(md, "\n![DualFFN strategies](dual_ffn.svg)");
    let json = serde_json::json!({
        "kind": "dual_ffn",
        "run": info,
        "position": ctx,
        "rows": rows,
    });
    write(dir, "report.json", &serde_json::to_string_pretty(&json)?)?;
    write(dir, "report.md", &md)?;
    let mut series = Vec::new();
    let mut keys: Vec<(&str, usize)> = Vec::new();
    for r in rows {
        if !keys.contains(&(r.strategy, r.batch)) {
            keys.push((r.strategy, r.batch));
        }
    }
    for (s, b) in keys {
        series.push(chart::Series {
            name: format!("{s}, batch {b}"),
            points: rows
                .iter()
                .filter(|r| r.strategy == s && r.batch == b)
                .map(|r| (r.audio_percent as f64, 1e3 * r.time_s))
                .collect(),
        });
    }
    chart::lines(
        &dir.join("dual_ffn.svg"),
        &format!("DualFFN strategies: {} shape, {}", info.shape, info.device),
        "audio rows (% of the batch)",
        "ms per forward step",
        &series,
    )?;
    Ok(md)
}
