//! The quantization quality gate: a quantized model against the unquantized one on the same
//! prompt. Teacher-forced: both run one prefill over the prompt plus the reference's greedy
//! audio columns, and every position's text logits and each codebook's audio logits are
//! compared (cosine similarity, and max |a - b| / max |a| per position). Free-running: both
//! decode greedily for N steps and their audio codes are compared column by column.
//! `higgs bench --quantization fp8 --quality` prints it; `tests/quant.rs` runs it on the
//! fixture model. May use: engine, model; anyhow allowed.

use crate::engine::{Engine, EngineConfig, GenerationParams, Prompt};
use crate::model::{BatchInputs, ForwardOptions, Model, RowInput};
use crate::sampling::processors::SamplingParams;
use std::sync::Arc;

/// Agreement of one head's logits over the compared positions.
#[derive(Clone, Debug, Default)]
pub struct HeadStats {
    pub positions: usize,
    pub cosine_min: f64,
    pub cosine_mean: f64,
    /// Max over positions of max |ref - got| / max |ref| (the conformance tests' measure).
    pub max_rel_err: f64,
}

#[derive(Clone, Debug, Default)]
pub struct QualityReport {
    /// Teacher-forced text-head logits, every position.
    pub text: HeadStats,
    /// Teacher-forced audio-head logits per codebook, every position.
    pub audio: Vec<HeadStats>,
    /// Greedy audio columns compared (the shorter of the two runs).
    pub greedy_columns: usize,
    /// Codes equal at the same column and codebook, of `greedy_columns · n_codebooks`.
    pub greedy_equal_codes: usize,
    pub greedy_total_codes: usize,
    /// First column at which any codebook differs (None: all equal).
    pub greedy_first_divergence: Option<usize>,
}

impl QualityReport {
    pub fn greedy_agreement(&self) -> f64 {
        self.greedy_equal_codes as f64 / self.greedy_total_codes.max(1) as f64
    }
    /// The worst audio codebook's stats (lowest minimum cosine).
    pub fn worst_audio(&self) -> HeadStats {
        self.audio
            .iter()
            .min_by(|a, b| a.cosine_min.total_cmp(&b.cosine_min))
            .cloned()
            .unwrap_or_default()
    }
}

impl std::fmt::Display for QualityReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let line = |f: &mut std::fmt::Formatter<'_>, name: &str, s: &HeadStats| {
            writeln!(
                f,
                "  {name:<12} positions {:>4}  cosine min {:.6} mean {:.6}  max rel err {:.4}",
                s.positions, s.cosine_min, s.cosine_mean, s.max_rel_err
            )
        };
        writeln!(f, "teacher-forced logits (quantized vs unquantized):")?;
        line(f, "text head", &self.text)?;
        for (c, s) in self.audio.iter().enumerate() {
            line(f, &format!("codebook {c}"), s)?;
        }
        write!(
            f,
            "greedy codes: {}/{} equal over {} columns ({:.1}%), first divergence {}",
            self.greedy_equal_codes,
            self.greedy_total_codes,
            self.greedy_columns,
            100.0 * self.greedy_agreement(),
            self.greedy_first_divergence
                .map_or("none".to_string(), |c| format!("at column {c}"))
        )
    }
}

/// Greedy audio decoding for `steps` steps (stream end suppressed, so it runs them all).
fn greedy(model: &Arc<Model>, prompt: &Prompt, steps: usize) -> anyhow::Result<Vec<Vec<u32>>> {
    let mut p = GenerationParams::new(steps, vec![]);
    p.sampling = SamplingParams::greedy();
    p.ras_win_len = 0;
    p.seed = Some(0);
    p.suppress_audio = vec![model.cfg.stream_eos as usize];
    let mut engine = Engine::new(model.clone(), EngineConfig::default())?;
    let out = engine.generate(prompt, p)?;
    Ok(out.segments.last().cloned().unwrap_or_default())
}

/// One prefill over `rows`: (text logits [n, vocab], audio logits [n, C · rows]).
fn teacher_forced(model: &Model, rows: &[RowInput]) -> anyhow::Result<(Vec<f32>, Vec<f32>)> {
    let n = rows.len();
    let bs = 16;
    let blocks = n.div_ceil(bs);
    let mut kv = model.try_new_kv_cache(blocks, bs)?;
    let mut audio_keys: Vec<u8> = rows.iter().map(|r| r.is_audio() as u8).collect();
    audio_keys.resize(blocks * bs, 0);
    let inputs = BatchInputs {
        positions: (0..n as i32).collect(),
        query_seq: vec![0; n],
        slot_mapping: (0..n as i32).collect(),
        block_size: bs,
        block_tables: (0..blocks as i32).collect(),
        max_blocks: blocks,
        audio_keys,
        max_ctx: blocks * bs,
        rows: rows.to_vec(),
    };
    let opts = ForwardOptions {
        out_rows: (0..n as u32).collect(),
        capture_layers: false,
    };
    let out = model.forward(&inputs, &mut kv, &opts)?;
    Ok((
        model.text_logits(&out.hidden)?.to_f32_vec()?,
        model.audio_logits(&out.hidden)?.to_f32_vec()?,
    ))
}

/// Stats of `got` against `want`, both `[positions, stride]`, over columns `cols` of each row.
fn head_stats(want: &[f32], got: &[f32], stride: usize, cols: std::ops::Range<usize>) -> HeadStats {
    let positions = want.len() / stride.max(1);
    let mut s = HeadStats {
        positions,
        cosine_min: f64::INFINITY,
        ..Default::default()
    };
    let mut cos_sum = 0.0;
    for p in 0..positions {
        let a = &want[p * stride + cols.start..p * stride + cols.end];
        let b = &got[p * stride + cols.start..p * stride + cols.end];
        let (mut ab, mut aa, mut bb, mut amax, mut dmax) = (0f64, 0f64, 0f64, 0f64, 0f64);
        for (&x, &y) in a.iter().zip(b) {
            let (x, y) = (x as f64, y as f64);
            ab += x * y;
            aa += x * x;
            bb += y * y;
            amax = amax.max(x.abs());
            dmax = dmax.max((x - y).abs());
        }
        // NaN anywhere makes the cosine NaN, and NaN fails every threshold a caller checks.
        let cos = ab / (aa.sqrt() * bb.sqrt()).max(1e-300);
        s.cosine_min = if cos.is_nan() || s.cosine_min.is_nan() {
            f64::NAN
        } else {
            s.cosine_min.min(cos)
        };
        cos_sum += cos;
        s.max_rel_err = s.max_rel_err.max(dmax / amax.max(1e-30));
    }
    s.cosine_mean = cos_sum / positions.max(1) as f64;
    s
}

/// The gate: `candidate` (quantized) against `reference` on `prompt`, teacher-forced over the
/// prompt plus `steps` greedy audio columns of the reference, and free-running for `steps`.
pub fn compare(
    reference: &Arc<Model>,
    candidate: &Arc<Model>,
    prompt: &Prompt,
    steps: usize,
) -> anyhow::Result<QualityReport> {
    let cfg = &reference.cfg;
    let c = cfg.n_codebooks;
    let ref_cols = greedy(reference, prompt, steps)?;
    let got_cols = greedy(candidate, prompt, steps)?;
    let mut r = QualityReport::default();
    r.greedy_columns = ref_cols.len().min(got_cols.len());
    r.greedy_total_codes = r.greedy_columns * c;
    for (i, (a, b)) in ref_cols.iter().zip(&got_cols).enumerate() {
        let eq = a.iter().zip(b).filter(|(x, y)| x == y).count();
        r.greedy_equal_codes += eq;
        if eq != c && r.greedy_first_divergence.is_none() {
            r.greedy_first_divergence = Some(i);
        }
    }

    let engine = Engine::new(reference.clone(), EngineConfig::default())?;
    let mut rows = engine.expand_prompt(prompt)?;
    rows.extend(ref_cols.iter().map(|codes| RowInput::Audio {
        codes: codes.clone(),
        out: true,
    }));
    drop(engine);
    let (want_t, want_a) = teacher_forced(reference, &rows)?;
    let (got_t, got_a) = teacher_forced(candidate, &rows)?;
    r.text = head_stats(&want_t, &got_t, cfg.vocab, 0..cfg.vocab);
    let cb = cfg.codebook_rows();
    r.audio = (0..c)
        .map(|q| head_stats(&want_a, &got_a, c * cb, q * cb..(q + 1) * cb))
        .collect();
    Ok(r)
}

/// The prompt `higgs bench` decodes from: `len - 1` plain text ids, then
/// `<|audio_out_bos|>` so decoding runs in audio mode.
pub fn bench_prompt(model: &Model, len: usize, seed: usize) -> Prompt {
    let vocab = model.cfg.vocab.max(11);
    let mut ids: Vec<u32> = (0..len.saturating_sub(1))
        .map(|i| ((i * 7919 + seed * 31) % (vocab - 10).min(1000)) as u32 + 10)
        .collect();
    ids.push(model.cfg.audio_out_bos_token);
    Prompt {
        ids,
        ..Default::default()
    }
}

/// `higgs bench --quality`: random weights of `--shape` (seed 1234, as the step benchmark),
/// once as built and once with `q` applied, compared on the bench prompt for `--steps`.
pub fn run(
    shape: &str,
    dtype: crate::tensor::DType,
    device: &crate::tensor::Device,
    q: crate::quant::Quantization,
    prompt_len: usize,
    steps: usize,
) -> anyhow::Result<QualityReport> {
    use crate::model::ModelWeights;
    let cfg = super::shape_config(shape)?;
    let build =
        || -> anyhow::Result<ModelWeights> { Ok(ModelWeights::random(&cfg, dtype, 1234, 0.02)?) };
    let place = |w: ModelWeights| -> anyhow::Result<Arc<Model>> {
        let w = if device.is_cpu() {
            w
        } else {
            w.to_device(device, dtype)?
        };
        Ok(Arc::new(Model::new(cfg.clone(), w)))
    };
    let reference = place(build()?)?;
    let candidate = place(build()?.quantize(q)?)?;
    let prompt = bench_prompt(&reference, prompt_len, 0);
    compare(&reference, &candidate, &prompt, steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_stats_measures() {
        let want = [1.0, 0.0, 2.0, 2.0];
        let s = head_stats(&want, &want, 2, 0..2);
        assert!((s.cosine_min - 1.0).abs() < 1e-12 && s.max_rel_err == 0.0);
        let got = [0.0, 1.0, 2.0, 1.0];
        let s = head_stats(&want, &got, 2, 0..2);
        assert!(s.cosine_min.abs() < 1e-12, "orthogonal rows: {s:?}");
        assert!((s.max_rel_err - 1.0).abs() < 1e-12);
        let nan = [f32::NAN, 0.0, 2.0, 2.0];
        assert!(head_stats(&want, &nan, 2, 0..2).cosine_min.is_nan());
        let nan_first = [f32::NAN, 0.0, 2.0, 2.0, 1.0, 0.0];
        let want3 = [1.0, 0.0, 2.0, 2.0, 1.0, 0.0];
        assert!(head_stats(&want3, &nan_first, 2, 0..2).cosine_min.is_nan());
    }
}
