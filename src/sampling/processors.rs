//! Logits processors and token draws for one row of scores, f32 on the host, with HF 4.46
//! semantics: suppress → temperature → top-k → top-p → softmax + multinomial, or argmax when
//! greedy; plus the repetition-aware-sampling (RAS) re-draw. Text rows (128256) and each of the
//! 8 audio codebook rows (1026) go through the same list independently.
//! spec: model.md §8.4-8.6, §8.13, §11 items 7-9. May use: `error`, `sampling::rng`.
//!
//! Every function here is total: no input (empty rows, NaN, all entries masked) can panic.
//! Parameter ranges are checked once, at the request boundary, by `SamplingParams::validate`.

use crate::error::{Error, Result};
use crate::sampling::rng::SeededRng;

/// Per-request sampling settings, as the serve engine takes them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 = greedy (the serve engine sets `do_sample = temperature != 0`).
    pub temperature: f32,
    /// `None` or `Some(0)` = off (HF adds no top-k processor for either).
    pub top_k: Option<usize>,
    /// 1.0 = off.
    pub top_p: f32,
}

impl Default for SamplingParams {
    /// `HiggsAudioServeEngine.generate` defaults (spec §8.13).
    fn default() -> Self {
        Self {
            temperature: 0.7,
            top_k: None,
            top_p: 0.95,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding with every filter off: argmax of the raw logits.
    pub const fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
        }
    }

    /// The ranges HF accepts; call on request input before enqueueing.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::BadRequest(format!(
                "temperature must be finite and >= 0, got {}",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return Err(Error::BadRequest(format!(
                "top_p must be in [0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        // A NaN that skipped `validate` also takes the deterministic path.
        self.temperature.is_nan() || self.temperature <= 0.0
    }
}

/// HF `TemperatureLogitsWarper`: `z / T`. A true division, as torch does, not a multiply by
/// `1/T` (the two differ in the last bit).
pub fn apply_temperature(scores: &mut [f32], temperature: f32) {
    for s in scores {
        *s /= temperature;
    }
}

/// HF `TopKLogitsWarper`: keep entries ≥ the k-th largest value (ties at the threshold are all
/// kept), others → −inf. `k == 0` or `k ≥ len` is a no-op. NaN entries count as −inf.
pub fn apply_top_k(scores: &mut [f32], k: usize) {
    if k == 0 || k >= scores.len() {
        return;
    }
    let mut sorted: Vec<f32> = scores.iter().map(|&s| nan_low(s)).collect();
    // Partial selection, O(len): only the threshold is needed, not the order.
    let (_, &mut kth, _) = sorted.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
    for s in scores {
        // `kth` is never NaN (`nan_low`), so NaN entries are the only incomparable ones.
        if s.is_nan() || *s < kth {
            *s = f32::NEG_INFINITY;
        }
    }
}

/// HF `TopPLogitsWarper`: sort ascending, `cum = cumsum(softmax(sorted))`, drop entries with
/// `cum ≤ 1 − top_p`, always keep the largest; dropped → −inf. `top_p ≥ 1` is a no-op (HF adds
/// no processor). The sort is stable, so among tied values the lower index is dropped first and
/// the kept maximum is the last tied index, a fixed choice where torch's sort leaves it open.
pub fn apply_top_p(scores: &mut [f32], top_p: f32) {
    if top_p.is_nan() || top_p >= 1.0 || scores.is_empty() {
        return;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| nan_low(scores[a]).total_cmp(&nan_low(scores[b])));
    let probs = softmax(&order.iter().map(|&i| scores[i]).collect::<Vec<_>>());
    let Some(probs) = probs else {
        return; // nothing finite to renormalise; leave the row to `sample_multinomial`
    };
    let threshold = 1.0 - top_p;
    let mut cum = 0.0f32;
    let last = order.len() - 1;
    for (rank, (&i, p)) in order.iter().zip(probs).enumerate() {
        cum += p;
        if cum <= threshold && rank != last {
            scores[i] = f32::NEG_INFINITY;
        }
    }
}

/// Index of the first maximal entry (torch `argmax` on bf16-rounded logits, where ties are
/// common; spec §11 item 7). NaN never wins; an empty or all-NaN row gives 0.
pub fn argmax(scores: &[f32]) -> usize {
    let mut best: Option<(usize, f32)> = None;
    for (i, &s) in scores.iter().enumerate() {
        match best {
            _ if s.is_nan() => {}
            Some((_, b)) if s <= b => {}
            _ => best = Some((i, s)),
        }
    }
    best.map_or(0, |(i, _)| i)
}

/// One draw from `softmax(scores)`: f32 softmax with max-subtraction, then the inverse CDF at one
/// uniform `u`. Entries at −inf (or NaN) have probability 0 and are never drawn. Exactly one
/// uniform is consumed per call, whatever the row, so a seeded stream stays aligned across
/// steps. A row with nothing drawable (all −inf) or a +inf entry falls back to `argmax`.
pub fn sample_multinomial(scores: &[f32], rng: &mut SeededRng) -> usize {
    let u = rng.next_f32();
    let Some(probs) = softmax(scores) else {
        return argmax(scores);
    };
    let mut cum = 0.0f32;
    let mut last_drawable = None;
    for (i, p) in probs.into_iter().enumerate() {
        if p > 0.0 {
            cum += p;
            if u < cum {
                return i;
            }
            last_drawable = Some(i);
        }
    }
    // Rounding left the total just under 1 and `u` above it: the mass belongs to the tail.
    last_drawable.unwrap_or_else(|| argmax(scores))
}

/// Draws one token from a row of logits: suppress (`SuppressTokensLogitsProcessor`, first; ids
/// outside the row are ignored, as torch's `isin` ignores them), then argmax when greedy (no
/// random draw), else temperature (skipped at 1.0), top-k, top-p and a multinomial draw.
pub fn sample(
    logits: &[f32],
    params: &SamplingParams,
    suppress: &[usize],
    rng: &mut SeededRng,
) -> usize {
    let mut scores = logits.to_vec();
    for &i in suppress {
        if let Some(s) = scores.get_mut(i) {
            *s = f32::NEG_INFINITY;
        }
    }
    if params.is_greedy() {
        return argmax(&scores);
    }
    if params.temperature != 1.0 {
        apply_temperature(&mut scores, params.temperature);
    }
    if let Some(k) = params.top_k {
        apply_top_k(&mut scores, k);
    }
    apply_top_p(&mut scores, params.top_p);
    sample_multinomial(&scores, rng)
}

/// RAS re-draw (spec §8.6 step 2): multinomial from `softmax` of the **raw** logits, with no
/// temperature, top-k or top-p, and even for greedy requests.
pub fn ras_redraw(raw_logits: &[f32], rng: &mut SeededRng) -> usize {
    sample_multinomial(raw_logits, rng)
}

/// Occurrences of `tok` in `history`: pass the last `ras_win_len` symbols of one codebook row
/// of `audio_out` (spanning segments and prompt audio); re-draw when ≥ `ras_win_max_num_repeat`.
pub fn ras_count(history: impl Iterator<Item = u32>, tok: u32) -> usize {
    history.filter(|&t| t == tok).count()
}

/// `softmax` in f32 with max-subtraction (NaN → probability 0); `None` when no entry is finite
/// or one is +inf, where the distribution is undefined (torch would produce NaN).
fn softmax(scores: &[f32]) -> Option<Vec<f32>> {
    let max = scores
        .iter()
        .copied()
        .map(nan_low)
        .fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return None;
    }
    let mut probs: Vec<f32> = scores.iter().map(|&s| (nan_low(s) - max).exp()).collect();
    // The max entry contributes exp(0) = 1, so the sum is ≥ 1: no division by zero.
    let sum: f32 = probs.iter().sum();
    for p in &mut probs {
        *p /= sum;
    }
    Some(probs)
}

/// Orders NaN below every number so it can neither be a top-k threshold nor a maximum.
fn nan_low(s: f32) -> f32 {
    if s.is_nan() {
        f32::NEG_INFINITY
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_first_of_ties_and_skips_nan() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0]), 1);
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    #[test]
    fn validate_rejects_out_of_range() {
        assert!(SamplingParams::default().validate().is_ok());
        let bad_t = SamplingParams {
            temperature: -1.0,
            ..Default::default()
        };
        let bad_p = SamplingParams {
            top_p: f32::NAN,
            ..Default::default()
        };
        assert!(bad_t.validate().is_err());
        assert!(bad_p.validate().is_err());
    }
}
