#!/usr/bin/env bash
# Higgs workers on NVIDIA Dynamo, end to end on 127.0.0.1 with the fixture model: Dynamo's
# OpenAI frontend (file-based discovery, no etcd or NATS) and two CPU workers; the official
# `openai` client's requests are served by both, byte-identical to `higgs serve`; killing a
# worker mid-stream fails that request cleanly and later requests go to the survivor; a
# restarted worker rejoins; a SIGTERMed worker deregisters first. Builds deploy/dynamo (its
# own Cargo.lock) first; needs protoc and libclang for bindgen (Debian `protobuf-compiler`,
# `libclang-dev`, installed here when apt-get is there) and `pip install openai`.
#
# Usage: scripts/dynamo-test.sh            (prints each check; exit 0 = all passed)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# nixl-sys (under dynamo-llm's memory crate) runs bindgen, which loads libclang at build time.
have_libclang() { ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' || [ -n "${LIBCLANG_PATH:-}" ]; }
if ! command -v protoc >/dev/null 2>&1 || ! have_libclang; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    ($sudo apt-get update -qq && $sudo apt-get install -y -qq protobuf-compiler libclang-dev) >/dev/null
fi
python3 -c "import openai" 2>/dev/null || python3 -m pip install -q openai >/dev/null 2>&1 \
    || python3 -m pip install -q --break-system-packages openai >/dev/null

echo "== building higgs (serve) and deploy/dynamo (worker, frontend)"
cargo build --release --quiet --bin higgs
# Built from inside deploy/dynamo: cargo reads .cargo/config.toml from the working directory,
# and that file carries the tokio_unstable cfg Dynamo needs.
(cd deploy/dynamo && cargo build --release --quiet)
case "${CARGO_TARGET_DIR:-}" in
    "") dyn_bin="$root/deploy/dynamo/target/release"; higgs_bin="$root/target/release/higgs" ;;
    /*) dyn_bin="$CARGO_TARGET_DIR/release"; higgs_bin="$CARGO_TARGET_DIR/release/higgs" ;;
    *) dyn_bin="$root/deploy/dynamo/$CARGO_TARGET_DIR/release"
       higgs_bin="$root/$CARGO_TARGET_DIR/release/higgs" ;;
esac

work=$(mktemp -d /tmp/higgs-dynamo.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    if [ "${KEEP:-0}" = 1 ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

fx=$root/tests/fixtures/reference
model_args=(--model "$fx/llm" --audio-tokenizer "$fx/codec" --tokenizer "$root/tests/fixtures/toy-tokenizer.json"
            --served-model-name higgs-test --max-new-tokens 30 --max-context 8192)

export DYN_DISCOVERY_BACKEND=file DYN_FILE_KV="$work/kv" DYN_LOG="${DYN_LOG:-warn}"
unset NATS_SERVER ETCD_ENDPOINTS || true

start_worker() { # name -> pid
    "$dyn_bin/higgs-dynamo-worker" "${model_args[@]}" >"$work/$1.out" 2>"$work/$1.log" &
    echo $!
}

front_port=$(free_port)
"$dyn_bin/higgs-dynamo-frontend" --http-port "$front_port" --router-mode round-robin \
    >"$work/frontend.out" 2>"$work/frontend.log" &
pids+=($!)
wa=$(start_worker worker-a); pids+=("$wa")
wb=$(start_worker worker-b); pids+=("$wb")

serve_port=$(free_port)
"$higgs_bin" serve "${model_args[@]}" --port "$serve_port" \
    >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)

echo "== frontend :$front_port, workers $wa $wb, higgs serve :$serve_port (logs: $work)"
python3 "$root/tests/dynamo_client.py" \
    --frontend "http://127.0.0.1:$front_port/v1" --serve "http://127.0.0.1:$serve_port/v1" \
    --work "$work" --worker "worker-a=$wa" --worker "worker-b=$wb" \
    --worker-cmd "$dyn_bin/higgs-dynamo-worker ${model_args[*]}"
