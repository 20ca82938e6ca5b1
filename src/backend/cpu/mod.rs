//! CPU backend: the readable reference of every kernel family, and the engine's backend when
//! no GPU is present. rayon over rows, f32 activations and accumulation; weights may be stored
//! as bf16/f16/f32 and are widened on the fly. One file per family, same stems as `kernels/`.
//! May use: tensor.

pub mod act;
pub mod attention;
pub mod dual_ffn;
pub mod elementwise;
pub mod embed;
pub mod kv_cache;
pub mod matmul;
pub mod panels;
pub mod rmsnorm;
pub mod rope;

/// A raw pointer that may be shared across rayon tasks that write disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T = f32>(pub *mut T);
// SAFETY: only used by kernels whose tasks write provably disjoint index ranges (each use site
// says which), so no two threads touch the same element.
unsafe impl<T> Send for SyncPtr<T> {}
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// Going through a method makes closures capture the whole (Send) wrapper, not the raw
    /// pointer field.
    #[inline]
    pub(crate) fn ptr(&self) -> *mut T {
        self.0
    }
}
