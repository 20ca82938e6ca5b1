//! Codec convolutions on the GPU (`kernels/conv1d.cu`): conv1d (stride, dilation, zero padding,
//! groups = 1) and transposed conv1d (stride, padding, output_padding), f32, batch 1,
//! `[channels, time]`, each optionally fused with Snake on the input (the DAC's
//! Snake → conv pairs). CPU twins: `codec::layers::{conv1d, conv_transpose1d, snake_inplace}`.
//! spec: codec.md §3.2–3.4, §7, §11.6–7. May use: device, launch, storage.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct};
use super::storage::{check, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

params_struct!(Conv1dParams, 80, {
    x: u64, w: u64, bias: u64, alpha: u64, y: u64,
    c_in: i32, c_out: i32, t_in: i32, t_out: i32, kernel: i32, stride: i32, padding: i32,
    dilation: i32, ci_tile: i32, span: i32,
});

/// Validated arguments of a conv1d: `x` `[c_in, t_in]`, `w` `[c_out, c_in, kernel]`,
/// `bias` `[c_out]`, output `[c_out, t_out()]`.
#[derive(Clone, Copy, Debug)]
pub struct Conv1dArgs {
    pub c_in: usize,
    pub c_out: usize,
    pub t_in: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
}

impl Conv1dArgs {
    /// Kernel, stride and dilation are at least 1.
    pub(crate) fn validate(&self, op: &'static str) -> Result<()> {
        positive(op, "kernel", self.kernel)?;
        positive(op, "stride", self.stride)?;
        positive(op, "dilation", self.dilation)
    }

    /// PyTorch's output length, `floor((t_in + 2p − d(K−1) − 1)/s) + 1`, or 0.
    pub fn t_out(&self) -> usize {
        let span = self.dilation * (self.kernel.max(1) - 1) + 1;
        let padded = self.t_in + 2 * self.padding;
        if padded < span {
            0
        } else {
            (padded - span) / self.stride.max(1) + 1
        }
    }
}

/// Validated arguments of a transposed conv1d: `x` `[c_in, t_in]`, `w` `[c_in, c_out, kernel]`
/// (PyTorch ConvTranspose1d layout), `bias` `[c_out]`, output `[c_out, t_out()]`.
#[derive(Clone, Copy, Debug)]
pub struct ConvTranspose1dArgs {
    pub c_in: usize,
    pub c_out: usize,
    pub t_in: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
    pub output_padding: usize,
}

impl ConvTranspose1dArgs {
    /// Kernel and stride are at least 1, output padding below the stride.
    pub(crate) fn validate(&self, op: &'static str) -> Result<()> {
        positive(op, "kernel", self.kernel)?;
        positive(op, "stride", self.stride)?;
        if self.output_padding >= self.stride {
            return Err(Error::Shape {
                op,
                arg: "output_padding",
                expected: format!("< stride ({})", self.stride),
                got: self.output_padding.to_string(),
            });
        }
        Ok(())
    }

    /// `(t_in − 1)·s − 2p + K + output_padding`, or 0 (also 0 for an empty input).
    pub fn t_out(&self) -> usize {
        if self.t_in == 0 {
            return 0;
        }
        ((self.t_in - 1) * self.stride + self.kernel + self.output_padding)
            .saturating_sub(2 * self.padding)
    }
}

/// Output tile of one block in both kernels (`CONV_CO_TILE`, `CONV_T_TILE`, `CONV_THREADS`).
const CO_TILE: usize = 64;
const T_TILE: usize = 64;
const THREADS: u32 = 256;
/// Default dynamic shared memory limit (no opt-in attribute is set on these kernels).
const SMEM_LIMIT_BYTES: usize = 48 * 1024;
/// Weight-tile width target: `ci_tile · kernel ≈ 64` floats per output channel.
const WTILE_TARGET: usize = 64;

/// Staging plan of one launch: input channels per step and input-tile width, in floats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tiling {
    ci_tile: usize,
    span: usize,
}

/// Largest `ci_tile <= min(c_in, 64 / kernel)` (halving) whose tiles fit the smem limit.
fn plan(op: &'static str, c_in: usize, kernel: usize, span: usize) -> Result<(Tiling, u32)> {
    let mut ci_tile = (WTILE_TARGET / kernel).clamp(1, c_in.max(1));
    loop {
        let bytes = (ci_tile * span + CO_TILE * ci_tile * kernel) * 4;
        if bytes <= SMEM_LIMIT_BYTES {
            return Ok((Tiling { ci_tile, span }, bytes as u32));
        }
        if ci_tile == 1 {
            return Err(Error::Unsupported(format!(
                "{op}: kernel {kernel} with an input tile of {span} samples needs {bytes} bytes \
                 of shared memory (limit {SMEM_LIMIT_BYTES})"
            )));
        }
        ci_tile /= 2;
    }
}

pub(crate) fn positive(op: &'static str, arg: &'static str, v: usize) -> Result<()> {
    if v == 0 {
        return Err(Error::Shape {
            op,
            arg,
            expected: ">= 1".into(),
            got: "0".into(),
        });
    }
    Ok(())
}

/// Buffers of one conv (both families, direct and GEMM-lowered).
pub(crate) struct ConvBuffers<'a> {
    pub x: &'a CudaStorage,
    pub w: &'a CudaStorage,
    pub bias: Option<&'a CudaStorage>,
    pub alpha: Option<&'a CudaStorage>,
}

/// dtype and length checks shared by both families (and `conv_gemm.rs`); `w_len` is
/// c_in·c_out·kernel.
pub(crate) fn check_buffers(
    op: &'static str,
    b: &ConvBuffers,
    y: &CudaStorage,
    (c_in, c_out, t_in, t_out, w_len): (usize, usize, usize, usize, usize),
) -> Result<()> {
    check::dtype(op, "x", b.x, DType::F32)?;
    check::dtype(op, "w", b.w, DType::F32)?;
    check::dtype(op, "y", y, DType::F32)?;
    check::len(op, "x", b.x, c_in * t_in)?;
    check::len(op, "w", b.w, w_len)?;
    check::len(op, "y", y, c_out * t_out)?;
    if let Some(bias) = b.bias {
        check::dtype(op, "bias", bias, DType::F32)?;
        check::len(op, "bias", bias, c_out)?;
    }
    if let Some(alpha) = b.alpha {
        check::dtype(op, "alpha", alpha, DType::F32)?;
        check::len(op, "alpha", alpha, c_in)?;
    }
    Ok(())
}

fn grid(t_out: usize, c_out: usize, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            t_out.div_ceil(T_TILE) as u32,
            c_out.div_ceil(CO_TILE) as u32,
            1,
        ),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: smem,
    }
}

fn conv1d_any(dev: &CudaDevice, b: ConvBuffers, y: &mut CudaStorage, a: &Conv1dArgs) -> Result<()> {
    const OP: &str = "cuda::conv1d";
    a.validate(OP)?;
    let t_out = a.t_out();
    let w_len = a.c_out * a.c_in * a.kernel;
    check_buffers(OP, &b, y, (a.c_in, a.c_out, a.t_in, t_out, w_len))?;
    let span = (T_TILE - 1) * a.stride + (a.kernel - 1) * a.dilation + 1;
    let (tiling, smem) = plan(OP, a.c_in, a.kernel, span)?;
    let p = Conv1dParams {
        x: b.x.ptr(dev),
        w: b.w.ptr(dev),
        bias: b.bias.map_or(0, |s| s.ptr(dev)),
        alpha: b.alpha.map_or(0, |s| s.ptr(dev)),
        y: y.ptr(dev),
        c_in: check::fits_i32(OP, "c_in", a.c_in)?,
        c_out: check::fits_i32(OP, "c_out", a.c_out)?,
        t_in: check::fits_i32(OP, "t_in", a.t_in)?,
        t_out: check::fits_i32(OP, "t_out", t_out)?,
        kernel: check::fits_i32(OP, "kernel", a.kernel)?,
        stride: check::fits_i32(OP, "stride", a.stride)?,
        padding: check::fits_i32(OP, "padding", a.padding)?,
        dilation: check::fits_i32(OP, "dilation", a.dilation)?,
        ci_tile: tiling.ci_tile as i32,
        span: check::fits_i32(OP, "span", tiling.span)?,
    };
    // The deepest input sample a block stages is t0·stride − padding + span − 1, which the
    // kernel bounds-checks against t_in; every output written is < (c_out, t_out), which
    // check_buffers bounds by y's length.
    let k = if b.alpha.is_some() {
        Kernel::Conv1dSnakeF32
    } else {
        Kernel::Conv1dF32
    };
    launch(dev, k, grid(t_out, a.c_out, smem), &p)
}

fn conv_transpose1d_any(
    dev: &CudaDevice,
    b: ConvBuffers,
    y: &mut CudaStorage,
    a: &ConvTranspose1dArgs,
) -> Result<()> {
    const OP: &str = "cuda::conv_transpose1d";
    a.validate(OP)?;
    let t_out = a.t_out();
    let w_len = a.c_in * a.c_out * a.kernel;
    check_buffers(OP, &b, y, (a.c_in, a.c_out, a.t_in, t_out, w_len))?;
    // Inputs feeding 64 consecutive outputs: (63 / s) + 1 phases of q, plus J − 1 earlier taps,
    // plus one for a tile that straddles a phase boundary.
    let taps = a.kernel.div_ceil(a.stride);
    let span = (T_TILE - 1) / a.stride + 1 + taps;
    let (tiling, smem) = plan(OP, a.c_in, a.kernel, span)?;
    let p = Conv1dParams {
        x: b.x.ptr(dev),
        w: b.w.ptr(dev),
        bias: b.bias.map_or(0, |s| s.ptr(dev)),
        alpha: b.alpha.map_or(0, |s| s.ptr(dev)),
        y: y.ptr(dev),
        c_in: check::fits_i32(OP, "c_in", a.c_in)?,
        c_out: check::fits_i32(OP, "c_out", a.c_out)?,
        t_in: check::fits_i32(OP, "t_in", a.t_in)?,
        t_out: check::fits_i32(OP, "t_out", t_out)?,
        kernel: check::fits_i32(OP, "kernel", a.kernel)?,
        stride: check::fits_i32(OP, "stride", a.stride)?,
        padding: check::fits_i32(OP, "padding", a.padding)?,
        dilation: 1,
        ci_tile: tiling.ci_tile as i32,
        span: check::fits_i32(OP, "span", tiling.span)?,
    };
    let k = if b.alpha.is_some() {
        Kernel::ConvTranspose1dSnakeF32
    } else {
        Kernel::ConvTranspose1dF32
    };
    launch(dev, k, grid(t_out, a.c_out, smem), &p)
}

/// `y = conv1d(snake?(x), w) + bias` (PyTorch Conv1d, zero padding, groups = 1); with `alpha`
/// (`[c_in]`) Snake is fused into the input load (`x` unchanged). `y` holds at least
/// `c_out · a.t_out()` values.
pub fn conv1d(
    dev: &CudaDevice,
    x: &CudaStorage,
    alpha: Option<&CudaStorage>,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    y: &mut CudaStorage,
    a: &Conv1dArgs,
) -> Result<()> {
    conv1d_any(dev, ConvBuffers { x, w, bias, alpha }, y, a)
}

/// `y = conv_transpose1d(snake?(x), w) + bias` (PyTorch ConvTranspose1d, groups = 1,
/// dilation = 1), Snake fused into the input load when `alpha` is given.
pub fn conv_transpose1d(
    dev: &CudaDevice,
    x: &CudaStorage,
    alpha: Option<&CudaStorage>,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    y: &mut CudaStorage,
    a: &ConvTranspose1dArgs,
) -> Result<()> {
    conv_transpose1d_any(dev, ConvBuffers { x, w, bias, alpha }, y, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_lengths_match_pytorch() {
        let c = |t_in, kernel, stride, padding, dilation| Conv1dArgs {
            c_in: 1,
            c_out: 1,
            t_in,
            kernel,
            stride,
            padding,
            dilation,
        };
        assert_eq!(c(50, 7, 1, 3, 1).t_out(), 50);
        assert_eq!(c(400, 7, 1, 27, 9).t_out(), 400);
        assert_eq!(c(24000, 16, 8, 4, 1).t_out(), 3000);
        assert_eq!(c(3, 7, 1, 0, 1).t_out(), 0);
        for (s, t_in) in [(8usize, 50usize), (5, 13), (4, 1), (2, 7), (3, 9)] {
            let a = ConvTranspose1dArgs {
                c_in: 1,
                c_out: 1,
                t_in,
                kernel: 2 * s,
                stride: s,
                padding: s.div_ceil(2),
                output_padding: s % 2,
            };
            assert_eq!(a.t_out(), s * t_in, "DAC ConvT keeps t_out = s · t_in");
        }
    }

    #[test]
    fn plans_fit_shared_memory_for_codec_shapes() {
        // (c_in, kernel, span) of the decoder's convs and ConvTs, the encoder's strided convs,
        // and a HuBERT-sized front-end conv.
        for (c_in, kernel, stride, dilation) in [
            (256, 7, 1, 1),
            (512, 7, 1, 9),
            (512, 1, 1, 1),
            (32, 7, 1, 1),
            (64, 16, 8, 1),
            (512, 10, 5, 1),
            (1, 10, 5, 1),
        ] {
            let span = (T_TILE - 1) * stride + (kernel - 1) * dilation + 1;
            let (t, smem) = plan("test", c_in, kernel, span).unwrap();
            assert!(t.ci_tile >= 1 && t.ci_tile <= c_in);
            assert!(smem as usize <= SMEM_LIMIT_BYTES);
        }
        for s in [8usize, 5, 4, 2, 3] {
            let span = (T_TILE - 1) / s + 1 + 2;
            let (_, smem) = plan("test", 1024, 2 * s, span).unwrap();
            assert!(smem as usize <= SMEM_LIMIT_BYTES);
        }
    }
}
