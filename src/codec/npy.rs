//! `.npy` arrays (NumPy format 1.0/2.0/3.0): the code-file format of `higgs codec`. Reads
//! little-endian int64/int32/float32/float64 arrays in C or Fortran order; writes int64 (codes,
//! `[8, T]`, as `HiggsAudioTokenizer.encode` returns them) and float32. Parsing is bounded
//! (header length, rank, checked sizes) so hostile bytes give an error, never a panic or a huge
//! allocation; writes go through `atomic_file`, so a failed write never leaves a 0-byte file.
//! May use: error, atomic_file.

use crate::atomic_file::write_atomic;
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// numpy itself refuses headers over 10,000 bytes unless told otherwise (`max_header_size`).
const MAX_HEADER_BYTES: usize = 1 << 16;
/// Code files are rank 2 or 3; no array we read needs more.
const MAX_RANK: usize = 8;

/// Array elements, by stored type (int32 widens to i64, float64 narrows to f32).
#[derive(Clone, Debug, PartialEq)]
pub enum NpyData {
    I64(Vec<i64>),
    F32(Vec<f32>),
}

/// A C-ordered array.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: NpyData,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::BadRequest(format!("{}: {}", path.display(), reason.into()))
}

/// Read an `.npy` file.
pub fn read_npy(path: &Path) -> Result<NpyArray> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    parse_npy(path, &bytes)
}

/// Parse `.npy` bytes; `path` only names the source in errors.
pub fn parse_npy(path: &Path, b: &[u8]) -> Result<NpyArray> {
    if b.len() < 10 || &b[..6] != MAGIC {
        return Err(bad(path, "not a .npy file (bad magic)"));
    }
    let (hlen, start) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 | 3 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => return Err(bad(path, format!("unsupported .npy version {v}"))),
    };
    if hlen > MAX_HEADER_BYTES {
        return Err(bad(
            path,
            format!("header of {hlen} bytes (more than {MAX_HEADER_BYTES})"),
        ));
    }
    let header = b
        .get(start..start + hlen)
        .ok_or_else(|| bad(path, "truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad(path, "header is not text"))?;
    let descr = dict_value(header, "descr").ok_or_else(|| bad(path, "header has no descr"))?;
    let fortran = dict_value(header, "fortran_order")
        .ok_or_else(|| bad(path, "header has no fortran_order"))?;
    let shape_txt = dict_value(header, "shape").ok_or_else(|| bad(path, "header has no shape"))?;
    let shape =
        parse_shape(shape_txt).ok_or_else(|| bad(path, format!("bad shape {shape_txt}")))?;
    if shape.len() > MAX_RANK {
        return Err(bad(
            path,
            format!("shape {shape:?} has rank {} (> {MAX_RANK})", shape.len()),
        ));
    }
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let fortran = match fortran {
        "True" => true,
        "False" => false,
        o => return Err(bad(path, format!("bad fortran_order {o}"))),
    };
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(path, format!("shape {shape:?} element count overflows")))?;
    let body = &b[start + hlen..];
    let width = match descr {
        "<i8" | "<f8" => 8,
        "<i4" | "<f4" => 4,
        "|i1" | "|u1" => 1,
        d => {
            return Err(bad(
                path,
                format!("dtype {d} (expected <i8, <i4, <f4 or <f8, little-endian)"),
            ))
        }
    };
    if body.len()
        != n.checked_mul(width)
            .ok_or_else(|| bad(path, format!("shape {shape:?} byte size overflows")))?
    {
        return Err(bad(
            path,
            format!("{} data bytes for shape {shape:?} of {descr}", body.len()),
        ));
    }
    let c = body.chunks_exact(width);
    let mut data = match descr {
        "<i8" => NpyData::I64(
            c.map(|x| i64::from_le_bytes(x.try_into().unwrap_or([0; 8])))
                .collect(),
        ),
        "<i4" => NpyData::I64(
            c.map(|x| i32::from_le_bytes([x[0], x[1], x[2], x[3]]) as i64)
                .collect(),
        ),
        "|i1" => NpyData::I64(c.map(|x| x[0] as i8 as i64).collect()),
        "|u1" => NpyData::I64(c.map(|x| x[0] as i64).collect()),
        "<f4" => NpyData::F32(
            c.map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                .collect(),
        ),
        _ => NpyData::F32(
            c.map(|x| f64::from_le_bytes(x.try_into().unwrap_or([0; 8])) as f32)
                .collect(),
        ),
    };
    if fortran && shape.len() > 1 {
        data = match data {
            NpyData::I64(v) => NpyData::I64(fortran_to_c(&v, &shape)),
            NpyData::F32(v) => NpyData::F32(fortran_to_c(&v, &shape)),
        };
    }
    Ok(NpyArray { shape, data })
}

/// The value text of `'key': value` in the header's Python dict literal.
fn dict_value<'h>(header: &'h str, key: &str) -> Option<&'h str> {
    let pat_a = format!("'{key}':");
    let pat_b = format!("\"{key}\":");
    let i = header
        .find(&pat_a)
        .map(|i| i + pat_a.len())
        .or_else(|| header.find(&pat_b).map(|i| i + pat_b.len()))?;
    let rest = header[i..].trim_start();
    let end = if rest.starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find([',', '}']).unwrap_or(rest.len())
    };
    Some(rest[..end].trim())
}

fn parse_shape(s: &str) -> Option<Vec<usize>> {
    let inner = s.strip_prefix('(')?.strip_suffix(')')?;
    inner
        .split(',')
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .map(|x| x.trim_end_matches('L').parse().ok())
        .collect()
}

fn fortran_to_c<T: Copy>(v: &[T], shape: &[usize]) -> Vec<T> {
    let rank = shape.len();
    let mut out = Vec::with_capacity(v.len());
    let mut idx = vec![0usize; rank];
    for _ in 0..v.len() {
        // Fortran linear index: first axis fastest.
        let mut f = 0;
        for ax in (0..rank).rev() {
            f = f * shape[ax] + idx[ax];
        }
        out.push(v[f]);
        for ax in (0..rank).rev() {
            idx[ax] += 1;
            if idx[ax] < shape[ax] {
                break;
            }
            idx[ax] = 0;
        }
    }
    out
}

fn encode_npy(descr: &str, shape: &[usize], body: &[u8]) -> Vec<u8> {
    encode_npy_order(descr, false, shape, body)
}

fn encode_npy_order(descr: &str, fortran: bool, shape: &[usize], body: &[u8]) -> Vec<u8> {
    let order = if fortran { "True" } else { "False" };
    let shape_txt = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape_txt}, }}");
    // Pad so the data starts on a 64-byte boundary, header ending in '\n' (format 1.0).
    let unpadded = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + body.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    out
}

/// Write an int64 array (atomically: the old file stays until the new one is complete).
pub fn write_npy_i64(path: &Path, shape: &[usize], data: &[i64]) -> Result<()> {
    check_len(shape, data.len())?;
    let body: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes(path, &encode_npy("<i8", shape, &body))
}

/// Write a float32 array (atomically).
pub fn write_npy_f32(path: &Path, shape: &[usize], data: &[f32]) -> Result<()> {
    check_len(shape, data.len())?;
    let body: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_bytes(path, &encode_npy("<f4", shape, &body))
}

fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| w.write_all(bytes).map_err(|e| Error::io(path, e)))
}

fn check_len(shape: &[usize], n: usize) -> Result<()> {
    let product = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if product != Some(n) {
        return Err(Error::BadRequest(format!(
            "npy: shape {shape:?} does not hold {n} values"
        )));
    }
    Ok(())
}

/// Read a code file: int `[n_q, T]` or `[1, n_q, T]` with n_q, T > 0 -> `[n_q][T]`. Values
/// must fit a u32; `check_codes` then checks them against a codec.
pub fn read_codes(path: &Path) -> Result<Vec<Vec<u32>>> {
    let a = read_npy(path)?;
    let NpyData::I64(v) = a.data else {
        return Err(bad(path, "codes must be an integer array"));
    };
    let (n_q, t) = match a.shape.as_slice() {
        [n, t] | [1, n, t] => (*n, *t),
        s => {
            return Err(bad(
                path,
                format!("codes of shape {s:?} (expected [n_q, T] or [1, n_q, T])"),
            ))
        }
    };
    if n_q == 0 || t == 0 {
        // Decoding zero frames would "succeed" with an empty WAV.
        return Err(bad(
            path,
            format!("codes of shape {:?} hold no frames", a.shape),
        ));
    }
    // parse_npy checked that the shape's product is the data length, so each row is in range.
    let rows = v
        .chunks_exact(t)
        .enumerate()
        .map(|(q, row)| {
            row.iter()
                .enumerate()
                .map(|(i, &c)| code_value(path, q, i, c))
                .collect::<Result<Vec<u32>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(rows)
}

fn code_value(path: &Path, q: usize, i: usize, c: i64) -> Result<u32> {
    if c < 0 {
        return Err(bad(path, format!("negative code {c} at [{q}, {i}]")));
    }
    u32::try_from(c).map_err(|_| bad(path, format!("code {c} at [{q}, {i}] is larger than 2^32")))
}

/// Check codes read from `path` against a codec of `n_q` codebooks of `bins` entries, naming
/// the first value outside the codebook.
pub fn check_codes(path: &Path, codes: &[Vec<u32>], n_q: usize, bins: usize) -> Result<()> {
    if codes.len() > n_q {
        return Err(bad(
            path,
            format!("{} codebooks, the codec has {n_q}", codes.len()),
        ));
    }
    for (q, row) in codes.iter().enumerate() {
        if let Some((i, c)) = row.iter().enumerate().find(|(_, &c)| c as usize >= bins) {
            return Err(bad(
                path,
                format!("code {c} at [{q}, {i}] is outside the codebook (0..{bins})"),
            ));
        }
    }
    Ok(())
}

/// Write codes `[n_q][T]` as int64 `[n_q, T]`.
pub fn write_codes(path: &Path, codes: &[Vec<u32>]) -> Result<()> {
    let t = codes.first().map_or(0, Vec::len);
    if codes.iter().any(|r| r.len() != t) {
        return Err(Error::BadRequest("codes rows differ in length".into()));
    }
    let flat: Vec<i64> = codes.iter().flatten().map(|&c| c as i64).collect();
    write_npy_i64(path, &[codes.len(), t], &flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_reads_fortran() {
        let dir = std::env::temp_dir().join(format!("higgs_npy_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.npy");
        let codes = vec![vec![1, 2, 3], vec![4, 5, 1023]];
        write_codes(&p, &codes).unwrap();
        let raw = std::fs::read(&p).unwrap();
        assert_eq!((raw.len() - 48) % 8, 0);
        assert_eq!(read_codes(&p).unwrap(), codes);
        let p2 = dir.join("f.npy");
        write_npy_f32(&p2, &[4], &[0.5, -1.0, 2.0, 3.0]).unwrap();
        assert_eq!(
            read_npy(&p2).unwrap().data,
            NpyData::F32(vec![0.5, -1.0, 2.0, 3.0])
        );

        // The same [2, 3] array stored column-major.
        let body: Vec<u8> = [1i64, 4, 2, 5, 3, 1023]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let b = encode_npy_order("<i8", true, &[2, 3], &body);
        let a = parse_npy(Path::new("f"), &b).unwrap();
        assert_eq!(a.data, NpyData::I64(vec![1, 2, 3, 4, 5, 1023]));

        assert!(parse_npy(Path::new("x"), b"\x93NUMPY\x01\x00").is_err());
        assert!(parse_npy(Path::new("x"), &b[..b.len() - 3]).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
