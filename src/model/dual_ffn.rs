//! DualFFN execution strategies and the routing statistics of a step (spec: model.md §5.1).
//! The strategies compute the same function, differently:
//! - `Routed` (the default): per layer, gather each modality's rows into a compact buffer, run
//!   only that modality's norm and FFN on it, scatter-add back (`backend/cpu/dual_ffn.rs`);
//! - `Masked`: both norms and both FFNs on every row, then each row selects its modality's
//!   result (what the reference vLLM fork does with a mask);
//! - `SubBatch`: text rows and audio rows as two separate sub-batches for the whole stack
//!   (split once per step, joined once at the end); each sub-batch runs its own attention
//!   projections, so those weights are read twice when both modalities are present.
//!
//! With one modality in the step (a decode step of audio rows only) all three run the same ops.
//! The statistics are counted on the host from the step's rows and the layer table (so they
//! hold for CUDA graph replays too). May use: config, weights (this module's siblings).

use super::weights::{LayerWeights, ModelWeights};
use crate::config::LayerKind;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub enum DualFfnStrategy {
    #[default]
    Routed,
    Masked,
    SubBatch,
}

impl DualFfnStrategy {
    pub const ALL: [DualFfnStrategy; 3] = [
        DualFfnStrategy::Routed,
        DualFfnStrategy::Masked,
        DualFfnStrategy::SubBatch,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DualFfnStrategy::Routed => "routed",
            DualFfnStrategy::Masked => "masked",
            DualFfnStrategy::SubBatch => "sub-batch",
        }
    }

    pub(crate) fn as_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => DualFfnStrategy::Masked,
            2 => DualFfnStrategy::SubBatch,
            _ => DualFfnStrategy::Routed,
        }
    }
}

/// One layer's routing, summed over the steps counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LayerRouting {
    /// Rows entering the layer as text, and as audio.
    pub text_rows: u64,
    pub audio_rows: u64,
    /// Rows an FFN was computed on (a row through both FFNs counts twice).
    pub ffn_rows: u64,
    /// Bytes of FFN weights read: each FFN that ran, once per sub-batch it ran on.
    pub ffn_weight_bytes: u64,
    /// Bytes of attention projection weights (q, k, v, o) read.
    pub attn_weight_bytes: u64,
}

impl LayerRouting {
    fn add(&mut self, o: &LayerRouting) {
        self.text_rows += o.text_rows;
        self.audio_rows += o.audio_rows;
        self.ffn_rows += o.ffn_rows;
        self.ffn_weight_bytes += o.ffn_weight_bytes;
        self.attn_weight_bytes += o.attn_weight_bytes;
    }
}

/// Routing counters: per layer, summed over `steps` forward steps.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoutingStats {
    pub steps: u64,
    pub layers: Vec<LayerRouting>,
}

impl RoutingStats {
    /// Adds another count (of the same model) into this one.
    pub fn add(&mut self, o: &RoutingStats) {
        if self.layers.len() < o.layers.len() {
            self.layers.resize(o.layers.len(), LayerRouting::default());
        }
        for (a, b) in self.layers.iter_mut().zip(&o.layers) {
            a.add(b);
        }
        self.steps += o.steps;
    }

    /// Every layer summed.
    pub fn totals(&self) -> LayerRouting {
        let mut t = LayerRouting::default();
        for l in &self.layers {
            t.add(l);
        }
        t
    }
}

fn bytes(ts: &[&crate::tensor::Tensor]) -> u64 {
    ts.iter()
        .map(|t| (t.elem_count() * t.dtype().size_bytes()) as u64)
        .sum()
}

/// The routing of one step of `n_text` text rows and `n_audio` audio rows under `strategy`.
pub(crate) fn step_routing(
    layers: &[LayerWeights],
    n_text: usize,
    n_audio: usize,
    strategy: DualFfnStrategy,
) -> RoutingStats {
    let (nt, na) = (n_text as u64, n_audio as u64);
    let n = nt + na;
    let both = nt > 0 && na > 0;
    let one = |present: bool| u64::from(present);
    let layers = layers
        .iter()
        .map(|l| {
            let text_ffn = ModelWeights::ffn_bytes(&l.ffn) as u64;
            let attn = bytes(&[&l.qkv, &l.o]);
            let sub_batches = if both && strategy == DualFfnStrategy::SubBatch {
                2
            } else {
                one(n > 0)
            };
            let audio_ffn = l
                .audio
                .as_ref()
                .and_then(|a| a.ffn.as_ref())
                .filter(|_| l.kind == LayerKind::Dual)
                .map(|f| ModelWeights::ffn_bytes(f) as u64);
            let (ffn_rows, ffn_weight_bytes, attn_weight_bytes) = match (l.kind, audio_ffn) {
                (LayerKind::FastForward, _) => (nt, text_ffn * one(nt > 0), attn * one(nt > 0)),
                (LayerKind::Dual, Some(af)) => match strategy {
                    DualFfnStrategy::Masked if both => (2 * n, text_ffn + af, attn),
                    _ => (
                        n,
                        text_ffn * one(nt > 0) + af * one(na > 0),
                        attn * sub_batches,
                    ),
                },
                // Plain layers and dual layers under `--audio-ffn off`: the text FFN on all.
                _ => (n, text_ffn * sub_batches, attn * sub_batches),
            };
            LayerRouting {
                text_rows: nt,
                audio_rows: na,
                ffn_rows,
                ffn_weight_bytes,
                attn_weight_bytes,
            }
        })
        .collect();
    RoutingStats { steps: 1, layers }
}
