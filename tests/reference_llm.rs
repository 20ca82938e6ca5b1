//! The LLM against the reference fixtures (tests/fixtures/reference/llm), and batched
//! generation: several requests in one engine must give exactly what each gives alone.

use higgs_engine::engine::{Engine, EngineConfig, Event, GenerationParams};
use higgs_engine::reference::llm::{check_llm, LlmFixture};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

#[test]
fn every_llm_case_passes() {
    let results = check_llm(&fixtures()).expect("fixture loads");
    assert!(
        results.len() >= 5,
        "expected the fixture's cases, got {}",
        results.len()
    );
    for r in &results {
        println!("{r}");
    }
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "failed: {failed:#?}");
}

#[test]
fn batched_generation_matches_single_runs() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let cases = fx.cases["cases"].as_object().unwrap().clone();
    let names = ["gen_tts", "gen_clone", "gen_tts_natural"];
    let singles: Vec<_> = names
        .iter()
        .map(|n| fx.run_generation(n, &cases[*n]).unwrap())
        .collect();

    // Same requests, all in one engine, with a small block size so tables span many blocks,
    // and staggered starts so prefill and decode rows share steps.
    let mut engine = Engine::new(
        fx.model.clone(),
        EngineConfig {
            num_blocks: 64,
            block_size: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let free0 = engine.num_free_blocks();
    let mut ids = Vec::new();
    let mut events = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let (prompt, params) = fx.generation_request(n, &cases[*n]).unwrap();
        ids.push(engine.add(&prompt, params).unwrap());
        for _ in 0..=i {
            events.extend(engine.step().unwrap());
        }
    }
    while engine.num_active() > 0 {
        events.extend(engine.step().unwrap());
    }
    for (k, id) in ids.iter().enumerate() {
        let out = engine.take_output(*id).expect("finished");
        assert_eq!(out.ids, singles[k].ids, "{}: text ids", names[k]);
        assert_eq!(out.segments, singles[k].segments, "{}: audio", names[k]);
        let finished = events
            .iter()
            .filter(|(s, e)| s == id && matches!(e, Event::Finished(_)))
            .count();
        assert_eq!(finished, 1);
        // The streamed columns are the segment's columns.
        let streamed: Vec<Vec<u32>> = events
            .iter()
            .filter(|(s, _)| s == id)
            .filter_map(|(_, e)| {
                if let Event::Audio(c) = e {
                    Some(c.clone())
                } else {
                    None
                }
            })
            .collect();
        assert_eq!(streamed, out.segments.concat());
    }
    assert_eq!(
        engine.num_free_blocks(),
        free0,
        "every KV block returns to the pool"
    );
}

#[test]
fn capacity_is_a_clear_error() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let cases = fx.cases["cases"].as_object().unwrap().clone();
    let mut engine = Engine::new(
        fx.model.clone(),
        EngineConfig {
            num_blocks: 2,
            block_size: 4,
            ..Default::default()
        },
    )
    .unwrap();
    let (prompt, params) = fx.generation_request("gen_tts", &cases["gen_tts"]).unwrap();
    let e = engine.add(&prompt, params).unwrap_err().to_string();
    assert!(e.contains("never fit"), "{e}");
}

/// Plain Llama layers (adapter `dual_ffn` outside `audio_dual_ffn_layers`) share the routed
/// layer code: on a text-only prompt they must equal the fixture's fast-forward layers (no
/// audio rows, no audio keys), and with audio rows present they must not (plain layers run
/// audio rows through the text FFN; fast-forward layers pass them through).
#[test]
fn plain_layers_match_fast_forward_on_text_and_differ_on_audio() {
    use higgs_engine::config::{LayerKind, ModelConfig};
    use higgs_engine::engine::Prompt;
    use higgs_engine::model::{LoadOptions, Model, ModelWeights};
    use higgs_engine::weights::safetensors::Checkpoint;
    use std::sync::Arc;
    let dir = fixtures().join("llm");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let ff_cfg = ModelConfig::from_json(&dir.join("config.json"), &json).unwrap();
    json["audio_adapter_type"] = "dual_ffn".into();
    let plain_cfg = ModelConfig::from_json(&dir.join("config.json"), &json).unwrap();
    assert_eq!(plain_cfg.layer_kinds[1], LayerKind::Plain);
    let models: Vec<Arc<Model>> = [ff_cfg, plain_cfg]
        .into_iter()
        .map(|c| {
            let w = ModelWeights::load(&ck, &c, LoadOptions::default()).unwrap();
            Arc::new(Model::new(c, w))
        })
        .collect();
    let params = || {
        let mut p = GenerationParams::new(3, vec![]);
        p.sampling = higgs_engine::sampling::processors::SamplingParams::greedy();
        p.ras_win_len = 0;
        p.record_logits = true;
        p
    };
    let text = Prompt {
        ids: vec![224, 230, 17, 231, 2, 14, 47, 22, 34, 4],
        ..Default::default()
    };
    let run = |m: &Arc<Model>, p: &Prompt| {
        let mut e = Engine::new(m.clone(), EngineConfig::default()).unwrap();
        e.generate(p, params()).unwrap().step_text_logits
    };
    let (a, b) = (run(&models[0], &text), run(&models[1], &text));
    for (x, y) in a.iter().zip(&b) {
        let (_, rel) = higgs_engine::reference::compare(x, y);
        assert!(rel < 1e-6, "text-only: rel {rel}");
    }
    let codes: Vec<Vec<u32>> = (0..8)
        .map(|c| (0..4).map(|t| (c * 7 + t * 3) as u32 % 64).collect())
        .collect();
    let mut audio = text.clone();
    audio.ids.splice(5..5, [237, 240, 236]);
    audio.audio_out.push(codes);
    let (a, b) = (run(&models[0], &audio), run(&models[1], &audio));
    let (_, rel) = higgs_engine::reference::compare(&a[0], &b[0]);
    assert!(
        rel > 1e-3,
        "audio rows must take different paths: rel {rel}"
    );
}

/// Per-phase step timing: off by default, and when on it counts every step and splits the
/// time into phases without changing what is generated.
#[test]
fn step_timing_counts_phases_and_changes_nothing() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let cases = fx.cases["cases"].as_object().unwrap().clone();
    let (prompt, params) = fx.generation_request("gen_tts", &cases["gen_tts"]).unwrap();
    let run = |timed: bool| {
        let mut e = Engine::new(fx.model.clone(), EngineConfig::default()).unwrap();
        e.set_timing(timed);
        let id = e.add(&prompt, params.clone()).unwrap();
        let mut steps = 0;
        while e.num_active() > 0 {
            e.step().unwrap();
            steps += 1;
        }
        (e.take_output(id).unwrap(), e.step_times(), steps)
    };
    let (plain, t0, _) = run(false);
    assert_eq!(t0.steps, 0, "timing was off");
    let (timed, t, steps) = run(true);
    assert_eq!(timed.segments, plain.segments);
    assert_eq!(t.steps, steps as u64);
    assert!(t.forward_s > 0.0 && t.heads_s > 0.0, "{t:?}");
}
