/**
 * sampling.cu — on-device token sampling: suppress → greedy argmax, or temperature → top-k →
 * top-p → softmax + multinomial; the RAS re-draw; and the delay-pattern state machine of one
 * audio step, so an audio step needs no host round trip but the read-back of its column.
 * spec: model.md §8.4–§8.6. CPU twin: src/sampling/processors.rs (`sample`, `ras_count`,
 * `ras_redraw`) and src/generate.rs (`Engine::sample_step`). Rust side: src/backend/cuda/sampling.rs.
 *
 * Numerics: everything f32. Top-k and argmax are exact (order-preserving integer keys, first
 * maximal index). Top-p and the multinomial inverse CDF use block reductions, whose summation
 * order differs from the CPU's sequential cumsum, so an entry whose cumulative mass sits within
 * rounding of the threshold (or of the uniform draw) may fall on the other side; there is no
 * sort: thresholds are found by bitwise binary search over keys (32 reduction passes) and
 * indices (⌈log2 cols⌉ passes), each deterministic run to run.
 * NaN scores count as −inf everywhere (never win, never drawn), as the CPU's `nan_low`.
 */
#include "common.cuh"

/** Per-row sampling settings (one entry per row of a launch). Rust: `SamplingRowParams`. */
struct SamplingRowParams {
    float temperature;       // <= 0 or NaN: greedy
    float top_p;             // >= 1 or NaN: off
    int32_t top_k;           // <= 0: off
    int32_t ras_win_len;     // <= 0: off (audio rows only)
    int32_t ras_max_repeat;  // re-draw when count >= this
    int32_t _pad;
    uint64_t seed;           // per request
    uint64_t offset;         // per row within the request (e.g. codebook index)
};
HIGGS_PARAMS_SIZE(SamplingRowParams, 40);

struct SamplingUniformParams {
    const SamplingRowParams* row_params;  // [n_rows]
    float* uniforms;                      // [n_rows, 2]: draw, RAS re-draw
    uint64_t step;                        // decoding step counter (host-side, no read-back)
    int32_t n_rows;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(SamplingUniformParams, 32);

struct SamplingRowsParams {
    const float* logits;                  // [n_rows, cols] raw logits (kept for RAS)
    float* scores;                        // [n_rows, cols] processed scores (workspace, output)
    const float* uniforms;                // [n_rows, 2]
    const SamplingRowParams* row_params;  // [n_rows]
    const int32_t* suppress;              // [n_suppress] ids, shared by all rows; may be null
    int32_t* sampled;                     // [n_rows]
    const int32_t* history;               // RAS: [n_seqs, ring_len, n_codebooks] or null
    const int32_t* hist_len;              // RAS: [n_seqs] columns pushed so far
    int32_t* ras_hit;                     // RAS: [n_rows] 1 when re-drawn, else 0
    int32_t n_rows;
    int32_t cols;
    int32_t n_suppress;
    int32_t ras;          // 1: rows are [n_seqs, n_codebooks] audio rows with RAS
    int32_t n_codebooks;  // audio rows per sequence
    int32_t ring_len;     // history ring length (columns)
};
HIGGS_PARAMS_SIZE(SamplingRowsParams, 96);

struct SamplingDelayParams {
    const int32_t* sampled;   // [n_seqs, C] this step's (RAS-applied) symbols
    int32_t* last_token;      // [n_seqs] last text token of `ids`: decides the mode
    int32_t* num_delay;       // [n_seqs]
    int32_t* num_remaining;   // [n_seqs], -1 = none
    int32_t* history;         // [n_seqs, ring_len, C] audio_out ring
    int32_t* hist_len;        // [n_seqs]
    int32_t* column_out;      // [n_seqs, C] the step's column (-1 when no audio step)
    int32_t* token_out;       // [n_seqs] the step's text token (-1 when no audio step)
    int32_t n_seqs;
    int32_t n_codebooks;
    int32_t ring_len;
    int32_t use_delay;
    int32_t audio_out_bos;    // 128013 <|audio_out_bos|>
    int32_t audio_out;        // 128016 <|AUDIO_OUT|>
    int32_t audio_eos;        // 128012 <|audio_eos|>
    int32_t stream_bos;       // 1024
    int32_t stream_eos;       // 1025
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(SamplingDelayParams, 104);

#define SAMPLING_MAX_CODEBOOKS 32

// ---------------------------------------------------------------------------------------------
// Device helpers
// ---------------------------------------------------------------------------------------------

__device__ __forceinline__ float nan_low(float x) { return isnan(x) ? -INFINITY : x; }

/** Order-preserving map float → uint32 (total order; callers map NaN to −inf first). */
__device__ __forceinline__ uint32_t f2key(float x) {
    const uint32_t b = __float_as_uint(x);
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}
__device__ __forceinline__ float key2f(uint32_t k) {
    return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

__device__ __forceinline__ float block_max(float v, float* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : -INFINITY;
    return warp_max(v);
}

__device__ __forceinline__ int warp_max_i(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ int warp_min_i(int v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ int block_max_i(int v, int* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_max_i(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : INT_MIN;
    return warp_max_i(v);
}
__device__ __forceinline__ int block_min_i(int v, int* scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
    v = warp_min_i(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    v = lane < n_warps ? scratch[lane] : INT_MAX;
    return warp_min_i(v);
}

struct RowScratch {
    float f[32];
    int i[32];
};

/** First index of the maximal entry; NaN never wins; all-NaN (or empty) gives 0. */
__device__ int row_argmax(const float* s, int n, RowScratch& sh) {
    float best = -INFINITY;
    int best_i = INT_MAX;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const float v = s[i];
        if (isnan(v)) continue;
        if (best_i == INT_MAX || v > best) { best = v; best_i = i; }  // strided: i ascends
    }
    const float m = block_max(best_i == INT_MAX ? -INFINITY : best, sh.f);
    const int cand = (best_i != INT_MAX && best == m) ? best_i : INT_MAX;
    const int idx = block_min_i(cand, sh.i);
    return idx == INT_MAX ? 0 : idx;
}

/** Block-wide row max over nan_low values. */
__device__ float row_max(const float* s, int n, RowScratch& sh) {
    float m = -INFINITY;
    for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, nan_low(s[i]));
    return block_max(m, sh.f);
}

/** Σ exp(s − max) over the row (NaN → 0). */
__device__ float row_expsum(const float* s, int n, float mx, RowScratch& sh) {
    float acc = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc += expf(nan_low(s[i]) - mx);
    return block_sum(acc, sh.f);
}

/**
 * One multinomial draw from softmax(s) at uniform `u`: the first index whose inclusive
 * cumulative probability exceeds u (found by binary search on the index, one block sum per
 * step). No finite max (or a +inf) → argmax; rounding past the total → last drawable index.
 */
__device__ int row_draw(const float* s, int n, float u, RowScratch& sh) {
    const float mx = row_max(s, n, sh);
    if (!isfinite(mx)) return row_argmax(s, n, sh);
    const float inv = 1.0f / row_expsum(s, n, mx, sh);
    int lo = 0, hi = n;  // answer in [lo, hi); hi = n means "none"
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        float acc = 0.0f;
        for (int i = threadIdx.x; i <= mid; i += blockDim.x) acc += expf(nan_low(s[i]) - mx) * inv;
        if (block_sum(acc, sh.f) > u) hi = mid; else lo = mid + 1;
    }
    if (lo < n) return lo;
    int last = -1;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (expf(nan_low(s[i]) - mx) * inv > 0.0f) last = i;
    last = block_max_i(last, sh.i);
    return last >= 0 ? last : row_argmax(s, n, sh);
}

/** HF top-k: keep entries ≥ the k-th largest (ties kept), others → −inf. */
__device__ void row_top_k(float* s, int n, int k, RowScratch& sh) {
    if (k <= 0 || k >= n) return;
    uint32_t key = 0;  // the largest key with count(key_i ≥ key) ≥ k: the k-th largest
    for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = key | (1u << bit);
        float c = 0.0f;  // counts ≤ 2^24 are exact in f32
        for (int i = threadIdx.x; i < n; i += blockDim.x) c += f2key(nan_low(s[i])) >= cand ? 1.0f : 0.0f;
        if (block_sum(c, sh.f) >= (float)k) key = cand;
    }
    const float kth = key2f(key);
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (isnan(s[i]) || s[i] < kth) s[i] = -INFINITY;
    __syncthreads();
}

/**
 * HF top-p: in ascending (value, index) order, drop entries whose inclusive cumulative
 * softmax is ≤ 1 − top_p, always keeping the last (largest value, highest index).
 * The dropped set is a prefix of that order: all keys below `k_star`, plus the first `m`
 * entries (by index) that equal it.
 */
__device__ void row_top_p(float* s, int n, float top_p, RowScratch& sh) {
    if (isnan(top_p) || top_p >= 1.0f || n == 0) return;
    const float mx = row_max(s, n, sh);
    if (!isfinite(mx)) return;
    const float inv = 1.0f / row_expsum(s, n, mx, sh);
    const float thr = 1.0f - top_p;
    // Largest key `below` with mass(key_i ≤ below) ≤ thr.
    uint32_t below = 0;
    for (int bit = 31; bit >= 0; --bit) {
        const uint32_t cand = below | (1u << bit);
        float acc = 0.0f;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = nan_low(s[i]);
            if (f2key(v) <= cand) acc += expf(v - mx) * inv;
        }
        if (block_sum(acc, sh.f) <= thr) below = cand;
    }
    // The entry always kept: highest index holding the max value.
    int last = -1;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        if (nan_low(s[i]) == mx) last = i;
    last = block_max_i(last, sh.i);

    uint32_t k_star;
    int m_last = -1;  // tied entries with index ≤ m_last (and key == k_star) are dropped too
    if (below == 0xffffffffu) {
        k_star = 0xffffffffu;  // everything is ≤ thr: drop all but `last`
    } else {
        k_star = below + 1;
        float acc = 0.0f, cnt = 0.0f;
        for (int i = threadIdx.x; i < n; i += blockDim.x) {
            const float v = nan_low(s[i]);
            const uint32_t kv = f2key(v);
            if (kv < k_star) acc += expf(v - mx) * inv;
            if (kv == k_star) cnt += 1.0f;
        }
        const float mass_below = block_sum(acc, sh.f);
        const int c = (int)block_sum(cnt, sh.f);
        const float q = expf(key2f(k_star) - mx) * inv;
        // Sequential, as the CPU cumsum walks the tie group (one thread; all do the same).
        int m = 0;
        float cum = mass_below;
        while (m < c) {
            cum += q;
            if (cum <= thr) ++m; else break;
        }
        if (m > 0) {
            int lo = 0, hi = n - 1;  // smallest index with m tied entries at or before it
            while (lo < hi) {
                const int mid = lo + (hi - lo) / 2;
                float t = 0.0f;
                for (int i = threadIdx.x; i <= mid; i += blockDim.x)
                    t += f2key(nan_low(s[i])) == k_star ? 1.0f : 0.0f;
                if (block_sum(t, sh.f) >= (float)m) hi = mid; else lo = mid + 1;
            }
            m_last = lo;
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (i == last) continue;
        const uint32_t kv = f2key(nan_low(s[i]));
        const bool drop = k_star == 0xffffffffu || kv < k_star || (kv == k_star && i <= m_last);
        if (drop) s[i] = -INFINITY;
    }
    __syncthreads();
}

/** splitmix64 finaliser: a counter-based hash, enough for per-request uniform draws. */
__device__ __forceinline__ uint64_t mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/**
 * \brief Fills two uniforms in [0, 1) per row from (seed, offset, step, j) with a counter-based
 *        hash: u = top 24 bits · 2^-24, so 1.0 is unreachable (as `SeededRng::next_f32`).
 * Grid: ceil(n_rows / 256). Block: 256 threads, one row each. Smem: none.
 */
extern "C" __global__ void sampling_uniform_f32(const __grid_constant__ SamplingUniformParams p) {
    const int row = blockIdx.x * blockDim.x + threadIdx.x;
    if (row >= p.n_rows) return;
    const SamplingRowParams rp = p.row_params[row];
    for (int j = 0; j < 2; ++j) {
        const uint64_t h = mix64(mix64(rp.seed ^ mix64(rp.offset)) ^ mix64(p.step * 2 + j));
        p.uniforms[row * 2 + j] = (float)(uint32_t)(h >> 40) * (1.0f / 16777216.0f);
    }
}

/**
 * \brief Samples one id per row: copy logits → scores with the suppress list at −inf; greedy
 *        rows take the first argmax; others apply temperature (true division, skipped at 1),
 *        top-k, top-p and draw with uniforms[row·2]. With `ras`, audio row (seq, c) then counts
 *        its id in the last ras_win_len columns of the history ring and, when the count reaches
 *        ras_max_repeat, re-draws from softmax of the RAW logits with uniforms[row·2 + 1].
 * Grid: (n_rows). Block: 256 threads (any multiple of 32 up to 1024). Smem: 256 B static.
 * `scores` holds the processed row afterwards (the masks the tests compare).
 * Assumes ras_win_len ≤ ring_len when `ras` (checked on the host).
 */
extern "C" __global__ void sampling_rows_f32(const __grid_constant__ SamplingRowsParams p) {
    __shared__ RowScratch sh;
    const int row = blockIdx.x;
    const int n = p.cols;
    const float* z = p.logits + (int64_t)row * n;
    float* s = p.scores + (int64_t)row * n;
    const SamplingRowParams rp = p.row_params[row];

    for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = z[i];
    __syncthreads();
    for (int j = threadIdx.x; j < p.n_suppress; j += blockDim.x) {
        const int id = p.suppress[j];
        if (id >= 0 && id < n) s[id] = -INFINITY;
    }
    __syncthreads();

    int tok;
    const bool greedy = isnan(rp.temperature) || rp.temperature <= 0.0f;
    if (greedy) {
        tok = row_argmax(s, n, sh);
    } else {
        if (rp.temperature != 1.0f) {
            for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = s[i] / rp.temperature;
            __syncthreads();
        }
        row_top_k(s, n, rp.top_k, sh);
        row_top_p(s, n, rp.top_p, sh);
        tok = row_draw(s, n, p.uniforms[row * 2], sh);
    }

    if (p.ras) {
        int hit = 0;
        if (rp.ras_win_len > 0) {
            const int seq = row / p.n_codebooks, c = row % p.n_codebooks;
            const int len = p.hist_len[seq];
            const int win = min(rp.ras_win_len, len);
            float cnt = 0.0f;
            for (int j = threadIdx.x; j < win; j += blockDim.x) {
                const int col = (len - 1 - j) % p.ring_len;
                const int64_t at = ((int64_t)seq * p.ring_len + col) * p.n_codebooks + c;
                cnt += p.history[at] == tok ? 1.0f : 0.0f;
            }
            if ((int)block_sum(cnt, sh.f) >= rp.ras_max_repeat) {
                hit = 1;
                tok = row_draw(z, n, p.uniforms[row * 2 + 1], sh);
            }
        }
        if (threadIdx.x == 0) p.ras_hit[row] = hit;
    }
    if (threadIdx.x == 0) p.sampled[row] = tok;
}

/**
 * \brief The per-sequence audio-step state machine (spec §8.6), one thread per sequence.
 *        Mode from last_token: <|audio_out_bos|> → AUDIO_INIT (all-BOS column, emit
 *        <|AUDIO_OUT|>, reset the counters); <|AUDIO_OUT|> → AUDIO_IN_PROGRESS (take the sampled
 *        column, force stream BOS rows while num_delay + 1 < C, force EOS rows from
 *        num_remaining, or from the FIRST row holding EOS, emit <|audio_eos|> when the
 *        remaining delays reach 0); anything else → no audio step (column and token −1).
 *        Audio steps append their column to the history ring and set last_token.
 * Grid: ceil(n_seqs / 128). Block: 128 threads. Smem: none. Assumes C ≤ 32.
 */
extern "C" __global__ void sampling_delay_step(const __grid_constant__ SamplingDelayParams p) {
    const int seq = blockIdx.x * blockDim.x + threadIdx.x;
    if (seq >= p.n_seqs) return;
    const int C = p.n_codebooks;
    int col[SAMPLING_MAX_CODEBOOKS];
    const int last = p.last_token[seq];
    int token;
    if (last == p.audio_out_bos) {
        for (int c = 0; c < C; ++c) col[c] = p.stream_bos;
        token = p.audio_out;
        p.num_delay[seq] = 0;
        p.num_remaining[seq] = -1;
    } else if (last == p.audio_out) {
        for (int c = 0; c < C; ++c) col[c] = p.sampled[seq * C + c];
        token = p.audio_out;
        if (p.use_delay) {
            int nd = p.num_delay[seq];
            int nr = p.num_remaining[seq];
            bool has_nr = nr >= 0;
            if (nd + 1 < C) {
                for (int c = nd + 1; c < C; ++c) col[c] = p.stream_bos;
                ++nd;
            }
            if (has_nr) {
                const int upto = max(0, min(C, C - nr));
                for (int c = 0; c < upto; ++c) col[c] = p.stream_eos;
                --nr;
            } else {
                int i_eos = -1;
                for (int c = 0; c < C && i_eos < 0; ++c)
                    if (col[c] == p.stream_eos) i_eos = c;
                if (i_eos >= 0) {
                    for (int c = 0; c < i_eos; ++c) col[c] = p.stream_eos;
                    nr = C - i_eos - 1;
                    has_nr = true;
                }
            }
            if (has_nr && nr <= 0) {
                token = p.audio_eos;
                nd = 0;
                has_nr = false;
            }
            p.num_delay[seq] = nd;
            p.num_remaining[seq] = has_nr ? nr : -1;
        }
    } else {
        for (int c = 0; c < C; ++c) p.column_out[seq * C + c] = -1;
        p.token_out[seq] = -1;
        return;
    }
    const int len = p.hist_len[seq];
    const int64_t slot = ((int64_t)seq * p.ring_len + len % p.ring_len) * C;
    for (int c = 0; c < C; ++c) {
        p.history[slot + c] = col[c];
        p.column_out[seq * C + c] = col[c];
    }
    p.hist_len[seq] = len + 1;
    p.token_out[seq] = token;
    p.last_token[seq] = token;
}
