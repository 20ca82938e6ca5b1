//! Residual vector quantizer on the GPU (`kernels/rvq.cu`), f32: decode (codebook gather,
//! `project_out`, sum over stages into `[dim, T]`) and encode's nearest-codeword search for one
//! stage (the reference's `−(‖z‖² − 2 z·e + ‖e‖²)` argmax, first maximum wins). Both reproduce
//! the CPU twin bit for bit. CPU twin: `codec::rvq::Rvq::{decode, encode}`.
//! spec: codec.md §6.2, §6.3, §6.5, §11.10. May use: device, launch, storage.

use cudarc::driver::{CudaSlice, LaunchConfig};

use super::device::CudaDevice;
use super::kernels::Kernel;
use super::launch::{launch, params_struct, ptr};
use super::storage::{check, CudaStorage};
use crate::error::{Error, Result};
use crate::tensor::DType;

params_struct!(RvqDecodeParams, 64, {
    codes: u64, embed: u64, out_w: u64, out_b: u64, out: u64,
    n_q: i32, n_frames: i32, dim: i32, codebook_dim: i32, bins: i32, _pad: i32,
});
params_struct!(RvqNearestParams, 40, {
    z: u64, embed: u64, codes: u64, n_frames: i32, codebook_dim: i32, bins: i32, _pad: i32,
});

/// Validated arguments of [`rvq_decode`]: `codes` `[n_q, n_frames]` (i32, each in
/// `[0, bins)`), `embed` `[n_q, bins, codebook_dim]`, `out_w` `[n_q, dim, codebook_dim]`,
/// `out_b` `[n_q, dim]`, `out` `[dim, n_frames]`. `n_q` may be fewer than the stages held
/// (the first `n_q` are used, in order).
#[derive(Clone, Copy, Debug)]
pub struct RvqDecodeArgs {
    pub n_q: usize,
    pub n_frames: usize,
    pub dim: usize,
    pub codebook_dim: usize,
    pub bins: usize,
}

/// Validated arguments of [`rvq_nearest`]: `z` `[codebook_dim, n_frames]`, `embed`
/// `[n_stages, bins, codebook_dim]` of which stage `stage` is searched, and `codes`
/// `[n_stages, n_frames]` of which row `stage` is written.
#[derive(Clone, Copy, Debug)]
pub struct RvqNearestArgs {
    pub n_frames: usize,
    pub codebook_dim: usize,
    pub bins: usize,
    pub stage: usize,
}

/// `RVQ_DEC_FRAMES`, `RVQ_DEC_THREADS`, `RVQ_NEAR_THREADS` in the kernel file.
const DEC_FRAMES: usize = 8;
const DEC_THREADS: u32 = 128;
const NEAR_THREADS: u32 = 256;
const SMEM_LIMIT_BYTES: usize = 48 * 1024;
const F32_BYTES: u64 = 4;

fn smem_bytes(op: &'static str, floats: usize) -> Result<u32> {
    let bytes = floats * 4;
    if bytes > SMEM_LIMIT_BYTES {
        return Err(Error::Unsupported(format!(
            "{op}: codebook_dim needs {bytes} bytes of shared memory (limit {SMEM_LIMIT_BYTES})"
        )));
    }
    Ok(bytes as u32)
}

/// `out[:, t] = Σ_{q < n_q} (out_w[q] · embed[q][codes[q, t]] + out_b[q])`, summed from 0 in
/// stage order. Codes must be in `[0, bins)` (the caller checks them on the host, as
/// `Rvq::check_codes` does); an out-of-range code reads as a zero codebook row, never out of
/// bounds.
pub fn rvq_decode(
    dev: &CudaDevice,
    codes: &CudaSlice<i32>,
    embed: &CudaStorage,
    out_w: &CudaStorage,
    out_b: &CudaStorage,
    out: &mut CudaStorage,
    a: &RvqDecodeArgs,
) -> Result<()> {
    const OP: &str = "cuda::rvq_decode";
    for (arg, s) in [("embed", embed), ("out_w", out_w), ("out_b", out_b)] {
        check::dtype(OP, arg, s, DType::F32)?;
    }
    check::dtype(OP, "out", out, DType::F32)?;
    check::idx_len(OP, "codes", codes, a.n_q * a.n_frames)?;
    check::len(OP, "embed", embed, a.n_q * a.bins * a.codebook_dim)?;
    check::len(OP, "out_w", out_w, a.n_q * a.dim * a.codebook_dim)?;
    check::len(OP, "out_b", out_b, a.n_q * a.dim)?;
    check::len(OP, "out", out, a.dim * a.n_frames)?;
    let smem = smem_bytes(OP, DEC_FRAMES * a.codebook_dim)?;
    let p = RvqDecodeParams {
        codes: ptr(dev, codes),
        embed: embed.ptr(dev),
        out_w: out_w.ptr(dev),
        out_b: out_b.ptr(dev),
        out: out.ptr(dev),
        n_q: check::fits_i32(OP, "n_q", a.n_q)?,
        n_frames: check::fits_i32(OP, "n_frames", a.n_frames)?,
        dim: check::fits_i32(OP, "dim", a.dim)?,
        codebook_dim: check::fits_i32(OP, "codebook_dim", a.codebook_dim)?,
        bins: check::fits_i32(OP, "bins", a.bins)?,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (
            (p.dim as u32).div_ceil(DEC_THREADS),
            a.n_frames.div_ceil(DEC_FRAMES) as u32,
            1,
        ),
        block_dim: (DEC_THREADS, 1, 1),
        shared_mem_bytes: smem,
    };
    // The kernel reads codes < n_q·n_frames, embed rows only for codes in [0, bins), and
    // writes out < dim·n_frames: all bounded by the length checks above. launch() rejects a
    // grid.y (n_frames / 8) above 65535.
    launch(dev, Kernel::RvqDecodeF32, cfg, &p)
}

/// For every frame `t`: `codes[stage, t] = argmax_j −((‖z_t‖² − 2 z_t·E[j]) + ‖E[j]‖²)` over
/// stage `stage`'s codebook `E`, lowest index on ties (spec §6.3 step 2–3).
pub fn rvq_nearest(
    dev: &CudaDevice,
    z: &CudaStorage,
    embed: &CudaStorage,
    codes: &mut CudaSlice<i32>,
    a: &RvqNearestArgs,
) -> Result<()> {
    const OP: &str = "cuda::rvq_nearest";
    check::dtype(OP, "z", z, DType::F32)?;
    check::dtype(OP, "embed", embed, DType::F32)?;
    if a.bins == 0 {
        return Err(Error::Shape {
            op: OP,
            arg: "bins",
            expected: ">= 1".into(),
            got: "0".into(),
        });
    }
    let stage_len = a.bins * a.codebook_dim;
    check::len(OP, "z", z, a.codebook_dim * a.n_frames)?;
    check::len(OP, "embed", embed, (a.stage + 1) * stage_len)?;
    check::idx_len(OP, "codes", codes, (a.stage + 1) * a.n_frames)?;
    let smem = smem_bytes(OP, a.codebook_dim)?;
    let p = RvqNearestParams {
        z: z.ptr(dev),
        // In bounds: the checks above give embed >= (stage+1)·bins·cd and codes >=
        // (stage+1)·n_frames elements, so both stage offsets stay inside their buffers.
        embed: embed.ptr(dev) + (a.stage * stage_len) as u64 * F32_BYTES,
        codes: ptr(dev, codes) + (a.stage * a.n_frames) as u64 * 4,
        n_frames: check::fits_i32(OP, "n_frames", a.n_frames)?,
        codebook_dim: check::fits_i32(OP, "codebook_dim", a.codebook_dim)?,
        bins: check::fits_i32(OP, "bins", a.bins)?,
        _pad: 0,
    };
    let cfg = LaunchConfig {
        grid_dim: (p.n_frames as u32, 1, 1),
        block_dim: (NEAR_THREADS, 1, 1),
        shared_mem_bytes: smem,
    };
    launch(dev, Kernel::RvqNearestF32, cfg, &p)
}
