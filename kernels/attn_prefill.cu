/**
 * attn_prefill.cu — causal GQA attention of prompt-chunk queries over the paged KV cache
 * (the chunk's own K/V must already be in the cache). spec: model.md §5.3, §5.8 (key_skip for
 * fast-forward layers), §11.4. CPU twin: src/backend/cpu/attn_prefill.rs.
 *
 * Query row i belongs to sequence query_seq[i] at position query_pos[i]; it sees keys
 * 0..=query_pos[i] of that sequence except those with key_skip[seq*max_ctx + pos] = 1.
 * Scores scaled by `scale` (1/sqrt(head_dim)), softmax in f32, output rounded once to T.
 */
#include "attn_common.cuh"

struct AttnPrefillParams {
    const void* q;                // [n_q, n_heads * head_dim]
    const void* k_cache;          // [num_slots, n_kv_heads, head_dim]
    const void* v_cache;
    const int32_t* block_tables;  // [n_seqs, max_blocks]
    const int32_t* query_seq;     // [n_q]
    const int32_t* query_pos;     // [n_q]
    const uint8_t* key_skip;      // [n_seqs, max_ctx] or null
    void* out;                    // [n_q, n_heads * head_dim]
    int32_t n_q;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t block_size;
    int32_t max_blocks;
    int32_t max_ctx;
    float scale;
    int32_t num_slots;  // num_blocks * block_size of the cache
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(AttnPrefillParams, 104);

/**
 * \brief Paged causal attention, one query row × one KV head per block.
 * Grid: (n_q, n_kv_heads). Block: (32, n_heads / n_kv_heads) — warp y is query head
 * kv_head * group + y. Smem: static AttnSmem (q group, one 32-key K and V tile in f32, ~37 KB).
 * \tparam T bf16 or float (q, caches, out). \tparam HEAD_DIM 128 (the only one instantiated).
 * Assumes group <= 8, positions < max_blocks * block_size (checked on the host).
 */
template <typename T, int HEAD_DIM>
__device__ __forceinline__ void attn_prefill_impl(const AttnPrefillParams& p) {
    __shared__ AttnSmem<T, HEAD_DIM> sm;
    const int i = blockIdx.x;
    const int kv_head = blockIdx.y;
    const int head = kv_head * blockDim.y + threadIdx.y;
    const int seq = p.query_seq[i];
    const int pos = p.query_pos[i];
    const int64_t row = (int64_t)i * p.n_heads + head;

    attn_load_q<T, HEAD_DIM>(sm, static_cast<const T*>(p.q) + row * HEAD_DIM, p.scale);
    PagedKv kv{p.k_cache, p.v_cache, p.block_tables + (int64_t)seq * p.max_blocks,
               p.key_skip ? p.key_skip + (int64_t)seq * p.max_ctx : nullptr, p.n_kv_heads, p.block_size, p.num_slots};
    AttnState<HEAD_DIM> st;
    attn_range<T, HEAD_DIM>(sm, st, kv, kv_head, 0, pos + 1);
    attn_store<T, HEAD_DIM>(st, static_cast<T*>(p.out) + row * HEAD_DIM);
}

extern "C" __global__ void attn_prefill_bf16(const __grid_constant__ AttnPrefillParams p) { attn_prefill_impl<bf16, 128>(p); }
extern "C" __global__ void attn_prefill_f32(const __grid_constant__ AttnPrefillParams p) { attn_prefill_impl<float, 128>(p); }
