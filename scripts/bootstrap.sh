#!/usr/bin/env bash
# What a fresh machine needs besides the Rust toolchain: cmake, which the `opus` crate uses to
# build its bundled libopus (the `opus` response format). Installed only when missing: from
# Debian's packages when apt-get is there, else from PyPI (`pip install cmake`).
set -euo pipefail
if command -v cmake >/dev/null 2>&1; then
    exit 0
fi
echo "bootstrap: installing cmake" >&2
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
if command -v apt-get >/dev/null 2>&1; then
    ($sudo apt-get update -qq && $sudo apt-get install -y -qq cmake) >/dev/null
else
    python3 -m pip install -q cmake
fi
command -v cmake >/dev/null 2>&1 || { echo "bootstrap: cmake is still not on PATH" >&2; exit 1; }
