//! The machine's peaks, measured on the spot on the backend being reported: memory bandwidth
//! from a large copy (bytes read + bytes written per second) and compute from a large GEMM
//! through `ops::matmul` (2·M·N·K per second). The roofline report divides by these.
//! May use: ops, tensor, backend; anyhow allowed.

use super::timing::time_per_call;
use crate::ops;
use crate::tensor::{DType, Device, Tensor};

#[derive(Clone, Debug, serde::Serialize)]
pub struct Peaks {
    /// Bytes read + written per second by the copy.
    pub bandwidth_bytes_per_s: f64,
    /// Bytes of the copied buffer.
    pub copy_bytes: usize,
    /// Floating-point operations per second of the GEMM.
    pub flops_per_s: f64,
    /// M = N = K of the GEMM.
    pub gemm_n: usize,
    pub gemm_activation_dtype: String,
    pub gemm_weight_dtype: String,
}

impl Peaks {
    /// The higher bandwidth and the higher compute of two measurements of the same sizes.
    pub fn max(self, o: &Peaks) -> Peaks {
        Peaks {
            bandwidth_bytes_per_s: self.bandwidth_bytes_per_s.max(o.bandwidth_bytes_per_s),
            flops_per_s: self.flops_per_s.max(o.flops_per_s),
            ..self
        }
    }
}

/// Measures both peaks: a copy of `copy_bytes` and an `n`×`n`×`n` GEMM with weights of
/// `weight_dtype` (activations in the device's activation dtype).
pub fn measure(
    device: &Device,
    weight_dtype: DType,
    copy_bytes: usize,
    n: usize,
    min_s: f64,
) -> anyhow::Result<Peaks> {
    let act = device.activation_dtype(weight_dtype);
    let bw = copy_bandwidth(device, act, copy_bytes, min_s)?;
    let x = Tensor::from_f32_on(vec![n, n], &ramp(n * n, 0.01), act, device)?;
    let w = Tensor::from_f32_on(vec![n, n], &ramp(n * n, 0.02), weight_dtype, device)?;
    let s = time_per_call(device, min_s, 1000, || {
        ops::matmul(&x, &w)?;
        Ok(())
    })?;
    Ok(Peaks {
        bandwidth_bytes_per_s: bw,
        copy_bytes,
        flops_per_s: 2.0 * (n as f64).powi(3) / s,
        gemm_n: n,
        gemm_activation_dtype: act.name().into(),
        gemm_weight_dtype: weight_dtype.name().into(),
    })
}

/// Small varied values (a GEMM of zeros could take shortcuts on some hardware).
fn ramp(len: usize, scale: f32) -> Vec<f32> {
    (0..len)
        .map(|i| scale * (((i * 7919) % 2003) as f32 / 1001.0 - 1.0))
        .collect()
}

/// Copy bandwidth (read + write). The CPU copies between two preallocated host buffers with
/// the backend's rayon pool (a fresh allocation per copy would time page faults, not memory);
/// CUDA times `ops::copy` (a device-to-device memcpy from the stream-ordered pool).
fn copy_bandwidth(device: &Device, act: DType, bytes: usize, min_s: f64) -> anyhow::Result<f64> {
    let elems = (bytes / act.size_bytes()).max(1);
    if device.is_cpu() {
        use rayon::prelude::*;
        let src = vec![1.0f32; bytes / 4];
        let mut dst = vec![0.0f32; bytes / 4];
        let chunk = (src.len() / (4 * rayon::current_num_threads()).max(1)).max(1 << 14);
        let s = time_per_call(device, min_s, 1000, || {
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
            Ok(())
        })?;
        std::hint::black_box(&dst);
        return Ok(2.0 * (src.len() * 4) as f64 / s);
    }
    let x = Tensor::zeros(vec![elems], act, device)?;
    let s = time_per_call(device, min_s, 1000, || {
        ops::copy(&x)?;
        Ok(())
    })?;
    Ok(2.0 * (elems * act.size_bytes()) as f64 / s)
}
