/**
 * rmsnorm.cu — RMSNorm (HF LlamaRMSNorm), plain and fused with the residual add.
 * spec: model.md §5.2, §11.2. CPU twin: src/backend/cpu/rmsnorm.rs.
 *
 *   plain:  y = w ⊙ T(x · rsqrt(mean(x²) + eps))
 *   fused:  h = T(x + r) is written to h_out, then y = w ⊙ T(h · rsqrt(mean(h²) + eps))
 *
 * T is the activation type: for bf16 the normalised value is rounded to bf16 *before* the weight
 * product (the reference casts back first), and the product is rounded again on store. The f32
 * variants round nowhere. Variance in f32.
 */
#include "common.cuh"

struct RmsnormParams {
    const void* x;         // [rows, cols]
    const void* residual;  // [rows, cols] or null (plain)
    const void* weight;    // [cols]
    void* out;             // [rows, cols]
    void* h_out;           // [rows, cols] or null (plain); may alias x or residual
    int32_t rows;
    int32_t cols;
    float eps;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RmsnormParams, 56);

/**
 * \brief One block per row; threads stride the row twice (sum of squares, then scale).
 * \tparam T bf16 or float (x, residual, weight, out all T).
 * \tparam FUSED adds the residual and writes h first.
 * Grid: (rows). Block: 256 threads (any multiple of 32). Smem: 32 floats (block reduction).
 * Aliasing: h_out may equal x or residual because every element is read then written by the
 * same thread in the first pass and re-read by that thread in the second.
 */
template <typename T, bool FUSED>
__device__ __forceinline__ void rmsnorm_impl(const RmsnormParams& p) {
    __shared__ float scratch[32];
    const int64_t row = blockIdx.x;
    const T* x = static_cast<const T*>(p.x) + row * p.cols;
    const T* w = static_cast<const T*>(p.weight);
    T* out = static_cast<T*>(p.out) + row * p.cols;
    T* h = FUSED ? static_cast<T*>(p.h_out) + row * p.cols : nullptr;
    const T* r = FUSED ? static_cast<const T*>(p.residual) + row * p.cols : nullptr;

    float ss = 0.0f;
    for (int c = threadIdx.x; c < p.cols; c += blockDim.x) {
        float v;
        if (FUSED) {
            const T hv = from_f32<T>(to_f32(x[c]) + to_f32(r[c]));
            h[c] = hv;
            v = to_f32(hv);
        } else {
            v = to_f32(x[c]);
        }
        ss += v * v;
    }
    ss = block_sum(ss, scratch);
    const float inv_rms = rsqrtf(ss / (float)p.cols + p.eps);
    const T* src = FUSED ? h : x;
    for (int c = threadIdx.x; c < p.cols; c += blockDim.x) {
        const float n = round_to<T>(to_f32(src[c]) * inv_rms);
        out[c] = from_f32<T>(to_f32(w[c]) * n);
    }
}

extern "C" __global__ void rmsnorm_bf16(const __grid_constant__ RmsnormParams p) { rmsnorm_impl<bf16, false>(p); }
extern "C" __global__ void rmsnorm_f32(const __grid_constant__ RmsnormParams p) { rmsnorm_impl<float, false>(p); }
extern "C" __global__ void rmsnorm_residual_bf16(const __grid_constant__ RmsnormParams p) { rmsnorm_impl<bf16, true>(p); }
extern "C" __global__ void rmsnorm_residual_f32(const __grid_constant__ RmsnormParams p) { rmsnorm_impl<float, true>(p); }
