//! Guard-banded device buffers and tolerance checks shared by the codec CUDA conformance files
//! (`conformance_codec_cuda.rs`, `conformance_conv_gemm_cuda.rs`): outputs carry a band of
//! canaries that must come back intact; errors are relative to the largest expected value; NaN
//! fails.

use higgs_engine::backend::cuda::{CudaDevice, CudaStorage};
use higgs_engine::codec::layers;
use higgs_engine::tensor::DType;
use rand::rngs::StdRng;
use rand::Rng;

pub const GUARD: usize = 67;
/// Far from any output, so a stray write shows.
pub const CANARY: f32 = -12288.0;
/// One output sums at most this many products before the tolerance relaxes to 1e-4.
pub const SHORT_REDUCTION: usize = 1024;

pub fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-scale..=scale)).collect()
}

/// Snake alphas: mostly learned-looking positive values, some negative (spec §3.2).
pub fn rand_alpha(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let a = rng.gen_range(0.05f32..=3.0);
            if rng.gen_bool(0.2) {
                -a
            } else {
                a
            }
        })
        .collect()
}

pub fn up(dev: &CudaDevice, data: &[f32]) -> CudaStorage {
    CudaStorage::from_f32(dev, data, DType::F32).expect("upload")
}

/// An output buffer holding `init` plus a trailing guard band of canaries.
pub fn out_buf_with(dev: &CudaDevice, init: &[f32]) -> CudaStorage {
    let mut v = init.to_vec();
    v.extend(std::iter::repeat_n(CANARY, GUARD));
    up(dev, &v)
}

/// An output buffer of `n` canaries plus the guard band.
pub fn out_buf(dev: &CudaDevice, n: usize) -> CudaStorage {
    up(dev, &vec![CANARY; n + GUARD])
}

/// Downloads, checks the guard band and returns the first `n` values.
pub fn down(case: &str, s: &CudaStorage, n: usize) -> Vec<f32> {
    let v = s.to_f32_vec().expect("download");
    assert_eq!(v.len(), n + GUARD, "{case}: buffer length");
    for (i, &g) in v[n..].iter().enumerate() {
        assert!(
            g == CANARY,
            "{case}: guard element {i} past the output was overwritten ({g})"
        );
    }
    v[..n].to_vec()
}

pub fn rel_err(got: &[f32], want: &[f32]) -> (f32, usize) {
    let max_ref = want.iter().fold(0f32, |m, w| m.max(w.abs())).max(1e-20);
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs() / max_ref;
        if e > worst || e.is_nan() {
            worst = e;
            at = i;
        }
    }
    (worst, at)
}

pub fn assert_close(case: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(!g.is_nan(), "{case}: NaN at {i} (want {w})");
        assert!(
            g.is_finite() == w.is_finite(),
            "{case}: infinity mismatch at {i}: got {g}, want {w}"
        );
    }
    let (worst, at) = rel_err(got, want);
    assert!(
        worst <= tol,
        "{case}: max rel err {worst:.3e} > {tol:.0e} at {at}: got {}, want {}",
        got[at],
        want[at]
    );
}

pub fn conv_tol(reduction: usize) -> f32 {
    if reduction > SHORT_REDUCTION {
        1e-4
    } else {
        1e-5
    }
}

pub fn snake_host(x: &[f32], channels: usize, t: usize, alpha: &[f32]) -> Vec<f32> {
    let mut v = x.to_vec();
    layers::snake_inplace(&mut v, channels, t, alpha);
    v
}
