//! criterion benchmark of one whole-model decode step through `engine::Engine` (embed, every
//! layer with paged attention and DualFFN, audio head, sampling) on the CPU backend, with
//! random bf16 weights on a scaled-down Higgs config (hidden 512, 4 dual layers, heads 8/2,
//! head_dim 64, FFN 1536, vocab 128256, 8 codebooks x 1026 rows). Groups
//! `step/cpu/bf16/audio_decode_b{batch}`; throughput counts sequences. Every sequence is kept in
//! audio mode (its prompt ends in `<|audio_out_bos|>`, stream EOS suppressed, RAS off), and the
//! engine is rebuilt outside the timed region every `STEPS_PER_ENGINE` steps so the context stays
//! short. May use: higgs_engine::{config, engine, model, tensor}, criterion.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use higgs_engine::config::ModelConfig;
use higgs_engine::engine::{Engine, EngineConfig, Event, GenerationParams, Prompt};
use higgs_engine::model::{Model, ModelWeights};
use higgs_engine::tensor::DType;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STEPS_PER_ENGINE: usize = 256;
/// The `higgs bench --shape small` config (hidden 512, 4 dual layers, 8/2 heads).
fn small_config() -> ModelConfig {
    higgs_engine::bench::shape_config("small").expect("the small bench shape is valid")
}

/// An engine with `batch` sequences already in audio decode mode.
fn audio_engine(model: &Arc<Model>, batch: usize) -> Engine {
    let cfg = &model.cfg;
    let mut e = Engine::new(
        model.clone(),
        EngineConfig {
            num_blocks: 64 * batch,
            block_size: 16,
            ..Default::default()
        },
    )
    .expect("engine");
    for i in 0..batch {
        let prompt = Prompt {
            ids: vec![
                cfg.bos_token,
                100 + i as u32,
                200,
                300,
                400,
                500,
                cfg.audio_out_bos_token,
            ],
            ..Default::default()
        };
        let mut params = GenerationParams::new(100_000, vec![cfg.eos_token]);
        params.seed = Some(i as u64);
        params.ras_win_len = 0;
        params.suppress_audio = vec![cfg.stream_eos as usize];
        e.add(&prompt, params).expect("add");
    }
    // Step 1 prefills and forces the all-BOS column, step 2 feeds it: from then on audio.
    e.step().expect("prefill step");
    let ev = e.step().expect("first audio step");
    let audio = ev
        .iter()
        .filter(|(_, e)| matches!(e, Event::Audio(_)))
        .count();
    assert_eq!(audio, batch, "every sequence decodes audio: {ev:?}");
    e
}

fn step(c: &mut Criterion) {
    let cfg = small_config();
    let w = ModelWeights::random(&cfg, DType::BF16, 7, 0.02).expect("random weights");
    let model = Arc::new(Model::new(cfg, w));
    let mut g = c.benchmark_group("step/cpu/bf16");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for batch in [1usize, 8] {
        g.throughput(Throughput::Elements(batch as u64));
        let mut engine = audio_engine(&model, batch);
        let mut steps = 0;
        g.bench_function(format!("audio_decode_b{batch}_h512_l4"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    if steps == STEPS_PER_ENGINE {
                        engine = audio_engine(&model, batch);
                        steps = 0;
                    }
                    let t = Instant::now();
                    let ev = engine.step().expect("decode step");
                    total += t.elapsed();
                    debug_assert!(ev.iter().all(|(_, e)| matches!(e, Event::Audio(_))));
                    steps += 1;
                }
                total
            })
        });
    }
    g.finish();
}

criterion_group!(benches, step);
criterion_main!(benches);
