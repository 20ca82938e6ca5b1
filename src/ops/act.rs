//! SwiGLU activation.
use super::check_shape;
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

/// `silu(gate) ⊙ up`, same shapes.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    check_shape("silu_mul", "up", up, gate.shape())?;
    match gate.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; gate.elem_count()];
            cpu::act::silu_mul(gate.as_f32()?, up.as_f32()?, &mut y);
            Tensor::from_f32(gate.shape().to_vec(), y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(g) => {
            use super::cuda_arm::{on, output_uninit};
            use crate::backend::cuda::act::{self, SiluMulArgs};
            let dev = &g.dev;
            let (n_rows, cols) = gate.dims2();
            // SAFETY: the kernel writes every element of every row.
            let mut y = unsafe { output_uninit(dev, gate.shape().to_vec(), g.dtype())? };
            let u = on("silu_mul", "up", dev, up)?;
            act::silu_mul(
                dev,
                &g.data,
                u,
                super::cuda_arm::on_mut("silu_mul", "out", dev, &mut y)?,
                &SiluMulArgs { n_rows, cols },
            )?;
            Ok(y)
        }
    }
}

/// SwiGLU of one `[n, 2·F]` gate|up GEMM output (gate columns first, the layout of
/// [`crate::model::FfnWeights::gate_up`]) → `[n, F]`; same values as [`silu_mul`] of the two
/// halves.
pub fn silu_mul_fused(gate_up: &Tensor) -> Result<Tensor> {
    let two_f = gate_up.shape().last().copied().unwrap_or(0);
    if two_f % 2 != 0 {
        return Err(crate::error::Error::Shape {
            op: "silu_mul_fused",
            arg: "gate_up",
            expected: "[n, 2·F] (an even width)".into(),
            got: format!("{:?}", gate_up.shape()),
        });
    }
    let n = super::check_rank2("silu_mul_fused", "gate_up", gate_up, two_f)?;
    let cols = two_f / 2;
    match gate_up.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) | Storage::CpuFp8(_) => {
            let mut y = vec![0f32; n * cols];
            cpu::act::silu_mul_fused(gate_up.as_f32()?, cols, &mut y);
            Tensor::from_f32(vec![n, cols], y)
        }
        #[cfg(feature = "cuda")]
        Storage::Cuda(g) => {
            use super::cuda_arm::{on_mut, output_uninit};
            use crate::backend::cuda::act::{self, SiluMulArgs};
            let dev = &g.dev;
            // SAFETY: the kernel writes every element of every row.
            let mut y = unsafe { output_uninit(dev, vec![n, cols], g.dtype())? };
            if n == 0 {
                return Ok(y);
            }
            act::silu_mul_fused(
                dev,
                &g.data,
                on_mut("silu_mul_fused", "out", dev, &mut y)?,
                &SiluMulArgs { n_rows: n, cols },
            )?;
            Ok(y)
        }
    }
}
