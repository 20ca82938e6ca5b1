/**
 * snake.cuh — the Snake activation as a device helper, shared by snake.cu (standalone, in place)
 * and conv1d.cu (fused into the input-tile load of the following conv).
 * spec: codec.md §3.2, §11.4. CPU twin: src/codec/layers.rs `snake_inplace`.
 */
#pragma once

/**
 * y = x + 1/(alpha + 1e-9) * sin(alpha * x)^2, evaluated as the reference (and the CPU twin) does:
 * the reciprocal in f32 (IEEE division; the crate never builds with --use_fast_math), accurate
 * `sinf` (not `__sinf`, which is wrong for |alpha x| >> pi), `s * s` rather than
 * (1 - cos 2ax)/2, and explicit round-to-nearest ops so nvcc does not contract into an FMA.
 */
__device__ __forceinline__ float snake_f(float x, float alpha) {
    const float inv = 1.0f / (alpha + 1e-9f);
    const float s = sinf(__fmul_rn(alpha, x));
    return __fadd_rn(x, __fmul_rn(inv, __fmul_rn(s, s)));
}
