//! `higgs bench --dual-ffn`: the routing counters of mixed steps, and the three DualFFN
//! execution strategies (routed, masked, sub-batch; `model/dual_ffn.rs`) timed on the same
//! steps across audio fractions and batch sizes, with their outputs compared.
//! May use: model, kv, tensor, bench; anyhow allowed.

use super::report::StrategyRow;
use super::synthetic::{audio_row, decode_step, is_audio_row, text_row, BLOCK_SIZE};
use super::timing::time_per_call;
use crate::model::{DualFfnStrategy, ForwardOptions, Model, RoutingStats};

/// What to sweep.
pub struct Sweep {
    pub batches: Vec<usize>,
    pub audio_percents: Vec<usize>,
    /// Position of every row (keys attended: ctx + 1).
    pub ctx: usize,
    pub min_s: f64,
}

/// Prints the per-layer routing of one step of `batch` rows at `audio_percent` (routed).
pub fn print_routing(
    model: &Model,
    batch: usize,
    audio_percent: usize,
    ctx: usize,
) -> anyhow::Result<RoutingStats> {
    model.set_dual_ffn_strategy(DualFfnStrategy::Routed);
    let step = mixed_step(model, batch, audio_percent, ctx);
    let mut kv = model.try_new_kv_cache(step.num_blocks, BLOCK_SIZE)?;
    model.reset_routing_stats();
    model.forward(&step.inputs, &mut kv, &ForwardOptions::default())?;
    let st = model.routing_stats();
    println!("routing of one step: batch {batch}, {audio_percent}% audio rows (routed)");
    println!("  layer  kind          text rows  audio rows  FFN rows  FFN weights read  attention weights read");
    for (i, l) in st.layers.iter().enumerate() {
        println!(
            "  {i:>5}  {:<12}  {:>9}  {:>10}  {:>8}  {:>13.2} MB  {:>19.2} MB",
            format!("{:?}", model.cfg.layer_kinds[i]),
            l.text_rows,
            l.audio_rows,
            l.ffn_rows,
            l.ffn_weight_bytes as f64 / 1e6,
            l.attn_weight_bytes as f64 / 1e6
        );
    }
    let t = st.totals();
    println!(
        "  total  {:<12}  {:>9}  {:>10}  {:>8}  {:>13.2} MB  {:>19.2} MB",
        "",
        t.text_rows,
        t.audio_rows,
        t.ffn_rows,
        t.ffn_weight_bytes as f64 / 1e6,
        t.attn_weight_bytes as f64 / 1e6
    );
    Ok(st)
}

fn mixed_step(
    model: &Model,
    batch: usize,
    audio_percent: usize,
    ctx: usize,
) -> super::synthetic::SyntheticStep {
    let cfg = &model.cfg;
    let n_audio = (batch * audio_percent + 50) / 100;
    let rows = (0..batch)
        .map(|i| {
            if is_audio_row(i, batch, n_audio) {
                audio_row(i, cfg.n_codebooks, cfg.codebook_size)
            } else {
                text_row(i)
            }
        })
        .collect();
    decode_step(rows, ctx)
}

/// Every (batch, audio %, strategy): time per forward step, routing counters, and the largest
/// difference of the final hidden states from the routed strategy's on the same step.
pub fn compare(model: &Model, sweep: &Sweep) -> anyhow::Result<Vec<StrategyRow>> {
    let mut out = Vec::new();
    let opts = ForwardOptions::default();
    for &batch in &sweep.batches {
        let step0 = mixed_step(model, batch, 0, sweep.ctx);
        let mut kv = model.try_new_kv_cache(step0.num_blocks, BLOCK_SIZE)?;
        for &pct in &sweep.audio_percents {
            let step = mixed_step(model, batch, pct, sweep.ctx);
            let n_audio = step.inputs.rows.iter().filter(|r| r.is_audio()).count();
            let mut reference: Option<Vec<f32>> = None;
            for s in DualFfnStrategy::ALL {
                model.set_dual_ffn_strategy(s);
                let hidden = model
                    .forward(&step.inputs, &mut kv, &opts)?
                    .hidden
                    .to_f32_vec()?;
                let routing = model.last_step_routing().totals();
                let diff = match &reference {
                    None => 0.0,
                    Some(r) => r
                        .iter()
                        .zip(&hidden)
                        .map(|(a, b)| f64::from((a - b).abs()))
                        .fold(0.0, f64::max),
                };
                if reference.is_none() {
                    reference = Some(hidden);
                }
                let time_s = time_per_call(model.device(), sweep.min_s, 1000, || {
                    model.forward(&step.inputs, &mut kv, &opts)?;
                    Ok(())
                })?;
                out.push(StrategyRow {
                    batch,
                    audio_percent: pct,
                    audio_rows: n_audio,
                    strategy: s.name(),
                    time_s,
                    ffn_rows: routing.ffn_rows,
                    ffn_weight_bytes: routing.ffn_weight_bytes,
                    attn_weight_bytes: routing.attn_weight_bytes,
                    max_abs_diff_vs_routed: diff,
                });
            }
        }
    }
    model.set_dual_ffn_strategy(DualFfnStrategy::Routed);
    Ok(out)
}

/// `higgs bench --dual-ffn [--report DIR]` on `model` (random weights of the shape, with the
/// overrides already applied: `kinds`).
pub(super) fn run(
    a: &super::BenchArgs,
    model: &Model,
    kinds: &[crate::config::LayerKind],
    overrides: &crate::layer_overrides::LayerOverrides,
) -> anyhow::Result<std::process::ExitCode> {
    let batches = a.batches(&[1, 8, 64, 256]);
    let big = batches.iter().copied().max().unwrap_or(1);
    print_routing(model, big, 50, a.prompt_len)?;
    let sweep = Sweep {
        batches,
        audio_percents: a.audio_percent.clone(),
        ctx: a.prompt_len,
        min_s: a.min_time_ms / 1e3,
    };
    let rows = compare(model, &sweep)?;
    let dtype = model.w.embed.dtype();
    let info = super::roofline::run_info(
        a,
        model.device(),
        dtype,
        crate::layer_overrides::describe(kinds, overrides.audio_ffn),
    );
    let md = super::report::write_dual_ffn(a.report.as_deref(), &info, sweep.ctx, &rows)?;
    println!("{md}");
    if let Some(dir) = &a.report {
        eprintln!(
            "wrote {}/report.json, report.md, dual_ffn.svg",
            dir.display()
        );
    }
    Ok(std::process::ExitCode::SUCCESS)
}
