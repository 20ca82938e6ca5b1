//! Load-time finiteness check of weights. A NaN or infinity in one weight makes every later
//! activation NaN, and the run "succeeds" with silence or noise; refusing it at load names the
//! file, the tensor and the first bad element instead. The scan looks at exponent bits only, in
//! branch-free chunks the compiler vectorises, so it costs far less than the copy it follows.
//! May use: error, tensor.

use crate::error::{Error, Result};
use crate::tensor::CpuStorage;
use std::path::Path;

/// Elements per branch-free block: large enough to vectorise, small enough to stop early.
const BLOCK: usize = 4096;

/// Index of the first element whose exponent bits are all ones (NaN or +-inf).
fn first_all_ones<T: Copy>(data: &[T], bits: impl Fn(T) -> u32 + Copy, mask: u32) -> Option<usize> {
    for (bi, block) in data.chunks(BLOCK).enumerate() {
        let any = block
            .iter()
            .fold(0u32, |acc, &x| acc | u32::from(bits(x) & mask == mask));
        if any != 0 {
            let i = block.iter().position(|&x| bits(x) & mask == mask)?;
            return Some(bi * BLOCK + i);
        }
    }
    None
}

fn refuse(path: &Path, key: &str, index: usize, value: f32) -> Error {
    Error::checkpoint(
        path,
        key,
        format!("non-finite weight {value} at flat index {index}"),
    )
}

/// Refuse f32 weights holding NaN or +-inf.
pub fn check_f32(path: &Path, key: &str, data: &[f32]) -> Result<()> {
    match first_all_ones(data, f32::to_bits, 0x7f80_0000) {
        Some(i) => Err(refuse(path, key, i, data[i])),
        None => Ok(()),
    }
}

/// Refuse host weights of any float dtype holding NaN or +-inf.
pub fn check_storage(path: &Path, key: &str, s: &CpuStorage) -> Result<()> {
    let bad = match s {
        CpuStorage::F32(v) => first_all_ones(v, f32::to_bits, 0x7f80_0000).map(|i| (i, v[i])),
        CpuStorage::BF16(v) => {
            first_all_ones(v, |x| u32::from(x.to_bits()), 0x7f80).map(|i| (i, v[i].to_f32()))
        }
        CpuStorage::F16(v) => {
            first_all_ones(v, |x| u32::from(x.to_bits()), 0x7c00).map(|i| (i, v[i].to_f32()))
        }
    };
    match bad {
        Some((i, x)) => Err(refuse(path, key, i, x)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;

    #[test]
    fn finds_the_first_bad_element_in_any_block() {
        let p = Path::new("w.safetensors");
        let mut v = vec![1.0f32; 3 * BLOCK + 5];
        assert!(check_f32(p, "k", &v).is_ok());
        v[2 * BLOCK + 3] = f32::INFINITY;
        v[3 * BLOCK] = f32::NAN;
        let e = check_f32(p, "k", &v).unwrap_err().to_string();
        assert!(
            e.contains(&format!("index {}", 2 * BLOCK + 3)) && e.contains("`k`"),
            "{e}"
        );
        let b = CpuStorage::BF16(vec![bf16::ONE, bf16::NAN]);
        let e = check_storage(p, "b", &b).unwrap_err().to_string();
        assert!(e.contains("NaN") && e.contains("index 1"), "{e}");
        assert!(check_storage(p, "b", &CpuStorage::BF16(vec![bf16::MAX, bf16::MIN])).is_ok());
    }
}
