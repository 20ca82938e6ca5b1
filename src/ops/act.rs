//! SwiGLU activation.
use super::check_shape;
use crate::backend::cpu;
use crate::error::Result;
use crate::tensor::Tensor;

/// `silu(gate) ⊙ up`, same shapes.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    check_shape("silu_mul", "up", up, gate.shape())?;
    let mut y = vec![0f32; gate.elem_count()];
    cpu::act::silu_mul(gate.as_f32()?, up.as_f32()?, &mut y);
    Tensor::from_f32(gate.shape().to_vec(), y)
}
