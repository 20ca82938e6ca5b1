//! The only place a kernel (or cuBLAS GEMM) is launched, hence the only launch `unsafe` in the
//! crate. Every kernel takes ONE `#[repr(C)]` params struct declared with [`params_struct!`],
//! which asserts its size against the `HIGGS_PARAMS_SIZE` in the `.cu` file. In debug builds
//! (and with `HIGGS_CUDA_SYNC=1`) the stream is synchronised after each launch so an
//! asynchronous fault is reported under the kernel that caused it. Every error names its kernel.
//! May use: device, the generated kernels, error.

use cudarc::cublas::sys as cublas_sys;
use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use super::device::CudaDevice;
use super::kernels::Kernel;
use crate::error::{Error, Result};

/// Declares a `#[repr(C)]` kernel params struct, its `DeviceRepr` impl and a compile-time size
/// check (the same number as `HIGGS_PARAMS_SIZE(<Name>, bytes)` in the kernel file).
macro_rules! params_struct {
    ($(#[$m:meta])* $name:ident, $bytes:expr, { $($(#[$fm:meta])* $field:ident : $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default)]
        pub(crate) struct $name { $($(#[$fm])* pub $field: $ty),* }
        // SAFETY: plain-old-data #[repr(C)] of u64 pointers and 32/64-bit scalars, laid out
        // exactly as the C struct of the same name (size asserted below and in the .cu file).
        unsafe impl cudarc::driver::DeviceRepr for $name {}
        const _: () = assert!(std::mem::size_of::<$name>() == $bytes);
    };
}
pub(crate) use params_struct;

/// Raw device address of a buffer, for a params struct. The engine uses one stream, so stream
/// order alone orders every read and write; the event cudarc may record is dropped at once.
pub(crate) fn ptr<T>(dev: &CudaDevice, s: &CudaSlice<T>) -> u64 {
    let (p, _sync) = s.device_ptr(dev.stream());
    p
}

/// Launches `kernel` with one params struct.
///
/// Callers (the per-family files) must have checked that every buffer in `params` is at least
/// as long as the grid's index range reaches; they say which check in their own comments.
pub(crate) fn launch<P: DeviceRepr>(
    dev: &CudaDevice,
    kernel: Kernel,
    cfg: LaunchConfig,
    params: &P,
) -> Result<()> {
    let (g, b) = (cfg.grid_dim, cfg.block_dim);
    if g.0 == 0 || g.1 == 0 || g.2 == 0 {
        return Ok(()); // empty problem: nothing to do, and a zero grid is a launch error
    }
    if g.1 > 65535 || g.2 > 65535 || b.0 * b.1 * b.2 > 1024 {
        return Err(Error::Kernel {
            kernel: kernel.name().into(),
            reason: format!("launch shape out of range: grid {g:?}, block {b:?}"),
        });
    }
    let func = dev.function(kernel);
    let mut builder = dev.stream().launch_builder(func);
    builder.arg(params);
    // SAFETY: `func` is `kernel`'s entry, loaded from the fatbin whose source declares exactly
    // one parameter of type P's C mirror (same size, asserted on both sides via params_struct!
    // and HIGGS_PARAMS_SIZE). Every pointer in `params` comes from a live CudaSlice borrowed for
    // the duration of the caller, allocated on this device's single stream, so stream order
    // keeps it alive until the kernel has run; the caller bounds-checked every index range.
    dev.timed(
        || kernel.name().to_string(),
        || {
            unsafe { builder.launch(cfg) }
                .map(|_| ())
                .map_err(|e| Error::Kernel {
                    kernel: kernel.name().into(),
                    reason: format!("launch failed: {e}"),
                })
        },
    )?;
    if dev.sync_each_launch() && !dev.is_capturing() {
        dev.stream().synchronize().map_err(|e| Error::Kernel {
            kernel: kernel.name().into(),
            reason: format!("fault while running: {e}"),
        })?;
    }
    Ok(())
}

/// Element type of a cuBLAS GEMM (inputs and output share it; accumulation is always f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmType {
    Bf16,
    F32,
}

/// Device addresses and sizes of one GEMM (checked by the caller against the buffers).
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmCall {
    pub ty: GemmType,
    pub x: u64,
    pub w: u64,
    pub y: u64,
    pub n: usize,
    pub k: usize,
    pub out: usize,
    /// `y += x · wᵀ` (beta = 1: the residual add in the GEMM's epilogue) instead of `y =`.
    pub accumulate: bool,
}

/// Row-major `y[n, out] = x[n, k] · w[out, k]ᵀ` (or `y +=`, see [`GemmCall::accumulate`])
/// through `cublasGemmEx` with f32 compute.
///
/// cuBLAS is column-major: row-major y is column-major yᵀ [out, n] = (w viewed k×out)ᵀ ·
/// (x viewed k×n), i.e. op(A)=T on w with lda = k, op(B)=N on x with ldb = k, ldc = out.
pub(crate) fn gemm(dev: &CudaDevice, g: &GemmCall) -> Result<()> {
    gemm_ex(
        dev,
        &GemmEx {
            ty: g.ty,
            trans_a: true,
            trans_b: false,
            m: g.out,
            n: g.n,
            k: g.k,
            alpha: 1.0,
            a: g.w,
            lda: g.k,
            b: g.x,
            ldb: g.k,
            beta: if g.accumulate { 1.0 } else { 0.0 },
            c: g.y,
            ldc: g.out,
        },
    )
}

/// One column-major GEMM `C[m, n] = alpha · op(A)[m, k] · op(B)[k, n] + beta · C` in cuBLAS
/// conventions (`A` is `lda × (trans_a ? m : k)`, `B` is `ldb × (trans_b ? k : n)`, `C` is
/// `ldc × n`), f32 accumulation (`CUBLAS_COMPUTE_32F`: plain f32, no TF32, for f32 data).
/// The caller checked every extent against its buffer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmEx {
    pub ty: GemmType,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: u64,
    pub lda: usize,
    pub b: u64,
    pub ldb: usize,
    pub beta: f32,
    pub c: u64,
    pub ldc: usize,
}

/// Runs one [`GemmEx`] on the device's stream (timed and synchronised like a kernel launch).
pub(crate) fn gemm_ex(dev: &CudaDevice, g: &GemmEx) -> Result<()> {
    const NAME: &str = "cublasGemmEx";
    if g.m == 0 || g.n == 0 {
        return Ok(());
    }
    let dim = |v: usize, what: &str| -> Result<i32> {
        i32::try_from(v).map_err(|_| Error::Kernel {
            kernel: NAME.into(),
            reason: format!("{what} = {v} exceeds i32"),
        })
    };
    let (m, n, k) = (dim(g.m, "m")?, dim(g.n, "n")?, dim(g.k, "k")?);
    let (lda, ldb, ldc) = (dim(g.lda, "lda")?, dim(g.ldb, "ldb")?, dim(g.ldc, "ldc")?);
    let op = |t: bool| {
        if t {
            cublas_sys::cublasOperation_t::CUBLAS_OP_T
        } else {
            cublas_sys::cublasOperation_t::CUBLAS_OP_N
        }
    };
    let data = match g.ty {
        GemmType::Bf16 => cublas_sys::cudaDataType::CUDA_R_16BF,
        GemmType::F32 => cublas_sys::cudaDataType::CUDA_R_32F,
    };
    let blas = dev.blas()?;
    dev.timed(
        || {
            let rows = match g.n {
                1 => "1",
                2..=16 => "<=16",
                _ => "n",
            };
            format!("gemm {}x{}x{rows} {:?}", g.m, g.k, g.ty)
        },
        // SAFETY: the handle is bound to this device's single stream (CudaBlas::new(stream));
        // the caller checked that A, B and C (live CudaSlices borrowed for the call, stream
        // ordered) hold the extents described on `GemmEx`; alpha/beta are host f32 scalars,
        // matching CUBLAS_COMPUTE_32F and the default host pointer mode.
        || unsafe {
            cudarc::cublas::result::gemm_ex(
                *blas.handle(),
                op(g.trans_a),
                op(g.trans_b),
                m,
                n,
                k,
                (&g.alpha) as *const f32 as *const _,
                g.a as *const _,
                data,
                lda,
                g.b as *const _,
                data,
                ldb,
                (&g.beta) as *const f32 as *const _,
                g.c as *mut _,
                data,
                ldc,
                cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
            .map_err(|e| Error::Kernel {
                kernel: NAME.into(),
                reason: format!("{e:?} (m {m}, n {n}, k {k})"),
            })
        },
    )?;
    if dev.sync_each_launch() && !dev.is_capturing() {
        dev.stream().synchronize().map_err(|e| Error::Kernel {
            kernel: NAME.into(),
            reason: format!("fault while running: {e}"),
        })?;
    }
    Ok(())
}
