/**
 * conv1d.cu — codec convolutions on single-batch [channels, time] f32 buffers, PyTorch semantics
 * with zero padding (spec: codec.md §3.4, §7, §11.6–7): conv1d (stride, dilation, padding,
 * groups = 1) and transposed conv1d (stride, padding, output_padding; any kernel, the DAC's
 * 2s included), each also fused with Snake applied to the INPUT (the DAC runs Snake right before
 * every conv of the decoder, spec §3.3, §7; fusing saves a launch and a full activation round
 * trip). CPU twins: src/codec/layers.rs `conv1d`, `conv_transpose1d`, `snake_inplace`.
 *
 *   conv1d:  y[o,t] = b[o] + Σ_i Σ_k W[o,i,k] · snake?(x[i, s·t + d·k − p])        W [C_out, C_in, K]
 *   convT:   y[o,n] = b[o] + Σ_i Σ_{j: r+js<K} W[i,o,r+js] · snake?(x[i, q−j])      W [C_in, C_out, K]
 *            with q = (n+p) / s, r = (n+p) mod s (the gather form of the scatter definition)
 *
 * Out-of-range input samples are zero and are NOT passed through Snake (the reference pads after
 * the activation). Accumulation is f32 (FMA); the CPU twin sums in f64, so long reductions
 * (C_in·K in the thousands) differ by f32 rounding noise only.
 */
#include "common.cuh"
#include "snake.cuh"

/** Output channels per block and output samples per block; 256 threads each own 4 × 4. */
#define CONV_CO_TILE 64
#define CONV_T_TILE 64
#define CONV_THREADS 256

/**
 * Shared by both conv families. For convT `dilation` is 1 and unused; `span` is the width of
 * the input tile in samples and `ci_tile` the input channels staged per step (both chosen on
 * the host so that the dynamic shared memory fits, see src/backend/cuda/conv1d.rs).
 */
struct Conv1dParams {
    const float* x;      // [c_in, t_in]
    const float* w;      // conv1d: [c_out, c_in, kernel]; convT: [c_in, c_out, kernel]
    const float* bias;   // [c_out] or null
    const float* alpha;  // [c_in] Snake alpha (the _snake entries only)
    float* y;            // [c_out, t_out]
    int32_t c_in;
    int32_t c_out;
    int32_t t_in;
    int32_t t_out;
    int32_t kernel;
    int32_t stride;
    int32_t padding;
    int32_t dilation;
    int32_t ci_tile;
    int32_t span;
};
HIGGS_PARAMS_SIZE(Conv1dParams, 80);

/** One input sample of channel `ci` at time `ti`, zero outside [0, t_in), Snake'd if SNAKE. */
template <bool SNAKE>
__device__ __forceinline__ float load_input(const Conv1dParams& p, int ci, int ti) {
    if (ti < 0 || ti >= p.t_in) return 0.0f;
    const float v = p.x[(int64_t)ci * p.t_in + ti];
    return SNAKE ? snake_f(v, p.alpha[ci]) : v;
}

/** Adds the bias and stores the 4 × 4 micro-tile of thread (ty, tx) at (co0, t0). */
__device__ __forceinline__ void store_tile(const Conv1dParams& p, const float (&acc)[4][4],
                                           int co0, int t0, int ty, int tx) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int co = co0 + ty + 16 * i;
        if (co >= p.c_out) continue;
        const float b = p.bias ? p.bias[co] : 0.0f;
        float* yrow = p.y + (int64_t)co * p.t_out;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int t = t0 + tx + 16 * j;
            if (t < p.t_out) yrow[t] = acc[i][j] + b;
        }
    }
}

/**
 * \brief Direct conv1d, one block per (64 output channels × 64 output samples) tile.
 * \tparam SNAKE apply Snake(alpha[ci]) to every in-range input sample as it is staged.
 * Grid: (ceil(t_out / 64), ceil(c_out / 64)). Block: 256 threads; thread (ty = tid / 16,
 * tx = tid % 16) owns outputs co0 + ty + 16i, t0 + tx + 16j for i, j < 4 (consecutive tx read
 * consecutive input samples for stride 1, and store 16 consecutive floats).
 * Smem (dynamic): xs [ci_tile][span] input tile, span = 63·stride + (kernel−1)·dilation + 1,
 * then ws [64][ci_tile·kernel] weight tile; the loop walks c_in in steps of ci_tile.
 * Assumptions: groups = 1; blockDim.x == 256; the host sized span and ci_tile as above.
 */
template <bool SNAKE>
__device__ __forceinline__ void conv1d_impl(const Conv1dParams& p) {
    extern __shared__ float smem[];
    const int K = p.kernel, span = p.span, ci_tile = p.ci_tile;
    const int wrow = ci_tile * K;
    float* xs = smem;
    float* ws = smem + ci_tile * span;
    const int co0 = blockIdx.y * CONV_CO_TILE;
    const int t0 = blockIdx.x * CONV_T_TILE;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int in0 = t0 * p.stride - p.padding;  // input time of xs[.][0]

    float acc[4][4] = {};
    for (int ci0 = 0; ci0 < p.c_in; ci0 += ci_tile) {
        const int nci = min(ci_tile, p.c_in - ci0);
        __syncthreads();  // the previous step's tiles are still being read
        for (int i = threadIdx.x; i < ci_tile * span; i += blockDim.x) {
            const int cl = i / span;
            xs[i] = cl < nci ? load_input<SNAKE>(p, ci0 + cl, in0 + (i - cl * span)) : 0.0f;
        }
        for (int i = threadIdx.x; i < CONV_CO_TILE * wrow; i += blockDim.x) {
            const int col = i / wrow, r = i - col * wrow;
            const int co = co0 + col;
            // r = cl·K + k, so W[co, ci0 + cl, k] sits at (co·c_in + ci0)·K + r.
            ws[i] = (co < p.c_out && r / K < nci) ? p.w[((int64_t)co * p.c_in + ci0) * K + r] : 0.0f;
        }
        __syncthreads();
        for (int cl = 0; cl < nci; ++cl) {
            const float* xr = xs + cl * span;
            const float* wr = ws + cl * K;
            for (int k = 0; k < K; ++k) {
                float wv[4], xv[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) wv[i] = wr[(ty + 16 * i) * wrow + k];
#pragma unroll
                for (int j = 0; j < 4; ++j) xv[j] = xr[(tx + 16 * j) * p.stride + k * p.dilation];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(wv[i], xv[j], acc[i][j]);
            }
        }
    }
    store_tile(p, acc, co0, t0, ty, tx);
}

/**
 * \brief Transposed conv1d (gather form), one block per (64 output channels × 64 outputs) tile.
 * \tparam SNAKE apply Snake(alpha[ci]) to every in-range input sample as it is staged.
 * Grid: (ceil(t_out / 64), ceil(c_out / 64)). Block: 256 threads, same (ty, tx) ownership as
 * conv1d. Output n takes taps k = r + j·s (j < J = ceil(K/s), k < K) from input q − j.
 * Smem (dynamic): xs [ci_tile][span] input tile starting at m_lo = (n0+p)/s − (J−1),
 * span = 63/s + 1 + J, then ws [ci_tile][64][kernel] (W rows of one input channel are
 * contiguous over c_out, so the load is coalesced).
 * Assumptions: groups = 1, dilation = 1; output_padding only lengthens t_out (those outputs are
 * computed like any other, spec §3.4); blockDim.x == 256; the host sized span and ci_tile.
 */
template <bool SNAKE>
__device__ __forceinline__ void conv_transpose1d_impl(const Conv1dParams& p) {
    extern __shared__ float smem[];
    const int K = p.kernel, s = p.stride, span = p.span, ci_tile = p.ci_tile;
    const int J = (K + s - 1) / s;
    const int wtile = CONV_CO_TILE * K;
    float* xs = smem;
    float* ws = smem + ci_tile * span;
    const int co0 = blockIdx.y * CONV_CO_TILE;
    const int n0 = blockIdx.x * CONV_T_TILE;
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int m_lo = (n0 + p.padding) / s - (J - 1);

    int q_off[4], r_ph[4];  // per owned output: q − m_lo and the phase r
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        const int np = n0 + tx + 16 * j + p.padding;
        q_off[j] = np / s - m_lo;
        r_ph[j] = np % s;
    }

    float acc[4][4] = {};
    for (int ci0 = 0; ci0 < p.c_in; ci0 += ci_tile) {
        const int nci = min(ci_tile, p.c_in - ci0);
        __syncthreads();  // the previous step's tiles are still being read
        for (int i = threadIdx.x; i < ci_tile * span; i += blockDim.x) {
            const int cl = i / span;
            xs[i] = cl < nci ? load_input<SNAKE>(p, ci0 + cl, m_lo + (i - cl * span)) : 0.0f;
        }
        for (int i = threadIdx.x; i < ci_tile * wtile; i += blockDim.x) {
            const int cl = i / wtile, r = i - cl * wtile;
            const int co = co0 + r / K;
            // r = col·K + k, so W[ci0 + cl, co0 + col, k] sits at ((ci0+cl)·c_out + co0)·K + r.
            ws[i] = (cl < nci && co < p.c_out)
                        ? p.w[((int64_t)(ci0 + cl) * p.c_out + co0) * K + r]
                        : 0.0f;
        }
        __syncthreads();
        for (int cl = 0; cl < nci; ++cl) {
            const float* xr = xs + cl * span;
            const float* wr = ws + cl * wtile;
            for (int jt = 0; jt < J; ++jt) {
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int k = r_ph[j] + jt * s;
                    if (k >= K) continue;
                    const float xv = xr[q_off[j] - jt];
#pragma unroll
                    for (int i = 0; i < 4; ++i)
                        acc[i][j] = fmaf(wr[(ty + 16 * i) * K + k], xv, acc[i][j]);
                }
            }
        }
    }
    store_tile(p, acc, co0, n0, ty, tx);
}

extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv1d_f32(const __grid_constant__ Conv1dParams p) { conv1d_impl<false>(p); }
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv1d_snake_f32(const __grid_constant__ Conv1dParams p) { conv1d_impl<true>(p); }
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv_transpose1d_f32(const __grid_constant__ Conv1dParams p) { conv_transpose1d_impl<false>(p); }
extern "C" __global__ void __launch_bounds__(CONV_THREADS) conv_transpose1d_snake_f32(const __grid_constant__ Conv1dParams p) { conv_transpose1d_impl<true>(p); }
