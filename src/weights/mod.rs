//! Checkpoint loading: safetensors (single file or sharded with an index, memory-mapped),
//! name -> tensor maps for small models, a load-time finiteness check, and random weights of
//! the real shapes for benchmarks.
//! May use: error, tensor, config.

pub mod download;
pub mod finite;
pub mod hub;
pub mod map;
pub mod random;
pub mod safetensors;

pub use map::{HostTensor, WeightMap};
