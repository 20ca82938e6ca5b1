//! The acoustic DAC encoder (`DAC.Encoder(d_model, ratios, D)`, Boson fork): conv 1 -> d_model
//! (k7), then one `EncoderBlock` per ratio s (three residual units with dilations 1, 3, 9 at
//! half width, Snake, strided conv k=2s, padding ceil(s/2), doubling the width), Snake, and a
//! k3 conv to D. Zero padding everywhere, weight norm folded at load (spec: codec.md §3.2–3.4, §4).
//! Tensors are channel-major `[channels, time]`, one batch item.
//! May use: error, weights, codec::{config, layers}.

use super::config::CodecConfig;
use super::layers::{conv1d_gemm, conv1d_out_len, snake_inplace};
use crate::error::{Error, Result};
use crate::weights::WeightMap;

type Slice<'a> = &'a [f32];

/// A folded conv with its geometry.
struct Conv<'a> {
    w: Slice<'a>,
    b: Slice<'a>,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
}

impl<'a> Conv<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        w: &'a WeightMap,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Result<Self> {
        Ok(Conv {
            w: w.get_shaped(&format!("{prefix}.weight"), &[c_out, c_in, kernel])?
                .data
                .as_slice(),
            b: w.get_shaped(&format!("{prefix}.bias"), &[c_out])?
                .data
                .as_slice(),
            c_in,
            c_out,
            kernel,
            stride,
            padding,
            dilation,
        })
    }

    /// PyTorch raises when the padded input is shorter than the dilated kernel; so do we, as
    /// an audio error (the clip is too short), instead of returning an empty tensor.
    fn forward(&self, x: &[f32], t: usize) -> Result<(Vec<f32>, usize)> {
        let span = self.dilation * (self.kernel - 1) + 1;
        if t + 2 * self.padding < span {
            return Err(Error::Audio(format!(
                "input too short for the acoustic encoder: a conv layer got {t} frames, needs {}",
                span.saturating_sub(2 * self.padding)
            )));
        }
        let t_out = conv1d_out_len(t, self.kernel, self.stride, self.padding, self.dilation);
        let y = conv1d_gemm(
            x,
            self.c_in,
            t,
            self.w,
            self.c_out,
            self.kernel,
            Some(self.b),
            self.stride,
            self.padding,
            self.dilation,
        );
        Ok((y, t_out))
    }
}

fn alpha<'a>(w: &'a WeightMap, key: &str, c: usize) -> Result<Slice<'a>> {
    Ok(w.get_shaped(key, &[1, c, 1])?.data.as_slice())
}

/// `DAC.ResidualUnit`: x + conv1x1(snake(conv_k7_dil(snake(x)))).
struct ResidualUnit<'a> {
    alpha1: Slice<'a>,
    conv1: Conv<'a>,
    alpha2: Slice<'a>,
    conv2: Conv<'a>,
}

impl<'a> ResidualUnit<'a> {
    fn new(w: &'a WeightMap, prefix: &str, dim: usize, dilation: usize) -> Result<Self> {
        Ok(ResidualUnit {
            alpha1: alpha(w, &format!("{prefix}.block.0.alpha"), dim)?,
            conv1: Conv::new(
                w,
                &format!("{prefix}.block.1"),
                dim,
                dim,
                7,
                1,
                3 * dilation,
                dilation,
            )?,
            alpha2: alpha(w, &format!("{prefix}.block.2.alpha"), dim)?,
            conv2: Conv::new(w, &format!("{prefix}.block.3"), dim, dim, 1, 1, 0, 1)?,
        })
    }

    fn forward_inplace(&self, x: &mut [f32], t: usize) -> Result<()> {
        let c = self.conv1.c_in;
        let mut y = x.to_vec();
        snake_inplace(&mut y, c, t, self.alpha1);
        let (mut y, _) = self.conv1.forward(&y, t)?;
        snake_inplace(&mut y, c, t, self.alpha2);
        let (y, _) = self.conv2.forward(&y, t)?;
        // "Same" padding keeps the length, so the reference's centre crop is a no-op.
        for (a, b) in x.iter_mut().zip(&y) {
            *a += b;
        }
        Ok(())
    }
}

/// `DAC.EncoderBlock(dim, stride)`: 3 residual units at dim/2, Snake, strided conv to dim.
struct EncoderBlock<'a> {
    units: Vec<ResidualUnit<'a>>,
    alpha: Slice<'a>,
    down: Conv<'a>,
}

/// The acoustic encoder, borrowing its folded tensors from the codec's weight map.
pub struct AcousticEncoder<'a> {
    conv_in: Conv<'a>,
    blocks: Vec<EncoderBlock<'a>>,
    alpha_out: Slice<'a>,
    conv_out: Conv<'a>,
}

impl<'a> AcousticEncoder<'a> {
    /// Borrow `encoder.*` (weight norm folded to `X.weight`) with shapes checked against `cfg`.
    pub fn new(cfg: &CodecConfig, w: &'a WeightMap) -> Result<Self> {
        let mut width = cfg.encoder_d_model;
        let conv_in = Conv::new(w, "encoder.block.0", 1, width, 7, 1, 3, 1)?;
        let mut blocks = Vec::with_capacity(cfg.ratios.len());
        for (i, &s) in cfg.ratios.iter().enumerate() {
            let p = format!("encoder.block.{}", i + 1);
            let units = [1, 3, 9]
                .iter()
                .enumerate()
                .map(|(r, &d)| ResidualUnit::new(w, &format!("{p}.block.{r}"), width, d))
                .collect::<Result<Vec<_>>>()?;
            blocks.push(EncoderBlock {
                units,
                alpha: alpha(w, &format!("{p}.block.3.alpha"), width)?,
                down: Conv::new(
                    w,
                    &format!("{p}.block.4"),
                    width,
                    2 * width,
                    2 * s,
                    s,
                    s.div_ceil(2),
                    1,
                )?,
            });
            width *= 2;
        }
        let n = cfg.ratios.len();
        Ok(AcousticEncoder {
            conv_in,
            blocks,
            alpha_out: alpha(w, &format!("encoder.block.{}.alpha", n + 1), width)?,
            conv_out: Conv::new(
                w,
                &format!("encoder.block.{}", n + 2),
                width,
                cfg.d,
                3,
                1,
                1,
                1,
            )?,
        })
    }

    /// Latent width D.
    pub fn out_channels(&self) -> usize {
        self.conv_out.c_out
    }

    /// 24 kHz samples -> latent `[D, A]` and A (spec §2.2 gives A(L)).
    pub fn forward(&self, wav: &[f32]) -> Result<(Vec<f32>, usize)> {
        let (mut x, mut t) = self.conv_in.forward(wav, wav.len())?;
        for b in &self.blocks {
            for u in &b.units {
                u.forward_inplace(&mut x, t)?;
            }
            snake_inplace(&mut x, b.down.c_in, t, b.alpha);
            (x, t) = b.down.forward(&x, t)?;
        }
        snake_inplace(&mut x, self.conv_out.c_in, t, self.alpha_out);
        self.conv_out.forward(&x, t)
    }
}

/// Acoustic frame count A(L) for L samples (spec §2.2), or 0 when a conv would reject the input.
pub fn acoustic_frames(cfg: &CodecConfig, n_samples: usize) -> usize {
    let mut t = n_samples;
    for &s in &cfg.ratios {
        let (k, p) = (2 * s, s.div_ceil(2));
        if t + 2 * p < k {
            return 0;
        }
        t = conv1d_out_len(t, k, s, p, 1);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_recurrence_matches_spec() {
        let cfg = CodecConfig::released();
        for l in [960usize, 1920, 24_000, 31_237, 57_600, 632] {
            let l1 = l / 8;
            let l2 = (l1 + 1) / 5;
            let l3 = l2 / 4;
            let l4 = l3 / 2;
            assert_eq!(acoustic_frames(&cfg, l), (l4 + 1) / 3, "L = {l}");
        }
    }
}
