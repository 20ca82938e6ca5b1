//! HuBERT-base forward for the codec's semantic branch, exactly as `transformers`'
//! `HubertModel` (v4.45/4.46, not the stable-layer-norm variant) computes it in eval mode, with
//! `output_hidden_states=True` and no attention mask (spec: codec.md §5.3, §11.9):
//! group-norm conv feature extractor -> LayerNorm + Linear projection -> weight-normed grouped
//! positional conv (128 taps, 16 groups; folded at load) -> encoder LayerNorm -> post-LN
//! transformer layers. Every hidden state (embedding output plus one per layer) is returned.
//!
//! Also holds the small dense primitives the encode side needs besides `codec::layers`
//! (linear, LayerNorm, exact GELU, per-channel GroupNorm).
//! May use: error, weights, codec::{layers, weights}.

use super::layers::{conv1d, conv1d_gemm};
use crate::error::{Error, Result};
use crate::weights::WeightMap;
use rayon::prelude::*;
use serde::Deserialize;
use std::path::Path;

/// The `HubertConfig` fields the forward depends on. Defaults are hubert-base's, which is what
/// `bosonai/hubert_base` is (spec §5.3); a `config.json` next to the weights overrides them.
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct HubertConfig {
    #[serde(default = "d_hidden")]
    pub hidden_size: usize,
    #[serde(default = "d_layers")]
    pub num_hidden_layers: usize,
    #[serde(default = "d_heads")]
    pub num_attention_heads: usize,
    #[serde(default = "d_inter")]
    pub intermediate_size: usize,
    #[serde(default = "d_conv_dim")]
    pub conv_dim: Vec<usize>,
    #[serde(default = "d_conv_kernel")]
    pub conv_kernel: Vec<usize>,
    #[serde(default = "d_conv_stride")]
    pub conv_stride: Vec<usize>,
    #[serde(default)]
    pub conv_bias: bool,
    #[serde(default = "d_pos_k")]
    pub num_conv_pos_embeddings: usize,
    #[serde(default = "d_pos_g")]
    pub num_conv_pos_embedding_groups: usize,
    #[serde(default = "d_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "d_norm")]
    pub feat_extract_norm: String,
    #[serde(default = "d_true")]
    pub feat_proj_layer_norm: bool,
    #[serde(default)]
    pub do_stable_layer_norm: bool,
    #[serde(default = "d_act")]
    pub hidden_act: String,
    #[serde(default = "d_act")]
    pub feat_extract_activation: String,
}

fn d_hidden() -> usize {
    768
}
fn d_layers() -> usize {
    12
}
fn d_heads() -> usize {
    12
}
fn d_inter() -> usize {
    3072
}
fn d_conv_dim() -> Vec<usize> {
    vec![512; 7]
}
fn d_conv_kernel() -> Vec<usize> {
    vec![10, 3, 3, 3, 3, 2, 2]
}
fn d_conv_stride() -> Vec<usize> {
    vec![5, 2, 2, 2, 2, 2, 2]
}
fn d_pos_k() -> usize {
    128
}
fn d_pos_g() -> usize {
    16
}
fn d_eps() -> f64 {
    1e-5
}
fn d_norm() -> String {
    "group".into()
}
fn d_true() -> bool {
    true
}
fn d_act() -> String {
    "gelu".into()
}

impl HubertConfig {
    /// hubert-base (what the released codec uses).
    pub fn base() -> Self {
        // An empty JSON object takes every default.
        serde_json::from_str("{}").unwrap_or_else(|_| unreachable!("all fields have defaults"))
    }

    /// Read `config.json` of a HuBERT folder and check that this forward implements it.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let cfg: HubertConfig = serde_json::from_str(&text)
            .map_err(|e| Error::config(path, "<json>", e.to_string()))?;
        cfg.validate(path)?;
        Ok(cfg)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |field: &str, reason: String| Err(Error::config(path, field, reason));
        let n = self.conv_dim.len();
        if n == 0 || self.conv_kernel.len() != n || self.conv_stride.len() != n {
            return bad(
                "conv_dim",
                "conv_dim, conv_kernel and conv_stride must have equal, non-zero lengths".into(),
            );
        }
        if self.conv_stride.contains(&0) || self.conv_kernel.contains(&0) {
            return bad("conv_stride", "kernels and strides must be positive".into());
        }
        if self.feat_extract_norm != "group" {
            return bad(
                "feat_extract_norm",
                format!("`{}` (only \"group\")", self.feat_extract_norm),
            );
        }
        if self.do_stable_layer_norm {
            return bad(
                "do_stable_layer_norm",
                "true (only the post-LN HubertModel)".into(),
            );
        }
        if !self.feat_proj_layer_norm {
            return bad("feat_proj_layer_norm", "false (only true)".into());
        }
        for (field, act) in [
            ("hidden_act", &self.hidden_act),
            ("feat_extract_activation", &self.feat_extract_activation),
        ] {
            if act != "gelu" {
                return bad(field, format!("`{act}` (only exact gelu)"));
            }
        }
        let h = self.hidden_size;
        if self.num_attention_heads == 0 || !h.is_multiple_of(self.num_attention_heads) {
            return bad(
                "num_attention_heads",
                format!(
                    "{} does not divide hidden_size {h}",
                    self.num_attention_heads
                ),
            );
        }
        let g = self.num_conv_pos_embedding_groups;
        if g == 0 || !h.is_multiple_of(g) {
            return bad(
                "num_conv_pos_embedding_groups",
                format!("{g} does not divide hidden_size {h}"),
            );
        }
        Ok(())
    }

    /// The config for HuBERT weights under `prefix` when no `config.json` comes with them (the
    /// released `model.pth` embeds HuBERT without one): widths, depth, conv kernels and the
    /// positional conv are read off the tensor shapes. The head count is not visible in any
    /// shape; it is taken as hidden/64, hubert-base's head size (768 -> 12 heads).
    pub fn infer(w: &WeightMap, prefix: &str) -> Result<Self> {
        let mut cfg = HubertConfig::base();
        let get = |key: &str| w.get(&format!("{prefix}{key}"));
        cfg.hidden_size = get("encoder.layer_norm.weight")?.numel();
        let (mut dims, mut kernels) = (Vec::new(), Vec::new());
        while let Ok(t) = get(&format!(
            "feature_extractor.conv_layers.{}.conv.weight",
            dims.len()
        )) {
            if t.shape.len() != 3 {
                return Err(Error::checkpoint(
                    w.source(),
                    format!("{prefix}feature_extractor"),
                    "conv weight is not 3-d",
                ));
            }
            dims.push(t.shape[0]);
            kernels.push(t.shape[2]);
        }
        if dims.len() != cfg.conv_stride.len() {
            return Err(Error::checkpoint(
                w.source(),
                format!("{prefix}feature_extractor.conv_layers"),
                format!(
                    "{} conv layers; without a config.json only hubert-base's 7 are known",
                    dims.len()
                ),
            ));
        }
        cfg.conv_dim = dims;
        cfg.conv_kernel = kernels;
        cfg.conv_bias = w.contains(&format!(
            "{prefix}feature_extractor.conv_layers.0.conv.bias"
        ));
        let mut layers = 0;
        while w.contains(&format!(
            "{prefix}encoder.layers.{layers}.layer_norm.weight"
        )) {
            layers += 1;
        }
        cfg.num_hidden_layers = layers;
        cfg.intermediate_size = get("encoder.layers.0.feed_forward.intermediate_dense.bias")
            .map(|t| t.numel())
            .unwrap_or(0);
        let pos = get("encoder.pos_conv_embed.conv.weight")?;
        if pos.shape.len() == 3 && pos.shape[1] > 0 {
            cfg.num_conv_pos_embedding_groups = cfg.hidden_size / pos.shape[1];
            cfg.num_conv_pos_embeddings = pos.shape[2];
        }
        cfg.num_attention_heads = (cfg.hidden_size / 64).max(1);
        cfg.validate(w.source())?;
        Ok(cfg)
    }

    /// Receptive field of the conv front end, in input samples (400 for hubert-base).
    pub fn receptive_field(&self) -> usize {
        let mut rf = 1;
        let mut jump = 1;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            rf += (k - 1) * jump;
            jump *= s;
        }
        rf
    }

    /// Frames the conv front end makes from `n` samples (0 if `n` is below the receptive field).
    pub fn num_frames(&self, n: usize) -> usize {
        let mut len = n;
        for (&k, &s) in self.conv_kernel.iter().zip(&self.conv_stride) {
            if len < k {
                return 0;
            }
            len = (len - k) / s + 1;
        }
        len
    }
}

type Slice<'a> = &'a [f32];

/// One post-LN transformer layer (`HubertEncoderLayer`).
struct EncoderLayer<'a> {
    /// q, k, v projections `[hidden, hidden]` and biases.
    qkv: [(Slice<'a>, Slice<'a>); 3],
    out_w: Slice<'a>,
    out_b: Slice<'a>,
    ln1: (Slice<'a>, Slice<'a>),
    ff1_w: Slice<'a>,
    ff1_b: Slice<'a>,
    ff2_w: Slice<'a>,
    ff2_b: Slice<'a>,
    ln2: (Slice<'a>, Slice<'a>),
}

/// HuBERT, borrowing its (weight-norm folded) tensors from the codec's weight map, so building
/// it per encode call costs nothing.
pub struct Hubert<'a> {
    pub cfg: HubertConfig,
    /// Feature-extractor conv weights `[c_out, c_in, k]` (no bias when conv_bias is false).
    conv_w: Vec<Slice<'a>>,
    conv_b: Vec<Option<Slice<'a>>>,
    /// GroupNorm affine of layer 0 (one group per channel).
    gn: (Slice<'a>, Slice<'a>),
    proj_ln: (Slice<'a>, Slice<'a>),
    proj_w: Slice<'a>,
    proj_b: Slice<'a>,
    /// Positional conv, weight norm folded: `[hidden, hidden/groups, k]`.
    pos_w: Slice<'a>,
    pos_b: Slice<'a>,
    enc_ln: (Slice<'a>, Slice<'a>),
    layers: Vec<EncoderLayer<'a>>,
}

impl<'a> Hubert<'a> {
    /// Borrow the HuBERT tensors under `prefix` (e.g. `semantic_model.`) from `w`, whose weight
    /// norm is already folded (`...pos_conv_embed.conv.weight`); shapes are checked against `cfg`.
    pub fn new(cfg: HubertConfig, w: &'a WeightMap, prefix: &str) -> Result<Self> {
        let h = cfg.hidden_size;
        let take = |key: &str, shape: &[usize]| -> Result<Slice<'a>> {
            Ok(w.get_shaped(&format!("{prefix}{key}"), shape)?
                .data
                .as_slice())
        };
        let mut conv_w = Vec::new();
        let mut conv_b = Vec::new();
        let mut c_in = 1;
        for (i, (&c, &k)) in cfg.conv_dim.iter().zip(&cfg.conv_kernel).enumerate() {
            conv_w.push(take(
                &format!("feature_extractor.conv_layers.{i}.conv.weight"),
                &[c, c_in, k],
            )?);
            conv_b.push(if cfg.conv_bias {
                Some(take(
                    &format!("feature_extractor.conv_layers.{i}.conv.bias"),
                    &[c],
                )?)
            } else {
                None
            });
            c_in = c;
        }
        let c0 = cfg.conv_dim[0];
        let gn = (
            take("feature_extractor.conv_layers.0.layer_norm.weight", &[c0])?,
            take("feature_extractor.conv_layers.0.layer_norm.bias", &[c0])?,
        );
        let proj_ln = (
            take("feature_projection.layer_norm.weight", &[c_in])?,
            take("feature_projection.layer_norm.bias", &[c_in])?,
        );
        let proj_w = take("feature_projection.projection.weight", &[h, c_in])?;
        let proj_b = take("feature_projection.projection.bias", &[h])?;
        let (k, g) = (
            cfg.num_conv_pos_embeddings,
            cfg.num_conv_pos_embedding_groups,
        );
        let pos_w = take("encoder.pos_conv_embed.conv.weight", &[h, h / g, k])?;
        let pos_b = take("encoder.pos_conv_embed.conv.bias", &[h])?;
        let enc_ln = (
            take("encoder.layer_norm.weight", &[h])?,
            take("encoder.layer_norm.bias", &[h])?,
        );
        let f = cfg.intermediate_size;
        let mut layers = Vec::new();
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layers.{l}.");
            let proj = |name: &str| -> Result<(Slice<'a>, Slice<'a>)> {
                Ok((
                    take(&format!("{p}attention.{name}.weight"), &[h, h])?,
                    take(&format!("{p}attention.{name}.bias"), &[h])?,
                ))
            };
            layers.push(EncoderLayer {
                qkv: [proj("q_proj")?, proj("k_proj")?, proj("v_proj")?],
                out_w: take(&format!("{p}attention.out_proj.weight"), &[h, h])?,
                out_b: take(&format!("{p}attention.out_proj.bias"), &[h])?,
                ln1: (
                    take(&format!("{p}layer_norm.weight"), &[h])?,
                    take(&format!("{p}layer_norm.bias"), &[h])?,
                ),
                ff1_w: take(
                    &format!("{p}feed_forward.intermediate_dense.weight"),
                    &[f, h],
                )?,
                ff1_b: take(&format!("{p}feed_forward.intermediate_dense.bias"), &[f])?,
                ff2_w: take(&format!("{p}feed_forward.output_dense.weight"), &[h, f])?,
                ff2_b: take(&format!("{p}feed_forward.output_dense.bias"), &[h])?,
                ln2: (
                    take(&format!("{p}final_layer_norm.weight"), &[h])?,
                    take(&format!("{p}final_layer_norm.bias"), &[h])?,
                ),
            });
        }
        Ok(Hubert {
            cfg,
            conv_w,
            conv_b,
            gn,
            proj_ln,
            proj_w,
            proj_b,
            pos_w,
            pos_b,
            enc_ln,
            layers,
        })
    }

    /// Run HuBERT on raw 16 kHz samples (no normalisation, spec §5.2). Returns the
    /// `num_hidden_layers + 1` hidden states, each time-major `[frames, hidden]`.
    pub fn forward(&self, input: &[f32]) -> Result<Vec<Vec<f32>>> {
        let frames = self.cfg.num_frames(input.len());
        if frames == 0 {
            return Err(Error::Audio(format!(
                "{} samples at 16 kHz are fewer than HuBERT's receptive field of {}",
                input.len(),
                self.cfg.receptive_field()
            )));
        }
        let eps = self.cfg.layer_norm_eps as f32;
        let h = self.cfg.hidden_size;
        // Feature extractor, channel-major [c, t].
        let mut x = input.to_vec();
        let (mut c_in, mut t) = (1usize, input.len());
        for (i, w) in self.conv_w.iter().enumerate() {
            let (c, k, s) = (
                self.cfg.conv_dim[i],
                self.cfg.conv_kernel[i],
                self.cfg.conv_stride[i],
            );
            x = conv1d_gemm(&x, c_in, t, w, c, k, self.conv_b[i], s, 0, 1);
            t = (t - k) / s + 1;
            c_in = c;
            if i == 0 {
                group_norm_per_channel(&mut x, t, self.gn.0, self.gn.1, eps);
            }
            gelu_inplace(&mut x);
        }
        debug_assert_eq!(t, frames);
        // Feature projection on [frames, c].
        let mut feats = transpose(&x, c_in, t);
        layer_norm_rows(&mut feats, c_in, self.proj_ln.0, self.proj_ln.1, eps);
        let mut hs = linear(&feats, t, c_in, self.proj_w, Some(self.proj_b), h);
        // Positional conv embedding (channel-major), last frame dropped (even kernel), GELU.
        let k = self.cfg.num_conv_pos_embeddings;
        let groups = self.cfg.num_conv_pos_embedding_groups;
        let hs_cm = transpose(&hs, t, h);
        let pos = conv1d(
            &hs_cm,
            h,
            t,
            self.pos_w,
            h,
            k,
            Some(self.pos_b),
            1,
            k / 2,
            1,
            groups,
        );
        let t_pos = pos.len() / h;
        let remove = usize::from(k.is_multiple_of(2));
        for c in 0..h {
            for ti in 0..t {
                // t_pos - remove == t, so every kept output lines up with a frame.
                debug_assert_eq!(t_pos - remove, t);
                hs[ti * h + c] += gelu(pos[c * t_pos + ti]);
            }
        }
        layer_norm_rows(&mut hs, h, self.enc_ln.0, self.enc_ln.1, eps);
        let mut states = Vec::with_capacity(self.layers.len() + 1);
        states.push(hs.clone());
        for layer in &self.layers {
            hs = self.layer_forward(layer, &hs, t, eps);
            states.push(hs.clone());
        }
        Ok(states)
    }

    fn layer_forward(&self, l: &EncoderLayer, x: &[f32], t: usize, eps: f32) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let attn = self.attention(l, x, t);
        let mut y: Vec<f32> = x.iter().zip(&attn).map(|(a, b)| a + b).collect();
        layer_norm_rows(&mut y, h, l.ln1.0, l.ln1.1, eps);
        let mut mid = linear(&y, t, h, l.ff1_w, Some(l.ff1_b), self.cfg.intermediate_size);
        gelu_inplace(&mut mid);
        let ff = linear(
            &mid,
            t,
            self.cfg.intermediate_size,
            l.ff2_w,
            Some(l.ff2_b),
            h,
        );
        for (a, b) in y.iter_mut().zip(&ff) {
            *a += b;
        }
        layer_norm_rows(&mut y, h, l.ln2.0, l.ln2.1, eps);
        y
    }

    /// Bidirectional multi-head self-attention; q is scaled by head_dim^-0.5 before q·kᵀ, as
    /// the eager `HubertAttention` does.
    fn attention(&self, l: &EncoderLayer, x: &[f32], t: usize) -> Vec<f32> {
        let h = self.cfg.hidden_size;
        let n_heads = self.cfg.num_attention_heads;
        let hd = h / n_heads;
        let [q, k, v] = l.qkv.map(|(w, b)| linear(x, t, h, w, Some(b), h));
        let scale = (hd as f32).powf(-0.5);
        let mut ctx = vec![0f32; t * h];
        // One task per (head, query row); each writes its own hd-slice of ctx.
        let rows: Vec<(usize, Vec<f32>)> = (0..n_heads * t)
            .into_par_iter()
            .map(|job| {
                let (head, qi) = (job / t, job % t);
                let qrow: Vec<f32> = q[qi * h + head * hd..qi * h + (head + 1) * hd]
                    .iter()
                    .map(|v| v * scale)
                    .collect();
                let mut scores: Vec<f32> = (0..t)
                    .map(|kj| dot(&qrow, &k[kj * h + head * hd..kj * h + (head + 1) * hd]))
                    .collect();
                softmax_inplace(&mut scores);
                let mut out = vec![0f32; hd];
                for (kj, &p) in scores.iter().enumerate() {
                    let vrow = &v[kj * h + head * hd..kj * h + (head + 1) * hd];
                    for (o, &vv) in out.iter_mut().zip(vrow) {
                        *o += p * vv;
                    }
                }
                (job, out)
            })
            .collect();
        for (job, out) in rows {
            let (head, qi) = (job / t, job % t);
            ctx[qi * h + head * hd..qi * h + (head + 1) * hd].copy_from_slice(&out);
        }
        linear(&ctx, t, h, l.out_w, Some(l.out_b), h)
    }
}

fn softmax_inplace(x: &mut [f32]) {
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// Dot product with 8 independent partial sums, so the compiler can vectorise it.
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// `y = x Wᵀ + b` for time-major `x` `[rows, d_in]`, `W` `[d_out, d_in]` (nn.Linear layout).
/// Parallel over blocks of 4 rows; within a block, tiles of weight rows stay in cache and each
/// weight row is used for the 4 activation rows at once.
pub(crate) fn linear(
    x: &[f32],
    rows: usize,
    d_in: usize,
    w: &[f32],
    b: Option<&[f32]>,
    d_out: usize,
) -> Vec<f32> {
    debug_assert_eq!(x.len(), rows * d_in);
    debug_assert_eq!(w.len(), d_out * d_in);
    let mut y = vec![0f32; rows * d_out];
    if rows == 0 || d_out == 0 {
        return y;
    }
    // The LLM's CPU GEMM (k-blocked, register-tiled) serves every Linear of HuBERT and fc_prior.
    crate::backend::cpu::matmul::matmul(x, rows, d_in, w, d_out, &mut y);
    if let Some(b) = b {
        y.par_chunks_mut(d_out).for_each(|row| {
            for (v, bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        });
    }
    y
}

/// LayerNorm over the last axis of `[rows, d]` (biased variance, eps inside the sqrt).
pub(crate) fn layer_norm_rows(x: &mut [f32], d: usize, gamma: &[f32], beta: &[f32], eps: f32) {
    x.par_chunks_mut(d.max(1)).for_each(|row| {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
            *v = ((f64::from(*v) - mean) * inv) as f32 * g + b;
        }
    });
}

/// GroupNorm with one group per channel on channel-major `[c, t]`: each channel is normalised
/// over the whole utterance (spec §5.3 step 1).
pub(crate) fn group_norm_per_channel(
    x: &mut [f32],
    t: usize,
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) {
    x.par_chunks_mut(t.max(1)).enumerate().for_each(|(c, row)| {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / t as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / t as f64;
        let inv = 1.0 / (var + f64::from(eps)).sqrt();
        for v in row.iter_mut() {
            *v = ((f64::from(*v) - mean) * inv) as f32 * gamma[c] + beta[c];
        }
    });
}

/// Exact (erf) GELU: `x/2 · (1 + erf(x/√2))`.
pub(crate) fn gelu(x: f32) -> f32 {
    let z = f64::from(x) * std::f64::consts::FRAC_1_SQRT_2;
    (0.5 * f64::from(x) * (1.0 + erf(z))) as f32
}

pub(crate) fn gelu_inplace(x: &mut [f32]) {
    x.par_chunks_mut(4096)
        .for_each(|c| c.iter_mut().for_each(|v| *v = gelu(*v)));
}

/// erf in f64: `libm`'s port of musl's erf (rational approximations, under 1 ulp), far beyond
/// what an f32 GELU needs and ~20x faster than the Maclaurin series it replaced, which made
/// GELU a tenth of a clip's encode time.
fn erf(z: f64) -> f64 {
    libm::erf(z)
}

/// `[rows, cols]` -> `[cols, rows]`.
pub(crate) fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            y[c * rows + r] = x[r * cols + c];
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        assert_eq!(gelu(0.0), 0.0);
        assert_eq!(gelu(-10.0), 0.0);
        assert_eq!(gelu(10.0), 10.0);
        for (z, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (2.0, 0.995_322_265_018_952_7),
            (2.9, 0.999_958_902_121_900_5),
            (3.5, 0.999_999_256_901_627_7),
            (-1.0, -0.842_700_792_949_714_9),
        ] {
            assert!(
                (erf(z) - want).abs() < 1e-15,
                "erf({z}) = {} want {want}",
                erf(z)
            );
        }
    }

    #[test]
    fn hubert_base_frames() {
        let c = HubertConfig::base();
        assert_eq!(c.receptive_field(), 400);
        assert_eq!(c.num_frames(16_320), 50);
        assert_eq!(c.num_frames(399), 0);
    }
}
