//! The Higgs audio tokenizer (codec): waveform <-> 8 x T codes at 25 frames/s, 24 kHz.
//! spec: codec.md. May use: ops, tensor, weights, config, audio.

pub mod layers;
