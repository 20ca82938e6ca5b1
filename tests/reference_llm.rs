//! The LLM against the reference fixtures (tests/fixtures/reference/llm), and batched
//! generation: several requests in one engine must give exactly what each gives alone.

use higgs_engine::generate::{Engine, EngineConfig, Event};
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
        },
    )
    .unwrap();
    let (prompt, params) = fx.generation_request("gen_tts", &cases["gen_tts"]).unwrap();
    let e = engine.add(&prompt, params).unwrap_err().to_string();
    assert!(e.contains("never fit"), "{e}");
}
