/**
 * common.cuh — shared device helpers for every kernels/*.cu family: bf16 <-> f32 conversion,
 * warp/block reductions, ceil_div, and the params-struct size assert. Entry points never live
 * here; each .cu includes this and exports only `extern "C"` kernels taking one params struct
 * (mirrored in src/backend/cuda/<family>.rs, size asserted on both sides).
 * Numerics follow spec/model.md §11: f32 accumulation, bf16 rounding where the reference rounds.
 */
#pragma once

#include <cuda_bf16.h>
#include <stdint.h>

typedef __nv_bfloat16 bf16;

/** Compile-time check that a params struct matches its Rust mirror byte for byte. */
#define HIGGS_PARAMS_SIZE(T, bytes) \
    static_assert(sizeof(T) == (bytes), #T " size differs from its Rust mirror")

__host__ __device__ __forceinline__ int ceil_div(int a, int b) { return (a + b - 1) / b; }

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(bf16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
/** Round-to-nearest-even, like torch's `.to(torch.bfloat16)`. */
template <> __device__ __forceinline__ bf16 from_f32<bf16>(float x) { return __float2bfloat16_rn(x); }

/** Rounds through T: identity for f32, one bf16 rounding for bf16 (models a torch bf16 op). */
template <typename T> __device__ __forceinline__ float round_to(float x) { return to_f32(from_f32<T>(x)); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/**
 * Sum over a 1-D block; every thread gets the result. Assumes blockDim.x % 32 == 0 and
 * blockDim.x <= 1024. `scratch` must hold 32 floats and is reusable after return.
 */
__device__ __forceinline__ float block_sum(float v, float* scratch) {
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int n_warps = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();  // scratch may still be read by a previous call
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : 0.0f;
    return warp_sum(v);
}
