#![cfg(feature = "cuda")]
//! CUDA conformance of the GEMM-lowered codec convolutions (`backend::cuda::conv_gemm`:
//! im2col / col2im / bias kernels in `kernels/conv_gemm.cu` around f32 cuBLAS SGEMMs) against
//! the CPU twins `higgs_engine::codec::layers::{conv1d, conv_transpose1d, snake_inplace}` on
//! fresh seeded random inputs (STYLE §3). The seed is printed; `HIGGS_TEST_SEED` replays it.
//! Shapes: the released decoder (channels 1024→512→256→128→64→32, k7 with dilations 1/3/9,
//! k1, transposed k = 2s for s = 8/5/4/2/3), with and without Snake, accumulate on and off,
//! odd small sizes, column-chunked conv1d (a capped scratch), and one scratch reused across
//! differently sized calls. An ignored test times a released-size decoder pass against the
//! direct kernels of `conv1d.rs`. Tolerance:
//! max |got − want| / max |want| ≤ 1e-5, or 1e-4 where one output sums more than 1024 products;
//! NaN fails. Outputs carry a guard band of canaries that must come back intact. Without a
//! device every test prints "skipped: no CUDA device" and passes. spec: codec.md §3, §7.

#[macro_use]
mod common;
use common::guarded::*;
use common::rng;
use higgs_engine::backend::cuda::conv1d::{self, Conv1dArgs, ConvTranspose1dArgs};
use higgs_engine::backend::cuda::conv_gemm::{conv1d_gemm, conv_transpose1d_gemm, ConvScratch};
use higgs_engine::backend::cuda::elementwise::add_inplace;
use higgs_engine::backend::cuda::{CudaDevice, CudaStorage};
use higgs_engine::codec::layers;
use higgs_engine::tensor::DType;
use rand::rngs::StdRng;
use rand::Rng;

fn conv_args(c: &ConvCase) -> Conv1dArgs {
    let &(c_in, c_out, t_in, kernel, stride, padding, dilation) = c;
    Conv1dArgs {
        c_in,
        c_out,
        t_in,
        kernel,
        stride,
        padding,
        dilation,
    }
}

fn convt_args(c: &ConvTCase) -> ConvTranspose1dArgs {
    let &(c_in, c_out, t_in, kernel, stride, padding, output_padding) = c;
    ConvTranspose1dArgs {
        c_in,
        c_out,
        t_in,
        kernel,
        stride,
        padding,
        output_padding,
    }
}

// ---------------------------------------------------------------------------------------------

/// (c_in, c_out, t_in, kernel, stride, padding, dilation)
type ConvCase = (usize, usize, usize, usize, usize, usize, usize);

/// The decoder's stride-1 "same" convs: per width the k7 residual convs at d = 1, 3, 9 and the
/// k1 partner; plus fc_post2 (k1 1024 → 256), conv_in (k7 256 → 1024) and conv_out (32 → 1).
fn decoder_conv_cases() -> Vec<ConvCase> {
    let mut v: Vec<ConvCase> = vec![
        (1024, 256, 97, 1, 1, 0, 1),
        (256, 1024, 120, 7, 1, 3, 1),
        (32, 1, 2400, 7, 1, 3, 1),
    ];
    for (c, t) in [
        (1024, 90),
        (512, 200),
        (256, 300),
        (128, 400),
        (64, 500),
        (32, 600),
    ] {
        for d in [1, 3, 9] {
            v.push((c, c, t, 7, 1, 3 * d, d));
        }
        v.push((c, c, t, 1, 1, 0, 1));
    }
    // A long row (col matrix of 7 · 32 · 24000 floats).
    v.push((32, 32, 24_000, 7, 1, 27, 9));
    v
}

const CONV_ODD_CASES: &[ConvCase] = &[
    (1, 1, 1, 1, 1, 0, 1),
    (1, 1, 1, 7, 1, 3, 1),
    (1, 3, 2, 7, 1, 27, 9),
    (3, 5, 17, 7, 1, 3, 1),
    (5, 67, 70, 3, 2, 1, 3),
    (70, 3, 129, 5, 3, 4, 2),
    (2, 2, 5, 16, 8, 4, 1),
    (7, 9, 301, 1, 2, 0, 1),
    (6, 4, 33, 1, 1, 2, 1),
    (4, 1, 259, 1, 1, 0, 1),
    (3, 2, 5, 7, 1, 0, 1),    // empty output
    (2, 3, 100, 3, 13, 1, 1), // im2col window too wide for 4 columns per thread
];

#[allow(clippy::too_many_arguments)]
fn check_conv1d_case(
    dev: &CudaDevice,
    rng: &mut StdRng,
    scratch: &mut ConvScratch,
    c: &ConvCase,
    snake: bool,
    accumulate: bool,
    with_bias: bool,
) {
    let a = conv_args(c);
    let t_out = a.t_out();
    assert_eq!(
        t_out,
        layers::conv1d_out_len(a.t_in, a.kernel, a.stride, a.padding, a.dilation)
    );
    let case = format!("conv1d_gemm {a:?} snake={snake} acc={accumulate} bias={with_bias}");
    let x = rand_vec(rng, a.c_in * a.t_in, 1.0);
    let w = rand_vec(rng, a.c_out * a.c_in * a.kernel, 1.0);
    let bias = rand_vec(rng, a.c_out, 1.0);
    let alpha = rand_alpha(rng, a.c_in);
    let y0 = rand_vec(rng, a.c_out * t_out, 4.0);
    let xin = if snake {
        snake_host(&x, a.c_in, a.t_in, &alpha)
    } else {
        x.clone()
    };
    let mut want = layers::conv1d(
        &xin,
        a.c_in,
        a.t_in,
        &w,
        a.c_out,
        a.kernel,
        with_bias.then_some(&bias[..]),
        a.stride,
        a.padding,
        a.dilation,
        1,
    );
    if accumulate {
        want.iter_mut().zip(&y0).for_each(|(w, y)| *w += y);
    }
    let (gx, gw, gb, ga) = (up(dev, &x), up(dev, &w), up(dev, &bias), up(dev, &alpha));
    let mut gy = if accumulate {
        out_buf_with(dev, &y0)
    } else {
        out_buf(dev, a.c_out * t_out)
    };
    conv1d_gemm(
        dev,
        &gx,
        snake.then_some(&ga),
        &gw,
        with_bias.then_some(&gb),
        &mut gy,
        &a,
        accumulate,
        scratch,
    )
    .expect(&case);
    let got = down(&case, &gy, a.c_out * t_out);
    assert_close(&case, &got, &want, conv_tol(a.c_in * a.kernel));
    // x must be left as it was (Snake is applied on load, not in place).
    assert_eq!(
        gx.to_f32_vec().expect("download x"),
        x,
        "{case}: x modified"
    );
}

#[test]
fn conv1d_gemm_decoder_shapes() {
    let dev = dev_or_skip!();
    let mut rng = rng("conv1d_gemm_decoder");
    let mut scratch = ConvScratch::new();
    for c in decoder_conv_cases() {
        for (snake, accumulate) in [(false, false), (true, false), (true, true), (false, true)] {
            check_conv1d_case(&dev, &mut rng, &mut scratch, &c, snake, accumulate, true);
        }
    }
}

/// A tiny im2col cap: every conv1d is built and multiplied in 256-column chunks (the last one
/// narrower), each GEMM writing its column range of `y` (ld T); strided convs too.
#[test]
fn conv1d_gemm_chunked() {
    let dev = dev_or_skip!();
    let mut rng = rng("conv1d_gemm_chunked");
    let mut scratch = ConvScratch::with_col_limit(1);
    let mut cases = decoder_conv_cases();
    cases.extend_from_slice(CONV_ODD_CASES);
    cases.extend_from_slice(&[
        (5, 67, 700, 3, 2, 1, 3),
        (70, 3, 1290, 5, 3, 4, 2),
        (2, 2, 5000, 16, 8, 4, 1),
        (9, 4, 777, 1, 1, 0, 1),
    ]);
    for c in &cases {
        for (snake, accumulate, bias) in [
            (true, true, true),
            (false, false, true),
            (true, false, false),
        ] {
            check_conv1d_case(&dev, &mut rng, &mut scratch, c, snake, accumulate, bias);
        }
    }
}

#[test]
fn conv1d_gemm_odd_shapes_and_no_bias() {
    let dev = dev_or_skip!();
    let mut rng = rng("conv1d_gemm_odd");
    let mut scratch = ConvScratch::new();
    for c in CONV_ODD_CASES {
        for snake in [false, true] {
            for accumulate in [false, true] {
                for with_bias in [false, true] {
                    check_conv1d_case(
                        &dev,
                        &mut rng,
                        &mut scratch,
                        c,
                        snake,
                        accumulate,
                        with_bias,
                    );
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------

/// (c_in, c_out, t_in, kernel, stride, padding, output_padding)
type ConvTCase = (usize, usize, usize, usize, usize, usize, usize);

/// The five decoder up-sampling stages: kernel 2s, padding ceil(s/2), output_padding s mod 2.
fn dac_convt_cases() -> Vec<ConvTCase> {
    [
        (1024, 8, 60),
        (512, 5, 200),
        (256, 4, 300),
        (128, 2, 500),
        (64, 3, 700),
    ]
    .iter()
    .map(|&(c_in, s, t_in): &(usize, usize, usize)| {
        (c_in, c_in / 2, t_in, 2 * s, s, s.div_ceil(2), s % 2)
    })
    .collect()
}

const CONVT_ODD_CASES: &[ConvTCase] = &[
    (1, 1, 1, 2, 1, 0, 0),
    (1, 1, 1, 16, 8, 4, 0),
    (1, 1, 1, 6, 3, 2, 1),
    (3, 2, 5, 16, 8, 4, 0),
    (3, 5, 7, 5, 2, 1, 1),
    (4, 3, 9, 3, 3, 0, 0),
    (2, 70, 1, 7, 4, 2, 3),
    (65, 1, 11, 4, 1, 0, 0),
    (70, 67, 13, 10, 5, 3, 1),
    (5, 3, 257, 2, 2, 0, 1),
];

fn check_convt_case(
    dev: &CudaDevice,
    rng: &mut StdRng,
    scratch: &mut ConvScratch,
    c: &ConvTCase,
    snake: bool,
    with_bias: bool,
) {
    let a = convt_args(c);
    let t_out = a.t_out();
    assert_eq!(
        t_out,
        layers::conv_transpose1d_out_len(a.t_in, a.kernel, a.stride, a.padding, a.output_padding)
    );
    let case = format!("conv_transpose1d_gemm {a:?} snake={snake} bias={with_bias}");
    let x = rand_vec(rng, a.c_in * a.t_in, 1.0);
    let w = rand_vec(rng, a.c_in * a.c_out * a.kernel, 1.0);
    let bias = rand_vec(rng, a.c_out, 1.0);
    let alpha = rand_alpha(rng, a.c_in);
    let xin = if snake {
        snake_host(&x, a.c_in, a.t_in, &alpha)
    } else {
        x.clone()
    };
    let want = layers::conv_transpose1d(
        &xin,
        a.c_in,
        a.t_in,
        &w,
        a.c_out,
        a.kernel,
        with_bias.then_some(&bias[..]),
        a.stride,
        a.padding,
        a.output_padding,
    );
    let (gx, gw, gb, ga) = (up(dev, &x), up(dev, &w), up(dev, &bias), up(dev, &alpha));
    let mut gy = out_buf(dev, a.c_out * t_out);
    conv_transpose1d_gemm(
        dev,
        &gx,
        snake.then_some(&ga),
        &gw,
        with_bias.then_some(&gb),
        &mut gy,
        &a,
        scratch,
    )
    .expect(&case);
    let got = down(&case, &gy, a.c_out * t_out);
    // Each output sums c_in · ceil(K/s) products.
    assert_close(
        &case,
        &got,
        &want,
        conv_tol(a.c_in * a.kernel.div_ceil(a.stride)),
    );
    assert_eq!(
        gx.to_f32_vec().expect("download x"),
        x,
        "{case}: x modified"
    );
}

#[test]
fn conv_transpose1d_gemm_decoder_and_odd_shapes() {
    let dev = dev_or_skip!();
    let mut rng = rng("conv_transpose1d_gemm");
    let mut scratch = ConvScratch::new();
    let mut cases = dac_convt_cases();
    cases.extend_from_slice(CONVT_ODD_CASES);
    for c in &cases {
        for (snake, with_bias) in [(true, true), (false, true), (true, false), (false, false)] {
            check_convt_case(&dev, &mut rng, &mut scratch, c, snake, with_bias);
        }
    }
}

/// One scratch across big → small → big calls of both families: it never shrinks, and a small
/// call after a big one reads and writes only its own extent.
#[test]
fn scratch_reused_across_sizes() {
    let dev = dev_or_skip!();
    let mut rng = rng("conv_gemm_scratch");
    let mut scratch = ConvScratch::new();
    assert_eq!(scratch.bytes(), 0);
    let mut last = 0;
    let seq: [(bool, usize); 8] = [
        (true, 0),
        (false, 0),
        (true, 1),
        (false, 1),
        (true, 2),
        (false, 2),
        (false, 0),
        (true, 0),
    ];
    let convs: [ConvCase; 3] = [
        (128, 128, 900, 7, 1, 9, 3),
        (3, 5, 17, 7, 1, 3, 1),
        (256, 64, 1000, 7, 1, 27, 9),
    ];
    let convts: [ConvTCase; 3] = [
        (256, 128, 150, 8, 4, 2, 0),
        (2, 3, 4, 6, 3, 2, 1),
        (512, 256, 300, 10, 5, 3, 1),
    ];
    for (is_conv, i) in seq {
        if is_conv {
            check_conv1d_case(
                &dev,
                &mut rng,
                &mut scratch,
                &convs[i],
                true,
                i % 2 == 0,
                true,
            );
        } else {
            check_convt_case(&dev, &mut rng, &mut scratch, &convts[i], true, true);
        }
        assert!(scratch.bytes() >= last, "scratch shrank");
        last = scratch.bytes();
    }
    // Pre-reserving covers a call: it allocates nothing more.
    let big = conv_args(&(64, 64, 5000, 7, 1, 3, 1));
    scratch.reserve_conv1d(&dev, &big, true).expect("reserve");
    let reserved = scratch.bytes();
    assert!(reserved >= 64 * 7 * 5000 * 4);
    check_conv1d_case(
        &dev,
        &mut rng,
        &mut scratch,
        &(64, 64, 5000, 7, 1, 3, 1),
        true,
        false,
        true,
    );
    assert_eq!(scratch.bytes(), reserved);
}

#[test]
fn rejects_bad_buffers() {
    let dev = dev_or_skip!();
    let mut scratch = ConvScratch::new();
    let a = conv_args(&(4, 3, 10, 7, 1, 3, 1));
    let z = |n: usize| CudaStorage::zeros(&dev, n, DType::F32).expect("zeros");
    let (x, w, b, al) = (z(40), z(3 * 4 * 7), z(3), z(4));
    let mut y = z(30);
    conv1d_gemm(
        &dev,
        &x,
        Some(&al),
        &w,
        Some(&b),
        &mut y,
        &a,
        false,
        &mut scratch,
    )
    .expect("valid call");
    let mut short_y = z(29);
    assert!(conv1d_gemm(
        &dev,
        &x,
        None,
        &w,
        None,
        &mut short_y,
        &a,
        false,
        &mut scratch
    )
    .is_err());
    assert!(conv1d_gemm(
        &dev,
        &z(39),
        None,
        &w,
        None,
        &mut y,
        &a,
        false,
        &mut scratch
    )
    .is_err());
    assert!(conv1d_gemm(
        &dev,
        &x,
        None,
        &z(83),
        None,
        &mut y,
        &a,
        false,
        &mut scratch
    )
    .is_err());
    assert!(conv1d_gemm(
        &dev,
        &x,
        Some(&z(3)),
        &w,
        None,
        &mut y,
        &a,
        false,
        &mut scratch
    )
    .is_err());
    assert!(conv1d_gemm(
        &dev,
        &x,
        None,
        &w,
        Some(&z(2)),
        &mut y,
        &a,
        true,
        &mut scratch
    )
    .is_err());
    let xb = CudaStorage::zeros(&dev, 40, DType::BF16).expect("zeros");
    assert!(conv1d_gemm(&dev, &xb, None, &w, None, &mut y, &a, false, &mut scratch).is_err());
    let t = convt_args(&(4, 3, 10, 8, 4, 2, 0));
    let wt = z(4 * 3 * 8);
    let mut yt = z(3 * 40);
    conv_transpose1d_gemm(
        &dev,
        &x,
        Some(&al),
        &wt,
        Some(&b),
        &mut yt,
        &t,
        &mut scratch,
    )
    .expect("valid convT");
    let mut short_yt = z(119);
    assert!(
        conv_transpose1d_gemm(&dev, &x, None, &wt, None, &mut short_yt, &t, &mut scratch).is_err()
    );
    let bad_op = convt_args(&(4, 3, 10, 8, 4, 2, 4));
    assert!(
        conv_transpose1d_gemm(&dev, &x, None, &wt, None, &mut yt, &bad_op, &mut scratch).is_err()
    );
}

// ---------------------------------------------------------------------------------------------

/// Weights of one decoder-shaped conv (scaled so activations stay O(1) through the stack).
struct Layer {
    w: CudaStorage,
    b: CudaStorage,
    alpha: CudaStorage,
}

fn layer(
    dev: &CudaDevice,
    rng: &mut StdRng,
    w_len: usize,
    fan_in: usize,
    c_out: usize,
    c_in: usize,
) -> Layer {
    let s = (3.0 / fan_in as f32).sqrt();
    let alpha: Vec<f32> = (0..c_in).map(|_| rng.gen_range(0.3f32..=2.0)).collect();
    Layer {
        w: up(dev, &rand_vec(rng, w_len, s)),
        b: up(dev, &rand_vec(rng, c_out, 0.1)),
        alpha: up(dev, &alpha),
    }
}

/// Times a released-size decoder pass (fc_post2, conv_in, five up-blocks of Snake + ConvT and
/// three residual units, Snake + conv_out) on `frames` frames with the direct kernels of
/// `conv1d.rs` and with the GEMM path, and compares the two waveforms. Run with
/// `cargo test --release --features cuda --test conformance_conv_gemm_cuda -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn bench_decoder_pass_direct_vs_gemm() {
    let dev = dev_or_skip!();
    let mut rng = rng("conv_gemm_bench");
    let frames: usize = std::env::var("HIGGS_BENCH_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(250);
    let chans = [1024usize, 512, 256, 128, 64, 32];
    let strides = [8usize, 5, 4, 2, 3];
    let fc = layer(&dev, &mut rng, 256 * 1024, 1024, 256, 1024);
    let conv_in = layer(&dev, &mut rng, 1024 * 256 * 7, 256 * 7, 1024, 256);
    let mut blocks = Vec::new();
    for (i, &s) in strides.iter().enumerate() {
        let (ci, co) = (chans[i], chans[i + 1]);
        let upl = layer(&dev, &mut rng, ci * co * 2 * s, ci * 2, co, ci);
        let units: Vec<(Layer, Layer)> = (0..3)
            .map(|_| {
                (
                    layer(&dev, &mut rng, co * co * 7, co * 7, co, co),
                    layer(&dev, &mut rng, co * co, co, co, co),
                )
            })
            .collect();
        blocks.push((upl, units));
    }
    let conv_out = layer(&dev, &mut rng, 32 * 7, 32 * 7, 1, 32);
    let q = up(&dev, &rand_vec(&mut rng, 1024 * frames, 1.0));
    // Preallocated activations: z, x0 and per block (y, h).
    let z = |n: usize| CudaStorage::zeros(&dev, n, DType::F32).expect("zeros");
    let mut lat = z(256 * frames);
    let mut x0 = z(1024 * frames);
    let mut lens = vec![frames];
    for s in strides {
        lens.push(lens.last().unwrap() * s);
    }
    let mut ys: Vec<CudaStorage> = (0..5).map(|i| z(chans[i + 1] * lens[i + 1])).collect();
    let mut hs: Vec<CudaStorage> = (0..5).map(|i| z(chans[i + 1] * lens[i + 1])).collect();
    let t_wav = lens[5];
    let mut wav = z(t_wav);
    let same = |c_in: usize, c_out: usize, t: usize, k: usize, d: usize| Conv1dArgs {
        c_in,
        c_out,
        t_in: t,
        kernel: k,
        stride: 1,
        padding: (k - 1) / 2 * d,
        dilation: d,
    };
    // Returns the cumulative ms (after each block when `per_block`, then at the end) and, when
    // `per_block`, the waveform.
    let mut run = |gemm: bool, per_block: bool, sc: &mut ConvScratch| -> (Vec<f64>, Vec<f32>) {
        let mut marks = Vec::new();
        let t0 = std::time::Instant::now();
        let a = same(1024, 256, frames, 1, 1);
        if gemm {
            conv1d_gemm(&dev, &q, None, &fc.w, Some(&fc.b), &mut lat, &a, false, sc).unwrap();
        } else {
            conv1d::conv1d(&dev, &q, None, &fc.w, Some(&fc.b), &mut lat, &a).unwrap();
        }
        let a = same(256, 1024, frames, 7, 1);
        if gemm {
            conv1d_gemm(
                &dev,
                &lat,
                None,
                &conv_in.w,
                Some(&conv_in.b),
                &mut x0,
                &a,
                false,
                sc,
            )
            .unwrap();
        } else {
            conv1d::conv1d(&dev, &lat, None, &conv_in.w, Some(&conv_in.b), &mut x0, &a).unwrap();
        }
        for (i, (upl, units)) in blocks.iter().enumerate() {
            let (ci, co, s) = (chans[i], chans[i + 1], strides[i]);
            let (t_in, t) = (lens[i], lens[i + 1]);
            let ta = ConvTranspose1dArgs {
                c_in: ci,
                c_out: co,
                t_in,
                kernel: 2 * s,
                stride: s,
                padding: s.div_ceil(2),
                output_padding: s % 2,
            };
            let (prev, rest) = ys.split_at_mut(i);
            let x = if i == 0 { &x0 } else { &prev[i - 1] };
            let y = &mut rest[0];
            let h = &mut hs[i];
            if gemm {
                conv_transpose1d_gemm(&dev, x, Some(&upl.alpha), &upl.w, Some(&upl.b), y, &ta, sc)
                    .unwrap();
            } else {
                conv1d::conv_transpose1d(&dev, x, Some(&upl.alpha), &upl.w, Some(&upl.b), y, &ta)
                    .unwrap();
            }
            for (u, d) in units.iter().zip([1usize, 3, 9]) {
                let (c7, c1) = u;
                let a7 = same(co, co, t, 7, d);
                let a1 = same(co, co, t, 1, 1);
                if gemm {
                    conv1d_gemm(
                        &dev,
                        y,
                        Some(&c7.alpha),
                        &c7.w,
                        Some(&c7.b),
                        h,
                        &a7,
                        false,
                        sc,
                    )
                    .unwrap();
                    conv1d_gemm(
                        &dev,
                        h,
                        Some(&c1.alpha),
                        &c1.w,
                        Some(&c1.b),
                        y,
                        &a1,
                        true,
                        sc,
                    )
                    .unwrap();
                } else {
                    // The current decoder: two convs into fresh buffers and an add.
                    let mut h2 = z(co * t);
                    conv1d::conv1d(&dev, y, Some(&c7.alpha), &c7.w, Some(&c7.b), h, &a7).unwrap();
                    conv1d::conv1d(&dev, h, Some(&c1.alpha), &c1.w, Some(&c1.b), &mut h2, &a1)
                        .unwrap();
                    add_inplace(&dev, y, &h2, co * t).unwrap();
                }
            }
            if per_block {
                dev.synchronize().unwrap();
                marks.push(t0.elapsed().as_secs_f64() * 1e3);
            }
        }
        let a = same(32, 1, t_wav, 7, 1);
        if gemm {
            conv1d_gemm(
                &dev,
                &ys[4],
                Some(&conv_out.alpha),
                &conv_out.w,
                Some(&conv_out.b),
                &mut wav,
                &a,
                false,
                sc,
            )
            .unwrap();
        } else {
            conv1d::conv1d(
                &dev,
                &ys[4],
                Some(&conv_out.alpha),
                &conv_out.w,
                Some(&conv_out.b),
                &mut wav,
                &a,
            )
            .unwrap();
        }
        dev.synchronize().unwrap();
        marks.push(t0.elapsed().as_secs_f64() * 1e3);
        let out = if per_block {
            wav.to_f32_vec().unwrap()[..t_wav].to_vec()
        } else {
            Vec::new()
        };
        (marks, out)
    };

    let mut outs = Vec::new();
    // (label, gemm path, im2col cap in floats)
    let configs: [(&str, bool, usize); 6] = [
        ("direct", false, 0),
        ("gemm, unchunked", true, usize::MAX),
        ("gemm, default (unchunked)", true, 0),
        ("gemm, 8M-float chunks", true, 8 << 20),
        ("gemm, 4M-float chunks", true, 4 << 20),
        ("gemm, 16M-float chunks", true, 16 << 20),
    ];
    for (label, gemm, limit) in configs {
        let mut sc = if limit == 0 {
            ConvScratch::new()
        } else {
            ConvScratch::with_col_limit(limit)
        };
        for _ in 0..2 {
            run(gemm, false, &mut sc);
        }
        let iters = 10;
        let mut best = f64::MAX;
        let mut total = 0.0;
        for _ in 0..iters {
            let ms = *run(gemm, false, &mut sc).0.last().unwrap();
            best = best.min(ms);
            total += ms;
        }
        let (marks, out) = run(gemm, true, &mut sc);
        println!(
            "{label}, {frames} frames -> {t_wav} samples: mean {:.3} ms, best {:.3} ms; \
             scratch {:.1} MiB; cumulative ms after each block (synchronised) {:?}",
            total / iters as f64,
            best,
            sc.bytes() as f64 / (1 << 20) as f64,
            marks
                .iter()
                .map(|m| (m * 1000.0).round() / 1000.0)
                .collect::<Vec<_>>()
        );
        outs.push(out);
    }
    for (i, out) in outs.iter().enumerate().skip(1) {
        let (err, at) = rel_err(out, &outs[0]);
        println!(
            "{} vs direct waveform: max rel diff {err:.3e} at {at}",
            configs[i].0
        );
        assert!(out.iter().all(|v| v.is_finite()));
        assert!(
            err <= 5e-4,
            "gemm and direct decoder passes differ by {err}"
        );
    }
}
