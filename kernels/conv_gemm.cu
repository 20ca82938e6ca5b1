/**
 * conv_gemm.cu — the small kernels around the cuBLAS SGEMMs that lower the codec convolutions
 * to matrix products (src/backend/cuda/conv_gemm.rs), single-batch [channels, time] f32 buffers,
 * PyTorch semantics with zero padding (spec: codec.md §3.4, §7, §11.6–7):
 *
 *   im2col:  col[ci·K + k, t] = snake?(x[ci, t·s + k·d − p])  (0 outside [0, t_in))
 *            then conv1d is Y[c_out, T] = W[c_out, c_in·K] · COL[c_in·K, T] (one SGEMM).
 *   col2im:  y[o, n] = b[o] + Σ_{(m, k): m·s + k − p = n} cols[o·K + k, m]
 *            after the SGEMM COLS[c_out·K, t_in] = Wᵀ[c_out·K, c_in] · X[c_in, t_in] of a
 *            transposed conv (W [c_in, c_out, K]); a gather, so deterministic (no atomics).
 *   bias:    folded into the conv1d SGEMM as one more reduction row: im2col appends a row of
 *            ones and pack_weight_bias a bias column to W; or y[o, t] += b[o] where x is used
 *            as the column matrix directly (no im2col).
 *
 * Out-of-range input samples are zero and are NOT passed through Snake (the reference pads after
 * the activation), exactly as in conv1d.cu. CPU twins: src/codec/layers.rs `conv1d`,
 * `conv_transpose1d`, `snake_inplace`.
 */
#include "common.cuh"
#include "snake.cuh"

/** Threads per block of every entry here; im2col and col2im give each thread several columns. */
#define COL_THREADS 256

struct Im2colParams {
    const float* x;      // [c_in, t_in]
    const float* alpha;  // [c_in] Snake alpha (the _snake entry only)
    float* col;          // [c_in · kernel + extra_rows, t_out]
    int32_t c_in;
    int32_t t_in;
    int32_t t_out;
    int32_t kernel;
    int32_t stride;
    int32_t padding;
    int32_t dilation;
    int32_t tile;        // output columns per block (a multiple of COL_THREADS)
    int32_t span;        // input samples one block stages: (tile − 1)·stride + (kernel − 1)·dilation + 1
    int32_t extra_rows;  // rows after the c_in·kernel taps: the first all ones, the rest zero
};
HIGGS_PARAMS_SIZE(Im2colParams, 64);

/**
 * \brief im2col of one input channel over `tile` output columns.
 * \tparam SNAKE apply Snake(alpha[ci]) to every in-range input sample as it is staged (once per
 * input sample, not once per tap).
 * Grid: (ceil(t_out / tile), c_in + (extra_rows > 0)). Block: COL_THREADS threads; thread i
 * owns columns t0 + i + COL_THREADS·j (consecutive threads store consecutive floats of each
 * row). The blocks of the last grid row (when extra_rows > 0) write the bias rows instead: row
 * c_in·kernel all ones (it multiplies the bias column of the packed weight), the rest zero.
 * Smem (dynamic): xs[span], the (Snake'd, zero-padded) input window of the block.
 * Assumptions: blockDim.x == COL_THREADS; the host sized span as above (and within 48 KiB).
 */
template <bool SNAKE>
__device__ __forceinline__ void im2col_impl(const Im2colParams& p) {
    extern __shared__ float xs[];
    const int ci = blockIdx.y;
    const int t0 = blockIdx.x * p.tile;
    if (ci >= p.c_in) {  // the bias rows (block-uniform branch, before any barrier)
        float* out = p.col + (int64_t)p.c_in * p.kernel * p.t_out;
        for (int r = 0; r < p.extra_rows; ++r)
            for (int c = threadIdx.x; c < p.tile; c += COL_THREADS) {
                const int t = t0 + c;
                if (t < p.t_out) out[(int64_t)r * p.t_out + t] = r == 0 ? 1.0f : 0.0f;
            }
        return;
    }
    const int64_t in0 = (int64_t)t0 * p.stride - p.padding;  // input time of xs[0]
    const float* xrow = p.x + (int64_t)ci * p.t_in;
    const float a = SNAKE ? p.alpha[ci] : 0.0f;
    // Four loads in flight per thread before any is used.
    for (int base = 0; base < p.span; base += 4 * COL_THREADS) {
        float v[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int i = base + j * COL_THREADS + threadIdx.x;
            const int64_t ti = in0 + i;
            v[j] = (i < p.span && ti >= 0 && ti < p.t_in) ? xrow[ti] : 0.0f;
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int i = base + j * COL_THREADS + threadIdx.x;
            const int64_t ti = in0 + i;
            if (i < p.span) xs[i] = (SNAKE && ti >= 0 && ti < p.t_in) ? snake_f(v[j], a) : v[j];
        }
    }
    __syncthreads();
    float* out = p.col + (int64_t)ci * p.kernel * p.t_out;
    for (int k = 0; k < p.kernel; ++k) {
        float* orow = out + (int64_t)k * p.t_out + t0;
        const float* src = xs + k * p.dilation;
        for (int c = threadIdx.x; c < p.tile; c += COL_THREADS) {
            if (t0 + c < p.t_out) orow[c] = src[c * p.stride];
        }
    }
}

struct PackWeightParams {
    const float* w;     // [c_out, ck]
    const float* bias;  // [c_out]
    float* wp;          // [c_out, ckp]
    int32_t ck;
    int32_t ckp;
};
HIGGS_PARAMS_SIZE(PackWeightParams, 32);

/**
 * \brief wp[o, j] = w[o, j] for j < ck, bias[o] for j == ck, 0 up to ckp: the conv1d weight
 * with the bias as one more input "tap" (matching im2col's ones row), padded so the GEMM's
 * leading dimension stays a multiple of 4.
 * Grid: (ceil(ckp / 256), c_out). Block: 256 threads (any size). Smem: none.
 */
extern "C" __global__ void pack_weight_bias_f32(const __grid_constant__ PackWeightParams p) {
    const int o = blockIdx.y;
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= p.ckp) return;
    float v = 0.0f;
    if (j < p.ck) v = p.w[(int64_t)o * p.ck + j];
    else if (j == p.ck) v = p.bias[o];
    p.wp[(int64_t)o * p.ckp + j] = v;
}

struct Col2imParams {
    const float* cols;  // [c_out · kernel, t_in]
    const float* bias;  // [c_out] or null
    float* y;           // [c_out, t_out]
    int32_t c_out;
    int32_t t_in;
    int32_t t_out;
    int32_t kernel;
    int32_t stride;
    int32_t padding;
};
HIGGS_PARAMS_SIZE(Col2imParams, 48);

/** Outputs per col2im thread (strided by COL_THREADS). */
#define COL2IM_PER_THREAD 4

/**
 * \brief Gather form of the transposed conv's overlap-add: output n takes taps k = r + j·s
 * (r = (n + p) mod s, k < K) from input m = (n + p)/s − j, for 0 <= m < t_in, in order of j.
 * Grid: (ceil(t_out / (COL_THREADS·COL2IM_PER_THREAD)), c_out). Block: COL_THREADS threads;
 * thread i owns outputs n0 + i + COL_THREADS·u, u < COL2IM_PER_THREAD. Smem: none.
 * Assumptions: every output is written exactly once (outputs with no contributor, e.g. from
 * output_padding past the last input, get the bias alone).
 */
extern "C" __global__ void __launch_bounds__(COL_THREADS) col2im_f32(const __grid_constant__ Col2imParams p) {
    const int co = blockIdx.y;
    const int n0 = blockIdx.x * (COL_THREADS * COL2IM_PER_THREAD) + threadIdx.x;
    const float* crow = p.cols + (int64_t)co * p.kernel * p.t_in;
    const float b = p.bias ? p.bias[co] : 0.0f;
    float* yrow = p.y + (int64_t)co * p.t_out;
#pragma unroll
    for (int u = 0; u < COL2IM_PER_THREAD; ++u) {
        const int n = n0 + u * COL_THREADS;
        if (n >= p.t_out) break;
        const int np = n + p.padding;
        const int q = np / p.stride, r = np - q * p.stride;
        float acc = 0.0f;
        for (int k = r, m = q; k < p.kernel && m >= 0; k += p.stride, --m) {
            if (m < p.t_in) acc += crow[(int64_t)k * p.t_in + m];
        }
        yrow[n] = acc + b;
    }
}

struct BiasAddParams {
    const float* bias;  // [rows]
    float* y;           // [rows, t], updated in place
    int32_t rows;
    int32_t t;
};
HIGGS_PARAMS_SIZE(BiasAddParams, 24);

/**
 * \brief y[r, i] += bias[r] (row broadcast), after an SGEMM that wrote / accumulated into y.
 * Grid: (ceil(t / 256), rows). Block: 256 threads (any size), one element each. Smem: none.
 */
extern "C" __global__ void bias_add_rows_f32(const __grid_constant__ BiasAddParams p) {
    const int r = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= p.t) return;
    p.y[(int64_t)r * p.t + i] += p.bias[r];
}

extern "C" __global__ void __launch_bounds__(COL_THREADS) im2col_f32(const __grid_constant__ Im2colParams p) { im2col_impl<false>(p); }
extern "C" __global__ void __launch_bounds__(COL_THREADS) im2col_snake_f32(const __grid_constant__ Im2colParams p) { im2col_impl<true>(p); }
