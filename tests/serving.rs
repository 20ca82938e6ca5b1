//! The serving core on the CPU with the fixture model and tiny block pools: 24 requests that
//! arrive at random steps, with random prompt and output lengths and shared voice prefixes,
//! must each give exactly what they give alone, under greedy and seeded sampling, with chunked
//! prefill at small budgets, forced preemption, the prefix cache on and off, and random aborts
//! of other requests. Afterwards every block is back; FCFS admission; failed steps free
//! their blocks; the engine thread handle streams, aborts on drop and refuses past its queue;
//! a pool of two replicas gives single-replica outputs, keeps voices together and survives
//! one replica failing.

use higgs_engine::codec::model::AudioTokenizer;
use higgs_engine::engine::{
    Engine, EngineConfig, EngineHandle, EngineParts, EnginePool, Event, FinishReason,
    GenerationParams, HandleConfig, Output, Prompt, RequestEvent, RouterConfig, TtsInput,
    TtsRequest,
};
use higgs_engine::kv::manager::SeqId;
use higgs_engine::model::Model;
use higgs_engine::prompt::{AudioItem, ModelInput};
use higgs_engine::reference::llm::LlmFixture;
use higgs_engine::sampling::processors::SamplingParams;
use higgs_engine::tokenizer::TextTokenizer;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

fn seed() -> u64 {
    let s = std::env::var("HIGGS_TEST_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_2026);
    println!("seed {s} (HIGGS_TEST_SEED replays)");
    s
}

#[derive(Clone)]
struct Req {
    prompt: Prompt,
    params: GenerationParams,
    /// Engine step at which it is submitted.
    at_step: usize,
}

/// Random requests: some share one of two voice prefixes (text + an audio-out segment of
/// codes, long enough to fill several blocks), all end in `<|audio_out_bos|>` so they
/// generate audio; greedy or seeded sampling.
fn random_requests(model: &Model, n: usize, seeded: bool, rng: &mut StdRng) -> Vec<Req> {
    let cfg = &model.cfg;
    let voice = |rng: &mut StdRng, len: usize| -> (Vec<u32>, Vec<Vec<u32>>) {
        let ids: Vec<u32> = (0..6).map(|_| rng.gen_range(10..200)).collect();
        let codes: Vec<Vec<u32>> = (0..cfg.n_codebooks)
            .map(|_| {
                (0..len)
                    .map(|_| rng.gen_range(0..cfg.codebook_size as u32))
                    .collect()
            })
            .collect();
        (ids, codes)
    };
    let voices = [voice(rng, 23), voice(rng, 9)];
    let mut at = 0;
    (0..n)
        .map(|i| {
            let mut ids = vec![cfg.bos_token];
            let mut audio_out = Vec::new();
            let v = rng.gen_range(0..3);
            if v < 2 {
                ids.extend_from_slice(&voices[v].0);
                ids.push(cfg.audio_out_token);
                audio_out.push(voices[v].1.clone());
            }
            let text_len = rng.gen_range(1..20);
            ids.extend((0..text_len).map(|_| rng.gen_range(10..200)));
            ids.push(cfg.audio_out_bos_token);
            let mut params = GenerationParams::new(rng.gen_range(3..40), vec![cfg.eos_token]);
            params.ras_win_len = 0;
            if seeded {
                params.sampling = SamplingParams {
                    temperature: 1.0,
                    top_k: Some(20),
                    top_p: 0.9,
                };
                params.ras_win_len = 4;
                params.seed = Some(1000 + i as u64);
            } else {
                params.sampling = SamplingParams::greedy();
            }
            at += rng.gen_range(0..4);
            Req {
                prompt: Prompt {
                    ids,
                    audio_in: vec![],
                    audio_out,
                },
                params,
                at_step: at,
            }
        })
        .collect()
}

fn solo(model: &Arc<Model>, r: &Req) -> Output {
    let mut e = Engine::new(
        model.clone(),
        EngineConfig {
            num_blocks: 256,
            block_size: 4,
            prefix_caching: false,
            ..Default::default()
        },
    )
    .unwrap();
    e.generate(&r.prompt, r.params.clone()).unwrap()
}

struct Run {
    outputs: HashMap<usize, Output>,
    aborted: Vec<usize>,
    /// First step at which each request's rows were fed (admission), by request index.
    admitted_at: BTreeMap<usize, usize>,
    preemptions: u64,
    prefill_saved: u64,
    chunked: bool,
}

/// Drives one engine over the requests; aborts `abort_p` of them at random steps.
fn run_all(
    model: &Arc<Model>,
    cfg: EngineConfig,
    reqs: &[Req],
    abort_p: f64,
    rng: &mut StdRng,
) -> Run {
    let mut e = Engine::new(model.clone(), cfg).unwrap();
    let total_blocks = e.num_free_blocks();
    let mut ids: HashMap<SeqId, usize> = HashMap::new();
    let mut outputs = HashMap::new();
    let mut aborted = Vec::new();
    let mut admitted_at = BTreeMap::new();
    let mut chunked = false;
    let mut next = 0;
    let mut step = 0;
    let to_abort: Vec<bool> = reqs.iter().map(|_| rng.gen_bool(abort_p)).collect();
    loop {
        while next < reqs.len() && reqs[next].at_step <= step {
            let id = e
                .add(&reqs[next].prompt, reqs[next].params.clone())
                .unwrap();
            ids.insert(id, next);
            next += 1;
        }
        if next == reqs.len() && e.num_active() == 0 {
            break;
        }
        let running_before: Vec<SeqId> = e.scheduler().running().to_vec();
        let events = e.step().unwrap();
        for &id in e.scheduler().running() {
            if !running_before.contains(&id) {
                admitted_at.entry(ids[&id]).or_insert(step);
            }
        }
        chunked |= e.scheduler().running().iter().any(|&id| {
            let s = e.scheduler().seq(id).unwrap();
            s.num_computed > 0 && s.num_computed + 1 < s.rows.len()
        });
        for (id, ev) in events {
            if let Event::Finished(r) = ev {
                assert!(!matches!(r, FinishReason::Error(_)), "{r:?}");
                admitted_at.entry(ids[&id]).or_insert(step);
                outputs.insert(ids[&id], e.take_output(id).unwrap());
            }
        }
        // Abort a random running or waiting request marked for it.
        if rng.gen_bool(0.2) {
            let active: Vec<SeqId> = ids
                .iter()
                .filter(|(_, &i)| to_abort[i] && !outputs.contains_key(&i) && !aborted.contains(&i))
                .map(|(&s, _)| s)
                .collect();
            if let Some(&victim) = active.first() {
                if e.abort(victim).unwrap() {
                    aborted.push(ids[&victim]);
                }
            }
        }
        step += 1;
        assert!(step < 20_000, "no progress");
    }
    // Every block is back: free or held only by the prefix cache, unreferenced.
    let kv = e.scheduler().kv();
    assert_eq!(kv.num_sequences(), 0);
    assert_eq!(e.num_free_blocks(), total_blocks, "blocks leaked");
    assert_eq!(
        kv.num_cached_blocks(),
        kv.num_evictable_blocks(),
        "the prefix cache holds only unreferenced blocks at the end"
    );
    assert_eq!(
        kv.num_unused_blocks() + kv.num_evictable_blocks(),
        total_blocks
    );
    Run {
        outputs,
        aborted,
        admitted_at,
        preemptions: e.scheduler().stats().preemptions,
        prefill_saved: e.scheduler().stats().prefill_rows_saved,
        chunked,
    }
}

fn check_case(seeded: bool, cfg: EngineConfig, abort_p: f64, label: &str) -> Run {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed() ^ (seeded as u64) << 7);
    let reqs = random_requests(&fx.model, 24, seeded, &mut rng);
    let run = run_all(&fx.model, cfg, &reqs, abort_p, &mut rng);
    for (i, r) in reqs.iter().enumerate() {
        if run.aborted.contains(&i) {
            assert!(
                !run.outputs.contains_key(&i),
                "{label}: aborted {i} has an output"
            );
            continue;
        }
        let want = solo(&fx.model, r);
        let got = run
            .outputs
            .get(&i)
            .unwrap_or_else(|| panic!("{label}: request {i} lost"));
        assert_eq!(got.ids, want.ids, "{label}: request {i} text ids");
        assert_eq!(got.segments, want.segments, "{label}: request {i} audio");
        assert_eq!(got.finish, want.finish, "{label}: request {i} finish");
    }
    // FCFS: admission follows arrival (a request never starts before an earlier one).
    let order: Vec<usize> = run.admitted_at.keys().copied().collect();
    let steps: Vec<usize> = order.iter().map(|i| run.admitted_at[i]).collect();
    for w in steps.windows(2) {
        assert!(
            w[0] <= w[1],
            "{label}: admission out of arrival order: {steps:?}"
        );
    }
    run
}

fn small(num_blocks: usize, budget: usize, prefix: bool) -> EngineConfig {
    EngineConfig {
        num_blocks,
        block_size: 4,
        max_num_batched_tokens: budget,
        max_num_seqs: 64,
        prefix_caching: prefix,
    }
}

#[test]
fn chunked_prefill_matches_solo_runs() {
    for seeded in [false, true] {
        let r = check_case(seeded, small(400, 7, false), 0.0, "chunked");
        assert!(r.chunked, "a prompt was spread over several steps");
        assert_eq!(r.preemptions, 0);
    }
}

#[test]
fn preemption_matches_solo_runs() {
    for seeded in [false, true] {
        // Room for about two requests at a time: decodes run out of blocks and preempt.
        let r = check_case(seeded, small(40, 64, false), 0.0, "preempt");
        assert!(r.preemptions > 0, "the pool forced preemption");
    }
}

#[test]
fn prefix_cache_matches_solo_runs() {
    for seeded in [false, true] {
        let r = check_case(seeded, small(400, 32, true), 0.0, "prefix");
        assert!(r.prefill_saved > 0, "shared voice prefixes hit the cache");
        let r = check_case(seeded, small(40, 16, true), 0.0, "prefix+preempt");
        assert!(r.preemptions > 0);
    }
}

#[test]
fn random_aborts_leave_others_intact() {
    for seeded in [false, true] {
        let r = check_case(seeded, small(60, 9, true), 0.4, "aborts");
        assert!(!r.aborted.is_empty(), "some requests were aborted");
    }
}

#[test]
fn a_failed_step_fails_its_requests_and_frees_their_blocks() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let reqs = random_requests(&fx.model, 4, false, &mut rng);
    let mut e = Engine::new(fx.model.clone(), small(100, 16, true)).unwrap();
    let total = e.num_free_blocks();
    let ids: Vec<SeqId> = reqs
        .iter()
        .map(|r| e.add(&r.prompt, r.params.clone()).unwrap())
        .collect();
    e.step().unwrap();
    e.fail_next_step();
    let events = e.step().unwrap();
    let failed: Vec<SeqId> = events
        .iter()
        .filter(|(_, ev)| matches!(ev, Event::Finished(FinishReason::Error(m)) if m.contains("injected")))
        .map(|(s, _)| *s)
        .collect();
    assert!(!failed.is_empty(), "the step's requests failed: {events:?}");
    for id in &failed {
        assert!(e.take_output(*id).is_some());
    }
    // The others (if any were not in that step) still finish normally.
    while e.num_active() > 0 {
        for (id, ev) in e.step().unwrap() {
            if let Event::Finished(r) = ev {
                assert!(!matches!(r, FinishReason::Error(_)));
                assert!(ids.contains(&id));
            }
        }
    }
    assert_eq!(
        e.num_free_blocks(),
        total,
        "no block leaked on the error path"
    );
    assert_eq!(e.scheduler().kv().num_sequences(), 0);
}

#[test]
fn a_request_that_can_never_fit_is_refused_at_once() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let mut r = random_requests(&fx.model, 1, false, &mut rng).remove(0);
    r.params.max_new_tokens = 1000;
    let mut e = Engine::new(fx.model.clone(), small(8, 16, true)).unwrap();
    let err = e.add(&r.prompt, r.params.clone()).unwrap_err().to_string();
    assert!(
        err.contains("can never fit") && err.contains("8 in all"),
        "{err}"
    );
    assert_eq!(e.num_active(), 0);
}

#[test]
fn fcfs_head_of_line_is_never_overtaken() {
    // A big request that does not fit yet must not be overtaken by a small later one.
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let cfg = &fx.model.cfg;
    let mk = |len: usize, max_new: usize| {
        let mut ids = vec![cfg.bos_token];
        ids.extend((0..len).map(|i| 10 + i as u32 % 100));
        ids.push(cfg.audio_out_bos_token);
        let mut p = GenerationParams::new(max_new, vec![cfg.eos_token]);
        p.sampling = SamplingParams::greedy();
        (
            Prompt {
                ids,
                ..Default::default()
            },
            p,
        )
    };
    let mut e = Engine::new(fx.model.clone(), small(20, 256, false)).unwrap();
    let (p1, g1) = mk(30, 30); // holds most of the pool while it runs
    let (p2, g2) = mk(40, 20); // needs more than what is left
    let (p3, g3) = mk(2, 4); // would fit beside the first
    let a = e.add(&p1, g1).unwrap();
    e.step().unwrap();
    let b = e.add(&p2, g2).unwrap();
    let c = e.add(&p3, g3).unwrap();
    let mut started: Vec<SeqId> = vec![];
    while e.num_active() > 0 {
        e.step().unwrap();
        for &id in e.scheduler().running() {
            if !started.contains(&id) {
                started.push(id);
            }
        }
        if started.contains(&c) {
            assert!(started.contains(&b), "c was admitted before b");
        }
    }
    assert_eq!(started.first(), Some(&a));
}

fn toy_tokenizer() -> TextTokenizer {
    TextTokenizer::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-tokenizer.json"),
    )
    .unwrap()
}

fn handle(model: Arc<Model>, cfg: EngineConfig, max_queue: usize) -> EngineHandle {
    EngineHandle::spawn(
        move || {
            Ok(EngineParts {
                model,
                codec: AudioTokenizer::load(&fixtures().join("codec"))?,
                tokenizer: Arc::new(toy_tokenizer()),
                config: cfg,
            })
        },
        HandleConfig { max_queue },
    )
    .unwrap()
}

/// A collated request (voice segment + text, forced audio start), as the server sends them.
fn tts_request(model: &Model, r: &Req) -> TtsRequest {
    let cfg = &model.cfg;
    let audios: Vec<AudioItem> = r
        .prompt
        .audio_out
        .iter()
        .map(|c| AudioItem {
            label: "voice".into(),
            codes: c.clone(),
        })
        .collect();
    let mut ids = r.prompt.ids.clone();
    ids.pop(); // the forced audio start is added by force_audio
    let input = ModelInput {
        ids,
        placeholders: vec![],
        audio_in: Some(vec![]),
        audio_out: audios
            .iter()
            .map(|a| higgs_engine::prompt::Segment {
                label: a.label.clone(),
                frames: a.frames(),
                codes: a.codes.clone(),
                columns: vec![],
            })
            .collect(),
    };
    let _ = cfg;
    let mut t = TtsRequest::new(TtsInput::Collated(input), r.params.clone());
    t.force_audio = true;
    t
}

fn collect(mut s: higgs_engine::engine::EventStream) -> (Vec<Vec<u32>>, Vec<f32>, usize) {
    let mut codes: Vec<Vec<u32>> = Vec::new();
    let mut audio = Vec::new();
    let mut chunks = 0;
    loop {
        match s.blocking_next() {
            Some(RequestEvent::Codes(rows)) => {
                if codes.is_empty() {
                    codes = vec![Vec::new(); rows.len()];
                }
                for (d, r) in codes.iter_mut().zip(rows) {
                    d.extend(r);
                }
            }
            Some(RequestEvent::Audio(a)) => {
                chunks += 1;
                audio.extend(a);
            }
            Some(RequestEvent::Finished { .. }) => return (codes, audio, chunks),
            Some(RequestEvent::Failed(e)) => panic!("request failed: {e}"),
            Some(RequestEvent::Text(_)) => {}
            None => panic!("stream ended without Finished"),
        }
    }
}

#[test]
fn handle_streams_concurrent_requests_identically_to_solo() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let reqs: Vec<Req> = random_requests(&fx.model, 8, true, &mut rng)
        .into_iter()
        .map(|mut r| {
            r.params.max_new_tokens = r.params.max_new_tokens.max(30);
            r
        })
        .collect();
    let h = handle(fx.model.clone(), small(200, 16, true), 64);
    let solos: Vec<_> = reqs
        .iter()
        .map(|r| collect(h.submit(tts_request(&fx.model, r)).unwrap()))
        .collect();
    let codec = AudioTokenizer::load(&fixtures().join("codec")).unwrap();
    let streams: Vec<_> = reqs
        .iter()
        .map(|r| h.submit(tts_request(&fx.model, r)).unwrap())
        .collect();
    for (k, s) in streams.into_iter().enumerate() {
        let (codes, audio, _) = collect(s);
        assert_eq!(codes, solos[k].0, "request {k}: codes");
        assert_eq!(audio, solos[k].1, "request {k}: audio");
        if !codes.is_empty() && !codes[0].is_empty() {
            // The streamed chunks are the whole clip's decode, sample for sample.
            assert_eq!(
                audio,
                codec.decode(&codes).unwrap(),
                "request {k}: stream == whole"
            );
        }
    }
    assert!(h.wait_idle(Duration::from_secs(10)));
    let st = h.stats();
    assert_eq!(st.kv_blocks_used, 0, "{st:?}");
    assert!(st.codec_decode_calls > 0);
}

#[test]
fn dropping_a_stream_aborts_and_the_queue_is_bounded() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let mut reqs = random_requests(&fx.model, 3, false, &mut rng);
    for r in &mut reqs {
        r.params.max_new_tokens = 2000;
        r.params.stop_tokens.clear();
    }
    let h = handle(fx.model.clone(), small(2000, 16, true), 2);
    let mut a = h.submit(tts_request(&fx.model, &reqs[0])).unwrap();
    let _b = h.submit(tts_request(&fx.model, &reqs[1])).unwrap();
    match h.submit(tts_request(&fx.model, &reqs[2])) {
        Err(higgs_engine::Error::Overloaded(m)) => assert!(m.contains("2"), "{m}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a third request was queued past max_queue 2"),
    }
    // Wait for some audio, then walk away.
    loop {
        if let Some(RequestEvent::Audio(_)) = a.blocking_next() {
            break;
        }
    }
    drop(a);
    drop(_b);
    assert!(
        h.wait_idle(Duration::from_secs(10)),
        "aborted requests left"
    );
    let st = h.stats();
    assert_eq!(st.kv_blocks_used, 0, "blocks freed after the drop: {st:?}");
    // The queue has room again.
    let s = h.submit(tts_request(&fx.model, &reqs[2])).unwrap();
    drop(s);
}

#[test]
fn handle_encodes_and_reports_bad_requests() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let h = handle(fx.model.clone(), small(64, 16, true), 8);
    let codec = AudioTokenizer::load(&fixtures().join("codec")).unwrap();
    let clip: Vec<f32> = (0..24_000).map(|i| (i as f32 * 0.01).sin() * 0.3).collect();
    assert_eq!(
        h.encode(clip.clone(), 24_000).unwrap(),
        codec.encode(&clip).unwrap()
    );
    let mut rng = StdRng::seed_from_u64(seed());
    let mut r = random_requests(&fx.model, 1, false, &mut rng).remove(0);
    r.params.max_new_tokens = 100_000;
    let err = h.submit(tts_request(&fx.model, &r)).err().expect("refused");
    assert!(err.to_string().contains("never fit"), "{err}");
    // A failed engine step fails only the requests in it.
    r.params.max_new_tokens = 50;
    let s = h.submit(tts_request(&fx.model, &r)).unwrap();
    h.fail_next_step();
    let mut s = s;
    let failed = loop {
        match s.blocking_next() {
            Some(RequestEvent::Failed(e)) => break Some(e.to_string()),
            Some(RequestEvent::Finished { .. }) | None => break None,
            _ => {}
        }
    };
    // The failure may land before or after the request's own steps; when it landed on them,
    // the message names it.
    if let Some(m) = failed {
        assert!(m.contains("injected"), "{m}");
    }
    assert!(h.wait_idle(Duration::from_secs(10)));
    assert_eq!(h.stats().kv_blocks_used, 0);
}

/// Replica `i` of a CPU pool: its own engine thread and one compute thread.
fn replica(model: Arc<Model>, cfg: EngineConfig, i: usize) -> EngineHandle {
    let threads = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    EngineHandle::spawn_in(
        move || {
            Ok(EngineParts {
                model,
                codec: AudioTokenizer::load(&fixtures().join("codec"))?,
                tokenizer: Arc::new(toy_tokenizer()),
                config: cfg,
            })
        },
        HandleConfig { max_queue: 64 },
        Some(Arc::new(threads)),
        format!("test-replica-{i}"),
    )
    .unwrap()
}

/// `max_imbalance` 0: affinity never outweighs load, so back-to-back submits spread over
/// every replica whatever voices the seed draws.
fn pool(model: &Arc<Model>, n: usize, cfg: EngineConfig, max_imbalance: usize) -> EnginePool {
    let handles = (0..n).map(|i| replica(model.clone(), cfg, i)).collect();
    EnginePool::new(handles, RouterConfig { max_imbalance }).unwrap()
}

/// Waits for a request's end: Ok(audio samples) or Err(the failure's message).
fn outcome(mut s: higgs_engine::engine::EventStream) -> Result<usize, String> {
    let mut samples = 0;
    loop {
        match s.blocking_next() {
            Some(RequestEvent::Audio(a)) => samples += a.len(),
            Some(RequestEvent::Finished { .. }) => return Ok(samples),
            Some(RequestEvent::Failed(e)) => return Err(e.to_string()),
            Some(_) => {}
            None => return Err("stream ended without Finished".into()),
        }
    }
}

#[test]
fn two_replicas_spread_requests_and_give_single_replica_outputs() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let reqs = random_requests(&fx.model, 10, true, &mut rng);
    let cfg = small(200, 16, true);
    let single = handle(fx.model.clone(), cfg, 64);
    let solos: Vec<_> = reqs
        .iter()
        .map(|r| collect(single.submit(tts_request(&fx.model, r)).unwrap()))
        .collect();
    drop(single);
    let p = pool(&fx.model, 2, cfg, 0);
    let streams: Vec<_> = reqs
        .iter()
        .map(|r| p.submit(tts_request(&fx.model, r)).unwrap())
        .collect();
    let mut on = [0usize; 2];
    for (k, (r, s)) in streams.into_iter().enumerate() {
        on[r] += 1;
        let (codes, audio, _) = collect(s);
        assert_eq!(codes, solos[k].0, "request {k} on replica {r}: codes");
        assert_eq!(audio, solos[k].1, "request {k} on replica {r}: audio");
    }
    assert!(on[0] > 0 && on[1] > 0, "requests per replica {on:?}");
    let c = p.replica_counters();
    assert_eq!(c[0].routed as usize + c[1].routed as usize, reqs.len());
    assert!(p.wait_idle(Duration::from_secs(10)));
    for (i, s) in p.replica_stats().iter().enumerate() {
        assert_eq!(s.kv_blocks_used, 0, "replica {i}: {s:?}");
    }
    assert_eq!(p.stats().kv_blocks_total, 400);
}

#[test]
fn a_voice_stays_on_its_replica_while_it_has_room() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let reqs = random_requests(&fx.model, 12, false, &mut rng);
    let p = pool(&fx.model, 2, small(400, 64, true), 4);
    // One at a time: every replica is idle, so a voice's requests go where it first ran.
    let mut home: HashMap<u64, usize> = HashMap::new();
    let mut keyed = 0;
    for r in &reqs {
        let t = tts_request(&fx.model, r);
        let key = higgs_engine::engine::affinity_key(&t);
        let (at, s) = p.submit(t).unwrap();
        outcome(s).unwrap();
        if let Some(k) = key {
            keyed += 1;
            assert_eq!(*home.entry(k).or_insert(at), at, "voice moved replicas");
        }
    }
    assert!(keyed >= 2, "the workload has voice prompts");
    let c = p.replica_counters();
    let hits: u64 = c.iter().map(|c| c.affinity_hits).sum();
    assert_eq!(hits as usize, keyed - home.len(), "{c:?}");
    // The voices' second uses hit the prefix cache of their replica.
    let prefix_hits: u64 = p.replica_stats().iter().map(|s| s.prefix.hit_blocks).sum();
    assert!(prefix_hits > 0);
}

#[test]
fn a_replica_failure_fails_only_its_requests() {
    let fx = LlmFixture::load(&fixtures().join("llm")).unwrap();
    let mut rng = StdRng::seed_from_u64(seed());
    let mut reqs = random_requests(&fx.model, 6, false, &mut rng);
    for r in &mut reqs {
        r.params.max_new_tokens = 150;
        r.params.stop_tokens.clear();
    }
    let p = pool(&fx.model, 2, small(600, 64, true), 0);
    let streams: Vec<_> = reqs
        .iter()
        .map(|r| p.submit(tts_request(&fx.model, r)).unwrap())
        .collect();
    assert!(streams.iter().any(|(r, _)| *r == 0) && streams.iter().any(|(r, _)| *r == 1));
    p.replica(1).fail_next_step();
    for (r, s) in streams {
        match (r, outcome(s)) {
            (0, Ok(n)) => assert!(n > 0),
            (0, Err(e)) => panic!("a request on the healthy replica failed: {e}"),
            (_, Err(e)) => assert!(e.contains("injected"), "{e}"),
            // The failure lands on the replica's next step with work; a request that finished
            // before it is fine.
            (_, Ok(_)) => {}
        }
    }
    // Replica 1 stops for good: new requests all go to replica 0 and succeed.
    p.replica(1).shutdown();
    let t0 = std::time::Instant::now();
    while p.replica_alive(1) {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "replica 1 did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    for r in &reqs[..4] {
        let (at, s) = p.submit(tts_request(&fx.model, r)).unwrap();
        assert_eq!(at, 0);
        outcome(s).unwrap();
    }
    p.replica(0).shutdown();
    let t0 = std::time::Instant::now();
    while p.replica_alive(0) {
        assert!(t0.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    let err = p.submit(tts_request(&fx.model, &reqs[0])).err().unwrap();
    assert!(err.to_string().contains("every engine replica"), "{err}");
}
