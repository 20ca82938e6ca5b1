//! CPU conformance of every op family in `higgs_engine::ops` against a naive scalar loop kept
//! here (STYLE.md §3 "Every kernel has a CPU twin and a conformance test"): matmul, rmsnorm,
//! add, silu_mul, rope, text/audio embeddings, DualFFN row routing, paged KV writes and paged
//! GQA attention, plus the errors `ops::*` must return (never panic) on bad shapes and ids.
//! Inputs come from a seeded `StdRng`; the seed is printed and `HIGGS_TEST_SEED` replays it.
//! Naive loops accumulate in f64, so the measured error is the kernel's own.
//! Tolerances: max |got - want| / max |want| ≤ 1e-5 against the same (widened) weights, ≤ 1e-2
//! for bf16 weights against the f32 originals; NaN always fails.
//! spec: model.md §4.2-§5.8.

use higgs_engine::config::ModelConfig;
use higgs_engine::ops::{self, AttnMeta, KeyMask};
use higgs_engine::tensor::{CpuStorage, DType, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

const TOL_F32: f32 = 1e-5;
const TOL_BF16: f32 = 1e-2;

/// One RNG per test, seeded from `HIGGS_TEST_SEED` or the clock, mixed with the test name so
/// tests stay independent; the seed is printed so a failure can be replayed.
fn rng(test: &str) -> StdRng {
    let seed = match std::env::var("HIGGS_TEST_SEED") {
        Ok(s) => s.parse::<u64>().expect("HIGGS_TEST_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    };
    println!("{test}: HIGGS_TEST_SEED={seed}");
    let mix = test.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    });
    StdRng::seed_from_u64(seed ^ mix)
}

fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
        .collect()
}

/// Max abs error over max abs expected; panics (with the case id) on NaN or a length mismatch.
fn rel_err(case: &str, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{case}: output length");
    if let Some(i) = got.iter().position(|v| v.is_nan()) {
        panic!("{case}: NaN at {i}");
    }
    let mut max_err = 0f32;
    let mut max_ref = 0f32;
    for (g, w) in got.iter().zip(want) {
        max_err = max_err.max((g - w).abs());
        max_ref = max_ref.max(w.abs());
    }
    if max_ref == 0.0 {
        max_err
    } else {
        max_err / max_ref
    }
}

fn check(case: &str, got: &[f32], want: &[f32], tol: f32) {
    let e = rel_err(case, got, want);
    assert!(e <= tol, "{case}: relative error {e:e} > {tol:e}");
}

fn weight(shape: Vec<usize>, data: &[f32], dtype: DType) -> Tensor {
    let t = Tensor::from_f32(shape.clone(), data.to_vec()).unwrap();
    let s = t.cpu().unwrap().to_dtype(dtype);
    Tensor::from_cpu(shape, s).unwrap()
}

fn widened(t: &Tensor) -> Vec<f32> {
    t.to_f32_vec().unwrap()
}

// ---------------------------------------------------------------------------------------------
// matmul

fn naive_matmul(x: &[f32], n: usize, k: usize, w: &[f32], out: usize) -> Vec<f32> {
    let mut y = vec![0f32; n * out];
    for i in 0..n {
        for j in 0..out {
            let mut acc = 0f64;
            for l in 0..k {
                acc += x[i * k + l] as f64 * w[j * k + l] as f64;
            }
            y[i * out + j] = acc as f32;
        }
    }
    y
}

fn matmul_case(rng: &mut StdRng, n: usize, k: usize, out: usize) {
    let x = rand_vec(rng, n * k, 1.0);
    let w = rand_vec(rng, out * k, 0.1);
    let xt = Tensor::from_f32(vec![n, k], x.clone()).unwrap();
    let want_f32 = naive_matmul(&x, n, k, &w, out);
    for dtype in [DType::F32, DType::BF16, DType::F16] {
        let case = format!("matmul/{}/n{n}_k{k}_out{out}", dtype.name());
        let wt = weight(vec![out, k], &w, dtype);
        let y = ops::matmul(&xt, &wt).unwrap();
        assert_eq!(y.shape(), &[n, out], "{case}: shape");
        let got = y.to_f32_vec().unwrap();
        check(
            &format!("{case} vs widened"),
            &got,
            &naive_matmul(&x, n, k, &widened(&wt), out),
            TOL_F32,
        );
        if dtype != DType::F32 {
            check(&format!("{case} vs f32 weights"), &got, &want_f32, TOL_BF16);
        }
    }
}

#[test]
fn matmul_small_and_odd() {
    let mut rng = rng("matmul_small_and_odd");
    // n covers the 4-row pass, its remainder and both; k and out are not multiples of 8 or 16.
    for &(n, k, out) in &[
        (1, 1, 1),
        (1, 7, 33),
        (2, 8, 16),
        (3, 33, 7),
        (4, 16, 17),
        (5, 1025, 17),
        (7, 100, 31),
        (9, 64, 129),
        (13, 3, 2),
    ] {
        matmul_case(&mut rng, n, k, out);
    }
}

#[test]
fn matmul_higgs_dims() {
    let mut rng = rng("matmul_higgs_dims");
    for &(k, out) in &[(3072, 3072), (3072, 1024), (3072, 8192), (8192, 3072)] {
        for n in [1, 3, 5] {
            matmul_case(&mut rng, n, k, out);
        }
    }
    // Audio head: 8 codebooks x 1026 rows.
    matmul_case(&mut rng, 2, 3072, 8 * 1026);
}

/// The text head (3072 -> 128256), bf16 weights only (an f32 copy would be 1.5 GiB), n = 1.
#[test]
fn matmul_text_head_bf16() {
    let mut rng = rng("matmul_text_head_bf16");
    let (k, out) = (3072, 128256);
    let x = rand_vec(&mut rng, k, 1.0);
    let w: Vec<half::bf16> = (0..out * k)
        .map(|_| half::bf16::from_f32(rng.gen_range(-0.1f32..0.1)))
        .collect();
    let wt = Tensor::from_cpu(vec![out, k], CpuStorage::BF16(w)).unwrap();
    let y = ops::matmul(&Tensor::from_f32(vec![1, k], x.clone()).unwrap(), &wt)
        .unwrap()
        .to_f32_vec()
        .unwrap();
    let CpuStorage::BF16(w) = wt.cpu().unwrap() else {
        unreachable!()
    };
    let want: Vec<f32> = w
        .chunks(k)
        .map(|row| {
            row.iter()
                .zip(&x)
                .map(|(a, b)| a.to_f64() * *b as f64)
                .sum::<f64>() as f32
        })
        .collect();
    check(
        "matmul/bf16/n1_k3072_out128256 vs widened",
        &y,
        &want,
        TOL_F32,
    );
}

// ---------------------------------------------------------------------------------------------
// rmsnorm, add, silu_mul

fn naive_rmsnorm(x: &[f32], cols: usize, w: &[f32], eps: f32) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for (yr, xr) in y.chunks_mut(cols).zip(x.chunks(cols)) {
        let ms = xr.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / cols as f64;
        let r = 1.0 / (ms + eps as f64).sqrt();
        for ((o, &v), &g) in yr.iter_mut().zip(xr).zip(w) {
            *o = (g as f64 * v as f64 * r) as f32;
        }
    }
    y
}

#[test]
fn rmsnorm_matches_naive() {
    let mut rng = rng("rmsnorm_matches_naive");
    for &(rows, cols) in &[
        (1, 1),
        (1, 7),
        (3, 33),
        (2, 1025),
        (5, 100),
        (1, 3072),
        (64, 3072),
    ] {
        for &scale in &[1.0f32, 1e-3, 300.0] {
            let x = rand_vec(&mut rng, rows * cols, scale);
            let w: Vec<f32> = (0..cols)
                .map(|_| 1.0 + rng.gen_range(-0.2f32..0.2))
                .collect();
            let xt = Tensor::from_f32(vec![rows, cols], x.clone()).unwrap();
            let want_f32 = naive_rmsnorm(&x, cols, &w, 1e-5);
            for dtype in [DType::F32, DType::BF16, DType::F16] {
                let case = format!("rmsnorm/{}/{rows}x{cols}/scale{scale}", dtype.name());
                let wt = weight(vec![cols], &w, dtype);
                let got = ops::rmsnorm(&xt, &wt, 1e-5).unwrap().to_f32_vec().unwrap();
                check(
                    &format!("{case} vs widened"),
                    &got,
                    &naive_rmsnorm(&x, cols, &widened(&wt), 1e-5),
                    TOL_F32,
                );
                check(&format!("{case} vs f32 weights"), &got, &want_f32, TOL_BF16);
            }
        }
    }
    // A zero row is normalised by sqrt(eps) only: zeros out, not NaN.
    let z = ops::rmsnorm(
        &Tensor::zeros_f32(vec![2, 33]),
        &Tensor::from_f32(vec![33], vec![1.0; 33]).unwrap(),
        1e-5,
    )
    .unwrap();
    assert!(
        z.to_f32_vec().unwrap().iter().all(|&v| v == 0.0),
        "rmsnorm of a zero row"
    );
}

#[test]
fn add_inplace_matches_naive() {
    let mut rng = rng("add_inplace_matches_naive");
    for shape in [
        vec![1, 1],
        vec![3, 7],
        vec![2, 1025],
        vec![5, 3072],
        vec![1, 9000],
    ] {
        let n: usize = shape.iter().product();
        let (a, b) = (rand_vec(&mut rng, n, 1.0), rand_vec(&mut rng, n, 1.0));
        let mut at = Tensor::from_f32(shape.clone(), a.clone()).unwrap();
        ops::add_inplace(
            &mut at,
            &Tensor::from_f32(shape.clone(), b.clone()).unwrap(),
        )
        .unwrap();
        let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
        assert_eq!(at.to_f32_vec().unwrap(), want, "add/f32/{shape:?}");
    }
}

#[test]
fn silu_mul_matches_naive() {
    let mut rng = rng("silu_mul_matches_naive");
    for shape in [
        vec![1, 1],
        vec![3, 7],
        vec![2, 1025],
        vec![5, 8192],
        vec![1, 9000],
    ] {
        let n: usize = shape.iter().product();
        let mut g = rand_vec(&mut rng, n, 8.0);
        // Saturated gates: exp overflows to inf for g << 0, which must give -0, not NaN.
        g[0] = -1000.0;
        if n > 1 {
            g[n - 1] = 1000.0;
        }
        let u = rand_vec(&mut rng, n, 1.0);
        let got = ops::silu_mul(
            &Tensor::from_f32(shape.clone(), g.clone()).unwrap(),
            &Tensor::from_f32(shape.clone(), u.clone()).unwrap(),
        )
        .unwrap();
        let want: Vec<f32> = g
            .iter()
            .zip(&u)
            .map(|(&a, &b)| {
                let a = a as f64;
                (a / (1.0 + (-a).exp()) * b as f64) as f32
            })
            .collect();
        check(
            &format!("silu_mul/f32/{shape:?}"),
            &got.to_f32_vec().unwrap(),
            &want,
            TOL_F32,
        );
    }
}

// ---------------------------------------------------------------------------------------------
// rope

fn naive_rope(
    x: &[f32],
    n_heads: usize,
    head_dim: usize,
    positions: &[i32],
    inv_freq: &[f32],
) -> Vec<f32> {
    let half = head_dim / 2;
    let mut y = x.to_vec();
    for (t, &pos) in positions.iter().enumerate() {
        for h in 0..n_heads {
            let base = t * n_heads * head_dim + h * head_dim;
            for j in 0..half {
                // The angle is an f32 product as in HF (at position 131071 an f64 angle differs
                // by ~1e-2 rad); only cos/sin of that f32 angle are taken in f64.
                let a = (pos as f32 * inv_freq[j]) as f64;
                let (c, s) = (a.cos(), a.sin());
                let (x0, x1) = (x[base + j] as f64, x[base + j + half] as f64);
                y[base + j] = (x0 * c - x1 * s) as f32;
                y[base + j + half] = (x1 * c + x0 * s) as f32;
            }
        }
    }
    y
}

fn rope_case(
    rng: &mut StdRng,
    n_heads: usize,
    head_dim: usize,
    positions: &[i32],
    inv_freq: &[f32],
) {
    let n = positions.len();
    let x = rand_vec(rng, n * n_heads * head_dim, 2.0);
    let mut t = Tensor::from_f32(vec![n, n_heads * head_dim], x.clone()).unwrap();
    ops::rope_inplace(&mut t, n_heads, head_dim, positions, inv_freq).unwrap();
    let case = format!("rope/f32/heads{n_heads}_d{head_dim}/pos{positions:?}");
    check(
        &case,
        &t.to_f32_vec().unwrap(),
        &naive_rope(&x, n_heads, head_dim, positions, inv_freq),
        TOL_F32,
    );
}

#[test]
fn rope_released_inv_freq() {
    let mut rng = rng("rope_released_inv_freq");
    let inv_freq = ModelConfig::released().rope_inv_freq();
    let positions = [0, 1, 4095, 8191, 131071];
    for n_heads in [24, 8] {
        for &p in &positions {
            rope_case(&mut rng, n_heads, 128, &[p], &inv_freq);
        }
        rope_case(&mut rng, n_heads, 128, &positions, &inv_freq);
    }
    let chunk: Vec<i32> = (4090..4090 + 37).collect();
    rope_case(&mut rng, 24, 128, &chunk, &inv_freq);
}

#[test]
fn rope_small_head_dims() {
    let mut rng = rng("rope_small_head_dims");
    for &(n_heads, head_dim) in &[(1, 2), (3, 8), (5, 34), (2, 64)] {
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / 10000f32.powf(2.0 * i as f32 / head_dim as f32))
            .collect();
        let positions: Vec<i32> = (0..7).map(|_| rng.gen_range(0..200_000)).collect();
        rope_case(&mut rng, n_heads, head_dim, &positions, &inv_freq);
    }
}

// ---------------------------------------------------------------------------------------------
// embeddings and routing

#[test]
fn embed_text_matches_naive() {
    let mut rng = rng("embed_text_matches_naive");
    for &(vocab, hidden) in &[(1, 1), (33, 7), (1025, 33), (300, 3072)] {
        let table = rand_vec(&mut rng, vocab * hidden, 1.0);
        let mut ids: Vec<u32> = (0..9).map(|_| rng.gen_range(0..vocab as u32)).collect();
        ids.extend([0, vocab as u32 - 1]);
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let t = weight(vec![vocab, hidden], &table, dtype);
            let w = widened(&t);
            let got = ops::embed_text(&t, &ids).unwrap();
            assert_eq!(got.shape(), &[ids.len(), hidden]);
            let want: Vec<f32> = ids
                .iter()
                .flat_map(|&i| w[i as usize * hidden..(i as usize + 1) * hidden].to_vec())
                .collect();
            assert_eq!(
                got.to_f32_vec().unwrap(),
                want,
                "embed_text/{}/{vocab}x{hidden}",
                dtype.name()
            );
        }
    }
}

fn naive_embed_audio(
    table: &[f32],
    hidden: usize,
    rows: usize,
    n_cb: usize,
    codes: &[u32],
    avg: bool,
) -> Vec<f32> {
    let mut y = vec![0f32; codes.len() / n_cb * hidden];
    for (col, o) in codes.chunks(n_cb).zip(y.chunks_mut(hidden)) {
        for (d, v) in o.iter_mut().enumerate() {
            let mut acc = 0f64;
            for (c, &code) in col.iter().enumerate() {
                acc += table[(c * rows + code as usize) * hidden + d] as f64;
            }
            if avg {
                acc /= n_cb as f64;
            }
            *v = acc as f32;
        }
    }
    y
}

#[test]
fn embed_audio_matches_naive() {
    let mut rng = rng("embed_audio_matches_naive");
    // (rows per codebook, codebooks, hidden, columns); the last is the released table.
    for &(rows, n_cb, hidden, n_cols) in &[
        (1, 1, 1, 1),
        (5, 3, 7, 4),
        (66, 8, 33, 9),
        (1026, 8, 3072, 5),
    ] {
        let table = rand_vec(&mut rng, rows * n_cb * hidden, 1.0);
        let mut codes: Vec<u32> = (0..n_cols * n_cb)
            .map(|_| rng.gen_range(0..rows as u32))
            .collect();
        // The stream BOS/EOS rows (the last two of each codebook) are real rows too.
        codes[0] = rows as u32 - 1;
        for dtype in [DType::F32, DType::BF16] {
            let t = weight(vec![rows * n_cb, hidden], &table, dtype);
            let w = widened(&t);
            for avg in [false, true] {
                let case = format!(
                    "embed_audio/{}/rows{rows}_cb{n_cb}_h{hidden}_cols{n_cols}/avg{avg}",
                    dtype.name()
                );
                let got = ops::embed_audio(&t, rows, n_cb, &codes, avg).unwrap();
                assert_eq!(got.shape(), &[n_cols, hidden], "{case}");
                let got = got.to_f32_vec().unwrap();
                check(
                    &format!("{case} vs widened"),
                    &got,
                    &naive_embed_audio(&w, hidden, rows, n_cb, &codes, avg),
                    TOL_F32,
                );
                check(
                    &format!("{case} vs f32 table"),
                    &got,
                    &naive_embed_audio(&table, hidden, rows, n_cb, &codes, avg),
                    TOL_BF16,
                );
            }
        }
    }
}

#[test]
fn gather_scatter_rows_match_naive() {
    let mut rng = rng("gather_scatter_rows_match_naive");
    for &(n, h) in &[(1, 1), (7, 33), (33, 3072)] {
        let x = rand_vec(&mut rng, n * h, 1.0);
        let xt = Tensor::from_f32(vec![n, h], x.clone()).unwrap();
        // Duplicates included: scatter_add must add both.
        let idx: Vec<u32> = (0..n + 2).map(|_| rng.gen_range(0..n as u32)).collect();
        let g = ops::gather_rows(&xt, &idx).unwrap();
        let want: Vec<f32> = idx
            .iter()
            .flat_map(|&i| x[i as usize * h..(i as usize + 1) * h].to_vec())
            .collect();
        assert_eq!(g.to_f32_vec().unwrap(), want, "gather_rows/f32/{n}x{h}");
        let src = rand_vec(&mut rng, idx.len() * h, 1.0);
        let mut dst = x.clone();
        for (s, &i) in src.chunks(h).zip(&idx) {
            for (d, v) in dst[i as usize * h..(i as usize + 1) * h].iter_mut().zip(s) {
                *d += v;
            }
        }
        let mut xt = xt;
        ops::scatter_add_rows(
            &mut xt,
            &idx,
            &Tensor::from_f32(vec![idx.len(), h], src).unwrap(),
        )
        .unwrap();
        check(
            &format!("scatter_add_rows/f32/{n}x{h}"),
            &xt.to_f32_vec().unwrap(),
            &dst,
            TOL_F32,
        );
    }
}

#[test]
fn select_rows_matches_naive() {
    let mut rng = rng("select_rows_matches_naive");
    for &(n, h) in &[(1, 1), (7, 33), (33, 3072)] {
        let a = rand_vec(&mut rng, n * h, 1.0);
        let t = rand_vec(&mut rng, n * h, 1.0);
        let mask: Vec<u32> = (0..n).map(|_| u32::from(rng.gen_bool(0.5))).collect();
        let want: Vec<f32> = (0..n)
            .flat_map(|i| {
                let src = if mask[i] != 0 { &a } else { &t };
                src[i * h..(i + 1) * h].to_vec()
            })
            .collect();
        let got = ops::select_rows(
            &mask,
            &Tensor::from_f32(vec![n, h], a).unwrap(),
            &Tensor::from_f32(vec![n, h], t).unwrap(),
        )
        .unwrap();
        assert_eq!(got.to_f32_vec().unwrap(), want, "select_rows/f32/{n}x{h}");
    }
}

// ---------------------------------------------------------------------------------------------
// paged KV cache and attention

#[test]
fn kv_write_matches_naive() {
    let mut rng = rng("kv_write_matches_naive");
    for &(num_slots, kv_dim, n) in &[(1, 1, 1), (17, 7, 9), (64, 1024, 33)] {
        let canary = -12345.0f32;
        let mut cache =
            Tensor::from_f32(vec![num_slots, kv_dim], vec![canary; num_slots * kv_dim]).unwrap();
        let src = rand_vec(&mut rng, n * kv_dim, 1.0);
        let mut free: Vec<i32> = (0..num_slots as i32).collect();
        free.shuffle(&mut rng);
        let slots: Vec<i32> = (0..n)
            .map(|i| {
                if rng.gen_bool(0.2) {
                    -1
                } else {
                    free.get(i).copied().unwrap_or(-1)
                }
            })
            .collect();
        ops::kv_write(
            &mut cache,
            &Tensor::from_f32(vec![n, kv_dim], src.clone()).unwrap(),
            &slots,
        )
        .unwrap();
        let mut want = vec![canary; num_slots * kv_dim];
        for (row, &s) in src.chunks(kv_dim).zip(&slots) {
            if s >= 0 {
                want[s as usize * kv_dim..(s as usize + 1) * kv_dim].copy_from_slice(row);
            }
        }
        assert_eq!(
            cache.to_f32_vec().unwrap(),
            want,
            "kv_write/f32/slots{num_slots}_kv{kv_dim}_n{n}"
        );
    }
}

/// Several sequences stored in a paged cache through shuffled block tables, with their dense
/// K/V kept for the naive reference. Unused cache slots hold NaN, so a read through a wrong
/// slot poisons the output.
struct PagedCase {
    n_kv_heads: usize,
    head_dim: usize,
    max_blocks: usize,
    ctx: Vec<usize>,
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    k_cache: Tensor,
    v_cache: Tensor,
    block_tables: Vec<i32>,
}

impl PagedCase {
    fn new(
        rng: &mut StdRng,
        n_kv_heads: usize,
        head_dim: usize,
        block_size: usize,
        ctx: &[usize],
    ) -> Self {
        let kv_dim = n_kv_heads * head_dim;
        let blocks: Vec<usize> = ctx.iter().map(|c| c.div_ceil(block_size)).collect();
        let max_blocks = blocks.iter().copied().max().unwrap_or(1).max(1);
        let num_blocks = blocks.iter().sum::<usize>() + 3;
        let mut ids: Vec<i32> = (0..num_blocks as i32).collect();
        ids.shuffle(rng);
        let mut block_tables = Vec::new();
        let mut next = 0;
        for &b in &blocks {
            for j in 0..max_blocks {
                if j < b {
                    block_tables.push(ids[next]);
                    next += 1;
                } else {
                    // Padding must never be read: point it anywhere valid.
                    block_tables.push(rng.gen_range(0..num_blocks as i32));
                }
            }
        }
        let num_slots = num_blocks * block_size;
        let mut k_cache =
            Tensor::from_f32(vec![num_slots, kv_dim], vec![f32::NAN; num_slots * kv_dim]).unwrap();
        let mut v_cache =
            Tensor::from_f32(vec![num_slots, kv_dim], vec![f32::NAN; num_slots * kv_dim]).unwrap();
        let (mut k, mut v) = (Vec::new(), Vec::new());
        for (s, &c) in ctx.iter().enumerate() {
            let ks = rand_vec(rng, c * kv_dim, 1.0);
            let vs = rand_vec(rng, c * kv_dim, 1.0);
            let slots: Vec<i32> = (0..c)
                .map(|p| {
                    block_tables[s * max_blocks + p / block_size] * block_size as i32
                        + (p % block_size) as i32
                })
                .collect();
            ops::kv_write(
                &mut k_cache,
                &Tensor::from_f32(vec![c, kv_dim], ks.clone()).unwrap(),
                &slots,
            )
            .unwrap();
            ops::kv_write(
                &mut v_cache,
                &Tensor::from_f32(vec![c, kv_dim], vs.clone()).unwrap(),
                &slots,
            )
            .unwrap();
            k.push(ks);
            v.push(vs);
        }
        PagedCase {
            n_kv_heads,
            head_dim,
            max_blocks,
            ctx: ctx.to_vec(),
            k,
            v,
            k_cache,
            v_cache,
            block_tables,
        }
    }

    /// Dense causal GQA attention over the un-paged K/V, f64 softmax.
    fn naive(
        &self,
        q: &[f32],
        n_heads: usize,
        query_seq: &[u32],
        query_pos: &[i32],
        mask: Option<(&[u8], usize)>,
    ) -> Vec<f32> {
        let (d, kv_dim) = (self.head_dim, self.n_kv_heads * self.head_dim);
        let group = n_heads / self.n_kv_heads;
        let scale = 1.0 / (d as f64).sqrt();
        let mut out = vec![0f32; q.len()];
        for (row, (&seq, &pos)) in query_seq.iter().zip(query_pos).enumerate() {
            let (ks, vs) = (&self.k[seq as usize], &self.v[seq as usize]);
            for h in 0..n_heads {
                let kvh = h / group;
                let qv = &q[row * n_heads * d + h * d..row * n_heads * d + (h + 1) * d];
                let keys: Vec<usize> = (0..=pos as usize)
                    .filter(|&p| {
                        mask.is_none_or(|(skip, max_ctx)| skip[seq as usize * max_ctx + p] == 0)
                    })
                    .collect();
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&p| {
                        qv.iter()
                            .zip(&ks[p * kv_dim + kvh * d..p * kv_dim + (kvh + 1) * d])
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                let o = &mut out[row * n_heads * d + h * d..row * n_heads * d + (h + 1) * d];
                for (j, ov) in o.iter_mut().enumerate() {
                    let acc: f64 = keys
                        .iter()
                        .zip(&e)
                        .map(|(&p, w)| w / sum * vs[p * kv_dim + kvh * d + j] as f64)
                        .sum();
                    *ov = acc as f32;
                }
            }
        }
        out
    }
}

#[derive(Clone, Copy, Debug)]
enum MaskKind {
    None,
    /// Random skips that never hide the query's own key.
    KeepSelf,
    /// Random skips, own key included; some rows end up fully masked.
    Any,
    /// Every key of sequence 0 hidden: its rows must be exactly zero.
    AllOfSeq0,
}

#[allow(clippy::too_many_arguments)]
fn attention_case(
    rng: &mut StdRng,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
    block_size: usize,
    ctx: &[usize],
    q_scale: f32,
    mask_kind: MaskKind,
) {
    let pc = PagedCase::new(rng, n_kv_heads, head_dim, block_size, ctx);
    // Queries: each sequence's last position (decode), a prefill chunk ending there, and a few
    // random earlier positions; rows of different sequences interleaved.
    let mut rows: Vec<(u32, i32)> = Vec::new();
    for (s, &c) in ctx.iter().enumerate() {
        let chunk = c.min(5);
        rows.extend((c - chunk..c).map(|p| (s as u32, p as i32)));
        rows.extend((0..2).map(|_| (s as u32, rng.gen_range(0..c) as i32)));
    }
    rows.shuffle(rng);
    let query_seq: Vec<u32> = rows.iter().map(|r| r.0).collect();
    let query_pos: Vec<i32> = rows.iter().map(|r| r.1).collect();
    let n = rows.len();
    let q = rand_vec(rng, n * n_heads * head_dim, q_scale);
    let max_ctx = pc.max_blocks * block_size + 2;
    let mut skip: Vec<u8> = (0..ctx.len() * max_ctx)
        .map(|_| rng.gen_bool(0.3) as u8)
        .collect();
    match mask_kind {
        MaskKind::KeepSelf => {
            for (&s, &p) in query_seq.iter().zip(&query_pos) {
                skip[s as usize * max_ctx + p as usize] = 0;
            }
        }
        MaskKind::AllOfSeq0 => skip[..max_ctx].iter_mut().for_each(|v| *v = 1),
        MaskKind::Any => {
            // Make sure at least one row is fully masked: hide every key of sequence 0 up to
            // its first query position.
            let p0 = rows
                .iter()
                .filter(|r| r.0 == 0)
                .map(|r| r.1)
                .min()
                .unwrap_or(0) as usize;
            skip[..=p0].iter_mut().for_each(|v| *v = 1);
        }
        MaskKind::None => {}
    }
    let meta = AttnMeta {
        block_size,
        block_tables: &pc.block_tables,
        max_blocks: pc.max_blocks,
        query_seq: &query_seq,
        query_pos: &query_pos,
    };
    let mask = match mask_kind {
        MaskKind::None => None,
        _ => Some(KeyMask {
            skip: &skip,
            max_ctx,
        }),
    };
    let qt = Tensor::from_f32(vec![n, n_heads * head_dim], q.clone()).unwrap();
    let case = format!("attention/f32/h{n_heads}_kv{n_kv_heads}_d{head_dim}/bs{block_size}/ctx{:?}/q{q_scale}/mask{mask_kind:?}", pc.ctx);
    let got = ops::paged_attention(
        &qt,
        &pc.k_cache,
        &pc.v_cache,
        n_heads,
        n_kv_heads,
        head_dim,
        &meta,
        mask,
    )
    .unwrap();
    assert_eq!(got.shape(), &[n, n_heads * head_dim], "{case}");
    let got = got.to_f32_vec().unwrap();
    let want = pc.naive(
        &q,
        n_heads,
        &query_seq,
        &query_pos,
        mask.map(|m| (m.skip, m.max_ctx)),
    );
    if mask.is_some() {
        let mut fully_masked = 0;
        for (r, (&s, &p)) in query_seq.iter().zip(&query_pos).enumerate() {
            if (0..=p as usize).all(|k| skip[s as usize * max_ctx + k] != 0) {
                fully_masked += 1;
                let o = &got[r * n_heads * head_dim..(r + 1) * n_heads * head_dim];
                assert!(
                    o.iter().all(|&v| v == 0.0),
                    "{case}: fully masked row {r} (seq {s}, pos {p}) is not zero: {:?}",
                    &o[..4.min(o.len())]
                );
            }
        }
        if matches!(mask_kind, MaskKind::Any | MaskKind::AllOfSeq0) {
            assert!(fully_masked > 0, "{case}: the case has no fully masked row");
        }
    }
    // A score of magnitude S carries an f32 rounding error of about S·2⁻²⁴ in any summation
    // order, and softmax passes it on unchanged: past |q| ~ 10 the reference itself is only
    // that accurate, so the tolerance follows the score scale.
    let tol = TOL_F32.max(q_scale * q_scale * 1e-9);
    if q_scale <= 1e3 {
        check(&case, &got, &want, tol);
    } else {
        // Near-argmax softmax: a tie broken differently is legal; the output must still be a
        // finite convex combination of V rows (|V| ≤ 1).
        assert!(
            got.iter().all(|v| v.is_finite() && v.abs() <= 1.0 + 1e-5),
            "{case}: output not a convex combination of V"
        );
    }
}

#[test]
fn attention_higgs_heads() {
    let mut rng = rng("attention_higgs_heads");
    for block_size in [1, 4, 16] {
        for mask in [
            MaskKind::None,
            MaskKind::KeepSelf,
            MaskKind::Any,
            MaskKind::AllOfSeq0,
        ] {
            attention_case(&mut rng, 24, 8, 128, block_size, &[7, 1, 33, 50], 1.0, mask);
        }
    }
    attention_case(&mut rng, 24, 8, 128, 16, &[1025, 3], 1.0, MaskKind::None);
    attention_case(
        &mut rng,
        24,
        8,
        128,
        16,
        &[301, 17],
        1.0,
        MaskKind::KeepSelf,
    );
}

#[test]
fn attention_small_shapes() {
    let mut rng = rng("attention_small_shapes");
    // (heads, kv heads, head_dim): GQA, MHA, MQA, odd head_dim, head_dim 1.
    for &(h, kvh, d) in &[
        (4, 2, 8),
        (2, 2, 16),
        (8, 1, 64),
        (3, 1, 5),
        (6, 3, 33),
        (1, 1, 1),
    ] {
        for block_size in [1, 3, 16] {
            for mask in [MaskKind::None, MaskKind::KeepSelf, MaskKind::Any] {
                attention_case(&mut rng, h, kvh, d, block_size, &[9, 1, 22], 1.0, mask);
            }
        }
    }
}

/// Peaky and huge scores: the softmax must subtract the max (no inf/NaN).
#[test]
fn attention_large_scores() {
    let mut rng = rng("attention_large_scores");
    for q_scale in [8.0f32, 1e3, 1e5] {
        attention_case(&mut rng, 24, 8, 128, 4, &[19, 40], q_scale, MaskKind::None);
        attention_case(&mut rng, 4, 2, 8, 1, &[19, 40], q_scale, MaskKind::KeepSelf);
    }
}

// ---------------------------------------------------------------------------------------------
// errors: bad shapes, dtypes and ids return Err, never panic

/// `None` if `f` returned Err, else what it did instead.
fn err_outcome<T>(case: &str, f: impl FnOnce() -> higgs_engine::Result<T>) -> Option<String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_)) => Some(format!("{case}: returned Ok, expected Err")),
        Ok(Err(e)) => {
            println!("{case}: Err({e})");
            None
        }
        Err(_) => Some(format!("{case}: panicked, expected Err")),
    }
}

fn expect_err<T>(case: &str, f: impl FnOnce() -> higgs_engine::Result<T>) {
    if let Some(m) = err_outcome(case, f) {
        panic!("{m}");
    }
}

fn f32t(shape: &[usize]) -> Tensor {
    Tensor::zeros_f32(shape.to_vec())
}

#[test]
fn errors_not_panics() {
    let w = f32t(&[4, 8]);
    expect_err("matmul: x k 7 vs w k 8", || ops::matmul(&f32t(&[2, 7]), &w));
    expect_err("matmul: x rank 1", || ops::matmul(&f32t(&[8]), &w));
    expect_err("matmul: w rank 1", || {
        ops::matmul(&f32t(&[1, 8]), &f32t(&[8]))
    });
    expect_err("matmul: w rank 3", || {
        ops::matmul(&f32t(&[1, 8]), &f32t(&[2, 4, 8]))
    });
    expect_err("matmul: bf16 activations", || {
        ops::matmul(&weight(vec![1, 8], &[0.0; 8], DType::BF16), &w)
    });

    expect_err("rmsnorm: cols 7 vs weight 8", || {
        ops::rmsnorm(&f32t(&[2, 7]), &f32t(&[8]), 1e-5)
    });
    expect_err("add: shape mismatch", || {
        ops::add_inplace(&mut f32t(&[2, 8]), &f32t(&[2, 7]))
    });
    expect_err("add: bf16 src", || {
        ops::add_inplace(
            &mut f32t(&[1, 8]),
            &weight(vec![1, 8], &[0.0; 8], DType::BF16),
        )
    });
    expect_err("silu_mul: shape mismatch", || {
        ops::silu_mul(&f32t(&[2, 8]), &f32t(&[8, 2]))
    });

    let inv = vec![1.0f32; 4];
    expect_err("rope: positions length", || {
        ops::rope_inplace(&mut f32t(&[3, 16]), 2, 8, &[0, 1], &inv)
    });
    expect_err("rope: inv_freq length", || {
        ops::rope_inplace(&mut f32t(&[1, 16]), 2, 8, &[0], &inv[..3])
    });
    expect_err("rope: x cols", || {
        ops::rope_inplace(&mut f32t(&[1, 15]), 2, 8, &[0], &inv)
    });

    let table = f32t(&[10, 4]);
    expect_err("embed_text: id == vocab", || {
        ops::embed_text(&table, &[0, 10])
    });
    expect_err("embed_text: id u32::MAX", || {
        ops::embed_text(&table, &[u32::MAX])
    });
    expect_err("embed_audio: code == rows", || {
        ops::embed_audio(&table, 5, 2, &[0, 5], false)
    });
    expect_err("embed_audio: table rows != rows*codebooks", || {
        ops::embed_audio(&table, 4, 2, &[0, 1], false)
    });
    expect_err("embed_audio: codes not a multiple of codebooks", || {
        ops::embed_audio(&table, 5, 2, &[0, 1, 2], false)
    });

    expect_err("gather_rows: idx == n", || {
        ops::gather_rows(&f32t(&[3, 4]), &[3])
    });
    expect_err("scatter_add_rows: idx == n", || {
        ops::scatter_add_rows(&mut f32t(&[3, 4]), &[3], &f32t(&[1, 4]))
    });
    expect_err("scatter_add_rows: src cols", || {
        ops::scatter_add_rows(&mut f32t(&[3, 4]), &[0], &f32t(&[1, 5]))
    });
    expect_err("scatter_add_rows: idx length", || {
        ops::scatter_add_rows(&mut f32t(&[3, 4]), &[0, 1], &f32t(&[1, 4]))
    });

    let mut cache = f32t(&[8, 4]);
    expect_err("kv_write: slot == num_slots", || {
        ops::kv_write(&mut cache, &f32t(&[2, 4]), &[0, 8])
    });
    expect_err("kv_write: src cols", || {
        ops::kv_write(&mut cache, &f32t(&[2, 5]), &[0, 1])
    });
    expect_err("kv_write: slots length", || {
        ops::kv_write(&mut cache, &f32t(&[2, 4]), &[0])
    });
    expect_err("kv_write: bf16 cache", || {
        ops::kv_write(
            &mut weight(vec![8, 4], &[0.0; 32], DType::BF16),
            &f32t(&[1, 4]),
            &[0],
        )
    });

    // 2 heads / 1 kv head of dim 4, block_size 2, 4 blocks, two sequences of 2 blocks each.
    let (k, v) = (f32t(&[8, 4]), f32t(&[8, 4]));
    let meta = |seq: &'static [u32], pos: &'static [i32], tables: &'static [i32]| AttnMeta {
        block_size: 2,
        block_tables: tables,
        max_blocks: 2,
        query_seq: seq,
        query_pos: pos,
    };
    let q = f32t(&[1, 8]);
    expect_err("attention: q cols", || {
        ops::paged_attention(
            &f32t(&[1, 7]),
            &k,
            &v,
            2,
            1,
            4,
            &meta(&[0], &[0], &[0, 1, 2, 3]),
            None,
        )
    });
    expect_err("attention: k cols", || {
        ops::paged_attention(
            &q,
            &f32t(&[8, 5]),
            &v,
            2,
            1,
            4,
            &meta(&[0], &[0], &[0, 1, 2, 3]),
            None,
        )
    });
    expect_err("attention: query_seq == n_seqs", || {
        ops::paged_attention(&q, &k, &v, 2, 1, 4, &meta(&[2], &[0], &[0, 1, 2, 3]), None)
    });
    expect_err("attention: query_pos == max_blocks*block_size", || {
        ops::paged_attention(&q, &k, &v, 2, 1, 4, &meta(&[0], &[4], &[0, 1, 2, 3]), None)
    });
    expect_err("attention: negative query_pos", || {
        ops::paged_attention(&q, &k, &v, 2, 1, 4, &meta(&[0], &[-1], &[0, 1, 2, 3]), None)
    });
    expect_err("attention: block id == num_blocks", || {
        ops::paged_attention(&q, &k, &v, 2, 1, 4, &meta(&[0], &[0], &[0, 4, 2, 3]), None)
    });
    expect_err("attention: negative block id", || {
        ops::paged_attention(&q, &k, &v, 2, 1, 4, &meta(&[0], &[0], &[-1, 1, 2, 3]), None)
    });
    expect_err("attention: query_seq length", || {
        ops::paged_attention(
            &q,
            &k,
            &v,
            2,
            1,
            4,
            &meta(&[0, 1], &[0], &[0, 1, 2, 3]),
            None,
        )
    });
    let skip = [0u8; 8];
    expect_err("attention: mask length", || {
        ops::paged_attention(
            &q,
            &k,
            &v,
            2,
            1,
            4,
            &meta(&[0], &[0], &[0, 1, 2, 3]),
            Some(KeyMask {
                skip: &skip[..7],
                max_ctx: 4,
            }),
        )
    });
    expect_err("attention: query_pos >= mask max_ctx", || {
        ops::paged_attention(
            &q,
            &k,
            &v,
            2,
            1,
            4,
            &meta(&[0], &[3], &[0, 1, 2, 3]),
            Some(KeyMask {
                skip: &skip[..6],
                max_ctx: 3,
            }),
        )
    });
}

/// Bad shapes that once panicked inside `ops::*` (unchecked v_cache, head ratio, rank-0 weight):
/// each must now return Err.
#[test]
fn errors_not_panics_attention_and_matmul_edge_cases() {
    let mut bad = Vec::new();
    let k = f32t(&[8, 4]);
    let meta = AttnMeta {
        block_size: 2,
        block_tables: &[0, 1, 2, 3],
        max_blocks: 2,
        query_seq: &[1],
        query_pos: &[3],
    };
    bad.extend(err_outcome(
        "attention: v_cache has fewer slots than k_cache",
        || ops::paged_attention(&f32t(&[1, 8]), &k, &f32t(&[4, 4]), 2, 1, 4, &meta, None),
    ));
    bad.extend(err_outcome("attention: v_cache cols", || {
        ops::paged_attention(&f32t(&[1, 8]), &k, &f32t(&[8, 3]), 2, 1, 4, &meta, None)
    }));
    bad.extend(err_outcome("attention: n_heads < n_kv_heads", || {
        ops::paged_attention(
            &f32t(&[1, 4]),
            &f32t(&[8, 8]),
            &f32t(&[8, 8]),
            1,
            2,
            4,
            &meta,
            None,
        )
    }));
    bad.extend(err_outcome("attention: n_heads % n_kv_heads != 0", || {
        ops::paged_attention(
            &f32t(&[1, 12]),
            &f32t(&[8, 8]),
            &f32t(&[8, 8]),
            3,
            2,
            4,
            &meta,
            None,
        )
    }));
    bad.extend(err_outcome("matmul: rank-0 weight", || {
        ops::matmul(
            &f32t(&[1, 1]),
            &Tensor::from_f32(vec![], vec![1.0]).unwrap(),
        )
    }));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// fused ops (one kernel on CUDA; on the CPU they must equal their parts)

#[test]
fn add_rmsnorm_equals_add_then_rmsnorm() {
    let mut rng = rng("add_rmsnorm_equals_add_then_rmsnorm");
    for &(rows, cols) in &[(1, 1), (3, 33), (1, 3072), (9, 1025)] {
        let (x, r) = (
            rand_vec(&mut rng, rows * cols, 2.0),
            rand_vec(&mut rng, rows * cols, 2.0),
        );
        let w: Vec<f32> = (0..cols).map(|_| rng.gen_range(0.5f32..1.5)).collect();
        for dtype in [DType::F32, DType::BF16] {
            let case = format!("add_rmsnorm/{}/{rows}x{cols}", dtype.name());
            let wt = weight(vec![cols], &w, dtype);
            let mut xt = Tensor::from_f32(vec![rows, cols], x.clone()).unwrap();
            let rt = Tensor::from_f32(vec![rows, cols], r.clone()).unwrap();
            let got = ops::add_rmsnorm(&mut xt, &rt, &wt, 1e-5).unwrap();
            let sum: Vec<f32> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
            assert_eq!(xt.to_f32_vec().unwrap(), sum, "{case}: residual stream");
            check(
                &case,
                &got.to_f32_vec().unwrap(),
                &naive_rmsnorm(&sum, cols, &widened(&wt), 1e-5),
                TOL_F32,
            );
        }
    }
    let mut x = f32t(&[2, 8]);
    expect_err("add_rmsnorm residual shape", || {
        ops::add_rmsnorm(&mut x, &f32t(&[2, 7]), &f32t(&[8]), 1e-5)
    });
    expect_err("add_rmsnorm weight width", || {
        ops::add_rmsnorm(&mut x, &f32t(&[2, 8]), &f32t(&[7]), 1e-5)
    });
}

#[test]
fn rope_kv_write_equals_rope_then_kv_write() {
    let mut rng = rng("rope_kv_write_equals_rope_then_kv_write");
    let inv_freq = ModelConfig::released().rope_inv_freq();
    let (n_heads, n_kv, hd) = (6, 2, 128);
    for &(n, num_slots) in &[(1usize, 4usize), (5, 16), (17, 40)] {
        let positions: Vec<i32> = (0..n).map(|_| rng.gen_range(0..9000)).collect();
        let mut free: Vec<i32> = (0..num_slots as i32).collect();
        free.shuffle(&mut rng);
        let slots: Vec<i32> = (0..n)
            .map(|i| if i % 4 == 3 { -1 } else { free[i] })
            .collect();
        let q = rand_vec(&mut rng, n * n_heads * hd, 1.0);
        let k = rand_vec(&mut rng, n * n_kv * hd, 1.0);
        let v = rand_vec(&mut rng, n * n_kv * hd, 1.0);
        let canary = -777.0f32;
        let kv_dim = n_kv * hd;
        let cache =
            || Tensor::from_f32(vec![num_slots, kv_dim], vec![canary; num_slots * kv_dim]).unwrap();
        let (mut kc, mut vc) = (cache(), cache());
        let mut qt = Tensor::from_f32(vec![n, n_heads * hd], q.clone()).unwrap();
        let mut kt = Tensor::from_f32(vec![n, kv_dim], k.clone()).unwrap();
        let vt = Tensor::from_f32(vec![n, kv_dim], v.clone()).unwrap();
        let heads = ops::RopeHeads {
            n_heads,
            n_kv_heads: n_kv,
            head_dim: hd,
        };
        ops::rope_kv_write(
            &mut qt, &mut kt, &vt, &mut kc, &mut vc, heads, &positions, &inv_freq, &slots,
        )
        .unwrap();
        let case = format!("rope_kv_write/n{n}");
        let want_q = naive_rope(&q, n_heads, hd, &positions, &inv_freq);
        let want_k = naive_rope(&k, n_kv, hd, &positions, &inv_freq);
        check(
            &format!("{case} q"),
            &qt.to_f32_vec().unwrap(),
            &want_q,
            TOL_F32,
        );
        let (mut wk, mut wv) = (
            vec![canary; num_slots * kv_dim],
            vec![canary; num_slots * kv_dim],
        );
        for (t, &s) in slots.iter().enumerate() {
            if s >= 0 {
                let d = s as usize * kv_dim;
                wk[d..d + kv_dim].copy_from_slice(&want_k[t * kv_dim..(t + 1) * kv_dim]);
                wv[d..d + kv_dim].copy_from_slice(&v[t * kv_dim..(t + 1) * kv_dim]);
            }
        }
        check(
            &format!("{case} k cache"),
            &kc.to_f32_vec().unwrap(),
            &wk,
            TOL_F32,
        );
        assert_eq!(vc.to_f32_vec().unwrap(), wv, "{case} v cache");
    }
    let heads = ops::RopeHeads {
        n_heads: 2,
        n_kv_heads: 1,
        head_dim: 8,
    };
    let (mut q, mut k) = (f32t(&[3, 16]), f32t(&[3, 8]));
    let (mut kc, mut vc) = (f32t(&[4, 8]), f32t(&[4, 8]));
    let freq = vec![1.0f32; 4];
    expect_err("rope_kv_write slot out of range", || {
        ops::rope_kv_write(
            &mut q,
            &mut k,
            &f32t(&[3, 8]),
            &mut kc,
            &mut vc,
            heads,
            &[0, 1, 2],
            &freq,
            &[0, 1, 9],
        )
    });
    expect_err("rope_kv_write v rows", || {
        ops::rope_kv_write(
            &mut q,
            &mut k,
            &f32t(&[2, 8]),
            &mut kc,
            &mut vc,
            heads,
            &[0, 1, 2],
            &freq,
            &[0, 1, 2],
        )
    });
    expect_err("rope_kv_write positions", || {
        ops::rope_kv_write(
            &mut q,
            &mut k,
            &f32t(&[3, 8]),
            &mut kc,
            &mut vc,
            heads,
            &[0, 1],
            &freq,
            &[0, 1, 2],
        )
    });
}

/// `matmul_add` is `y += x·wᵀ`, bit for bit what matmul then add give, for row-major and
/// panel-packed weights; mismatched shapes are errors.
#[test]
fn matmul_add_equals_matmul_then_add() {
    let mut rng = rng("matmul_add_equals_matmul_then_add");
    for &(n, k, out) in &[(1usize, 64usize, 40usize), (9, 33, 17), (0, 8, 8)] {
        let x = Tensor::from_f32(vec![n, k], rand_vec(&mut rng, n * k, 1.0)).unwrap();
        let wv = rand_vec(&mut rng, out * k, 0.1);
        let y0 = rand_vec(&mut rng, n * out, 1.0);
        for packed in [false, true] {
            let mut w = weight(vec![out, k], &wv, DType::F32);
            if packed {
                w = w.pack_for_cpu_matmul();
            }
            let mut want = Tensor::from_f32(vec![n, out], y0.clone()).unwrap();
            ops::add_inplace(&mut want, &ops::matmul(&x, &w).unwrap()).unwrap();
            let mut got = Tensor::from_f32(vec![n, out], y0.clone()).unwrap();
            ops::matmul_add(&mut got, &x, &w).unwrap();
            assert_eq!(
                got.to_f32_vec().unwrap(),
                want.to_f32_vec().unwrap(),
                "n{n} k{k} out{out} packed {packed}"
            );
        }
    }
    let w = f32t(&[4, 8]);
    expect_err("matmul_add y width", || {
        ops::matmul_add(&mut f32t(&[2, 5]), &f32t(&[2, 8]), &w)
    });
    expect_err("matmul_add y rows", || {
        ops::matmul_add(&mut f32t(&[3, 4]), &f32t(&[2, 8]), &w)
    });
}

/// The fused layouts (one QKV GEMM output, one gate|up GEMM output) give exactly what the
/// separate tensors give: the same bits, so fusing at load changes no output.
#[test]
fn fused_qkv_and_gate_up_equal_the_split_ops() {
    let mut rng = rng("fused_qkv_and_gate_up_equal_the_split_ops");
    let inv_freq = ModelConfig::released().rope_inv_freq();
    let (n_heads, n_kv, hd) = (6, 2, 128);
    let heads = ops::RopeHeads {
        n_heads,
        n_kv_heads: n_kv,
        head_dim: hd,
    };
    let (q_w, kv_w) = (n_heads * hd, n_kv * hd);
    for &(n, num_slots) in &[(1usize, 4usize), (7, 16), (0, 2)] {
        let positions: Vec<i32> = (0..n).map(|_| rng.gen_range(0..9000)).collect();
        let slots: Vec<i32> = (0..n as i32).map(|i| if i == 3 { -1 } else { i }).collect();
        let qkv = rand_vec(&mut rng, n * (q_w + 2 * kv_w), 1.0);
        let part = |lo: usize, w: usize| -> Vec<f32> {
            qkv.chunks_exact(q_w + 2 * kv_w)
                .flat_map(|r| r[lo..lo + w].to_vec())
                .collect()
        };
        let mut q = Tensor::from_f32(vec![n, q_w], part(0, q_w)).unwrap();
        let mut k = Tensor::from_f32(vec![n, kv_w], part(q_w, kv_w)).unwrap();
        let v = Tensor::from_f32(vec![n, kv_w], part(q_w + kv_w, kv_w)).unwrap();
        let cache = || Tensor::from_f32(vec![num_slots, kv_w], vec![-5.0; num_slots * kv_w]);
        let (mut kc, mut vc) = (cache().unwrap(), cache().unwrap());
        ops::rope_kv_write(
            &mut q, &mut k, &v, &mut kc, &mut vc, heads, &positions, &inv_freq, &slots,
        )
        .unwrap();
        let (mut kc2, mut vc2) = (cache().unwrap(), cache().unwrap());
        let qkv_t = Tensor::from_f32(vec![n, q_w + 2 * kv_w], qkv.clone()).unwrap();
        let q2 = ops::rope_qkv_write(
            &qkv_t, &mut kc2, &mut vc2, heads, &positions, &inv_freq, &slots,
        )
        .unwrap();
        assert_eq!(q2.shape(), &[n, q_w]);
        assert_eq!(q2.to_f32_vec().unwrap(), q.to_f32_vec().unwrap(), "n{n}: q");
        assert_eq!(
            kc2.to_f32_vec().unwrap(),
            kc.to_f32_vec().unwrap(),
            "n{n}: k cache"
        );
        assert_eq!(
            vc2.to_f32_vec().unwrap(),
            vc.to_f32_vec().unwrap(),
            "n{n}: v cache"
        );
    }
    expect_err("rope_qkv_write width", || {
        ops::rope_qkv_write(
            &f32t(&[2, q_w + kv_w]),
            &mut f32t(&[4, kv_w]),
            &mut f32t(&[4, kv_w]),
            heads,
            &[0, 1],
            &inv_freq,
            &[0, 1],
        )
    });
    expect_err("rope_qkv_write slot out of range", || {
        ops::rope_qkv_write(
            &f32t(&[2, q_w + 2 * kv_w]),
            &mut f32t(&[4, kv_w]),
            &mut f32t(&[4, kv_w]),
            heads,
            &[0, 1],
            &inv_freq,
            &[0, 9],
        )
    });

    for &(n, f) in &[(1usize, 8192usize), (5, 24), (3, 1), (0, 4)] {
        let gu = rand_vec(&mut rng, n * 2 * f, 3.0);
        let gate: Vec<f32> = gu
            .chunks_exact(2 * f.max(1))
            .flat_map(|r| r[..f].to_vec())
            .collect();
        let up: Vec<f32> = gu
            .chunks_exact(2 * f.max(1))
            .flat_map(|r| r[f..].to_vec())
            .collect();
        let want = ops::silu_mul(
            &Tensor::from_f32(vec![n, f], gate).unwrap(),
            &Tensor::from_f32(vec![n, f], up).unwrap(),
        )
        .unwrap();
        let got = ops::silu_mul_fused(&Tensor::from_f32(vec![n, 2 * f], gu).unwrap()).unwrap();
        assert_eq!(got.shape(), &[n, f]);
        assert_eq!(
            got.to_f32_vec().unwrap(),
            want.to_f32_vec().unwrap(),
            "silu_mul_fused n{n} f{f}"
        );
    }
    expect_err("silu_mul_fused odd width", || {
        ops::silu_mul_fused(&f32t(&[2, 7]))
    });
}

/// On the CPU `draw_audio` leaves sampling to the host (None); bad shapes are errors on any
/// device.
#[test]
fn draw_audio_leaves_cpu_logits_to_the_host_and_checks_shapes() {
    use higgs_engine::sampling::processors::SamplingParams;
    let hist = vec![vec![1u32; 8]; 3];
    let row = ops::AudioDraw {
        sampling: SamplingParams::greedy(),
        ras_win_len: 7,
        ras_max_repeat: 2,
        seed: 1,
        step: 4,
        history: &hist,
    };
    let z = f32t(&[2, 8 * 10]);
    assert_eq!(
        ops::draw_audio(&z, 8, &[row.clone(), row.clone()], &[]).unwrap(),
        None
    );
    expect_err("draw_audio rows", || {
        ops::draw_audio(&z, 8, std::slice::from_ref(&row), &[])
    });
    expect_err("draw_audio codebooks", || {
        ops::draw_audio(&f32t(&[2, 81]), 8, &[row.clone(), row.clone()], &[])
    });
    let short = vec![vec![1u32; 7]];
    let bad = ops::AudioDraw {
        history: &short,
        ..row.clone()
    };
    expect_err("draw_audio history column", || {
        ops::draw_audio(&z, 8, &[bad.clone(), bad.clone()], &[])
    });
    let neg = ops::AudioDraw {
        sampling: SamplingParams {
            temperature: -1.0,
            top_k: None,
            top_p: 1.0,
        },
        ..row.clone()
    };
    expect_err("draw_audio sampling params", || {
        ops::draw_audio(&z, 8, &[neg.clone(), neg.clone()], &[])
    });
}
