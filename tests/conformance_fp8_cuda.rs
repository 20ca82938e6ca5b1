#![cfg(feature = "cuda")]
//! CUDA conformance of the FP8 W8A16 projection (`kernels/fp8_gemv.cu`): every path
//! `fp8_gemv::choose_fp8_path` can return (each GEMV tile, and dequantize + cuBLAS) against
//! the CPU FP8 matmul (`ops::matmul` on an FP8 weight, which dequantizes into the f32 GEMM),
//! on fresh seeded inputs rounded through the activation dtype so both sides see the same
//! values. Tolerance: max |got − want| / max |want| ≤ 1e-2 for bf16 activations (bf16 output
//! rounding), 1e-5 for f32. Outputs carry a guard band of canaries. Also the `Tensor` route:
//! upload of an FP8 weight, `ops::matmul` on the device, and the download staying FP8.
//! Without a device every test prints "skipped: no CUDA device" and passes.

#[macro_use]
mod common;
use common::rng;
use half::bf16;
use higgs_engine::backend::cuda::fp8_gemv::{self, Fp8Path, GEMV_MAX_ROWS};
use higgs_engine::backend::cuda::gemm::MatmulArgs;
use higgs_engine::backend::cuda::{CudaDevice, CudaStorage};
use higgs_engine::ops;
use higgs_engine::quant::weight::Fp8Weight;
use higgs_engine::tensor::{DType, Device, Tensor};
use rand::Rng;

const GUARD: usize = 67;
const CANARY: f32 = -12288.0;

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

fn assert_close(case: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{case}: length");
    let denom = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-20);
    let (mut worst, mut at) = (0f32, 0);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(g.is_finite(), "{case}: {g} at {i} (want {w})");
        let e = (g - w).abs() / denom;
        if e > worst {
            (worst, at) = (e, i);
        }
    }
    assert!(
        worst <= tol,
        "{case}: max rel err {worst:.3e} > {tol:.0e} at {at}: got {}, want {}",
        got[at],
        want[at]
    );
}

/// Every path for `n` rows: the chosen one, every wider GEMV tile, and dequantize + cuBLAS.
fn paths(n: usize) -> Vec<Fp8Path> {
    let mut v = vec![fp8_gemv::choose_fp8_path(n), Fp8Path::Dequant];
    for tile in [1, 2, 4, 8, 16] {
        if n <= tile && !v.contains(&Fp8Path::Gemv { tile }) {
            v.push(Fp8Path::Gemv { tile });
        }
    }
    v
}

fn cpu_reference(x: &[f32], w: &Fp8Weight, n: usize) -> Vec<f32> {
    let (out, k) = w.dims();
    let wt = Tensor::from_f32(vec![out, k], w.dequantize()).unwrap();
    let xt = Tensor::from_f32(vec![n, k], x.to_vec()).unwrap();
    ops::matmul(&xt, &wt).unwrap().to_f32_vec().unwrap()
}

#[test]
fn fp8_matmul_every_path() {
    let dev = dev_or_skip!();
    let mut rng = rng("fp8_gemv");
    for &(n, k, out) in &[
        (1, 3072, 3072),
        (1, 3072, 1026),
        (4, 3072, 8192),
        (1, 8192, 3072),
        (16, 3072, 512),
        (17, 3072, 384),
        (64, 1000, 130),
        (5, 33, 7),
        (3, 16, 5),
        (1, 1, 1),
        (9, 520, 37),
    ] {
        let w: Vec<f32> = (0..out * k)
            .map(|i| rng.gen_range(-1.0f32..1.0) * (1.0 + (i / k % 3) as f32))
            .collect();
        let q = Fp8Weight::quantize_f32(&w, out, k).unwrap();
        let wd = CudaStorage::from_fp8(&dev, &q).unwrap();
        for dtype in [DType::BF16, DType::F32] {
            let x: Vec<f32> = (0..n * k)
                .map(|_| round(rng.gen_range(-1.0f32..1.0), dtype))
                .collect();
            let want = cpu_reference(&x, &q, n);
            let xd = CudaStorage::from_f32(&dev, &x, dtype).unwrap();
            for path in paths(n) {
                let case = format!("fp8 matmul n {n} k {k} out {out} {} {path:?}", dtype.name());
                let mut y =
                    CudaStorage::from_f32(&dev, &vec![CANARY; n * out + GUARD], dtype).unwrap();
                let args = MatmulArgs { n, k, out };
                fp8_gemv::matmul_fp8_path(&dev, &xd, &wd, &mut y, &args, path).unwrap();
                let v = y.to_f32_vec().unwrap();
                assert!(
                    v[n * out..].iter().all(|&g| g == CANARY),
                    "{case}: guard band overwritten"
                );
                assert_close(&case, &v[..n * out], &want, tol(dtype));
            }
        }
    }
}

#[test]
fn gemv_refuses_more_rows_than_its_tile() {
    let dev: CudaDevice = dev_or_skip!();
    let (n, k, out) = (GEMV_MAX_ROWS + 1, 32, 4);
    let q = Fp8Weight::quantize_f32(&vec![0.5; out * k], out, k).unwrap();
    let wd = CudaStorage::from_fp8(&dev, &q).unwrap();
    let xd = CudaStorage::from_f32(&dev, &vec![1.0; n * k], DType::BF16).unwrap();
    let mut y = CudaStorage::from_f32(&dev, &vec![0.0; n * out], DType::BF16).unwrap();
    let args = MatmulArgs { n, k, out };
    let e = fp8_gemv::matmul_fp8_path(&dev, &xd, &wd, &mut y, &args, Fp8Path::Gemv { tile: 16 });
    assert!(e.is_err());
}

/// The route the model takes: an FP8 `Tensor` uploaded, `ops::matmul` on the device (bf16
/// activations), and a download that stays FP8 with the same codes.
#[test]
fn fp8_tensor_on_device() {
    let _probe = dev_or_skip!();
    let device = Device::cuda(0).unwrap();
    let mut rng = rng("fp8_tensor");
    let (k, out) = (3072, 520);
    let w: Vec<f32> = (0..out * k)
        .map(|_| rng.gen_range(-0.05f32..0.05))
        .collect();
    let wq = Tensor::from_f32(vec![out, k], w)
        .unwrap()
        .quantize_fp8()
        .unwrap();
    let wd = wq.to_device(&device, DType::BF16).unwrap();
    assert_eq!(wd.dtype(), DType::F8E4M3);
    for n in [1, 3, 40] {
        let x: Vec<f32> = (0..n * k)
            .map(|_| round(rng.gen_range(-1.0f32..1.0), DType::BF16))
            .collect();
        let want = ops::matmul(&Tensor::from_f32(vec![n, k], x.clone()).unwrap(), &wq)
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let xd = Tensor::from_f32_on(vec![n, k], &x, DType::BF16, &device).unwrap();
        let got = ops::matmul(&xd, &wd).unwrap().to_f32_vec().unwrap();
        assert_close(&format!("tensor fp8 matmul n {n}"), &got, &want, 1e-2);
    }
    let back = wd.to_device(&Device::Cpu, DType::F32).unwrap();
    assert_eq!(back.dtype(), DType::F8E4M3);
    assert_eq!(back.to_f32_vec().unwrap(), wq.to_f32_vec().unwrap());
}
