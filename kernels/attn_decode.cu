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

/** Threads of a decode block: 4 warps = 8 key groups of 16 lanes (8 head dims per lane). */
#define DEC_THREADS 128
#define DEC_GROUP_LANES 16
#define DEC_KEY_GROUPS (DEC_THREADS / DEC_GROUP_LANES)
#define DEC_DIMS 8

/** Loads 8 consecutive elements as f32 (one 16-byte load for bf16, two for f32). */
__device__ __forceinline__ void load8(const bf16* p, float (&out)[DEC_DIMS]) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p);
    const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&raw);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(h[i]);
        out[2 * i] = f.x;
        out[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void load8(const float* p, float (&out)[DEC_DIMS]) {
    const float4 a = *reinterpret_cast<const float4*>(p);
    const float4 b = *reinterpret_cast<const float4*>(p + 4);
    out[0] = a.x; out[1] = a.y; out[2] = a.z; out[3] = a.w;
    out[4] = b.x; out[5] = b.y; out[6] = b.z; out[7] = b.w;
}

struct DecSmem {
    float o[DEC_KEY_GROUPS][ATTN_MAX_GROUP][128];
    float m[DEC_KEY_GROUPS][ATTN_MAX_GROUP];
    float l[DEC_KEY_GROUPS][ATTN_MAX_GROUP];
};

/**
 * \brief Decode attention over keys [split*chunk_len, min((split+1)*chunk_len, seq_pos+1)); the
 * last split runs to seq_pos+1.
 * Grid: (n_seqs, n_kv_heads, n_splits). Block: 128 threads = 8 key groups of 16 lanes; a group
 * takes every 8th key of the range, each lane 8 of the 128 dims (one 16-byte load of the K and
 * the V row), and scores the key against every query head of the KV head (GQA) at once: the
 * K/V rows are read once per block, q lives in registers, a score is 4 shuffles. Each group
 * keeps an online softmax (running max, sum, unnormalised o); the 8 groups merge through smem
 * (~33 KB). n_splits == 1 writes `out` directly; otherwise partial_o (normalised) and
 * partial_lse (-inf for an empty split, whose partial_o is zero).
 * \tparam T bf16 or float. HEAD_DIM is 128 (checked on the host).
 */
template <typename T, int MAXG>
__device__ __forceinline__ void attn_decode_impl(const AttnDecodeParams& p) {
    constexpr int HEAD_DIM = 128;
    __shared__ DecSmem sm;
    const int s = blockIdx.x;
    const int kv_head = blockIdx.y;
    const int split = blockIdx.z;
    const int group = p.n_heads / p.n_kv_heads;  // <= MAXG (the host picks the instance)
    const int tid = threadIdx.x;
    const int kg = tid / DEC_GROUP_LANES;          // key group 0..7
    const int d0 = (tid % DEC_GROUP_LANES) * DEC_DIMS;
    const int ctx = p.seq_pos[s] + 1;
    const int begin = split * p.chunk_len;
    // The last split runs to the end of the context, so any (n_splits, chunk_len) covers every
    // key even when the host sized chunks from a shorter bound.
    const int end = split == p.n_splits - 1 ? ctx : min(begin + p.chunk_len, ctx);
    const int32_t* table = p.block_tables + (int64_t)s * p.max_blocks;
    const uint8_t* skip = p.key_skip ? p.key_skip + (int64_t)s * p.max_ctx : nullptr;
    const T* kc = static_cast<const T*>(p.k_cache);
    const T* vc = static_cast<const T*>(p.v_cache);

    float q[MAXG][DEC_DIMS];
    float o[MAXG][DEC_DIMS];
    float m[MAXG], l[MAXG];
#pragma unroll
    for (int g = 0; g < MAXG; ++g) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int i = 0; i < DEC_DIMS; ++i) {
            o[g][i] = 0.0f;
            q[g][i] = 0.0f;
        }
        if (g < group) {
            const int64_t row = (int64_t)s * p.n_heads + kv_head * group + g;
            const T* qh = static_cast<const T*>(p.q) + row * HEAD_DIM + d0;
#pragma unroll
            for (int i = 0; i < DEC_DIMS; ++i) q[g][i] = to_f32(qh[i]) * p.scale;
        }
    }

    // Every lane of a warp runs the same number of iterations (both halves of a warp step
    // together), so the shuffles below always see the whole warp.
    const int warp_first = begin + (kg & ~1);
    for (int base = warp_first; base < end; base += DEC_KEY_GROUPS) {
        const int key = base + (kg & 1);
        bool valid = key < end && (skip == nullptr || skip[key] == 0);
        float kf[DEC_DIMS], vf[DEC_DIMS];
#pragma unroll
        for (int i = 0; i < DEC_DIMS; ++i) kf[i] = vf[i] = 0.0f;
        if (key < end) {
            const int64_t slot = (int64_t)table[key / p.block_size] * p.block_size + key % p.block_size;
            if (slot >= 0 && slot < p.num_slots) {
                const int64_t off = (slot * p.n_kv_heads + kv_head) * HEAD_DIM + d0;
                load8(kc + off, kf);
                load8(vc + off, vf);
            }
        }
#pragma unroll
        for (int g = 0; g < MAXG; ++g) {
            if (g >= group) break;
            float acc = 0.0f;
#pragma unroll
            for (int i = 0; i < DEC_DIMS; ++i) acc += q[g][i] * kf[i];
            // Sum over the 16 lanes of this key group (xor offsets < 16 stay in the half-warp).
#pragma unroll
            for (int off = 8; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
            if (valid) {
                const float m_new = fmaxf(m[g], acc);
                const float corr = expf(m[g] - m_new);  // 0 while nothing was seen (m = -inf)
                const float pr = expf(acc - m_new);
                l[g] = l[g] * corr + pr;
#pragma unroll
                for (int i = 0; i < DEC_DIMS; ++i) o[g][i] = o[g][i] * corr + pr * vf[i];
                m[g] = m_new;
            }
        }
    }

    // Merge the key groups: group kg's state for head g -> smem, then one thread per dim.
#pragma unroll
    for (int g = 0; g < MAXG; ++g) {
        if (g >= group) break;
#pragma unroll
        for (int i = 0; i < DEC_DIMS; ++i) sm.o[kg][g][d0 + i] = o[g][i];
        if (tid % DEC_GROUP_LANES == 0) {
            sm.m[kg][g] = m[g];
            sm.l[kg][g] = l[g];
        }
    }
    __syncthreads();
    const int d = tid;  // DEC_THREADS == HEAD_DIM
    for (int g = 0; g < group; ++g) {
        float mm = -INFINITY;
#pragma unroll
        for (int k = 0; k < DEC_KEY_GROUPS; ++k) mm = fmaxf(mm, sm.m[k][g]);
        float num = 0.0f, den = 0.0f;
        if (mm != -INFINITY) {
#pragma unroll
            for (int k = 0; k < DEC_KEY_GROUPS; ++k) {
                const float w = expf(sm.m[k][g] - mm);  // 0 for a group that saw no key
                num += w * sm.o[k][g][d];
                den += w * sm.l[k][g];
            }
        }
        const int64_t row = (int64_t)s * p.n_heads + kv_head * group + g;
        const float val = den > 0.0f ? num / den : 0.0f;
        if (p.n_splits == 1) {
            static_cast<T*>(p.out)[row * HEAD_DIM + d] = from_f32<T>(val);
        } else {
            const int64_t part = row * p.n_splits + split;
            p.partial_o[part * HEAD_DIM + d] = val;
            if (d == 0) p.partial_lse[part] = den > 0.0f ? mm + logf(den) : -INFINITY;
        }
    }
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

// Two instances: GQA groups up to 4 (Higgs: 3) keep half the registers of the general one.
extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_bf16(const __grid_constant__ AttnDecodeParams p) { attn_decode_impl<bf16, ATTN_MAX_GROUP>(p); }
extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_f32(const __grid_constant__ AttnDecodeParams p) { attn_decode_impl<float, ATTN_MAX_GROUP>(p); }
extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_g4_bf16(const __grid_constant__ AttnDecodeParams p) { attn_decode_impl<bf16, 4>(p); }
extern "C" __global__ void __launch_bounds__(DEC_THREADS) attn_decode_g4_f32(const __grid_constant__ AttnDecodeParams p) { attn_decode_impl<float, 4>(p); }
extern "C" __global__ void attn_decode_merge_bf16(const __grid_constant__ AttnMergeParams p) { attn_merge_impl<bf16>(p); }
extern "C" __global__ void attn_decode_merge_f32(const __grid_constant__ AttnMergeParams p) { attn_merge_impl<float>(p); }
