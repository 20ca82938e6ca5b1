#!/usr/bin/env bash
# Load and fault test of `higgs serve` on the fixture model, 127.0.0.1 only: REQUESTS requests
# (default 2000) from CLIENTS concurrent clients (default 64) mixing streamed and whole
# responses, formats and voices, with 20% disconnecting at random points, 10% malformed and
# 5% slow readers; then SIGTERM under load and kill -9 during voice uploads. `cargo test`
# runs the same tests at 240 requests from 16 clients.
set -euo pipefail
cd "$(dirname "$0")/.."
export HIGGS_LOAD_REQUESTS="${1:-2000}" HIGGS_LOAD_CLIENTS="${2:-64}"
cargo test --test load -- --nocapture --test-threads 1 2>&1 | grep -v "^req "
