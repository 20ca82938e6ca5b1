//! Codec decode benchmarks at the released sizes (decoder width 1024, D 256, 8 x 1024 x 64
//! codebooks) with random weights: the RVQ front end alone, a full decode, and a streaming
//! chunk (5 new frames decoded with 10 frames of context each side). Groups are named
//! `<op>/<device>/<dtype>/<shape>`; throughput counts output samples. spec: codec.md §10.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use higgs_engine::codec::weights::random_decode_weights;
use higgs_engine::codec::{AudioTokenizer, CodecConfig};
use std::time::Duration;

fn codes(n_q: usize, t: usize, bins: usize) -> Vec<Vec<u32>> {
    (0..n_q)
        .map(|q| {
            (0..t)
                .map(|i| ((i * 7919 + q * 104729) % bins) as u32)
                .collect()
        })
        .collect()
}

fn bench_codec(c: &mut Criterion) {
    let cfg = CodecConfig::released();
    let tok = AudioTokenizer::from_weights(cfg.clone(), random_decode_weights(&cfg, 0))
        .expect("random weights have the released shapes");
    let hop = tok.hop_length();

    let mut g = c.benchmark_group("codec");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(5));

    let t = 25;
    let cs = codes(cfg.n_q, t, cfg.bins);
    g.throughput(Throughput::Elements((t * hop) as u64));
    g.bench_function(format!("rvq_decode/cpu/f32/T{t}"), |b| {
        b.iter(|| tok.rvq().decode(&cs).expect("valid codes"))
    });

    for t in [5usize, 25] {
        let cs = codes(cfg.n_q, t, cfg.bins);
        g.throughput(Throughput::Elements((t * hop) as u64));
        g.bench_function(format!("decode/cpu/f32/T{t}"), |b| {
            b.iter(|| tok.decode(&cs).expect("valid codes"))
        });
    }

    // One steady-state streaming chunk: frames [10, 15) of 25, window [0, 25).
    let cs = codes(cfg.n_q, 25, cfg.bins);
    g.throughput(Throughput::Elements((5 * hop) as u64));
    g.bench_function("stream_chunk/cpu/f32/C5", |b| {
        b.iter(|| tok.decode_frames(&cs, 10, 15).expect("valid range"))
    });
    g.finish();
}

criterion_group!(benches, bench_codec);
criterion_main!(benches);
