//! criterion benchmarks of the CPU ops at the released Higgs Audio v2 dims (hidden 3072, heads
//! 24/8, head_dim 128, FFN 8192, 8 codebooks x 1026 rows), grouped `<op>/cpu/<dtype>/<shape>`
//! with a `Throughput` each (STYLE.md §3 "Benchmarks"). Every op here passes `tests/ops.rs`.
//! Short measurements (10 samples, ~2 s) keep `cargo bench --bench ops` to about a minute on
//! two cores. May use: higgs_engine::{ops, tensor, config}, criterion, rand.

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use higgs_engine::config::ModelConfig;
use higgs_engine::ops::{self, AttnMeta};
use higgs_engine::tensor::{DType, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HIDDEN: usize = 3072;
const FFN: usize = 8192;
const N_HEADS: usize = 24;
const N_KV_HEADS: usize = 8;
const HEAD_DIM: usize = 128;

fn rand_vec(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
        .collect()
}

fn f32t(rng: &mut StdRng, shape: &[usize], scale: f32) -> Tensor {
    Tensor::from_f32(shape.to_vec(), rand_vec(rng, shape.iter().product(), scale)).unwrap()
}

fn weight(rng: &mut StdRng, shape: &[usize], dtype: DType) -> Tensor {
    let t = f32t(rng, shape, 0.02);
    let s = t.cpu().unwrap().to_dtype(dtype);
    Tensor::from_cpu(shape.to_vec(), s).unwrap()
}

fn group<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    g
}

/// Time `iters` calls of `f`; a CUDA twin would sync the device inside the timed region.
fn timed(iters: u64, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    t.elapsed()
}

fn matmul(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    // Decode: one row, bandwidth-bound on the weights.
    for dtype in [DType::F32, DType::BF16] {
        let x = f32t(&mut rng, &[1, HIDDEN], 1.0);
        // Packed as the engine loads its Linear weights on the CPU.
        let w = weight(&mut rng, &[FFN, HIDDEN], dtype).pack_for_cpu_matmul();
        let mut g = group(c, &format!("matmul/cpu/{}", dtype.name()));
        g.throughput(Throughput::Bytes(
            (FFN * HIDDEN * dtype.size_bytes()) as u64,
        ));
        g.bench_function(format!("n1_k{HIDDEN}_out{FFN}"), |b| {
            b.iter_custom(|it| timed(it, || drop(black_box(ops::matmul(&x, &w).unwrap()))))
        });
        g.finish();
    }
    // Prefill chunk: 64 rows, compute-bound; throughput in multiply-adds.
    let n = 64;
    let x = f32t(&mut rng, &[n, HIDDEN], 1.0);
    let w = weight(&mut rng, &[HIDDEN, HIDDEN], DType::BF16).pack_for_cpu_matmul();
    let mut g = group(c, "matmul/cpu/bf16");
    g.throughput(Throughput::Elements((n * HIDDEN * HIDDEN) as u64));
    g.bench_function(format!("n{n}_k{HIDDEN}_out{HIDDEN}"), |b| {
        b.iter_custom(|it| timed(it, || drop(black_box(ops::matmul(&x, &w).unwrap()))))
    });
    g.finish();
}

fn rmsnorm(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let rows = 64;
    let x = f32t(&mut rng, &[rows, HIDDEN], 1.0);
    let w = weight(&mut rng, &[HIDDEN], DType::BF16);
    let mut g = group(c, "rmsnorm/cpu/f32");
    g.throughput(Throughput::Bytes((2 * rows * HIDDEN * 4) as u64));
    g.bench_function(format!("{rows}x{HIDDEN}"), |b| {
        b.iter_custom(|it| timed(it, || drop(black_box(ops::rmsnorm(&x, &w, 1e-5).unwrap()))))
    });
    g.finish();
}

fn rope(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let n = 64;
    let inv_freq = ModelConfig::released().rope_inv_freq();
    let positions: Vec<i32> = (1000..1000 + n as i32).collect();
    let mut q = f32t(&mut rng, &[n, N_HEADS * HEAD_DIM], 1.0);
    let mut k = f32t(&mut rng, &[n, N_KV_HEADS * HEAD_DIM], 1.0);
    let mut g = group(c, "rope/cpu/f32");
    // Read and written once: q and k of every token.
    g.throughput(Throughput::Bytes(
        (2 * n * (N_HEADS + N_KV_HEADS) * HEAD_DIM * 4) as u64,
    ));
    g.bench_function(format!("n{n}_q{N_HEADS}_k{N_KV_HEADS}_d{HEAD_DIM}"), |b| {
        b.iter_custom(|it| {
            timed(it, || {
                ops::rope_inplace(&mut q, N_HEADS, HEAD_DIM, &positions, &inv_freq).unwrap();
                ops::rope_inplace(&mut k, N_KV_HEADS, HEAD_DIM, &positions, &inv_freq).unwrap();
            })
        })
    });
    g.finish();
}

fn attention(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(4);
    let (ctx, block_size) = (1024usize, 16usize);
    let kv_dim = N_KV_HEADS * HEAD_DIM;
    let num_blocks = ctx / block_size + 8;
    let num_slots = num_blocks * block_size;
    let k_cache = f32t(&mut rng, &[num_slots, kv_dim], 1.0);
    let v_cache = f32t(&mut rng, &[num_slots, kv_dim], 1.0);
    // A scattered block table, as a long-running pool would give.
    let max_blocks = ctx / block_size;
    let block_tables: Vec<i32> = (0..max_blocks as i32)
        .map(|b| (b * 7 + 3) % num_blocks as i32)
        .collect();
    let mut g = group(c, "attention/cpu/f32");
    for n in [1usize, 64] {
        let q = f32t(&mut rng, &[n, N_HEADS * HEAD_DIM], 1.0);
        let query_seq = vec![0u32; n];
        let query_pos: Vec<i32> = (ctx - n..ctx).map(|p| p as i32).collect();
        let meta = AttnMeta {
            block_size,
            block_tables: &block_tables,
            max_blocks,
            query_seq: &query_seq,
            query_pos: &query_pos,
        };
        // K and V rows each query reads (one pass per query head group).
        let keys: usize = query_pos.iter().map(|&p| p as usize + 1).sum();
        g.throughput(Throughput::Bytes((keys * 2 * kv_dim * 4) as u64));
        let name = format!(
            "{}_n{n}_ctx{ctx}_h{N_HEADS}_kv{N_KV_HEADS}_d{HEAD_DIM}_bs{block_size}",
            if n == 1 { "decode" } else { "prefill" }
        );
        g.bench_function(name, |b| {
            b.iter_custom(|it| {
                timed(it, || {
                    drop(black_box(
                        ops::paged_attention(
                            &q, &k_cache, &v_cache, N_HEADS, N_KV_HEADS, HEAD_DIM, &meta, None,
                        )
                        .unwrap(),
                    ))
                })
            })
        });
    }
    g.finish();
}

fn embed_audio(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(5);
    let (rows, n_cb, cols) = (1026usize, 8usize, 64usize);
    let table = weight(&mut rng, &[rows * n_cb, HIDDEN], DType::BF16);
    let codes: Vec<u32> = (0..cols * n_cb)
        .map(|_| rng.gen_range(0..rows as u32))
        .collect();
    let mut g = group(c, "embed_audio/cpu/bf16");
    g.throughput(Throughput::Elements((cols * n_cb * HIDDEN) as u64));
    g.bench_function(format!("cols{cols}_cb{n_cb}_rows{rows}_h{HIDDEN}"), |b| {
        b.iter_custom(|it| {
            timed(it, || {
                drop(black_box(
                    ops::embed_audio(&table, rows, n_cb, &codes, false).unwrap(),
                ))
            })
        })
    });
    g.finish();
}

criterion_group!(benches, matmul, rmsnorm, rope, attention, embed_audio);
criterion_main!(benches);
