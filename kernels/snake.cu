/**
 * snake.cu — standalone Snake activation in place on a single-batch [channels, t] f32 buffer,
 * per-channel alpha. Used where Snake is not fused into the next conv's load (conv1d.cu).
 * spec: codec.md §3.2, §11.4. CPU twin: src/codec/layers.rs `snake_inplace`.
 */
#include "common.cuh"
#include "snake.cuh"

struct SnakeParams {
    float* x;            // [channels, t], updated in place
    const float* alpha;  // [channels]
    int32_t channels;
    int32_t t;
};
HIGGS_PARAMS_SIZE(SnakeParams, 24);

/**
 * \brief Elementwise Snake, one thread per element of one channel row.
 * Grid: (ceil(t / blockDim.x), channels). Block: 256 threads (any size). Smem: none.
 * Assumptions: channels <= 65535 (grid.y); each element is read and written by one thread.
 */
extern "C" __global__ void snake_f32(const __grid_constant__ SnakeParams p) {
    const int c = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= p.channels || i >= p.t) return;
    float* row = p.x + (int64_t)c * p.t;
    row[i] = snake_f(row[i], p.alpha[c]);
}
