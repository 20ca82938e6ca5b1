/**
 * gemv.cu — skinny bf16 products for decode: y[n, out] = x[n, k] · W[out, k]ᵀ with n ≤ 8 rows,
 * the shape of every projection in a small decode batch. cuBLAS reaches 1–2.5 TB/s of weights
 * there (its tiles are built for wide n); this streams W once at close to full bandwidth: one
 * warp per output row, 16-byte loads (8 bf16 per lane per chunk), four chunks in flight per
 * lane, the n input rows read through L1 (they are tiny and shared by every warp), f32
 * accumulation, one warp reduction, one bf16 rounding of the result (as cuBLAS with f32 compute).
 * Needs k % 8 == 0 and 16-byte aligned rows (checked on the host; cuBLAS takes the rest).
 * CPU twin: src/backend/cpu/matmul.rs. Rust side: src/backend/cuda/gemv.rs.
 */
#include "common.cuh"

#define GEMV_MAX_N 8
#define GEMV_WARPS 8
#define GEMV_UNROLL 4

struct GemvParams {
    const bf16* x;  // [n, k]
    const bf16* w;  // [out, k]
    bf16* y;        // [n, out]
    int32_t n;
    int32_t k;
    int32_t out;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(GemvParams, 40);

__device__ __forceinline__ float dot8(const uint4& a, const uint4& b) {
    const __nv_bfloat162* ha = reinterpret_cast<const __nv_bfloat162*>(&a);
    const __nv_bfloat162* hb = reinterpret_cast<const __nv_bfloat162*>(&b);
    float acc = 0.0f;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 fa = __bfloat1622float2(ha[i]);
        const float2 fb = __bfloat1622float2(hb[i]);
        acc = fmaf(fa.x, fb.x, acc);
        acc = fmaf(fa.y, fb.y, acc);
    }
    return acc;
}

/**
 * \brief Grid: ceil(out / GEMV_WARPS). Block: 32 × GEMV_WARPS; warp w of block b owns row
 * b·GEMV_WARPS + w. No smem.
 */
extern "C" __global__ void __launch_bounds__(32 * GEMV_WARPS) gemv_bf16(const __grid_constant__ GemvParams p) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * GEMV_WARPS + (threadIdx.x >> 5);
    if (row >= p.out) return;  // whole warps leave together
    const uint4* w = reinterpret_cast<const uint4*>(p.w + (int64_t)row * p.k);
    const uint4* x = reinterpret_cast<const uint4*>(p.x);
    const int chunks = p.k / 8;  // 16-byte chunks per row
    float acc[GEMV_MAX_N];
#pragma unroll
    for (int i = 0; i < GEMV_MAX_N; ++i) acc[i] = 0.0f;
    int c = lane;
    for (; c + 32 * (GEMV_UNROLL - 1) < chunks; c += 32 * GEMV_UNROLL) {
        uint4 wv[GEMV_UNROLL];
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; ++u) wv[u] = __ldg(w + c + 32 * u);
#pragma unroll
        for (int u = 0; u < GEMV_UNROLL; ++u) {
#pragma unroll
            for (int i = 0; i < GEMV_MAX_N; ++i) {
                if (i < p.n) acc[i] += dot8(wv[u], __ldg(x + (int64_t)i * chunks + c + 32 * u));
            }
        }
    }
    for (; c < chunks; c += 32) {
        const uint4 wv = __ldg(w + c);
#pragma unroll
        for (int i = 0; i < GEMV_MAX_N; ++i) {
            if (i < p.n) acc[i] += dot8(wv, __ldg(x + (int64_t)i * chunks + c));
        }
    }
#pragma unroll
    for (int i = 0; i < GEMV_MAX_N; ++i) {
        if (i < p.n) {
            const float s = warp_sum(acc[i]);
            if (lane == 0) p.y[(int64_t)i * p.out + row] = from_f32<bf16>(s);
        }
    }
}
