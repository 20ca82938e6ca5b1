/**
 * embed.cu — input embeddings. spec: model.md §4.2 (text rows), §4.3 (audio codebook sum).
 * CPU twin: src/backend/cpu/embed.rs.
 *
 *   text:  out[i] = table[ids[i]]
 *   audio: out[i] = T(Σ_{c<C} table[c·rows_per_codebook + codes[i·C + c]])   (f32 sum, one rounding;
 *          divided by C before the rounding when `avg` is set)
 *
 * Ids out of range (validated in ops/, so never expected) produce a zero row instead of an
 * out-of-bounds read.
 */
#include "common.cuh"

struct EmbedTextParams {
    const void* table;   // [vocab, hidden]
    const int32_t* ids;  // [n_tokens]
    void* out;           // [n_tokens, hidden]
    int32_t n_tokens;
    int32_t hidden;
    int32_t vocab;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(EmbedTextParams, 40);

struct EmbedAudioParams {
    const void* table;     // [n_codebooks * rows_per_codebook, hidden]
    const int32_t* codes;  // [n_tokens, n_codebooks]
    void* out;             // [n_tokens, hidden]
    int32_t n_tokens;
    int32_t hidden;
    int32_t n_codebooks;
    int32_t rows_per_codebook;
    int32_t avg;  // 0: sum (released config), 1: mean
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(EmbedAudioParams, 48);

/**
 * \brief Row gather. Grid: (n_tokens). Block: 256 threads striding `hidden`. No smem.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void embed_text_impl(const EmbedTextParams& p) {
    const int64_t i = blockIdx.x;
    const int32_t id = p.ids[i];
    const bool ok = id >= 0 && id < p.vocab;
    const T* src = static_cast<const T*>(p.table) + (int64_t)(ok ? id : 0) * p.hidden;
    T* dst = static_cast<T*>(p.out) + i * p.hidden;
    for (int c = threadIdx.x; c < p.hidden; c += blockDim.x) dst[c] = ok ? src[c] : from_f32<T>(0.0f);
}

/**
 * \brief Codebook sum. Grid: (n_tokens). Block: 256 threads striding `hidden`; each thread sums
 * the C rows of its columns in f32 (C = 8 for Higgs). No smem.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void embed_audio_impl(const EmbedAudioParams& p) {
    const int64_t i = blockIdx.x;
    const T* table = static_cast<const T*>(p.table);
    const int32_t* codes = p.codes + i * p.n_codebooks;
    T* dst = static_cast<T*>(p.out) + i * p.hidden;
    for (int col = threadIdx.x; col < p.hidden; col += blockDim.x) {
        float acc = 0.0f;
        for (int c = 0; c < p.n_codebooks; ++c) {
            const int32_t code = codes[c];
            if (code < 0 || code >= p.rows_per_codebook) continue;
            const int64_t row = (int64_t)c * p.rows_per_codebook + code;
            acc += to_f32(table[row * p.hidden + col]);
        }
        if (p.avg) acc /= (float)p.n_codebooks;
        dst[col] = from_f32<T>(acc);
    }
}

extern "C" __global__ void embed_text_bf16(const __grid_constant__ EmbedTextParams p) { embed_text_impl<bf16>(p); }
extern "C" __global__ void embed_text_f32(const __grid_constant__ EmbedTextParams p) { embed_text_impl<float>(p); }
extern "C" __global__ void embed_audio_bf16(const __grid_constant__ EmbedAudioParams p) { embed_audio_impl<bf16>(p); }
extern "C" __global__ void embed_audio_f32(const __grid_constant__ EmbedAudioParams p) { embed_audio_impl<float>(p); }
