/**
 * fp8_gemv.cu — W8A16 projections with FP8 E4M3 weights and one f32 scale per output row:
 * y[n, out] = x[n, k] · (decode(W[out, k]) · scale[out])ᵀ, x and y bf16 (or f32), f32 sums.
 * spec: model.md §5.3 (projections); the format is src/quant/fp8.rs. CPU twin:
 * src/backend/cpu/matmul.rs through `WeightRows for Fp8Weight` (dequantize, then the f32 GEMM).
 *
 *   fp8_gemv_<T>_n<NT>:  decode (n <= NT <= 16 rows). A warp owns one output row: it streams
 *                        the row's codes once, 16 bytes per lane per load, converts them with the
 *                        hardware E4M3 -> half2 cvt (exact: every E4M3 value is a half), and
 *                        multiplies them into all n activation rows. The scale is applied once,
 *                        to the warp's sum.
 *   fp8_dequant_<T>:     larger n. Rows [row0, row0 + rows) of W dequantized into a T scratch
 *                        (decode · scale, rounded to T once) for the cuBLAS GEMM.
 */
#include "common.cuh"
#include <cuda_fp16.h>
#include <cuda_fp8.h>

struct Fp8GemvParams {
    const void* x;         // [n, k] T
    const uint8_t* w;      // [out, k] E4M3 codes, row-major
    const float* scales;   // [out]
    void* y;               // [n, out] T
    int32_t n;
    int32_t k;
    int32_t out;
    int32_t vec;           // 1: k % 16 == 0 and x, w 16-byte aligned (uint4 loads)
};
HIGGS_PARAMS_SIZE(Fp8GemvParams, 48);

struct Fp8DequantParams {
    const uint8_t* w;      // [out, k] codes
    const float* scales;   // [out]
    void* dst;             // [rows, k] T
    int32_t row0;
    int32_t rows;
    int32_t k;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(Fp8DequantParams, 40);

/** Output rows per block of the GEMV (one warp each). */
constexpr int GEMV_WARPS = 4;

__device__ __forceinline__ float2 fp8x2_to_float2(uint32_t pair) {
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2((__nv_fp8x2_storage_t)pair, __NV_E4M3);
    return __half22float2(__half2(h));
}

__device__ __forceinline__ float fp8_to_float(uint8_t c) {
    const __half_raw h = __nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3);
    return __half2float(__half(h));
}

/** 16 codes (one uint4, little-endian: byte i is element i) to floats. */
__device__ __forceinline__ void decode16(const uint4 v, float* f) {
    const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 lo = fp8x2_to_float2(words[i] & 0xFFFFu);
        const float2 hi = fp8x2_to_float2(words[i] >> 16);
        f[4 * i + 0] = lo.x;
        f[4 * i + 1] = lo.y;
        f[4 * i + 2] = hi.x;
        f[4 * i + 3] = hi.y;
    }
}

/** 16 consecutive activations from a 16-byte aligned address. */
__device__ __forceinline__ void load16(const bf16* p, float* f) {
    const uint4* q = reinterpret_cast<const uint4*>(p);
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const uint4 v = q[h];
        const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            __nv_bfloat162 b;
            memcpy(&b, &words[i], sizeof(b));
            const float2 t = __bfloat1622float2(b);
            f[8 * h + 2 * i] = t.x;
            f[8 * h + 2 * i + 1] = t.y;
        }
    }
}

__device__ __forceinline__ void load16(const float* p, float* f) {
    const float4* q = reinterpret_cast<const float4*>(p);
#pragma unroll
    for (int h = 0; h < 4; ++h) {
        const float4 v = q[h];
        f[4 * h + 0] = v.x;
        f[4 * h + 1] = v.y;
        f[4 * h + 2] = v.z;
        f[4 * h + 3] = v.w;
    }
}

/**
 * \brief Skinny W8A16 GEMM: one warp per output row, GEMV_WARPS rows per block.
 * \tparam T  activation type (bf16 or float) of x and y.
 * \tparam NT rows of x the kernel is compiled for; rows >= p.n are skipped (p.n <= NT <= 16).
 * Grid: (ceil(out / GEMV_WARPS)). Block: 32 · GEMV_WARPS threads. No shared memory.
 * Vector path (p.vec): each lane loads 16 codes (uint4) and 16 activations per row per step,
 * a warp covering 512 consecutive k; otherwise one element per lane per step.
 * Accumulation in f32 per (row of x, lane), then a warp sum; y = T(sum · scale).
 */
template <typename T, int NT>
__device__ __forceinline__ void fp8_gemv_impl(const Fp8GemvParams& p) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= p.out) return;  // the whole warp leaves together
    const uint8_t* w = p.w + (int64_t)row * p.k;
    const T* x = static_cast<const T*>(p.x);
    float acc[NT];
#pragma unroll
    for (int i = 0; i < NT; ++i) acc[i] = 0.0f;

    if (p.vec) {
        for (int c = lane * 16; c < p.k; c += 32 * 16) {
            float wf[16];
            decode16(__ldg(reinterpret_cast<const uint4*>(w + c)), wf);
#pragma unroll
            for (int i = 0; i < NT; ++i) {
                if (i < p.n) {
                    float xf[16];
                    load16(x + (int64_t)i * p.k + c, xf);
#pragma unroll
                    for (int j = 0; j < 16; ++j) acc[i] = fmaf(xf[j], wf[j], acc[i]);
                }
            }
        }
    } else {
        for (int c = lane; c < p.k; c += 32) {
            const float wv = fp8_to_float(w[c]);
#pragma unroll
            for (int i = 0; i < NT; ++i) {
                if (i < p.n) acc[i] = fmaf(to_f32(x[(int64_t)i * p.k + c]), wv, acc[i]);
            }
        }
    }
    const float s = p.scales[row];
    T* y = static_cast<T*>(p.y);
#pragma unroll
    for (int i = 0; i < NT; ++i) {
        const float v = warp_sum(acc[i]);  // every lane takes part: i < NT is uniform
        if (lane == 0 && i < p.n) y[(int64_t)i * p.out + row] = from_f32<T>(v * s);
    }
}

/**
 * \brief Rows [row0, row0 + rows) of an FP8 weight dequantized to T: dst[r, j] =
 * T(decode(w[row0 + r, j]) · scale[row0 + r]).
 * Grid: any (grid-stride over rows · k elements). Block: 256 threads. No shared memory.
 */
template <typename T>
__device__ __forceinline__ void fp8_dequant_impl(const Fp8DequantParams& p) {
    const int64_t total = (int64_t)p.rows * p.k;
    T* dst = static_cast<T*>(p.dst);
    const uint8_t* w = p.w + (int64_t)p.row0 * p.k;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t r = i / p.k;
        dst[i] = from_f32<T>(fp8_to_float(w[i]) * p.scales[p.row0 + r]);
    }
}

#define FP8_GEMV(T, name, NT) \
    extern "C" __global__ void __launch_bounds__(32 * GEMV_WARPS) \
    fp8_gemv_##name##_n##NT(const __grid_constant__ Fp8GemvParams p) { fp8_gemv_impl<T, NT>(p); }

FP8_GEMV(bf16, bf16, 1)
FP8_GEMV(bf16, bf16, 2)
FP8_GEMV(bf16, bf16, 4)
FP8_GEMV(bf16, bf16, 8)
FP8_GEMV(bf16, bf16, 16)
FP8_GEMV(float, f32, 1)
FP8_GEMV(float, f32, 2)
FP8_GEMV(float, f32, 4)
FP8_GEMV(float, f32, 8)
FP8_GEMV(float, f32, 16)

extern "C" __global__ void fp8_dequant_bf16(const __grid_constant__ Fp8DequantParams p) { fp8_dequant_impl<bf16>(p); }
extern "C" __global__ void fp8_dequant_f32(const __grid_constant__ Fp8DequantParams p) { fp8_dequant_impl<float>(p); }
