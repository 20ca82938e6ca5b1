/**
 * attn_decode.cu — one query per sequence against its paged KV cache, optionally split along
 * the keys (split-KV / flash-decoding): each split writes a normalised partial output plus its
 * log-sum-exp, and a merge kernel combines them. The split is chosen on the host by
 * `attn_decode::choose_variant` (src/backend/cuda/attn_decode.rs), never in the kernel.
 * spec: model.md §5.3, §11.4. CPU twin: src/backend/cpu/attn_decode.rs.
 *
 * Sequence s's query is at position seq_pos[s] and sees keys 0..=seq_pos[s] except key_skip.
 */
#include "attn_common.cuh"

struct AttnDecodeParams {
    const void* q;                // [n_seqs, n_heads * head_dim]
    const void* k_cache;          // [num_slots, n_kv_heads, head_dim]
    const void* v_cache;
    const int32_t* block_tables;  // [n_seqs, max_blocks]
    const int32_t* seq_pos;       // [n_seqs]
    const uint8_t* key_skip;      // [n_seqs, max_ctx] or null
    void* out;                    // [n_seqs, n_heads * head_dim] (written when n_splits == 1)
    float* partial_o;             // [n_seqs, n_heads, n_splits, head_dim] (n_splits > 1)
    float* partial_lse;           // [n_seqs, n_heads, n_splits] (n_splits > 1)
    int32_t n_seqs;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t block_size;
    int32_t max_blocks;
    int32_t max_ctx;
    int32_t n_splits;
    int32_t chunk_len;  // keys per split
    float scale;
    int32_t num_slots;  // num_blocks * block_size of the cache
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(AttnDecodeParams, 120);

struct AttnMergeParams {
    const float* partial_o;    // [n_seqs, n_heads, n_splits, head_dim]
    const float* partial_lse;  // [n_seqs, n_heads, n_splits]
    void* out;                 // [n_seqs, n_heads * head_dim]
    int32_t n_seqs;
    int32_t n_heads;
    int32_t n_splits;
    int32_t head_dim;
};
HIGGS_PARAMS_SIZE(AttnMergeParams, 40);

/**
 * \brief Decode attention over keys [split*chunk_len, min((split+1)*chunk_len, seq_pos+1)); the
 * last split runs to seq_pos+1.
 * Grid: (n_seqs, n_kv_heads, n_splits). Block: (32, n_heads / n_kv_heads). Smem: AttnSmem (~37 KB).
 * n_splits == 1 writes `out` directly; otherwise writes partial_o (normalised) and partial_lse
 * (-inf for an empty split, whose partial_o is zero).
 * \tparam T bf16 or float. \tparam HEAD_DIM 128.
 */
template <typename T, int HEAD_DIM>
__device__ __forceinline__ void attn_decode_impl(const AttnDecodeParams& p) {
    __shared__ AttnSmem<T, HEAD_DIM> sm;
    const int s = blockIdx.x;
    const int kv_head = blockIdx.y;
    const int split = blockIdx.z;
    const int head = kv_head * blockDim.y + threadIdx.y;
    const int ctx = p.seq_pos[s] + 1;
    const int begin = split * p.chunk_len;
    // The last split runs to the end of the context, so any (n_splits, chunk_len) covers every
    // key even when the host sized chunks from a shorter bound.
    const int end = split == p.n_splits - 1 ? ctx : min(begin + p.chunk_len, ctx);
    const int64_t row = (int64_t)s * p.n_heads + head;

    attn_load_q<T, HEAD_DIM>(sm, static_cast<const T*>(p.q) + row * HEAD_DIM, p.scale);
    PagedKv kv{p.k_cache, p.v_cache, p.block_tables + (int64_t)s * p.max_blocks,
               p.key_skip ? p.key_skip + (int64_t)s * p.max_ctx : nullptr, p.n_kv_heads, p.block_size, p.num_slots};
    AttnState<HEAD_DIM> st;
    attn_range<T, HEAD_DIM>(sm, st, kv, kv_head, begin, end);
    if (p.n_splits == 1) {
        attn_store<T, HEAD_DIM>(st, static_cast<T*>(p.out) + row * HEAD_DIM);
        return;
    }
    const int64_t part = row * p.n_splits + split;
    attn_store<float, HEAD_DIM>(st, p.partial_o + part * HEAD_DIM);
    if (threadIdx.x == 0) p.partial_lse[part] = st.l > 0.0f ? st.m + logf(st.l) : -INFINITY;
}

/**
 * \brief Merges split partials: out = Σ_s e^{lse_s - M} o_s / Σ_s e^{lse_s - M}, M = max lse.
 * Grid: (n_seqs, n_heads). Block: head_dim threads (one dim each). No smem.
 * \tparam T output type.
 */
template <typename T>
__device__ __forceinline__ void attn_merge_impl(const AttnMergeParams& p) {
    const int64_t row = (int64_t)blockIdx.x * p.n_heads + blockIdx.y;
    const int d = threadIdx.x;
    if (d >= p.head_dim) return;
    const float* lse = p.partial_lse + row * p.n_splits;
    float m = -INFINITY;
    for (int s = 0; s < p.n_splits; ++s) m = fmaxf(m, lse[s]);
    float num = 0.0f, den = 0.0f;
    if (m != -INFINITY) {
        for (int s = 0; s < p.n_splits; ++s) {
            const float w = expf(lse[s] - m);  // 0 for empty splits (lse = -inf)
            num += w * p.partial_o[(row * p.n_splits + s) * p.head_dim + d];
            den += w;
        }
    }
    static_cast<T*>(p.out)[row * p.head_dim + d] = from_f32<T>(den > 0.0f ? num / den : 0.0f);
}

extern "C" __global__ void attn_decode_bf16(const __grid_constant__ AttnDecodeParams p) { attn_decode_impl<bf16, 128>(p); }
extern "C" __global__ void attn_decode_f32(const __grid_constant__ AttnDecodeParams p) { attn_decode_impl<float, 128>(p); }
extern "C" __global__ void attn_decode_merge_bf16(const __grid_constant__ AttnMergeParams p) { attn_merge_impl<bf16>(p); }
extern "C" __global__ void attn_decode_merge_f32(const __grid_constant__ AttnMergeParams p) { attn_merge_impl<float>(p); }
