//! safetensors checkpoints: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Files are memory-mapped; a tensor is copied out only when the
//! backend asks for it (into its own storage, in the stored dtype), so the whole checkpoint is
//! never held twice. Dtype comes from each tensor's header: bf16, f16 and f32 are accepted.
//! Hostile files are refused with the file, key and value at fault: the header is bounded and
//! checked tensor by tensor before the safetensors crate sees it (whose own errors name only a
//! variant such as `TensorInvalidInfo`), shard paths of the index stay inside the model folder,
//! and every tensor copied out is checked for NaN/inf.
//! May use: error, tensor.

use super::finite;
use crate::error::{Error, Result};
use crate::tensor::{CpuStorage, DType};
use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, TensorView};
use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Widen a safetensors view of any float dtype to f32.
pub fn view_to_f32(path: &Path, name: &str, view: &TensorView<'_>) -> Result<Vec<f32>> {
    Ok(view_to_storage(path, name, view)?.to_f32_vec())
}

/// Copy a view into host storage of its own dtype. Bytes are little-endian by the format.
/// Non-finite values are refused, naming the tensor.
pub fn view_to_storage(path: &Path, name: &str, view: &TensorView<'_>) -> Result<CpuStorage> {
    let s = copy_view(path, name, view)?;
    finite::check_storage(path, name, &s)?;
    Ok(s)
}

fn copy_view(path: &Path, name: &str, view: &TensorView<'_>) -> Result<CpuStorage> {
    let b = view.data();
    let n = view
        .shape()
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let need = |w: usize| -> Result<()> {
        if n.and_then(|n| n.checked_mul(w)) != Some(b.len()) {
            return Err(Error::checkpoint(
                path,
                name,
                format!("{} data bytes for shape {:?}", b.len(), view.shape()),
            ));
        }
        Ok(())
    };
    Ok(match view.dtype() {
        StDtype::F32 => {
            need(4)?;
            CpuStorage::F32(
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            )
        }
        StDtype::BF16 => {
            need(2)?;
            CpuStorage::BF16(
                b.chunks_exact(2)
                    .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            )
        }
        StDtype::F16 => {
            need(2)?;
            CpuStorage::F16(
                b.chunks_exact(2)
                    .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                    .collect(),
            )
        }
        StDtype::F64 => {
            need(8)?;
            CpuStorage::F32(
                b.chunks_exact(8)
                    .map(|c| {
                        f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                    })
                    .collect(),
            )
        }
        other => {
            return Err(Error::checkpoint(
                path,
                name,
                format!("unsupported dtype {other:?} (expected bf16, f16 or f32)"),
            ))
        }
    })
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
}

/// An opened checkpoint: a set of memory-mapped shards and the key -> shard table.
pub struct Checkpoint {
    shards: Vec<Shard>,
    index: BTreeMap<String, usize>,
    root: PathBuf,
}

/// Metadata of one tensor, read from its header.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub shape: Vec<usize>,
    pub dtype: DType,
    pub file: PathBuf,
}

impl Checkpoint {
    /// Open `dir/model.safetensors.index.json` (sharded), else `dir/model.safetensors`, else any
    /// single `*.safetensors` in `dir`; `path` may also name a `.safetensors` file directly.
    pub fn open(path: &Path) -> Result<Self> {
        if path.is_file() {
            return Self::open_files(
                path.parent().unwrap_or(Path::new(".")),
                &[path.to_path_buf()],
            );
        }
        let index = path.join("model.safetensors.index.json");
        if index.is_file() {
            return Self::open_index(path, &index);
        }
        let single = path.join("model.safetensors");
        if single.is_file() {
            return Self::open_files(path, &[single]);
        }
        Err(Error::checkpoint(
            path,
            "<files>",
            "no model.safetensors.index.json or model.safetensors in this folder",
        ))
    }

    /// A sharded checkpoint: every shard the index names must lie inside `dir`, and every key
    /// it promises must be in the shard it names.
    fn open_index(dir: &Path, index: &Path) -> Result<Self> {
        let text = read_bounded(index, MAX_INDEX_BYTES)?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::checkpoint(index, "<json>", e.to_string()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::checkpoint(index, "weight_map", "missing or not an object"))?;
        let mut files: BTreeMap<&str, PathBuf> = BTreeMap::new();
        for (key, f) in map {
            let f = f.as_str().ok_or_else(|| {
                Error::checkpoint(index, key, format!("shard name {f} is not a string"))
            })?;
            if !files.contains_key(f) {
                files.insert(f, shard_path(dir, index, key, f)?);
            }
        }
        let paths: Vec<PathBuf> = files.values().cloned().collect();
        let ck = Self::open_files(dir, &paths)?;
        for (key, f) in map {
            let want = f
                .as_str()
                .and_then(|f| files.get(f))
                .ok_or_else(|| Error::checkpoint(index, key, "shard name is not a string"))?;
            match ck.index.get(key) {
                Some(&s) if &ck.shards[s].path == want => {}
                Some(&s) => {
                    return Err(Error::checkpoint(
                        index,
                        key,
                        format!(
                            "index names {} but the tensor is in {}",
                            want.display(),
                            ck.shards[s].path.display()
                        ),
                    ))
                }
                None => {
                    return Err(Error::checkpoint(
                        want,
                        key,
                        "listed in the index but missing from the shard",
                    ))
                }
            }
        }
        Ok(ck)
    }

    fn open_files(root: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for p in paths {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            // SAFETY: the file is opened read-only and the map is only read; a checkpoint that is
            // modified while we run is outside what we support (as every mmap-based loader).
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(p, e))?;
            let st = deserialize(p, &mmap)?;
            let si = shards.len();
            for name in st.names() {
                if let Some(prev) = index.insert(name.to_string(), si) {
                    let prev: usize = prev;
                    return Err(Error::checkpoint(
                        p,
                        name.as_str(),
                        format!("duplicate tensor, also in {}", paths[prev].display()),
                    ));
                }
            }
            shards.push(Shard {
                path: p.clone(),
                mmap,
            });
        }
        Ok(Checkpoint {
            shards,
            index,
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    fn with_view<T>(
        &self,
        key: &str,
        f: impl FnOnce(&Path, &TensorView<'_>) -> Result<T>,
    ) -> Result<T> {
        let &si = self
            .index
            .get(key)
            .ok_or_else(|| Error::checkpoint(&self.root, key, "missing tensor"))?;
        let shard = &self.shards[si];
        let st = deserialize(&shard.path, &shard.mmap)?;
        let view = st
            .tensor(key)
            .map_err(|e| Error::checkpoint(&shard.path, key, describe(&e)))?;
        f(&shard.path, &view)
    }

    pub fn info(&self, key: &str) -> Result<TensorInfo> {
        self.with_view(key, |p, v| {
            let dtype = match v.dtype() {
                StDtype::F32 | StDtype::F64 => DType::F32,
                StDtype::BF16 => DType::BF16,
                StDtype::F16 => DType::F16,
                other => {
                    return Err(Error::checkpoint(
                        p,
                        key,
                        format!("unsupported dtype {other:?}"),
                    ))
                }
            };
            Ok(TensorInfo {
                shape: v.shape().to_vec(),
                dtype,
                file: p.to_path_buf(),
            })
        })
    }

    /// Copy `key` out in its stored dtype, checking its shape.
    pub fn load(&self, key: &str, shape: &[usize]) -> Result<CpuStorage> {
        self.with_view(key, |p, v| {
            if v.shape() != shape {
                return Err(Error::checkpoint(
                    p,
                    key,
                    format!("shape {:?}, expected {:?}", v.shape(), shape),
                ));
            }
            view_to_storage(p, key, v)
        })
    }
}

/// `model.safetensors.index.json` lists file names and keys; 64 MiB is ~100x a large index.
const MAX_INDEX_BYTES: u64 = 64 << 20;
/// The safetensors crate's own limit on the JSON header.
const MAX_HEADER_BYTES: u64 = 100 << 20;

fn read_bounded(path: &Path, max: u64) -> Result<String> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > max {
        return Err(Error::checkpoint(
            path,
            "<file>",
            format!("{len} bytes, more than the {max}-byte limit"),
        ));
    }
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// `dir/file` for a shard name from the index, refused unless it stays inside `dir`: a plain
/// relative path (no `..`, no root), and after resolving symlinks still under `dir`.
fn shard_path(dir: &Path, index: &Path, key: &str, file: &str) -> Result<PathBuf> {
    use std::path::Component;
    let rel = Path::new(file);
    let plain = !file.is_empty() && rel.components().all(|c| matches!(c, Component::Normal(_)));
    if !plain {
        return Err(Error::checkpoint(
            index,
            key,
            format!("shard `{file}` is not a plain path inside the model folder"),
        ));
    }
    let joined = dir.join(rel);
    let real = joined.canonicalize().map_err(|e| Error::io(&joined, e))?;
    let real_dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    // A Hugging Face cache snapshot (`models--org--name/snapshots/<rev>/`) links its files to
    // the repo's own `blobs/` folder, which is inside the model's cache entry too.
    let hub_blobs = real_dir
        .parent()
        .filter(|p| p.file_name().is_some_and(|n| n == "snapshots"))
        .and_then(Path::parent)
        .map(|repo| repo.join("blobs"));
    let inside = real.starts_with(&real_dir) || hub_blobs.is_some_and(|b| real.starts_with(b));
    if !inside {
        return Err(Error::checkpoint(
            index,
            key,
            format!(
                "shard `{file}` resolves to {}, outside the model folder",
                real.display()
            ),
        ));
    }
    Ok(joined)
}

/// Parse a safetensors buffer after `check_header` has vetted it, so the crate's terse errors
/// are only a fallback.
pub fn deserialize<'a>(path: &Path, bytes: &'a [u8]) -> Result<SafeTensors<'a>> {
    check_header(path, bytes)?;
    SafeTensors::deserialize(bytes).map_err(|e| Error::checkpoint(path, "<header>", describe(&e)))
}

/// A sentence for each safetensors error, instead of its variant name.
fn describe(e: &safetensors::SafeTensorError) -> String {
    use safetensors::SafeTensorError as E;
    match e {
        E::InvalidHeader => "the header is not UTF-8".into(),
        E::InvalidHeaderStart => "the header does not start with `{`".into(),
        E::InvalidHeaderDeserialization => "the header is not valid JSON".into(),
        E::HeaderTooLarge => format!("the header is larger than {MAX_HEADER_BYTES} bytes"),
        E::HeaderTooSmall => "the file is shorter than the 8-byte header length".into(),
        E::InvalidHeaderLength => "the header length runs past the end of the file".into(),
        E::TensorNotFound(k) => format!("no tensor `{k}`"),
        E::TensorInvalidInfo => "a tensor's shape, dtype and offsets disagree".into(),
        E::InvalidOffset(k) => format!("tensor `{k}` has invalid data offsets"),
        E::IoError(e) => format!("io: {e}"),
        E::JsonError(e) => format!("header JSON: {e}"),
        E::InvalidTensorView(d, s, n) => {
            format!("{n} bytes cannot hold a {d:?} tensor of shape {s:?}")
        }
        E::MetadataIncompleteBuffer => {
            "the tensors' data offsets do not cover the data section exactly".into()
        }
        E::ValidationOverflow => "a tensor's shape or byte size overflows".into(),
    }
}

/// Bytes per element of a safetensors dtype name, None for names the format does not define.
fn dtype_bytes(name: &str) -> Option<u64> {
    Some(match name {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
        "U16" | "I16" | "F16" | "BF16" => 2,
        "U32" | "I32" | "F32" => 4,
        "U64" | "I64" | "F64" => 8,
        _ => return None,
    })
}

/// Validate the header of a safetensors buffer entry by entry: bounded length, JSON object, and
/// for each tensor a known dtype, a shape whose byte size fits, and offsets that match it and lie
/// in the data section, laid end to end. Every error names the key and the offending value.
pub fn check_header(path: &Path, bytes: &[u8]) -> Result<()> {
    let err = |key: &str, reason: String| Error::checkpoint(path, key, reason);
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| {
            err(
                "<header>",
                format!("file of {} bytes has no header", bytes.len()),
            )
        })?;
    let data_len = (bytes.len() as u64 - 8)
        .checked_sub(n)
        .filter(|_| n <= MAX_HEADER_BYTES);
    let Some(data_len) = data_len else {
        return Err(err(
            "<header>",
            format!(
                "header length {n} does not fit a {}-byte file (limit {MAX_HEADER_BYTES})",
                bytes.len()
            ),
        ));
    };
    let text = std::str::from_utf8(&bytes[8..8 + n as usize])
        .map_err(|_| err("<header>", "the header is not UTF-8".into()))?;
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| err("<header>", format!("header JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| err("<header>", "the header is not a JSON object".into()))?;
    let mut spans: Vec<(u64, u64, &str)> = Vec::with_capacity(obj.len());
    for (key, t) in obj {
        if key == "__metadata__" {
            continue;
        }
        spans.push(check_entry(path, key, t, data_len)?);
    }
    spans.sort_unstable();
    let mut at = 0;
    for &(begin, end, key) in &spans {
        if begin != at {
            return Err(err(
                key,
                format!("data starts at byte {begin}, expected {at} (gap or overlap)"),
            ));
        }
        at = end;
    }
    if at != data_len {
        return Err(err(
            "<header>",
            format!("tensors cover {at} of the {data_len} data bytes"),
        ));
    }
    Ok(())
}

/// One header entry -> its (begin, end, key) byte span, checked against its shape and dtype.
fn check_entry<'k>(
    path: &Path,
    key: &'k str,
    t: &serde_json::Value,
    data_len: u64,
) -> Result<(u64, u64, &'k str)> {
    let err = |reason: String| Error::checkpoint(path, key, reason);
    let dtype = t
        .get("dtype")
        .and_then(|d| d.as_str())
        .ok_or_else(|| err(format!("entry {t} has no dtype string")))?;
    let width = dtype_bytes(dtype).ok_or_else(|| err(format!("unknown dtype {dtype}")))?;
    let shape = t
        .get("shape")
        .and_then(|s| s.as_array())
        .ok_or_else(|| err(format!("entry {t} has no shape list")))?;
    let mut size = Some(width);
    for d in shape {
        let d = d
            .as_u64()
            .ok_or_else(|| err(format!("shape {} holds {d}", t["shape"])))?;
        size = size.and_then(|s| s.checked_mul(d));
    }
    let size = size.ok_or_else(|| {
        err(format!(
            "shape {} of {dtype} overflows a byte count",
            t["shape"]
        ))
    })?;
    let offs = t.get("data_offsets").and_then(|o| o.as_array());
    let (begin, end) = match offs.map(Vec::as_slice) {
        Some([b, e]) => (b.as_u64(), e.as_u64()),
        _ => (None, None),
    };
    let (Some(begin), Some(end)) = (begin, end) else {
        return Err(err(format!(
            "data_offsets {} are not [begin, end]",
            t["data_offsets"]
        )));
    };
    if begin > end || end > data_len || end - begin != size {
        return Err(err(format!(
            "data_offsets [{begin}, {end}] do not hold shape {} of {dtype} ({size} bytes) in a \
             {data_len}-byte data section",
            t["shape"]
        )));
    }
    Ok((begin, end, key))
}
