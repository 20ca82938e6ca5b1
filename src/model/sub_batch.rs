//! The sub-batch DualFFN strategy ([`DualFfnStrategy::SubBatch`]): the step's text rows and
//! audio rows are split once into two tensors, each runs the whole stack as its own batch
//! (own norms and FFN with no per-layer gather or scatter; its own Q/K/V/O projections, so
//! those weights are read once per sub-batch), and the two are joined once at the end. Within a
//! layer both sub-batches write their K/V before either attends, so a row still sees every
//! earlier position of its sequence whatever its modality (spec: model.md §5.1, §5.8).
//! May use: ops, tensor, config, kv::cache (this module's siblings).

use super::batch::BatchInputs;
use super::dual_ffn::DualFfnStrategy;
use super::layer::{attend, ffn_add, project_write, AttnCtx, StepPlan};
use super::weights::LayerWeights;
use crate::config::{LayerKind, ModelConfig};
use crate::error::Result;
use crate::kv::cache::KvCache;
use crate::ops;
use crate::tensor::Tensor;

/// What every layer of the stack shares.
pub(crate) struct Stack<'a> {
    pub cfg: &'a ModelConfig,
    pub layers: &'a [LayerWeights],
    pub inputs: &'a BatchInputs,
    pub inv_freq: &'a [f32],
}

/// Every layer over `x` [rows, hidden] as two sub-batches; returns the stack's output rows in
/// the step's order. The caller uses this only when both modalities are present.
pub(crate) fn forward_sub_batched(
    s: &Stack<'_>,
    x: &Tensor,
    plan: &StepPlan,
    kv: &mut KvCache,
) -> Result<Tensor> {
    let eps = s.cfg.rms_eps;
    let route = plan.route();
    let mut xt = ops::gather_rows(x, &route.text)?;
    let mut xa = ops::gather_rows(x, &route.audio)?;
    for (layer, l) in s.layers.iter().enumerate() {
        let c = AttnCtx {
            cfg: s.cfg,
            l,
            layer,
            inputs: s.inputs,
            inv_freq: s.inv_freq,
        };
        if l.kind == LayerKind::FastForward {
            // Audio rows pass through; text rows never see audio keys.
            let n = ops::rmsnorm(&xt, &l.input_norm, eps)?;
            let q = project_write(&c, &n, &plan.text_rows, kv)?;
            let att = attend(&c, &q, &plan.text_rows, kv, true)?;
            let m = ops::add_rmsnorm(&mut xt, &att, &l.post_norm, eps)?;
            ffn_add(&mut xt, &l.ffn, &m)?;
            continue;
        }
        let (in_audio, post_audio, ffn_audio) = match (&l.audio, l.kind) {
            (Some(a), LayerKind::Dual) => (
                &a.input_norm,
                &a.post_norm,
                a.ffn.as_ref().unwrap_or(&l.ffn),
            ),
            _ => (&l.input_norm, &l.post_norm, &l.ffn),
        };
        let nt = ops::rmsnorm(&xt, &l.input_norm, eps)?;
        let na = ops::rmsnorm(&xa, in_audio, eps)?;
        let qt = project_write(&c, &nt, &plan.text_rows, kv)?;
        let qa = project_write(&c, &na, &plan.audio_rows, kv)?;
        let att_t = attend(&c, &qt, &plan.text_rows, kv, false)?;
        let att_a = attend(&c, &qa, &plan.audio_rows, kv, false)?;
        let mt = ops::add_rmsnorm(&mut xt, &att_t, &l.post_norm, eps)?;
        let ma = ops::add_rmsnorm(&mut xa, &att_a, post_audio, eps)?;
        ffn_add(&mut xt, &l.ffn, &mt)?;
        ffn_add(&mut xa, ffn_audio, &ma)?;
    }
    let mut out = x.zeros_like()?;
    ops::scatter_add_rows(&mut out, &route.text, &xt)?;
    ops::scatter_add_rows(&mut out, &route.audio, &xa)?;
    Ok(out)
}

/// Whether a step runs sub-batched: the strategy asks for it and both modalities are present
/// (with one, the sub-batch is the whole batch and the routed code is the same computation).
pub(crate) fn applies(strategy: DualFfnStrategy, plan: &StepPlan) -> bool {
    let r = plan.route();
    strategy == DualFfnStrategy::SubBatch && !r.text.is_empty() && !r.audio.is_empty()
}
