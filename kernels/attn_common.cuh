/**
 * attn_common.cuh — the paged-attention core shared by attn_prefill.cu and attn_decode.cu:
 * one query row against a key range of one sequence, online softmax in f32 (FlashAttention
 * style running max / sum), K/V read from the paged cache through the block table.
 * spec: model.md §5.3, §11.4. Not an entry point; included by the two attention families.
 *
 * Work mapping (both callers): one CUDA block = one query row × one KV head; blockDim =
 * (32, GROUP) with warp y computing query head kv_head*GROUP + y (GQA: Higgs has GROUP = 3).
 * Keys go through shared memory in tiles of 32 (one key per lane for Q·K, then all lanes
 * sweep the tile's V rows with the dims they own: lane owns dims lane + 32*i).
 */
#pragma once
#include "common.cuh"

#define ATTN_TILE 32
#define ATTN_MAX_GROUP 8

/** Where a sequence's keys live and which ones it may not see. */
struct PagedKv {
    const void* k_cache;          // [num_slots, n_kv_heads, HEAD_DIM]
    const void* v_cache;
    const int32_t* block_table;   // this sequence's row of block_tables
    const uint8_t* key_skip;      // this sequence's row of key_skip, or null
    int32_t n_kv_heads;
    int32_t block_size;
    int64_t num_slots;            // a block id past the cache reads as zeros instead of faulting
};

/** Running softmax state of one warp (one query head): o is unnormalised. */
template <int HEAD_DIM>
struct AttnState {
    float o[HEAD_DIM / 32];
    float m;  // running max of scores (-inf: nothing seen)
    float l;  // running sum of exp(score - m)
};

template <typename T, int HEAD_DIM>
struct AttnSmem {
    float q[ATTN_MAX_GROUP][HEAD_DIM];
    float k[ATTN_TILE][HEAD_DIM + 1];  // +1: lane l reads row l, conflict-free across lanes
    float v[ATTN_TILE][HEAD_DIM];
};

/**
 * Loads this warp's query head (pre-multiplied by `scale`) into smem. Caller syncs afterwards.
 */
template <typename T, int HEAD_DIM>
__device__ __forceinline__ void attn_load_q(AttnSmem<T, HEAD_DIM>& sm, const T* q_head, float scale) {
    for (int d = threadIdx.x; d < HEAD_DIM; d += 32) sm.q[threadIdx.y][d] = to_f32(q_head[d]) * scale;
}

/**
 * Attends the block's query heads to keys [key_begin, key_end) of one sequence.
 * Must be called by every thread of the block (it syncs); the range is block-uniform.
 */
template <typename T, int HEAD_DIM>
__device__ __forceinline__ void attn_range(AttnSmem<T, HEAD_DIM>& sm, AttnState<HEAD_DIM>& st, const PagedKv& kv,
                                           int kv_head, int key_begin, int key_end) {
    constexpr int PER_LANE = HEAD_DIM / 32;
    const int lane = threadIdx.x;
    const int warp = threadIdx.y;
    const int n_threads = 32 * blockDim.y;
    const int tid = warp * 32 + lane;
    const T* kc = static_cast<const T*>(kv.k_cache);
    const T* vc = static_cast<const T*>(kv.v_cache);

#pragma unroll
    for (int i = 0; i < PER_LANE; ++i) st.o[i] = 0.0f;
    st.m = -INFINITY;
    st.l = 0.0f;

    for (int tile = key_begin; tile < key_end; tile += ATTN_TILE) {
        __syncthreads();  // previous tile fully consumed
        for (int e = tid; e < ATTN_TILE * HEAD_DIM; e += n_threads) {
            const int key = e / HEAD_DIM;
            const int d = e % HEAD_DIM;
            const int pos = tile + key;
            float kf = 0.0f, vf = 0.0f;
            const int64_t slot = pos < key_end
                ? (int64_t)kv.block_table[pos / kv.block_size] * kv.block_size + pos % kv.block_size : -1;
            if (slot >= 0 && slot < kv.num_slots) {
                const int64_t off = (slot * kv.n_kv_heads + kv_head) * HEAD_DIM + d;
                kf = to_f32(kc[off]);
                vf = to_f32(vc[off]);
            }
            sm.k[key][d] = kf;
            sm.v[key][d] = vf;
        }
        __syncthreads();

        const int pos = tile + lane;
        const bool valid = pos < key_end && (kv.key_skip == nullptr || kv.key_skip[pos] == 0);
        float s = -INFINITY;
        if (valid) {
            float acc = 0.0f;
#pragma unroll 16
            for (int d = 0; d < HEAD_DIM; ++d) acc += sm.q[warp][d] * sm.k[lane][d];
            s = acc;
        }
        const float m_tile = warp_max(s);
        if (m_tile == -INFINITY) continue;  // warp-uniform: every key of the tile is hidden
        const float m_new = fmaxf(st.m, m_tile);
        const float corr = expf(st.m - m_new);  // 0 on the first visible tile (st.m = -inf)
        const float p = valid ? expf(s - m_new) : 0.0f;
        st.l = st.l * corr + warp_sum(p);
#pragma unroll
        for (int i = 0; i < PER_LANE; ++i) st.o[i] *= corr;
        const int n_keys = min(ATTN_TILE, key_end - tile);
        for (int j = 0; j < n_keys; ++j) {
            const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
            for (int i = 0; i < PER_LANE; ++i) st.o[i] += pj * sm.v[j][lane + 32 * i];
        }
        st.m = m_new;
    }
}

/** Writes o / l as T (zeros for a row that saw no visible key, so masked rows never give NaN). */
template <typename T, int HEAD_DIM>
__device__ __forceinline__ void attn_store(const AttnState<HEAD_DIM>& st, T* out_head) {
    const float inv = st.l > 0.0f ? 1.0f / st.l : 0.0f;
#pragma unroll
    for (int i = 0; i < HEAD_DIM / 32; ++i) out_head[threadIdx.x + 32 * i] = from_f32<T>(st.o[i] * inv);
}
