//! Codec convolutions lowered to cuBLAS SGEMM (`kernels/conv_gemm.cu` + `cublasGemmEx`): the
//! same conv1d / transposed conv1d as `conv1d.rs` (same argument structs, f32, batch 1,
//! `[channels, time]`, optional Snake on the input), but each conv is one f32 GEMM
//! (CUBLAS_COMPUTE_32F, never TF32) between small gather kernels:
//!
//! * conv1d: `COL[c_in·K, T] = im2col(snake?(x))`, then `Y[c_out, T] = W[c_out, c_in·K] · COL`
//!   (beta = 1 when accumulating into `y`: the decoder's residual add). The bias rides in the
//!   same GEMM: im2col appends a row of ones (padded with zero rows to a multiple of 4) and
//!   `pack_weight_bias` copies W into `[c_out, c_in·K + pad]` with the bias as the extra column,
//!   so no pass over `y` is spent on it. A 1-tap, stride-1, unpadded conv without Snake
//!   multiplies `x` directly (no im2col) and adds the bias in a separate broadcast pass.
//! * transposed conv1d: `COLS[c_out·K, t_in] = Wᵀ · snake?(X)` (W `[c_in, c_out·K]`), then the
//!   gather `col2im` adds the overlapping taps and the bias.
//!
//! Column matrices live in a caller-owned [`ConvScratch`] that only grows, so a decoder pass
//! allocates nothing per layer (optionally capped: conv1d then works in column chunks). CPU twins: `codec::layers::{conv1d, conv_transpose1d,
//! snake_inplace}`. spec: codec.md §3.2–3.4, §7, §11.6–7. May use: conv1d, device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::conv1d::{check_buffers, positive, Conv1dArgs, ConvBuffers, ConvTranspose1dArgs};
use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{self, gemm_ex, launch, params_struct, GemmEx, GemmType};
use super::storage::{check, CudaStorage};
use crate::error::{Error, Result};

params_struct!(Im2colParams, 64, {
    x: u64, alpha: u64, col: u64,
    c_in: i32, t_in: i32, t_out: i32, kernel: i32, stride: i32, padding: i32, dilation: i32,
    tile: i32, span: i32, extra_rows: i32,
});

params_struct!(PackWeightParams, 32, {
    w: u64, bias: u64, wp: u64, ck: i32, ckp: i32,
});

params_struct!(Col2imParams, 48, {
    cols: u64, bias: u64, y: u64,
    c_out: i32, t_in: i32, t_out: i32, kernel: i32, stride: i32, padding: i32,
});

params_struct!(BiasAddParams, 24, {
    bias: u64, y: u64, rows: i32, t: i32,
});

/// `COL_THREADS` in conv_gemm.cu: threads per block of every entry.
const THREADS: usize = 256;
/// Output columns per im2col block (4 per thread) unless its input window would not fit shared
/// memory, then [`THREADS`].
const IM2COL_TILE: usize = 4 * THREADS;
/// `COL2IM_PER_THREAD` in conv_gemm.cu.
const COL2IM_PER_THREAD: usize = 4;
/// Default dynamic shared memory limit (no opt-in attribute is set on im2col).
const SMEM_LIMIT_BYTES: usize = 48 * 1024;

/// Default cap on a conv1d's im2col matrix, in floats: none. A smaller cap (see
/// [`ConvScratch::with_col_limit`]) builds and multiplies larger matrices in column chunks,
/// which bounds the scratch but was slower on an H200 (10 s decoder pass: 5.17 ms unchunked,
/// 5.38 / 5.59 / 6.67 ms with 16M / 8M / 4M-float chunks), so it is only a memory knob.
pub const DEFAULT_COL_LIMIT: usize = usize::MAX;
/// Narrowest column chunk, however small the cap.
const MIN_CHUNK_COLS: usize = 256;

/// Reusable device buffers for the column matrices of [`conv1d_gemm`] and
/// [`conv_transpose1d_gemm`]. Each buffer grows to the largest size asked of it and never
/// shrinks (the old buffer is freed stream-ordered, so queued kernels still see it). Use one
/// scratch per device (and per stream of work: the convs of one pass run in stream order).
#[derive(Debug, Default)]
pub struct ConvScratch {
    /// Cap on a conv1d im2col chunk in floats (0: [`DEFAULT_COL_LIMIT`]).
    col_limit: usize,
    /// conv1d: im2col matrix `[c_in·K, t_out]`; convT: GEMM result `[c_out·K, t_in]`.
    col: Option<CudaSlice<f32>>,
    /// convT with Snake: the activated input `[c_in, t_in]`.
    act: Option<CudaSlice<f32>>,
    /// conv1d with bias: the weight with the bias column, `[c_out, ckp]`.
    wpack: Option<CudaSlice<f32>>,
}

/// `slot` holding at least `n` floats, reallocated (zeroed) when smaller.
fn grow<'a>(
    slot: &'a mut Option<CudaSlice<f32>>,
    dev: &CudaDevice,
    n: usize,
) -> Result<&'a mut CudaSlice<f32>> {
    if slot.as_ref().is_none_or(|s| s.len() < n) {
        *slot = None; // free the old buffer before allocating the larger one
        *slot = Some(dev.alloc_zeros::<f32>(n)?);
    }
    slot.as_mut()
        .ok_or_else(|| Error::Other("conv scratch: buffer missing after growth".into()))
}

impl ConvScratch {
    /// An empty scratch; nothing is allocated until the first conv (or `reserve_*`).
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty scratch whose conv1d im2col chunks hold at most about `floats` values
    /// (`usize::MAX`: never chunk; chunks are at least 256 columns wide whatever the cap).
    pub fn with_col_limit(floats: usize) -> Self {
        ConvScratch {
            col_limit: floats.max(1),
            ..Self::default()
        }
    }

    fn limit(&self) -> usize {
        if self.col_limit == 0 {
            DEFAULT_COL_LIMIT
        } else {
            self.col_limit
        }
    }

    /// Device bytes currently held.
    pub fn bytes(&self) -> usize {
        let n = |s: &Option<CudaSlice<f32>>| s.as_ref().map_or(0, CudaSlice::len);
        (n(&self.col) + n(&self.act) + n(&self.wpack)) * std::mem::size_of::<f32>()
    }

    /// Grows the buffers so that a [`conv1d_gemm`] with `a` (with Snake if `snake`, with or
    /// without bias) allocates nothing.
    pub fn reserve_conv1d(&mut self, dev: &CudaDevice, a: &Conv1dArgs, snake: bool) -> Result<()> {
        let (col, wpack) = conv1d_scratch_len(a, snake, true, self.limit());
        if col > 0 {
            grow(&mut self.col, dev, col)?;
        }
        if wpack > 0 {
            grow(&mut self.wpack, dev, wpack)?;
        }
        Ok(())
    }

    /// Grows the buffers so that a [`conv_transpose1d_gemm`] with `a` (with Snake if `snake`)
    /// allocates nothing.
    pub fn reserve_conv_transpose1d(
        &mut self,
        dev: &CudaDevice,
        a: &ConvTranspose1dArgs,
        snake: bool,
    ) -> Result<()> {
        let (col, act) = conv_transpose1d_scratch_len(a, snake);
        if col > 0 {
            grow(&mut self.col, dev, col)?;
        }
        if act > 0 {
            grow(&mut self.act, dev, act)?;
        }
        Ok(())
    }
}

/// Whether conv1d can multiply `x` directly: 1 tap, stride 1, no padding, no Snake.
fn conv1d_direct(a: &Conv1dArgs, snake: bool) -> bool {
    a.kernel == 1 && a.stride == 1 && a.padding == 0 && !snake
}

/// Rows of the conv1d GEMM's reduction: c_in·K, plus (with the bias folded in) the ones row,
/// rounded up to a multiple of 4 so the packed weight's leading dimension stays 16-byte aligned.
fn conv1d_rows(a: &Conv1dArgs, folded_bias: bool) -> usize {
    let ck = a.c_in * a.kernel;
    if folded_bias {
        (ck + 1).next_multiple_of(4)
    } else {
        ck
    }
}

/// Output columns per im2col + GEMM step: all `t_out` when `rows · t_out <= limit`, else equal
/// chunks (multiples of 64 columns, at least [`MIN_CHUNK_COLS`]) of about `limit` floats.
fn conv1d_chunk(rows: usize, t_out: usize, limit: usize) -> usize {
    if rows.saturating_mul(t_out) <= limit {
        return t_out;
    }
    let widest = (limit / rows.max(1)).max(MIN_CHUNK_COLS);
    let n_chunks = t_out.div_ceil(widest);
    t_out.div_ceil(n_chunks).next_multiple_of(64).min(t_out)
}

/// Floats of (im2col matrix chunk, packed weight) of a conv1d; both 0 when `x` is used directly
/// (the bias then needs no packing) or the output is empty.
fn conv1d_scratch_len(a: &Conv1dArgs, snake: bool, bias: bool, limit: usize) -> (usize, usize) {
    let t_out = a.t_out();
    if conv1d_direct(a, snake) || t_out == 0 || a.c_out == 0 {
        return (0, 0);
    }
    let rows = conv1d_rows(a, bias);
    (
        rows * conv1d_chunk(rows, t_out, limit),
        if bias { a.c_out * rows } else { 0 },
    )
}

/// Floats of (GEMM result, Snake'd input) of a transposed conv1d.
fn conv_transpose1d_scratch_len(a: &ConvTranspose1dArgs, snake: bool) -> (usize, usize) {
    if a.t_out() == 0 {
        return (0, 0);
    }
    let act = if snake { a.c_in * a.t_in } else { 0 };
    (a.c_out * a.kernel * a.t_in, act)
}

/// One thread per element of a `rows × t` array, one grid row per row.
fn rows_grid(t: usize, rows: usize, smem: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (t.div_ceil(THREADS) as u32, rows as u32, 1),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: smem,
    }
}

/// Geometry of one im2col launch (a conv1d's, or the Snake copy of a convT input).
#[derive(Clone, Copy, Debug)]
struct Im2col {
    c_in: usize,
    t_in: usize,
    t_out: usize,
    kernel: usize,
    stride: usize,
    /// Input time of output column 0 is `−padding` (negative for a chunk that starts later).
    padding: i64,
    dilation: usize,
    /// Rows after the c_in·K taps: the first all ones, the rest zero (0: none).
    extra_rows: usize,
}

/// Input samples one im2col block stages for `tile` output columns.
fn im2col_span(g: &Im2col, tile: usize) -> usize {
    (tile - 1) * g.stride + (g.kernel - 1) * g.dilation + 1
}

/// `col[ci·K + k, t] = snake?(x[ci, t·s + k·d − p])`, then `extra_rows` rows (ones, zeros...);
/// `col` holds at least (c_in·K + extra_rows)·t_out floats and `x` at least c_in·t_in (both
/// checked here).
fn im2col(
    op: &'static str,
    dev: &CudaDevice,
    x: &CudaStorage,
    alpha: Option<&CudaStorage>,
    col: &mut CudaSlice<f32>,
    g: &Im2col,
) -> Result<()> {
    check::len(op, "x", x, g.c_in * g.t_in)?;
    let rows = g.c_in * g.kernel + g.extra_rows;
    check::idx_len(op, "col scratch", col, rows * g.t_out)?;
    let fits = |tile: usize| im2col_span(g, tile) * std::mem::size_of::<f32>() <= SMEM_LIMIT_BYTES;
    let tile = if fits(IM2COL_TILE) {
        IM2COL_TILE
    } else {
        THREADS
    };
    let span = im2col_span(g, tile);
    let smem = span * std::mem::size_of::<f32>();
    if smem > SMEM_LIMIT_BYTES {
        return Err(Error::Unsupported(format!(
            "{op}: kernel {} / stride {} / dilation {} needs an im2col window of {span} \
             samples ({smem} bytes of shared memory, limit {SMEM_LIMIT_BYTES})",
            g.kernel, g.stride, g.dilation
        )));
    }
    let p = Im2colParams {
        x: x.ptr(dev),
        alpha: alpha.map_or(0, |s| s.ptr(dev)),
        col: launch::ptr(dev, col),
        c_in: check::fits_i32(op, "c_in", g.c_in)?,
        t_in: check::fits_i32(op, "t_in", g.t_in)?,
        t_out: check::fits_i32(op, "t_out", g.t_out)?,
        kernel: check::fits_i32(op, "kernel", g.kernel)?,
        stride: check::fits_i32(op, "stride", g.stride)?,
        padding: i32::try_from(g.padding).map_err(|_| Error::Shape {
            op,
            arg: "padding",
            expected: "|padding - chunk start · stride| < 2^31".into(),
            got: g.padding.to_string(),
        })?,
        dilation: check::fits_i32(op, "dilation", g.dilation)?,
        tile: tile as i32,
        span: check::fits_i32(op, "span", span)?,
        extra_rows: check::fits_i32(op, "extra_rows", g.extra_rows)?,
    };
    // Grid (ceil(t_out/tile), c_in + 1 if extra rows): every column written is < t_out and every
    // row < c_in·K + extra_rows, bounded by the col check above; input reads are bounds-checked
    // against t_in in-kernel.
    let k = if alpha.is_some() {
        Kernel::Im2colSnakeF32
    } else {
        Kernel::Im2colF32
    };
    let cfg = LaunchConfig {
        grid_dim: (
            g.t_out.div_ceil(tile) as u32,
            (g.c_in + usize::from(g.extra_rows > 0)) as u32,
            1,
        ),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: smem as u32,
    };
    launch(dev, k, cfg, &p)
}

/// `wp[o, j] = w[o, j]` (j < ck), `bias[o]` (j == ck), 0 up to ckp; lengths checked here.
fn pack_weight_bias(
    op: &'static str,
    dev: &CudaDevice,
    w: &CudaStorage,
    bias: &CudaStorage,
    wp: &mut CudaSlice<f32>,
    (c_out, ck, ckp): (usize, usize, usize),
) -> Result<()> {
    check::len(op, "w", w, c_out * ck)?;
    check::len(op, "bias", bias, c_out)?;
    check::idx_len(op, "packed weight scratch", wp, c_out * ckp)?;
    let p = PackWeightParams {
        w: w.ptr(dev),
        bias: bias.ptr(dev),
        wp: launch::ptr(dev, wp),
        ck: check::fits_i32(op, "c_in * kernel", ck)?,
        ckp: check::fits_i32(op, "c_in * kernel + bias rows", ckp)?,
    };
    // Grid (ceil(ckp/256), c_out): writes wp[< c_out·ckp], reads w[< c_out·ck], bias[< c_out].
    launch(dev, Kernel::PackWeightBiasF32, rows_grid(ckp, c_out, 0), &p)
}

/// `y[r, t] += bias[r]` over `rows × t` (both lengths checked by the caller).
fn bias_add(
    dev: &CudaDevice,
    bias: &CudaStorage,
    y: &mut CudaStorage,
    rows: usize,
    t: usize,
) -> Result<()> {
    const OP: &str = "cuda::conv_gemm bias";
    let p = BiasAddParams {
        bias: bias.ptr(dev),
        y: y.ptr(dev),
        rows: check::fits_i32(OP, "rows", rows)?,
        t: check::fits_i32(OP, "t", t)?,
    };
    launch(dev, Kernel::BiasAddRowsF32, rows_grid(t, rows, 0), &p)
}

/// `y = conv1d(snake?(x), w) + bias`, or with `accumulate` `y += conv1d(snake?(x), w) + bias`
/// (PyTorch Conv1d, zero padding, groups = 1; `alpha` `[c_in]` applies Snake to the input,
/// `x` unchanged). `w` is `[c_out, c_in, K]`; `y` holds at least `c_out · a.t_out()` values and
/// must not alias `x`. Column matrices come from `scratch` (grown as needed).
#[allow(clippy::too_many_arguments)]
pub fn conv1d_gemm(
    dev: &CudaDevice,
    x: &CudaStorage,
    alpha: Option<&CudaStorage>,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    y: &mut CudaStorage,
    a: &Conv1dArgs,
    accumulate: bool,
    scratch: &mut ConvScratch,
) -> Result<()> {
    const OP: &str = "cuda::conv1d_gemm";
    positive(OP, "c_in", a.c_in)?;
    a.validate(OP)?;
    let t_out = a.t_out();
    let ck = a.c_in * a.kernel;
    check_buffers(
        OP,
        &ConvBuffers { x, w, bias, alpha },
        y,
        (a.c_in, a.c_out, a.t_in, t_out, a.c_out * ck),
    )?;
    if t_out == 0 || a.c_out == 0 {
        return Ok(());
    }
    // Row-major Y[c_out, T] = W[c_out, CK] · COL[CK, T] is column-major Yᵀ = COLᵀ · Wᵀ with
    // COLᵀ = col viewed T × CK (ld T) and Wᵀ = w viewed CK × c_out (ld CK). With the bias folded
    // in, CK becomes `rows` (ones row + zero padding in COL, bias + zero columns in W).
    let snake = alpha.is_some();
    let direct = conv1d_direct(a, snake);
    let folded = bias.filter(|_| !direct);
    let rows = conv1d_rows(a, folded.is_some());
    let limit = scratch.limit();
    let (col_len, wpack_len) = conv1d_scratch_len(a, snake, folded.is_some(), limit);
    let ConvScratch { col, wpack, .. } = scratch;
    let w_ptr = match folded {
        Some(b) => {
            let wp = grow(wpack, dev, wpack_len)?;
            pack_weight_bias(OP, dev, w, b, wp, (a.c_out, ck, rows))?;
            launch::ptr(dev, wp)
        }
        None => w.ptr(dev),
    };
    let beta = if accumulate { 1.0 } else { 0.0 };
    let y_ptr = y.ptr(dev);
    if direct {
        // t_out == t_in: x is already COL[c_in, T] (its length checked above). Extents: A = x,
        // T × c_in (ld T); B = w, c_in × c_out (checked); C = y, T × c_out (checked).
        gemm_ex(
            dev,
            &GemmEx {
                ty: GemmType::F32,
                trans_a: false,
                trans_b: false,
                m: t_out,
                n: a.c_out,
                k: rows,
                alpha: 1.0,
                a: x.ptr(dev),
                lda: t_out,
                b: w_ptr,
                ldb: rows,
                beta,
                c: y_ptr,
                ldc: t_out,
            },
        )?;
    } else {
        let col = grow(col, dev, col_len)?;
        let chunk = conv1d_chunk(rows, t_out, limit);
        let stride = i64::try_from(a.stride).unwrap_or(i64::MAX);
        let padding = i64::try_from(a.padding).unwrap_or(i64::MAX);
        for t0 in (0..t_out).step_by(chunk) {
            let n = chunk.min(t_out - t0);
            let g = Im2col {
                c_in: a.c_in,
                t_in: a.t_in,
                t_out: n,
                kernel: a.kernel,
                stride: a.stride,
                padding: padding.saturating_sub((t0 as i64).saturating_mul(stride)),
                dilation: a.dilation,
                extra_rows: rows - ck,
            };
            im2col(OP, dev, x, alpha, col, &g)?;
            // Extents: A = col chunk, n × rows (ld n) <= col_len (grown, checked in im2col);
            // B = w or the packed weight, rows × c_out (checked / grown); C = columns
            // [t0, t0 + n) of y, n × c_out with ld T: the last element is (c_out − 1)·T + t0 +
            // n − 1 < c_out·T (y checked).
            gemm_ex(
                dev,
                &GemmEx {
                    ty: GemmType::F32,
                    trans_a: false,
                    trans_b: false,
                    m: n,
                    n: a.c_out,
                    k: rows,
                    alpha: 1.0,
                    a: launch::ptr(dev, col),
                    lda: n,
                    b: w_ptr,
                    ldb: rows,
                    beta,
                    c: y_ptr + (t0 * std::mem::size_of::<f32>()) as u64,
                    ldc: t_out,
                },
            )?;
        }
    }
    if let (Some(b), true) = (bias, direct) {
        bias_add(dev, b, y, a.c_out, t_out)?;
    }
    Ok(())
}

/// `y = conv_transpose1d(snake?(x), w) + bias` (PyTorch ConvTranspose1d, groups = 1,
/// dilation = 1; `alpha` `[c_in]` applies Snake to the input, `x` unchanged). `w` is
/// `[c_in, c_out, K]`; `y` holds at least `c_out · a.t_out()` values. The GEMM result (and the
/// Snake'd input) live in `scratch` (grown as needed).
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose1d_gemm(
    dev: &CudaDevice,
    x: &CudaStorage,
    alpha: Option<&CudaStorage>,
    w: &CudaStorage,
    bias: Option<&CudaStorage>,
    y: &mut CudaStorage,
    a: &ConvTranspose1dArgs,
    scratch: &mut ConvScratch,
) -> Result<()> {
    const OP: &str = "cuda::conv_transpose1d_gemm";
    positive(OP, "c_in", a.c_in)?;
    a.validate(OP)?;
    let t_out = a.t_out();
    let ck = a.c_out * a.kernel;
    check_buffers(
        OP,
        &ConvBuffers { x, w, bias, alpha },
        y,
        (a.c_in, a.c_out, a.t_in, t_out, a.c_in * ck),
    )?;
    if t_out == 0 || a.c_out == 0 {
        return Ok(());
    }
    let (col_len, act_len) = conv_transpose1d_scratch_len(a, alpha.is_some());
    let ConvScratch { col, act, .. } = scratch;
    let x_ptr = match alpha {
        Some(al) => {
            let act = grow(act, dev, act_len)?;
            let g = Im2col {
                c_in: a.c_in,
                t_in: a.t_in,
                t_out: a.t_in,
                kernel: 1,
                stride: 1,
                padding: 0,
                dilation: 1,
                extra_rows: 0,
            };
            im2col(OP, dev, x, Some(al), act, &g)?;
            launch::ptr(dev, act)
        }
        None => x.ptr(dev),
    };
    let cols = grow(col, dev, col_len)?;
    // Row-major COLS[cK, t_in] = W[c_in, cK]ᵀ · X[c_in, t_in] is column-major
    // COLSᵀ (t_in × cK, ld t_in) = Xᵀ · W with Xᵀ = x viewed t_in × c_in (ld t_in, op N) and
    // W = (w viewed cK × c_in, ld cK)ᵀ (op T). Extents: A = t_in·c_in floats (x checked / act
    // grown), B = cK·c_in (w checked), C = t_in·cK (cols grown).
    gemm_ex(
        dev,
        &GemmEx {
            ty: GemmType::F32,
            trans_a: false,
            trans_b: true,
            m: a.t_in,
            n: ck,
            k: a.c_in,
            alpha: 1.0,
            a: x_ptr,
            lda: a.t_in,
            b: w.ptr(dev),
            ldb: ck,
            beta: 0.0,
            c: launch::ptr(dev, cols),
            ldc: a.t_in,
        },
    )?;
    let p = Col2imParams {
        cols: launch::ptr(dev, cols),
        bias: bias.map_or(0, |s| s.ptr(dev)),
        y: y.ptr(dev),
        c_out: check::fits_i32(OP, "c_out", a.c_out)?,
        t_in: check::fits_i32(OP, "t_in", a.t_in)?,
        t_out: check::fits_i32(OP, "t_out", t_out)?,
        kernel: check::fits_i32(OP, "kernel", a.kernel)?,
        stride: check::fits_i32(OP, "stride", a.stride)?,
        padding: check::fits_i32(OP, "padding", a.padding)?,
    };
    // Grid (ceil(t_out/1024), c_out): writes y[< c_out·t_out] (checked); reads cols rows
    // co·K + k < c_out·K at columns m < t_in (bounded in-kernel), within the grown scratch.
    let cfg = LaunchConfig {
        grid_dim: (
            t_out.div_ceil(THREADS * COL2IM_PER_THREAD) as u32,
            a.c_out as u32,
            1,
        ),
        block_dim: (THREADS as u32, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(dev, Kernel::Col2imF32, cfg, &p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_lengths() {
        let c = |c_in, kernel, stride, padding, dilation| Conv1dArgs {
            c_in,
            c_out: 8,
            t_in: 100,
            kernel,
            stride,
            padding,
            dilation,
        };
        let l = usize::MAX;
        let direct = c(4, 1, 1, 0, 1);
        assert_eq!(
            conv1d_scratch_len(&direct, false, true, l),
            (0, 0),
            "direct"
        );
        assert_eq!(conv1d_scratch_len(&direct, true, false, l), (400, 0));
        // 4 taps + ones row -> 8 rows.
        assert_eq!(conv1d_scratch_len(&direct, true, true, l), (800, 64));
        assert_eq!(
            conv1d_scratch_len(&c(4, 1, 2, 0, 1), false, false, l),
            (4 * 50, 0)
        );
        // 28 taps + ones row -> 32 rows.
        assert_eq!(
            conv1d_scratch_len(&c(4, 7, 1, 27, 9), false, true, l),
            (32 * 100, 8 * 32)
        );
        assert_eq!(
            conv1d_scratch_len(&c(4, 7, 1, 0, 20), true, true, l),
            (0, 0)
        );
        // Chunked: 32 rows × 100 columns over a 1000-float cap -> 256-column minimum (all 100).
        assert_eq!(
            conv1d_scratch_len(&c(4, 7, 1, 27, 9), false, true, 1000),
            (32 * 100, 8 * 32)
        );
        assert_eq!(conv1d_chunk(228, 240_000, 8 << 20), 34_304);
        assert_eq!(conv1d_chunk(228, 240_000, usize::MAX), 240_000);
        assert_eq!(conv1d_chunk(8, 1000, 2048), 256);
        assert_eq!(conv1d_chunk(8, 1000, 8000), 1000);
        let t = ConvTranspose1dArgs {
            c_in: 6,
            c_out: 3,
            t_in: 10,
            kernel: 16,
            stride: 8,
            padding: 4,
            output_padding: 0,
        };
        assert_eq!(conv_transpose1d_scratch_len(&t, false), (3 * 16 * 10, 0));
        assert_eq!(conv_transpose1d_scratch_len(&t, true), (3 * 16 * 10, 60));
    }

    #[test]
    fn im2col_windows_fit_shared_memory_for_codec_shapes() {
        for (kernel, stride, dilation) in [(7, 1, 1), (7, 1, 3), (7, 1, 9), (1, 1, 1), (16, 8, 1)] {
            let g = Im2col {
                c_in: 1,
                t_in: 1,
                t_out: 1,
                kernel,
                stride,
                padding: 0,
                dilation,
                extra_rows: 0,
            };
            assert!(im2col_span(&g, IM2COL_TILE) * 4 <= SMEM_LIMIT_BYTES);
        }
    }
}
