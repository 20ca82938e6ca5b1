//! Helpers shared by the CUDA conformance test files: the device-or-skip rule and the seeded,
//! replayable RNG (STYLE §3: the seed is printed, `HIGGS_TEST_SEED` replays it).
#![allow(dead_code)]

use rand::rngs::StdRng;
use rand::SeedableRng;

#[cfg(feature = "cuda")]
pub mod guarded;

/// The first CUDA device, or None (after printing "skipped: no CUDA device") when there is none.
/// A device that exists but cannot be used is a failure, not a skip.
#[cfg(feature = "cuda")]
pub fn device() -> Option<higgs_engine::backend::cuda::CudaDevice> {
    use higgs_engine::backend::cuda::CudaDevice;
    match CudaDevice::new(0) {
        Ok(d) => Some(d),
        Err(e) if CudaDevice::is_no_device(&e) => {
            println!("skipped: no CUDA device ({e})");
            None
        }
        Err(e) => panic!("CUDA device present but unusable: {e}"),
    }
}

/// `let dev = dev_or_skip!();` returns from the test when there is no device.
#[macro_export]
macro_rules! dev_or_skip {
    () => {
        match common::device() {
            Some(d) => d,
            None => return,
        }
    };
}

/// A seeded RNG for `test`: `HIGGS_TEST_SEED` if set, else the clock; the seed is printed.
pub fn rng(test: &str) -> StdRng {
    let seed = std::env::var("HIGGS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0x5eed)
        });
    println!("{test}: seed {seed} (replay with HIGGS_TEST_SEED={seed})");
    StdRng::seed_from_u64(seed)
}
