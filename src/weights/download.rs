//! Hugging Face hub downloads into the standard cache layout, as `huggingface_hub` writes it:
//! `models--org--name/blobs/<etag>` (content), `snapshots/<commit>/<file>` (relative symlinks
//! to the blobs), `refs/<revision>` (the commit a branch or tag pointed at). A blob is written
//! as `blobs/<etag>.incomplete` and resumed with an HTTP Range request after a cut connection
//! or an interrupted run. Only what the engine loads is fetched (see [`wanted_files`]).
//! May use: error, weights::hub (ids, cache paths). Spec: the hub's HTTP layout
//! (`{endpoint}/{repo}/resolve/{revision}/{file}`, `{endpoint}/api/models/{repo}/revision/{revision}`).
//!
//! Everything the server says is bounded before use: JSON bodies have size caps, file names
//! must be plain relative paths inside the snapshot, etags and commits must be plain names,
//! and a body may not run past its announced size.

use std::fs::{self, File, OpenOptions};
use std::io::{IsTerminal, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Deserialize;

use super::hub::{HubId, HubOptions};
use crate::error::{Error, Result};

/// The repo listing (`siblings`) of a model with thousands of files is still well under this.
const LISTING_MAX_BYTES: u64 = 16 << 20;
/// A safetensors index maps tensor names to shards: ~100 KiB for the released 6B model.
const INDEX_MAX_BYTES: u64 = 64 << 20;
/// Attempts per file; each one resumes where the previous one stopped.
const MAX_ATTEMPTS: usize = 5;
/// Relative redirects followed by the metadata request (renamed repos answer 307 to the new
/// path); an absolute one (the LFS CDN) is where the metadata request stops, as in huggingface_hub.
const MAX_RELATIVE_REDIRECTS: usize = 5;

/// Files the engine reads when the repo has them: model and generation configs, tokenizer.
const META_FILES: &[&str] = &[
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
];
const INDEX_FILE: &str = "model.safetensors.index.json";
const SINGLE_FILE: &str = "model.safetensors";
/// The audio codec's PyTorch checkpoint (bosonai/higgs-audio-v2-tokenizer).
const CODEC_FILE: &str = "model.pth";

#[derive(Deserialize)]
struct Listing {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(Deserialize)]
struct Sibling {
    rfilename: String,
}

/// One download session: the HTTP agents and where it writes.
struct Hub<'a> {
    id: &'a HubId,
    opts: &'a HubOptions,
    /// Follows no redirect, so the metadata request sees the hub's own headers.
    meta_agent: ureq::Agent,
    /// Follows redirects (to the LFS CDN) for file bodies.
    body_agent: ureq::Agent,
    repo_dir: PathBuf,
}

/// Downloads what the engine needs of `id` into `opts.cache_dir` and returns the snapshot
/// folder. `required` files must be in the repo.
pub fn download_snapshot(id: &HubId, required: &[&str], opts: &HubOptions) -> Result<PathBuf> {
    let hub = Hub::new(id, opts);
    let (commit, names) = hub.listing()?;
    let snapshot = hub.repo_dir.join("snapshots").join(&commit);
    let mut files =
        wanted_files(&names, required).map_err(|reason| hub.err(&hub.api_url(), reason))?;
    if names.iter().any(|n| n == INDEX_FILE) {
        hub.fetch(&commit, INDEX_FILE)?;
        let shards = index_shards(&snapshot.join(INDEX_FILE))
            .map_err(|reason| hub.err(&hub.file_url(&commit, INDEX_FILE), reason))?;
        for shard in shards {
            if !names.contains(&shard) {
                let reason =
                    format!("the index names shard `{shard}`, which the repo does not list");
                return Err(hub.err(&hub.api_url(), reason));
            }
            if !files.contains(&shard) {
                files.push(shard);
            }
        }
    }
    for f in &files {
        hub.fetch(&commit, f)?;
    }
    if id.revision != commit {
        hub.write_ref(&commit)?;
    }
    Ok(snapshot)
}

/// The files to fetch from a repo listing: the engine's metadata files that exist, every
/// `required` one (an error when absent), and the weights (`model.safetensors` when there is
/// no index; the shards of an index are added once the index is read) and the codec's `model.pth`.
pub fn wanted_files(
    names: &[String],
    required: &[&str],
) -> std::result::Result<Vec<String>, String> {
    let has = |f: &str| names.iter().any(|n| n == f);
    if let Some(missing) = required.iter().find(|f| !has(f)) {
        return Err(format!("the repo has no `{missing}`"));
    }
    let mut files: Vec<String> = Vec::new();
    let single = if has(INDEX_FILE) {
        None
    } else {
        Some(SINGLE_FILE)
    };
    let candidates = META_FILES.iter().copied().chain(required.iter().copied());
    for f in candidates.chain(single).chain([CODEC_FILE]) {
        if has(f) && !files.iter().any(|g| g == f) {
            files.push(f.to_string());
        }
    }
    Ok(files)
}

/// The shard names of a safetensors index, each a plain relative path.
fn index_shards(path: &Path) -> std::result::Result<Vec<String>, String> {
    let len = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len > INDEX_MAX_BYTES {
        return Err(format!(
            "the index is {len} bytes, over the {INDEX_MAX_BYTES}-byte cap"
        ));
    }
    let text = fs::read_to_string(path).map_err(|e| format!("reading the index: {e}"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("index: {e}"))?;
    let map = v["weight_map"]
        .as_object()
        .ok_or("index: `weight_map` missing or not an object")?;
    let mut shards: Vec<String> = Vec::new();
    for f in map.values() {
        let f = f.as_str().ok_or("index: a shard name is not a string")?;
        check_relative_name(f)?;
        if !shards.iter().any(|s| s == f) {
            shards.push(f.to_string());
        }
    }
    Ok(shards)
}

/// A file name from the server must stay inside the snapshot folder: relative, no `..`, no
/// `.`, no empty segment, no backslash or NUL (a Windows separator would escape there).
pub fn check_relative_name(name: &str) -> std::result::Result<(), String> {
    let plain = !name.is_empty()
        && name.len() <= 1024
        && !name.contains(['\\', '\0'])
        && !name.starts_with('/')
        && name
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && Path::new(name)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(())
    } else {
        Err(format!(
            "refused file name {name:?} from the server: not a plain relative path"
        ))
    }
}

/// Commits and etags become file names: plain ASCII names only.
fn check_plain_component(what: &str, value: &str) -> std::result::Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "refused {what} {value:?} from the server: not a plain name"
        ))
    }
}

/// `"abc"`, `W/"abc"` → `abc` (the hub quotes etags; weak ones come through proxies).
fn normalize_etag(raw: &str) -> &str {
    raw.trim().trim_start_matches("W/").trim_matches('"')
}

/// Percent-encodes one URL path segment (file names may hold spaces; revisions may hold `/`).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn header<'r>(resp: &'r ureq::http::Response<ureq::Body>, name: &str) -> Option<&'r str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

impl<'a> Hub<'a> {
    fn new(id: &'a HubId, opts: &'a HubOptions) -> Self {
        let agent = |redirects: u32| -> ureq::Agent {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(redirects)
                .timeout_connect(Some(Duration::from_secs(30)))
                .user_agent(concat!("higgs-engine/", env!("CARGO_PKG_VERSION")))
                .build()
                .into()
        };
        Hub {
            id,
            opts,
            meta_agent: agent(0),
            body_agent: agent(10),
            repo_dir: id.repo_dir(&opts.cache_dir),
        }
    }

    fn err(&self, url: &str, reason: impl Into<String>) -> Error {
        Error::Hub {
            repo: self.id.to_string(),
            url: url.to_string(),
            reason: reason.into(),
        }
    }

    fn io_err(&self, url: &str, path: &Path, e: std::io::Error) -> Error {
        self.err(url, format!("{}: {e}", path.display()))
    }

    fn api_url(&self) -> String {
        format!(
            "{}/api/models/{}/revision/{}",
            self.opts.endpoint,
            self.id.repo,
            encode_segment(&self.id.revision)
        )
    }

    fn file_url(&self, commit: &str, name: &str) -> String {
        let path: Vec<String> = name.split('/').map(encode_segment).collect();
        format!(
            "{}/{}/resolve/{commit}/{}",
            self.opts.endpoint,
            self.id.repo,
            path.join("/")
        )
    }

    fn authorize<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.opts.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// A status the caller cannot use, said the way a user can act on it.
    fn status_err(&self, url: &str, status: u16) -> Error {
        let hint = match status {
            401 | 403 => ": the repo is gated or private; set HF_TOKEN to a token that may read it",
            404 => ": no such repo, revision or file",
            _ => "",
        };
        self.err(url, format!("HTTP {status}{hint}"))
    }

    /// The commit the revision points at and every file name in the repo (all checked).
    fn listing(&self) -> Result<(String, Vec<String>)> {
        let url = self.api_url();
        let mut resp = self
            .authorize(self.body_agent.get(&url))
            .call()
            .map_err(|e| self.err(&url, e.to_string()))?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(self.status_err(&url, status));
        }
        let body = resp
            .body_mut()
            .with_config()
            .limit(LISTING_MAX_BYTES)
            .read_to_string()
            .map_err(|e| self.err(&url, format!("reading the listing: {e}")))?;
        let listing: Listing =
            serde_json::from_str(&body).map_err(|e| self.err(&url, format!("listing: {e}")))?;
        let commit = listing
            .sha
            .ok_or_else(|| self.err(&url, "the listing has no commit `sha`"))?;
        check_plain_component("commit", &commit).map_err(|r| self.err(&url, r))?;
        let mut names = Vec::with_capacity(listing.siblings.len());
        for s in listing.siblings {
            check_relative_name(&s.rfilename).map_err(|r| self.err(&url, r))?;
            names.push(s.rfilename);
        }
        Ok((commit, names))
    }

    /// Makes `snapshots/<commit>/<name>` exist, downloading its blob unless it is cached.
    fn fetch(&self, commit: &str, name: &str) -> Result<()> {
        let link = self.repo_dir.join("snapshots").join(commit).join(name);
        if link.is_file() {
            return Ok(());
        }
        let url = self.file_url(commit, name);
        let (etag, size) = self.metadata(&url)?;
        let blobs = self.repo_dir.join("blobs");
        fs::create_dir_all(&blobs).map_err(|e| self.io_err(&url, &blobs, e))?;
        let blob = blobs.join(&etag);
        if !blob.is_file() {
            self.download_blob(&url, name, &blob, size)?;
        }
        self.link(&url, &blob, &link, name)
    }

    /// The etag (blob name) and size of a file, from a HEAD that follows only relative
    /// redirects: an LFS file answers 302 to the CDN, and the hub's `X-Linked-*` headers on
    /// that answer are the ones that name the blob.
    fn metadata(&self, url: &str) -> Result<(String, Option<u64>)> {
        let mut current = url.to_string();
        for _ in 0..=MAX_RELATIVE_REDIRECTS {
            let resp = self
                .authorize(self.meta_agent.head(&current))
                .call()
                .map_err(|e| self.err(&current, e.to_string()))?;
            let status = resp.status().as_u16();
            let location = header(&resp, "location").filter(|l| l.starts_with('/'));
            if (300..400).contains(&status) {
                if let Some(loc) = location {
                    current = format!("{}{loc}", origin(&current));
                    continue;
                }
            } else if status != 200 {
                return Err(self.status_err(&current, status));
            }
            let etag = header(&resp, "x-linked-etag")
                .or_else(|| header(&resp, "etag"))
                .map(normalize_etag)
                .ok_or_else(|| self.err(&current, "the answer has no ETag"))?
                .to_string();
            check_plain_component("etag", &etag).map_err(|r| self.err(&current, r))?;
            let size = header(&resp, "x-linked-size")
                .or_else(|| header(&resp, "content-length"))
                .and_then(|s| s.trim().parse::<u64>().ok());
            return Ok((etag, size));
        }
        Err(self.err(url, "too many redirects"))
    }

    /// Downloads into `<blob>.incomplete`, resuming after cut connections, then renames it.
    fn download_blob(&self, url: &str, name: &str, blob: &Path, size: Option<u64>) -> Result<()> {
        let partial = blob.with_extension("incomplete");
        let bar = self.progress_bar(name, size);
        let mut last_error = String::new();
        for _ in 0..MAX_ATTEMPTS {
            let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
            match self.download_attempt(url, &partial, have, size, &bar) {
                Ok(()) => {
                    bar.finish_and_clear();
                    return fs::rename(&partial, blob).map_err(|e| self.io_err(url, blob, e));
                }
                Err(Attempt::Fatal(e)) => {
                    bar.abandon();
                    return Err(e);
                }
                Err(Attempt::Retry(why)) => last_error = why,
            }
        }
        bar.abandon();
        Err(self.err(
            url,
            format!("gave up after {MAX_ATTEMPTS} attempts: {last_error}"),
        ))
    }

    /// One GET, from byte `have` on when there is a partial file.
    fn download_attempt(
        &self,
        url: &str,
        partial: &Path,
        have: u64,
        size: Option<u64>,
        bar: &ProgressBar,
    ) -> std::result::Result<(), Attempt> {
        if size.is_some_and(|s| have == s) {
            return Ok(());
        }
        let mut req = self.authorize(self.body_agent.get(url));
        if have > 0 {
            req = req.header("Range", format!("bytes={have}-"));
        }
        let mut resp = req.call().map_err(|e| Attempt::Retry(e.to_string()))?;
        let status = resp.status().as_u16();
        let (append, start) = match status {
            206 if have > 0 => (true, have),
            200 => (false, 0),
            // A Range past the end: the partial file is not what we thought; start over.
            416 => {
                fs::remove_file(partial)
                    .map_err(|e| Attempt::Fatal(self.io_err(url, partial, e)))?;
                return Err(Attempt::Retry("HTTP 416 on resume".into()));
            }
            s if s >= 500 => return Err(Attempt::Retry(format!("HTTP {s}"))),
            s => return Err(Attempt::Fatal(self.status_err(url, s))),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(partial)
            .map_err(|e| Attempt::Fatal(self.io_err(url, partial, e)))?;
        bar.set_position(start);
        let mut reader = resp.body_mut().as_reader();
        let written = self.copy_bounded(url, &mut reader, &mut file, start, size, bar)?;
        file.flush()
            .map_err(|e| Attempt::Fatal(self.io_err(url, partial, e)))?;
        match size {
            Some(s) if written != s => Err(Attempt::Retry(format!(
                "the body ended at byte {written} of {s}"
            ))),
            _ => Ok(()),
        }
    }

    /// Copies the body to `file`, refusing to write past the announced size. Returns the
    /// file's length.
    fn copy_bounded(
        &self,
        url: &str,
        reader: &mut impl Read,
        file: &mut File,
        start: u64,
        size: Option<u64>,
        bar: &ProgressBar,
    ) -> std::result::Result<u64, Attempt> {
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = start;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(pos),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Attempt::Retry(format!("at byte {pos}: {e}"))),
            };
            if size.is_some_and(|s| pos + n as u64 > s) {
                let s = size.unwrap_or_default();
                return Err(Attempt::Fatal(
                    self.err(url, format!("the body runs past its announced {s} bytes")),
                ));
            }
            file.write_all(&buf[..n])
                .map_err(|e| Attempt::Fatal(self.err(url, format!("writing: {e}"))))?;
            pos += n as u64;
            bar.set_position(pos);
        }
    }

    /// `snapshots/<commit>/<name>` → `../../blobs/<etag>` (one more `..` per folder in `name`),
    /// the relative link huggingface_hub makes, so the cache can be moved whole. Where links
    /// are not available the blob is copied.
    fn link(&self, url: &str, blob: &Path, link: &Path, name: &str) -> Result<()> {
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io_err(url, dir, e))?;
        }
        let depth = name.split('/').count();
        let mut target = PathBuf::new();
        for _ in 0..depth + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(blob.file_name().unwrap_or_default());
        let _ = fs::remove_file(link);
        #[cfg(unix)]
        let made = std::os::unix::fs::symlink(&target, link);
        #[cfg(not(unix))]
        let made = fs::copy(blob, link).map(|_| ());
        made.map_err(|e| self.io_err(url, link, e))
    }

    fn write_ref(&self, commit: &str) -> Result<()> {
        let path = self.repo_dir.join("refs").join(&self.id.revision);
        let url = self.api_url();
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| self.io_err(&url, dir, e))?;
        }
        fs::write(&path, commit).map_err(|e| self.io_err(&url, &path, e))
    }

    /// A byte bar on stderr, hidden when stderr is not a terminal (logs, CI) or when asked.
    fn progress_bar(&self, name: &str, size: Option<u64>) -> ProgressBar {
        let bar = match size {
            Some(s) => ProgressBar::new(s),
            None => ProgressBar::no_length(),
        };
        let visible = self.opts.progress && std::io::stderr().is_terminal();
        bar.set_draw_target(if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("{}: {name}", self.id.repo));
        bar
    }
}

/// Why one download attempt stopped: worth resuming (cut connection, 5xx), or not.
enum Attempt {
    Retry(String),
    Fatal(Error),
}

/// `scheme://host[:port]` of a URL, for the relative redirects of the metadata request.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_the_server() {
        for ok in ["config.json", "sub/dir/model.safetensors", "a..b"] {
            assert!(check_relative_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "../../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "./x",
            "a//b",
            "",
            "a\\..\\b",
            "c:/x\0",
        ] {
            assert!(check_relative_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_plain_component("etag", "abc-123_x").is_ok());
        assert!(check_plain_component("etag", "../x").is_err());
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
    }

    #[test]
    fn files_to_fetch() {
        let names: Vec<String> = [
            "config.json",
            "model.safetensors",
            "README.md",
            "tokenizer.json",
        ]
        .map(String::from)
        .to_vec();
        let f = wanted_files(&names, &["config.json"]).unwrap();
        assert_eq!(f, ["config.json", "tokenizer.json", "model.safetensors"]);
        assert!(wanted_files(&names, &["model.pth"]).is_err());
        let sharded: Vec<String> = ["config.json", INDEX_FILE, "model-1.safetensors"]
            .map(String::from)
            .to_vec();
        assert_eq!(wanted_files(&sharded, &[]).unwrap(), ["config.json"]);
    }

    #[test]
    fn urls() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(origin("http://127.0.0.1:80/a/b"), "http://127.0.0.1:80");
    }
}
