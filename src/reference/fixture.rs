//! Reading a fixture's `expected.safetensors` (int64 and float32 tensors) and `cases.json`.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub struct Expected {
    path: PathBuf,
    f32s: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    i64s: BTreeMap<String, (Vec<usize>, Vec<i64>)>,
}

impl Expected {
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::checkpoint(path, "<header>", e.to_string()))?;
        let (mut f32s, mut i64s) = (BTreeMap::new(), BTreeMap::new());
        for (name, v) in st.tensors() {
            let shape = v.shape().to_vec();
            match v.dtype() {
                safetensors::Dtype::I64 => {
                    let d = v
                        .data()
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect();
                    i64s.insert(name, (shape, d));
                }
                safetensors::Dtype::I32 => {
                    let d = v
                        .data()
                        .chunks_exact(4)
                        .map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64)
                        .collect();
                    i64s.insert(name, (shape, d));
                }
                _ => {
                    let d = crate::weights::safetensors::view_to_f32(path, &name, &v)?;
                    f32s.insert(name, (shape, d));
                }
            }
        }
        Ok(Expected {
            path: path.to_path_buf(),
            f32s,
            i64s,
        })
    }
    pub fn has(&self, name: &str) -> bool {
        self.f32s.contains_key(name) || self.i64s.contains_key(name)
    }
    pub fn f32(&self, name: &str) -> Result<&(Vec<usize>, Vec<f32>)> {
        self.f32s
            .get(name)
            .ok_or_else(|| Error::checkpoint(&self.path, name, "missing float tensor"))
    }
    pub fn i64(&self, name: &str) -> Result<&(Vec<usize>, Vec<i64>)> {
        self.i64s
            .get(name)
            .ok_or_else(|| Error::checkpoint(&self.path, name, "missing integer tensor"))
    }
    /// An integer tensor as u32 ids (negative values are an error).
    pub fn ids(&self, name: &str) -> Result<Vec<u32>> {
        self.i64(name)?
            .1
            .iter()
            .map(|&v| {
                u32::try_from(v)
                    .map_err(|_| Error::checkpoint(&self.path, name, format!("negative id {v}")))
            })
            .collect()
    }
    /// A 2-D integer tensor [rows, cols] as rows of u32.
    pub fn matrix(&self, name: &str) -> Result<Vec<Vec<u32>>> {
        let (shape, _) = self.i64(name)?;
        let ids = self.ids(name)?;
        let cols = *shape.last().unwrap_or(&0);
        if cols == 0 {
            return Ok(vec![Vec::new(); shape.first().copied().unwrap_or(0)]);
        }
        Ok(ids.chunks(cols).map(<[u32]>::to_vec).collect())
    }
    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.f32s.keys().chain(self.i64s.keys())
    }
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::config(path, "<json>", e.to_string()))
}
