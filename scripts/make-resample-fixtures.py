#!/usr/bin/env python3
"""Writes tests/fixtures/resample/: what the reference's `librosa.load(path, sr=24000)` makes of a
clip at 44.1, 22.05, 16 and 48 kHz, from PyPI `soxr` (python-soxr, which bundles libsoxr).

librosa.load resamples with `librosa.resample(y, orig_sr, 24000, res_type="soxr_hq")`, which is
(re-stated here, librosa 0.10/0.11):
    ratio = float(target_sr) / orig_sr
    n_samples = int(np.ceil(y.shape[-1] * ratio))
    y_hat = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")   # float32 in, float32 out
    y_hat = librosa.util.fix_length(y_hat, size=n_samples)           # zero-pad or trim
If librosa is importable, the fixture is also checked against librosa.resample itself.

The signal is deterministic: a 0.5 s linear chirp from 50 Hz to 0.45 x the input rate, plus
seeded white noise at -30 dB and a step at 0.25 s (so the edges and a transient are exercised).
Files: `in_<rate>.f32` (the input, little-endian float32) and `out_<rate>_24000.f32` (the
reference output), plus `meta.json` with lengths and the soxr/libsoxr versions.

Usage: pip install soxr numpy && python3 scripts/make-resample-fixtures.py
"""

import json
import os

import numpy as np
import soxr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "resample")
RATES = [44100, 22050, 16000, 48000]
TARGET = 24000
SECONDS = 0.5


def signal(rate: int) -> np.ndarray:
    n = int(rate * SECONDS)
    t = np.arange(n, dtype=np.float64) / rate
    f0, f1 = 50.0, 0.45 * rate
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * SECONDS))
    rng = np.random.default_rng(rate)
    y = 0.5 * np.sin(phase) + 0.03 * rng.standard_normal(n)
    y[n // 2 :] += 0.2
    return y.astype(np.float32)


def librosa_resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    ratio = float(target_sr) / orig_sr
    n_samples = int(np.ceil(y.shape[-1] * ratio))
    y_hat = soxr.resample(y, orig_sr, target_sr, quality="soxr_hq")
    if y_hat.shape[-1] > n_samples:
        y_hat = y_hat[:n_samples]
    elif y_hat.shape[-1] < n_samples:
        y_hat = np.pad(y_hat, (0, n_samples - y_hat.shape[-1]))
    return np.asarray(y_hat, dtype=y.dtype)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    try:
        import librosa
    except ImportError:
        librosa = None
    meta = {"soxr": soxr.__version__, "libsoxr": soxr.__libsoxr_version__, "cases": []}
    for rate in RATES:
        x = signal(rate)
        y = librosa_resample(x, rate, TARGET)
        if librosa is not None:
            want = librosa.resample(x, orig_sr=rate, target_sr=TARGET, res_type="soxr_hq")
            assert np.array_equal(want, y), f"librosa disagrees at {rate} Hz"
        x.astype("<f4").tofile(os.path.join(OUT, f"in_{rate}.f32"))
        y.astype("<f4").tofile(os.path.join(OUT, f"out_{rate}_{TARGET}.f32"))
        meta["cases"].append({"from_hz": rate, "to_hz": TARGET, "n_in": len(x), "n_out": len(y)})
        print(f"{rate} -> {TARGET}: {len(x)} -> {len(y)} samples")
    meta["checked_against_librosa"] = librosa is not None
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
