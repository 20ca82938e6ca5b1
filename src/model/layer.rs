//! One decoder layer for a batch of rows (spec §5.1, §5.8). Dual-FFN layers route each row to
//! its modality's norms and FFN (only that FFN is computed); fast-forward layers run the text
//! layer on text rows only, with audio keys hidden, and pass audio rows through; plain layers
//! treat every row as text. How a dual layer computes its two branches is the step's
//! [`DualFfnStrategy`] (routed here, masked here, sub-batched in `sub_batch.rs`).

use super::batch::BatchInputs;
use super::dual_ffn::DualFfnStrategy;
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
    /// Attention metadata of every row, of the text rows alone (fast-forward layers) and of
    /// the audio rows alone (the audio sub-batch).
    pub(crate) all_rows: RowMeta,
    pub(crate) text_rows: RowMeta,
    pub(crate) audio_rows: RowMeta,
    /// Per row: 1 for audio, 0 for text (the masked strategy's select).
    pub(crate) audio_mask: Vec<u32>,
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
        let audio_rows = RowMeta::subset(inputs, &audio);
        let audio_mask = inputs
            .rows
            .iter()
            .map(|r| u32::from(r.is_audio()))
            .collect();
        StepPlan {
            audio_rows,
            audio_mask,
            all_text: RoutePlan {
                text: (0..inputs.rows.len() as u32).collect(),
                audio: Vec::new(),
            },
            route: RoutePlan { text, audio },
            all_rows: RowMeta::subset(inputs, &(0..inputs.rows.len() as u32).collect::<Vec<_>>()),
            text_rows,
        }
    }

    /// Text rows, then audio rows (indices into the step's rows).
    pub(crate) fn route(&self) -> &RoutePlan {
        &self.route
    }
}

/// Row subset metadata for attention (positions, sequences, slots of the chosen rows).
pub(crate) struct RowMeta {
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

/// SwiGLU FFN of rows `m`: one gate|up GEMM, SiLU·mul on its two halves, the down GEMM.
pub(crate) fn ffn(w: &FfnWeights, m: &Tensor) -> Result<Tensor> {
    let gate_up = ops::matmul(m, &w.gate_up)?;
    let act = ops::silu_mul_fused(&gate_up)?;
    ops::matmul(&act, &w.down)
}

/// `x += ffn(m)` with the residual add in the down GEMM's epilogue (rows of `x` and `m`
/// match one for one).
pub(crate) fn ffn_add(x: &mut Tensor, w: &FfnWeights, m: &Tensor) -> Result<()> {
    let gate_up = ops::matmul(m, &w.gate_up)?;
    let act = ops::silu_mul_fused(&gate_up)?;
    ops::matmul_add(x, &act, &w.down)
}

/// What attention of one layer needs besides its rows: config, weights, step inputs, cache.
pub(crate) struct AttnCtx<'a> {
    pub cfg: &'a ModelConfig,
    pub l: &'a LayerWeights,
    pub layer: usize,
    pub inputs: &'a BatchInputs,
    pub inv_freq: &'a [f32],
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
    let c = AttnCtx {
        cfg,
        l,
        layer,
        inputs,
        inv_freq,
    };
    let q = project_write(&c, n, rows, kv)?;
    attend(&c, &q, rows, kv, hide_audio_keys)
}

/// Q, K, V projections of normed rows `n` (one fused GEMM), RoPE, and K/V written into the
/// cache; returns the rotated queries.
pub(crate) fn project_write(
    c: &AttnCtx<'_>,
    n: &Tensor,
    rows: &RowMeta,
    kv: &mut KvCache,
) -> Result<Tensor> {
    let (cfg, l, layer, inv_freq) = (c.cfg, c.l, c.layer, c.inv_freq);
    let qkv = ops::matmul(n, &l.qkv)?;
    let heads = ops::RopeHeads {
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
    };
    kv.rope_write_qkv(layer, &qkv, heads, &rows.positions, inv_freq, &rows.slots)
}

/// Paged attention of rotated queries `q` over the cache (K/V of every row of the step
/// already written), then the output projection.
pub(crate) fn attend(
    c: &AttnCtx<'_>,
    q: &Tensor,
    rows: &RowMeta,
    kv: &KvCache,
    hide_audio_keys: bool,
) -> Result<Tensor> {
    let (cfg, l, layer, inputs) = (c.cfg, c.l, c.layer, c.inputs);
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
        q,
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

/// Add each modality's FFN of `m` into `x`, computing only the FFN a row needs; with no audio
/// FFN (`--audio-ffn off`) every row takes the text FFN.
fn routed_ffn(
    x: &mut Tensor,
    m: &Tensor,
    text: &FfnWeights,
    audio: Option<&FfnWeights>,
    plan: &RoutePlan,
) -> Result<()> {
    let Some(audio) = audio else {
        return ffn_add(x, text, m);
    };
    for (idx, w) in [(&plan.text, text), (&plan.audio, audio)] {
        if idx.is_empty() {
            continue;
        }
        if idx.len() == m.shape()[0] {
            ffn_add(x, w, m)?;
        } else {
            let y = ffn(w, &ops::gather_rows(m, idx)?)?;
            ops::scatter_add_rows(x, idx, &y)?;
        }
    }
    Ok(())
}

/// The masked strategy's norm: both norms on every row, each row keeps its modality's.
fn masked_norm(
    x: &Tensor,
    w_text: &Tensor,
    w_audio: &Tensor,
    mask: &[u32],
    eps: f32,
) -> Result<Tensor> {
    let t = ops::rmsnorm(x, w_text, eps)?;
    let a = ops::rmsnorm(x, w_audio, eps)?;
    ops::select_rows(mask, &a, &t)
}

/// The masked strategy's FFN: both FFNs on every row, each row adds its modality's output.
fn masked_ffn(
    x: &mut Tensor,
    m: &Tensor,
    text: &FfnWeights,
    audio: Option<&FfnWeights>,
    mask: &[u32],
) -> Result<()> {
    let yt = ffn(text, m)?;
    let y = match audio {
        Some(a) => ops::select_rows(mask, &ffn(a, m)?, &yt)?,
        None => yt,
    };
    ops::add_inplace(x, &y)
}

/// A fast-forward layer: audio rows pass through untouched and write no K/V; text rows never
/// see audio keys.
fn fast_forward_layer(
    c: &AttnCtx<'_>,
    x: &mut Tensor,
    plan: &StepPlan,
    kv: &mut KvCache,
) -> Result<()> {
    let (l, eps) = (c.l, c.cfg.rms_eps);
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
    let q = project_write(c, &n, rows, kv)?;
    let att = attend(c, &q, rows, kv, true)?;
    let m = ops::add_rmsnorm(&mut xt, &att, &l.post_norm, eps)?;
    if all {
        ops::add_inplace(x, &att)?;
        ffn_add(x, &l.ffn, &m)
    } else {
        let f = ffn(&l.ffn, &m)?;
        ops::scatter_add_rows(x, text, &att)?;
        ops::scatter_add_rows(x, text, &f)
    }
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
    strategy: DualFfnStrategy,
) -> Result<()> {
    let eps = cfg.rms_eps;
    let c = AttnCtx {
        cfg,
        l,
        layer,
        inputs,
        inv_freq,
    };
    if l.kind == LayerKind::FastForward {
        return fast_forward_layer(&c, x, plan, kv);
    }
    // Dual-FFN layers route rows by modality; plain Llama layers are the same code with every
    // row in the text group (audio weights are only loaded for dual layers).
    let (route, in_audio, post_audio, ffn_audio) = match (&l.audio, l.kind) {
        (Some(a), LayerKind::Dual) => (&plan.route, &a.input_norm, &a.post_norm, a.ffn.as_ref()),
        _ => (&plan.all_text, &l.input_norm, &l.post_norm, Some(&l.ffn)),
    };
    // Masked differs from routed only when both modalities are present (otherwise each row's
    // branch is the one branch that runs).
    let masked =
        strategy == DualFfnStrategy::Masked && !route.text.is_empty() && !route.audio.is_empty();
    let n = if masked {
        masked_norm(x, &l.input_norm, in_audio, &plan.audio_mask, eps)?
    } else {
        routed_norm(x, &l.input_norm, in_audio, route, eps)?
    };
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
    if masked {
        ops::add_inplace(x, &att)?;
        let m = masked_norm(x, &l.post_norm, post_audio, &plan.audio_mask, eps)?;
        return masked_ffn(x, &m, &l.ffn, ffn_audio, &plan.audio_mask);
    }
    let m = routed_add_norm(x, &att, &l.post_norm, post_audio, route, eps)?;
    routed_ffn(x, &m, &l.ffn, ffn_audio, route)
}
