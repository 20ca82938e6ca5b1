/**
 * positions, applied in place; a variant fused with the paged KV-cache write; and one that reads
 * Q, K and V in place from a fused QKV GEMM output.
 * positions, applied in place; and a variant fused with the paged KV-cache write.
 * spec: model.md §5.5, §11.3. CPU twin: src/backend/cpu/rope.rs.
 *
 *   φ = f32(pos) · inv_freq[j]        (inv_freq already llama3-scaled, f32, [head_dim/2])
 *   x'_j      = x_j · cos φ − x_{j+h} · sin φ
 *   x'_{j+h}  = x_{j+h} · cos φ + x_j · sin φ
 *
 * bf16: cos/sin are computed in f32 and rounded to bf16, each product and the sum are rounded to
 * bf16 (the reference runs `x*cos + rotate_half(x)*sin` as bf16 tensor ops). f32: no rounding.
 * sincosf (not the fast intrinsic) because angles reach pos·1.0 rad and need full range reduction.
 */
#include "common.cuh"

struct RopeParams {
    void* x;                  // [n_tokens, n_heads * head_dim], rotated in place
    const int32_t* positions; // [n_tokens]
    const float* inv_freq;    // [head_dim / 2]
    int32_t n_tokens;
    int32_t n_heads;
    int32_t head_dim;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RopeParams, 40);

struct RopeCacheParams {
    void* q;                     // [n_tokens, n_heads * head_dim], rotated in place
    void* k;                     // [n_tokens, n_kv_heads * head_dim], rotated in place
    const void* v;               // [n_tokens, n_kv_heads * head_dim]
    void* k_cache;               // [num_slots, n_kv_heads, head_dim]
    void* v_cache;               // [num_slots, n_kv_heads, head_dim]
    const int32_t* positions;    // [n_tokens]
    const int32_t* slot_mapping; // [n_tokens], -1 = do not cache
    const float* inv_freq;       // [head_dim / 2]
    int32_t n_tokens;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t num_slots;           // slots outside [0, num_slots) are skipped, never written
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RopeCacheParams, 88);

struct RopeQkvParams {
    const void* qkv;             // [n_tokens, (n_heads + 2 n_kv_heads) * head_dim]: Q | K | V
    void* q;                     // [n_tokens, n_heads * head_dim], rotated Q written here
    void* k_cache;               // [num_slots, n_kv_heads, head_dim]
    void* v_cache;               // [num_slots, n_kv_heads, head_dim]
    const int32_t* positions;    // [n_tokens]
    const int32_t* slot_mapping; // [n_tokens], -1 = do not cache
    const float* inv_freq;       // [head_dim / 2]
    int32_t n_tokens;
    int32_t n_heads;
    int32_t n_kv_heads;
    int32_t head_dim;
    int32_t num_slots;           // slots outside [0, num_slots) are skipped, never written
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(RopeQkvParams, 80);

/** Rotates pair (j, j+half) of head `src` into `dst` (which may be `src`). */
template <typename T>
__device__ __forceinline__ void rotate_pair_to(const T* src, T* dst, int j, int half, float pos,
                                               const float* inv_freq) {
    float s, c;
    sincosf(pos * inv_freq[j], &s, &c);
    c = round_to<T>(c);
    s = round_to<T>(s);
    const float a = to_f32(src[j]);
    const float b = to_f32(src[j + half]);
    const float lo = round_to<T>(round_to<T>(a * c) + round_to<T>(-b * s));
    const float hi = round_to<T>(round_to<T>(b * c) + round_to<T>(a * s));
    dst[j] = from_f32<T>(lo);
    dst[j + half] = from_f32<T>(hi);
}

/** Rotates pair (j, j+half) of one head in place; returns nothing, writes both. */
template <typename T>
__device__ __forceinline__ void rotate_pair(T* head, int j, int half, float pos, const float* inv_freq) {
    rotate_pair_to<T>(head, head, j, half, pos, inv_freq);
}

/**
 * \brief In-place RoPE on one tensor (Q or K).
 * Grid: (n_tokens, n_heads). Block: head_dim/2 threads, thread j owns pair (j, j+head_dim/2).
 * Assumes head_dim even and head_dim/2 <= 1024. No smem.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void rope_impl(const RopeParams& p) {
    const int half = p.head_dim / 2;
    const int j = threadIdx.x;
    if (j >= half) return;
    const int64_t t = blockIdx.x;
    T* head = static_cast<T*>(p.x) + (t * p.n_heads + blockIdx.y) * p.head_dim;
    rotate_pair<T>(head, j, half, (float)p.positions[t], p.inv_freq);
}

/**
 * \brief RoPE on Q and K plus the paged-cache write of rotated K and of V, in one pass.
 * Grid: (n_tokens, n_heads + n_kv_heads): y < n_heads is a Q head, the rest are KV heads.
 * Block: head_dim/2 threads, thread j owns pair (j, j+head_dim/2). No smem.
 * Each thread writes exactly the K/V elements it rotated/read, so no sync is needed.
 * \tparam T bf16 or float (q, k, v and both caches).
 */
template <typename T>
__device__ __forceinline__ void rope_cache_impl(const RopeCacheParams& p) {
    const int half = p.head_dim / 2;
    const int j = threadIdx.x;
    if (j >= half) return;
    const int64_t t = blockIdx.x;
    const int y = blockIdx.y;
    const float pos = (float)p.positions[t];
    if (y < p.n_heads) {
        T* head = static_cast<T*>(p.q) + (t * p.n_heads + y) * p.head_dim;
        rotate_pair<T>(head, j, half, pos, p.inv_freq);
        return;
    }
    const int kh = y - p.n_heads;
    const int64_t off = (t * p.n_kv_heads + kh) * p.head_dim;
    T* k = static_cast<T*>(p.k) + off;
    rotate_pair<T>(k, j, half, pos, p.inv_freq);
    const int32_t slot = p.slot_mapping[t];
    if (slot < 0 || slot >= p.num_slots) return;
    const int64_t dst = ((int64_t)slot * p.n_kv_heads + kh) * p.head_dim;
    const T* v = static_cast<const T*>(p.v) + off;
    T* kc = static_cast<T*>(p.k_cache) + dst;
    T* vc = static_cast<T*>(p.v_cache) + dst;
    kc[j] = k[j];
    kc[j + half] = k[j + half];
    vc[j] = v[j];
    vc[j + half] = v[j + half];
}

/**
 * \brief rope_cache on the output of one fused QKV GEMM: Q, K and V are column ranges of each
 * `qkv` row (row stride (n_heads + 2 n_kv_heads) * head_dim), read in place with no split
 * copies; rotated Q goes to the contiguous `q` the attention kernels read, rotated K and V go
 * straight to the cache (the K/V columns of `qkv` are left as they are).
 * Grid: (n_tokens, n_heads + n_kv_heads). Block: head_dim/2 threads. No smem.
 * Same arithmetic per element as rope_cache_impl, so the same bits.
 */
template <typename T>
__device__ __forceinline__ void rope_qkv_impl(const RopeQkvParams& p) {
    const int half = p.head_dim / 2;
    const int j = threadIdx.x;
    if (j >= half) return;
    const int64_t t = blockIdx.x;
    const int y = blockIdx.y;
    const float pos = (float)p.positions[t];
    const int64_t q_width = (int64_t)p.n_heads * p.head_dim;
    const int64_t kv_width = (int64_t)p.n_kv_heads * p.head_dim;
    const T* row = static_cast<const T*>(p.qkv) + t * (q_width + 2 * kv_width);
    if (y < p.n_heads) {
        T* dst = static_cast<T*>(p.q) + t * q_width + (int64_t)y * p.head_dim;
        rotate_pair_to<T>(row + (int64_t)y * p.head_dim, dst, j, half, pos, p.inv_freq);
        return;
    }
    const int kh = y - p.n_heads;
    const int32_t slot = p.slot_mapping[t];
    if (slot < 0 || slot >= p.num_slots) return;
    const int64_t dst = ((int64_t)slot * p.n_kv_heads + kh) * p.head_dim;
    T* kc = static_cast<T*>(p.k_cache) + dst;
    T* vc = static_cast<T*>(p.v_cache) + dst;
    rotate_pair_to<T>(row + q_width + (int64_t)kh * p.head_dim, kc, j, half, pos, p.inv_freq);
    const T* v = row + q_width + kv_width + (int64_t)kh * p.head_dim;
    vc[j] = v[j];
    vc[j + half] = v[j + half];
}

extern "C" __global__ void rope_bf16(const __grid_constant__ RopeParams p) { rope_impl<bf16>(p); }
extern "C" __global__ void rope_f32(const __grid_constant__ RopeParams p) { rope_impl<float>(p); }
extern "C" __global__ void rope_cache_bf16(const __grid_constant__ RopeCacheParams p) { rope_cache_impl<bf16>(p); }
extern "C" __global__ void rope_cache_f32(const __grid_constant__ RopeCacheParams p) { rope_cache_impl<float>(p); }
extern "C" __global__ void rope_qkv_bf16(const __grid_constant__ RopeQkvParams p) { rope_qkv_impl<bf16>(p); }
extern "C" __global__ void rope_qkv_f32(const __grid_constant__ RopeQkvParams p) { rope_qkv_impl<float>(p); }
