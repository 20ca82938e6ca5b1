//! W8A16 projections on the GPU with FP8 E4M3 weights (`kernels/fp8_gemv.cu`): `y[n, out] =
//! x[n, k] · (decode(W) · scale)ᵀ`, x and y bf16 or f32, W an FP8 [`CudaStorage`]. Decode-sized
//! batches (n <= 16) take the GEMV kernel, which reads each weight byte once; larger ones
//! dequantize W in row chunks into a scratch of x's dtype and hand each chunk to cuBLAS.
//! [`choose_fp8_path`] is the one chooser, used by `ops::matmul` and iterated by the tests.
//! CPU twin: `backend/cpu/matmul.rs` (`WeightRows for Fp8Weight`). spec: model.md §5.3.
//! May use: device, launch, storage, gemm.

use cudarc::driver::LaunchConfig;

use super::device::CudaDevice;
use super::gemm::MatmulArgs;
use super::kernels::Kernel;
use super::launch::{gemm_ex, launch, params_struct, GemmEx, GemmType};
use super::storage::{check, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

params_struct!(Fp8GemvParams, 48, {
    x: u64, w: u64, scales: u64, y: u64, n: i32, k: i32, out: i32, vec: i32,
});
params_struct!(Fp8DequantParams, 40, {
    w: u64, scales: u64, dst: u64, row0: i32, rows: i32, k: i32, _pad: i32,
});

const OP: &str = "cuda::matmul_fp8";
/// Rows of x the GEMV handles (its widest instantiation, `fp8_gemv_*_n16`).
pub const GEMV_MAX_ROWS: usize = 16;
/// Output rows per GEMV block (`GEMV_WARPS` in the kernel: one warp per row).
const GEMV_WARPS: u32 = 4;
/// Elements of one dequantized chunk of W (64 Mi: 128 MiB of bf16), so a 128256-row head
/// never needs a full-size bf16 copy.
const DEQUANT_CHUNK_ELEMS: usize = 64 << 20;

/// How one FP8 matmul runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fp8Path {
    /// The skinny kernel compiled for `tile` rows of x (1, 2, 4, 8 or 16; n <= tile).
    Gemv { tile: usize },
    /// Dequantize row chunks of W to x's dtype, then cuBLAS.
    Dequant,
}

/// The path for `n` rows of x: the GEMV up to [`GEMV_MAX_ROWS`], with the smallest tile
/// that holds them (fewer idle accumulators), else dequantize + cuBLAS.
pub fn choose_fp8_path(n: usize) -> Fp8Path {
    match n {
        0..=1 => Fp8Path::Gemv { tile: 1 },
        2 => Fp8Path::Gemv { tile: 2 },
        3..=4 => Fp8Path::Gemv { tile: 4 },
        5..=8 => Fp8Path::Gemv { tile: 8 },
        9..=GEMV_MAX_ROWS => Fp8Path::Gemv { tile: 16 },
        _ => Fp8Path::Dequant,
    }
}

/// `y = x · dequant(w)ᵀ` by [`choose_fp8_path`].
pub fn matmul_fp8(
    dev: &CudaDevice,
    x: &CudaStorage,
    w: &CudaStorage,
    y: &mut CudaStorage,
    a: &MatmulArgs,
) -> Result<()> {
    matmul_fp8_path(dev, x, w, y, a, choose_fp8_path(a.n))
}

/// [`matmul_fp8`] on a given path (tests run every path on the same inputs).
pub fn matmul_fp8_path(
    dev: &CudaDevice,
    x: &CudaStorage,
    w: &CudaStorage,
    y: &mut CudaStorage,
    a: &MatmulArgs,
    path: Fp8Path,
) -> Result<()> {
    let CudaStorage::F8E4M3 { codes, scales, k } = w else {
        return Err(Error::DType {
            op: OP,
            arg: "w",
            expected: "f8e4m3".into(),
            got: w.dtype().name().into(),
        });
    };
    if *k != a.k {
        return Err(Error::Shape {
            op: OP,
            arg: "w",
            expected: format!("k = {}", a.k),
            got: format!("k = {k}"),
        });
    }
    check::len(OP, "x", x, a.n * a.k)?;
    check::len(OP, "w", w, a.out * a.k)?;
    check::len(OP, "y", y, a.n * a.out)?;
    check::dtype(OP, "y", y, x.dtype())?;
    if scales.len() < a.out {
        return Err(Error::Shape {
            op: OP,
            arg: "w.scales",
            expected: format!(">= {} elements", a.out),
            got: scales.len().to_string(),
        });
    }
    if a.n == 0 || a.out == 0 {
        return Ok(());
    }
    let n = check::fits_i32(OP, "n", a.n)?;
    let kk = check::fits_i32(OP, "k", a.k)?;
    let out = check::fits_i32(OP, "out", a.out)?;
    let (xp, wp, sp, yp) = (
        x.ptr(dev),
        super::launch::ptr(dev, codes),
        super::launch::ptr(dev, scales),
        y.ptr(dev),
    );
    match path {
        Fp8Path::Gemv { tile } => {
            if a.n > tile {
                return Err(Error::Shape {
                    op: OP,
                    arg: "x",
                    expected: format!("<= {tile} rows for the GEMV tile"),
                    got: a.n.to_string(),
                });
            }
            let kernel = gemv_kernel(x.dtype(), tile)?;
            let p = Fp8GemvParams {
                x: xp,
                w: wp,
                scales: sp,
                y: yp,
                n,
                k: kk,
                out,
                vec: (a.k.is_multiple_of(16) && xp.is_multiple_of(16) && wp.is_multiple_of(16))
                    as i32,
            };
            let cfg = LaunchConfig {
                grid_dim: ((a.out as u32).div_ceil(GEMV_WARPS), 1, 1),
                block_dim: (32 * GEMV_WARPS, 1, 1),
                shared_mem_bytes: 0,
            };
            // The kernel reads x[i, ..] for i < n, w rows < out and scales < out, and writes
            // y[i, row] for i < n, row < out: all checked above.
            launch(dev, kernel, cfg, &p)
        }
        Fp8Path::Dequant => dequant_gemm(dev, x, (wp, sp), yp, a, kk),
    }
}

fn gemv_kernel(dtype: DType, tile: usize) -> Result<Kernel> {
    use Kernel::*;
    let k = match (dtype, tile) {
        (DType::BF16, 1) => Fp8GemvBf16N1,
        (DType::BF16, 2) => Fp8GemvBf16N2,
        (DType::BF16, 4) => Fp8GemvBf16N4,
        (DType::BF16, 8) => Fp8GemvBf16N8,
        (DType::BF16, 16) => Fp8GemvBf16N16,
        (DType::F32, 1) => Fp8GemvF32N1,
        (DType::F32, 2) => Fp8GemvF32N2,
        (DType::F32, 4) => Fp8GemvF32N4,
        (DType::F32, 8) => Fp8GemvF32N8,
        (DType::F32, 16) => Fp8GemvF32N16,
        (DType::BF16 | DType::F32, t) => {
            return Err(Error::Unsupported(format!(
                "{OP}: no GEMV tile of {t} rows (1, 2, 4, 8, 16)"
            )))
        }
        (d, _) => {
            return Err(Error::DType {
                op: OP,
                arg: "x",
                expected: "bf16 or f32".into(),
                got: d.name().into(),
            })
        }
    };
    Ok(k)
}

/// Row chunks of W dequantized into a scratch of x's dtype, each multiplied by cuBLAS into
/// its columns of y (y row-major [n, out] is column-major [out, n] with ldc = out, so a chunk
/// of output rows r0..r1 is the sub-matrix starting at element r0).
fn dequant_gemm(
    dev: &CudaDevice,
    x: &CudaStorage,
    (wp, sp): (u64, u64),
    yp: u64,
    a: &MatmulArgs,
    k: i32,
) -> Result<()> {
    let (ty, dequant, elem_bytes) = match x.dtype() {
        DType::BF16 => (GemmType::Bf16, Kernel::Fp8DequantBf16, 2u64),
        DType::F32 => (GemmType::F32, Kernel::Fp8DequantF32, 4u64),
        d => {
            return Err(Error::DType {
                op: OP,
                arg: "x",
                expected: "bf16 or f32".into(),
                got: d.name().into(),
            })
        }
    };
    let chunk_rows = (DEQUANT_CHUNK_ELEMS / a.k.max(1)).clamp(1, a.out);
    // SAFETY: each chunk's dequant kernel writes all rows · k elements of the scratch before
    // the GEMM of the same chunk reads them (stream order), and only those are read.
    let scratch = unsafe { CudaStorage::uninit(dev, chunk_rows * a.k, x.dtype())? };
    let sp_scratch = scratch.ptr(dev);
    let mut r0 = 0;
    while r0 < a.out {
        let rows = chunk_rows.min(a.out - r0);
        let total = rows * a.k;
        let p = Fp8DequantParams {
            w: wp,
            scales: sp,
            dst: sp_scratch,
            row0: check::fits_i32(OP, "row0", r0)?,
            rows: check::fits_i32(OP, "rows", rows)?,
            k,
            _pad: 0,
        };
        let cfg = LaunchConfig {
            grid_dim: (total.div_ceil(256).clamp(1, 1 << 16) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        // Reads codes of rows r0..r0 + rows (< out) and their scales; writes rows · k scratch
        // elements (the scratch holds chunk_rows · k >= rows · k).
        launch(dev, dequant, cfg, &p)?;
        gemm_ex(
            dev,
            &GemmEx {
                ty,
                trans_a: true,
                trans_b: false,
                m: rows,
                n: a.n,
                k: a.k,
                alpha: 1.0,
                a: sp_scratch,
                lda: a.k,
                b: x.ptr(dev),
                ldb: a.k,
                beta: 0.0,
                c: yp + r0 as u64 * elem_bytes,
                ldc: a.out,
            },
        )?;
        r0 += rows;
    }
    drop(scratch); // stream-ordered free, after the last GEMM that reads it
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chooser_covers_every_size() {
        for n in 0..=40 {
            match choose_fp8_path(n) {
                Fp8Path::Gemv { tile } => {
                    assert!(n <= tile && tile <= GEMV_MAX_ROWS, "n {n} tile {tile}");
                    assert!(gemv_kernel(DType::BF16, tile).is_ok());
                    assert!(gemv_kernel(DType::F32, tile).is_ok());
                }
                Fp8Path::Dequant => assert!(n > GEMV_MAX_ROWS, "n {n}"),
            }
        }
    }
}
