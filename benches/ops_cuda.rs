//! criterion benchmarks of the CUDA ops at the released Higgs Audio v2 dims (hidden 3072, FFN
//! 8192, heads 24/8, head_dim 128), bf16, grouped `<op>/cuda/bf16/<shape>`: `iter_custom` with a
//! device sync before the clock stops, `Throughput::Bytes` of what each call must move. Every
//! op here passes `tests/conformance_cuda.rs`. Built only with `--features cuda`; on a machine
//! without a CUDA device it prints "skipped: no CUDA device" and measures nothing.
//! May use: higgs_engine::{ops, tensor}, criterion.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, Throughput};
use higgs_engine::ops::{self, AttnMeta};
use higgs_engine::tensor::{DType, Device, Tensor};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HIDDEN: usize = 3072;
const FFN: usize = 8192;
const N_HEADS: usize = 24;
const N_KV_HEADS: usize = 8;
const HEAD_DIM: usize = 128;
const DT: DType = DType::BF16;

fn t(dev: &Device, shape: &[usize], scale: f32) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| scale * ((i % 101) as f32 / 50.0 - 1.0))
        .collect();
    Tensor::from_f32_on(shape.to_vec(), &v, DT, dev).unwrap()
}

fn group<'a>(c: &'a mut Criterion, name: &str, bytes: usize) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Bytes(bytes as u64));
    g
}

/// `iters` calls of `f`, then a device sync inside the timed region.
fn timed(dev: &Device, iters: u64, mut f: impl FnMut()) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    dev.synchronize().unwrap();
    t.elapsed()
}

fn bench_all(c: &mut Criterion, dev: &Device) {
    let e = DT.size_bytes();
    for n in [1usize, 64, 256] {
        let x = t(dev, &[n, HIDDEN], 1.0);
        let w = t(dev, &[FFN, HIDDEN], 0.02);
        let mut g = group(
            c,
            "matmul/cuda/bf16",
            (FFN * HIDDEN + n * (HIDDEN + FFN)) * e,
        );
        g.bench_function(format!("n{n}_k{HIDDEN}_out{FFN}"), |b| {
            b.iter_custom(|it| timed(dev, it, || drop(black_box(ops::matmul(&x, &w).unwrap()))))
        });
        g.finish();
        let nw = t(dev, &[HIDDEN], 1.0);
        let mut g = group(c, "rmsnorm/cuda/bf16", (2 * n * HIDDEN + HIDDEN) * e);
        g.bench_function(format!("n{n}_h{HIDDEN}"), |b| {
            b.iter_custom(|it| {
                timed(dev, it, || {
                    drop(black_box(ops::rmsnorm(&x, &nw, 1e-5).unwrap()))
                })
            })
        });
        g.finish();
        let gate = t(dev, &[n, FFN], 1.0);
        let up = t(dev, &[n, FFN], 1.0);
        let mut g = group(c, "silu_mul/cuda/bf16", 3 * n * FFN * e);
        g.bench_function(format!("n{n}_f{FFN}"), |b| {
            b.iter_custom(|it| {
                timed(dev, it, || {
                    drop(black_box(ops::silu_mul(&gate, &up).unwrap()))
                })
            })
        });
        g.finish();
        let mask: Vec<u32> = (0..n as u32).map(|i| i % 2).collect();
        let y = t(dev, &[n, HIDDEN], 0.5);
        let mut g = group(c, "dual_ffn_select/cuda/bf16", 3 * n * HIDDEN * e);
        g.bench_function(format!("n{n}_h{HIDDEN}"), |b| {
            b.iter_custom(|it| {
                timed(dev, it, || {
                    drop(black_box(ops::select_rows(&mask, &x, &y).unwrap()))
                })
            })
        });
        g.finish();
        let half: Vec<u32> = (0..n as u32).step_by(2).collect();
        let mut g = group(c, "dual_ffn_gather/cuda/bf16", 2 * half.len() * HIDDEN * e);
        g.bench_function(format!("n{n}_h{HIDDEN}"), |b| {
            b.iter_custom(|it| {
                timed(dev, it, || {
                    drop(black_box(ops::gather_rows(&x, &half).unwrap()))
                })
            })
        });
        g.finish();
        // Decode attention: n sequences, 512 cached keys each.
        let ctx = 512;
        let block = 16;
        let max_blocks = ctx / block;
        let kv_dim = N_KV_HEADS * HEAD_DIM;
        let kc = t(dev, &[n * ctx, kv_dim], 0.5);
        let vc = t(dev, &[n * ctx, kv_dim], 0.5);
        let q = t(dev, &[n, N_HEADS * HEAD_DIM], 0.5);
        let tables: Vec<i32> = (0..(n * max_blocks) as i32).collect();
        let seqs: Vec<u32> = (0..n as u32).collect();
        let pos = vec![ctx as i32 - 1; n];
        let meta = AttnMeta {
            block_size: block,
            block_tables: &tables,
            max_blocks,
            query_seq: &seqs,
            query_pos: &pos,
        };
        let mut g = group(c, "attention/cuda/bf16", 2 * n * ctx * kv_dim * e);
        g.bench_function(format!("decode_n{n}_ctx{ctx}"), |b| {
            b.iter_custom(|it| {
                timed(dev, it, || {
                    drop(black_box(
                        ops::paged_attention(
                            &q, &kc, &vc, N_HEADS, N_KV_HEADS, HEAD_DIM, &meta, None,
                        )
                        .unwrap(),
                    ))
                })
            })
        });
        g.finish();
    }
}

fn main() {
    let dev = match Device::cuda(0) {
        Ok(d) => d,
        Err(e) => {
            println!("skipped: no CUDA device ({e})");
            return;
        }
    };
    let mut c = Criterion::default().configure_from_args();
    bench_all(&mut c, &dev);
    c.final_summary();
}
