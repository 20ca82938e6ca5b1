//! higgs-engine: inference for Higgs Audio v2 (Llama-3.2-3B backbone + DualFFN audio adapter,
//! 8 RVQ codebooks at 25 frames/s, DAC-style codec at 24 kHz).
//!
//! Layering (dependencies point down only): error <- quant <- tensor <- backend <- ops <-
//! {weights, kv, audio, tokenizer, delay} <- {model, codec, sampling, prompt} <- scheduler <-
//! engine <- tts <- {reference, cli, bench}.

pub mod atomic_file;
pub mod audio;
pub mod backend;
pub mod bench;
pub mod cli;
pub mod codec;
pub mod config;
pub mod delay;
pub mod engine;
pub mod error;
pub mod kv;
pub mod layer_overrides;
pub mod model;
pub mod ops;
pub mod prompt;
pub mod quant;
pub mod reference;
pub mod sampling;
pub mod scheduler;
pub mod server;
pub mod tensor;
pub mod tokenizer;
pub mod tts;
pub mod weights;

pub use error::{Error, Result};
