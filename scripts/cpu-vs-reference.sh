#!/usr/bin/env bash
# The CPU side by side of issue 15: `higgs bench` against the PyTorch reference on this machine,
# both at f32 (the reference's fastest CPU dtype on AVX2), medium LLM shape with a 64-token
# prompt (ours also with bf16 weights, f32 math), and the released-size codec on 5 s of audio. Each bench runs REPEATS times (default 3)
# and the median is kept; prints the four ratios reference time / our time (> 1: we are faster).
# Needs a Python with torch 2.5.1, transformers 4.46.3, boson-multimodal 0.1.1 (and for the codec
# torchaudio, descript-audio-codec, vector-quantize-pytorch, einops): see the two bench-reference
# scripts. PYTHON picks the interpreter (default python3).
# Usage: scripts/cpu-vs-reference.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
REPEATS="${REPEATS:-3}"
LOG="$(mktemp -d)"
trap 'rm -rf "$LOG"' EXIT

cargo build --release --quiet
HIGGS="${CARGO_TARGET_DIR:-target}/release/higgs"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

# median of the numbers on stdin
median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) exit 1; print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
# the field after WORD on the first line matching PATTERN in FILE
field_after() { grep -m1 -E "$2" "$1" | awk -v w="$3" '{for (i = 1; i < NF; i++) if ($i == w) {print $(i+1); exit}}'; }

for i in $(seq "$REPEATS"); do
    $HIGGS bench --shape medium --dtype f32 --prompt-len 64 --steps 4 --batch 1 >"$LOG/ours_llm_$i" 2>/dev/null
    $HIGGS bench --shape medium --dtype bf16 --prompt-len 64 --steps 4 --batch 1 >"$LOG/ours_bf16_$i" 2>/dev/null
    $HIGGS bench --codec --codec-seconds 5 >"$LOG/ours_codec_$i" 2>/dev/null
    "$PYTHON" scripts/bench-reference.py medium 64 4 f32 >"$LOG/ref_llm_$i" 2>/dev/null
    "$PYTHON" scripts/bench-reference-codec.py 5 >"$LOG/ref_codec_$i" 2>/dev/null
    echo "run $i of $REPEATS done" >&2
done

collect() { # FILE-PREFIX PATTERN WORD -> median over runs
    for i in $(seq "$REPEATS"); do field_after "$LOG/$1_$i" "$2" "$3"; done | median
}
# ours: "prefill      64 tokens      3.450 s", "decode   batch    1     144.0 ms/step",
#       "decode  125 frames -> ... 6.650 s", "encode  120000 samples -> 125 frames  11.3 s"
o_prefill=$(collect ours_llm '^prefill' tokens)
o_decode=$(collect ours_llm '^decode +batch +1 ' 1)
o_prefill_bf=$(collect ours_bf16 '^prefill' tokens)
o_decode_bf=$(collect ours_bf16 '^decode +batch +1 ' 1)
o_cdec=$(collect ours_codec '^decode ' samples)
o_cenc=$(collect ours_codec '^encode ' frames)
# reference: "reference prefill 64 tokens 1.990 s", "reference decode batch 1 255.0 ms/step",
#            "reference decode 125 frames -> 120000 samples  2.590 s", "reference encode -> (..)  9.1 s"
r_prefill=$(collect ref_llm 'reference prefill' tokens)
r_decode=$(collect ref_llm 'reference decode batch 1' 1)
r_cdec=$(collect ref_codec 'reference decode' samples)
r_cenc=$(for i in $(seq "$REPEATS"); do grep -m1 'reference encode' "$LOG/ref_codec_$i" | sed -E 's/.*\)  *([0-9.]+) s.*/\1/'; done | median)

ratio() { awk -v r="$1" -v o="$2" 'BEGIN {printf "%.2fx", r / o}'; }
printf '%-14s %12s %12s %8s\n' "" "reference" "higgs" "ratio"
printf '%-14s %10s s %10s s %8s\n' "prefill 64" "$r_prefill" "$o_prefill" "$(ratio "$r_prefill" "$o_prefill")"
printf '%-14s %7s ms/st %7s ms/st %8s\n' "decode b1" "$r_decode" "$o_decode" "$(ratio "$r_decode" "$o_decode")"
printf '%-14s %10s s %10s s %8s\n' "prefill bf16w" "$r_prefill" "$o_prefill_bf" "$(ratio "$r_prefill" "$o_prefill_bf")"
printf '%-14s %7s ms/st %7s ms/st %8s\n' "decode bf16w" "$r_decode" "$o_decode_bf" "$(ratio "$r_decode" "$o_decode_bf")"
printf '%-14s %10s s %10s s %8s\n' "codec decode" "$r_cdec" "$o_cdec" "$(ratio "$r_cdec" "$o_cdec")"
printf '%-14s %10s s %10s s %8s\n' "codec encode" "$r_cenc" "$o_cenc" "$(ratio "$r_cenc" "$o_cenc")"
echo "(ratio = reference time / higgs time, median of $REPEATS runs; > 1 means higgs is faster."
echo " bf16w rows: higgs with bf16 weights widened to f32 in the GEMM, f32 math: the released"
echo " checkpoint is bf16, so these are the same weight values the f32 reference computes with)"
