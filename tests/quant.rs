//! FP8 E4M3 weights (W8A16), on the CPU: `ops::matmul` with an FP8 weight against a naive loop
//! over the dequantized weight, on fresh seeded inputs; the fixture model quantized with
//! `--quantization fp8` (forward runs, no NaN, logits close to the f32 model, weight bytes a
//! quarter of f32), and the quality gate's numbers on it (printed: run with --nocapture).
//! The seed is printed; `HIGGS_TEST_SEED` replays it.

mod common;

use higgs_engine::bench::quality;
use higgs_engine::model::{LinearRole, LoadOptions, Model, ModelWeights};
use higgs_engine::ops;
use higgs_engine::quant::Quantization;
use higgs_engine::reference::llm::LlmFixture;
use higgs_engine::tensor::{DType, Tensor};
use higgs_engine::weights::safetensors::Checkpoint;
use rand::Rng;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn llm_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/llm")
}

/// x [n, k] · W [out, k]ᵀ in f64, W given row-major as f32.
fn naive(x: &[f32], w: &[f32], n: usize, k: usize, out: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * out];
    for i in 0..n {
        for j in 0..out {
            let s: f64 = (0..k)
                .map(|kk| x[i * k + kk] as f64 * w[j * k + kk] as f64)
                .sum();
            y[i * out + j] = s as f32;
        }
    }
    y
}

/// max |got - want| / max |want|, failing on NaN.
fn max_rel_err(case: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let denom = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    got.iter()
        .zip(want)
        .enumerate()
        .map(|(i, (g, w))| {
            assert!(!g.is_nan(), "{case}: NaN at {i}");
            (g - w).abs() / denom
        })
        .fold(0f32, f32::max)
}

/// Every path of the CPU GEMM (few rows, sgemm; one and several feature blocks; k panels and
/// their remainders): y = x · dequant(W)ᵀ within f32 rounding of the f64 loop.
#[test]
fn fp8_matmul_matches_dequantized_reference() {
    let mut rng = common::rng("fp8_matmul");
    for &(n, k, out) in &[
        (1, 3072, 64),
        (1, 7, 5),
        (1, 1, 1),
        (3, 257, 130),
        (7, 1000, 65),
        (8, 333, 17),
        (9, 300, 129),
        (520, 301, 70),
        (2, 8192, 33),
    ] {
        let case = format!("fp8 matmul n {n} k {k} out {out}");
        let w: Vec<f32> = (0..out * k)
            .map(|i| rng.gen_range(-1.0f32..1.0) * (1.0 + (i / k % 5) as f32))
            .collect();
        let x: Vec<f32> = (0..n * k).map(|_| rng.gen_range(-1.0f32..1.0)).collect();
        let wt = Tensor::from_f32(vec![out, k], w.clone())
            .unwrap()
            .quantize_fp8()
            .unwrap();
        assert_eq!(wt.dtype(), DType::F8E4M3, "{case}");
        assert_eq!(wt.storage_bytes(), out * k + 4 * out, "{case}");
        let deq = wt.to_f32_vec().unwrap();
        // Quantization moved the weights (else this test would not see FP8 at all; a row's
        // maximum maps to ±448 exactly, so a 1-wide row may come back unchanged) ...
        if k > 4 {
            assert!(
                deq.iter().zip(&w).any(|(a, b)| a != b),
                "{case}: no rounding"
            );
        }
        let xt = Tensor::from_f32(vec![n, k], x.clone()).unwrap();
        let got = ops::matmul(&xt, &wt).unwrap().to_f32_vec().unwrap();
        // ... and the matmul uses exactly the dequantized weights.
        let want = naive(&x, &deq, n, k, out);
        let e = max_rel_err(&case, &got, &want);
        assert!(e <= 1e-5, "{case}: max rel err {e:.3e} > 1e-5");
        // Bit for bit the f32 GEMM on the dequantized weight (same kernel, same sums).
        let dense = Tensor::from_f32(vec![out, k], deq).unwrap();
        let same = ops::matmul(&xt, &dense).unwrap().to_f32_vec().unwrap();
        assert!(
            got.iter()
                .zip(&same)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{case}: differs from the f32 GEMM on dequant(W)"
        );
    }
}

/// A bf16 or panel-packed weight quantizes to the same codes as its f32 values.
#[test]
fn fp8_from_bf16_and_packed_weights() {
    let mut rng = common::rng("fp8_sources");
    let (out, k) = (70, 300);
    let w: Vec<f32> = (0..out * k).map(|_| rng.gen_range(-0.1f32..0.1)).collect();
    let bf = Tensor::from_f32_on(
        vec![out, k],
        &w,
        DType::BF16,
        &higgs_engine::tensor::Device::Cpu,
    )
    .unwrap();
    let bf_vals = bf.to_f32_vec().unwrap();
    let from_f32 = Tensor::from_f32(vec![out, k], bf_vals)
        .unwrap()
        .quantize_fp8()
        .unwrap()
        .to_f32_vec()
        .unwrap();
    let from_packed = bf
        .pack_for_cpu_matmul()
        .quantize_fp8()
        .unwrap()
        .to_f32_vec()
        .unwrap();
    assert_eq!(from_f32, from_packed);
    // Not a weight: refused with the shape named.
    let e = Tensor::from_f32(vec![2, 3, 4], vec![0.0; 24])
        .unwrap()
        .quantize_fp8()
        .unwrap_err()
        .to_string();
    assert!(e.contains("rank-2"), "{e}");
}

fn load(dtype: DType) -> ModelWeights {
    let cfg = higgs_engine::config::ModelConfig::load(&llm_dir()).unwrap();
    let ck = Checkpoint::open(&llm_dir()).unwrap();
    ModelWeights::load(&ck, &cfg, LoadOptions { dtype: Some(dtype) }).unwrap()
}

/// Storage bytes of the linears `--quantization fp8` quantizes, and of the audio head.
fn linear_bytes(w: ModelWeights) -> (usize, usize, ModelWeights) {
    let (mut quantized, mut head) = (0, 0);
    let w = w
        .map_linears(|role, t| {
            if role == LinearRole::AudioHead {
                assert_ne!(
                    t.dtype(),
                    DType::F8E4M3,
                    "the audio head must stay unquantized"
                );
                head += t.storage_bytes();
            } else {
                assert_eq!(t.dtype(), DType::F8E4M3, "{role:?} not quantized");
                quantized += t.storage_bytes();
            }
            Ok::<_, std::convert::Infallible>(t)
        })
        .unwrap();
    (quantized, head, w)
}

#[test]
fn fixture_model_fp8_forward_and_quality_gate() {
    let cfg = higgs_engine::config::ModelConfig::load(&llm_dir()).unwrap();
    // Bytes: FP8 linears are a quarter of f32 plus 4 bytes of scale per row.
    let f32_w = load(DType::F32);
    let f32_linear: usize = {
        let mut n = 0;
        let w = f32_w
            .map_linears(|role, t| {
                if role != LinearRole::AudioHead {
                    n += t.storage_bytes();
                }
                Ok::<_, std::convert::Infallible>(t)
            })
            .unwrap();
        drop(w);
        n
    };
    let q = load(DType::F32).quantize(Quantization::Fp8).unwrap();
    let (q_linear, head_bytes, q) = linear_bytes(q);
    let ratio = q_linear as f64 / f32_linear as f64;
    println!("fp8 linears: {q_linear} bytes vs {f32_linear} f32 ({ratio:.4}); audio head {head_bytes} bytes (kept f32)");
    assert!((0.25..0.27).contains(&ratio), "fp8/f32 bytes {ratio}");

    let reference = Arc::new(Model::new(cfg.clone(), load(DType::F32)));
    let candidate = Arc::new(Model::new(cfg.clone(), q));
    // The baseline: the same gate for bf16-rounded weights (8 mantissa bits to FP8's 3).
    let bf16 = Arc::new(Model::new(cfg.clone(), load(DType::BF16)));
    let fx = LlmFixture::load(&llm_dir()).unwrap();
    let cases = fx.cases["cases"].as_object().unwrap().clone();
    for name in ["gen_tts", "gen_clone"] {
        let (prompt, _) = fx.generation_request(name, &cases[name]).unwrap();
        let steps = 24;
        let base = quality::compare(&reference, &bf16, &prompt, steps).unwrap();
        println!("baseline, bf16 weights, fixture case {name}, {steps} greedy steps:\n{base}");
        let r = quality::compare(&reference, &candidate, &prompt, steps).unwrap();
        println!("FP8 quality gate, fixture case {name}, {steps} greedy steps:\n{r}");
        let worst = r.worst_audio();
        assert!(r.text.positions > 0 && worst.positions == r.text.positions);
        assert_eq!(r.audio.len(), cfg.n_codebooks);
        assert!(r.greedy_columns > 0, "{name}: no audio generated");
        // The fixture is a tiny random-weight model that amplifies any weight noise (bf16
        // rounding alone costs 2e-4 of cosine and most greedy codes), so these bars are what
        // E4M3's 3 mantissa bits (2.5% RMS weight error) can reach on it, with a margin:
        // measured mean cosine 0.987-0.989 per head, the worst single position 0.90-0.97
        // (README). A broken scale, code or kernel gives cosines far below. NaN fails them.
        let heads = std::iter::once(("text head".to_string(), &r.text)).chain(
            r.audio
                .iter()
                .enumerate()
                .map(|(c, s)| (format!("codebook {c}"), s)),
        );
        for (head, s) in heads {
            assert!(
                s.cosine_mean >= 0.98,
                "{name}: {head} mean cosine {}",
                s.cosine_mean
            );
            assert!(
                s.cosine_min >= 0.85,
                "{name}: {head} min cosine {}",
                s.cosine_min
            );
        }
        // FP8 is coarser than bf16: worse agreement means the weights really were quantized.
        assert!(r.text.cosine_mean < base.text.cosine_mean);
    }
}

/// A bad `--quantization` value is refused before anything loads, naming the value.
#[test]
fn bad_quantization_flag_is_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_higgs"))
        .args([
            "tts",
            "--model",
            "unused",
            "--audio-tokenizer",
            "unused",
            "--text",
            "hi",
        ])
        .args(["--quantization", "int4", "-o", "/dev/null"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("int4") && err.contains("none or fp8"), "{err}");
}
