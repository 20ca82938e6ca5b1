//! CPU backend: rayon over rows, f32 accumulation, one file per kernel family.
