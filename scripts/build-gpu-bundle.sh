#!/usr/bin/env bash
# Builds, here (where Rust is), what scripts/gpu-check.sh runs on the GPU machine (which has a
# driver and nvcc but no Rust): the release `conformance_cuda` test binary and the `higgs`
# binary, both with --features cuda, copied into out/gpu/ (git-ignored) together with the
# check script. Carry `out/gpu` to the device and run `out/gpu/gpu-check.sh` there.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
dest="${1:-out/gpu}"
mkdir -p "$dest"

# --message-format=json names the test executable; take the conformance_cuda one.
test_bin="$(cargo test --release --features cuda --test conformance_cuda --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "conformance_cuda" and m.get("executable"):
        print(m["executable"])')"
if [[ -z "$test_bin" ]]; then
    echo "error: could not build the conformance_cuda test binary; run" >&2
    echo "  cargo test --release --features cuda --test conformance_cuda --no-run" >&2
    exit 1
fi
cargo build --release --features cuda --bin higgs

cp "$test_bin" "$dest/conformance_cuda"
cp target/release/higgs "$dest/higgs"
cp scripts/gpu-check.sh "$dest/gpu-check.sh"
[[ -f target/kernel-resources.txt ]] && cp target/kernel-resources.txt "$dest/"
git rev-parse --short HEAD >"$dest/COMMIT" 2>/dev/null || echo unknown >"$dest/COMMIT"
ls -la "$dest"
du -sh "$dest"
