//! `check-reference` for the codec: runs every case of `DIR/codec/cases.json`. A case whose
//! inputs hold `<case>.codes` is a decode case; one whose inputs hold `<case>.waveform` is an
//! encode case. Every listed output that `expected.safetensors` holds is compared by its name
//! suffix: decode tensors within 1e-5 relative, encode intermediates within 1e-4, codes exactly.
//! spec: codec.md §12.
//! May use: codec, error, reference::{fixture, compare}.

use super::fixture::{read_json, Expected};
use super::{compare, CaseResult};
use crate::codec::encode::EncodeTrace;
use crate::codec::AudioTokenizer;
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// Relative tolerance for tensors on the decode path (spec §12.2).
const DECODE_TOL: f32 = 1e-5;
/// Relative tolerance for encode intermediates (HuBERT attention and norms, spec §12.5).
const ENCODE_TOL: f32 = 1e-4;

/// Accumulates the comparisons of one case.
#[derive(Default)]
struct Tally {
    compared: usize,
    tensors: usize,
    code_sets: usize,
    worst_rel: f32,
    worst_name: String,
    failures: Vec<String>,
    unchecked: Vec<String>,
}

impl Tally {
    fn tensor(&mut self, name: &str, got: &[f32], want: &[f32], tol: f32) {
        self.compared += 1;
        self.tensors += 1;
        let (abs, rel) = compare(got, want);
        if got.len() != want.len() {
            self.failures.push(format!(
                "{name}: {} values, expected {}",
                got.len(),
                want.len()
            ));
        } else if rel.is_nan() || rel > tol {
            self.failures
                .push(format!("{name}: abs {abs:.2e} rel {rel:.2e} > {tol:.0e}"));
        }
        if rel > self.worst_rel || self.worst_name.is_empty() {
            self.worst_rel = rel;
            self.worst_name = name.to_string();
        }
    }

    fn codes(&mut self, name: &str, got: &[Vec<u32>], want: &[Vec<u32>]) {
        self.compared += 1;
        self.code_sets += 1;
        let shape = |c: &[Vec<u32>]| (c.len(), c.first().map_or(0, Vec::len));
        if shape(got) != shape(want) {
            self.failures.push(format!(
                "{name}: shape {:?}, expected {:?}",
                shape(got),
                shape(want)
            ));
            return;
        }
        let bad: usize = got
            .iter()
            .zip(want)
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum();
        if bad > 0 {
            self.failures.push(format!("{name}: {bad} code mismatches"));
        }
    }

    fn finish(self, name: &str) -> CaseResult {
        let mut detail = if self.failures.is_empty() {
            let mut parts = vec![format!("{} checks", self.compared)];
            if self.tensors > 0 {
                parts.push(format!(
                    "worst rel {:.2e} ({})",
                    self.worst_rel, self.worst_name
                ));
            }
            if self.code_sets > 0 {
                parts.push("codes identical".into());
            }
            parts.join(", ")
        } else {
            self.failures.join("; ")
        };
        if !self.unchecked.is_empty() {
            detail.push_str(&format!(" [not checked: {}]", self.unchecked.join(", ")));
        }
        CaseResult {
            part: "codec",
            name: name.to_string(),
            passed: self.failures.is_empty() && self.compared > 0,
            detail,
        }
    }
}

/// `[.., rows, cols]` data as channel-major `[c, t]`: as stored when the trailing dims are
/// `[c, t]`, transposed when they are `[t, c]` (the reference's `[1, T, Q]` tensors).
fn channel_major(shape: &[usize], data: &[f32], c: usize, t: usize) -> Option<Vec<f32>> {
    let n = shape.len();
    if n < 2 || data.len() != c * t {
        return None;
    }
    let (r, k) = (shape[n - 2], shape[n - 1]);
    if (r, k) == (c, t) {
        Some(data.to_vec())
    } else if (r, k) == (t, c) {
        Some(crate::codec::rvq::transpose(data, t, c))
    } else {
        None
    }
}

fn output_names(case: &Value) -> Vec<String> {
    match case.get("outputs") {
        Some(Value::Object(m)) => m.keys().cloned().collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn input_names(case: &Value) -> Vec<String> {
    case.get("inputs")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Run every case of `dir/codec`.
pub fn check_codec(dir: &Path) -> Result<Vec<CaseResult>> {
    let codec_dir = dir.join("codec");
    let codec = AudioTokenizer::load(&codec_dir)?;
    let expected = Expected::load(&codec_dir.join("expected.safetensors"))?;
    let cases_path = codec_dir.join("cases.json");
    let cases = read_json(&cases_path)?;
    let cases = cases
        .get("cases")
        .and_then(Value::as_object)
        .ok_or_else(|| Error::config(&cases_path, "cases", "missing or not an object"))?;
    let mut results = Vec::new();
    for (name, case) in cases {
        let inputs = input_names(case);
        let outputs = output_names(case);
        let run = if inputs.iter().any(|i| i == &format!("{name}.codes")) {
            decode_case(&codec, &expected, name, &outputs)
        } else if inputs.iter().any(|i| i == &format!("{name}.waveform")) {
            encode_case(&codec, &expected, name, &outputs)
        } else {
            Err(Error::Unsupported(format!(
                "case {name}: inputs {inputs:?} hold neither codes nor a waveform"
            )))
        };
        results.push(run.unwrap_or_else(|e| CaseResult {
            part: "codec",
            name: name.clone(),
            passed: false,
            detail: format!("error: {e}"),
        }));
    }
    Ok(results)
}

fn decode_case(
    codec: &AudioTokenizer,
    ex: &Expected,
    name: &str,
    outputs: &[String],
) -> Result<CaseResult> {
    let codes = ex.matrix(&format!("{name}.codes"))?;
    let t = codes.first().map_or(0, Vec::len);
    let sum = codec.rvq().decode(&codes)?;
    let latent = codec.decoder().fc_post2(&sum, t);
    let mut tally = Tally::default();
    for out in outputs.iter().filter(|o| ex.has(o)) {
        let (shape, want) = ex.f32(out)?;
        let suffix = out.rsplit('.').next().unwrap_or("");
        let (c, got) = match suffix {
            "quantized_sum" => (codec.rvq().dim, &sum),
            "decoder_input" => (codec.decoder().latent_dim, &latent),
            "waveform" => {
                tally.tensor(out, &codec.decode(&codes)?, want, DECODE_TOL);
                continue;
            }
            _ => {
                tally.unchecked.push(out.clone());
                continue;
            }
        };
        match channel_major(shape, want, c, t) {
            Some(want) => tally.tensor(out, got, &want, DECODE_TOL),
            None => tally.failures.push(format!(
                "{out}: shape {shape:?} is not [{c}, {t}] or [{t}, {c}]"
            )),
        }
    }
    Ok(tally.finish(name))
}

fn encode_case(
    codec: &AudioTokenizer,
    ex: &Expected,
    name: &str,
    outputs: &[String],
) -> Result<CaseResult> {
    let (_, wav) = ex.f32(&format!("{name}.waveform"))?;
    let tr: EncodeTrace = codec.encode_trace(wav)?;
    let s = &tr.semantic;
    let mut tally = Tally::default();
    for out in outputs.iter().filter(|o| ex.has(o)) {
        let suffix = out.rsplit('.').next().unwrap_or("");
        if suffix == "codes" {
            tally.codes(out, &tr.codes, &ex.matrix(out)?);
            continue;
        }
        let (shape, want) = ex.f32(out)?;
        // (ours, channels, frames) where a layout decision is needed; None = flat compare.
        let (got, layout): (Vec<f32>, Option<(usize, usize)>) = match suffix {
            "hubert_input" => (s.hubert_input.clone(), None),
            "hubert_hidden_states" => (s.hidden_states.concat(), None),
            "semantic_mean" => (s.mean.clone(), None),
            "semantic_target" => (s.target.clone(), None),
            "e_semantic" => (
                tr.e_semantic.clone(),
                Some((tr.e_semantic.len() / s.frames.max(1), s.frames)),
            ),
            "e_acoustic_call0" => {
                let (v, t) = &tr.e_acoustic_call0;
                (v.clone(), Some((v.len() / (*t).max(1), *t)))
            }
            "e_acoustic_call1" => match &tr.e_acoustic_call1 {
                Some((v, t)) => (v.clone(), Some((v.len() / (*t).max(1), *t))),
                None => {
                    tally
                        .failures
                        .push(format!("{out}: the reference re-encoded, we did not"));
                    continue;
                }
            },
            // Ours is time-major [T, Q] like the reference's [1, T, Q].
            "fc_prior_out" => (tr.fc_prior_out.clone(), None),
            "quantized_sum" => (tr.quantized_sum.clone(), Some((codec.rvq().dim, tr.frames))),
            "roundtrip_waveform" => {
                let codes = ex.matrix(&format!("{name}.codes"))?;
                tally.tensor(out, &codec.decode(&codes)?, want, DECODE_TOL);
                continue;
            }
            _ => {
                tally.unchecked.push(out.clone());
                continue;
            }
        };
        let want = match layout {
            None => Some(want.clone()),
            Some((c, t)) => channel_major(shape, want, c, t),
        };
        match want {
            Some(want) => tally.tensor(out, &got, &want, ENCODE_TOL),
            None => tally
                .failures
                .push(format!("{out}: expected shape {shape:?} does not fit ours")),
        }
    }
    if tr.e_acoustic_call1.is_some()
        && !ex.has(&format!("{name}.e_acoustic_call1"))
        && ex.has(&format!("{name}.e_acoustic_call0"))
    {
        tally
            .failures
            .push("we re-encoded, the reference did not".into());
    }
    Ok(tally.finish(name))
}
