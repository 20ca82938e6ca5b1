/**
 * kv_cache.cu — paged KV-cache maintenance: write K/V rows through the slot mapping, and copy
 * whole blocks (copy-on-write of a shared prefix block). spec: model.md §5.7.
 * CPU twin: src/backend/cpu/kv_cache.rs.
 *
 * Per-layer cache layout: [num_slots = num_blocks * block_size, n_kv_heads, head_dim], so a
 * token's K (or V) row is contiguous and equal to its row in the projection output.
 */
#include "common.cuh"

struct KvWriteParams {
    const void* k;                // [n_tokens, n_kv_heads * head_dim]
    const void* v;                // [n_tokens, n_kv_heads * head_dim]
    void* k_cache;                // [num_slots, n_kv_heads * head_dim]
    void* v_cache;                // [num_slots, n_kv_heads * head_dim]
    const int32_t* slot_mapping;  // [n_tokens], -1 = skip
    int32_t n_tokens;
    int32_t row_elems;            // n_kv_heads * head_dim
    int32_t num_slots;            // slots outside [0, num_slots) are skipped, never written
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(KvWriteParams, 56);

struct KvCopyBlocksParams {
    uint32_t* k_cache;            // viewed as 32-bit words
    uint32_t* v_cache;
    const int32_t* block_pairs;   // [n_pairs, 2] = (src block, dst block)
    int32_t n_pairs;
    int32_t block_words;          // block_size * n_kv_heads * head_dim * elem_bytes / 4
};
HIGGS_PARAMS_SIZE(KvCopyBlocksParams, 32);

/**
 * \brief Scatter K/V rows into cache slots.
 * Grid: (n_tokens). Block: 256 threads striding the row. No smem.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void kv_write_impl(const KvWriteParams& p) {
    const int64_t t = blockIdx.x;
    const int32_t slot = p.slot_mapping[t];
    if (slot < 0 || slot >= p.num_slots) return;
    const T* k = static_cast<const T*>(p.k) + t * p.row_elems;
    const T* v = static_cast<const T*>(p.v) + t * p.row_elems;
    T* kc = static_cast<T*>(p.k_cache) + (int64_t)slot * p.row_elems;
    T* vc = static_cast<T*>(p.v_cache) + (int64_t)slot * p.row_elems;
    for (int c = threadIdx.x; c < p.row_elems; c += blockDim.x) {
        kc[c] = k[c];
        vc[c] = v[c];
    }
}

extern "C" __global__ void kv_cache_write_bf16(const __grid_constant__ KvWriteParams p) { kv_write_impl<bf16>(p); }
extern "C" __global__ void kv_cache_write_f32(const __grid_constant__ KvWriteParams p) { kv_write_impl<float>(p); }

/**
 * \brief Copies K and V of block src to block dst for each pair; dtype-agnostic (32-bit words).
 * Grid: (n_pairs, 64). Block: 256 threads; blocks along y split one block's words.
 * Assumes block byte size % 4 == 0 (checked on the host) and src != dst.
 */
extern "C" __global__ void kv_cache_copy_blocks(const __grid_constant__ KvCopyBlocksParams p) {
    const int pair = blockIdx.x;
    const int64_t src = (int64_t)p.block_pairs[2 * pair] * p.block_words;
    const int64_t dst = (int64_t)p.block_pairs[2 * pair + 1] * p.block_words;
    const int stride = blockDim.x * gridDim.y;
    for (int w = blockIdx.y * blockDim.x + threadIdx.x; w < p.block_words; w += stride) {
        p.k_cache[dst + w] = p.k_cache[src + w];
        p.v_cache[dst + w] = p.v_cache[src + w];
    }
}
