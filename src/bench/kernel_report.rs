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
use crate::model::{FfnWeights, ModelWeights};
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

/// One op to time: name, per-step calls, bytes, flops, and the call itself.
struct Case<'a> {
    op: String,
    calls: usize,
    bytes: f64,
    flops: f64,
    run: Box<dyn FnMut() -> anyhow::Result<()> + 'a>,
}

fn tbytes(t: &Tensor) -> f64 {
    (t.elem_count() * t.dtype().size_bytes()) as f64
}

/// A matmul case: `x` [n, k] times `w` [m, k]ᵀ.
fn gemm_case<'a>(name: &str, calls: usize, x: &'a Tensor, w: &'a Tensor, act: usize) -> Case<'a> {
    let (n, k) = x.dims2();
    let m = w.shape()[0];
    Case {
        op: format!("matmul {name} [{m}x{k}]"),
        calls,
        bytes: tbytes(w) + ((n * k + n * m) * act) as f64,
        flops: 2.0 * (n * m * k) as f64,
        run: Box::new(move || {
            ops::matmul(x, w)?;
            Ok(())
        }),
    }
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
    let act_dtype = device.activation_dtype(w.embed.dtype());
    let a = act_dtype.size_bytes();
    let (h, f, qd, kvd) = (cfg.hidden, cfg.ffn, cfg.q_dim(), cfg.kv_dim());
    let layers = cfg.n_layers;
    let l = &w.layers[0];
    let ffn_w: &FfnWeights = l
        .audio
        .as_ref()
        .and_then(|b| b.ffn.as_ref())
        .unwrap_or(&l.ffn);
    let step: SyntheticStep = if phase == "decode" {
        decode_step(
            (0..batch)
                .map(|i| audio_row(i, cfg.n_codebooks, cfg.codebook_size))
                .collect(),
            sizes.decode_ctx,
        )
    } else {
        prefill_chunk((0..batch).map(text_row).collect(), 0)
    };
    let inp = &step.inputs;
    let n = batch;
    let mk = |cols: usize, s: f32| -> anyhow::Result<Tensor> {
        let v: Vec<f32> = (0..n * cols)
            .map(|i| s * ((i % 97) as f32 / 48.0 - 1.0))
            .collect();
        Ok(Tensor::from_f32_on(vec![n, cols], &v, act_dtype, device)?)
    };
    let xh = mk(h, 0.5)?;
    let xh2 = mk(h, 0.25)?;
    let xq = mk(qd, 0.1)?;
    let xf = mk(f, 0.1)?;
    let xf2 = mk(f, 0.2)?;
    // References, so that every case's closure can be `move` (it copies what it reads).
    let (xh, xh2, xq, xf, xf2) = (&xh, &xh2, &xq, &xf, &xf2);
    let mut kv = KvCache::new_on(1, step.num_blocks, BLOCK_SIZE, kvd, act_dtype, device)?;
    let heads = RopeHeads {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
    };
    let inv_freq = cfg.rope_inv_freq();
    // Keys each row attends over, and keys that must be read at least once.
    let keys_per_row: Vec<f64> = inp.positions.iter().map(|&p| p as f64 + 1.0).collect();
    let distinct_keys = if phase == "decode" {
        keys_per_row.iter().sum::<f64>()
    } else {
        n as f64
    };
    let mut rows = Vec::new();
    {
        let mut resid = xh.zeros_like()?;
        ops::add_inplace(&mut resid, xh)?;
        let mut resid2 = xh.zeros_like()?;
        ops::add_inplace(&mut resid2, xh)?;
        let mut q = mk(qd, 0.1)?;
        let mut k = mk(kvd, 0.1)?;
        let v = mk(kvd, 0.1)?;
        let half: Vec<u32> = (0..n as u32).step_by(2).collect();
        let gathered = ops::gather_rows(xh, &half)?;
        let mut dst = xh.zeros_like()?;
        let codes: Vec<u32> = inp
            .rows
            .iter()
            .flat_map(|r| match r {
                crate::model::RowInput::Audio { codes, .. } => codes.clone(),
                crate::model::RowInput::Text(_) => Vec::new(),
            })
            .collect();
        let text_ids: Vec<u32> = inp
            .rows
            .iter()
            .filter_map(|r| match r {
                crate::model::RowInput::Text(id) => Some(*id),
                _ => None,
            })
            .collect();
        // The head of a decode step reads every row; a prefill chunk's only its last row.
        let head_in = if phase == "decode" {
            None
        } else {
            Some(ops::gather_rows(xh2, &[n as u32 - 1])?)
        };
        let head_x: &Tensor = head_in.as_ref().unwrap_or(xh);
        let wb = |t: &Tensor| tbytes(t);
        let nh = (n * h) as f64;
        let mut cases: Vec<Case<'_>> = Vec::new();
        if phase == "decode" {
            let nc = cfg.n_codebooks;
            cases.push(Case {
                op: "embed_audio".into(),
                calls: 1,
                bytes: ((nc * n * h) * w.audio_embed.dtype().size_bytes() + n * h * a) as f64,
                flops: (nc * n * h) as f64,
                run: Box::new(move || {
                    ops::embed_audio(
                        &w.audio_embed,
                        cfg.codebook_rows(),
                        nc,
                        &codes,
                        cfg.audio_embed_avg,
                    )?;
                    Ok(())
                }),
            });
        } else {
            cases.push(Case {
                op: "embed_text".into(),
                calls: 1,
                bytes: ((n * h) * w.embed.dtype().size_bytes() + n * h * a) as f64,
                flops: 0.0,
                run: Box::new(move || {
                    ops::embed_text(&w.embed, &text_ids)?;
                    Ok(())
                }),
            });
        }
        cases.push(Case {
            op: "rmsnorm".into(),
            calls: layers + 1,
            bytes: 2.0 * nh * a as f64 + wb(&l.input_norm),
            flops: 4.0 * nh,
            run: Box::new(move || {
                ops::rmsnorm(xh, &l.input_norm, cfg.rms_eps)?;
                Ok(())
            }),
        });
        cases.push(gemm_case("q", layers, xh, &l.q, a));
        cases.push(gemm_case("k", layers, xh, &l.k, a));
        cases.push(gemm_case("v", layers, xh, &l.v, a));
        let (pos, slots) = (&inp.positions, &inp.slot_mapping);
        let kv_ref = &mut kv;
        // rope_kv_write and attention share the cache: one case borrows it mutably, so the
        // attention case reads a second cache of the same size.
        let kv2 = KvCache::new_on(1, step.num_blocks, BLOCK_SIZE, kvd, act_dtype, device)?;
        cases.push(Case {
            op: "rope_kv_write".into(),
            calls: layers,
            bytes: ((2 * qd + 5 * kvd) * n * a) as f64,
            flops: (3 * (qd + kvd) * n) as f64,
            run: Box::new(move || {
                kv_ref.rope_write(0, &mut q, &mut k, &v, heads, pos, &inv_freq, slots)?;
                Ok(())
            }),
        });
        let meta = AttnMeta {
            block_size: inp.block_size,
            block_tables: &inp.block_tables,
            max_blocks: inp.max_blocks,
            query_seq: &inp.query_seq,
            query_pos: &inp.positions,
        };
        let sum_keys: f64 = keys_per_row.iter().sum();
        cases.push(Case {
            op: "paged_attention".into(),
            calls: layers,
            bytes: distinct_keys * (2 * kvd * a) as f64 + (2 * n * qd * a) as f64,
            flops: 4.0 * (cfg.n_heads * cfg.head_dim) as f64 * sum_keys,
            run: Box::new(move || {
                ops::paged_attention(
                    xq,
                    &kv2.k[0],
                    &kv2.v[0],
                    cfg.n_heads,
                    cfg.n_kv_heads,
                    cfg.head_dim,
                    &meta,
                    None,
                )?;
                Ok(())
            }),
        });
        cases.push(gemm_case("o", layers, xq, &l.o, a));
        cases.push(Case {
            op: "add_rmsnorm".into(),
            calls: layers,
            bytes: 4.0 * nh * a as f64 + wb(&l.post_norm),
            flops: 5.0 * nh,
            run: Box::new(move || {
                ops::add_rmsnorm(&mut resid, xh2, &l.post_norm, cfg.rms_eps)?;
                Ok(())
            }),
        });
        cases.push(gemm_case("gate", layers, xh, &ffn_w.gate, a));
        cases.push(gemm_case("up", layers, xh, &ffn_w.up, a));
        cases.push(Case {
            op: "silu_mul".into(),
            calls: layers,
            bytes: (3 * n * f * a) as f64,
            flops: (4 * n * f) as f64,
            run: Box::new(move || {
                ops::silu_mul(xf, xf2)?;
                Ok(())
            }),
        });
        cases.push(gemm_case("down", layers, xf, &ffn_w.down, a));
        cases.push(Case {
            op: "add (residual)".into(),
            calls: layers,
            bytes: 3.0 * nh * a as f64,
            flops: nh,
            run: Box::new(move || {
                ops::add_inplace(&mut resid2, xh2)?;
                Ok(())
            }),
        });
        if phase == "prefill" && n > 1 {
            // A chunk that mixes text and audio (a voice prompt) routes rows per modality.
            let m = half.len();
            let (half_ref, gathered_ref) = (&half, &gathered);
            cases.push(Case {
                op: "gather_rows (half the rows)".into(),
                calls: 2 * layers,
                bytes: (2 * m * h * a) as f64,
                flops: 0.0,
                run: Box::new(move || {
                    ops::gather_rows(xh, half_ref)?;
                    Ok(())
                }),
            });
            cases.push(Case {
                op: "scatter_add_rows (half the rows)".into(),
                calls: 2 * layers,
                bytes: (3 * m * h * a) as f64,
                flops: (m * h) as f64,
                run: Box::new(move || {
                    ops::scatter_add_rows(&mut dst, half_ref, gathered_ref)?;
                    Ok(())
                }),
            });
        }
        let (head_name, head_w) = if phase == "decode" {
            ("audio_head", &w.audio_head)
        } else {
            ("text_head", &w.text_head)
        };
        cases.push(gemm_case(head_name, 1, head_x, head_w, a));
        for mut c in cases {
            let s = time_per_call(device, sizes.min_s, 10_000, &mut c.run)?;
            rows.push(OpRow {
                phase,
                batch,
                op: c.op,
                calls_per_step: c.calls,
                time_s: s,
                bytes: c.bytes,
                flops: c.flops,
            });
        }
    }
    Ok(rows)
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
