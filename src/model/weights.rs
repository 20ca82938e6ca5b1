//! Model weights: every tensor named and shaped from the config, loaded from a safetensors
//! checkpoint (keeping the stored dtype unless a target dtype is asked for) or built at random
//! for benchmarks. Errors name the file and the key (spec §2).

use crate::config::{LayerKind, ModelConfig};
use crate::error::{Error, Result};
use crate::layer_overrides::{AudioFfn, LayerOverrides};
use crate::tensor::{CpuStorage, DType, Device, Tensor};
use crate::weights::safetensors::Checkpoint;
use std::collections::BTreeSet;

/// One SwiGLU FFN. gate and up are concatenated at load into one `[2·ffn, hidden]` weight
/// (gate rows first), so a row's FFN input is read once by one GEMM, whose output the fused
/// SiLU·mul reads as two halves; the separate checkpoint tensors are not kept.
pub struct FfnWeights {
    pub gate_up: Tensor,
    pub down: Tensor,
}

pub struct AudioBranch {
    pub input_norm: Tensor,
    pub post_norm: Tensor,
    /// `None` under `--audio-ffn off`: audio positions use the layer's text FFN.
    pub ffn: Option<FfnWeights>,
}

pub struct LayerWeights {
    pub kind: LayerKind,
    pub input_norm: Tensor,
    pub post_norm: Tensor,
    /// Q, K and V projections concatenated at load into one `[q_dim + 2·kv_dim, hidden]`
    /// weight (Q rows, then K, then V): one GEMM per layer instead of three, and the RoPE /
    /// cache-write step reads the three column ranges of its output in place.
    pub qkv: Tensor,
    pub o: Tensor,
    pub ffn: FfnWeights,
    /// Present on dual-FFN layers only.
    pub audio: Option<AudioBranch>,
}

pub struct ModelWeights {
    pub embed: Tensor,
    pub audio_embed: Tensor,
    pub audio_projector: Option<Tensor>,
    pub layers: Vec<LayerWeights>,
    pub norm: Tensor,
    pub text_head: Tensor,
    pub audio_head: Tensor,
}

/// Which Linear weight [`ModelWeights::map_linears`] hands its closure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearRole {
    /// q, k, v, o projections.
    Attention,
    /// The text FFN (gate, up, down).
    Ffn,
    /// A dual layer's audio FFN (gate, up, down).
    AudioFfn,
    AudioProjector,
    TextHead,
    /// The 8 codebooks' logits head.
    AudioHead,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Convert every weight to this dtype at load (None keeps the stored dtype).
    pub dtype: Option<DType>,
}

/// Every (name, shape) the config implies, in load order.
pub fn expected_tensors(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (h, f) = (cfg.hidden, cfg.ffn);
    let audio_rows = cfg.n_codebooks * cfg.codebook_rows();
    let mut v = vec![
        ("embed_tokens.weight".to_string(), vec![cfg.vocab, h]),
        (
            "audio_codebook_embeddings.weight".to_string(),
            vec![audio_rows, h],
        ),
    ];
    if cfg.audio_out_embed_projector {
        v.push(("audio_out_embed_projector.weight".into(), vec![h, h]));
    }
    for i in 0..cfg.n_layers {
        let p = format!("layers.{i}");
        v.push((format!("{p}.input_layernorm.weight"), vec![h]));
        v.push((format!("{p}.post_attention_layernorm.weight"), vec![h]));
        v.push((format!("{p}.self_attn.q_proj.weight"), vec![cfg.q_dim(), h]));
        v.push((
            format!("{p}.self_attn.k_proj.weight"),
            vec![cfg.kv_dim(), h],
        ));
        v.push((
            format!("{p}.self_attn.v_proj.weight"),
            vec![cfg.kv_dim(), h],
        ));
        v.push((format!("{p}.self_attn.o_proj.weight"), vec![h, cfg.q_dim()]));
        v.push((format!("{p}.mlp.gate_proj.weight"), vec![f, h]));
        v.push((format!("{p}.mlp.up_proj.weight"), vec![f, h]));
        v.push((format!("{p}.mlp.down_proj.weight"), vec![h, f]));
        if cfg.has_audio_ffn(i) {
            v.push((format!("{p}.audio_input_layernorm.weight"), vec![h]));
            v.push((
                format!("{p}.audio_post_attention_layernorm.weight"),
                vec![h],
            ));
            v.push((format!("{p}.audio_mlp.gate_proj.weight"), vec![f, h]));
            v.push((format!("{p}.audio_mlp.up_proj.weight"), vec![f, h]));
            v.push((format!("{p}.audio_mlp.down_proj.weight"), vec![h, f]));
        }
    }
    v.push(("norm.weight".into(), vec![h]));
    v.push((
        "audio_decoder_proj.text_lm_head.weight".into(),
        vec![cfg.vocab, h],
    ));
    v.push((
        "audio_decoder_proj.audio_lm_head.weight".into(),
        vec![audio_rows, h],
    ));
    v
}

/// Legacy training checkpoints split these into frozen + trainable rows (spec §2.3).
const SPLIT_NAMES: [(&str, &str, &str); 2] = [
    (
        "embed_tokens.weight",
        "embed_tokens.embedding_frozen.weight",
        "embed_tokens.embedding_trainable.weight",
    ),
    (
        "audio_decoder_proj.text_lm_head.weight",
        "audio_decoder_proj.text_lm_head.linear_frozen.weight",
        "audio_decoder_proj.text_lm_head.linear_trainable.weight",
    ),
];

impl ModelWeights {
    pub fn load(ck: &Checkpoint, cfg: &ModelConfig, opts: LoadOptions) -> Result<Self> {
        let expected = expected_tensors(cfg);
        let mut known: BTreeSet<String> = expected.iter().map(|(n, _)| n.clone()).collect();
        for (_, a, b) in SPLIT_NAMES {
            known.insert(a.into());
            known.insert(b.into());
        }
        if let Some(extra) = ck.keys().find(|k| !known.contains(k.as_str())) {
            return Err(Error::checkpoint(
                ck.root(),
                extra.as_str(),
                "unexpected tensor for this config (check audio_adapter_type / audio_dual_ffn_layers / text_config)",
            ));
        }
        let load = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let storage = match SPLIT_NAMES.iter().find(|(n, _, _)| *n == name) {
                Some((_, frozen, trainable)) if !ck.contains(name) && ck.contains(frozen) => {
                    let fi = ck.info(frozen)?;
                    let ti = ck.info(trainable)?;
                    let a = ck.load(frozen, &fi.shape)?;
                    let b = ck.load(trainable, &ti.shape)?;
                    if fi.shape.get(1) != shape.get(1)
                        || ti.shape.get(1) != shape.get(1)
                        || fi.shape[0] + ti.shape[0] != shape[0]
                    {
                        return Err(Error::checkpoint(
                            ck.root(),
                            name,
                            format!(
                                "frozen {:?} + trainable {:?} rows do not make {:?}",
                                fi.shape, ti.shape, shape
                            ),
                        ));
                    }
                    let mut v = a.to_f32_vec();
                    v.extend(b.to_f32_vec());
                    CpuStorage::F32(v).to_dtype(fi.dtype)
                }
                _ => ck.load(name, shape)?,
            };
            let storage = match opts.dtype {
                Some(d) => storage.to_dtype(d),
                None => storage,
            };
            Tensor::from_cpu(shape.to_vec(), storage)
        };
        Self::build(cfg, load, Ok)
    }

    /// Random weights of the config's shapes: matrices N(0, std), norms 1 + N(0, 0.1).
    pub fn random(cfg: &ModelConfig, dtype: DType, seed: u64, std: f32) -> Result<Self> {
        Self::random_on(cfg, dtype, seed, std, &Device::Cpu)
    }

    /// [`ModelWeights::random`] on `device`: each tensor is filled on the host and uploaded at
    /// once, so at most one tensor's host copy is alive (real shapes: 11.5 GB of bf16).
    pub fn random_on(
        cfg: &ModelConfig,
        dtype: DType,
        seed: u64,
        std: f32,
        device: &Device,
    ) -> Result<Self> {
        let counter = std::sync::atomic::AtomicU64::new(seed);
        Self::build(
            cfg,
            |name, shape| {
                let n: usize = shape.iter().product();
                let s = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let is_norm = shape.len() == 1 && name.ends_with("norm.weight");
                // Fill in parallel chunks, each with its own seeded stream (fast for 5.8 B params).
                use rayon::prelude::*;
                let fill = |chunk: &mut [f32], ci: usize| {
                    // splitmix64 per chunk: fast enough for 5.8 B values; quality is irrelevant here.
                    let mut state = s.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                        ^ (ci as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
                    let mut next = || {
                        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                        let mut z = state;
                        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                        z ^ (z >> 31)
                    };
                    for v in chunk.iter_mut() {
                        let r = next();
                        // Sum of two 24-bit uniforms minus 1: triangular in (-1, 1), std 1/sqrt(6).
                        let u = ((r >> 40) as f32 + ((r >> 16) & 0xFF_FFFF) as f32)
                            / (1u32 << 24) as f32
                            - 1.0;
                        *v = if is_norm {
                            1.0 + 0.1 * u * 2.449
                        } else {
                            std * u * 2.449
                        };
                    }
                };
                let storage = match dtype {
                    DType::F32 => {
                        let mut v = vec![0f32; n];
                        v.par_chunks_mut(1 << 16)
                            .enumerate()
                            .for_each(|(i, c)| fill(c, i));
                        CpuStorage::F32(v)
                    }
                    DType::BF16 | DType::F16 => {
                        let mut v = vec![half::bf16::ZERO; n];
                        v.par_chunks_mut(1 << 16).enumerate().for_each(|(i, c)| {
                            let mut tmp = vec![0f32; c.len()];
                            fill(&mut tmp, i);
                            for (o, x) in c.iter_mut().zip(&tmp) {
                                *o = half::bf16::from_f32(*x);
                            }
                        });
                        let s = CpuStorage::BF16(v);
                        if dtype == DType::F16 {
                            s.to_dtype(DType::F16)
                        } else {
                            s
                        }
                    }
                    DType::F8E4M3 => {
                        return Err(Error::Unsupported(
                            "random f8e4m3 weights: build bf16 ones and quantize their linears"
                                .into(),
                        ))
                    }
                };
                Tensor::from_cpu(shape.to_vec(), storage)
            },
            |t| {
                if device.is_cpu() {
                    Ok(t)
                } else {
                    t.to_device(device, dtype)
                }
            },
        )
    }

    /// Every weight copied to `device` in `dtype`.
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Self> {
        let mv = |t: &Tensor| t.to_device(device, dtype);
        let ffn = |f: &FfnWeights| -> Result<FfnWeights> {
            Ok(FfnWeights {
                gate_up: mv(&f.gate_up)?,
                down: mv(&f.down)?,
            })
        };
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in &self.layers {
            let audio = match &l.audio {
                Some(a) => Some(AudioBranch {
                    input_norm: mv(&a.input_norm)?,
                    post_norm: mv(&a.post_norm)?,
                    ffn: a.ffn.as_ref().map(ffn).transpose()?,
                }),
                None => None,
            };
            layers.push(LayerWeights {
                kind: l.kind,
                input_norm: mv(&l.input_norm)?,
                post_norm: mv(&l.post_norm)?,
                qkv: mv(&l.qkv)?,
                o: mv(&l.o)?,
                ffn: ffn(&l.ffn)?,
                audio,
            });
        }
        Ok(ModelWeights {
            embed: mv(&self.embed)?,
            audio_embed: mv(&self.audio_embed)?,
            audio_projector: self.audio_projector.as_ref().map(mv).transpose()?,
            layers,
            norm: mv(&self.norm)?,
            text_head: mv(&self.text_head)?,
            audio_head: mv(&self.audio_head)?,
        })
    }

    /// Every Linear weight (projections, FFNs, the audio projector, both heads) re-laid out
    /// for the CPU GEMM, once (see [`Tensor::pack_for_cpu_matmul`]); norms and embedding
    /// tables stay row-major. Weights on a GPU are returned as they are.
    pub fn pack_linears_for_cpu(self) -> Self {
        match self.map_linears(|_, t| Ok::<_, std::convert::Infallible>(t.pack_for_cpu_matmul())) {
            Ok(w) => w,
            Err(never) => match never {},
        }
    }

    /// Every Linear weight (projections, FFNs, the audio projector, both heads) passed
    /// through `f` with its [`LinearRole`], in load order; norms and embedding tables are
    /// kept as they are. The one place that knows which tensors are matmul weights: packing
    /// for the CPU GEMM and quantization both go through it.
    pub fn map_linears<E>(
        self,
        mut f: impl FnMut(LinearRole, Tensor) -> std::result::Result<Tensor, E>,
    ) -> std::result::Result<Self, E> {
        type MapFn<'a, E> = dyn FnMut(LinearRole, Tensor) -> std::result::Result<Tensor, E> + 'a;
        let ffn = |w: FfnWeights, role: LinearRole, f: &mut MapFn<'_, E>| {
            Ok(FfnWeights {
                gate_up: f(role, w.gate_up)?,
                down: f(role, w.down)?,
            })
        };
        let audio_projector = self
            .audio_projector
            .map(|t| f(LinearRole::AudioProjector, t))
            .transpose()?;
        let mut layers = Vec::with_capacity(self.layers.len());
        for l in self.layers {
            layers.push(LayerWeights {
                kind: l.kind,
                input_norm: l.input_norm,
                post_norm: l.post_norm,
                qkv: f(LinearRole::Attention, l.qkv)?,
                o: f(LinearRole::Attention, l.o)?,
                ffn: ffn(l.ffn, LinearRole::Ffn, &mut f)?,
                audio: match l.audio {
                    Some(a) => Some(AudioBranch {
                        input_norm: a.input_norm,
                        post_norm: a.post_norm,
                        ffn: match a.ffn {
                            Some(w) => Some(ffn(w, LinearRole::AudioFfn, &mut f)?),
                            None => None,
                        },
                    }),
                    None => None,
                },
            });
        }
        Ok(ModelWeights {
            embed: self.embed,
            audio_embed: self.audio_embed,
            audio_projector,
            layers,
            norm: self.norm,
            text_head: f(LinearRole::TextHead, self.text_head)?,
            audio_head: f(LinearRole::AudioHead, self.audio_head)?,
        })
    }

    /// Bytes of every weight (at its stored dtype).
    pub fn byte_count(&self) -> usize {
        let mut n = 0;
        self.for_each(|t| n += t.elem_count() * t.dtype().size_bytes());
        n
    }

    fn for_each(&self, mut f: impl FnMut(&Tensor)) {
        for t in [
            &self.embed,
            &self.audio_embed,
            &self.norm,
            &self.text_head,
            &self.audio_head,
        ] {
            f(t);
        }
        if let Some(p) = &self.audio_projector {
            f(p);
        }
        for l in &self.layers {
            for t in [
                &l.input_norm,
                &l.post_norm,
                &l.qkv,
                &l.o,
                &l.ffn.gate_up,
                &l.ffn.down,
            ] {
                f(t);
            }
            if let Some(a) = &l.audio {
                f(&a.input_norm);
                f(&a.post_norm);
                if let Some(af) = &a.ffn {
                    for t in [&af.gate_up, &af.down] {
                        f(t);
                    }
                }
            }
        }
    }

    /// Every tensor of the config from `get` (a host tensor of the checkpoint's name and
    /// shape), the fused projections concatenated on the host, each final tensor passed
    /// through `put` (an upload, or nothing) so at most one layer's parts are on the host.
    fn build(
        cfg: &ModelConfig,
        get: impl FnMut(&str, &[usize]) -> Result<Tensor>,
        put: impl FnMut(Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        let mut b = Builder {
            shapes: expected_tensors(cfg).into_iter().collect(),
            get,
            put,
        };
        let embed = b.one("embed_tokens.weight")?;
        let audio_embed = b.one("audio_codebook_embeddings.weight")?;
        let audio_projector = if cfg.audio_out_embed_projector {
            Some(b.one("audio_out_embed_projector.weight")?)
        } else {
            None
        };
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let p = format!("layers.{i}");
            let audio = if cfg.has_audio_ffn(i) {
                Some(AudioBranch {
                    input_norm: b.one(&format!("{p}.audio_input_layernorm.weight"))?,
                    post_norm: b.one(&format!("{p}.audio_post_attention_layernorm.weight"))?,
                    ffn: Some(FfnWeights {
                        gate_up: b.fused(&p, "audio_mlp", &["gate_proj", "up_proj"])?,
                        down: b.one(&format!("{p}.audio_mlp.down_proj.weight"))?,
                    }),
                })
            } else {
                None
            };
            layers.push(LayerWeights {
                kind: cfg.layer_kinds[i],
                input_norm: b.one(&format!("{p}.input_layernorm.weight"))?,
                post_norm: b.one(&format!("{p}.post_attention_layernorm.weight"))?,
                qkv: b.fused(&p, "self_attn", &["q_proj", "k_proj", "v_proj"])?,
                o: b.one(&format!("{p}.self_attn.o_proj.weight"))?,
                ffn: FfnWeights {
                    gate_up: b.fused(&p, "mlp", &["gate_proj", "up_proj"])?,
                    down: b.one(&format!("{p}.mlp.down_proj.weight"))?,
                },
                audio,
            });
        }
        Ok(ModelWeights {
            embed,
            audio_embed,
            audio_projector,
            layers,
            norm: b.one("norm.weight")?,
            text_head: b.one("audio_decoder_proj.text_lm_head.weight")?,
            audio_head: b.one("audio_decoder_proj.audio_lm_head.weight")?,
        })
    }

    /// Applies load-time DualFFN overrides to these weights and their config: each layer's
    /// kind is set from [`LayerOverrides::layer_kinds`] (validated against the audio weights
    /// these layers have), audio weights of layers that are no longer dual are dropped, and
    /// under `--audio-ffn off` every audio FFN is dropped (audio rows use the text FFN).
    /// Returns the kinds now in force. No override: nothing changes.
    pub fn apply_overrides(
        &mut self,
        cfg: &mut ModelConfig,
        o: &LayerOverrides,
    ) -> Result<Vec<LayerKind>> {
        let kinds = o.layer_kinds(cfg, |i| {
            self.layers.get(i).is_some_and(|l| l.audio.is_some())
        })?;
        for (l, &k) in self.layers.iter_mut().zip(&kinds) {
            l.kind = k;
            if k != LayerKind::Dual {
                l.audio = None;
            }
            if let (Some(a), AudioFfn::Off) = (&mut l.audio, o.audio_ffn) {
                a.ffn = None;
            }
        }
        cfg.layer_kinds = kinds.clone();
        Ok(kinds)
    }

    /// Bytes of one FFN's three matrices.
    pub fn ffn_bytes(f: &FfnWeights) -> usize {
        [&f.gate_up, &f.down]
            .iter()
            .map(|t| t.elem_count() * t.dtype().size_bytes())
            .sum()
    }

    pub fn param_count(&self) -> usize {
        let mut n = 0;
        self.for_each(|t| n += t.elem_count());
        n
    }
}

/// Tensors by checkpoint name for [`ModelWeights::build`]: `get` makes a host tensor of the
/// name's shape, `put` finishes one the model keeps (upload, or nothing).
struct Builder<G, P> {
    shapes: std::collections::HashMap<String, Vec<usize>>,
    get: G,
    put: P,
}

impl<G, P> Builder<G, P>
where
    G: FnMut(&str, &[usize]) -> Result<Tensor>,
    P: FnMut(Tensor) -> Result<Tensor>,
{
    fn raw(&mut self, name: &str) -> Result<Tensor> {
        let shape = self
            .shapes
            .get(name)
            .ok_or_else(|| Error::Other(format!("internal: no shape for {name}")))?;
        (self.get)(name, shape)
    }

    fn one(&mut self, name: &str) -> Result<Tensor> {
        let t = self.raw(name)?;
        (self.put)(t)
    }

    /// `{prefix}.{module}.{part}.weight` for each part, concatenated along rows (the output
    /// dimension) in the order given; the parts are dropped once copied.
    fn fused(&mut self, prefix: &str, module: &str, parts: &[&str]) -> Result<Tensor> {
        let mut ts = Vec::with_capacity(parts.len());
        for part in parts {
            ts.push(self.raw(&format!("{prefix}.{module}.{part}.weight"))?);
        }
        let t = Tensor::cat_rows(ts)?;
        (self.put)(t)
    }
}
