//! Sampling: logits processors (suppress, temperature, top-k, top-p), argmax / multinomial
//! draws, the RAS re-draw, and the seeded per-request RNG. spec: model.md §8.4-8.6, §8.13.
//! May use: `error`.

pub mod processors;
pub mod rng;

pub use processors::{
    apply_temperature, apply_top_k, apply_top_p, argmax, ras_count, ras_redraw, sample,
    sample_multinomial, SamplingParams,
};
pub use rng::SeededRng;
