#![cfg(feature = "cuda")]
//! CUDA conformance of on-device sampling (`kernels/sampling.cu`, `backend::cuda::sampling`)
//! against the host twin `higgs_engine::sampling::processors` and a CPU replay of the
//! delay-pattern rules of `Engine::sample_step` (spec: model.md §8.4–§8.6).
//! Greedy must be identical (ties, NaN, suppress). Top-k masks must be identical; top-p masks
//! may differ only at entries whose exact (f64) cumulative mass lies within 1e-4 of 1 − top_p,
//! because the GPU sums in a different order than the CPU's sequential f32 cumsum.
//! Multinomial draws use this backend's own counter-based uniforms (same-seed draws across
//! backends are not required), so only their frequencies are compared with the softmax.
//! The seed is printed; `HIGGS_TEST_SEED` replays it. Without a device every test prints
//! "skipped: no CUDA device" and passes.

#[macro_use]
mod common;
use common::rng;
use cudarc::driver::CudaSlice;
use higgs_engine::backend::cuda::sampling::{
    fill_uniforms, sample_rows, DelayConfig, DeviceSamplerState, RowParamsBuffer, RowSampling,
    SampleOutputs, SampleRowsArgs,
};
use higgs_engine::backend::cuda::{CudaDevice, CudaStorage};
use higgs_engine::sampling::processors::{apply_top_k, apply_top_p, sample, SamplingParams};
use higgs_engine::sampling::rng::SeededRng;
use higgs_engine::tensor::DType;
use rand::Rng;

const SIZES: [usize; 4] = [1, 7, 1026, 128256];
const C: usize = 8;
const ROWS: usize = 1026;
const BOS: u32 = 1024;
const EOS: u32 = 1025;
const AUDIO_OUT_BOS: u32 = 128013;
const AUDIO_OUT: u32 = 128016;
const AUDIO_EOS: u32 = 128012;

fn row(temperature: f32, top_k: Option<usize>, top_p: f32) -> RowSampling {
    RowSampling {
        temperature,
        top_k,
        top_p,
        ras_win_len: 0,
        ras_max_repeat: 0,
        seed: 1234,
        offset: 0,
    }
}

/// Runs `sample_rows` on `n_rows × cols` logits; returns (ids, processed scores).
fn run_rows(
    dev: &CudaDevice,
    logits: &[f32],
    rows: &[RowSampling],
    cols: usize,
    suppress: &[i32],
    step: u64,
) -> (Vec<usize>, Vec<f32>) {
    let n_rows = rows.len();
    let z = CudaStorage::from_f32(dev, logits, DType::F32).unwrap();
    let params = RowParamsBuffer::new(dev, rows).unwrap();
    let mut uniforms: CudaSlice<f32> = dev.alloc_zeros(n_rows * 2).unwrap();
    fill_uniforms(dev, &params, step, &mut uniforms).unwrap();
    let mut scores: CudaSlice<f32> = dev.alloc_zeros(n_rows * cols).unwrap();
    let mut sampled: CudaSlice<i32> = dev.alloc_zeros(n_rows).unwrap();
    let sup = (!suppress.is_empty()).then(|| dev.upload(suppress).unwrap());
    sample_rows(
        dev,
        &z,
        &params,
        &uniforms,
        sup.as_ref(),
        SampleOutputs {
            scores: &mut scores,
            sampled: &mut sampled,
        },
        &SampleRowsArgs { n_rows, cols },
    )
    .unwrap();
    let ids = dev.download(&sampled).unwrap();
    let s = dev.download(&scores).unwrap();
    (ids.into_iter().map(|v| v as usize).collect(), s)
}

#[test]
fn greedy_identical_to_cpu_with_ties_nan_and_suppress() {
    let dev = dev_or_skip!();
    let mut r = rng("greedy");
    for &cols in &SIZES {
        let n_rows = 3;
        // Few distinct levels: ties are common, as with bf16 logits.
        let mut logits: Vec<f32> = (0..n_rows * cols)
            .map(|_| r.gen_range(0..6) as f32 * 0.5)
            .collect();
        for v in logits.iter_mut() {
            if r.gen_bool(0.05) {
                *v = f32::NAN;
            }
        }
        if cols > 1 {
            logits[cols..2 * cols].fill(f32::NEG_INFINITY); // row 1: all −inf → index 0
        }
        let suppress: Vec<i32> = vec![0, 5, 1025, 200_000, -3];
        let rows = vec![row(0.0, None, 1.0); n_rows];
        let (ids, _) = run_rows(&dev, &logits, &rows, cols, &suppress, 0);
        let sup_cpu: Vec<usize> = [0usize, 5, 1025, 200_000].to_vec();
        let params = SamplingParams::greedy();
        for (i, &got) in ids.iter().enumerate() {
            let want = sample(
                &logits[i * cols..(i + 1) * cols],
                &params,
                &sup_cpu,
                &mut SeededRng::from_seed(0),
            );
            assert_eq!(got, want, "greedy cols {cols} row {i}");
        }
    }
}

fn finite_mask(s: &[f32]) -> Vec<bool> {
    s.iter().map(|v| *v > f32::NEG_INFINITY).collect()
}

#[test]
fn top_k_masks_identical_to_cpu() {
    let dev = dev_or_skip!();
    let mut r = rng("top_k");
    for &cols in &SIZES {
        let ks = [1usize, 5, cols / 2 + 1, cols];
        let logits: Vec<f32> = (0..ks.len() * cols)
            .map(|_| (r.gen_range(-4.0f32..4.0) * 8.0).round() / 8.0) // ties at the threshold
            .collect();
        let rows: Vec<RowSampling> = ks.iter().map(|&k| row(1.0, Some(k), 1.0)).collect();
        let (_, scores) = run_rows(&dev, &logits, &rows, cols, &[], 0);
        for (i, &k) in ks.iter().enumerate() {
            let mut want = logits[i * cols..(i + 1) * cols].to_vec();
            apply_top_k(&mut want, k);
            assert_eq!(
                finite_mask(&scores[i * cols..(i + 1) * cols]),
                finite_mask(&want),
                "top-k mask, cols {cols}, k {k}"
            );
        }
    }
}

#[test]
fn top_p_masks_match_cpu_up_to_boundary_rounding() {
    let dev = dev_or_skip!();
    let mut r = rng("top_p");
    for &cols in &SIZES {
        let ps = [0.0f32, 0.5, 0.9, 0.95];
        let logits: Vec<f32> = (0..ps.len() * cols)
            .map(|_| r.gen_range(-3.0f32..3.0))
            .collect();
        let rows: Vec<RowSampling> = ps.iter().map(|&p| row(1.0, None, p)).collect();
        let (_, scores) = run_rows(&dev, &logits, &rows, cols, &[], 0);
        for (i, &p) in ps.iter().enumerate() {
            let z = &logits[i * cols..(i + 1) * cols];
            let mut want = z.to_vec();
            apply_top_p(&mut want, p);
            let (got, want) = (
                finite_mask(&scores[i * cols..(i + 1) * cols]),
                finite_mask(&want),
            );
            let cum = exact_cum(z);
            let thr = 1.0 - p as f64;
            let mut diffs = 0;
            for j in 0..cols {
                if got[j] != want[j] {
                    diffs += 1;
                    assert!(
                        (cum[j] - thr).abs() < 1e-4,
                        "top-p mask, cols {cols}, p {p}: entry {j} differs away from the \
                         boundary (cum {} vs threshold {thr})",
                        cum[j]
                    );
                }
            }
            println!("top-p cols {cols} p {p}: {diffs} boundary differences");
        }
    }
}

/// Inclusive cumulative softmax mass of each entry in stable ascending order, in f64.
fn exact_cum(z: &[f32]) -> Vec<f64> {
    let mx = z.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = z.iter().map(|&v| (v as f64 - mx).exp()).collect();
    let sum: f64 = e.iter().sum();
    let mut order: Vec<usize> = (0..z.len()).collect();
    order.sort_by(|&a, &b| z[a].total_cmp(&z[b]));
    let mut cum = vec![0.0; z.len()];
    let mut acc = 0.0;
    for &i in &order {
        acc += e[i] / sum;
        cum[i] = acc;
    }
    cum
}

#[test]
fn multinomial_frequencies_match_softmax() {
    let dev = dev_or_skip!();
    let cols = 7;
    let n_rows = 40_000;
    let base = [0.5f32, -1.0, 2.0, 0.0, 1.0, -3.0, 1.5];
    let logits: Vec<f32> = (0..n_rows).flat_map(|_| base).collect();
    let rows: Vec<RowSampling> = (0..n_rows)
        .map(|i| RowSampling {
            offset: i as u64,
            ..row(1.0, None, 1.0)
        })
        .collect();
    let (ids, _) = run_rows(&dev, &logits, &rows, cols, &[], 7);
    let mx = base.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f64> = base.iter().map(|&v| ((v - mx) as f64).exp()).collect();
    let sum: f64 = e.iter().sum();
    let mut counts = vec![0usize; cols];
    for &i in &ids {
        counts[i] += 1;
    }
    for j in 0..cols {
        let p = e[j] / sum;
        let f = counts[j] as f64 / n_rows as f64;
        let sigma = (p * (1.0 - p) / n_rows as f64).sqrt();
        assert!(
            (f - p).abs() <= 5.0 * sigma + 1e-3,
            "symbol {j}: frequency {f} vs softmax {p}"
        );
    }
}

fn delay_cfg() -> DelayConfig {
    DelayConfig {
        n_codebooks: C,
        codebook_rows: ROWS,
        stream_bos: BOS,
        stream_eos: EOS,
        audio_out_bos_token: AUDIO_OUT_BOS,
        audio_out_token: AUDIO_OUT,
        audio_eos_token: AUDIO_EOS,
        use_delay_pattern: true,
    }
}

/// CPU replay of `Engine::sample_step`'s delay rules for one sequence.
#[derive(Default)]
struct CpuDelay {
    num_delay: usize,
    num_remaining: Option<isize>,
    done: bool,
}

impl CpuDelay {
    fn step(&mut self, mut col: Vec<u32>) -> (Vec<u32>, u32) {
        let c = col.len();
        let mut tok = AUDIO_OUT;
        if self.num_delay + 1 < c {
            for v in col.iter_mut().skip(self.num_delay + 1) {
                *v = BOS;
            }
            self.num_delay += 1;
        }
        if let Some(r) = self.num_remaining.as_mut() {
            let upto = (c as isize - *r).clamp(0, c as isize) as usize;
            for v in col.iter_mut().take(upto) {
                *v = EOS;
            }
            *r -= 1;
        } else if let Some(i_eos) = col.iter().position(|&v| v == EOS) {
            for v in col.iter_mut().take(i_eos) {
                *v = EOS;
            }
            self.num_remaining = Some(c as isize - i_eos as isize - 1);
        }
        if matches!(self.num_remaining, Some(r) if r <= 0) {
            tok = AUDIO_EOS;
            self.num_delay = 0;
            self.num_remaining = None;
            self.done = true;
        }
        (col, tok)
    }
}

#[test]
fn delay_state_machine_matches_cpu_replay() {
    let dev = dev_or_skip!();
    let mut r = rng("delay");
    // seq 0: EOS in row 0 at step 10; seq 1: EOS in a middle row (3) at step 4, while rows
    // 4..7 are still forced to BOS (a later EOS at step 12 comes after the segment ended);
    // seq 2: never.
    let n_seqs = 3;
    let eos_at = |s: usize, t: usize, c: usize| match s {
        0 => t == 10 && c == 0,
        1 => (t == 4 || t == 12) && c == 3,
        _ => false,
    };
    let mut st = DeviceSamplerState::new(&dev, delay_cfg(), n_seqs, 16).unwrap();
    st.load_history(&dev, &vec![Vec::new(); n_seqs]).unwrap();
    st.set_last_tokens(&dev, &[AUDIO_OUT_BOS; 3]).unwrap();
    st.delay_step(&dev).unwrap();
    let init = st.read_step(&dev).unwrap();
    for s in 0..n_seqs {
        assert_eq!(init.columns[s], vec![BOS; C]);
        assert_eq!(init.tokens[s], Some(AUDIO_OUT));
    }
    let mut cpu: Vec<CpuDelay> = (0..n_seqs).map(|_| CpuDelay::default()).collect();
    for t in 1..30 {
        let script: Vec<Vec<u32>> = (0..n_seqs)
            .map(|s| {
                (0..C)
                    .map(|c| {
                        if eos_at(s, t, c) {
                            EOS
                        } else {
                            r.gen_range(0..1024)
                        }
                    })
                    .collect()
            })
            .collect();
        st.set_sampled(&dev, &script.concat()).unwrap();
        st.delay_step(&dev).unwrap();
        let got = st.read_step(&dev).unwrap();
        for s in 0..n_seqs {
            if cpu[s].done {
                assert_eq!(got.tokens[s], None, "seq {s} step {t}: after <|audio_eos|>");
                continue;
            }
            let (col, tok) = cpu[s].step(script[s].clone());
            assert_eq!(got.columns[s], col, "seq {s} step {t}: column");
            assert_eq!(got.tokens[s], Some(tok), "seq {s} step {t}: token");
        }
    }
    assert!(cpu[0].done && cpu[1].done && !cpu[2].done);
}

#[test]
fn ras_redraw_triggers_exactly_at_threshold() {
    let dev = dev_or_skip!();
    let (win, max_repeat, ring) = (7usize, 3usize, 16usize);
    let mut st = DeviceSamplerState::new(&dev, delay_cfg(), 1, ring).unwrap();
    // Greedy rows whose argmax is symbol 100 + c; row c's symbol appears c times inside the
    // last `win` columns, and 5 more times just outside the window (must not count).
    let mut history: Vec<Vec<u32>> = vec![vec![7; C]; 12];
    for (t, col) in history.iter_mut().enumerate() {
        for (c, v) in col.iter_mut().enumerate() {
            let inside = t >= 12 - win && t - (12 - win) < c;
            let outside = t < 12 - win;
            if inside || outside {
                *v = 100 + c as u32;
            }
        }
    }
    st.load_history(&dev, &[history]).unwrap();
    st.set_last_tokens(&dev, &[AUDIO_OUT]).unwrap();
    let mut logits = vec![0.0f32; C * ROWS];
    for c in 0..C {
        logits[c * ROWS + 100 + c] = 5.0;
    }
    let z = CudaStorage::from_f32(&dev, &logits, DType::F32).unwrap();
    let rows: Vec<RowSampling> = (0..C)
        .map(|c| RowSampling {
            ras_win_len: win,
            ras_max_repeat: max_repeat,
            offset: c as u64,
            ..row(0.0, None, 1.0)
        })
        .collect();
    let params = RowParamsBuffer::new(&dev, &rows).unwrap();
    let mut uniforms: CudaSlice<f32> = dev.alloc_zeros(C * 2).unwrap();
    fill_uniforms(&dev, &params, 0, &mut uniforms).unwrap();
    st.audio_step(&dev, &z, &params, &uniforms, None).unwrap();
    let (_, hits) = st.read_sampled(&dev).unwrap();
    for (c, &hit) in hits.iter().enumerate() {
        assert_eq!(
            hit,
            c.min(win) >= max_repeat,
            "row {c}: count {}",
            c.min(win)
        );
    }
}
