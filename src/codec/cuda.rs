//! The codec's decode path on a CUDA device: the same stages as `codec/rvq.rs` + `decoder.rs`
//! (RVQ gather + `project_out` + sum over the stages, `fc_post2` as a 1-tap conv, the DAC
//! decoder), f32 throughout, weights uploaded once. Each conv is an im2col (Snake applied as
//! the input is loaded) + one cuBLAS SGEMM with the bias folded in, the residual add as the
//! GEMM's beta = 1 (`backend/cuda/conv_gemm.rs`); the final 1-channel conv uses the direct
//! kernel (a GEMV there is slower).
//! Only the codes go up and only the waveform comes back. Used by `AudioTokenizer::decode` once
//! the codec is moved with `AudioTokenizer::to_device`, so chunked and streaming decode
//! (`codec/stream.rs`) run here too. CPU twin: `decoder.rs`; conformance:
//! tests/conformance_codec_cuda.rs. spec: codec.md §3, §6.5, §7.
//! May use: backend::cuda, codec::{rvq, decoder}.

use std::sync::Arc;

use super::decoder::{Conv, ConvT, Decoder};
use super::rvq::Rvq;
use crate::backend::cuda::conv1d::{conv1d, Conv1dArgs, ConvTranspose1dArgs};
use crate::backend::cuda::conv_gemm::{conv1d_gemm, conv_transpose1d_gemm, ConvScratch};
use crate::backend::cuda::rvq::{rvq_decode, RvqDecodeArgs};
use crate::backend::cuda::{CudaDevice, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

/// A stride-1 "same" conv on the device.
struct DConv {
    w: CudaStorage,
    b: CudaStorage,
    c_in: usize,
    c_out: usize,
    kernel: usize,
    dilation: usize,
}

impl DConv {
    fn new(dev: &CudaDevice, c: &Conv) -> Result<Self> {
        Ok(DConv {
            w: CudaStorage::from_f32(dev, &c.w, DType::F32)?,
            b: CudaStorage::from_f32(dev, &c.b, DType::F32)?,
            c_in: c.c_in,
            c_out: c.c_out,
            kernel: c.kernel,
            dilation: c.dilation,
        })
    }

    fn args(&self, t: usize) -> Conv1dArgs {
        Conv1dArgs {
            c_in: self.c_in,
            c_out: self.c_out,
            t_in: t,
            kernel: self.kernel,
            stride: 1,
            padding: (self.kernel - 1) / 2 * self.dilation,
            dilation: self.dilation,
        }
    }

    /// `conv(snake(x, alpha))` (or `conv(x)` without alpha): `[c_in, t]` -> `[c_out, t]`.
    fn forward(
        &self,
        dev: &CudaDevice,
        x: &CudaStorage,
        alpha: Option<&CudaStorage>,
        t: usize,
        scratch: &mut ConvScratch,
    ) -> Result<CudaStorage> {
        let mut y = CudaStorage::zeros(dev, self.c_out * t, DType::F32)?;
        let a = self.args(t);
        if self.c_out == 1 {
            conv1d(dev, x, alpha, &self.w, Some(&self.b), &mut y, &a)?;
        } else {
            conv1d_gemm(
                dev,
                x,
                alpha,
                &self.w,
                Some(&self.b),
                &mut y,
                &a,
                false,
                scratch,
            )?;
        }
        Ok(y)
    }

    /// `y += conv(snake(x, alpha))` (the residual add as the GEMM's accumulate).
    fn forward_add(
        &self,
        dev: &CudaDevice,
        x: &CudaStorage,
        alpha: &CudaStorage,
        y: &mut CudaStorage,
        t: usize,
        scratch: &mut ConvScratch,
    ) -> Result<()> {
        let a = self.args(t);
        conv1d_gemm(
            dev,
            x,
            Some(alpha),
            &self.w,
            Some(&self.b),
            y,
            &a,
            true,
            scratch,
        )
    }
}

struct DUnit {
    alpha1: CudaStorage,
    conv1: DConv,
    alpha2: CudaStorage,
    conv2: DConv,
}

struct DBlock {
    alpha: CudaStorage,
    up_w: CudaStorage,
    up_b: CudaStorage,
    c_in: usize,
    c_out: usize,
    stride: usize,
    units: Vec<DUnit>,
}

/// The decode weights of one codec, resident on one device.
pub struct CudaDecoder {
    dev: Arc<CudaDevice>,
    n_q: usize,
    dim: usize,
    codebook_dim: usize,
    bins: usize,
    embed: CudaStorage,
    out_w: CudaStorage,
    out_b: CudaStorage,
    fc: DConv,
    conv_in: DConv,
    blocks: Vec<DBlock>,
    alpha_out: CudaStorage,
    conv_out: DConv,
    /// im2col / column buffers, grown to the largest decode and reused.
    scratch: std::sync::Mutex<ConvScratch>,
}

impl std::fmt::Debug for CudaDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDecoder")
            .field("n_q", &self.n_q)
            .field("dim", &self.dim)
            .field("blocks", &self.blocks.len())
            .finish()
    }
}

fn up(dev: &CudaDevice, v: &[f32]) -> Result<CudaStorage> {
    CudaStorage::from_f32(dev, v, DType::F32)
}

impl CudaDecoder {
    /// Uploads the RVQ decode tables and the decoder.
    pub fn new(dev: &Arc<CudaDevice>, rvq: &Rvq, dec: &Decoder) -> Result<Self> {
        let cat = |f: &dyn Fn(&super::rvq::RvqStage) -> &Vec<f32>| -> Vec<f32> {
            rvq.stages
                .iter()
                .flat_map(|s| f(s).iter().copied())
                .collect()
        };
        // fc_post2's [D, q] weight is a [D, q, 1] conv weight in the same memory order.
        let fc = Conv {
            w: dec.fc_w.clone(),
            b: dec.fc_b.clone(),
            c_in: dec.quantizer_dim,
            c_out: dec.latent_dim,
            kernel: 1,
            dilation: 1,
        };
        let unit = |u: &super::decoder::ResidualUnit| -> Result<DUnit> {
            Ok(DUnit {
                alpha1: up(dev, &u.alpha1)?,
                conv1: DConv::new(dev, &u.conv1)?,
                alpha2: up(dev, &u.alpha2)?,
                conv2: DConv::new(dev, &u.conv2)?,
            })
        };
        let block = |b: &super::decoder::UpBlock| -> Result<DBlock> {
            let ConvT {
                w,
                b: bias,
                c_in,
                c_out,
                stride,
            } = &b.up;
            Ok(DBlock {
                alpha: up(dev, &b.alpha)?,
                up_w: up(dev, w)?,
                up_b: up(dev, bias)?,
                c_in: *c_in,
                c_out: *c_out,
                stride: *stride,
                units: b.units.iter().map(unit).collect::<Result<_>>()?,
            })
        };
        Ok(CudaDecoder {
            dev: dev.clone(),
            n_q: rvq.stages.len(),
            dim: rvq.dim,
            codebook_dim: rvq.codebook_dim,
            bins: rvq.bins,
            embed: up(dev, &cat(&|s| &s.embed))?,
            out_w: up(dev, &cat(&|s| &s.out_w))?,
            out_b: up(dev, &cat(&|s| &s.out_b))?,
            fc: DConv::new(dev, &fc)?,
            conv_in: DConv::new(dev, &dec.conv_in)?,
            blocks: dec.blocks.iter().map(block).collect::<Result<_>>()?,
            alpha_out: up(dev, &dec.alpha_out)?,
            conv_out: DConv::new(dev, &dec.conv_out)?,
            // Column matrices bounded at 16 M floats (64 MB) whatever the clip length: long clips
            // run in column chunks (measured ~4% slower than unbounded on 10 s).
            scratch: std::sync::Mutex::new(ConvScratch::with_col_limit(16 << 20)),
        })
    }

    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// Checked codes `[n][T]` (n ≤ n_q, every code < bins, T ≥ 1) -> `hop · T` samples.
    pub fn decode(&self, codes: &[Vec<u32>]) -> Result<Vec<f32>> {
        let dev = &*self.dev;
        let t = codes.first().map_or(0, Vec::len);
        if codes.is_empty() || codes.len() > self.n_q || t == 0 {
            return Err(Error::BadRequest(format!(
                "cuda codec decode: {} codebooks x {t} frames (1..={} codebooks, >= 1 frame)",
                codes.len(),
                self.n_q
            )));
        }
        let flat: Vec<i32> = codes
            .iter()
            .flat_map(|r| r.iter().map(|&c| c.min(i32::MAX as u32) as i32))
            .collect();
        let d_codes = dev.upload(&flat)?;
        let mut q = CudaStorage::zeros(dev, self.dim * t, DType::F32)?;
        rvq_decode(
            dev,
            &d_codes,
            &self.embed,
            &self.out_w,
            &self.out_b,
            &mut q,
            &RvqDecodeArgs {
                n_q: codes.len(),
                n_frames: t,
                dim: self.dim,
                codebook_dim: self.codebook_dim,
                bins: self.bins,
            },
        )?;
        let mut scratch = self
            .scratch
            .lock()
            .map_err(|_| Error::Other("codec scratch lock poisoned".into()))?;
        let sc = &mut *scratch;
        let z = self.fc.forward(dev, &q, None, t, sc)?;
        let mut x = self.conv_in.forward(dev, &z, None, t, sc)?;
        let mut len = t;
        for b in &self.blocks {
            let a = ConvTranspose1dArgs {
                c_in: b.c_in,
                c_out: b.c_out,
                t_in: len,
                kernel: 2 * b.stride,
                stride: b.stride,
                padding: b.stride.div_ceil(2),
                output_padding: b.stride % 2,
            };
            let t_out = a.t_out();
            let mut y = CudaStorage::zeros(dev, b.c_out * t_out, DType::F32)?;
            conv_transpose1d_gemm(
                dev,
                &x,
                Some(&b.alpha),
                &b.up_w,
                Some(&b.up_b),
                &mut y,
                &a,
                sc,
            )?;
            len = t_out;
            for u in &b.units {
                let h = u.conv1.forward(dev, &y, Some(&u.alpha1), len, sc)?;
                u.conv2.forward_add(dev, &h, &u.alpha2, &mut y, len, sc)?;
            }
            x = y;
        }
        let wav = self
            .conv_out
            .forward(dev, &x, Some(&self.alpha_out), len, sc)?;
        wav.to_f32_vec()
    }
}
