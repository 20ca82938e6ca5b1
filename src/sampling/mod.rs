//! Sampling: logits processors, seeded RNG.
