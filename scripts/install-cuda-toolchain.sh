#!/usr/bin/env bash
# Installs the pinned CUDA 13.0 compiler toolchain (nvcc, crt headers, cudart headers, CCCL, NVVM)
# from PyPI into <repo>/.cuda-toolchain (git-ignored), then checks that it compiles a kernel and
# prints the NVCC path that build.rs will pick up on its own (or export NVCC=<that path>).
#
# Stay on 13.0: a newer nvcc emits PTX with an ISA version the GPU machines' driver cannot JIT.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$repo/.cuda-toolchain"
python="${PYTHON:-python3}"

"$python" -m pip install --quiet --disable-pip-version-check --upgrade --target "$target" \
    nvidia-cuda-nvcc==13.0.88 \
    nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 \
    nvidia-cuda-cccl==13.0.85 \
    nvidia-nvvm==13.0.88

cu="$target/nvidia/cu13"
nvcc="$cu/bin/nvcc"
if [[ ! -x "$nvcc" ]]; then
    echo "error: nvcc not found at $nvcc after install" >&2
    exit 1
fi

# nvcc looks for cicc under ../nvvm/bin relative to itself; the nvvm wheel may put it elsewhere.
if [[ ! -x "$cu/nvvm/bin/cicc" ]]; then
    cicc="$(find "$target" -path '*nvvm/bin/cicc' -type f | head -n1 || true)"
    if [[ -z "$cicc" ]]; then
        echo "error: cicc (nvvm) not found under $target" >&2
        exit 1
    fi
    ln -sfn "$(dirname "$(dirname "$cicc")")" "$cu/nvvm"
fi

# Smoke test: one kernel through cicc + ptxas for the arches build.rs uses.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cat >"$tmp/smoke.cu" <<'CU'
#include <cuda_bf16.h>
extern "C" __global__ void smoke(__nv_bfloat16* x) { x[threadIdx.x] = __float2bfloat16(1.0f); }
CU
"$nvcc" -std=c++17 -O3 -fatbin \
    -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90a,code=sm_90a \
    -gencode arch=compute_80,code=compute_80 \
    -I"$cu/include" -I"$cu/include/cccl" \
    -o "$tmp/smoke.fatbin" "$tmp/smoke.cu"

echo "CUDA toolchain OK: $("$nvcc" --version | tail -n1)"
echo "NVCC=$nvcc"
