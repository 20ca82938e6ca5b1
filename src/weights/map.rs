//! `WeightMap`: a name -> f32 host tensor map, for the codec and other small models whose
//! weights come from a PyTorch `model.pth` or a safetensors file. Every lookup error names the
//! source file and the key, and shape checks say what was expected.
//! May use: error.

use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A dense row-major f32 tensor on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor { shape, data }
    }
    pub fn numel(&self) -> usize {
        self.data.len()
    }
}

#[derive(Clone, Debug, Default)]
pub struct WeightMap {
    source: PathBuf,
    map: BTreeMap<String, HostTensor>,
}

impl WeightMap {
    pub fn new(source: impl Into<PathBuf>) -> Self {
        WeightMap {
            source: source.into(),
            map: BTreeMap::new(),
        }
    }
    pub fn source(&self) -> &Path {
        &self.source
    }
    pub fn insert(&mut self, key: impl Into<String>, t: HostTensor) {
        self.map.insert(key.into(), t);
    }
    pub fn remove(&mut self, key: &str) -> Option<HostTensor> {
        self.map.remove(key)
    }
    pub fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.map.keys()
    }
    pub fn len(&self) -> usize {
        self.map.len()
    }
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
    pub fn get(&self, key: &str) -> Result<&HostTensor> {
        self.map
            .get(key)
            .ok_or_else(|| Error::checkpoint(&self.source, key, "missing tensor"))
    }
    /// Fetch `key` and check its shape.
    pub fn get_shaped(&self, key: &str, shape: &[usize]) -> Result<&HostTensor> {
        let t = self.get(key)?;
        if t.shape != shape {
            return Err(Error::checkpoint(
                &self.source,
                key,
                format!("shape {:?}, expected {:?}", t.shape, shape),
            ));
        }
        Ok(t)
    }
    /// Read every tensor of a safetensors file (any float dtype, widened to f32).
    pub fn from_safetensors(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let st = super::safetensors::deserialize(path, &bytes)?;
        let mut out = WeightMap::new(path);
        for (name, view) in st.tensors() {
            let data = super::safetensors::view_to_f32(path, &name, &view)?;
            out.insert(name, HostTensor::new(view.shape().to_vec(), data));
        }
        Ok(out)
    }
}
