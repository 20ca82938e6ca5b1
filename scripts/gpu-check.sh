#!/usr/bin/env bash
# GPU check, for the device machine (driver + nvcc 13.0, NO Rust): runs the prebuilt CUDA
# conformance test binaries (kernels, then the whole model against the CPU engine) and
# `higgs bench` (real shapes, bf16, batch 1..128) from a bundle made by
# scripts/build-gpu-bundle.sh, then prints one summary table. Budget: under 10 minutes on an
# H100 (timeouts 100 + 60 + 60 + 60 + 150 + 60 s = 490 s).
#
# Usage (repo root on the device):   bash out/gpu/gpu-check.sh [bundle dir, default out/gpu]
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bundle="${1:-$here}"
cd "$bundle"

# cuBLAS / NVRTC ship with the device image's python (nvidia-* wheels; CUDA 13 wheels put them
# in nvidia/cu13/lib), not in a system lib dir: add every such lib folder that holds one.
for d in $(python3 - <<'PY' 2>/dev/null
import glob, os, site, sys
roots = set(site.getsitepackages() + [site.getusersitepackages()] + sys.path)
seen = set()
for r in roots:
    for pat in ("nvidia/*/lib", "nvidia/cu13/lib", "nvidia/*/lib64"):
        for d in glob.glob(os.path.join(r, pat)):
            if glob.glob(os.path.join(d, "libcublas*.so*")) or glob.glob(os.path.join(d, "libnvrtc*.so*")):
                if d not in seen:
                    seen.add(d); print(d)
PY
); do
    export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
for d in /usr/local/cuda/lib64 /usr/local/nvidia/lib64; do
    [[ -d "$d" ]] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
# Full logs come back from the device machine when $OUT is set (the device tool sets it).
logdir="${OUT:-$(mktemp -d)}"
gpu="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n1)"
commit="$(cat COMMIT 2>/dev/null || echo unknown)"
declare -a rows

# 1. Conformance: every kernel family vs its CPU twin. Synchronise after every launch so a
#    fault is reported by the kernel that caused it.
conf_log="$logdir/conformance.log"
start=$(date +%s)
HIGGS_CUDA_SYNC=1 timeout 100 ./conformance_cuda --test-threads=1 --nocapture >"$conf_log" 2>&1
conf_rc=$?
secs=$(( $(date +%s) - start ))
grep -E "^test |seed|panicked|max rel err|guard|skipped" "$conf_log" | tail -n 60
while read -r name status; do
    rows+=("conformance/$name|$status|")
done < <(grep -E "^test .* \.\.\. " "$conf_log" | sed -E 's/^test ([^ ]+) \.\.\. ([a-zA-Z]+).*/\1 \2/')
if grep -q "skipped: no CUDA device" "$conf_log"; then
    rows+=("conformance|SKIPPED|no CUDA device seen by the test binary")
fi
rows+=("conformance total|rc=$conf_rc|${secs}s")

# 1b. The whole model (one code path) on CUDA vs the CPU engine on the reference fixture:
#     f32 greedy codes identical, hidden within 1e-4; bf16 logits within 3e-2.
model_log="$logdir/model.log"
start=$(date +%s)
HIGGS_FIXTURES="$PWD/fixtures/reference" timeout 60 ./conformance_model_cuda --test-threads=1 --nocapture >"$model_log" 2>&1
model_rc=$?
secs=$(( $(date +%s) - start ))
grep -E "^test |f32 codes|bf16 |panicked|skipped|assert|step graphs|sampled|warning" "$model_log" | tail -n 50
while read -r name status; do
    rows+=("model/$name|$status|")
done < <(grep -E "^test .* \.\.\. " "$model_log" | sed -E 's/^test ([^ ]+) \.\.\. ([a-zA-Z]+).*/\1 \2/')
if grep -q "skipped: no CUDA device" "$model_log"; then
    rows+=("model conformance|SKIPPED|no CUDA device seen by the test binary")
fi
rows+=("model conformance total|rc=$model_rc|${secs}s")

# 1c. Codec kernels and on-device sampling (issue 6) vs their CPU twins.
for t in conformance_codec_cuda conformance_sampling_cuda conformance_conv_gemm_cuda; do
    log="$logdir/$t.log"
    start=$(date +%s)
    HIGGS_FIXTURES="$PWD/fixtures/reference" HIGGS_CUDA_SYNC=1 timeout 60 "./$t" --test-threads=1 --nocapture >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    grep -E "^test |panicked|max rel|skipped|codec (decode|stream)|sampled" "$log" | tail -n 24
    while read -r name status; do
        rows+=("$t/$name|$status|")
    done < <(grep -E "^test .* \.\.\. " "$log" | sed -E 's/^test ([^ ]+) \.\.\. ([a-zA-Z]+).*/\1 \2/')
    rows+=("$t total|rc=$rc|${secs}s")
done

# 1d. The TTS command end to end on the GPU (model f32 + codec decode on CUDA) against the same
#     command on the CPU: greedy without RAS (its re-draws are random, and the backends draw
#     from different generators), fixture weights; the WAVs must agree to 16-bit rounding.
tts_log="$logdir/tts.log"
tts_args=(tts --model fixtures/reference/llm --audio-tokenizer fixtures/reference/codec
    --tokenizer fixtures/toy-tokenizer.json --text "The GPU speaks as the CPU does." --seed 1
    --temperature 0 --ras-win-len 0 --force-audio --max-new-tokens 120)
start=$(date +%s)
{ timeout 60 ./higgs "${tts_args[@]}" --device cuda --dtype f32 -o "$logdir/tts_cuda.wav" &&
  timeout 60 ./higgs "${tts_args[@]}" --device cpu -o "$logdir/tts_cpu.wav" &&
  python3 - "$logdir/tts_cuda.wav" "$logdir/tts_cpu.wav" <<'PY'
import sys, wave, numpy as np
a, b = (np.frombuffer(wave.open(p).readframes(1 << 30), dtype=np.int16).astype(np.int32) for p in sys.argv[1:3])
print(f"tts wav: cuda {a.size} samples, cpu {b.size} samples, max |diff| {np.abs(a - b).max() if a.size == b.size and a.size else 'n/a'}")
sys.exit(0 if a.size == b.size and a.size > 0 and np.abs(a - b).max() <= 2 else 1)
PY
} >"$tts_log" 2>&1
tts_rc=$?
grep -E "tts wav|error|loaded" "$tts_log" | tail -n 4
rows+=("tts cuda vs cpu (f32, greedy)|rc=$tts_rc|$(( $(date +%s) - start ))s")

# 2. End-to-end bench (real shapes, random weights). Fails gracefully if the flags differ.
bench_log="$logdir/bench.log"
start=$(date +%s)
timeout 150 ./higgs bench --device cuda --shape real --dtype bf16 --batch 1,8,32,64,128 --first-audio --phases --ops --kernels >"$bench_log" 2>&1
bench_rc=$?
timeout 60 ./higgs bench --device cuda --codec --codec-seconds 10 >>"$bench_log" 2>&1 || bench_rc=$?
secs=$(( $(date +%s) - start ))
tail -n 80 "$bench_log"
if [[ $bench_rc -ne 0 ]]; then
    reason="$(grep -m1 -iE "error|unexpected|unrecognized" "$bench_log" | cut -c1-80)"
    rows+=("higgs bench|FAILED rc=$bench_rc|${reason:-see log above}")
else
    rows+=("higgs bench|ok|${secs}s")
fi

echo
echo "== gpu-check: ${gpu:-no nvidia-smi} | commit $commit =="
printf '%-52s %-14s %s\n' "check" "result" "note"
for r in "${rows[@]}"; do
    IFS='|' read -r a b c <<<"$r"
    printf '%-52s %-14s %s\n' "$a" "$b" "$c"
done
[[ $conf_rc -eq 0 && $model_rc -eq 0 && $tts_rc -eq 0 ]]
