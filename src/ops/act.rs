//! SwiGLU activation.
use super::check_shape;
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::{Storage, Tensor};

/// `silu(gate) ⊙ up`, same shapes.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    check_shape("silu_mul", "up", up, gate.shape())?;
    match gate.storage() {
        Storage::Cpu(_) | Storage::CpuPanels(_) => {
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
