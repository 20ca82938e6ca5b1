//! Hugging Face downloads (weights/hub.rs, weights/download.rs) against a local HTTP/1.1 server
//! on 127.0.0.1 that serves the fixture model `tests/fixtures/reference/llm` in the hub's URL
//! layout: the API listing, `resolve/<revision>/<file>` with ETag / X-Repo-Commit / Range, and
//! on request a body cut half way or a hostile listing. No internet; every test has its own
//! server and cache folder and passes explicit `HubOptions`, so nothing reads the environment.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use higgs_engine::config::ModelConfig;
use higgs_engine::weights::hub::{resolve_model_with, HubOptions};
use higgs_engine::weights::safetensors::Checkpoint;
use sha2::{Digest, Sha256};

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    range: Option<String>,
    authorization: Option<String>,
}

#[derive(Default)]
struct State {
    /// repo → (file → bytes).
    repos: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// repo → a listing served instead of the real one.
    listing_override: BTreeMap<String, String>,
    /// Files whose next full GET sends half the body and closes the connection.
    cut_once: Vec<String>,
    seen: Vec<Seen>,
}

struct Server {
    addr: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Server {
    fn start(state: State) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let addr = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Mutex::new(state));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &st);
                });
            }
        });
        Server { addr, state, stop }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    fn options(&self, cache: &Path) -> HubOptions {
        HubOptions {
            endpoint: self.addr.clone(),
            cache_dir: cache.to_path_buf(),
            search_roots: vec![cache.to_path_buf()],
            token: None,
            offline: false,
            progress: false,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so its thread ends.
        let _ = TcpStream::connect(self.addr.trim_start_matches("http://"));
    }
}

/// Reads one request head and answers it; every answer closes the connection.
fn serve(conn: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut range, mut authorization) = (None, None);
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "range" => range = Some(v.trim().to_string()),
                "authorization" => authorization = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let seen = Seen {
        method,
        path,
        range,
        authorization,
    };
    state.lock().unwrap().seen.push(seen.clone());
    respond(conn, state, &seen)
}

fn respond(mut conn: TcpStream, state: &Mutex<State>, req: &Seen) -> std::io::Result<()> {
    let mut st = state.lock().unwrap();
    if let Some(repo) = req
        .path
        .strip_prefix("/api/models/")
        .and_then(|p| p.split_once("/revision/"))
        .map(|(r, _)| r.to_string())
    {
        let body = if let Some(body) = st.listing_override.get(&repo) {
            body.clone()
        } else if let Some(files) = st.repos.get(&repo) {
            let siblings: Vec<_> = files
                .keys()
                .map(|f| serde_json::json!({ "rfilename": f }))
                .collect();
            serde_json::json!({ "id": repo, "sha": COMMIT, "siblings": siblings }).to_string()
        } else {
            return head(&mut conn, "404 Not Found", &[], 0);
        };
        head(
            &mut conn,
            "200 OK",
            &[("Content-Type", "application/json")],
            body.len(),
        )?;
        return conn.write_all(body.as_bytes());
    }
    // /{org}/{name}/resolve/{revision}/{file}
    let segs: Vec<&str> = req.path.trim_start_matches('/').splitn(5, '/').collect();
    let found = match segs.as_slice() {
        [org, name, "resolve", _rev, file] => st
            .repos
            .get(&format!("{org}/{name}"))
            .and_then(|files| files.get(*file))
            .map(|bytes| (file.to_string(), bytes.clone())),
        _ => None,
    };
    let Some((file, bytes)) = found else {
        return head(&mut conn, "404 Not Found", &[], 0);
    };
    let etag = format!("\"{:x}\"", Sha256::digest(&bytes));
    let hdrs = [("ETag", etag.as_str()), ("X-Repo-Commit", COMMIT)];
    if req.method == "HEAD" {
        return head(&mut conn, "200 OK", &hdrs, bytes.len());
    }
    let start: usize = req
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    if start > 0 {
        let cr = format!("bytes {start}-{}/{}", bytes.len() - 1, bytes.len());
        let mut h = hdrs.to_vec();
        h.push(("Content-Range", cr.as_str()));
        head(&mut conn, "206 Partial Content", &h, bytes.len() - start)?;
        return conn.write_all(&bytes[start..]);
    }
    head(&mut conn, "200 OK", &hdrs, bytes.len())?;
    if let Some(i) = st.cut_once.iter().position(|f| *f == file) {
        st.cut_once.remove(i);
        conn.write_all(&bytes[..bytes.len() / 2])?;
        conn.flush()?;
        return conn.shutdown(std::net::Shutdown::Both);
    }
    conn.write_all(&bytes)
}

fn head(
    conn: &mut TcpStream,
    status: &str,
    hdrs: &[(&str, &str)],
    len: usize,
) -> std::io::Result<()> {
    let mut s = format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n");
    for (k, v) in hdrs {
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    s.push_str("\r\n");
    conn.write_all(s.as_bytes())
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/llm")
}

/// The fixture model as a repo: the files the engine loads plus one it does not.
fn llm_repo() -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        files.insert(f.to_string(), std::fs::read(fixture_dir().join(f)).unwrap());
    }
    files.insert("README.md".to_string(), b"not needed".to_vec());
    files
}

/// A fresh cache folder for one test.
fn temp_cache(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("higgs-hub-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("hub")
}

fn with_repo(repo: &str, files: BTreeMap<String, Vec<u8>>) -> State {
    let mut st = State::default();
    st.repos.insert(repo.to_string(), files);
    st
}

fn assert_same_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>, names: &[&str]) {
    for f in names {
        let got = std::fs::read(dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert!(got == files[*f], "{f} differs from the served file");
    }
}

#[test]
fn downloads_into_the_hub_layout_then_serves_from_cache() {
    let files = llm_repo();
    let server = Server::start(with_repo("test-org/tiny-llm", files.clone()));
    let cache = temp_cache("layout");
    let mut opts = server.options(&cache);
    opts.token = Some("hf_test_token".into());

    let dir = resolve_model_with("test-org/tiny-llm", &["config.json"], &opts).unwrap();
    let repo = cache.join("models--test-org--tiny-llm");
    assert_eq!(dir, repo.join("snapshots").join(COMMIT));
    assert_same_files(
        &dir,
        &files,
        &["config.json", "generation_config.json", "model.safetensors"],
    );
    assert!(
        !dir.join("README.md").exists(),
        "only what the engine loads is fetched"
    );
    let link = std::fs::read_link(dir.join("model.safetensors")).unwrap();
    assert!(link.starts_with("../../blobs"), "{}", link.display());
    assert_eq!(
        std::fs::read_to_string(repo.join("refs/main")).unwrap(),
        COMMIT
    );
    ModelConfig::load(&dir).expect("config loads from the snapshot");
    Checkpoint::open(&dir).expect("checkpoint opens from the snapshot");

    let seen = server.seen();
    assert!(seen
        .iter()
        .all(|s| s.authorization.as_deref() == Some("Bearer hf_test_token")));
    let n = seen.len();
    let again = resolve_model_with("test-org/tiny-llm", &["config.json"], &opts).unwrap();
    assert_eq!(again, dir);
    let pinned = format!("test-org/tiny-llm@{COMMIT}");
    assert_eq!(
        resolve_model_with(&pinned, &["config.json"], &opts).unwrap(),
        dir
    );
    assert_eq!(server.seen().len(), n, "a cached model needs no network");
}

#[test]
fn sharded_checkpoint_fetches_index_and_every_shard() {
    let original = std::fs::read(fixture_dir().join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&original).unwrap();
    let mut tensors = st.tensors();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let half = tensors.len() / 2;
    let mut files = BTreeMap::new();
    let mut weight_map = serde_json::Map::new();
    for (k, part) in [&tensors[..half], &tensors[half..]].into_iter().enumerate() {
        let name = format!("model-0000{}-of-00002.safetensors", k + 1);
        for (key, _) in part {
            weight_map.insert(key.clone(), name.clone().into());
        }
        let bytes =
            safetensors::serialize(part.iter().map(|(n, v)| (n.clone(), v)), &None).unwrap();
        files.insert(name, bytes);
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    files.insert(
        "model.safetensors.index.json".into(),
        index.to_string().into_bytes(),
    );
    let config = std::fs::read(fixture_dir().join("config.json")).unwrap();
    files.insert("config.json".into(), config);

    let server = Server::start(with_repo("test-org/sharded", files.clone()));
    let cache = temp_cache("sharded");
    let dir = resolve_model_with(
        "test-org/sharded",
        &["config.json"],
        &server.options(&cache),
    )
    .unwrap();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_same_files(&dir, &files, &names);
    let ck = Checkpoint::open(&dir).expect("sharded checkpoint opens");
    assert_eq!(ck.keys().count(), tensors.len());
}

#[test]
fn cut_download_resumes_with_a_range_request() {
    let files = llm_repo();
    let mut state = with_repo("test-org/tiny-llm", files.clone());
    state.cut_once.push("model.safetensors".into());
    let server = Server::start(state);
    let cache = temp_cache("resume");
    let dir = resolve_model_with(
        "test-org/tiny-llm",
        &["config.json"],
        &server.options(&cache),
    )
    .unwrap();
    assert_same_files(&dir, &files, &["model.safetensors"]);
    let half = files["model.safetensors"].len() / 2;
    let ranges: Vec<String> = server.seen().into_iter().filter_map(|s| s.range).collect();
    assert_eq!(ranges, [format!("bytes={half}-")]);
    let blobs = cache.join("models--test-org--tiny-llm/blobs");
    for e in std::fs::read_dir(blobs).unwrap() {
        let name = e.unwrap().file_name();
        assert!(
            !name.to_string_lossy().ends_with(".incomplete"),
            "{name:?} left behind"
        );
    }
}

#[test]
fn offline_without_the_model_is_a_clear_error() {
    let server = Server::start(with_repo("test-org/tiny-llm", llm_repo()));
    let cache = temp_cache("offline");
    let mut opts = server.options(&cache);
    opts.offline = true;
    let err = resolve_model_with("test-org/tiny-llm", &["config.json"], &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("test-org/tiny-llm") && err.contains("HF_HUB_OFFLINE"),
        "{err}"
    );
    assert!(err.contains(&cache.display().to_string()), "{err}");
    assert!(server.seen().is_empty(), "offline touches no network");
}

#[test]
fn not_found_names_the_url_and_status() {
    let server = Server::start(State::default());
    let cache = temp_cache("404");
    let err = resolve_model_with(
        "test-org/missing",
        &["config.json"],
        &server.options(&cache),
    )
    .unwrap_err()
    .to_string();
    let url = format!("{}/api/models/test-org/missing/revision/main", server.addr);
    assert!(
        err.contains(&url) && err.contains("404") && err.contains("test-org/missing"),
        "{err}"
    );
}

#[test]
fn hostile_listing_is_refused() {
    let mut state = with_repo("test-org/evil", llm_repo());
    let listing = serde_json::json!({
        "sha": COMMIT,
        "siblings": [{ "rfilename": "config.json" }, { "rfilename": "../../etc/passwd" }],
    });
    state
        .listing_override
        .insert("test-org/evil".into(), listing.to_string());
    let server = Server::start(state);
    let cache = temp_cache("evil");
    let err = resolve_model_with("test-org/evil", &["config.json"], &server.options(&cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("../../etc/passwd") && err.contains("refused"),
        "{err}"
    );
    let fetched: Vec<Seen> = server
        .seen()
        .into_iter()
        .filter(|s| s.path.contains("/resolve/"))
        .collect();
    assert!(
        fetched.is_empty(),
        "nothing is fetched from a refused listing: {fetched:?}"
    );

    let mut state = State::default();
    state.listing_override.insert(
        "test-org/evil".into(),
        r#"{"sha": "../x", "siblings": []}"#.to_string(),
    );
    let server = Server::start(state);
    let err = resolve_model_with("test-org/evil", &[], &server.options(&cache))
        .unwrap_err()
        .to_string();
    assert!(err.contains("commit"), "{err}");
}

#[test]
fn codec_repo_fetches_config_and_model_pth() {
    let mut files = BTreeMap::new();
    files.insert(
        "config.json".to_string(),
        b"{\"sample_rate\": 24000}".to_vec(),
    );
    files.insert(
        "model.pth".to_string(),
        (0..=255u8).cycle().take(70_001).collect(),
    );
    let server = Server::start(with_repo("test-org/codec", files.clone()));
    let cache = temp_cache("codec");
    let dir =
        resolve_model_with("test-org/codec", &["config.json"], &server.options(&cache)).unwrap();
    assert_same_files(&dir, &files, &["config.json", "model.pth"]);
}

#[test]
fn required_file_missing_from_the_repo() {
    let server = Server::start(with_repo("test-org/tiny-llm", llm_repo()));
    let cache = temp_cache("required");
    let err = resolve_model_with("test-org/tiny-llm", &["model.pth"], &server.options(&cache))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("model.pth") && err.contains("test-org/tiny-llm"),
        "{err}"
    );
}
