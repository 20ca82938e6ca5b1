/**
 * dual_ffn.cu — DualFFN routing between the text and audio branches. spec: model.md §5.1, §5.8.
 * CPU twin: src/backend/cpu/dual_ffn.rs.
 *
 * The host builds the routing plan once per step (row index lists per modality, from the audio
 * mask) and uploads it; these kernels move rows:
 *   gather:       out[j] = x[idx[j]]                      (compact rows of one modality)
 *   scatter_add:  residual[idx[j]] = T(residual[idx[j]] + y[j])   (FFN output back into the stream)
 *   scatter:      dst[idx[j]] = src[j]                    (fast-forward: restore the audio rows
 *                                                          saved by a gather before the layer)
 * The SwiGLU between gather and scatter is act.cu's silu_mul on the gate|up GEMM output.
 * Index lists hold distinct rows, so scatter_add has no write conflicts.
 */
#include "common.cuh"

struct RowsParams {
    const void* src;     // gather: x [n_tokens, hidden]; scatter(_add): [n_rows, hidden]
    const int32_t* idx;  // [n_rows] row indices into the full [n_tokens, hidden] tensor
    void* dst;           // gather: [n_rows, hidden]; scatter(_add): [n_tokens, hidden]
    int32_t n_rows;
    int32_t hidden;
    int32_t n_tokens;    // rows of the full tensor; indices outside [0, n_tokens) are skipped
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RowsParams, 40);

/**
 * \brief Row movement. Grid: (n_rows). Block: 256 threads striding `hidden`. No smem.
 * \tparam T bf16 or float. \tparam MODE 0 gather, 1 scatter-add, 2 scatter.
 */
template <typename T, int MODE>
__device__ __forceinline__ void rows_impl(const RowsParams& p) {
    const int64_t j = blockIdx.x;
    const int64_t row = p.idx[j];
    if (row < 0 || row >= p.n_tokens) return;
    const T* src = static_cast<const T*>(p.src) + (MODE == 0 ? row : j) * p.hidden;
    T* dst = static_cast<T*>(p.dst) + (MODE == 0 ? j : row) * p.hidden;
    for (int c = threadIdx.x; c < p.hidden; c += blockDim.x) {
        if (MODE == 1) dst[c] = from_f32<T>(to_f32(dst[c]) + to_f32(src[c]));
        else dst[c] = src[c];
    }
}

extern "C" __global__ void dual_ffn_gather_bf16(const __grid_constant__ RowsParams p) { rows_impl<bf16, 0>(p); }
extern "C" __global__ void dual_ffn_gather_f32(const __grid_constant__ RowsParams p) { rows_impl<float, 0>(p); }
extern "C" __global__ void dual_ffn_scatter_add_bf16(const __grid_constant__ RowsParams p) { rows_impl<bf16, 1>(p); }
extern "C" __global__ void dual_ffn_scatter_add_f32(const __grid_constant__ RowsParams p) { rows_impl<float, 1>(p); }
extern "C" __global__ void dual_ffn_scatter_bf16(const __grid_constant__ RowsParams p) { rows_impl<bf16, 2>(p); }
extern "C" __global__ void dual_ffn_scatter_f32(const __grid_constant__ RowsParams p) { rows_impl<float, 2>(p); }

struct SelectParams {
    const void* if_set;    // [n_rows, hidden]
    const void* if_clear;  // [n_rows, hidden]
    const int32_t* mask;   // [n_rows]: nonzero picks if_set
    void* dst;             // [n_rows, hidden]
    int32_t n_rows;
    int32_t hidden;
};
HIGGS_PARAMS_SIZE(SelectParams, 40);

/**
 * \brief Per-row select between two branches (the masked DualFFN strategy: both FFNs ran on
 * every row, each row keeps its modality's output). Grid: (n_rows). Block: 256 threads striding
 * `hidden`. No smem. Every element of dst is written.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void select_impl(const SelectParams& p) {
    const int64_t j = blockIdx.x;
    if (j >= p.n_rows) return;
    const T* src = static_cast<const T*>(p.mask[j] != 0 ? p.if_set : p.if_clear) + j * p.hidden;
    T* dst = static_cast<T*>(p.dst) + j * p.hidden;
    for (int c = threadIdx.x; c < p.hidden; c += blockDim.x) dst[c] = src[c];
}

extern "C" __global__ void dual_ffn_select_bf16(const __grid_constant__ SelectParams p) { select_impl<bf16>(p); }
extern "C" __global__ void dual_ffn_select_f32(const __grid_constant__ SelectParams p) { select_impl<float>(p); }
