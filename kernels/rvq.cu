/**
 * rvq.cu — residual vector quantizer kernels, f32 (spec: codec.md §6.2, §6.3, §6.5, §11.10).
 * CPU twin: src/codec/rvq.rs (`Rvq::decode`, and the nearest-codeword loop of `encode_frame`).
 *
 *   decode:   out[o, t] = Σ_{q=0}^{n_q−1} ( project_out_q(E_q[codes[q, t]])[o] + b_q[o] )
 *   nearest:  codes[t] = argmax_j −( (‖z_t‖² − 2 z_t·E[j]) + ‖E[j]‖² ), first maximum wins
 *
 * Both reproduce the CPU twin bit for bit: every dot product and square sum runs sequentially
 * over codebook_dim in index order with explicit round-to-nearest ops (no FMA contraction), and
 * the stage sum starts from 0 and adds q = 0, 1, ... So the codes are identical, not just close
 * (near-ties would otherwise flip, spec §11.2, §11.10).
 */
#include "common.cuh"

/** Frames per decode block (the gathered codebook rows of these frames sit in smem). */
#define RVQ_DEC_FRAMES 8
#define RVQ_DEC_THREADS 128
#define RVQ_NEAR_THREADS 256

struct RvqDecodeParams {
    const int32_t* codes;  // [n_q, n_frames]
    const float* embed;    // [n_q, bins, codebook_dim]
    const float* out_w;    // [n_q, dim, codebook_dim] (project_out.weight per stage)
    const float* out_b;    // [n_q, dim]
    float* out;            // [dim, n_frames]
    int32_t n_q;
    int32_t n_frames;
    int32_t dim;
    int32_t codebook_dim;
    int32_t bins;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RvqDecodeParams, 64);

struct RvqNearestParams {
    const float* z;      // [codebook_dim, n_frames] projected residual (project_in output)
    const float* embed;  // [bins, codebook_dim], this stage's codebook
    int32_t* codes;      // [n_frames], this stage's row of the code matrix
    int32_t n_frames;
    int32_t codebook_dim;
    int32_t bins;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RvqNearestParams, 40);

/**
 * \brief Gather + project_out + stage sum: one thread per output channel, 8 frames per block.
 * Grid: (ceil(dim / 128), ceil(n_frames / 8)). Block: 128 threads.
 * Smem (dynamic): es [8][codebook_dim], the 8 frames' codebook rows of the current stage.
 * Each thread keeps 8 running sums in registers and walks its project_out row once per stage.
 * Assumptions: codes are in [0, bins) (checked on the host by the caller, `Rvq::check_codes`);
 * an out-of-range code reads as a zero codebook row (the bias is still added), never out of
 * bounds.
 */
extern "C" __global__ void __launch_bounds__(RVQ_DEC_THREADS)
rvq_decode_f32(const __grid_constant__ RvqDecodeParams p) {
    extern __shared__ float es[];
    const int cd = p.codebook_dim;
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    const int t0 = blockIdx.y * RVQ_DEC_FRAMES;
    float acc[RVQ_DEC_FRAMES] = {};
    for (int q = 0; q < p.n_q; ++q) {
        __syncthreads();  // es of the previous stage is still being read
        for (int i = threadIdx.x; i < RVQ_DEC_FRAMES * cd; i += blockDim.x) {
            const int tl = i / cd, k = i - tl * cd;
            const int t = t0 + tl;
            float v = 0.0f;
            if (t < p.n_frames) {
                const int c = p.codes[(int64_t)q * p.n_frames + t];
                if (c >= 0 && c < p.bins) v = p.embed[((int64_t)q * p.bins + c) * cd + k];
            }
            es[i] = v;
        }
        __syncthreads();
        if (o >= p.dim) continue;
        const float* wr = p.out_w + ((int64_t)q * p.dim + o) * cd;
        float v[RVQ_DEC_FRAMES] = {};
        for (int k = 0; k < cd; ++k) {
            const float w = wr[k];
#pragma unroll
            for (int tl = 0; tl < RVQ_DEC_FRAMES; ++tl)
                v[tl] = __fadd_rn(v[tl], __fmul_rn(w, es[tl * cd + k]));
        }
        const float b = p.out_b[(int64_t)q * p.dim + o];
#pragma unroll
        for (int tl = 0; tl < RVQ_DEC_FRAMES; ++tl) acc[tl] = __fadd_rn(acc[tl], __fadd_rn(v[tl], b));
    }
    if (o >= p.dim) return;
#pragma unroll
    for (int tl = 0; tl < RVQ_DEC_FRAMES; ++tl) {
        const int t = t0 + tl;
        if (t < p.n_frames) p.out[(int64_t)o * p.n_frames + t] = acc[tl];
    }
}

/** Keeps (score, idx) if it beats (best, best_idx): larger score, or equal score, lower index. */
__device__ __forceinline__ void argmax_merge(float& best, int& best_idx, float score, int idx) {
    if (score > best || (score == best && idx < best_idx)) {
        best = score;
        best_idx = idx;
    }
}

/**
 * \brief Nearest codeword of one frame per block: threads stride the codebook, then a block
 * argmax (shuffles, then one value per warp through smem).
 * Grid: (n_frames). Block: 256 threads (a multiple of 32).
 * Smem (dynamic): zs [codebook_dim], this frame's z; static: 2 × 32 words for the reduction.
 * Numerics: ‖z‖² (computed redundantly by every thread, same order), z·E[j] and ‖E[j]‖² are
 * sequential over k with no FMA, and score = −((zsq − 2·dot) + esq), exactly as rvq.rs. Ties go
 * to the lowest index, as the CPU's strict `>` scan (torch's max on CPU) does.
 * Assumptions: bins >= 1; finite inputs (a NaN score has no defined winner).
 */
extern "C" __global__ void __launch_bounds__(RVQ_NEAR_THREADS)
rvq_nearest_f32(const __grid_constant__ RvqNearestParams p) {
    extern __shared__ float zs[];
    __shared__ float red_score[32];
    __shared__ int red_idx[32];
    const int cd = p.codebook_dim;
    const int t = blockIdx.x;
    for (int k = threadIdx.x; k < cd; k += blockDim.x) zs[k] = p.z[(int64_t)k * p.n_frames + t];
    __syncthreads();
    float zsq = 0.0f;
    for (int k = 0; k < cd; ++k) zsq = __fadd_rn(zsq, __fmul_rn(zs[k], zs[k]));

    // An empty slot is (-inf, INT32_MAX): a real -inf score ties it and wins on index, so some
    // valid j always comes out (the CPU takes j = 0 unconditionally when all scores are -inf).
    float best = -INFINITY;
    int best_idx = INT32_MAX;
    for (int j = threadIdx.x; j < p.bins; j += blockDim.x) {
        const float* e = p.embed + (int64_t)j * cd;
        float dot = 0.0f, esq = 0.0f;
        for (int k = 0; k < cd; ++k) {
            const float ek = e[k];
            dot = __fadd_rn(dot, __fmul_rn(zs[k], ek));
            esq = __fadd_rn(esq, __fmul_rn(ek, ek));
        }
        const float score = -__fadd_rn(__fsub_rn(zsq, __fmul_rn(2.0f, dot)), esq);
        argmax_merge(best, best_idx, score, j);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float s = __shfl_xor_sync(0xffffffffu, best, o);
        const int i = __shfl_xor_sync(0xffffffffu, best_idx, o);
        argmax_merge(best, best_idx, s, i);
    }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        red_score[warp] = best;
        red_idx[warp] = best_idx;
    }
    __syncthreads();
    if (warp == 0) {
        const int n_warps = blockDim.x >> 5;
        best = lane < n_warps ? red_score[lane] : -INFINITY;
        best_idx = lane < n_warps ? red_idx[lane] : INT32_MAX;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            const float s = __shfl_xor_sync(0xffffffffu, best, o);
            const int i = __shfl_xor_sync(0xffffffffu, best_idx, o);
            argmax_merge(best, best_idx, s, i);
        }
        if (lane == 0) p.codes[t] = best_idx;
    }
}
