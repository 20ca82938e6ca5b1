//! `--quantization`: the Linear weights re-stored after load, through
//! [`ModelWeights::map_linears`] (which knows which tensors are Linears). FP8 covers the
//! attention projections, the text and audio FFNs, the audio projector and the text head;
//! the audio head stays in its loaded dtype (its 8 codebooks' logits pick every audio code, so
//! it is kept exact), as do embeddings, norms and the codec, which are not Linears here.
//! May use: quant, tensor, model::weights.

use super::weights::{LinearRole, ModelWeights};
use crate::error::Result;
use crate::quant::Quantization;

/// Whether `--quantization fp8` quantizes a Linear of this role.
pub fn fp8_quantizes(role: LinearRole) -> bool {
    role != LinearRole::AudioHead
}

impl ModelWeights {
    /// The weights with their Linears stored as `q` says (`None`: unchanged). Run it on the
    /// host, after load and before any upload: FP8 weights are quantized from the loaded
    /// values, keep FP8 through `to_device`, and are never panel-packed for the CPU GEMM.
    pub fn quantize(self, q: Quantization) -> Result<Self> {
        match q {
            Quantization::None => Ok(self),
            Quantization::Fp8 => self.map_linears(|role, t| {
                if fp8_quantizes(role) {
                    t.quantize_fp8()
                } else {
                    Ok(t)
                }
            }),
        }
    }
}
