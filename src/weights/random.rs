//! Random weights of a given shape, for benchmarks.
