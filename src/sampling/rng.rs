//! Per-request sampling RNG: ChaCha8, seeded from the request's `seed` or from OS entropy.
//! ChaCha's output stream is specified by the algorithm, not by the `rand` version or platform,
//! so a seeded request replays its draws bit for bit. The reference (torch `multinomial` with a
//! `torch.Generator`) cannot be reproduced anyway (spec: model.md §11 item 8). May use: nothing.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Owned by one request; never shared, so draws do not depend on batch composition.
#[derive(Clone, Debug)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    pub fn from_seed(seed: u64) -> Self {
        Self(ChaCha8Rng::seed_from_u64(seed))
    }

    /// For requests without a seed.
    pub fn from_entropy() -> Self {
        Self(ChaCha8Rng::from_entropy())
    }

    /// Uniform in [0, 1): the top 24 bits of one `u32` scaled by 2^-24, so every value is an
    /// exact f32 and 1.0 is unreachable. Written out rather than `rng.gen::<f32>()` so the
    /// mapping cannot change under a `rand` upgrade.
    pub fn next_f32(&mut self) -> f32 {
        (self.0.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }
}
