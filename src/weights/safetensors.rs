//! safetensors checkpoints: one `model.safetensors`, or shards listed by
//! `model.safetensors.index.json`. Files are memory-mapped; a tensor is copied out only when the
//! backend asks for it (into its own storage, in the stored dtype), so the whole checkpoint is
//! never held twice. Dtype comes from each tensor's header: bf16, f16 and f32 are accepted.
//! May use: error, tensor.

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
pub fn view_to_storage(path: &Path, name: &str, view: &TensorView<'_>) -> Result<CpuStorage> {
    let b = view.data();
    let n: usize = view.shape().iter().product();
    let need = |w: usize| -> Result<()> {
        if b.len() != n * w {
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
                    .map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32)
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
            let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::checkpoint(&index, "<json>", e.to_string()))?;
            let map = v
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    Error::checkpoint(&index, "weight_map", "missing or not an object")
                })?;
            let mut files: Vec<String> = map
                .values()
                .map(|f| {
                    f.as_str().map(str::to_string).ok_or_else(|| {
                        Error::checkpoint(&index, "weight_map", "file name is not a string")
                    })
                })
                .collect::<Result<_>>()?;
            files.sort();
            files.dedup();
            let paths: Vec<PathBuf> = files.iter().map(|f| path.join(f)).collect();
            let ck = Self::open_files(path, &paths)?;
            // Every key the index promises must be in the shard it names.
            for (key, file) in map {
                let file = file.as_str().unwrap_or_default();
                match ck.index.get(key) {
                    Some(&s) if ck.shards[s].path == path.join(file) => {}
                    Some(&s) => {
                        return Err(Error::checkpoint(
                            &index,
                            key,
                            format!(
                                "index names {file} but the tensor is in {}",
                                ck.shards[s].path.display()
                            ),
                        ))
                    }
                    None => {
                        return Err(Error::checkpoint(
                            path.join(file),
                            key,
                            "listed in the index but missing from the shard",
                        ))
                    }
                }
            }
            return Ok(ck);
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

    fn open_files(root: &Path, paths: &[PathBuf]) -> Result<Self> {
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for p in paths {
            let f = std::fs::File::open(p).map_err(|e| Error::io(p, e))?;
            // SAFETY: the file is opened read-only and the map is only read; a checkpoint that is
            // modified while we run is outside what we support (as every mmap-based loader).
            let mmap = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(p, e))?;
            let st = SafeTensors::deserialize(&mmap)
                .map_err(|e| Error::checkpoint(p, "<header>", e.to_string()))?;
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
        let st = SafeTensors::deserialize(&shard.mmap)
            .map_err(|e| Error::checkpoint(&shard.path, "<header>", e.to_string()))?;
        let view = st
            .tensor(key)
            .map_err(|e| Error::checkpoint(&shard.path, key, e.to_string()))?;
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
