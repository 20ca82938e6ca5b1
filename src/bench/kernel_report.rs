//! `higgs bench --kernels --report DIR`: every op of a decode step and of a prefill chunk at
//! the shape's sizes, timed one at a time through `ops::` on the chosen backend (device sync
//! before the clock stops), with the bytes it must move and the FLOPs it must do counted from
//! its shapes, so each op lands on a roofline against the peaks measured in the same run.
//! Per-layer ops are timed on layer 0 and count `n_layers` calls per step.
//! May use: ops, model, kv, tensor; anyhow allowed.

use super::synthetic::{
    audio_row, decode_step, prefill_chunk, text_row, SyntheticStep, BLOCK_SIZE,
};
use super::timing::time_per_call;
use crate::config::ModelConfig;
use crate::kv::cache::KvCache;
use crate::model::{BatchInputs, FfnWeights, ModelWeights, RowInput};
use crate::ops::{self, AttnMeta, RopeHeads};
use crate::tensor::{DType, Device, Tensor};

/// One op at one (phase, batch): what was measured and what it had to move and compute.
#[derive(Clone, Debug, serde::Serialize)]
pub struct OpRow {
    /// "decode" (one row per sequence) or "prefill" (one sequence's chunk of `batch` tokens).
    pub phase: &'static str,
    pub batch: usize,
    pub op: String,
    /// Calls of this op in one step of the whole model.
    pub calls_per_step: usize,
    /// Seconds per call.
    pub time_s: f64,
    /// Bytes one call must read and write (weights, activations, KV), at the dtypes used.
    pub bytes: f64,
    /// Floating-point operations of one call.
    pub flops: f64,
}

impl OpRow {
    pub fn gb_per_s(&self) -> f64 {
        self.bytes / self.time_s / 1e9
    }
    pub fn gflop_per_s(&self) -> f64 {
        self.flops / self.time_s / 1e9
    }
    /// FLOPs per byte.
    pub fn intensity(&self) -> f64 {
        self.flops / self.bytes.max(1.0)
    }
}

/// Sizes of the report: context of the decode rows, minimum timing per op.
pub struct ReportSizes {
    pub batches: Vec<usize>,
    pub decode_ctx: usize,
    pub min_s: f64,
}

fn tbytes(t: &Tensor) -> f64 {
    (t.elem_count() * t.dtype().size_bytes()) as f64
}

/// One (phase, batch) being measured: the model, the device, and the rows so far.
struct Phase<'a> {
    cfg: &'a ModelConfig,
    w: &'a ModelWeights,
    device: &'a Device,
    phase: &'static str,
    batch: usize,
    min_s: f64,
    act_dtype: DType,
    rows: Vec<OpRow>,
}

impl Phase<'_> {
    /// Bytes per activation element.
    fn act(&self) -> usize {
        self.act_dtype.size_bytes()
    }

    /// Times `f` and records it as `op`.
    fn time(
        &mut self,
        op: impl Into<String>,
        calls: usize,
        bytes: f64,
        flops: f64,
        f: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let time_s = time_per_call(self.device, self.min_s, 10_000, f)?;
        self.rows.push(OpRow {
            phase: self.phase,
            batch: self.batch,
            op: op.into(),
            calls_per_step: calls,
            time_s,
            bytes,
            flops,
        });
        Ok(())
    }

    /// `[batch, cols]` of small varied activations.
    fn act_tensor(&self, cols: usize, scale: f32) -> anyhow::Result<Tensor> {
        let n = self.batch;
        let v: Vec<f32> = (0..n * cols)
            .map(|i| scale * ((i % 97) as f32 / 48.0 - 1.0))
            .collect();
        Ok(Tensor::from_f32_on(
            vec![n, cols],
            &v,
            self.act_dtype,
            self.device,
        )?)
    }

    /// A matmul: `x` [n, k] times `w` [m, k]ᵀ.
    fn gemm(&mut self, name: &str, calls: usize, x: &Tensor, w: &Tensor) -> anyhow::Result<()> {
        let (n, k) = x.dims2();
        let m = w.shape()[0];
        let bytes = tbytes(w) + ((n * k + n * m) * self.act()) as f64;
        self.time(
            format!("matmul {name} [{m}x{k}]"),
            calls,
            bytes,
            2.0 * (n * m * k) as f64,
            || {
                ops::matmul(x, w)?;
                Ok(())
            },
        )
    }
}

/// The step's embedding: the 8-codebook sum of audio rows (decode) or text rows (prefill).
fn embed_ops(p: &mut Phase<'_>, inp: &BatchInputs) -> anyhow::Result<()> {
    let (cfg, w) = (p.cfg, p.w);
    let (n, h, a) = (p.batch, cfg.hidden, p.act());
    let mut codes = Vec::new();
    let mut text_ids = Vec::new();
    for r in &inp.rows {
        match r {
            RowInput::Audio { codes: c, .. } => codes.extend_from_slice(c),
            RowInput::Text(id) => text_ids.push(*id),
        }
    }
    if !codes.is_empty() {
        let nc = cfg.n_codebooks;
        let eb = w.audio_embed.dtype().size_bytes();
        p.time(
            "embed_audio",
            1,
            ((nc * n * h) * eb + n * h * a) as f64,
            (nc * n * h) as f64,
            || {
                let rows = cfg.codebook_rows();
                ops::embed_audio(&w.audio_embed, rows, nc, &codes, cfg.audio_embed_avg)?;
                Ok(())
            },
        )?;
    }
    if !text_ids.is_empty() {
        let eb = w.embed.dtype().size_bytes();
        p.time(
            "embed_text",
            1,
            ((n * h) * eb + n * h * a) as f64,
            0.0,
            || {
                ops::embed_text(&w.embed, &text_ids)?;
                Ok(())
            },
        )?;
    }
    Ok(())
}

/// Norm, Q/K/V, RoPE + KV write, paged attention, O, add + norm of one layer.
fn attention_ops(p: &mut Phase<'_>, step: &SyntheticStep, xh: &Tensor) -> anyhow::Result<()> {
    let (cfg, w) = (p.cfg, p.w);
    let l = &w.layers[0];
    let (n, h, a) = (p.batch, cfg.hidden, p.act());
    let (qd, kvd, layers) = (cfg.q_dim(), cfg.kv_dim(), cfg.n_layers);
    let inp = &step.inputs;
    let nh = (n * h) as f64;
    let norm_bytes = 2.0 * nh * a as f64 + tbytes(&l.input_norm);
    p.time("rmsnorm", layers + 1, norm_bytes, 4.0 * nh, || {
        ops::rmsnorm(xh, &l.input_norm, cfg.rms_eps)?;
        Ok(())
    })?;
    p.gemm("qkv", layers, xh, &l.qkv)?;
    let qkv = p.act_tensor(qd + 2 * kvd, 0.1)?;
    let mut kv = KvCache::new_on(1, step.num_blocks, BLOCK_SIZE, kvd, p.act_dtype, p.device)?;
    let heads = RopeHeads {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
    };
    let inv_freq = cfg.rope_inv_freq();
    let (pos, slots) = (&inp.positions, &inp.slot_mapping);
    p.time(
        "rope_kv_write",
        layers,
        ((2 * qd + 4 * kvd) * n * a) as f64,
        (3 * (qd + kvd) * n) as f64,
        || {
            kv.rope_write_qkv(0, &qkv, heads, pos, &inv_freq, slots)?;
            Ok(())
        },
    )?;
    // Keys each row attends over; keys read at least once (a decode row's own context, a
    // prefill chunk's positions once for all its rows).
    let sum_keys: f64 = inp.positions.iter().map(|&p| p as f64 + 1.0).sum();
    let distinct_keys = if p.phase == "decode" {
        sum_keys
    } else {
        n as f64
    };
    let meta = AttnMeta {
        block_size: inp.block_size,
        block_tables: &inp.block_tables,
        max_blocks: inp.max_blocks,
        query_seq: &inp.query_seq,
        query_pos: &inp.positions,
    };
    let xq = p.act_tensor(qd, 0.1)?;
    let (nq, nkv, hd) = (cfg.n_heads, cfg.n_kv_heads, cfg.head_dim);
    p.time(
        "paged_attention",
        layers,
        distinct_keys * (2 * kvd * a) as f64 + (2 * n * qd * a) as f64,
        4.0 * (nq * hd) as f64 * sum_keys,
        || {
            ops::paged_attention(&xq, &kv.k[0], &kv.v[0], nq, nkv, hd, &meta, None)?;
            Ok(())
        },
    )?;
    p.gemm("o", layers, &xq, &l.o)?;
    let mut resid = p.act_tensor(h, 0.5)?;
    let r = p.act_tensor(h, 0.25)?;
    let bytes = 4.0 * nh * a as f64 + tbytes(&l.post_norm);
    p.time("add_rmsnorm", layers, bytes, 5.0 * nh, || {
        ops::add_rmsnorm(&mut resid, &r, &l.post_norm, cfg.rms_eps)?;
        Ok(())
    })
}

/// Gate, up, SiLU·mul, down and the residual add of one layer (the audio FFN in a decode
/// step of audio rows, the text FFN in a prefill chunk of text; both have the same shapes).
fn ffn_ops(p: &mut Phase<'_>, xh: &Tensor) -> anyhow::Result<()> {
    let (cfg, w) = (p.cfg, p.w);
    let l = &w.layers[0];
    let (n, h, f, a, layers) = (p.batch, cfg.hidden, cfg.ffn, p.act(), cfg.n_layers);
    let ffn_w: &FfnWeights = l
        .audio
        .as_ref()
        .and_then(|b| b.ffn.as_ref())
        .filter(|_| p.phase == "decode")
        .unwrap_or(&l.ffn);
    p.gemm("gate|up", layers, xh, &ffn_w.gate_up)?;
    let gate_up = p.act_tensor(2 * f, 0.1)?;
    let gate = p.act_tensor(f, 0.1)?;
    p.time(
        "silu_mul",
        layers,
        (3 * n * f * a) as f64,
        (4 * n * f) as f64,
        || {
            ops::silu_mul_fused(&gate_up)?;
            Ok(())
        },
    )?;
    p.gemm("down", layers, &gate, &ffn_w.down)?;
    let mut resid = p.act_tensor(h, 0.5)?;
    let nh = (n * h) as f64;
    p.time("add (residual)", layers, 3.0 * nh * a as f64, nh, || {
        ops::add_inplace(&mut resid, xh)?;
        Ok(())
    })
}

/// A prefill chunk that mixes text and audio (a voice prompt) routes half its rows through
/// each modality: the gather and the scatter-add of one modality, twice per layer.
fn routing_ops(p: &mut Phase<'_>, xh: &Tensor) -> anyhow::Result<()> {
    let (h, a, layers) = (p.cfg.hidden, p.act(), p.cfg.n_layers);
    let half: Vec<u32> = (0..p.batch as u32).step_by(2).collect();
    let m = half.len();
    let bytes = (2 * m * h * a) as f64;
    p.time(
        "gather_rows (half the rows)",
        2 * layers,
        bytes,
        0.0,
        || {
            ops::gather_rows(xh, &half)?;
            Ok(())
        },
    )?;
    let part = ops::gather_rows(xh, &half)?;
    let mut dst = xh.zeros_like()?;
    p.time(
        "scatter_add_rows (half the rows)",
        2 * layers,
        (3 * m * h * a) as f64,
        (m * h) as f64,
        || {
            ops::scatter_add_rows(&mut dst, &half, &part)?;
            Ok(())
        },
    )
}

/// Every op row of one (phase, batch).
pub fn measure_phase(
    cfg: &ModelConfig,
    w: &ModelWeights,
    device: &Device,
    phase: &'static str,
    batch: usize,
    sizes: &ReportSizes,
) -> anyhow::Result<Vec<OpRow>> {
    let step = if phase == "decode" {
        let rows = (0..batch)
            .map(|i| audio_row(i, cfg.n_codebooks, cfg.codebook_size))
            .collect();
        decode_step(rows, sizes.decode_ctx)
    } else {
        prefill_chunk((0..batch).map(text_row).collect(), 0)
    };
    let mut p = Phase {
        cfg,
        w,
        device,
        phase,
        batch,
        min_s: sizes.min_s,
        act_dtype: device.activation_dtype(w.embed.dtype()),
        rows: Vec::new(),
    };
    let xh = p.act_tensor(cfg.hidden, 0.5)?;
    embed_ops(&mut p, &step.inputs)?;
    attention_ops(&mut p, &step, &xh)?;
    ffn_ops(&mut p, &xh)?;
    if phase == "prefill" && batch > 1 {
        routing_ops(&mut p, &xh)?;
    }
    // The head of a decode step reads every row (audio logits); a prefill chunk's only its
    // last row (text logits).
    if phase == "decode" {
        p.gemm("audio_head", 1, &xh, &w.audio_head)?;
    } else {
        let last = ops::gather_rows(&xh, &[batch as u32 - 1])?;
        p.gemm("text_head", 1, &last, &w.text_head)?;
    }
    Ok(p.rows)
}

/// A one-layer copy of `cfg` (per-layer ops are timed on one layer; the step multiplies).
pub fn one_layer(cfg: &ModelConfig) -> ModelConfig {
    let mut c = cfg.clone();
    c.n_layers = 1;
    c.layer_kinds.truncate(1);
    c
}

/// The dtype name of the activations on `device` for weights of `dtype`.
pub fn act_name(device: &Device, dtype: DType) -> &'static str {
    device.activation_dtype(dtype).name()
}
