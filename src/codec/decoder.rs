//! The decode back end: `fc_post2` (Linear quantizer_dim -> D) and the DAC decoder `decoder_2`:
//! conv k7 -> 5 x [Snake, ConvTranspose1d (k 2s, stride s, pad ceil(s/2), output_padding s%2),
//! 3 dilated residual units] -> Snake -> conv k7 -> 1 channel. Up-sampling runs in the SAME
//! order as the config's ratios (Higgs does not reverse them) and there is no final tanh.
//! Activations are channel-major `[C, T]`. spec: codec.md §3, §6.5, §7.
//! May use: error, weights, codec::{config, layers, weights}.

use super::config::CodecConfig;
use super::layers::{conv1d_gemm, conv_transpose1d, snake_inplace};
use super::weights::take_shaped;
use crate::error::Result;
use crate::weights::WeightMap;
use rayon::prelude::*;

/// A folded (weight-norm-free) Conv1d with bias.
#[derive(Clone, Debug)]
pub struct Conv {
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) kernel: usize,
    pub(crate) dilation: usize,
}

impl Conv {
    fn load(
        w: &mut WeightMap,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        dilation: usize,
    ) -> Result<Self> {
        Ok(Conv {
            w: take_shaped(w, &format!("{prefix}.weight"), &[c_out, c_in, kernel])?,
            b: take_shaped(w, &format!("{prefix}.bias"), &[c_out])?,
            c_in,
            c_out,
            kernel,
            dilation,
        })
    }

    /// Stride 1, "same" zero padding `(k-1)/2 * d` (every decoder conv has an odd kernel).
    pub(crate) fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let pad = (self.kernel - 1) / 2 * self.dilation;
        conv1d_gemm(
            x,
            self.c_in,
            t,
            &self.w,
            self.c_out,
            self.kernel,
            Some(&self.b),
            1,
            pad,
            self.dilation,
        )
    }
}

/// A folded ConvTranspose1d with bias; weight `[c_in, c_out, 2s]`.
#[derive(Clone, Debug)]
pub struct ConvT {
    pub(crate) w: Vec<f32>,
    pub(crate) b: Vec<f32>,
    pub(crate) c_in: usize,
    pub(crate) c_out: usize,
    pub(crate) stride: usize,
}

impl ConvT {
    /// Output length is exactly `stride * t`: (t-1)s - 2 ceil(s/2) + 2s + s%2.
    pub(crate) fn forward(&self, x: &[f32], t: usize) -> Vec<f32> {
        let s = self.stride;
        conv_transpose1d(
            x,
            self.c_in,
            t,
            &self.w,
            self.c_out,
            2 * s,
            Some(&self.b),
            s,
            s.div_ceil(2),
            s % 2,
        )
    }
}

/// `x + conv_k1(snake(conv_k7_dil(snake(x))))` (spec §3.3).
#[derive(Clone, Debug)]
pub struct ResidualUnit {
    pub(crate) alpha1: Vec<f32>,
    pub(crate) conv1: Conv,
    pub(crate) alpha2: Vec<f32>,
    pub(crate) conv2: Conv,
}

impl ResidualUnit {
    fn load(w: &mut WeightMap, prefix: &str, dim: usize, dilation: usize) -> Result<Self> {
        Ok(ResidualUnit {
            alpha1: take_shaped(w, &format!("{prefix}.block.0.alpha"), &[1, dim, 1])?,
            conv1: Conv::load(w, &format!("{prefix}.block.1"), dim, dim, 7, dilation)?,
            alpha2: take_shaped(w, &format!("{prefix}.block.2.alpha"), &[1, dim, 1])?,
            conv2: Conv::load(w, &format!("{prefix}.block.3"), dim, dim, 1, 1)?,
        })
    }

    pub(crate) fn forward_inplace(&self, x: &mut [f32], t: usize) {
        let c = self.conv1.c_in;
        let mut h = x.to_vec();
        snake_inplace(&mut h, c, t, &self.alpha1);
        let mut h = self.conv1.forward(&h, t);
        snake_inplace(&mut h, c, t, &self.alpha2);
        let h = self.conv2.forward(&h, t);
        x.par_iter_mut()
            .zip(h.par_iter())
            .for_each(|(a, b)| *a += b);
    }
}

/// `DecoderBlock(in, out, s)`: Snake(in), ConvT(in -> out), RU(out, d = 1, 3, 9).
#[derive(Clone, Debug)]
pub struct UpBlock {
    pub(crate) alpha: Vec<f32>,
    pub(crate) up: ConvT,
    pub(crate) units: Vec<ResidualUnit>,
}

impl UpBlock {
    fn load(
        w: &mut WeightMap,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        stride: usize,
    ) -> Result<Self> {
        let alpha = take_shaped(w, &format!("{prefix}.block.0.alpha"), &[1, c_in, 1])?;
        let up = ConvT {
            w: take_shaped(
                w,
                &format!("{prefix}.block.1.weight"),
                &[c_in, c_out, 2 * stride],
            )?,
            b: take_shaped(w, &format!("{prefix}.block.1.bias"), &[c_out])?,
            c_in,
            c_out,
            stride,
        };
        let units = [1, 3, 9]
            .iter()
            .enumerate()
            .map(|(i, &d)| ResidualUnit::load(w, &format!("{prefix}.block.{}", i + 2), c_out, d))
            .collect::<Result<_>>()?;
        Ok(UpBlock { alpha, up, units })
    }

    /// `[c_in, t]` -> `[c_out, s t]`.
    pub(crate) fn forward(&self, mut x: Vec<f32>, t: usize) -> Vec<f32> {
        snake_inplace(&mut x, self.up.c_in, t, &self.alpha);
        let mut y = self.up.forward(&x, t);
        let t_out = t * self.up.stride;
        for u in &self.units {
            u.forward_inplace(&mut y, t_out);
        }
        y
    }
}

/// `fc_post2` followed by `decoder_2`.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// Width of the RVQ output (quantizer_dim) and of the acoustic latent (D).
    pub quantizer_dim: usize,
    pub latent_dim: usize,
    pub(crate) fc_w: Vec<f32>,
    pub(crate) fc_b: Vec<f32>,
    pub(crate) conv_in: Conv,
    pub(crate) blocks: Vec<UpBlock>,
    pub(crate) alpha_out: Vec<f32>,
    pub(crate) conv_out: Conv,
}

impl Decoder {
    /// Take `fc_post2.*` and `decoder_2.*` out of a (weight-norm-folded) map.
    pub fn from_weights(cfg: &CodecConfig, w: &mut WeightMap) -> Result<Self> {
        let (q, d, c0) = (cfg.quantizer_dim(), cfg.d, cfg.decoder_channels);
        let fc_w = take_shaped(w, "fc_post2.weight", &[d, q])?;
        let fc_b = take_shaped(w, "fc_post2.bias", &[d])?;
        let conv_in = Conv::load(w, "decoder_2.model.0", d, c0, 7, 1)?;
        let mut blocks = Vec::with_capacity(cfg.ratios.len());
        let mut c = c0;
        for (i, &s) in cfg.ratios.iter().enumerate() {
            blocks.push(UpBlock::load(
                w,
                &format!("decoder_2.model.{}", i + 1),
                c,
                c / 2,
                s,
            )?);
            c /= 2;
        }
        let n = cfg.ratios.len();
        let alpha_out = take_shaped(w, &format!("decoder_2.model.{}.alpha", n + 1), &[1, c, 1])?;
        let conv_out = Conv::load(w, &format!("decoder_2.model.{}", n + 2), c, 1, 7, 1)?;
        Ok(Decoder {
            quantizer_dim: q,
            latent_dim: d,
            fc_w,
            fc_b,
            conv_in,
            blocks,
            alpha_out,
            conv_out,
        })
    }

    /// Samples per frame: the product of the block strides (960).
    pub fn hop_length(&self) -> usize {
        self.blocks.iter().map(|b| b.up.stride).product()
    }

    /// `fc_post2` per frame: `[quantizer_dim, T]` -> `[D, T]`.
    pub fn fc_post2(&self, x: &[f32], t: usize) -> Vec<f32> {
        let q = self.quantizer_dim;
        let mut y = vec![0f32; self.latent_dim * t];
        y.par_chunks_mut(t.max(1)).enumerate().for_each(|(o, row)| {
            let wr = &self.fc_w[o * q..(o + 1) * q];
            for (ti, yv) in row.iter_mut().enumerate() {
                let mut acc = 0f32;
                for (i, &wv) in wr.iter().enumerate() {
                    acc += wv * x[i * t + ti];
                }
                *yv = acc + self.fc_b[o];
            }
        });
        y
    }

    /// `decoder_2` on the latent `[D, T]` -> `hop * T` samples.
    pub fn decode_latent(&self, z: &[f32], t: usize) -> Vec<f32> {
        if t == 0 {
            return Vec::new();
        }
        let mut x = self.conv_in.forward(z, t);
        let mut len = t;
        for b in &self.blocks {
            x = b.forward(x, len);
            len *= b.up.stride;
        }
        snake_inplace(&mut x, self.conv_out.c_in, len, &self.alpha_out);
        self.conv_out.forward(&x, len)
    }

    /// RVQ sum `[quantizer_dim, T]` -> waveform (`hop * T` samples).
    pub fn forward(&self, quantized: &[f32], t: usize) -> Vec<f32> {
        let z = self.fc_post2(quantized, t);
        self.decode_latent(&z, t)
    }
}
