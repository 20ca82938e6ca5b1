//! `CudaStorage`: a device buffer of one activation/weight dtype (f32, or bf16 held as its raw
//! u16 bits), or an FP8 E4M3 weight (codes + per-row f32 scales, read only by
//! `fp8_gemv.rs`), plus host upload/download. `Tensor` (src/tensor.rs) wraps it in `Storage::Cuda`.
//! Index buffers (ids, positions, slot mappings, block tables, masks) are plain
//! `CudaSlice<i32>` / `CudaSlice<u8>` made with [`CudaDevice::upload`].
//! May use: device, tensor, error.

use cudarc::driver::CudaSlice;
use half::bf16;

use super::device::CudaDevice;
use super::launch;
use crate::error::{Error, Result};
use crate::quant::weight::Fp8Weight;
use crate::tensor::{CpuStorage, DType};

#[derive(Debug)]
pub enum CudaStorage {
    F32(CudaSlice<f32>),
    /// bf16 bit patterns (cudarc has no bf16 `DeviceRepr` without its `f16` feature).
    BF16(CudaSlice<u16>),
    /// A `[out, k]` weight: `out · k` E4M3 codes, row-major, and `out` f32 scales.
    F8E4M3 {
        codes: CudaSlice<u8>,
        scales: CudaSlice<f32>,
        k: usize,
    },
}

fn dl_err(e: impl std::fmt::Display) -> Error {
    Error::Kernel {
        kernel: "memcpy dtoh".into(),
        reason: e.to_string(),
    }
}

impl CudaStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CudaStorage::F32(_) => DType::F32,
            CudaStorage::BF16(_) => DType::BF16,
            CudaStorage::F8E4M3 { .. } => DType::F8E4M3,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            CudaStorage::F32(s) => s.len(),
            CudaStorage::BF16(s) => s.len(),
            CudaStorage::F8E4M3 { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A zero-filled buffer of `n` elements (at least one: CUDA cannot allocate 0 bytes).
    pub fn zeros(dev: &CudaDevice, n: usize, dtype: DType) -> Result<Self> {
        match dtype {
            DType::F32 => Ok(CudaStorage::F32(dev.alloc_zeros::<f32>(n)?)),
            DType::BF16 => Ok(CudaStorage::BF16(dev.alloc_zeros::<u16>(n)?)),
            DType::F16 => Err(unsupported_f16()),
            DType::F8E4M3 => Err(unsupported_fp8("CudaStorage::zeros")),
        }
    }

    /// A buffer of `n` elements with undefined contents (at least one element).
    ///
    /// # Safety
    /// Every element must be written by a kernel before anything reads it.
    pub unsafe fn uninit(dev: &CudaDevice, n: usize, dtype: DType) -> Result<Self> {
        match dtype {
            DType::F32 => Ok(CudaStorage::F32(dev.alloc_uninit::<f32>(n)?)),
            DType::BF16 => Ok(CudaStorage::BF16(dev.alloc_uninit::<u16>(n)?)),
            DType::F16 => Err(unsupported_f16()),
            DType::F8E4M3 => Err(unsupported_fp8("CudaStorage::uninit")),
        }
    }

    /// Copies all of `src` into the front of `self` (same dtype; stream-ordered, capturable).
    pub fn copy_from(&mut self, dev: &CudaDevice, src: &CudaStorage) -> Result<()> {
        let expected = format!("{} at most {} elements", self.dtype().name(), self.len());
        let err = |what: String| Error::Shape {
            op: "cuda::copy_from",
            arg: "src",
            expected: expected.clone(),
            got: what,
        };
        if src.len() > self.len() {
            return Err(err(format!("{} elements", src.len())));
        }
        let r = match (self, src) {
            (CudaStorage::F32(d), CudaStorage::F32(s)) => {
                let n = s.len();
                dev.stream().memcpy_dtod(s, &mut d.slice_mut(..n))
            }
            (CudaStorage::BF16(d), CudaStorage::BF16(s)) => {
                let n = s.len();
                dev.stream().memcpy_dtod(s, &mut d.slice_mut(..n))
            }
            (_, s) => return Err(err(s.dtype().name().to_string())),
        };
        r.map_err(|e| Error::Kernel {
            kernel: "memcpy dtod".into(),
            reason: e.to_string(),
        })
    }

    /// Uploads host data, rounding to bf16 (nearest-even) when `dtype` is bf16.
    pub fn from_f32(dev: &CudaDevice, data: &[f32], dtype: DType) -> Result<Self> {
        match dtype {
            DType::F32 => Ok(CudaStorage::F32(dev.upload(data)?)),
            DType::BF16 => {
                let bits: Vec<u16> = data.iter().map(|&x| bf16::from_f32(x).to_bits()).collect();
                Ok(CudaStorage::BF16(dev.upload(&bits)?))
            }
            DType::F16 => Err(unsupported_f16()),
            DType::F8E4M3 => Err(unsupported_fp8("CudaStorage::from_f32")),
        }
    }

    /// Uploads host storage as is (f32 or bf16; f16 is not a CUDA activation type here).
    pub fn from_cpu(dev: &CudaDevice, host: &CpuStorage) -> Result<Self> {
        match host {
            CpuStorage::F32(v) => Ok(CudaStorage::F32(dev.upload(v)?)),
            CpuStorage::BF16(v) => Ok(CudaStorage::BF16(
                dev.upload(bytemuck::cast_slice::<bf16, u16>(v))?,
            )),
            CpuStorage::F16(_) => Err(unsupported_f16()),
        }
    }

    /// Uploads an FP8 weight's codes and scales.
    pub fn from_fp8(dev: &CudaDevice, w: &Fp8Weight) -> Result<Self> {
        let (_, k) = w.dims();
        Ok(CudaStorage::F8E4M3 {
            codes: dev.upload(w.codes())?,
            scales: dev.upload(w.scales())?,
            k,
        })
    }

    /// The host copy of an FP8 weight (synchronises the stream); `None` for other dtypes.
    pub fn to_fp8_host(&self) -> Result<Option<Fp8Weight>> {
        match self {
            CudaStorage::F8E4M3 { codes, scales, k } => {
                let (codes, scales) = (download(codes)?, download(scales)?);
                Ok(Some(Fp8Weight::from_parts(
                    scales.len(),
                    *k,
                    codes,
                    scales,
                )?))
            }
            _ => Ok(None),
        }
    }

    /// Downloads into host storage of the same dtype (synchronises the stream); an FP8
    /// weight comes back dequantized to f32 (host storage has no FP8 dtype; `Tensor::to_device`
    /// keeps FP8 through [`CudaStorage::to_fp8_host`]).
    pub fn to_cpu(&self) -> Result<CpuStorage> {
        match self {
            CudaStorage::F32(s) => Ok(CpuStorage::F32(download(s)?)),
            CudaStorage::BF16(s) => {
                let bits = download(s)?;
                Ok(CpuStorage::BF16(
                    bits.into_iter().map(bf16::from_bits).collect(),
                ))
            }
            CudaStorage::F8E4M3 { .. } => {
                let w = self
                    .to_fp8_host()?
                    .ok_or_else(|| unsupported_fp8("to_cpu"))?;
                Ok(CpuStorage::F32(w.dequantize()))
            }
        }
    }

    /// Downloads and widens to f32 (synchronises the stream).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        Ok(self.to_cpu()?.to_f32_vec())
    }

    /// Raw device address for a kernel params struct (an FP8 weight's codes).
    pub(crate) fn ptr(&self, dev: &CudaDevice) -> u64 {
        match self {
            CudaStorage::F32(s) => launch::ptr(dev, s),
            CudaStorage::BF16(s) => launch::ptr(dev, s),
            CudaStorage::F8E4M3 { codes, .. } => launch::ptr(dev, codes),
        }
    }
}

fn download<T: cudarc::driver::DeviceRepr>(s: &CudaSlice<T>) -> Result<Vec<T>> {
    let v = s.stream().clone_dtoh(s).map_err(dl_err)?;
    s.stream().synchronize().map_err(dl_err)?;
    Ok(v)
}

fn unsupported_f16() -> Error {
    Error::Unsupported("f16 tensors on the CUDA backend (use bf16 or f32)".into())
}

fn unsupported_fp8(op: &str) -> Error {
    Error::Unsupported(format!(
        "{op}: f8e4m3 is a weight format (codes + row scales, uploaded by from_fp8), not a \
         dense buffer dtype"
    ))
}

/// Shared argument checks of the per-family files, written once (STYLE §4.7).
pub(crate) mod check {
    use super::CudaStorage;
    use crate::error::{Error, Result};
    use crate::tensor::DType;
    use cudarc::driver::CudaSlice;

    /// `s` holds at least `needed` elements.
    pub fn len(op: &'static str, arg: &'static str, s: &CudaStorage, needed: usize) -> Result<()> {
        if s.len() < needed {
            return Err(shape(op, arg, needed, s.len()));
        }
        Ok(())
    }

    /// An index/mask buffer holds at least `needed` elements.
    pub fn idx_len<T>(
        op: &'static str,
        arg: &'static str,
        s: &CudaSlice<T>,
        needed: usize,
    ) -> Result<()> {
        if s.len() < needed {
            return Err(shape(op, arg, needed, s.len()));
        }
        Ok(())
    }

    /// `s` has the dtype of the op's main input.
    pub fn dtype(
        op: &'static str,
        arg: &'static str,
        s: &CudaStorage,
        expected: DType,
    ) -> Result<()> {
        if s.dtype() != expected {
            return Err(Error::DType {
                op,
                arg,
                expected: expected.name().into(),
                got: s.dtype().name().into(),
            });
        }
        Ok(())
    }

    /// A dimension fits the i32 fields of the params structs.
    pub fn fits_i32(op: &'static str, arg: &'static str, v: usize) -> Result<i32> {
        i32::try_from(v).map_err(|_| Error::Shape {
            op,
            arg,
            expected: "a value < 2^31".into(),
            got: v.to_string(),
        })
    }

    fn shape(op: &'static str, arg: &'static str, needed: usize, got: usize) -> Error {
        Error::Shape {
            op,
            arg,
            expected: format!(">= {needed} elements"),
            got: format!("{got}"),
        }
    }
}

/// Picks the bf16 or f32 entry of a family for `dtype`.
pub(crate) fn by_dtype(
    op: &'static str,
    dtype: DType,
    bf16: super::Kernel,
    f32: super::Kernel,
) -> Result<super::Kernel> {
    match dtype {
        DType::BF16 => Ok(bf16),
        DType::F32 => Ok(f32),
        DType::F16 | DType::F8E4M3 => Err(Error::DType {
            op,
            arg: "x",
            expected: "bf16 or f32".into(),
            got: dtype.name().into(),
        }),
    }
}

/// A `CudaStorage` together with the device that owns it: what a `Tensor` holds in
/// `Storage::Cuda`, so ops can launch without being handed a device.
#[derive(Debug)]
pub struct DeviceStorage {
    pub dev: std::sync::Arc<CudaDevice>,
    pub data: CudaStorage,
}

impl DeviceStorage {
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// A device-side copy of the first `n` elements (stream-ordered, no host sync).
    pub fn copy_prefix(&self, n: usize) -> Result<DeviceStorage> {
        let stream = self.dev.stream();
        let n = n.clamp(1, self.data.len().max(1));
        let data = match &self.data {
            CudaStorage::F32(s) => {
                CudaStorage::F32(stream.clone_dtod(&s.slice(..n)).map_err(copy_err)?)
            }
            CudaStorage::BF16(s) => {
                CudaStorage::BF16(stream.clone_dtod(&s.slice(..n)).map_err(copy_err)?)
            }
            CudaStorage::F8E4M3 { .. } => return Err(unsupported_fp8("copy_prefix")),
        };
        Ok(DeviceStorage {
            dev: self.dev.clone(),
            data,
        })
    }
}

fn copy_err(e: impl std::fmt::Display) -> Error {
    Error::Kernel {
        kernel: "memcpy dtod".into(),
        reason: e.to_string(),
    }
}
