#!/usr/bin/env bash
# What a fresh machine needs besides the Rust toolchain, installed only when missing:
# - cmake, which the `opus` crate uses to build its bundled libopus (the `opus` response
#   format): from Debian's packages when apt-get is there, else from PyPI (`pip install cmake`);
# - libsoxr (headers + pkg-config file), which the `soxr` crate links for resampling as the
#   reference does (audio/resample.rs): Debian's libsoxr-dev and pkg-config.
set -euo pipefail
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
apt_updated=0
apt_install() {
    if [ "$apt_updated" -eq 0 ]; then
        $sudo apt-get update -qq >/dev/null
        apt_updated=1
    fi
    $sudo apt-get install -y -qq "$@" >/dev/null
}

if ! command -v cmake >/dev/null 2>&1; then
    echo "bootstrap: installing cmake" >&2
    if command -v apt-get >/dev/null 2>&1; then
        apt_install cmake
    else
        python3 -m pip install -q cmake
    fi
    command -v cmake >/dev/null 2>&1 || { echo "bootstrap: cmake is still not on PATH" >&2; exit 1; }
fi

if ! { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists soxr; }; then
    echo "bootstrap: installing libsoxr-dev and pkg-config" >&2
    if command -v apt-get >/dev/null 2>&1; then
        apt_install libsoxr-dev pkg-config
    else
        echo "bootstrap: no apt-get; install libsoxr (headers and soxr.pc) and pkg-config" >&2
        exit 1
    fi
    pkg-config --exists soxr || { echo "bootstrap: pkg-config still finds no soxr" >&2; exit 1; }
fi
