//! `Tensor`: a shape plus storage on one device. Activations on the CPU backend are always f32;
//! weights keep the dtype they were stored in (bf16, f16 or f32) and are widened inside the
//! kernels, so a bf16 checkpoint costs 2 bytes per parameter in memory.
//! A Linear weight on the CPU may be re-laid out once, at load, for the CPU GEMM
//! ([`Tensor::pack_for_cpu_matmul`]); only `ops::matmul` reads that layout. A Linear weight
//! may also be quantized to FP8 E4M3 with per-row scales ([`Tensor::quantize_fp8`],
//! `Storage::CpuFp8` on the host, an FP8 `CudaStorage` on a GPU); its dtype is
//! [`DType::F8E4M3`], and again only `ops::matmul` reads it.
//! May use: error, quant, backend (the storage types of each backend).

use crate::error::{Error, Result};
use half::{bf16, f16};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    BF16,
    F16,
    /// FP8 E4M3 codes with one f32 scale per row: a weight format only (made by
    /// [`Tensor::quantize_fp8`], read only by `ops::matmul`), never an activation dtype and
    /// never held by [`CpuStorage`].
    F8E4M3,
}

impl DType {
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::BF16 | DType::F16 => 2,
            // The codes; the row scales add 4 bytes per row (`Tensor::storage_bytes`).
            DType::F8E4M3 => 1,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::F8E4M3 => "f8e4m3",
        }
    }
}

/// Host storage, one variant per dtype.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
}

impl CpuStorage {
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F16(_) => DType::F16,
        }
    }
    /// Widen element range `[start, start+out.len())` into `out` as f32.
    #[inline]
    pub fn read_f32(&self, start: usize, out: &mut [f32]) {
        let n = out.len();
        match self {
            CpuStorage::F32(v) => out.copy_from_slice(&v[start..start + n]),
            CpuStorage::BF16(v) => {
                for (o, x) in out.iter_mut().zip(&v[start..start + n]) {
                    *o = x.to_f32();
                }
            }
            CpuStorage::F16(v) => {
                for (o, x) in out.iter_mut().zip(&v[start..start + n]) {
                    *o = x.to_f32();
                }
            }
        }
    }
    pub fn to_f32_vec(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.len()];
        self.read_f32(0, &mut out);
        out
    }
    /// Convert to another dtype (round-to-nearest-even for narrowing). `F8E4M3` is not a
    /// dense host dtype (it needs per-row scales: [`Tensor::quantize_fp8`]), so asking for it
    /// keeps the storage as it is; `Tensor::to_device` and `Tensor::zeros` refuse it instead.
    pub fn to_dtype(&self, dtype: DType) -> CpuStorage {
        if self.dtype() == dtype || dtype == DType::F8E4M3 {
            return self.clone();
        }
        let f = self.to_f32_vec();
        match dtype {
            DType::F32 => CpuStorage::F32(f),
            DType::BF16 => CpuStorage::BF16(f.iter().map(|&x| bf16::from_f32(x)).collect()),
            DType::F16 => CpuStorage::F16(f.iter().map(|&x| f16::from_f32(x)).collect()),
            DType::F8E4M3 => CpuStorage::F32(f), // returned above; kept total for the match
        }
    }
}

#[derive(Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    /// A `[out, k]` weight in the CPU GEMM's panel layout (see `backend::cpu::panels`).
    CpuPanels(crate::backend::cpu::panels::PanelWeight),
    /// A `[out, k]` weight as FP8 E4M3 codes with per-row scales (see `quant::weight`).
    CpuFp8(crate::quant::weight::Fp8Weight),
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::DeviceStorage),
}

/// Where a tensor lives. A CUDA device is a shared handle (context, stream, kernels), so two
/// tensors are on the same device when they share it.
#[derive(Clone, Debug)]
pub enum Device {
    Cpu,
    #[cfg(feature = "cuda")]
    Cuda(std::sync::Arc<crate::backend::cuda::CudaDevice>),
}

impl PartialEq for Device {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Device::Cpu, Device::Cpu) => true,
            #[cfg(feature = "cuda")]
            (Device::Cuda(a), Device::Cuda(b)) => std::sync::Arc::ptr_eq(a, b),
            #[cfg(feature = "cuda")]
            _ => false,
        }
    }
}

impl Device {
    /// Opens CUDA device `ordinal`; an `Unsupported` error in a build without `--features cuda`
    /// or on a machine without a device (its message starts with "no CUDA device").
    pub fn cuda(ordinal: usize) -> Result<Device> {
        #[cfg(feature = "cuda")]
        {
            let dev = crate::backend::cuda::CudaDevice::new(ordinal)?;
            Ok(Device::Cuda(std::sync::Arc::new(dev)))
        }
        #[cfg(not(feature = "cuda"))]
        {
            Err(Error::Unsupported(format!("CUDA device {ordinal}: this build has no CUDA backend (build with --features cuda)")))
        }
    }
    pub fn is_cpu(&self) -> bool {
        matches!(self, Device::Cpu)
    }
    /// "cpu", or the GPU's marketing name.
    pub fn name(&self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.name(),
        }
    }
    /// Waits for queued device work (no-op on the CPU).
    pub fn synchronize(&self) -> Result<()> {
        match self {
            Device::Cpu => Ok(()),
            #[cfg(feature = "cuda")]
            Device::Cuda(d) => d.synchronize(),
        }
    }
    /// The dtype activations take on this device for weights of `weight_dtype`: always f32 on
    /// the CPU (weights are widened in the kernels); the weights' own dtype on CUDA, whose
    /// kernels take one dtype for all operands.
    #[cfg_attr(not(feature = "cuda"), allow(unused_variables))]
    pub fn activation_dtype(&self, weight_dtype: DType) -> DType {
        match self {
            Device::Cpu => DType::F32,
            #[cfg(feature = "cuda")]
            Device::Cuda(_) => weight_dtype,
        }
    }
}

/// A dense, row-major tensor.
#[derive(Debug)]
pub struct Tensor {
    shape: Vec<usize>,
    storage: Storage,
}

impl Tensor {
    pub fn from_cpu(shape: Vec<usize>, storage: CpuStorage) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != storage.len() {
            return Err(Error::Shape {
                op: "Tensor::from_cpu",
                arg: "storage",
                expected: format!("{n} elements for shape {shape:?}"),
                got: format!("{}", storage.len()),
            });
        }
        Ok(Tensor {
            shape,
            storage: Storage::Cpu(storage),
        })
    }
    pub fn from_f32(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        Self::from_cpu(shape, CpuStorage::F32(data))
    }
    pub fn zeros_f32(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor {
            shape,
            storage: Storage::Cpu(CpuStorage::F32(vec![0.0; n])),
        }
    }
    /// Zeros of `shape` and `dtype` on `device`.
    pub fn zeros(shape: Vec<usize>, dtype: DType, device: &Device) -> Result<Self> {
        let n: usize = shape.iter().product();
        let storage = match device {
            Device::Cpu => Storage::Cpu(match dtype {
                DType::F32 => CpuStorage::F32(vec![0.0; n]),
                DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
                DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
                DType::F8E4M3 => return Err(fp8_dense_error("Tensor::zeros")),
            }),
            #[cfg(feature = "cuda")]
            Device::Cuda(dev) => Storage::Cuda(crate::backend::cuda::DeviceStorage {
                dev: dev.clone(),
                data: crate::backend::cuda::CudaStorage::zeros(dev, n, dtype)?,
            }),
        };
        Ok(Tensor { shape, storage })
    }
    /// Host matrices `[r_i, cols]` of one dtype stacked into `[Σ r_i, cols]` (fusing
    /// projections at load). Each part is moved in and freed once copied.
    pub fn cat_rows(parts: Vec<Tensor>) -> Result<Self> {
        let bad = |expected: String, got: String| Error::Shape {
            op: "Tensor::cat_rows",
            arg: "parts",
            expected,
            got,
        };
        let Some(first) = parts.first() else {
            return Err(bad("at least one part".into(), "none".into()));
        };
        let (cols, dtype) = (first.shape.get(1).copied().unwrap_or(0), first.dtype());
        let mut rows = 0;
        for t in &parts {
            if t.shape.len() != 2 || t.shape[1] != cols || t.dtype() != dtype {
                return Err(bad(
                    format!("[_, {cols}] {dtype:?} host matrices"),
                    format!("{:?} {:?}", t.shape, t.dtype()),
                ));
            }
            rows += t.shape[0];
        }
        // The first part's buffer grows to the whole matrix; each later part is appended and
        // freed (dtypes were checked above, so the arms always match).
        let mut parts = parts.into_iter().map(|t| t.storage);
        let Some(Storage::Cpu(mut storage)) = parts.next() else {
            return Err(bad(
                "host (unpacked) matrices".into(),
                "another storage".into(),
            ));
        };
        let more = rows * cols - storage.len();
        match &mut storage {
            CpuStorage::F32(a) => a.reserve_exact(more),
            CpuStorage::BF16(a) => a.reserve_exact(more),
            CpuStorage::F16(a) => a.reserve_exact(more),
        }
        for part in parts {
            match (&mut storage, part) {
                (CpuStorage::F32(a), Storage::Cpu(CpuStorage::F32(b))) => a.extend_from_slice(&b),
                (CpuStorage::BF16(a), Storage::Cpu(CpuStorage::BF16(b))) => a.extend_from_slice(&b),
                (CpuStorage::F16(a), Storage::Cpu(CpuStorage::F16(b))) => a.extend_from_slice(&b),
                _ => {
                    return Err(bad(
                        "host (unpacked) matrices".into(),
                        "another storage".into(),
                    ))
                }
            }
        }
        Tensor::from_cpu(vec![rows, cols], storage)
    }
    /// Zeros of `self`'s shape, dtype and device.
    pub fn zeros_like(&self) -> Result<Self> {
        Self::zeros(self.shape.clone(), self.dtype(), &self.device())
    }
    /// A copy of `data` on `device` in `dtype` (rounded to nearest-even when narrowing).
    pub fn from_f32_on(
        shape: Vec<usize>,
        data: &[f32],
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        Tensor::from_cpu(shape, CpuStorage::F32(data.to_vec()).to_dtype(dtype))?
            .to_device(device, dtype)
    }
    /// A copy of `self` on `device` in `dtype`. Host-side dtype conversion; a device-to-device
    /// copy of another dtype goes through the host (weights are converted once, at load).
    /// An FP8 weight stays FP8 whatever `dtype` says (its kernels read the codes; `dtype` is
    /// the activations'), and no dense tensor becomes FP8 here (that is
    /// [`Tensor::quantize_fp8`], which needs a `[out, k]` weight).
    pub fn to_device(&self, device: &Device, dtype: DType) -> Result<Self> {
        if let Some(w) = self.fp8_host()? {
            return Tensor::from_fp8(self.shape.clone(), w, device);
        }
        if dtype == DType::F8E4M3 {
            return Err(fp8_dense_error("Tensor::to_device"));
        }
        let host = match (&self.storage, device) {
            (Storage::Cpu(s), _) => std::borrow::Cow::Borrowed(s),
            (Storage::CpuPanels(p), _) => std::borrow::Cow::Owned(p.unpack()),
            // Taken by `fp8_host` above; kept so the match needs no panic.
            (Storage::CpuFp8(w), _) => {
                return Tensor::from_fp8(self.shape.clone(), w.clone(), device)
            }
            #[cfg(feature = "cuda")]
            (Storage::Cuda(s), _) => std::borrow::Cow::Owned(s.data.to_cpu()?),
        };
        let storage = match device {
            Device::Cpu => Storage::Cpu(host.to_dtype(dtype)),
            #[cfg(feature = "cuda")]
            Device::Cuda(dev) => {
                let data = if host.dtype() == dtype {
                    crate::backend::cuda::CudaStorage::from_cpu(dev, &host)?
                } else {
                    crate::backend::cuda::CudaStorage::from_cpu(dev, &host.to_dtype(dtype))?
                };
                Storage::Cuda(crate::backend::cuda::DeviceStorage {
                    dev: dev.clone(),
                    data,
                })
            }
        };
        Ok(Tensor {
            shape: self.shape.clone(),
            storage,
        })
    }
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dims2(&self) -> (usize, usize) {
        match self.shape.len() {
            0 => (1, 1),
            1 => (1, self.shape[0]),
            _ => {
                let cols = *self.shape.last().expect("rank >= 2");
                (self.elem_count() / cols.max(1), cols)
            }
        }
    }
    pub fn elem_count(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn dtype(&self) -> DType {
        match &self.storage {
            Storage::Cpu(s) => s.dtype(),
            Storage::CpuPanels(p) => p.dtype(),
            Storage::CpuFp8(_) => DType::F8E4M3,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.dtype(),
        }
    }
    pub fn device(&self) -> Device {
        match &self.storage {
            Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => Device::Cpu,
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => Device::Cuda(s.dev.clone()),
        }
    }
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    pub fn storage_mut(&mut self) -> &mut Storage {
        &mut self.storage
    }
    pub fn into_storage(self) -> Storage {
        self.storage
    }
    pub fn from_storage(shape: Vec<usize>, storage: Storage) -> Self {
        Tensor { shape, storage }
    }
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Self> {
        let n: usize = shape.iter().product();
        if n != self.elem_count() {
            return Err(Error::Shape {
                op: "reshape",
                arg: "shape",
                expected: format!("{} elements", self.elem_count()),
                got: format!("{shape:?}"),
            });
        }
        self.shape = shape;
        Ok(self)
    }
    /// Host storage, or an error naming `op` if the tensor lives elsewhere.
    pub fn cpu(&self) -> Result<&CpuStorage> {
        match &self.storage {
            Storage::Cpu(s) => Ok(s),
            Storage::CpuPanels(_) | Storage::CpuFp8(_) => Err(packed_error()),
            #[cfg(feature = "cuda")]
            _ => Err(Error::Unsupported("tensor is not on the CPU".into())),
        }
    }
    pub fn cpu_mut(&mut self) -> Result<&mut CpuStorage> {
        match &mut self.storage {
            Storage::Cpu(s) => Ok(s),
            Storage::CpuPanels(_) | Storage::CpuFp8(_) => Err(packed_error()),
            #[cfg(feature = "cuda")]
            _ => Err(Error::Unsupported("tensor is not on the CPU".into())),
        }
    }
    /// A rank-2 `[out, k]` CPU weight in the CPU GEMM's panel layout, packed once here so that
    /// no matmul copies or transposes it again (decode reads each weight byte once per step).
    /// Anything else (CUDA, other ranks, already packed) is returned as it is. Only
    /// `ops::matmul` reads the packed layout; `to_f32_vec` and `to_device` unpack it.
    pub fn pack_for_cpu_matmul(self) -> Tensor {
        match self.storage {
            Storage::Cpu(s) if self.shape.len() == 2 => {
                let (out, k) = (self.shape[0], self.shape[1]);
                let p = crate::backend::cpu::panels::PanelWeight::pack(&s, out, k);
                Tensor {
                    shape: self.shape,
                    storage: Storage::CpuPanels(p),
                }
            }
            storage => Tensor {
                shape: self.shape,
                storage,
            },
        }
    }
    /// A rank-2 `[out, k]` weight as FP8 E4M3 with one scale per output row (see
    /// `quant::weight`), on the CPU. A panel-packed weight is unpacked first; an FP8 weight is
    /// returned as it is. FP8 weights are never panel-packed: the CPU matmul dequantizes
    /// them row block by row block into the row-major GEMM's f32 buffer instead.
    pub fn quantize_fp8(self) -> Result<Tensor> {
        if self.shape.len() != 2 {
            return Err(Error::Shape {
                op: "Tensor::quantize_fp8",
                arg: "self",
                expected: "a rank-2 [out, k] weight".into(),
                got: format!("{:?}", self.shape),
            });
        }
        let (out, k) = (self.shape[0], self.shape[1]);
        let w = match &self.storage {
            Storage::CpuFp8(_) => return Ok(self),
            Storage::Cpu(s) => {
                crate::quant::weight::Fp8Weight::quantize(out, k, |r, buf| s.read_f32(r * k, buf))?
            }
            Storage::CpuPanels(p) => {
                let s = p.unpack();
                crate::quant::weight::Fp8Weight::quantize(out, k, |r, buf| s.read_f32(r * k, buf))?
            }
            #[cfg(feature = "cuda")]
            Storage::Cuda(_) => {
                return Err(Error::Unsupported(
                    "Tensor::quantize_fp8: quantize on the host, before the upload".into(),
                ))
            }
        };
        Ok(Tensor {
            shape: self.shape,
            storage: Storage::CpuFp8(w),
        })
    }

    /// An FP8 weight placed on `device` (uploaded as codes + scales on a GPU).
    fn from_fp8(
        shape: Vec<usize>,
        w: crate::quant::weight::Fp8Weight,
        device: &Device,
    ) -> Result<Tensor> {
        let storage = match device {
            Device::Cpu => Storage::CpuFp8(w),
            #[cfg(feature = "cuda")]
            Device::Cuda(dev) => Storage::Cuda(crate::backend::cuda::DeviceStorage {
                dev: dev.clone(),
                data: crate::backend::cuda::CudaStorage::from_fp8(dev, &w)?,
            }),
        };
        Ok(Tensor { shape, storage })
    }

    /// The host copy of an FP8 weight (downloaded from a GPU); `None` for any other tensor.
    fn fp8_host(&self) -> Result<Option<crate::quant::weight::Fp8Weight>> {
        match &self.storage {
            Storage::CpuFp8(w) => Ok(Some(w.clone())),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => s.data.to_fp8_host(),
            _ => Ok(None),
        }
    }

    /// Bytes the storage holds (an FP8 weight's row scales included, packing padding not).
    pub fn storage_bytes(&self) -> usize {
        match &self.storage {
            Storage::CpuFp8(w) => w.byte_count(),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) if s.dtype() == DType::F8E4M3 => {
                self.elem_count() + 4 * self.shape.first().copied().unwrap_or(0)
            }
            _ => self.elem_count() * self.dtype().size_bytes(),
        }
    }

    /// f32 view of a CPU f32 tensor.
    pub fn as_f32(&self) -> Result<&[f32]> {
        match self.cpu()? {
            CpuStorage::F32(v) => Ok(v),
            other => Err(Error::DType {
                op: "as_f32",
                arg: "self",
                expected: "f32".into(),
                got: other.dtype().name().into(),
            }),
        }
    }
    pub fn as_f32_mut(&mut self) -> Result<&mut [f32]> {
        match self.cpu_mut()? {
            CpuStorage::F32(v) => Ok(v),
            other => Err(Error::DType {
                op: "as_f32_mut",
                arg: "self",
                expected: "f32".into(),
                got: other.dtype().name().into(),
            }),
        }
    }
    /// Copy to host as f32 (any dtype, any device).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        match &self.storage {
            Storage::Cpu(s) => Ok(s.to_f32_vec()),
            Storage::CpuPanels(p) => Ok(p.unpack().to_f32_vec()),
            Storage::CpuFp8(w) => Ok(w.dequantize()),
            #[cfg(feature = "cuda")]
            Storage::Cuda(s) => {
                let v = s.data.to_f32_vec()?;
                Ok(v.get(..self.elem_count()).map(<[f32]>::to_vec).unwrap_or(v))
            }
        }
    }
}

fn packed_error() -> Error {
    Error::Unsupported(
        "tensor is a weight packed for the CPU matmul or quantized to FP8 (only matmul reads it; \
         to_f32_vec unpacks or dequantizes)"
            .into(),
    )
}

fn fp8_dense_error(op: &str) -> Error {
    Error::Unsupported(format!(
        "{op}: f8e4m3 is a weight format with per-row scales (Tensor::quantize_fp8 makes it \
         from a [out, k] weight), not a dense dtype"
    ))
}
