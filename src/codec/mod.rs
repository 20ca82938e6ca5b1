//! The Higgs audio tokenizer (codec): waveform <-> 8 x T codes at 25 frames/s, 24 kHz.
//! spec: codec.md. May use: ops, tensor, weights, config, audio.

pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod decoder;
pub mod encode;
pub mod encoder;
pub mod hubert;
pub mod layers;
pub mod model;
pub mod npy;
pub mod pth;
pub mod rvq;
pub mod semantic;
pub mod stream;
pub mod weights;

pub use config::CodecConfig;
pub use model::AudioTokenizer;
