//! `CudaDevice`: the CUDA context, the engine's ONE stream, every kernel module loaded once
//! (functions indexed by the generated `Kernel` enum) and the cuBLAS handle. Owned state only:
//! a test can build two devices side by side. cudarc loads libcuda/libcublas dynamically, so
//! a CUDA build starts on a driverless machine and [`CudaDevice::new`] returns a clear
//! "no CUDA device" error instead of panicking.
//! May use: error, tensor, cudarc, the generated kernels.

use std::sync::Arc;

use cudarc::cublas::CudaBlas;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DeviceRepr, ValidAsZeroBits,
};

use super::kernels::{Kernel, Module};
use crate::error::{Error, Result};

/// Message prefix every "no device" error starts with; tests look for it to skip.
pub const NO_DEVICE: &str = "no CUDA device";

pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    /// One loaded function per `Kernel`, indexed by `Kernel as usize`.
    functions: Vec<CudaFunction>,
    blas: Option<CudaBlas>,
    num_sms: u32,
    /// Synchronise after every launch so an asynchronous fault is reported by the kernel that
    /// caused it: on in debug builds and tests, or with `HIGGS_CUDA_SYNC=1`.
    sync_each_launch: bool,
    /// Split-KV decode partials, grown on demand and reused by every decode attention call
    /// (one stream, so stream order serialises its users).
    decode_ws: std::sync::Mutex<super::attn_decode::DecodeWorkspace>,
    /// Read-only index lists of the current step, by role and content (see
    /// [`CudaDevice::upload_cached`]).
    step_uploads: std::sync::Mutex<StepUploads>,
    capturing: std::sync::atomic::AtomicBool,
    /// Per-launch GPU time, while [`CudaDevice::start_kernel_timing`] is on.
    timing_on: std::sync::atomic::AtomicBool,
    timing: std::sync::Mutex<Vec<(String, cudarc::driver::CudaEvent, cudarc::driver::CudaEvent)>>,
    /// cuBLAS's workspace, set once so GEMMs never allocate (required inside graph capture).
    _blas_workspace: Option<CudaSlice<u8>>,
}

type AnyBuf = Arc<dyn std::any::Any + Send + Sync>;

/// Every layer of a step reads the same positions, slots, block tables and row lists; each is
/// uploaded once per step instead of once per op. Keyed by role, dtype and bytes, so a hit is
/// always the same data; cleared by [`CudaDevice::begin_step`] (and when it grows past a
/// bound). While a step graph is captured, `staged` replaces it: one persistent buffer per
/// role, which the graph bakes in and the host rewrites before each replay.
#[derive(Default)]
struct StepUploads {
    map: std::collections::HashMap<(&'static str, std::any::TypeId, Vec<u8>), AnyBuf>,
    bytes: usize,
    staged: Option<std::collections::HashMap<&'static str, (Vec<u8>, AnyBuf)>>,
}

/// cuBLAS workspace (what PyTorch gives Hopper: 32 MiB).
const BLAS_WORKSPACE_BYTES: usize = 32 << 20;

/// A bound on what one step may keep cached (a decode step at batch 128 keeps ~100 KB).
const STEP_UPLOAD_LIMIT_BYTES: usize = 64 << 20;

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ctx.ordinal())
            .field("num_sms", &self.num_sms)
            .field("cublas", &self.blas.is_some())
            .finish()
    }
}

fn driver_err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Kernel {
        kernel: what.to_string(),
        reason: e.to_string(),
    }
}

/// Stream-ordered allocations come from the device's default memory pool, whose release
/// threshold is 0: every synchronisation hands freed memory back to the OS and the next step's
/// allocations map it again. Keep it (like PyTorch's caching allocator). Best effort: a driver
/// without pools falls back to plain cuMemAlloc in cudarc and this changes nothing.
fn keep_pool_memory(ctx: &CudaContext) {
    use cudarc::driver::sys;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: plain driver queries on a valid device handle; `threshold` outlives the call.
    unsafe {
        if sys::cuDeviceGetDefaultMemPool(&mut pool, ctx.cu_device()) == sys::CUresult::CUDA_SUCCESS
        {
            let mut threshold: u64 = u64::MAX;
            let _ = sys::cuMemPoolSetAttribute(
                pool,
                sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                (&mut threshold as *mut u64).cast(),
            );
        }
    }
}

impl CudaDevice {
    /// Opens device `ordinal`: context, one stream, all kernel modules, cuBLAS if present.
    pub fn new(ordinal: usize) -> Result<Self> {
        // SAFETY: only dlopen()s candidate libcuda names; no CUDA call is made.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(Error::Unsupported(format!(
                "{NO_DEVICE}: the CUDA driver library (libcuda.so) is not installed"
            )));
        }
        let count = CudaContext::device_count().map_err(|e| {
            Error::Unsupported(format!("{NO_DEVICE}: cuInit/cuDeviceGetCount failed: {e}"))
        })?;
        if count <= 0 {
            return Err(Error::Unsupported(format!(
                "{NO_DEVICE}: the driver reports 0 devices"
            )));
        }
        if ordinal >= count as usize {
            return Err(Error::Unsupported(format!(
                "{NO_DEVICE}: ordinal {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_err("CudaContext::new", e))?;
        // One stream does everything (cuBLAS included), so cudarc's per-buffer event tracking
        // (two cuEventCreate per allocation, an event record per kernel argument, hundreds of
        // each per decode step) guards nothing here. Must precede new_stream.
        // SAFETY: no buffer is ever used from a second stream (see the struct doc).
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(|e| driver_err("new_stream", e))?;
        keep_pool_memory(&ctx);
        let num_sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| driver_err("device attribute", e))? as u32;

        let mut modules = Vec::with_capacity(Module::COUNT);
        for m in Module::ALL {
            let image = cudarc::nvrtc::Ptx::from_binary(m.image().to_vec());
            let module = ctx.load_module(image).map_err(|e| Error::Kernel {
                kernel: format!("module {}", m.name()),
                reason: format!(
                    "loading fatbin failed (no sm_80/sm_90a cubin or compute_80 PTX fits?): {e}"
                ),
            })?;
            modules.push(module);
        }
        let mut functions = Vec::with_capacity(Kernel::ALL.len());
        for (i, &k) in Kernel::ALL.iter().enumerate() {
            debug_assert_eq!(k as usize, i);
            let f = modules[k.module().index()]
                .load_function(k.name())
                .map_err(|e| driver_err(k.name(), e))?;
            functions.push(f);
        }

        // SAFETY: only dlopen()s candidate libcublas names.
        let blas = if unsafe { cudarc::cublas::sys::is_culib_present() } {
            Some(CudaBlas::new(stream.clone()).map_err(|e| driver_err("cublasCreate", e))?)
        } else {
            None
        };
        let blas_workspace = match &blas {
            Some(b) => {
                let ws = stream
                    .alloc_zeros::<u8>(BLAS_WORKSPACE_BYTES)
                    .map_err(|e| driver_err("cuBLAS workspace", e))?;
                let p = {
                    let (p, _g) = cudarc::driver::DevicePtr::device_ptr(&ws, &stream);
                    p
                };
                // SAFETY: the handle is live; the workspace is owned by the same device struct
                // as the handle and declared after it, so it is freed after the handle, and
                // it is only used on this stream.
                unsafe {
                    cudarc::cublas::sys::cublasSetWorkspace_v2(
                        *b.handle(),
                        p as *mut std::ffi::c_void,
                        BLAS_WORKSPACE_BYTES,
                    )
                }
                .result()
                .map_err(|e| driver_err("cublasSetWorkspace", format!("{e:?}")))?;
                Some(ws)
            }
            None => None,
        };
        let sync_each_launch =
            cfg!(debug_assertions) || std::env::var("HIGGS_CUDA_SYNC").is_ok_and(|v| v == "1");
        Ok(CudaDevice {
            ctx,
            stream,
            functions,
            blas,
            num_sms,
            sync_each_launch,
            decode_ws: Default::default(),
            step_uploads: Default::default(),
            capturing: Default::default(),
            timing_on: Default::default(),
            timing: Default::default(),
            _blas_workspace: blas_workspace,
        })
    }

    /// True when `err` came from [`CudaDevice::new`] finding no usable device.
    pub fn is_no_device(err: &Error) -> bool {
        matches!(err, Error::Unsupported(m) if m.starts_with(NO_DEVICE))
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }
    pub fn num_sms(&self) -> u32 {
        self.num_sms
    }
    pub fn name(&self) -> String {
        self.ctx
            .name()
            .unwrap_or_else(|_| "unknown CUDA device".into())
    }
    pub(crate) fn function(&self, k: Kernel) -> &CudaFunction {
        &self.functions[k as usize]
    }
    pub(crate) fn blas(&self) -> Result<&CudaBlas> {
        self.blas.as_ref().ok_or_else(|| Error::Kernel {
            kernel: "cublasGemmEx".into(),
            reason: "libcublas.so not found; add its folder (e.g. python's nvidia/cu13/lib) to LD_LIBRARY_PATH".into(),
        })
    }
    /// The device's split-KV decode workspace, locked for one attention call.
    pub fn decode_workspace(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, super::attn_decode::DecodeWorkspace>> {
        self.decode_ws
            .lock()
            .map_err(|_| Error::Other("decode workspace lock poisoned".into()))
    }
    pub(crate) fn sync_each_launch(&self) -> bool {
        self.sync_each_launch
    }

    /// Blocks until all work queued on the engine stream is done.
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| driver_err("stream synchronize", e))
    }

    pub fn alloc_zeros<T: DeviceRepr + ValidAsZeroBits>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc_zeros::<T>(n.max(1))
            .map_err(|e| driver_err("alloc_zeros", e))
    }

    /// A buffer whose contents are undefined, for outputs a kernel overwrites entirely (no
    /// memset launch).
    ///
    /// # Safety
    /// Nothing may read an element before a kernel has written it.
    pub unsafe fn alloc_uninit<T: DeviceRepr>(&self, n: usize) -> Result<CudaSlice<T>> {
        self.stream
            .alloc::<T>(n.max(1))
            .map_err(|e| driver_err("alloc", e))
    }

    /// Copies a host slice into a new device buffer (index lists, masks, block tables).
    pub fn upload<T: DeviceRepr>(&self, host: &[T]) -> Result<CudaSlice<T>> {
        if host.is_empty() {
            // cuMemAlloc rejects 0 bytes; callers skip ops over empty index lists instead.
            return Err(Error::Unsupported("upload of an empty slice".into()));
        }
        self.stream
            .clone_htod(host)
            .map_err(|e| driver_err("memcpy htod", e))
    }

    /// A device copy of a read-only host list (index lists, positions, masks) shared by every
    /// op of the current step that asks for the same contents. Callers must never write to it.
    /// `role` names what the list is ("positions", "slots", ...): a captured step graph binds
    /// one buffer per role.
    pub fn upload_cached<T>(&self, role: &'static str, host: &[T]) -> Result<Arc<CudaSlice<T>>>
    where
        T: DeviceRepr + bytemuck::Pod + Send + Sync + 'static,
    {
        let bytes = bytemuck::cast_slice::<T, u8>(host);
        let mut c = self
            .step_uploads
            .lock()
            .map_err(|_| Error::Other("step upload cache lock poisoned".into()))?;
        if let Some(staged) = &c.staged {
            // Capturing: only staged roles with exactly the staged contents may be read.
            return match staged.get(role) {
                Some((b, buf)) if b.as_slice() == bytes => buf
                    .clone()
                    .downcast::<CudaSlice<T>>()
                    .map_err(|_| Error::Other(format!("step graph: role {role} has another type"))),
                Some(_) => Err(Error::Other(format!(
                    "step graph: role {role} asked with other contents than staged"
                ))),
                None => Err(Error::Other(format!(
                    "step graph: role {role} was not staged"
                ))),
            };
        }
        let key = (role, std::any::TypeId::of::<T>(), bytes.to_vec());
        if let Some(hit) = c.map.get(&key) {
            if let Ok(s) = hit.clone().downcast::<CudaSlice<T>>() {
                return Ok(s);
            }
        }
        if c.bytes + key.2.len() > STEP_UPLOAD_LIMIT_BYTES {
            c.map.clear();
            c.bytes = 0;
        }
        let d = Arc::new(self.upload(host)?);
        c.bytes += key.2.len();
        c.map.insert(key, d.clone());
        Ok(d)
    }

    /// Starts a model step: the previous step's cached uploads are released (stream-ordered
    /// frees, so kernels still queued keep them until they ran).
    pub fn begin_step(&self) {
        if let Ok(mut c) = self.step_uploads.lock() {
            c.map.clear();
            c.bytes = 0;
        }
    }

    /// Captures everything `f` queues on the stream into a graph instead of running it.
    /// `staged` (role -> (contents, buffer)) answers every `upload_cached` inside; nothing else
    /// may be uploaded, synchronised or read back. Any error ends the capture and is returned.
    pub fn capture_graph<R>(
        &self,
        staged: std::collections::HashMap<&'static str, (Vec<u8>, AnyBuf)>,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<(cudarc::driver::CudaGraph, R)> {
        use cudarc::driver::sys;
        {
            let mut c = self
                .step_uploads
                .lock()
                .map_err(|_| Error::Other("step upload cache lock poisoned".into()))?;
            c.staged = Some(staged);
        }
        self.capturing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let begun = self
            .stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .map_err(|e| driver_err("begin graph capture", e));
        let body = begun.and_then(|_| f());
        // Always end the capture, even after an error, so the stream works again.
        let ended = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .map_err(|e| driver_err("end graph capture", e));
        self.capturing
            .store(false, std::sync::atomic::Ordering::Relaxed);
        if let Ok(mut c) = self.step_uploads.lock() {
            c.staged = None;
        }
        let r = body?;
        match ended? {
            Some(g) => Ok((g, r)),
            None => Err(Error::Other("graph capture recorded nothing".into())),
        }
    }

    /// Starts timing every kernel launch and GEMM with a pair of CUDA events (costs a little
    /// per launch; for profiling only, never inside a graph capture).
    pub fn start_kernel_timing(&self) {
        if let Ok(mut t) = self.timing.lock() {
            t.clear();
        }
        self.timing_on
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stops timing; returns (name, total ms, launches) per kernel name, largest total first.
    pub fn take_kernel_timing(&self) -> Result<Vec<(String, f64, usize)>> {
        self.timing_on
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.synchronize()?;
        let pairs = std::mem::take(
            &mut *self
                .timing
                .lock()
                .map_err(|_| Error::Other("timing lock poisoned".into()))?,
        );
        let mut by: std::collections::HashMap<String, (f64, usize)> = Default::default();
        for (name, a, b) in pairs {
            let ms = a
                .elapsed_ms(&b)
                .map_err(|e| driver_err("event elapsed", e))? as f64;
            let e = by.entry(name).or_default();
            e.0 += ms;
            e.1 += 1;
        }
        let mut v: Vec<_> = by.into_iter().map(|(k, (ms, n))| (k, ms, n)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(v)
    }

    /// Wraps one launch in timing events when timing is on.
    pub(crate) fn timed<R>(
        &self,
        name: impl FnOnce() -> String,
        f: impl FnOnce() -> Result<R>,
    ) -> Result<R> {
        if !self.timing_on.load(std::sync::atomic::Ordering::Relaxed) || self.is_capturing() {
            return f();
        }
        let ev = || {
            self.ctx
                .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| driver_err("event", e))
        };
        let (a, b) = (ev()?, ev()?);
        a.record(&self.stream)
            .map_err(|e| driver_err("event record", e))?;
        let r = f()?;
        b.record(&self.stream)
            .map_err(|e| driver_err("event record", e))?;
        if let Ok(mut t) = self.timing.lock() {
            t.push((name(), a, b));
        }
        Ok(r)
    }

    /// True while a graph is being captured (no host syncs then).
    pub fn is_capturing(&self) -> bool {
        self.capturing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Copies a device buffer back to the host (synchronises the stream).
    pub fn download<T: DeviceRepr>(&self, dev: &CudaSlice<T>) -> Result<Vec<T>> {
        let v = self
            .stream
            .clone_dtoh(dev)
            .map_err(|e| driver_err("memcpy dtoh", e))?;
        self.synchronize()?;
        Ok(v)
    }

    /// Overwrites a device buffer from the host (same length).
    pub fn write<T: DeviceRepr>(&self, dst: &mut CudaSlice<T>, host: &[T]) -> Result<()> {
        if dst.len() != host.len() {
            return Err(Error::Shape {
                op: "CudaDevice::write",
                arg: "host",
                expected: format!("{} elements", dst.len()),
                got: format!("{}", host.len()),
            });
        }
        self.stream
            .memcpy_htod(host, dst)
            .map_err(|e| driver_err("memcpy htod", e))
    }
}
