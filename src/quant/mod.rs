//! Weight quantization: the FP8 E4M3 number format ([`fp8`]) and per-output-channel FP8
//! Linear weights ([`weight`]), plus the `--quantization` choice. Which tensors are quantized
//! is decided by `model::weights::ModelWeights::map_linears` and its `LinearRole`, not here.
//! May use: error.

pub mod fp8;
pub mod weight;

use crate::error::{Error, Result};

/// `--quantization`: how Linear weights are stored after load.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantization {
    /// As loaded (bf16 / f32).
    #[default]
    None,
    /// FP8 E4M3 with one f32 scale per output channel (W8A16).
    Fp8,
}

impl Quantization {
    pub fn name(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Fp8 => "fp8",
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Quantization::None),
            "fp8" => Ok(Quantization::Fp8),
            other => Err(Error::BadRequest(format!(
                "--quantization `{other}`: expected none or fp8 (FP8 E4M3 weights with \
                 per-channel scales; no other format is implemented)"
            ))),
        }
    }
}

impl std::fmt::Display for Quantization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Quantization;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("fp8".parse::<Quantization>().unwrap(), Quantization::Fp8);
        assert_eq!("none".parse::<Quantization>().unwrap(), Quantization::None);
        let e = "int4".parse::<Quantization>().unwrap_err().to_string();
        assert!(e.contains("int4") && e.contains("none or fp8"), "{e}");
    }
}
