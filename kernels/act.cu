/**
 * act.cu — SwiGLU activation: out = T(T(silu(gate)) · up), silu(z) = z·sigmoid(z) in f32.
 * spec: model.md §5.4, §11.5 (silu and the product each rounded to bf16).
 * CPU twin: src/backend/cpu/act.rs.
 *
 * gate/up/out are addressed with row strides so the same kernel reads the two halves of one
 * concatenated [n_rows, 2F] gate|up GEMM output (gate = base, up = base + F, stride 2F).
 */
#include "common.cuh"

struct SiluMulParams {
    const void* gate;  // row r at gate + r * gate_stride
    const void* up;    // row r at up + r * up_stride
    void* out;         // row r at out + r * out_stride
    int32_t n_rows;
    int32_t cols;
    int32_t gate_stride;
    int32_t up_stride;
    int32_t out_stride;
    int32_t _pad;
};
HIGGS_PARAMS_SIZE(SiluMulParams, 48);

/**
 * \brief Elementwise silu(gate)·up. Grid: (ceil(cols/256), n_rows). Block: 256. No smem.
 * \tparam T bf16 or float.
 */
template <typename T>
__device__ __forceinline__ void silu_mul_impl(const SiluMulParams& p) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= p.cols) return;
    const int64_t r = blockIdx.y;
    const float g = to_f32(static_cast<const T*>(p.gate)[r * p.gate_stride + c]);
    const float u = to_f32(static_cast<const T*>(p.up)[r * p.up_stride + c]);
    const float s = round_to<T>(g / (1.0f + expf(-g)));
    static_cast<T*>(p.out)[r * p.out_stride + c] = from_f32<T>(s * u);
}

extern "C" __global__ void silu_mul_bf16(const __grid_constant__ SiluMulParams p) { silu_mul_impl<bf16>(p); }
extern "C" __global__ void silu_mul_f32(const __grid_constant__ SiluMulParams p) { silu_mul_impl<float>(p); }
