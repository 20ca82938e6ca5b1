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
}

/// Row-major `y[n, out] = x[n, k] · w[out, k]ᵀ` through `cublasGemmEx` with f32 compute.
///
/// cuBLAS is column-major: row-major y is column-major yᵀ [out, n] = (w viewed k×out)ᵀ ·
/// (x viewed k×n), i.e. op(A)=T on w with lda = k, op(B)=N on x with ldb = k, ldc = out.
pub(crate) fn gemm(dev: &CudaDevice, g: &GemmCall) -> Result<()> {
    const NAME: &str = "cublasGemmEx";
    let GemmCall {
        ty,
        x,
        w,
        y,
        n,
        k,
        out,
    } = *g;
    if n == 0 || out == 0 {
        return Ok(());
    }
    let dim = |v: usize, what: &str| -> Result<i32> {
        i32::try_from(v).map_err(|_| Error::Kernel {
            kernel: NAME.into(),
            reason: format!("{what} = {v} exceeds i32"),
        })
    };
    let (m_, n_, k_) = (dim(out, "out")?, dim(n, "n")?, dim(k, "k")?);
    let data = match ty {
        GemmType::Bf16 => cublas_sys::cudaDataType::CUDA_R_16BF,
        GemmType::F32 => cublas_sys::cudaDataType::CUDA_R_32F,
    };
    let alpha: f32 = 1.0;
    let beta: f32 = 0.0;
    let blas = dev.blas()?;
    // SAFETY: the handle is bound to this device's single stream (CudaBlas::new(stream)); the
    // caller (gemm.rs) checked x holds n·k, w holds out·k and y holds n·out elements of `ty`;
    // alpha/beta are host f32 scalars, matching CUBLAS_COMPUTE_32F and the default host
    // pointer mode.
    dev.timed(
        || {
            format!(
                "gemm {}x{}x{} {:?}",
                out,
                k,
                if n == 1 {
                    "1"
                } else if n <= 16 {
                    "<=16"
                } else {
                    "n"
                },
                ty
            )
        },
        || unsafe {
            cudarc::cublas::result::gemm_ex(
                *blas.handle(),
                cublas_sys::cublasOperation_t::CUBLAS_OP_T,
                cublas_sys::cublasOperation_t::CUBLAS_OP_N,
                m_,
                n_,
                k_,
                (&alpha) as *const f32 as *const _,
                w as *const _,
                data,
                k_,
                x as *const _,
                data,
                k_,
                (&beta) as *const f32 as *const _,
                y as *mut _,
                data,
                m_,
                cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
            .map_err(|e| Error::Kernel {
                kernel: NAME.into(),
                reason: format!("{e:?} (n {n}, k {k}, out {out})"),
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
