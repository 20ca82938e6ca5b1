#![cfg(feature = "cuda")]
//! CUDA conformance: every kernel family, and every variant `attn_decode::choose_variant` can
//! return, against its CPU twin in `higgs_engine::backend::cpu` on fresh seeded random inputs
//! (STYLE §3, the llama.cpp test-backend-ops model). The seed is printed; `HIGGS_TEST_SEED`
//! replays it. Shapes cover the real Higgs dims (H 3072, heads 24/8, D 128, F 8192, V 128256,
//! 8×1026 codebooks), 1, odd sizes and batch > 1. Tolerance: max |got − want| / max |want|
//! ≤ 1e-5 (f32) or 1e-2 (bf16; the CPU twin sees the same bf16-rounded inputs in f32); NaN or a
//! mismatched infinity fails. Outputs carry a trailing guard band of canaries that must come
//! back intact. Without a device every test prints "skipped: no CUDA device" and passes.

#[macro_use]
mod common;
use common::rng;
use cudarc::driver::CudaSlice;
use half::bf16;
use higgs_engine::backend::cpu;
use higgs_engine::backend::cuda::attn_decode::{self, DecodeShape, DecodeVariant, DecodeWorkspace};
use higgs_engine::backend::cuda::attn_prefill::{self, AttnArgs};
use higgs_engine::backend::cuda::{
    act, dual_ffn, elementwise, embed, gemm, kv_cache, rmsnorm, rope,
};
use higgs_engine::backend::cuda::{CudaDevice, CudaStorage};
use higgs_engine::tensor::{CpuStorage, DType};
use rand::rngs::StdRng;
use rand::Rng;

const GUARD: usize = 67;
/// Exactly representable in bf16 and far from any output, so a stray write shows.
const CANARY: f32 = -12288.0;
const DTYPES: [DType; 2] = [DType::F32, DType::BF16];

/// Uniform values in [-scale, scale], rounded through `dtype` so CPU and GPU see equal inputs.
fn rand_vec(rng: &mut StdRng, n: usize, scale: f32, dtype: DType) -> Vec<f32> {
    (0..n)
        .map(|_| round(rng.gen_range(-scale..=scale), dtype))
        .collect()
}

fn round(x: f32, dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => bf16::from_f32(x).to_f32(),
        _ => x,
    }
}

fn tol(dtype: DType) -> f32 {
    match dtype {
        DType::BF16 => 1e-2,
        _ => 1e-5,
    }
}

fn up(dev: &CudaDevice, data: &[f32], dtype: DType) -> CudaStorage {
    CudaStorage::from_f32(dev, data, dtype).expect("upload")
}

fn up_i32(dev: &CudaDevice, data: &[i32]) -> CudaSlice<i32> {
    dev.upload(data).expect("upload i32")
}

/// An output buffer of `n` elements plus a trailing guard band, all canaries.
fn out_buf(dev: &CudaDevice, n: usize, dtype: DType) -> CudaStorage {
    up(dev, &vec![CANARY; n + GUARD], dtype)
}

/// A buffer holding `data` followed by the guard band (for in-place ops).
fn with_guard(dev: &CudaDevice, data: &[f32], dtype: DType) -> CudaStorage {
    let mut v = data.to_vec();
    v.extend(std::iter::repeat_n(CANARY, GUARD));
    up(dev, &v, dtype)
}

/// Downloads, checks the guard band and returns the first `n` values.
fn down(case: &str, s: &CudaStorage, n: usize) -> Vec<f32> {
    let v = s.to_f32_vec().expect("download");
    assert_eq!(v.len(), n + GUARD, "{case}: buffer length");
    for (i, &g) in v[n..].iter().enumerate() {
        assert!(
            g == CANARY,
            "{case}: guard element {i} past the output was overwritten ({g})"
        );
    }
    v[..n].to_vec()
}

fn assert_close(case: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let mut max_ref = 0f32;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(!g.is_nan(), "{case}: NaN at {i} (want {w})");
        if w.is_infinite() || g.is_infinite() {
            assert!(
                g == w,
                "{case}: infinity mismatch at {i}: got {g}, want {w}"
            );
            continue;
        }
        max_ref = max_ref.max(w.abs());
    }
    let denom = max_ref.max(1e-20);
    let (mut worst, mut at) = (0f32, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if w.is_finite() {
            let e = (g - w).abs() / denom;
            if e > worst {
                worst = e;
                at = i;
            }
        }
    }
    assert!(
        worst <= tol,
        "{case}: max rel err {worst:.3e} > {tol:.0e} at {at}: got {}, want {}",
        got[at],
        want[at]
    );
}

fn cpu_f32(v: &[f32]) -> CpuStorage {
    CpuStorage::F32(v.to_vec())
}

// ---------------------------------------------------------------------------------------------

#[test]
fn rmsnorm_plain_and_fused() {
    let dev = dev_or_skip!();
    let mut rng = rng("rmsnorm");
    for &(rows, cols) in &[(1, 3072), (7, 3072), (3, 1), (5, 33), (2, 1000), (1, 1)] {
        for dtype in DTYPES {
            let case = format!("rmsnorm rows {rows} cols {cols} {}", dtype.name());
            let n = rows * cols;
            let x = rand_vec(&mut rng, n, 2.0, dtype);
            let r = rand_vec(&mut rng, n, 2.0, dtype);
            let w = rand_vec(&mut rng, cols, 1.5, dtype);
            let args = rmsnorm::RmsNormArgs {
                rows,
                cols,
                eps: 1e-5,
            };
            let (xd, rd, wd) = (
                up(&dev, &x, dtype),
                up(&dev, &r, dtype),
                up(&dev, &w, dtype),
            );

            let mut want = vec![0f32; n];
            cpu::rmsnorm::rmsnorm(&x, cols, &cpu_f32(&w), 1e-5, &mut want);
            let mut out = out_buf(&dev, n, dtype);
            rmsnorm::rmsnorm(&dev, &xd, &wd, &mut out, &args).unwrap();
            assert_close(&case, &down(&case, &out, n), &want, tol(dtype));

            // Fused: the CPU twin writes h = x + r into x; h is rounded to T on the GPU.
            let mut h_want = x.clone();
            cpu::elementwise::add_inplace(&mut h_want, &r);
            let h_want: Vec<f32> = h_want.iter().map(|&v| round(v, dtype)).collect();
            let mut want = vec![0f32; n];
            cpu::rmsnorm::rmsnorm(&h_want, cols, &cpu_f32(&w), 1e-5, &mut want);
            let case_f = format!("{case} residual");
            let (mut h, mut out) = (out_buf(&dev, n, dtype), out_buf(&dev, n, dtype));
            rmsnorm::rmsnorm_residual(&dev, &xd, &rd, &wd, &mut h, &mut out, &args).unwrap();
            assert_close(&case_f, &down(&case_f, &h, n), &h_want, tol(dtype));
            assert_close(&case_f, &down(&case_f, &out, n), &want, tol(dtype));

            let case_i = format!("{case} residual in place");
            let (mut xh, mut out) = (with_guard(&dev, &x, dtype), out_buf(&dev, n, dtype));
            rmsnorm::rmsnorm_residual_inplace(&dev, &mut xh, &rd, &wd, &mut out, &args).unwrap();
            assert_close(&case_i, &down(&case_i, &xh, n), &h_want, tol(dtype));
            assert_close(&case_i, &down(&case_i, &out, n), &want, tol(dtype));
        }
    }
}

#[test]
fn embed_text_and_audio() {
    let dev = dev_or_skip!();
    let mut rng = rng("embed");
    // (vocab, hidden, n_tokens): real V with a narrow row, real H with a small vocab, odd.
    for &(vocab, hidden, n_tokens) in &[(128_256, 64, 9), (1000, 3072, 4), (7, 33, 1)] {
        for dtype in DTYPES {
            let case = format!(
                "embed_text vocab {vocab} hidden {hidden} n {n_tokens} {}",
                dtype.name()
            );
            let table = rand_vec(&mut rng, vocab * hidden, 1.0, dtype);
            let mut ids: Vec<u32> = (0..n_tokens)
                .map(|_| rng.gen_range(0..vocab as u32))
                .collect();
            ids[0] = vocab as u32 - 1; // the last row is reachable
            let mut want = vec![0f32; n_tokens * hidden];
            cpu::embed::embed_text(&cpu_f32(&table), hidden, &ids, &mut want);
            let ids_d = up_i32(&dev, &ids.iter().map(|&i| i as i32).collect::<Vec<_>>());
            let mut out = out_buf(&dev, n_tokens * hidden, dtype);
            let args = embed::EmbedTextArgs {
                n_tokens,
                hidden,
                vocab,
            };
            embed::embed_text(&dev, &up(&dev, &table, dtype), &ids_d, &mut out, &args).unwrap();
            assert_close(
                &case,
                &down(&case, &out, n_tokens * hidden),
                &want,
                tol(dtype),
            );
        }
    }
    // (n_codebooks, rows_per_codebook, hidden, n_tokens)
    for &(c, rows, hidden, n_tokens) in &[(8, 1026, 3072, 5), (8, 1026, 3072, 1), (3, 7, 33, 4)] {
        for dtype in DTYPES {
            for avg in [false, true] {
                let case = format!(
                    "embed_audio C {c} rows {rows} hidden {hidden} n {n_tokens} avg {avg} {}",
                    dtype.name()
                );
                let table = rand_vec(&mut rng, c * rows * hidden, 1.0, dtype);
                let codes: Vec<u32> = (0..n_tokens * c)
                    .map(|_| rng.gen_range(0..rows as u32))
                    .collect();
                let mut want = vec![0f32; n_tokens * hidden];
                cpu::embed::embed_audio(&cpu_f32(&table), hidden, rows, c, &codes, avg, &mut want);
                let codes_d = up_i32(&dev, &codes.iter().map(|&i| i as i32).collect::<Vec<_>>());
                let mut out = out_buf(&dev, n_tokens * hidden, dtype);
                let args = embed::EmbedAudioArgs {
                    n_tokens,
                    hidden,
                    n_codebooks: c,
                    rows_per_codebook: rows,
                    avg,
                };
                embed::embed_audio(&dev, &up(&dev, &table, dtype), &codes_d, &mut out, &args)
                    .unwrap();
                assert_close(
                    &case,
                    &down(&case, &out, n_tokens * hidden),
                    &want,
                    tol(dtype),
                );
            }
        }
    }
}

/// llama3-scaled inverse frequencies (spec §5.5) for the real config; other head dims unscaled.
fn inv_freq(head_dim: usize) -> Vec<f32> {
    let theta = 500_000f32;
    (0..head_dim / 2)
        .map(|i| {
            let f = 1.0 / theta.powf(2.0 * i as f32 / head_dim as f32);
            let wavelen = 2.0 * std::f32::consts::PI / f;
            if head_dim != 128 || wavelen < 2048.0 {
                f
            } else if wavelen > 8192.0 {
                f / 32.0
            } else {
                let a = (8192.0 / wavelen - 1.0) / 3.0;
                (1.0 - a) * f / 32.0 + a * f
            }
        })
        .collect()
}

#[test]
fn rope_plain_and_fused_with_cache() {
    let dev = dev_or_skip!();
    let mut rng = rng("rope");
    // (n_tokens, n_heads, n_kv_heads, head_dim, max_pos)
    for &(n_tokens, n_heads, n_kv, head_dim, max_pos) in
        &[(5, 24, 8, 128, 8000), (1, 24, 8, 128, 3), (3, 3, 1, 6, 50)]
    {
        for dtype in DTYPES {
            let case = format!(
                "rope n {n_tokens} heads {n_heads}/{n_kv} D {head_dim} {}",
                dtype.name()
            );
            // bf16 rounds cos/sin and each product (spec §11.3); the CPU twin does not.
            let t = tol(dtype);
            let freqs = inv_freq(head_dim);
            let freqs_d = dev.upload(&freqs).unwrap();
            let positions: Vec<i32> = (0..n_tokens).map(|_| rng.gen_range(0..max_pos)).collect();
            let pos_d = up_i32(&dev, &positions);
            let q = rand_vec(&mut rng, n_tokens * n_heads * head_dim, 2.0, dtype);
            let k = rand_vec(&mut rng, n_tokens * n_kv * head_dim, 2.0, dtype);
            let v = rand_vec(&mut rng, n_tokens * n_kv * head_dim, 2.0, dtype);
            let mut q_want = q.clone();
            cpu::rope::rope_inplace(&mut q_want, n_heads, head_dim, &positions, &freqs);
            let mut k_want = k.clone();
            cpu::rope::rope_inplace(&mut k_want, n_kv, head_dim, &positions, &freqs);

            let mut qd = with_guard(&dev, &q, dtype);
            let args = rope::RopeArgs {
                n_tokens,
                n_heads,
                head_dim,
            };
            rope::rope(&dev, &mut qd, &pos_d, &freqs_d, &args).unwrap();
            assert_close(&case, &down(&case, &qd, q.len()), &q_want, t);

            // Fused: random slots (one skipped), caches start random.
            let case_c = format!("{case} fused cache");
            let kv_dim = n_kv * head_dim;
            let num_slots = 2 * n_tokens + 3;
            let mut slots: Vec<i32> = (0..num_slots as i32).collect();
            for i in (1..slots.len()).rev() {
                slots.swap(i, rng.gen_range(0..=i));
            }
            slots.truncate(n_tokens);
            if n_tokens > 1 {
                slots[1] = -1;
            }
            let kc0 = rand_vec(&mut rng, num_slots * kv_dim, 1.0, dtype);
            let vc0 = rand_vec(&mut rng, num_slots * kv_dim, 1.0, dtype);
            let (mut kc_want, mut vc_want) = (kc0.clone(), vc0.clone());
            let k_want_r: Vec<f32> = k_want.iter().map(|&x| round(x, dtype)).collect();
            cpu::kv_cache::kv_write(&mut kc_want, kv_dim, &k_want_r, &slots);
            cpu::kv_cache::kv_write(&mut vc_want, kv_dim, &v, &slots);
            let (mut qd, mut kd, vd) = (
                with_guard(&dev, &q, dtype),
                with_guard(&dev, &k, dtype),
                up(&dev, &v, dtype),
            );
            let (mut kc, mut vc) = (with_guard(&dev, &kc0, dtype), with_guard(&dev, &vc0, dtype));
            let slots_d = up_i32(&dev, &slots);
            let args = rope::RopeCacheArgs {
                n_tokens,
                n_heads,
                n_kv_heads: n_kv,
                head_dim,
                num_slots,
            };
            rope::rope_cache(
                &dev, &mut qd, &mut kd, &vd, &mut kc, &mut vc, &pos_d, &slots_d, &freqs_d, &args,
            )
            .unwrap();
            assert_close(&case_c, &down(&case_c, &qd, q.len()), &q_want, t);
            let k_got = down(&case_c, &kd, k.len());
            assert_close(&case_c, &k_got, &k_want, t);
            // The cache must hold exactly the rotated K the kernel left in `k`.
            let mut kc_exact = kc0.clone();
            cpu::kv_cache::kv_write(&mut kc_exact, kv_dim, &k_got, &slots);
            assert_eq!(down(&case_c, &kc, kc0.len()), kc_exact, "{case_c}: k_cache");
            assert_eq!(down(&case_c, &vc, vc0.len()), vc_want, "{case_c}: v_cache");
            assert_close(&case_c, &kc_exact, &kc_want, t);

            // Fused QKV: the same rows as one [n, q + 2·kv] GEMM output, read in place; the
            // same arithmetic per element, so exactly rope_cache's Q and caches.
            let case_f = format!("{case} fused qkv");
            let q_w = n_heads * head_dim;
            let mut qkv = Vec::with_capacity(n_tokens * (q_w + 2 * kv_dim));
            for t in 0..n_tokens {
                qkv.extend_from_slice(&q[t * q_w..(t + 1) * q_w]);
                qkv.extend_from_slice(&k[t * kv_dim..(t + 1) * kv_dim]);
                qkv.extend_from_slice(&v[t * kv_dim..(t + 1) * kv_dim]);
            }
            let qkv_d = up(&dev, &qkv, dtype);
            let mut q_out = with_guard(&dev, &vec![0.0; q.len()], dtype);
            let (mut kc2, mut vc2) = (with_guard(&dev, &kc0, dtype), with_guard(&dev, &vc0, dtype));
            rope::rope_qkv(
                &dev, &qkv_d, &mut q_out, &mut kc2, &mut vc2, &pos_d, &slots_d, &freqs_d, &args,
            )
            .unwrap();
            assert_eq!(
                down(&case_f, &q_out, q.len()),
                down(&case_c, &qd, q.len()),
                "{case_f}: q"
            );
            assert_eq!(
                down(&case_f, &kc2, kc0.len()),
                kc_exact,
                "{case_f}: k_cache"
            );
            assert_eq!(down(&case_f, &vc2, vc0.len()), vc_want, "{case_f}: v_cache");
            assert_eq!(
                down(&case_f, &qkv_d, qkv.len()),
                qkv,
                "{case_f}: qkv left unchanged"
            );
        }
    }
}

#[test]
fn kv_cache_write_and_copy_blocks() {
    let dev = dev_or_skip!();
    let mut rng = rng("kv_cache");
    // (n_tokens, n_kv_heads, head_dim, block_size, num_blocks)
    for &(n_tokens, n_kv, head_dim, block_size, num_blocks) in
        &[(37, 8, 128, 16, 6), (1, 8, 128, 16, 2), (5, 1, 6, 3, 4)]
    {
        for dtype in DTYPES {
            let case = format!(
                "kv_cache n {n_tokens} kv {n_kv} D {head_dim} bs {block_size} {}",
                dtype.name()
            );
            let kv_dim = n_kv * head_dim;
            let num_slots = num_blocks * block_size;
            let mut slots: Vec<i32> = (0..num_slots as i32).collect();
            for i in (1..slots.len()).rev() {
                slots.swap(i, rng.gen_range(0..=i));
            }
            slots.truncate(n_tokens);
            slots[0] = -1;
            let k = rand_vec(&mut rng, n_tokens * kv_dim, 1.0, dtype);
            let v = rand_vec(&mut rng, n_tokens * kv_dim, 1.0, dtype);
            let kc0 = rand_vec(&mut rng, num_slots * kv_dim, 1.0, dtype);
            let vc0 = rand_vec(&mut rng, num_slots * kv_dim, 1.0, dtype);
            let (mut kw, mut vw) = (kc0.clone(), vc0.clone());
            cpu::kv_cache::kv_write(&mut kw, kv_dim, &k, &slots);
            cpu::kv_cache::kv_write(&mut vw, kv_dim, &v, &slots);
            let (mut kc, mut vc) = (with_guard(&dev, &kc0, dtype), with_guard(&dev, &vc0, dtype));
            let args = kv_cache::KvWriteArgs {
                n_tokens,
                n_kv_heads: n_kv,
                head_dim,
                num_slots,
            };
            kv_cache::kv_cache_write(
                &dev,
                &up(&dev, &k, dtype),
                &up(&dev, &v, dtype),
                &mut kc,
                &mut vc,
                &up_i32(&dev, &slots),
                &args,
            )
            .unwrap();
            assert_eq!(down(&case, &kc, kw.len()), kw, "{case}: k_cache");
            assert_eq!(down(&case, &vc, vw.len()), vw, "{case}: v_cache");

            let case_b = format!("{case} copy_blocks");
            let pairs: Vec<(u32, u32)> = vec![(0, (num_blocks - 1) as u32), (1, 0)];
            let pairs = if num_blocks > 2 { pairs } else { vec![(1, 0)] };
            // One pair per launch: pairs of one launch run concurrently, and the second pair
            // reads the block the first one writes.
            for &(s, d) in &pairs {
                cpu::kv_cache::copy_blocks(&mut kw, kv_dim, block_size, &[(s, d)]);
                cpu::kv_cache::copy_blocks(&mut vw, kv_dim, block_size, &[(s, d)]);
                let pd = up_i32(&dev, &[s as i32, d as i32]);
                let a = kv_cache::KvCopyArgs {
                    n_pairs: 1,
                    num_blocks,
                    block_size,
                    n_kv_heads: n_kv,
                    head_dim,
                };
                kv_cache::kv_cache_copy_blocks(&dev, &mut kc, &mut vc, &pd, &a).unwrap();
            }
            assert_eq!(down(&case_b, &kc, kw.len()), kw, "{case_b}: k_cache");
            assert_eq!(down(&case_b, &vc, vw.len()), vw, "{case_b}: v_cache");
        }
    }
}

/// A paged cache filled with random K/V, block tables a random permutation of blocks.
struct PagedFixture {
    k_cache: Vec<f32>,
    v_cache: Vec<f32>,
    block_tables: Vec<i32>,
    max_blocks: usize,
    num_blocks: usize,
}

fn paged_fixture(
    rng: &mut StdRng,
    ctx: &[usize],
    n_kv: usize,
    head_dim: usize,
    block_size: usize,
    dtype: DType,
) -> PagedFixture {
    let max_ctx = ctx.iter().copied().max().unwrap_or(1);
    let max_blocks = max_ctx.div_ceil(block_size);
    let num_blocks = ctx.len() * max_blocks + 1;
    let mut perm: Vec<i32> = (0..num_blocks as i32).collect();
    for i in (1..perm.len()).rev() {
        perm.swap(i, rng.gen_range(0..=i));
    }
    let mut block_tables = vec![0i32; ctx.len() * max_blocks];
    for (s, &c) in ctx.iter().enumerate() {
        for b in 0..c.div_ceil(block_size) {
            block_tables[s * max_blocks + b] = perm[s * max_blocks + b];
        }
    }
    let n = num_blocks * block_size * n_kv * head_dim;
    PagedFixture {
        k_cache: rand_vec(rng, n, 1.0, dtype),
        v_cache: rand_vec(rng, n, 1.0, dtype),
        block_tables,
        max_blocks,
        num_blocks,
    }
}

/// (per-sequence contexts, query rows per sequence, heads, kv heads, block_size, key_skip)
type PrefillCase = (&'static [usize], usize, usize, usize, usize, bool);

#[test]
fn attn_prefill_paged_causal() {
    let dev = dev_or_skip!();
    let mut rng = rng("attn_prefill");
    // (per-sequence context lengths, query rows per sequence (last positions), heads, kv heads, block_size, key_skip)
    let cases: &[PrefillCase] = &[
        (&[37, 100], 37, 24, 8, 16, false),
        (&[37, 100], 20, 24, 8, 16, true),
        (&[1], 1, 24, 8, 16, false),
        (&[70], 70, 8, 8, 32, false),
        (&[33], 5, 16, 2, 7, true),
    ];
    let head_dim = 128;
    for &(ctx, rows_per_seq, n_heads, n_kv, block_size, skip) in cases {
        for dtype in DTYPES {
            let case = format!("attn_prefill ctx {ctx:?} rows {rows_per_seq} heads {n_heads}/{n_kv} bs {block_size} skip {skip} {}", dtype.name());
            let fx = paged_fixture(&mut rng, ctx, n_kv, head_dim, block_size, dtype);
            let max_ctx = fx.max_blocks * block_size;
            let (mut query_seq, mut query_pos) = (Vec::new(), Vec::new());
            for (s, &c) in ctx.iter().enumerate() {
                for p in c.saturating_sub(rows_per_seq)..c {
                    query_seq.push(s as u32);
                    query_pos.push(p as i32);
                }
            }
            let n_q = query_seq.len();
            let key_skip: Vec<u8> = (0..ctx.len() * max_ctx)
                .map(|_| u8::from(skip && rng.gen_bool(0.3)))
                .collect();
            let q = rand_vec(&mut rng, n_q * n_heads * head_dim, 1.0, dtype);
            let meta = cpu::attention::AttnMeta {
                block_size,
                block_tables: &fx.block_tables,
                max_blocks: fx.max_blocks,
                query_seq: &query_seq,
                query_pos: &query_pos,
            };
            let mask = skip.then_some(cpu::attention::KeyMask {
                skip: &key_skip,
                max_ctx,
            });
            let mut want = vec![0f32; q.len()];
            cpu::attention::paged_attention(
                &q,
                &fx.k_cache,
                &fx.v_cache,
                n_heads,
                n_kv,
                head_dim,
                &meta,
                mask,
                &mut want,
            );

            let args = AttnArgs {
                n_q,
                n_heads,
                n_kv_heads: n_kv,
                head_dim,
                block_size,
                max_blocks: fx.max_blocks,
                n_seqs: ctx.len(),
                max_ctx,
                num_blocks: fx.num_blocks,
                scale: 1.0 / (head_dim as f32).sqrt(),
            };
            let skip_d = dev.upload(&key_skip).unwrap();
            let seq_d = up_i32(
                &dev,
                &query_seq.iter().map(|&s| s as i32).collect::<Vec<_>>(),
            );
            let mut out = out_buf(&dev, q.len(), dtype);
            attn_prefill::attn_prefill(
                &dev,
                &up(&dev, &q, dtype),
                &up(&dev, &fx.k_cache, dtype),
                &up(&dev, &fx.v_cache, dtype),
                &up_i32(&dev, &fx.block_tables),
                &seq_d,
                &up_i32(&dev, &query_pos),
                skip.then_some(&skip_d),
                &mut out,
                &args,
            )
            .unwrap();
            assert_close(&case, &down(&case, &out, q.len()), &want, tol(dtype));
        }
    }
}

#[test]
fn attn_decode_every_variant() {
    let dev = dev_or_skip!();
    let mut rng = rng("attn_decode");
    let head_dim = 128;
    let mut seen_single = false;
    let mut seen_split = false;
    // (contexts, heads, kv heads, block_size, key_skip)
    let cases: &[(&[usize], usize, usize, usize, bool)] = &[
        (&[1], 24, 8, 16, false),
        (&[3000], 24, 8, 16, false),
        (&[700, 1, 2049], 24, 8, 16, true),
        (&[517], 16, 2, 7, false),
        // GQA group 1 and 5: both kernel instances (group <= 4, <= 8) at odd lengths.
        (&[33, 65, 8], 8, 8, 16, false),
        (&[130, 9], 10, 2, 16, true),
    ];
    for &(ctx, n_heads, n_kv, block_size, skip) in cases {
        let max_ctx_len = ctx.iter().copied().max().unwrap_or(1);
        let shape = DecodeShape {
            n_seqs: ctx.len(),
            n_kv_heads: n_kv,
            max_ctx_len,
            num_sms: dev.num_sms() as usize,
        };
        // What dispatch would run, plus both forced variants, so every path the chooser can
        // return is exercised whatever this GPU's SM count is.
        let mut variants = vec![attn_decode::choose_variant(&shape), DecodeVariant::Single];
        let forced = attn_decode::choose_variant(&DecodeShape {
            num_sms: 1024,
            ..shape
        });
        variants.push(forced);
        for dtype in DTYPES {
            let fx = paged_fixture(&mut rng, ctx, n_kv, head_dim, block_size, dtype);
            let max_ctx = fx.max_blocks * block_size;
            let seq_pos: Vec<i32> = ctx.iter().map(|&c| c as i32 - 1).collect();
            let key_skip: Vec<u8> = (0..ctx.len() * max_ctx)
                .map(|_| u8::from(skip && rng.gen_bool(0.3)))
                .collect();
            let q = rand_vec(&mut rng, ctx.len() * n_heads * head_dim, 1.0, dtype);
            let query_seq: Vec<u32> = (0..ctx.len() as u32).collect();
            let meta = cpu::attention::AttnMeta {
                block_size,
                block_tables: &fx.block_tables,
                max_blocks: fx.max_blocks,
                query_seq: &query_seq,
                query_pos: &seq_pos,
            };
            let mask = skip.then_some(cpu::attention::KeyMask {
                skip: &key_skip,
                max_ctx,
            });
            let mut want = vec![0f32; q.len()];
            cpu::attention::paged_attention(
                &q,
                &fx.k_cache,
                &fx.v_cache,
                n_heads,
                n_kv,
                head_dim,
                &meta,
                mask,
                &mut want,
            );
            let args = AttnArgs {
                n_q: ctx.len(),
                n_heads,
                n_kv_heads: n_kv,
                head_dim,
                block_size,
                max_blocks: fx.max_blocks,
                n_seqs: ctx.len(),
                max_ctx,
                num_blocks: fx.num_blocks,
                scale: 1.0 / (head_dim as f32).sqrt(),
            };
            let (qd, kc, vc) = (
                up(&dev, &q, dtype),
                up(&dev, &fx.k_cache, dtype),
                up(&dev, &fx.v_cache, dtype),
            );
            let (bt, sp, sk) = (
                up_i32(&dev, &fx.block_tables),
                up_i32(&dev, &seq_pos),
                dev.upload(&key_skip).unwrap(),
            );
            let mut ws = DecodeWorkspace::new();
            for &variant in &variants {
                match variant {
                    DecodeVariant::Split { .. } => seen_split = true,
                    DecodeVariant::Single => seen_single = true,
                }
                let case = format!("attn_decode ctx {ctx:?} heads {n_heads}/{n_kv} bs {block_size} skip {skip} {variant:?} {}", dtype.name());
                let mut out = out_buf(&dev, q.len(), dtype);
                attn_decode::attn_decode(
                    &dev,
                    &mut ws,
                    variant,
                    &qd,
                    &kc,
                    &vc,
                    &bt,
                    &sp,
                    skip.then_some(&sk),
                    &mut out,
                    &args,
                )
                .unwrap();
                assert_close(&case, &down(&case, &out, q.len()), &want, tol(dtype));
            }
        }
    }
    assert!(
        seen_single && seen_split,
        "choose_variant never returned one of its variants"
    );
}

#[test]
fn dual_ffn_routing() {
    let dev = dev_or_skip!();
    let mut rng = rng("dual_ffn");
    for &(n_tokens, hidden) in &[(9, 3072), (1, 3072), (5, 33)] {
        for dtype in DTYPES {
            let mask: Vec<u8> = (0..n_tokens).map(|_| u8::from(rng.gen_bool(0.5))).collect();
            let (text, audio) = dual_ffn::route_rows(&mask);
            for (name, idx) in [("text", text), ("audio", audio)] {
                if idx.is_empty() {
                    continue;
                }
                let case = format!(
                    "dual_ffn {name} rows {} of {n_tokens} hidden {hidden} {}",
                    idx.len(),
                    dtype.name()
                );
                let idx_u: Vec<u32> = idx.iter().map(|&i| i as u32).collect();
                let n_rows = idx.len();
                let args = dual_ffn::RowsArgs {
                    n_rows,
                    n_tokens,
                    hidden,
                };
                let idx_d = up_i32(&dev, &idx);
                let x = rand_vec(&mut rng, n_tokens * hidden, 2.0, dtype);
                let y = rand_vec(&mut rng, n_rows * hidden, 2.0, dtype);

                let mut want = vec![0f32; n_rows * hidden];
                cpu::dual_ffn::gather_rows(&x, hidden, &idx_u, &mut want);
                let mut out = out_buf(&dev, n_rows * hidden, dtype);
                dual_ffn::gather_rows(&dev, &up(&dev, &x, dtype), &idx_d, &mut out, &args).unwrap();
                assert_close(
                    &format!("{case} gather"),
                    &down(&case, &out, n_rows * hidden),
                    &want,
                    0.0,
                );

                let mut want = x.clone();
                cpu::dual_ffn::scatter_add_rows(&mut want, hidden, &idx_u, &y);
                let mut res = with_guard(&dev, &x, dtype);
                dual_ffn::scatter_add_rows(&dev, &up(&dev, &y, dtype), &idx_d, &mut res, &args)
                    .unwrap();
                assert_close(
                    &format!("{case} scatter_add"),
                    &down(&case, &res, x.len()),
                    &want,
                    tol(dtype),
                );

                let mut want = x.clone();
                cpu::dual_ffn::scatter_rows(&mut want, hidden, &idx_u, &y);
                let mut res = with_guard(&dev, &x, dtype);
                dual_ffn::scatter_rows(&dev, &up(&dev, &y, dtype), &idx_d, &mut res, &args)
                    .unwrap();
                assert_close(
                    &format!("{case} scatter"),
                    &down(&case, &res, x.len()),
                    &want,
                    0.0,
                );
            }
        }
    }
}

#[test]
fn dual_ffn_select() {
    let dev = dev_or_skip!();
    let mut rng = rng("dual_ffn_select");
    for &(n_rows, hidden) in &[(9, 3072), (1, 3072), (5, 33)] {
        for dtype in DTYPES {
            let case = format!(
                "dual_ffn select rows {n_rows} hidden {hidden} {}",
                dtype.name()
            );
            let mask: Vec<i32> = (0..n_rows).map(|_| i32::from(rng.gen_bool(0.5))).collect();
            let mask_u: Vec<u32> = mask.iter().map(|&m| m as u32).collect();
            let a = rand_vec(&mut rng, n_rows * hidden, 2.0, dtype);
            let t = rand_vec(&mut rng, n_rows * hidden, 2.0, dtype);
            let mut want = vec![0f32; n_rows * hidden];
            cpu::dual_ffn::select_rows(&mask_u, hidden, &a, &t, &mut want);
            // NaN-filled: an element the kernel skips fails the comparison.
            let mut out = with_guard(&dev, &vec![f32::NAN; want.len()], dtype);
            let args = dual_ffn::SelectArgs { n_rows, hidden };
            dual_ffn::select_rows(
                &dev,
                &up(&dev, &a, dtype),
                &up(&dev, &t, dtype),
                &up_i32(&dev, &mask),
                &mut out,
                &args,
            )
            .unwrap();
            assert_close(&case, &down(&case, &out, want.len()), &want, 0.0);
        }
    }
}

#[test]
fn act_silu_mul_plain_and_fused() {
    let dev = dev_or_skip!();
    let mut rng = rng("act");
    for &(n_rows, cols) in &[(3, 8192), (1, 8192), (5, 33)] {
        for dtype in DTYPES {
            let case = format!("silu_mul rows {n_rows} cols {cols} {}", dtype.name());
            let n = n_rows * cols;
            let gate = rand_vec(&mut rng, n, 6.0, dtype);
            let upv = rand_vec(&mut rng, n, 2.0, dtype);
            let mut want = vec![0f32; n];
            cpu::act::silu_mul(&gate, &upv, &mut want);
            let args = act::SiluMulArgs { n_rows, cols };
            let mut out = out_buf(&dev, n, dtype);
            act::silu_mul(
                &dev,
                &up(&dev, &gate, dtype),
                &up(&dev, &upv, dtype),
                &mut out,
                &args,
            )
            .unwrap();
            assert_close(&case, &down(&case, &out, n), &want, tol(dtype));

            let case_f = format!("{case} fused gate|up");
            let mut gu = Vec::with_capacity(2 * n);
            for r in 0..n_rows {
                gu.extend_from_slice(&gate[r * cols..(r + 1) * cols]);
                gu.extend_from_slice(&upv[r * cols..(r + 1) * cols]);
            }
            let mut out = out_buf(&dev, n, dtype);
            act::silu_mul_fused(&dev, &up(&dev, &gu, dtype), &mut out, &args).unwrap();
            assert_close(&case_f, &down(&case_f, &out, n), &want, tol(dtype));
        }
    }
}

#[test]
fn elementwise_add_and_cast() {
    let dev = dev_or_skip!();
    let mut rng = rng("elementwise");
    for &n in &[1usize, 3072, 9 * 3072 + 5, 1_000_003] {
        for dtype in DTYPES {
            let case = format!("add n {n} {}", dtype.name());
            let a = rand_vec(&mut rng, n, 4.0, dtype);
            let b = rand_vec(&mut rng, n, 4.0, dtype);
            let mut want = a.clone();
            cpu::elementwise::add_inplace(&mut want, &b);
            let (ad, bd) = (up(&dev, &a, dtype), up(&dev, &b, dtype));
            let mut out = out_buf(&dev, n, dtype);
            elementwise::add(&dev, &ad, &bd, &mut out, n).unwrap();
            assert_close(&case, &down(&case, &out, n), &want, tol(dtype));
            let mut acc = with_guard(&dev, &a, dtype);
            elementwise::add_inplace(&dev, &mut acc, &bd, n).unwrap();
            assert_close(
                &format!("{case} in place"),
                &down(&case, &acc, n),
                &want,
                tol(dtype),
            );
        }
        let case = format!("cast n {n}");
        let x = rand_vec(&mut rng, n, 100.0, DType::F32);
        let want: Vec<f32> = x.iter().map(|&v| round(v, DType::BF16)).collect();
        let mut to_bf16 = out_buf(&dev, n, DType::BF16);
        elementwise::cast(&dev, &up(&dev, &x, DType::F32), &mut to_bf16, n).unwrap();
        assert_eq!(
            down(&case, &to_bf16, n),
            want,
            "{case}: f32 -> bf16 must round to nearest even"
        );
        let mut back = out_buf(&dev, n, DType::F32);
        elementwise::cast(&dev, &up(&dev, &want, DType::BF16), &mut back, n).unwrap();
        assert_eq!(down(&case, &back, n), want, "{case}: bf16 -> f32 is exact");
    }
}

#[test]
fn gemm_projections_and_heads() {
    let dev = dev_or_skip!();
    let mut rng = rng("gemm");
    // (n, k, out): q/o proj, kv proj, gate|up, down, audio head, odd.
    for &(n, k, out) in &[
        (1, 3072, 3072),
        (7, 3072, 1024),
        (5, 3072, 16384),
        (3, 8192, 3072),
        (1, 3072, 8208),
        (3, 33, 5),
    ] {
        for dtype in DTYPES {
            let case = format!("gemm n {n} k {k} out {out} {}", dtype.name());
            let x = rand_vec(&mut rng, n * k, 1.0, dtype);
            let w = rand_vec(&mut rng, out * k, 0.05, dtype);
            let mut want = vec![0f32; n * out];
            cpu::matmul::matmul(&x, n, k, &cpu_f32(&w), out, &mut want);
            let mut y = out_buf(&dev, n * out, dtype);
            gemm::matmul_wt(
                &dev,
                &up(&dev, &x, dtype),
                &up(&dev, &w, dtype),
                &mut y,
                &gemm::MatmulArgs { n, k, out },
            )
            .unwrap();
            // f32 over k = 8192 terms: summation order alone differs by ~1e-6 of the max.
            assert_close(&case, &down(&case, &y, n * out), &want, tol(dtype));

            // Residual in the epilogue: y0 + x·wᵀ (y0 random, as a residual stream is).
            let case_a = format!("{case} accumulate");
            let y0 = rand_vec(&mut rng, n * out, 1.0, dtype);
            let want_a: Vec<f32> = y0.iter().zip(&want).map(|(a, b)| a + b).collect();
            let mut ya = up(&dev, &y0, dtype);
            gemm::matmul_wt_acc(
                &dev,
                &up(&dev, &x, dtype),
                &up(&dev, &w, dtype),
                &mut ya,
                &gemm::MatmulArgs { n, k, out },
            )
            .unwrap();
            assert_close(&case_a, &down(&case_a, &ya, n * out), &want_a, tol(dtype));
        }
    }
}
