//! Timing one op or step for the reports: a warm-up call, then rounds of calls that fill a
//! minimum time, each with a device sync before the clock stops (asynchronous CUDA launches are counted
//! where they run, not where they are queued). May use: tensor; anyhow allowed.

use crate::tensor::Device;
use std::time::Instant;

/// Seconds per call of `f`: one untimed warm-up, one timed probe, then three rounds of as many
/// calls as fill `min_s` / 3 (at least one, at most `max_reps`), each ended by a device sync;
/// the fastest round counts (the least disturbed by other work on a shared machine).
pub fn time_per_call(
    device: &Device,
    min_s: f64,
    max_reps: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<f64> {
    f()?;
    device.synchronize()?;
    let t = Instant::now();
    f()?;
    device.synchronize()?;
    let probe = t.elapsed().as_secs_f64().max(1e-9);
    let reps = ((min_s / 3.0 / probe).ceil() as usize).clamp(1, max_reps.max(1));
    let mut best = probe;
    for _ in 0..3 {
        let t = Instant::now();
        for _ in 0..reps {
            f()?;
        }
        device.synchronize()?;
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(best)
}
