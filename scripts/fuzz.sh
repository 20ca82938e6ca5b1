#!/usr/bin/env bash
# Run every fuzz target of tests/fuzz.rs and tests/fuzz_server.rs for SECONDS each (default 60), in the test profile.
# HIGGS_FUZZ_CASES=N instead runs N inputs per target (ignored when SECONDS is given).
# Each target prints "fuzz NAME: N inputs in S s, 0 failures, largest allocation B bytes";
# a failure prints the shrunk input and exits non-zero. Targets run one at a time so each
# gets the whole budget.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
targets=(safetensors_header shard_index pickle pth_zip llm_config codec_config npy wav audio_formats)
server_targets=(speech_json chat_json voices_multipart)
cargo test --test fuzz --no-run
for t in "${targets[@]}"; do
    HIGGS_FUZZ_SECONDS="$seconds" cargo test -q --test fuzz -- --exact "fuzz_$t" --nocapture \
        2>&1 | grep -E "^fuzz |panicked|failed" || { echo "fuzz_$t FAILED"; exit 1; }
done
cargo test --test fuzz_server --no-run
for t in "${server_targets[@]}"; do
    HIGGS_FUZZ_SECONDS="$seconds" cargo test -q --test fuzz_server -- --exact "fuzz_$t" --nocapture \
        2>&1 | grep -E "^fuzz |panicked|failed" || { echo "fuzz_$t FAILED"; exit 1; }
done
