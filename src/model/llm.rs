//! The whole stack: embeddings -> decoder layers -> final norm -> heads (spec §4-6).

use super::batch::{BatchInputs, RowInput};
use super::dual_ffn::{step_routing, DualFfnStrategy, RoutingStats};
use super::layer::{forward_layer, StepPlan};
use super::sub_batch::{self, Stack};
use super::weights::ModelWeights;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::kv::cache::KvCache;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};

pub struct Model {
    pub cfg: ModelConfig,
    pub w: ModelWeights,
    inv_freq: Vec<f32>,
    /// Where the weights live; activations and the KV cache are made there too.
    device: Device,
    /// f32 on the CPU; the weights' dtype on CUDA (f32 for conformance, bf16 for speed).
    act_dtype: DType,
    /// How dual layers compute their two branches ([`DualFfnStrategy`], as its u8).
    strategy: std::sync::atomic::AtomicU8,
    /// Routing counters: (every step since the last reset, the last step).
    routing: std::sync::Mutex<(RoutingStats, RoutingStats)>,
    /// Captured decode-step graphs (CUDA).
    #[cfg(feature = "cuda")]
    graphs: super::graph::StepGraphs,
}

#[derive(Clone, Debug, Default)]
pub struct ForwardOptions {
    /// Rows whose final-norm hidden state is returned (usually the last row of each sequence).
    pub out_rows: Vec<u32>,
    /// Also return the input of every layer and the output of the last one (for fixtures).
    pub capture_layers: bool,
}

pub struct ForwardOutput {
    /// Final-norm hidden states of `out_rows`, [out_rows.len(), hidden].
    pub hidden: Tensor,
    /// With `capture_layers`: n_layers + 1 tensors [rows, hidden] (layer inputs, then the last
    /// layer's output before the final norm).
    pub layers: Vec<Tensor>,
}

impl Model {
    /// A model on the device its weights live on (see [`ModelWeights::to_device`]).
    pub fn new(cfg: ModelConfig, w: ModelWeights) -> Self {
        let inv_freq = cfg.rope_inv_freq();
        let device = w.embed.device();
        let act_dtype = device.activation_dtype(w.embed.dtype());
        // The CPU GEMM's weight layout, laid out once here rather than on every decode step.
        let w = if device.is_cpu() {
            w.pack_linears_for_cpu()
        } else {
            w
        };
        Model {
            cfg,
            w,
            inv_freq,
            device,
            act_dtype,
            strategy: Default::default(),
            routing: Default::default(),
            #[cfg(feature = "cuda")]
            graphs: Default::default(),
        }
    }

    /// Sets how dual layers compute their two branches (default [`DualFfnStrategy::Routed`]).
    /// The outputs are the same; time and bytes moved differ.
    pub fn set_dual_ffn_strategy(&self, s: DualFfnStrategy) {
        self.strategy
            .store(s.as_u8(), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn dual_ffn_strategy(&self) -> DualFfnStrategy {
        DualFfnStrategy::from_u8(self.strategy.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Routing counters summed over every forward step since the last reset.
    pub fn routing_stats(&self) -> RoutingStats {
        self.routing_lock().0.clone()
    }

    /// The routing of the last forward step.
    pub fn last_step_routing(&self) -> RoutingStats {
        self.routing_lock().1.clone()
    }

    pub fn reset_routing_stats(&self) {
        *self.routing_lock() = Default::default();
    }

    fn routing_lock(&self) -> std::sync::MutexGuard<'_, (RoutingStats, RoutingStats)> {
        // The counters are plain sums: a panic elsewhere cannot leave them inconsistent.
        self.routing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn count_routing(&self, inputs: &BatchInputs) {
        let n_audio = inputs.rows.iter().filter(|r| r.is_audio()).count();
        let step = step_routing(
            &self.w.layers,
            inputs.rows.len() - n_audio,
            n_audio,
            self.dual_ffn_strategy(),
        );
        let mut g = self.routing_lock();
        g.0.add(&step);
        g.1 = step;
    }

    /// RoPE inverse frequencies `[head_dim / 2]`.
    pub fn inv_freq(&self) -> &[f32] {
        &self.inv_freq
    }

    /// Turns CUDA step graphs on or off (default on; `HIGGS_CUDA_GRAPHS=0` starts them off).
    /// No effect on the CPU.
    pub fn set_step_graphs(&self, on: bool) {
        #[cfg(feature = "cuda")]
        self.graphs.set_enabled(on);
        #[cfg(not(feature = "cuda"))]
        let _ = on;
    }

    /// (graphs captured, decode steps replayed through one) so far.
    pub fn step_graph_stats(&self) -> (u64, u64) {
        #[cfg(feature = "cuda")]
        {
            let s = self.graphs.stats();
            (s.captures, s.replays)
        }
        #[cfg(not(feature = "cuda"))]
        (0, 0)
    }

    /// Releases the step graphs bound to KV cache `kv_id` (the cache is being dropped).
    pub fn forget_kv_cache(&self, kv_id: u64) {
        #[cfg(feature = "cuda")]
        self.graphs.forget_kv(kv_id);
        #[cfg(not(feature = "cuda"))]
        let _ = kv_id;
    }

    /// This model with every weight copied to `device` in `dtype`; on CUDA `dtype` is also the
    /// activation and KV-cache dtype.
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Model> {
        Ok(Model::new(
            self.cfg.clone(),
            self.w.to_device(device, dtype)?,
        ))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn activation_dtype(&self) -> DType {
        self.act_dtype
    }

    /// A host f32 KV cache, for a model on the CPU (use [`Model::try_new_kv_cache`] for any device).
    pub fn new_kv_cache(&self, num_blocks: usize, block_size: usize) -> KvCache {
        KvCache::new(self.cfg.n_layers, num_blocks, block_size, self.cfg.kv_dim())
    }

    /// A KV cache on the model's device, in its activation dtype.
    pub fn try_new_kv_cache(&self, num_blocks: usize, block_size: usize) -> Result<KvCache> {
        KvCache::new_on(
            self.cfg.n_layers,
            num_blocks,
            block_size,
            self.cfg.kv_dim(),
            self.act_dtype,
            &self.device,
        )
    }

    /// Embeddings of every row: text rows from `embed_tokens`, audio rows the codebook sum.
    pub fn embed(&self, rows: &[RowInput]) -> Result<Tensor> {
        let cfg = &self.cfg;
        let (mut text_idx, mut text_ids, mut audio_idx, mut codes) =
            (vec![], vec![], vec![], vec![]);
        for (i, r) in rows.iter().enumerate() {
            match r {
                RowInput::Text(id) => {
                    text_idx.push(i as u32);
                    text_ids.push(*id);
                }
                RowInput::Audio { codes: c, .. } => {
                    if c.len() != cfg.n_codebooks {
                        return Err(Error::BadRequest(format!(
                            "audio column has {} codes, the model has {} codebooks",
                            c.len(),
                            cfg.n_codebooks
                        )));
                    }
                    audio_idx.push(i as u32);
                    codes.extend_from_slice(c);
                }
            }
        }
        let text = if text_ids.is_empty() {
            None
        } else {
            Some(ops::embed_text(&self.w.embed, &text_ids)?)
        };
        let audio = if audio_idx.is_empty() {
            None
        } else {
            let mut a = ops::embed_audio(
                &self.w.audio_embed,
                cfg.codebook_rows(),
                cfg.n_codebooks,
                &codes,
                cfg.audio_embed_avg,
            )?;
            if let Some(p) = &self.w.audio_projector {
                a = ops::matmul(&a, p)?;
            }
            Some(a)
        };
        // One modality: its embeddings are the rows (0 + e), no zero fill, scatter or upload.
        match (text, audio) {
            (Some(t), None) => Ok(t),
            (None, Some(a)) => Ok(a),
            (text, audio) => {
                let mut x =
                    Tensor::zeros(vec![rows.len(), cfg.hidden], self.act_dtype, &self.device)?;
                if let Some(t) = text {
                    ops::scatter_add_rows(&mut x, &text_idx, &t)?;
                }
                if let Some(a) = audio {
                    ops::scatter_add_rows(&mut x, &audio_idx, &a)?;
                }
                Ok(x)
            }
        }
    }

    /// One forward step over a batch; K/V of every row are written into `kv`. On CUDA an
    /// all-audio decode step replays a captured graph of [`Model::forward_eager`] (see
    /// `model/graph.rs`); everything else runs eagerly.
    pub fn forward(
        &self,
        inputs: &BatchInputs,
        kv: &mut KvCache,
        opts: &ForwardOptions,
    ) -> Result<ForwardOutput> {
        self.count_routing(inputs);
        // Graphs capture the default strategy only (their steps have one modality, where the
        // strategies run the same ops anyway).
        #[cfg(feature = "cuda")]
        if self.dual_ffn_strategy() == DualFfnStrategy::Routed {
            if let Some(out) = self.graphs.forward(self, inputs, kv, opts)? {
                return Ok(out);
            }
        }
        self.forward_eager(inputs, kv, opts)
    }

    /// [`Model::forward`], op by op.
    pub fn forward_eager(
        &self,
        inputs: &BatchInputs,
        kv: &mut KvCache,
        opts: &ForwardOptions,
    ) -> Result<ForwardOutput> {
        let n = inputs.rows.len();
        for (name, len) in [
            ("positions", inputs.positions.len()),
            ("query_seq", inputs.query_seq.len()),
            ("slot_mapping", inputs.slot_mapping.len()),
        ] {
            if len != n {
                return Err(Error::Other(format!(
                    "BatchInputs.{name} has {len} entries for {n} rows"
                )));
            }
        }
        #[cfg(feature = "cuda")]
        if let Device::Cuda(d) = &self.device {
            d.begin_step();
        }
        let plan = StepPlan::new(inputs);
        let mut x = self.embed(&inputs.rows)?;
        let mut layers = Vec::new();
        let strategy = self.dual_ffn_strategy();
        // Capturing every layer's input needs the rows joined: sub-batching then runs routed.
        if sub_batch::applies(strategy, &plan) && !opts.capture_layers {
            let stack = Stack {
                cfg: &self.cfg,
                layers: &self.w.layers,
                inputs,
                inv_freq: &self.inv_freq,
            };
            x = sub_batch::forward_sub_batched(&stack, &x, &plan, kv)?;
        } else {
            for (i, l) in self.w.layers.iter().enumerate() {
                if opts.capture_layers {
                    layers.push(Tensor::from_f32(x.shape().to_vec(), x.to_f32_vec()?)?);
                }
                forward_layer(
                    &self.cfg,
                    l,
                    i,
                    &mut x,
                    &plan,
                    inputs,
                    kv,
                    &self.inv_freq,
                    strategy,
                )?;
            }
        }
        if opts.capture_layers {
            layers.push(Tensor::from_f32(x.shape().to_vec(), x.to_f32_vec()?)?);
        }
        let hidden = if super::batch::is_every_row(&opts.out_rows, n) {
            ops::rmsnorm(&x, &self.w.norm, self.cfg.rms_eps)?
        } else {
            let picked = ops::gather_rows(&x, &opts.out_rows)?;
            ops::rmsnorm(&picked, &self.w.norm, self.cfg.rms_eps)?
        };
        Ok(ForwardOutput { hidden, layers })
    }

    /// Text logits [rows, vocab] of final-norm hidden states.
    pub fn text_logits(&self, h: &Tensor) -> Result<Tensor> {
        ops::matmul(h, &self.w.text_head)
    }

    /// Audio logits [rows, n_codebooks * (codebook_size + 2)] (codebook-major rows, spec §6).
    pub fn audio_logits(&self, h: &Tensor) -> Result<Tensor> {
        ops::matmul(h, &self.w.audio_head)
    }
}
