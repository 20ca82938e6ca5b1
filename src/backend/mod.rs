//! Compute backends: `cpu` (rayon, f32 accumulation; the readable reference for every kernel)
//! and, with `--features cuda`, `cuda` (custom kernels from `kernels/`, launched via cudarc).

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
