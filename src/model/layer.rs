//! One decoder layer for a batch of rows (spec §5.1, §5.8). Dual-FFN layers route each row to
//! its modality's norms and FFN (only that FFN is computed); fast-forward layers run the text
//! layer on text rows only, with audio keys hidden, and pass audio rows through; plain layers
//! treat every row as text.

use super::batch::BatchInputs;
use super::weights::{FfnWeights, LayerWeights};
use crate::config::{LayerKind, ModelConfig};
use crate::error::Result;
use crate::kv::cache::KvCache;
use crate::ops::{self, AttnMeta, KeyMask};
use crate::tensor::Tensor;

/// Which rows are text and which audio.
pub(crate) struct RoutePlan {
    pub text: Vec<u32>,
    pub audio: Vec<u32>,
}

/// Everything the layers need that depends only on the step's rows: built once per step, not
/// once per layer.
pub(crate) struct StepPlan {
    /// Rows by modality (dual-FFN layers).
    route: RoutePlan,
    /// Every row treated as text (plain layers: the same routed code with one group).
    all_text: RoutePlan,
    /// Attention metadata of every row, and of the text rows alone (fast-forward layers).
    all_rows: RowMeta,
    text_rows: RowMeta,
}

impl StepPlan {
    pub fn new(inputs: &BatchInputs) -> Self {
        let (mut text, mut audio) = (Vec::new(), Vec::new());
        for (i, r) in inputs.rows.iter().enumerate() {
            if r.is_audio() {
                audio.push(i as u32)
            } else {
                text.push(i as u32)
            }
        }
        let text_rows = RowMeta::subset(inputs, &text);
        StepPlan {
            all_text: RoutePlan {
                text: (0..inputs.rows.len() as u32).collect(),
                audio: Vec::new(),
            },
            route: RoutePlan { text, audio },
            all_rows: RowMeta::subset(inputs, &(0..inputs.rows.len() as u32).collect::<Vec<_>>()),
            text_rows,
        }
    }
}

/// Row subset metadata for attention (positions, sequences, slots of the chosen rows).
struct RowMeta {
    positions: Vec<i32>,
    query_seq: Vec<u32>,
    slots: Vec<i32>,
}

impl RowMeta {
    fn subset(inputs: &BatchInputs, idx: &[u32]) -> Self {
        let pick = |v: &[i32]| idx.iter().map(|&i| v[i as usize]).collect::<Vec<_>>();
        RowMeta {
            positions: pick(&inputs.positions),
            query_seq: idx.iter().map(|&i| inputs.query_seq[i as usize]).collect(),
            slots: pick(&inputs.slot_mapping),
        }
    }
}

fn ffn(w: &FfnWeights, m: &Tensor) -> Result<Tensor> {
    let gate = ops::matmul(m, &w.gate)?;
    let up = ops::matmul(m, &w.up)?;
    let act = ops::silu_mul(&gate, &up)?;
    ops::matmul(&act, &w.down)
}

#[allow(clippy::too_many_arguments)]
fn attention(
    cfg: &ModelConfig,
    l: &LayerWeights,
    layer: usize,
    n: &Tensor,
    rows: &RowMeta,
    inputs: &BatchInputs,
    kv: &mut KvCache,
    inv_freq: &[f32],
    hide_audio_keys: bool,
) -> Result<Tensor> {
    let mut q = ops::matmul(n, &l.q)?;
    let mut k = ops::matmul(n, &l.k)?;
    let v = ops::matmul(n, &l.v)?;
    let heads = ops::RopeHeads {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
    };
    kv.rope_write(
        layer,
        &mut q,
        &mut k,
        &v,
        heads,
        &rows.positions,
        inv_freq,
        &rows.slots,
    )?;
    let meta = AttnMeta {
        block_size: inputs.block_size,
        block_tables: &inputs.block_tables,
        max_blocks: inputs.max_blocks,
        query_seq: &rows.query_seq,
        query_pos: &rows.positions,
    };
    let mask = hide_audio_keys.then(|| KeyMask {
        skip: &inputs.audio_keys,
        max_ctx: inputs.max_ctx,
    });
    let o = ops::paged_attention(
        &q,
        &kv.k[layer],
        &kv.v[layer],
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.head_dim,
        &meta,
        mask,
    )?;
    ops::matmul(&o, &l.o)
}

/// RMSNorm with per-row weights: text rows with `w_text`, audio rows with `w_audio`.
fn routed_norm(
    x: &Tensor,
    w_text: &Tensor,
    w_audio: &Tensor,
    plan: &RoutePlan,
    eps: f32,
) -> Result<Tensor> {
    if plan.audio.is_empty() {
        return ops::rmsnorm(x, w_text, eps);
    }
    if plan.text.is_empty() {
        return ops::rmsnorm(x, w_audio, eps);
    }
    let mut out = x.zeros_like()?;
    for (idx, w) in [(&plan.text, w_text), (&plan.audio, w_audio)] {
        let part = ops::rmsnorm(&ops::gather_rows(x, idx)?, w, eps)?;
        ops::scatter_add_rows(&mut out, idx, &part)?;
    }
    Ok(out)
}

/// `x += r`, then [`routed_norm`] of `x`; with one modality (the decode steady state) the add
/// is fused into the norm.
fn routed_add_norm(
    x: &mut Tensor,
    r: &Tensor,
    w_text: &Tensor,
    w_audio: &Tensor,
    plan: &RoutePlan,
    eps: f32,
) -> Result<Tensor> {
    if plan.audio.is_empty() {
        return ops::add_rmsnorm(x, r, w_text, eps);
    }
    if plan.text.is_empty() {
        return ops::add_rmsnorm(x, r, w_audio, eps);
    }
    ops::add_inplace(x, r)?;
    routed_norm(x, w_text, w_audio, plan, eps)
}

/// Add each modality's FFN of `m` into `x`, computing only the FFN a row needs.
fn routed_ffn(
    x: &mut Tensor,
    m: &Tensor,
    text: &FfnWeights,
    audio: &FfnWeights,
    plan: &RoutePlan,
) -> Result<()> {
    for (idx, w) in [(&plan.text, text), (&plan.audio, audio)] {
        if idx.is_empty() {
            continue;
        }
        if idx.len() == m.shape()[0] {
            let y = ffn(w, m)?;
            ops::add_inplace(x, &y)?;
        } else {
            let y = ffn(w, &ops::gather_rows(m, idx)?)?;
            ops::scatter_add_rows(x, idx, &y)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward_layer(
    cfg: &ModelConfig,
    l: &LayerWeights,
    layer: usize,
    x: &mut Tensor,
    plan: &StepPlan,
    inputs: &BatchInputs,
    kv: &mut KvCache,
    inv_freq: &[f32],
) -> Result<()> {
    let eps = cfg.rms_eps;
    if l.kind == LayerKind::FastForward {
        // Audio rows pass through untouched and write no K/V; text rows never see audio keys.
        let text = &plan.route.text;
        if text.is_empty() {
            return Ok(());
        }
        let all = plan.route.audio.is_empty();
        let mut xt = if all {
            ops::copy(x)?
        } else {
            ops::gather_rows(x, text)?
        };
        let rows = if all { &plan.all_rows } else { &plan.text_rows };
        let n = ops::rmsnorm(&xt, &l.input_norm, eps)?;
        let att = attention(cfg, l, layer, &n, rows, inputs, kv, inv_freq, true)?;
        let m = ops::add_rmsnorm(&mut xt, &att, &l.post_norm, eps)?;
        let f = ffn(&l.ffn, &m)?;
        return if all {
            ops::add_inplace(x, &att)?;
            ops::add_inplace(x, &f)
        } else {
            ops::scatter_add_rows(x, text, &att)?;
            ops::scatter_add_rows(x, text, &f)
        };
    }
    // Dual-FFN layers route rows by modality; plain Llama layers are the same code with every
    // row in the text group (audio weights are only loaded for dual layers).
    let (route, in_audio, post_audio, ffn_audio) = match (&l.audio, l.kind) {
        (Some(a), LayerKind::Dual) => (&plan.route, &a.input_norm, &a.post_norm, &a.ffn),
        _ => (&plan.all_text, &l.input_norm, &l.post_norm, &l.ffn),
    };
    let n = routed_norm(x, &l.input_norm, in_audio, route, eps)?;
    let att = attention(
        cfg,
        l,
        layer,
        &n,
        &plan.all_rows,
        inputs,
        kv,
        inv_freq,
        false,
    )?;
    let m = routed_add_norm(x, &att, &l.post_norm, post_audio, route, eps)?;
    routed_ffn(x, &m, &l.ffn, ffn_audio, route)
}
