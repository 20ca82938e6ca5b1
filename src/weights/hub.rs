//! Where a model lives: a local folder, or a Hugging Face id (`org/name`) resolved in the local
//! hub cache (`$HF_HUB_CACHE`, `$HF_HOME/hub`, `~/.cache/huggingface/hub`, the layout every hub
//! client writes: `models--org--name/snapshots/<rev>/`). Nothing is downloaded here: offline,
//! a missing model is a clear error naming the id and the folders searched.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

fn cache_roots() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(p) = std::env::var("HF_HUB_CACHE") {
        v.push(PathBuf::from(p));
    }
    if let Ok(p) = std::env::var("HF_HOME") {
        v.push(Path::new(&p).join("hub"));
    }
    if let Ok(h) = std::env::var("HOME") {
        v.push(Path::new(&h).join(".cache/huggingface/hub"));
    }
    v
}

/// A local folder holding `required` files, or the newest cached snapshot of a hub id.
pub fn resolve_model(spec: &str, required: &[&str]) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        for f in required {
            if !p.join(f).is_file() {
                return Err(Error::checkpoint(p, *f, "missing from the model folder"));
            }
        }
        return Ok(p.to_path_buf());
    }
    let parts: Vec<&str> = spec.split('/').collect();
    if parts.len() != 2 || parts.iter().any(|s| s.is_empty()) {
        return Err(Error::BadRequest(format!(
            "`{spec}` is neither a folder nor a Hugging Face id (org/name)"
        )));
    }
    let roots = cache_roots();
    for root in &roots {
        let snaps = root
            .join(format!("models--{}--{}", parts[0], parts[1]))
            .join("snapshots");
        let Ok(rd) = std::fs::read_dir(&snaps) else {
            continue;
        };
        let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir())
            .map(|e| {
                (
                    e.metadata()
                        .and_then(|m| m.modified())
                        .unwrap_or(std::time::UNIX_EPOCH),
                    e.path(),
                )
            })
            .collect();
        dirs.sort();
        if let Some((_, d)) = dirs
            .into_iter()
            .rev()
            .find(|(_, d)| required.iter().all(|f| d.join(f).is_file()))
        {
            return Ok(d);
        }
    }
    Err(Error::BadRequest(format!(
        "model `{spec}` is not a local folder and is not in the Hugging Face cache (searched: {}); this machine cannot download it: fetch it elsewhere (e.g. `huggingface-cli download {spec}`) and pass the folder",
        roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
    )))
}
