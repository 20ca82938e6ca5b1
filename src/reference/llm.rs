//! The LLM part of `check-reference`: every case of `DIR/llm/cases.json`, recognised by the
//! tensors it provides (never by name): a forward case has `{case}.hidden_states.0`, a
//! generation case `{case}.audio_delayed`, a decode-step case a `steps` list pointing at a
//! generation case's tensors. Tolerances: 1e-4 relative for hidden states and logits, codes
//! identical.

use super::fixture::{read_json, Expected};
use super::{compare, CaseResult};
use crate::config::ModelConfig;
use crate::engine::{Engine, EngineConfig, GenerationParams, Output, Prompt};
use crate::error::{Error, Result};
use crate::model::{BatchInputs, ForwardOptions, LoadOptions, Model, ModelWeights, RowInput};
use crate::sampling::processors::SamplingParams;
use crate::weights::safetensors::Checkpoint;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const TOL: f32 = 1e-4;

/// Accumulates comparisons of one case.
#[derive(Default)]
struct Report {
    worst_rel: f32,
    worst_abs: f32,
    worst_name: String,
    mismatches: Vec<String>,
    compared: usize,
}

impl Report {
    fn floats(&mut self, name: &str, got: &[f32], want: &[f32]) {
        self.compared += 1;
        if got.len() != want.len() {
            self.mismatches.push(format!(
                "{name}: {} values, expected {}",
                got.len(),
                want.len()
            ));
            return;
        }
        let (abs, rel) = compare(got, want);
        if rel > self.worst_rel || rel.is_nan() {
            self.worst_rel = rel;
            self.worst_name = name.to_string();
        }
        self.worst_abs = self.worst_abs.max(abs);
        if rel.is_nan() || rel > TOL {
            self.mismatches.push(format!("{name}: rel {rel:.2e}"));
        }
    }
    fn codes(&mut self, name: &str, got: &[Vec<u32>], want: &[Vec<u32>]) {
        self.compared += 1;
        let (gr, wr) = (got.len(), want.len());
        let gc = got.first().map_or(0, Vec::len);
        let wc = want.first().map_or(0, Vec::len);
        if gr != wr || gc != wc {
            self.mismatches
                .push(format!("{name}: shape [{gr}, {gc}], expected [{wr}, {wc}]"));
            return;
        }
        let n = got
            .iter()
            .zip(want)
            .map(|(a, b)| a.iter().zip(b).filter(|(x, y)| x != y).count())
            .sum::<usize>();
        if n > 0 {
            self.mismatches.push(format!("{name}: {n} code mismatches"));
        }
    }
    fn ids(&mut self, name: &str, got: &[u32], want: &[u32]) {
        self.compared += 1;
        if got != want {
            let first = got
                .iter()
                .zip(want)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(want.len()));
            self.mismatches.push(format!(
                "{name}: differs at {first} (len {} vs {})",
                got.len(),
                want.len()
            ));
        }
    }
    fn finish(self, name: &str) -> CaseResult {
        let detail = if self.mismatches.is_empty() {
            format!(
                "{} checks, max abs {:.2e}, max rel {:.2e} ({}), 0 code mismatches",
                self.compared, self.worst_abs, self.worst_rel, self.worst_name
            )
        } else {
            format!(
                "{} of {} checks failed: {}",
                self.mismatches.len(),
                self.compared,
                self.mismatches.join("; ")
            )
        };
        CaseResult {
            part: "llm",
            name: name.to_string(),
            passed: self.mismatches.is_empty() && self.compared > 0,
            detail,
        }
    }
}

pub struct LlmFixture {
    pub model: Arc<Model>,
    pub expected: Expected,
    pub cases: Value,
}

impl LlmFixture {
    pub fn load(llm_dir: &Path) -> Result<Self> {
        let cfg = ModelConfig::load(llm_dir)?;
        let ck = Checkpoint::open(llm_dir)?;
        let w = ModelWeights::load(&ck, &cfg, LoadOptions::default())?;
        Ok(LlmFixture {
            model: Arc::new(Model::new(cfg, w)),
            expected: Expected::load(&llm_dir.join("expected.safetensors"))?,
            cases: read_json(&llm_dir.join("cases.json"))?,
        })
    }

    fn special(&self, name: &str) -> Option<u32> {
        self.cases
            .pointer(&format!(
                "/vocab/special_tokens/{}",
                name.replace('/', "~1")
            ))?
            .get("id")?
            .as_u64()
            .map(|v| v as u32)
    }

    /// The prompt's audio segments as raw codes `[codebook][frame]`: from the raw codes when the
    /// fixture has them (`audio_codes` / `prompt_audio_codes`, one audio-out segment), else by
    /// undoing the collator's wrap + delay of `audio_{in,out}_ids` split at `*_ids_start`.
    #[allow(clippy::type_complexity)]
    fn prompt_audio(&self, name: &str) -> Result<(Vec<Vec<Vec<u32>>>, Vec<Vec<Vec<u32>>>)> {
        let e = &self.expected;
        let split = |kind: &str| -> Result<Vec<Vec<Vec<u32>>>> {
            let key = format!("{name}.audio_{kind}_ids");
            if !e.has(&key) {
                return Ok(vec![]);
            }
            let m = e.matrix(&key)?;
            let len = m.first().map_or(0, Vec::len);
            let mut starts: Vec<usize> = if e.has(&format!("{key}_start")) {
                e.ids(&format!("{key}_start"))?
                    .into_iter()
                    .map(|v| v as usize)
                    .collect()
            } else {
                vec![0]
            };
            starts.push(len);
            let mut segs = Vec::new();
            for w in starts.windows(2) {
                let (a, b) = (w[0].min(len), w[1].min(len));
                let cols: Vec<Vec<u32>> = m.iter().map(|r| r[a..b].to_vec()).collect();
                let rev = crate::prompt::collate::revert_delay_pattern(&cols);
                segs.push(
                    rev.into_iter()
                        .map(|r| {
                            if r.len() < 2 {
                                vec![]
                            } else {
                                r[1..r.len() - 1].to_vec()
                            }
                        })
                        .collect(),
                );
            }
            Ok(segs)
        };
        let audio_in = split("in")?;
        let raw = [
            format!("{name}.audio_codes"),
            format!("{name}.prompt_audio_codes"),
        ]
        .into_iter()
        .find(|k| e.has(k));
        let audio_out = match raw {
            Some(k) => vec![e.matrix(&k)?],
            None => split("out")?,
        };
        Ok((audio_in, audio_out))
    }

    /// Forward case: one prefill with every intermediate compared.
    fn forward_case(&self, name: &str) -> Result<CaseResult> {
        let e = &self.expected;
        let cfg = &self.model.cfg;
        let ids = e.ids(&format!("{name}.input_ids"))?;
        let mut prompt = Prompt {
            ids,
            ..Default::default()
        };
        let n_out = prompt
            .ids
            .iter()
            .filter(|&&t| t == cfg.audio_out_token)
            .count();
        let n_in = prompt
            .ids
            .iter()
            .filter(|&&t| t == cfg.audio_in_token)
            .count();
        let (audio_in, audio_out) = self.prompt_audio(name)?;
        if audio_in.len() != n_in || audio_out.len() != n_out {
            return Err(Error::Unsupported(format!(
                "{name}: {n_in} <|AUDIO|> / {n_out} <|AUDIO_OUT|> placeholders but {} / {} audio segments in the fixture",
                audio_in.len(),
                audio_out.len()
            )));
        }
        prompt.audio_in = audio_in;
        prompt.audio_out = audio_out;
        let engine = Engine::new(self.model.clone(), EngineConfig::default())?;
        let rows = engine.expand_prompt(&prompt)?;
        let mut rep = Report::default();
        // Expanded ids and masks as the collator builds them.
        let expanded: Vec<u32> = rows
            .iter()
            .map(|r| match r {
                RowInput::Text(t) => *t,
                RowInput::Audio { out: true, .. } => cfg.audio_out_token,
                RowInput::Audio { .. } => cfg.audio_in_token,
            })
            .collect();
        if e.has(&format!("{name}.expanded_input_ids")) {
            rep.ids(
                "expanded_input_ids",
                &expanded,
                &e.ids(&format!("{name}.expanded_input_ids"))?,
            );
        }
        if e.has(&format!("{name}.audio_out_mask")) {
            let mask: Vec<u32> = rows
                .iter()
                .map(|r| matches!(r, RowInput::Audio { out: true, .. }) as u32)
                .collect();
            rep.ids(
                "audio_out_mask",
                &mask,
                &e.ids(&format!("{name}.audio_out_mask"))?,
            );
        }
        if e.has(&format!("{name}.audio_out_ids")) {
            let cols: Vec<Vec<u32>> = rows
                .iter()
                .filter_map(|r| match r {
                    RowInput::Audio { codes, out: true } => Some(codes.clone()),
                    _ => None,
                })
                .collect();
            rep.codes(
                "audio_out_ids",
                &transpose(&cols, cfg.n_codebooks),
                &e.matrix(&format!("{name}.audio_out_ids"))?,
            );
        }
        let n = rows.len();
        let bs = 16;
        let blocks = n.div_ceil(bs);
        let mut kv = self.model.new_kv_cache(blocks, bs);
        let inputs = BatchInputs {
            positions: (0..n as i32).collect(),
            query_seq: vec![0; n],
            slot_mapping: (0..n as i32).collect(),
            block_size: bs,
            block_tables: (0..blocks as i32).collect(),
            max_blocks: blocks,
            audio_keys: {
                let mut f: Vec<u8> = rows.iter().map(|r| r.is_audio() as u8).collect();
                f.resize(blocks * bs, 0);
                f
            },
            max_ctx: blocks * bs,
            rows: rows.clone(),
        };
        let opts = ForwardOptions {
            out_rows: (0..n as u32).collect(),
            capture_layers: true,
        };
        let out = self.model.forward(&inputs, &mut kv, &opts)?;
        for (i, t) in out.layers.iter().enumerate() {
            let key = format!("{name}.hidden_states.{i}");
            if e.has(&key) {
                rep.floats(
                    &format!("hidden_states.{i}"),
                    &t.to_f32_vec()?,
                    &e.f32(&key)?.1,
                );
            }
        }
        let hidden = out.hidden.to_f32_vec()?;
        if e.has(&format!("{name}.last_hidden_state")) {
            rep.floats(
                "last_hidden_state",
                &hidden,
                &e.f32(&format!("{name}.last_hidden_state"))?.1,
            );
        }
        let text = self.model.text_logits(&out.hidden)?.to_f32_vec()?;
        let v = cfg.vocab;
        if e.has(&format!("{name}.text_logits")) {
            rep.floats(
                "text_logits",
                &text,
                &e.f32(&format!("{name}.text_logits"))?.1,
            );
        }
        if e.has(&format!("{name}.final_text_logits")) {
            rep.floats(
                "final_text_logits",
                &text[(n - 1) * v..],
                &e.f32(&format!("{name}.final_text_logits"))?.1,
            );
        }
        let audio_rows: Vec<u32> = rows
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, RowInput::Audio { out: true, .. }))
            .map(|(i, _)| i as u32)
            .collect();
        if !audio_rows.is_empty() {
            let h_audio = crate::ops::gather_rows(&out.hidden, &audio_rows)?;
            let al = self.model.audio_logits(&h_audio)?.to_f32_vec()?;
            if e.has(&format!("{name}.audio_logits")) {
                rep.floats(
                    "audio_logits",
                    &al,
                    &e.f32(&format!("{name}.audio_logits"))?.1,
                );
            }
            let w = cfg.n_codebooks * cfg.codebook_rows();
            if e.has(&format!("{name}.final_audio_logits")) {
                rep.floats(
                    "final_audio_logits",
                    &al[al.len() - w..],
                    &e.f32(&format!("{name}.final_audio_logits"))?.1,
                );
            }
        }
        Ok(rep.finish(name))
    }

    /// Greedy generation with the case's prompt, as the fixture generator called it.
    pub fn run_generation(&self, name: &str, case: &Value) -> Result<Output> {
        let (prompt, params) = self.generation_request(name, case)?;
        let mut engine = Engine::new(self.model.clone(), EngineConfig::default())?;
        engine.generate(&prompt, params)
    }

    /// The prompt and parameters of a generation case.
    pub fn generation_request(
        &self,
        name: &str,
        case: &Value,
    ) -> Result<(Prompt, GenerationParams)> {
        let e = &self.expected;
        let cfg = &self.model.cfg;
        let mut prompt = Prompt {
            ids: e.ids(&format!("{name}.input_ids"))?,
            ..Default::default()
        };
        let (audio_in, audio_out) = self.prompt_audio(name)?;
        prompt.audio_in = audio_in;
        prompt.audio_out = audio_out;
        let max_new = case
            .pointer("/info/max_new_tokens")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::Other(format!("{name}: info.max_new_tokens missing")))?
            as usize;
        let mut stops = vec![cfg.eos_token];
        stops.extend(self.special("<|eot_id|>"));
        stops.extend(self.special("<|end_of_text|>"));
        let mut params = GenerationParams::new(max_new, stops);
        params.sampling = SamplingParams::greedy();
        params.ras_win_len = 0;
        params.seed = Some(0);
        params.record_logits = true;
        params.record_hidden = true;
        // The fixture keeps audio going with transformers' suppress_tokens=[stream eos], which
        // applies to the text logits as well as the audio rows.
        if case.get("audio_kept_alive").is_some() {
            params.suppress_audio = vec![cfg.stream_eos as usize];
            params.suppress_text = vec![cfg.stream_eos as usize];
        }
        Ok((prompt, params))
    }

    fn generation_case(&self, name: &str, case: &Value, out: &Output) -> Result<CaseResult> {
        let e = &self.expected;
        let cfg = &self.model.cfg;
        let mut rep = Report::default();
        let c = cfg.n_codebooks;
        let seg = out.segments.last().cloned().unwrap_or_default();
        let delayed = transpose(&seg, c);
        rep.codes(
            "audio_delayed",
            &delayed,
            &e.matrix(&format!("{name}.audio_delayed"))?,
        );
        if e.has(&format!("{name}.audio_out_ids")) {
            // The collator's wrap + delay of every prompt segment, concatenated.
            let (_, segs) = self.prompt_audio(name)?;
            let mut d: Vec<Vec<u32>> = vec![Vec::new(); c];
            for seg in &segs {
                let w = crate::prompt::collate::wrap_and_delay(seg, cfg.stream_bos, cfg.stream_eos);
                for (row, r) in d.iter_mut().zip(w) {
                    row.extend(r);
                }
            }
            rep.codes(
                "audio_out_ids",
                &d,
                &e.matrix(&format!("{name}.audio_out_ids"))?,
            );
        }
        let reverted = crate::prompt::collate::revert_delay_pattern(&delayed);
        if e.has(&format!("{name}.audio_reverted")) {
            rep.codes(
                "audio_reverted",
                &reverted,
                &e.matrix(&format!("{name}.audio_reverted"))?,
            );
        }
        if e.has(&format!("{name}.vq_code_serve")) {
            let serve: Vec<Vec<u32>> = reverted
                .iter()
                .map(|r| {
                    if r.len() < 2 {
                        vec![]
                    } else {
                        r[1..r.len() - 1]
                            .iter()
                            .map(|&v| v.min(cfg.codebook_size as u32 - 1))
                            .collect()
                    }
                })
                .collect();
            rep.codes(
                "vq_code_serve",
                &serve,
                &e.matrix(&format!("{name}.vq_code_serve"))?,
            );
        }
        let prompt_ids = e.ids(&format!("{name}.input_ids"))?;
        if e.has(&format!("{name}.sequences")) {
            let mut seq = prompt_ids.clone();
            seq.extend(&out.ids);
            rep.ids("sequences", &seq, &e.ids(&format!("{name}.sequences"))?);
        }
        if e.has(&format!("{name}.generated_text_tokens")) {
            rep.ids(
                "generated_text_tokens",
                &out.ids,
                &e.ids(&format!("{name}.generated_text_tokens"))?,
            );
        }
        if e.has(&format!("{name}.step_audio_logits")) {
            let got: Vec<f32> = out.step_audio_logits.concat();
            rep.floats(
                "step_audio_logits",
                &got,
                &e.f32(&format!("{name}.step_audio_logits"))?.1,
            );
        }
        if e.has(&format!("{name}.init_text_logits")) {
            let got = out.step_text_logits.first().cloned().unwrap_or_default();
            rep.floats(
                "init_text_logits",
                &got,
                &e.f32(&format!("{name}.init_text_logits"))?.1,
            );
        }
        if e.has(&format!("{name}.step_text_logits")) {
            let got: Vec<f32> = out
                .step_text_logits
                .iter()
                .skip(1)
                .flatten()
                .copied()
                .collect();
            rep.floats(
                "step_text_logits",
                &got,
                &e.f32(&format!("{name}.step_text_logits"))?.1,
            );
        }
        let mut k = 1;
        while e.has(&format!("{name}.decode_step{k}.hidden_states")) {
            let got: Vec<f32> = out
                .step_hidden
                .get(k - 1)
                .map(|v| v.concat())
                .unwrap_or_default();
            rep.floats(
                &format!("decode_step{k}.hidden_states"),
                &got,
                &e.f32(&format!("{name}.decode_step{k}.hidden_states"))?.1,
            );
            k += 1;
        }
        let _ = case;
        Ok(rep.finish(name))
    }

    /// Decode-step case: each step names tensors of a generation case (`case.tensor[idx]`).
    fn steps_case(
        &self,
        name: &str,
        case: &Value,
        runs: &BTreeMap<String, Output>,
    ) -> Result<CaseResult> {
        let mut rep = Report::default();
        let steps = case
            .get("steps")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Other(format!("{name}: no steps")))?;
        for st in steps {
            let k = st.get("k").and_then(Value::as_u64).unwrap_or(0) as usize;
            if k == 0 {
                return Err(Error::Other(format!("{name}: step without k")));
            }
            for (field, what) in [
                ("expected_audio_logits", "audio_logits"),
                ("expected_hidden_states", "hidden_states"),
                ("expected_next_column", "next_column"),
            ] {
                let Some(r) = st.get(field).and_then(Value::as_str) else {
                    continue;
                };
                let (tensor, index) = parse_ref(r);
                let gen = tensor.split('.').next().unwrap_or_default().to_string();
                let out = runs.get(&gen).ok_or_else(|| {
                    Error::Other(format!("{name}: refers to {gen}, which was not run"))
                })?;
                let e = &self.expected;
                match what {
                    "audio_logits" => {
                        let (shape, data) = e.f32(&tensor)?;
                        let w: usize = shape[1..].iter().product();
                        let i = index.unwrap_or(0);
                        let got = out.step_audio_logits.get(i).cloned().unwrap_or_default();
                        rep.floats(
                            &format!("step{k}.audio_logits"),
                            &got,
                            &data[i * w..(i + 1) * w],
                        );
                    }
                    "hidden_states" => {
                        let got = out
                            .step_hidden
                            .get(k - 1)
                            .map(|v| v.concat())
                            .unwrap_or_default();
                        rep.floats(&format!("step{k}.hidden_states"), &got, &e.f32(&tensor)?.1);
                    }
                    _ => {
                        let m = e.matrix(&tensor)?;
                        let i = index.unwrap_or(0);
                        let want: Vec<Vec<u32>> = m
                            .iter()
                            .map(|r| vec![r.get(i).copied().unwrap_or(u32::MAX)])
                            .collect();
                        let seg = out.segments.last().cloned().unwrap_or_default();
                        let got: Vec<Vec<u32>> = (0..m.len())
                            .map(|c| {
                                vec![seg
                                    .get(i)
                                    .and_then(|col| col.get(c))
                                    .copied()
                                    .unwrap_or(u32::MAX - 1)]
                            })
                            .collect();
                        rep.codes(&format!("step{k}.next_column"), &got, &want);
                    }
                }
            }
        }
        Ok(rep.finish(name))
    }
}

/// `"gen_tts.audio_delayed[:, 1]"` -> ("gen_tts.audio_delayed", Some(1)); `"x[2]"` -> ("x", Some(2)).
fn parse_ref(r: &str) -> (String, Option<usize>) {
    match r.find('[') {
        Some(p) => {
            let idx = r[p + 1..]
                .trim_end_matches(']')
                .split(',')
                .map(str::trim)
                .find(|s| *s != ":")
                .and_then(|s| s.parse().ok());
            (r[..p].trim().to_string(), idx)
        }
        None => (r.trim().to_string(), None),
    }
}

/// Columns `[n][c]` -> rows `[c][n]`.
pub fn transpose(cols: &[Vec<u32>], c: usize) -> Vec<Vec<u32>> {
    (0..c)
        .map(|r| cols.iter().map(|col| col[r]).collect())
        .collect()
}

/// Run every case of `dir/llm`.
pub fn check_llm(dir: &Path) -> Result<Vec<CaseResult>> {
    let llm_dir = dir.join("llm");
    let fx = LlmFixture::load(&llm_dir)?;
    let cases = fx
        .cases
        .get("cases")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| Error::config(llm_dir.join("cases.json"), "cases", "missing"))?;
    let mut results = Vec::new();
    let mut runs: BTreeMap<String, Output> = BTreeMap::new();
    let fail = |name: &str, e: Error| CaseResult {
        part: "llm",
        name: name.to_string(),
        passed: false,
        detail: format!("error: {e}"),
    };
    for (name, case) in &cases {
        if fx.expected.has(&format!("{name}.hidden_states.0")) {
            results.push(fx.forward_case(name).unwrap_or_else(|e| fail(name, e)));
        } else if fx.expected.has(&format!("{name}.audio_delayed")) {
            match fx.run_generation(name, case) {
                Ok(out) => {
                    results.push(
                        fx.generation_case(name, case, &out)
                            .unwrap_or_else(|e| fail(name, e)),
                    );
                    runs.insert(name.clone(), out);
                }
                Err(e) => results.push(fail(name, e)),
            }
        }
    }
    for (name, case) in &cases {
        if case.get("steps").is_some() {
            results.push(
                fx.steps_case(name, case, &runs)
                    .unwrap_or_else(|e| fail(name, e)),
            );
        } else if !fx
            .expected
            .names()
            .any(|t| t.starts_with(&format!("{name}.")))
        {
            eprintln!("note: llm case {name} has no tensors to compare; not run");
        }
    }
    Ok(results)
}
