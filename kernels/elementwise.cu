/**
 * elementwise.cu — flat elementwise ops: add (residual updates outside fused kernels) and the
 * f32 <-> bf16 casts (bf16 rounding is round-to-nearest-even, spec: model.md §11).
 * CPU twin: src/backend/cpu/elementwise.rs.
 */
#include "common.cuh"

struct BinaryParams {
    const void* a;
    const void* b;
    void* out;  // may alias a or b
    int64_t n;
};
HIGGS_PARAMS_SIZE(BinaryParams, 32);

struct CastParams {
    const void* src;
    void* dst;
    int64_t n;
};
HIGGS_PARAMS_SIZE(CastParams, 24);

/**
 * \brief out = T(a + b). Grid: (ceil(n/256)) capped, grid-stride loop. Block: 256. No smem.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void add_impl(const BinaryParams& p) {
    const T* a = static_cast<const T*>(p.a);
    const T* b = static_cast<const T*>(p.b);
    T* out = static_cast<T*>(p.out);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = from_f32<T>(to_f32(a[i]) + to_f32(b[i]));
}

/** \brief dst = To(src). Same launch shape as add. */
template <typename From, typename To>
__device__ __forceinline__ void cast_impl(const CastParams& p) {
    const From* src = static_cast<const From*>(p.src);
    To* dst = static_cast<To*>(p.dst);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < p.n; i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = from_f32<To>(to_f32(src[i]));
}

extern "C" __global__ void add_bf16(const __grid_constant__ BinaryParams p) { add_impl<bf16>(p); }
extern "C" __global__ void add_f32(const __grid_constant__ BinaryParams p) { add_impl<float>(p); }
extern "C" __global__ void cast_f32_bf16(const __grid_constant__ CastParams p) { cast_impl<float, bf16>(p); }
extern "C" __global__ void cast_bf16_f32(const __grid_constant__ CastParams p) { cast_impl<bf16, float>(p); }
