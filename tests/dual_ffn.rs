//! DualFFN research knobs and strategies: the three execution strategies (routed, masked,
//! sub-batch) give the same outputs on random inputs (f32, mixed prefill and decode rows, every
//! layer kind); the routing counters count what ran; the load-time overrides change the model
//! where they should and nothing else; the CLI refuses bad lists naming the flag; the bench
//! reports (`--kernels --report`, `--dual-ffn --report`) run at CI size and write valid files.

use higgs_engine::config::{LayerKind, ModelConfig};
use higgs_engine::layer_overrides::{AudioFfn, LayerOverrides};
use higgs_engine::model::{
    BatchInputs, DualFfnStrategy, ForwardOptions, Model, ModelWeights, RowInput,
};
use higgs_engine::tensor::DType;
use higgs_engine::weights::safetensors::Checkpoint;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Command;

fn seed() -> u64 {
    let s = std::env::var("HIGGS_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    eprintln!("seed {s} (HIGGS_TEST_SEED replays)");
    s
}

/// A small random model: layers dual, fast-forward, dual, plain.
fn random_model(seed: u64) -> Model {
    let v = serde_json::json!({
        "audio_adapter_type": "dual_ffn_fast_forward",
        "audio_dual_ffn_layers": [0, 2, 3],
        "audio_num_codebooks": 4, "audio_codebook_size": 30,
        "audio_stream_bos_id": 30, "audio_stream_eos_id": 31,
        "audio_in_token_idx": 100, "audio_out_token_idx": 101, "audio_out_bos_token_id": 102,
        "audio_eos_token_id": 103, "pad_token_id": 104,
        "encode_audio_in_tokens": true, "use_delay_pattern": true, "skip_audio_tower": true,
        "encode_whisper_embed": false,
        "text_config": {
            "hidden_size": 48, "num_hidden_layers": 4, "num_attention_heads": 4,
            "num_key_value_heads": 2, "head_dim": 12, "intermediate_size": 80,
            "vocab_size": 120, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "bos_token_id": 105, "eos_token_id": 106
        }
    });
    let mut cfg = ModelConfig::from_json(Path::new("<test>"), &v).unwrap();
    let mut w = ModelWeights::random(&cfg, DType::F32, seed, 0.08).unwrap();
    // Layer 3 becomes plain: every kind is exercised.
    let o = LayerOverrides {
        dual_ffn_layers: Some(vec![0, 2]),
        fast_forward_layers: Some(vec![1]),
        ..Default::default()
    };
    let kinds = w.apply_overrides(&mut cfg, &o).unwrap();
    assert_eq!(
        kinds,
        vec![
            LayerKind::Dual,
            LayerKind::FastForward,
            LayerKind::Dual,
            LayerKind::Plain
        ]
    );
    Model::new(cfg, w)
}

const BLOCK: usize = 4;
const MAX_BLOCKS: usize = 4;

/// Sequences of mixed rows: `seqs[s]` = (first position, is-audio per row). Sequence `s`
/// owns blocks `s * MAX_BLOCKS ..`. `history` marks earlier audio positions (for the
/// fast-forward key mask).
fn batch(
    model: &Model,
    seqs: &[(usize, Vec<bool>)],
    history: &[Vec<bool>],
    rng: &mut impl Rng,
) -> BatchInputs {
    let cfg = &model.cfg;
    let max_ctx = MAX_BLOCKS * BLOCK;
    let mut b = BatchInputs {
        block_size: BLOCK,
        max_blocks: MAX_BLOCKS,
        block_tables: (0..(seqs.len() * MAX_BLOCKS) as i32).collect(),
        audio_keys: vec![0; seqs.len() * max_ctx],
        max_ctx,
        ..Default::default()
    };
    for (s, (start, rows)) in seqs.iter().enumerate() {
        for (p, &a) in history[s].iter().enumerate() {
            b.audio_keys[s * max_ctx + p] = u8::from(a);
        }
        for (j, &audio) in rows.iter().enumerate() {
            let pos = start + j;
            b.rows.push(if audio {
                RowInput::Audio {
                    codes: (0..cfg.n_codebooks)
                        .map(|_| rng.gen_range(0..cfg.codebook_size as u32))
                        .collect(),
                    out: true,
                }
            } else {
                RowInput::Text(rng.gen_range(0..100))
            });
            b.positions.push(pos as i32);
            b.query_seq.push(s as u32);
            b.slot_mapping.push((s * MAX_BLOCKS * BLOCK + pos) as i32);
            b.audio_keys[s * max_ctx + pos] = u8::from(audio);
        }
    }
    b
}

/// Two steps (a mixed prefill, then one decode row per sequence) under `strategy`: the final
/// hidden state of every row of both steps.
fn run_two_steps(model: &Model, strategy: DualFfnStrategy, seed: u64) -> Vec<Vec<f32>> {
    model.set_dual_ffn_strategy(strategy);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kv = model.new_kv_cache(3 * MAX_BLOCKS, BLOCK);
    let prefill = vec![
        (0, vec![false, false, true, true, false, true, true]),
        (0, vec![true]),
        (0, vec![false, false, false]),
    ];
    let none = vec![vec![]; 3];
    let b1 = batch(model, &prefill, &none, &mut rng);
    let history: Vec<Vec<bool>> = prefill.iter().map(|s| s.1.clone()).collect();
    let decode = vec![(7, vec![true]), (1, vec![false]), (3, vec![true])];
    let b2 = batch(model, &decode, &history, &mut rng);
    let mut out = Vec::new();
    for b in [b1, b2] {
        let opts = ForwardOptions {
            out_rows: (0..b.rows.len() as u32).collect(),
            ..Default::default()
        };
        out.push(
            model
                .forward(&b, &mut kv, &opts)
                .unwrap()
                .hidden
                .to_f32_vec()
                .unwrap(),
        );
    }
    out
}

#[test]
fn strategies_give_the_same_outputs() {
    let s = seed();
    let model = random_model(s);
    let want = run_two_steps(&model, DualFfnStrategy::Routed, s);
    for strategy in [DualFfnStrategy::Masked, DualFfnStrategy::SubBatch] {
        let got = run_two_steps(&model, strategy, s);
        for (step, (w, g)) in want.iter().zip(&got).enumerate() {
            assert_eq!(w.len(), g.len());
            for (i, (a, b)) in w.iter().zip(g).enumerate() {
                assert!(a.is_finite() && b.is_finite());
                let err = (a - b).abs() / a.abs().max(1.0);
                assert!(
                    err <= 1e-5,
                    "{strategy:?} step {step} element {i}: {b} vs routed {a} (seed {s})"
                );
            }
        }
    }
}

#[test]
fn routing_counters_count_what_ran() {
    let model = random_model(seed());
    let (h, f) = (model.cfg.hidden as u64, model.cfg.ffn as u64);
    let ffn_bytes = 3 * h * f * 4;
    let q = (model.cfg.q_dim() as u64, model.cfg.kv_dim() as u64);
    let attn_bytes = (2 * q.0 * h + 2 * q.1 * h) * 4;
    for strategy in DualFfnStrategy::ALL {
        model.reset_routing_stats();
        run_two_steps(&model, strategy, 1);
        let st = model.routing_stats();
        assert_eq!(st.steps, 2);
        let last = model.last_step_routing();
        // Step 2: 1 text row, 2 audio rows. Step 1: 6 text, 5 audio (11 rows).
        let (nt, na, n) = (1u64, 2u64, 3u64);
        let l = &last.layers;
        assert_eq!((l[0].text_rows, l[0].audio_rows), (nt, na), "{strategy:?}");
        let (dual_rows, dual_bytes) = match strategy {
            DualFfnStrategy::Masked => (2 * n, 2 * ffn_bytes),
            _ => (n, 2 * ffn_bytes),
        };
        let sub = if strategy == DualFfnStrategy::SubBatch {
            2
        } else {
            1
        };
        assert_eq!(
            (l[0].ffn_rows, l[0].ffn_weight_bytes),
            (dual_rows, dual_bytes),
            "{strategy:?}"
        );
        assert_eq!(l[0].attn_weight_bytes, sub * attn_bytes, "{strategy:?}");
        assert_eq!(
            (l[1].ffn_rows, l[1].ffn_weight_bytes),
            (nt, ffn_bytes),
            "fast-forward"
        );
        assert_eq!(
            l[1].attn_weight_bytes, attn_bytes,
            "fast-forward: text rows only"
        );
        assert_eq!(
            (l[3].ffn_rows, l[3].ffn_weight_bytes),
            (n, sub * ffn_bytes),
            "plain"
        );
        let t = st.totals();
        assert_eq!(t.text_rows, 4 * (6 + 1));
        assert_eq!(t.audio_rows, 4 * (5 + 2));
    }
    model.set_dual_ffn_strategy(DualFfnStrategy::Routed);
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference")
}

/// The fixture model with `o` applied, and the outputs of one mixed step.
fn fixture_outputs(o: &LayerOverrides) -> Vec<f32> {
    let dir = fixtures().join("llm");
    let mut cfg = ModelConfig::load(&dir).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let mut w = ModelWeights::load(&ck, &cfg, Default::default()).unwrap();
    if !o.is_default() {
        w.apply_overrides(&mut cfg, o).unwrap();
    }
    let model = Model::new(cfg, w);
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let seqs = vec![(0, vec![false, false, true, true, true])];
    let b = batch(&model, &seqs, &[vec![]], &mut rng);
    let mut kv = model.new_kv_cache(MAX_BLOCKS, BLOCK);
    let opts = ForwardOptions {
        out_rows: (0..5).collect(),
        ..Default::default()
    };
    model
        .forward(&b, &mut kv, &opts)
        .unwrap()
        .hidden
        .to_f32_vec()
        .unwrap()
}

#[test]
fn overrides_change_the_fixture_model_only_when_given() {
    let base = fixture_outputs(&LayerOverrides::default());
    // An explicit table equal to the config's changes nothing.
    let same = fixture_outputs(&LayerOverrides {
        dual_ffn_layers: Some(vec![0, 2]),
        ..Default::default()
    });
    assert_eq!(base, same);
    let h = base.len() / 5;
    let off = fixture_outputs(&LayerOverrides {
        audio_ffn: AudioFfn::Off,
        ..Default::default()
    });
    // Text rows before any audio row are untouched; audio rows change.
    assert_eq!(base[..2 * h], off[..2 * h]);
    assert_ne!(base[2 * h..], off[2 * h..]);
    let ff = fixture_outputs(&LayerOverrides {
        dual_ffn_layers: Some(vec![0]),
        ..Default::default()
    });
    assert_ne!(base[2 * h..], ff[2 * h..]);
}

fn higgs() -> Command {
    Command::new(env!("CARGO_BIN_EXE_higgs"))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs-dualffn-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn tts(extra: &[&str], out: &Path) -> std::process::Output {
    let f = fixtures();
    let tok = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-tokenizer.json");
    higgs()
        .args(["tts", "--model"])
        .arg(f.join("llm"))
        .arg("--audio-tokenizer")
        .arg(f.join("codec"))
        .arg("--tokenizer")
        .arg(tok)
        .args([
            "--scene",
            "empty",
            "--seed",
            "3",
            "--max-new-tokens",
            "24",
            "--force-audio",
        ])
        .args([
            "--temperature",
            "0",
            "--text",
            "The quick brown fox jumps over the lazy dog.",
        ])
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn tts_knobs_are_validated_logged_and_change_the_audio() {
    let dir = tmpdir("tts");
    for (flags, want) in [
        (&["--dual-ffn-layers", "0,9"][..], "--dual-ffn-layers"),
        (&["--dual-ffn-layers", "1"][..], "no audio FFN weights"),
        (&["--fast-forward-layers", "x"][..], "--fast-forward-layers"),
        (
            &["--dual-ffn-layers", "0", "--fast-forward-layers", "0"][..],
            "not both",
        ),
        (&["--audio-ffn", "maybe"][..], "--audio-ffn"),
    ] {
        let o = tts(flags, &dir.join("bad.wav"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flags:?} accepted");
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    let base = dir.join("base.wav");
    let o = tts(&[], &base);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stderr).contains("DualFFN overrides"));
    let off = dir.join("off.wav");
    let o = tts(&["--audio-ffn", "off"], &off);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("DualFFN overrides: layers: dual 0,2, fast-forward 1,3; audio FFN off"),
        "{err}"
    );
    let same = dir.join("same.wav");
    let o = tts(&["--dual-ffn-layers", "0,2"], &same);
    assert!(o.status.success());
    let read = |p: &Path| std::fs::read(p).unwrap();
    assert_eq!(
        read(&base),
        read(&same),
        "the config's own table changes nothing"
    );
    assert_ne!(read(&base), read(&off), "--audio-ffn off changes the audio");
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn check_svg(p: &Path) {
    let s = std::fs::read_to_string(p).unwrap();
    assert!(
        s.contains("<svg") && s.trim_end().ends_with("</svg>"),
        "{}",
        p.display()
    );
    assert!(
        s.contains("<circle"),
        "measured points drawn in {}",
        p.display()
    );
}

#[test]
fn bench_reports_run_and_write_valid_files() {
    let dir = tmpdir("reports");
    let k = dir.join("kernels");
    let o = higgs()
        .args([
            "bench",
            "--kernels",
            "--shape",
            "small",
            "--dtype",
            "f32",
            "--batch",
            "1,8",
        ])
        .args([
            "--prompt-len",
            "16",
            "--min-time-ms",
            "1",
            "--peak-copy-mib",
            "16",
            "--peak-gemm",
            "256",
        ])
        .arg("--report")
        .arg(&k)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = json(&k.join("report.json"));
    assert!(r["peaks"]["bandwidth_bytes_per_s"].as_f64().unwrap() > 0.0);
    assert!(r["peaks"]["flops_per_s"].as_f64().unwrap() > 0.0);
    let ops = r["ops"].as_array().unwrap();
    for phase in ["decode", "prefill"] {
        for b in [1, 8] {
            let n = ops
                .iter()
                .filter(|o| o["phase"] == phase && o["batch"] == b)
                .count();
            // norm, qkv, rope+cache, attention, o, add+norm, gate|up, silu_mul, down, add,
            // the heads...: at least 12 per phase and batch with the fused projections.
            assert!(n >= 12, "{phase} batch {b}: {n} ops");
        }
    }
    for op in ops {
        let t = op["time_s"].as_f64().unwrap();
        assert!(t > 0.0 && op["bytes"].as_f64().unwrap() > 0.0, "{op}");
        assert!(op["gb_per_s"].as_f64().unwrap().is_finite());
    }
    let md = std::fs::read_to_string(k.join("report.md")).unwrap();
    assert!(
        md.contains("| phase | batch | op |") && md.contains("matmul gate"),
        "{md}"
    );
    check_svg(&k.join("roofline.svg"));

    let d = dir.join("dual");
    let o = higgs()
        .args([
            "bench",
            "--dual-ffn",
            "--shape",
            "small",
            "--dtype",
            "f32",
            "--batch",
            "1,4",
        ])
        .args(["--prompt-len", "8", "--min-time-ms", "1"])
        .arg("--report")
        .arg(&d)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("routing of one step"), "{out}");
    let r = json(&d.join("report.json"));
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2 * 5 * 3, "batches x fractions x strategies");
    for row in rows {
        assert!(row["time_s"].as_f64().unwrap() > 0.0);
        assert!(
            row["max_abs_diff_vs_routed"].as_f64().unwrap() <= 1e-4,
            "{row}"
        );
    }
    assert!(std::fs::read_to_string(d.join("report.md"))
        .unwrap()
        .contains("| batch | audio % | strategy |"));
    check_svg(&d.join("dual_ffn.svg"));
}

#[test]
fn bench_refuses_bad_knobs() {
    let o = higgs()
        .args([
            "bench",
            "--dual-ffn",
            "--shape",
            "small",
            "--dual-ffn-layers",
            "4",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--dual-ffn-layers") && err.contains("4 layers"),
        "{err}"
    );
}

#[test]
fn serve_refuses_bad_knobs_before_loading() {
    let f = fixtures();
    let o = higgs()
        .args(["serve", "--model"])
        .arg(f.join("llm"))
        .arg("--audio-tokenizer")
        .arg(f.join("codec"))
        .args(["--port", "0", "--fast-forward-layers", "1-"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--fast-forward-layers"), "{err}");
}
