//! Where a model lives: a local folder, or a Hugging Face id (`org/name`, optionally
//! `org/name@revision`) in the hub cache every hub client shares (`$HF_HUB_CACHE`, else
//! `$HF_HOME/hub`, else `$XDG_CACHE_HOME/huggingface/hub` or `~/.cache/huggingface/hub`; layout
//! `models--org--name/{blobs,snapshots/<commit>,refs/<revision>}`). An id that is not cached
//! (complete) is downloaded there (weights/download.rs), unless `HF_HUB_OFFLINE` is set: then a
//! missing model is a clear error naming the id and the folders searched.
//! May use: error, weights::download. Spec: huggingface_hub's cache layout and environment
//! variables (`HF_ENDPOINT`, `HF_TOKEN`, `HF_HUB_OFFLINE`, `HF_HUB_DISABLE_PROGRESS_BARS`).

use std::path::{Path, PathBuf};

use super::download::download_snapshot;
use crate::error::{Error, Result};

const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
const DEFAULT_REVISION: &str = "main";

/// How hub ids are resolved: read once from the environment by [`HubOptions::from_env`], or
/// built by hand (tests, embedding programs) so nothing depends on process-global state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubOptions {
    /// `HF_ENDPOINT` without a trailing `/`.
    pub endpoint: String,
    /// Where downloads go: the first of [`HubOptions::search_roots`].
    pub cache_dir: PathBuf,
    /// Every cache folder searched for a snapshot, `cache_dir` first.
    pub search_roots: Vec<PathBuf>,
    /// `HF_TOKEN`, sent as `Authorization: Bearer`.
    pub token: Option<String>,
    /// `HF_HUB_OFFLINE`: never touch the network.
    pub offline: bool,
    /// Draw progress bars (still only when stderr is a terminal).
    pub progress: bool,
}

impl HubOptions {
    pub fn from_env() -> Self {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The options the hub's environment variables `get(name)` give, in huggingface_hub's
    /// order of precedence. Empty values count as unset.
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Self {
        let var = |k: &str| get(k).filter(|v| !v.is_empty());
        let truthy = |k: &str| {
            var(k).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "1" | "on" | "yes" | "true")
            })
        };
        let home_cache = var("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache")));
        let hf_home = var("HF_HOME")
            .map(PathBuf::from)
            .or_else(|| home_cache.as_ref().map(|c| c.join("huggingface")));
        let mut search_roots: Vec<PathBuf> = var("HF_HUB_CACHE")
            .map(PathBuf::from)
            .into_iter()
            .chain(hf_home.map(|h| h.join("hub")))
            .collect();
        // Caches made under another HF_HOME or by tools that ignore XDG are still found.
        if let Some(h) = var("HOME") {
            search_roots.push(Path::new(&h).join(".cache/huggingface/hub"));
        }
        search_roots.dedup();
        let cache_dir = search_roots
            .first()
            .cloned()
            .unwrap_or_else(|| PathBuf::from(".cache/huggingface/hub"));
        HubOptions {
            endpoint: var("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
                .trim_end_matches('/')
                .to_string(),
            cache_dir,
            search_roots,
            token: var("HF_TOKEN"),
            offline: truthy("HF_HUB_OFFLINE"),
            progress: !truthy("HF_HUB_DISABLE_PROGRESS_BARS"),
        }
    }
}

/// A parsed hub id: `org/name` and the revision (branch, tag or commit; default `main`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubId {
    pub repo: String,
    pub revision: String,
    /// Whether `@revision` was written (else any cached snapshot may serve offline).
    pub explicit_revision: bool,
}

impl HubId {
    /// `org/name[@revision]`; both names are the hub's `[A-Za-z0-9._-]` without `..`, and a
    /// revision may hold `/` (`refs/pr/1`) but no empty, `.` or `..` segment.
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = || {
            Error::BadRequest(format!(
                "`{spec}` is neither a folder nor a Hugging Face id (org/name or org/name@revision)"
            ))
        };
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) => (r, Some(rev)),
            None => (spec, None),
        };
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 96
                && !s.starts_with(['.', '-'])
                && !s.contains("..")
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        match repo.split_once('/') {
            Some((org, name)) if name_ok(org) && name_ok(name) => {}
            _ => return Err(bad()),
        }
        let segment_ok = |s: &str| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if revision.is_some_and(|rev| rev.len() > 256 || !rev.split('/').all(segment_ok)) {
            return Err(bad());
        }
        Ok(HubId {
            repo: repo.to_string(),
            revision: revision.unwrap_or(DEFAULT_REVISION).to_string(),
            explicit_revision: revision.is_some(),
        })
    }

    /// `cache/models--org--name`.
    pub fn repo_dir(&self, cache: &Path) -> PathBuf {
        cache.join(format!("models--{}", self.repo.replace('/', "--")))
    }

    fn is_commit(&self) -> bool {
        self.revision.len() == 40 && self.revision.bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl std::fmt::Display for HubId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.explicit_revision {
            write!(f, "{}@{}", self.repo, self.revision)
        } else {
            f.write_str(&self.repo)
        }
    }
}

/// A local folder holding `required` files, or the snapshot of a hub id (downloaded unless
/// cached or offline), with the options of the environment.
pub fn resolve_model(spec: &str, required: &[&str]) -> Result<PathBuf> {
    resolve_model_with(spec, required, &HubOptions::from_env())
}

/// [`resolve_model`] with explicit options.
pub fn resolve_model_with(spec: &str, required: &[&str], opts: &HubOptions) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        for f in required {
            if !p.join(f).is_file() {
                return Err(Error::checkpoint(p, *f, "missing from the model folder"));
            }
        }
        return Ok(p.to_path_buf());
    }
    let id = HubId::parse(spec)?;
    if let Some(dir) = cached_snapshot(&id, required, opts) {
        return Ok(dir);
    }
    if opts.offline {
        return Err(Error::BadRequest(format!(
            "model `{id}` is not a local folder and is not in the Hugging Face cache (searched: {}), and HF_HUB_OFFLINE is set: unset it to download, or fetch the model elsewhere (e.g. `huggingface-cli download {}`) and pass the folder",
            roots_list(opts),
            id.repo
        )));
    }
    let dir = download_snapshot(&id, required, opts)?;
    if !snapshot_complete(&dir, required) {
        return Err(Error::Hub {
            repo: id.to_string(),
            url: opts.endpoint.clone(),
            reason: format!(
                "downloaded into {} but it lacks the weights or one of {required:?}",
                dir.display()
            ),
        });
    }
    Ok(dir)
}

fn roots_list(opts: &HubOptions) -> String {
    let roots: Vec<String> = opts
        .search_roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    roots.join(", ")
}

/// The cached snapshot of `id` that has what the engine loads, if any: the one its revision
/// names (a commit, or `refs/<revision>`), else, when no revision was written and we are
/// offline, the newest complete snapshot (caches copied by hand may lack `refs/`).
fn cached_snapshot(id: &HubId, required: &[&str], opts: &HubOptions) -> Option<PathBuf> {
    for root in &opts.search_roots {
        let repo = id.repo_dir(root);
        let commit = if id.is_commit() {
            Some(id.revision.clone())
        } else {
            std::fs::read_to_string(repo.join("refs").join(&id.revision))
                .ok()
                .map(|s| s.trim().to_string())
        };
        let named = commit
            .filter(|c| !c.is_empty() && !c.contains(['/', '\\', '.']))
            .map(|c| repo.join("snapshots").join(c));
        if let Some(dir) = named.filter(|d| snapshot_complete(d, required)) {
            return Some(dir);
        }
    }
    if id.explicit_revision || !opts.offline {
        return None;
    }
    opts.search_roots
        .iter()
        .find_map(|root| newest_complete(&id.repo_dir(root).join("snapshots"), required))
}

fn newest_complete(snapshots: &Path, required: &[&str]) -> Option<PathBuf> {
    let mut dirs: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(snapshots)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            let modified = e.metadata().and_then(|m| m.modified());
            (modified.unwrap_or(std::time::UNIX_EPOCH), e.path())
        })
        .collect();
    dirs.sort();
    dirs.into_iter()
        .rev()
        .map(|(_, d)| d)
        .find(|d| snapshot_complete(d, required))
}

/// Whether a snapshot folder holds what a load needs, judged locally (no listing): every
/// `required` file, and weights: every shard its safetensors index names, or
/// `model.safetensors`, or the codec's `model.pth`. An interrupted download leaves its file
/// out of the snapshot (it lives in `blobs/*.incomplete`), so it is never taken as complete.
pub fn snapshot_complete(dir: &Path, required: &[&str]) -> bool {
    if !required.iter().all(|f| dir.join(f).is_file()) {
        return false;
    }
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        let Ok(text) = std::fs::read_to_string(&index) else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let Some(map) = v["weight_map"].as_object() else {
            return false;
        };
        return map.values().all(|f| {
            f.as_str().is_some_and(|f| {
                super::download::check_relative_name(f).is_ok() && dir.join(f).is_file()
            })
        });
    }
    dir.join("model.safetensors").is_file() || dir.join("model.pth").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        let id = HubId::parse("bosonai/higgs-audio-v2-generation-3B-base").unwrap();
        assert_eq!(id.revision, "main");
        assert!(!id.explicit_revision);
        let id = HubId::parse("org/name@refs/pr/1").unwrap();
        assert_eq!(
            (id.repo.as_str(), id.revision.as_str()),
            ("org/name", "refs/pr/1")
        );
        assert_eq!(id.to_string(), "org/name@refs/pr/1");
        for bad in [
            "name",
            "a/b/c",
            "../x",
            "org/..",
            "org/na me",
            "org/x@",
            "org/x@../y",
            "/x",
        ] {
            assert!(HubId::parse(bad).is_err(), "{bad}");
        }
        let dir = HubId::parse("a/b").unwrap().repo_dir(Path::new("/c"));
        assert_eq!(dir, Path::new("/c/models--a--b"));
    }

    #[test]
    fn options_from_vars() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            HubOptions::from_vars(move |k| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            })
        };
        let o = vars(&[("HOME", "/h")]);
        assert_eq!(o.endpoint, "https://huggingface.co");
        assert_eq!(o.cache_dir, Path::new("/h/.cache/huggingface/hub"));
        assert_eq!(o.search_roots.len(), 1);
        assert!(!o.offline && o.progress && o.token.is_none());
        let o = vars(&[
            ("HOME", "/h"),
            ("HF_HOME", "/hf"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_HUB_OFFLINE", "1"),
            ("HF_TOKEN", "t"),
        ]);
        assert_eq!(o.cache_dir, Path::new("/hf/hub"));
        assert_eq!(o.endpoint, "http://127.0.0.1:9");
        assert!(o.offline);
        assert_eq!(o.token.as_deref(), Some("t"));
        let o = vars(&[
            ("HF_HOME", "/hf"),
            ("HF_HUB_CACHE", "/c"),
            ("HF_HUB_OFFLINE", "0"),
        ]);
        assert_eq!(o.cache_dir, Path::new("/c"));
        assert_eq!(
            o.search_roots,
            [PathBuf::from("/c"), PathBuf::from("/hf/hub")]
        );
        assert!(!o.offline);
    }
}
