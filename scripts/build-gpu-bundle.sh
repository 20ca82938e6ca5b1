#!/usr/bin/env bash
# Builds, here (where Rust is), what scripts/gpu-check.sh runs on the GPU machine (which has a
# driver and nvcc but no Rust): the release `conformance_cuda` (kernels) and
# `conformance_model_cuda` (whole model vs the CPU engine) test binaries, the LLM reference
# fixture and the `higgs` binary, all with --features cuda, copied into out/gpu/ (git-ignored) together with the
# check script. Carry `out/gpu` to the device and run `out/gpu/gpu-check.sh` there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dest="${1:-out/gpu}"
mkdir -p "$dest"

# --message-format=json names the test executables; take each conformance binary by name.
test_bin() {
    cargo test --release --features cuda --test "$1" --no-run --message-format=json 2>/dev/null \
        | python3 -c 'import json,sys
name = sys.argv[1]
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == name and m.get("executable"):
        print(m["executable"])' "$1"
}
declare -A bins
for t in conformance_cuda conformance_model_cuda conformance_codec_cuda conformance_sampling_cuda conformance_conv_gemm_cuda; do
    bins[$t]="$(test_bin "$t")"
    if [[ -z "${bins[$t]}" ]]; then
        echo "error: could not build the $t test binary; run" >&2
        echo "  cargo test --release --features cuda --test $t --no-run" >&2
        exit 1
    fi
done
cargo build --release --features cuda --bin higgs

for t in "${!bins[@]}"; do
    cp "${bins[$t]}" "$dest/$t"
done
# The model and codec conformance tests read the LLM (1.7 MB) and codec (3.5 MB) reference
# fixtures through HIGGS_FIXTURES.
mkdir -p "$dest/fixtures/reference"
for part in llm codec; do
    rm -rf "$dest/fixtures/reference/$part"
    cp -r "tests/fixtures/reference/$part" "$dest/fixtures/reference/$part"
done
cp tests/fixtures/toy-tokenizer.json "$dest/fixtures/toy-tokenizer.json"
cp target/release/higgs "$dest/higgs"
cp scripts/gpu-check.sh "$dest/gpu-check.sh"
[[ -f target/kernel-resources.txt ]] && cp target/kernel-resources.txt "$dest/"
git rev-parse --short HEAD >"$dest/COMMIT" 2>/dev/null || echo unknown >"$dest/COMMIT"
ls -la "$dest"
du -sh "$dest"
