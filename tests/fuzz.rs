//! Fuzz targets for every parser that reads user-supplied files: the safetensors header and the
//! shard index, the `model.pth` pickle (alone and inside its zip), the LLM and codec
//! `config.json`, and `.npy` code files. Each target feeds arbitrary bytes and structured
//! mutations (flip, insert, delete, truncate, overwrite with boundary values; for JSON, a field
//! replaced by a hostile value) of the fixture files, and asserts the parser returns Ok or a
//! clean Err: no panic, no allocation above `ALLOC_CAP`, and an accepted config yields finite
//! derived values. proptest drives the inputs (stable Rust, runs under `cargo test`).
//!
//! Bounded by default (`HIGGS_FUZZ_CASES`, default 2000 per target); `scripts/fuzz.sh SECONDS`
//! sets `HIGGS_FUZZ_SECONDS` to run each target for that long instead. Failures found are kept
//! as regression cases in tests/hostile_input.rs. spec: issue 12 §2.

use higgs_engine::codec::config::CodecConfig;
use higgs_engine::codec::npy;
use higgs_engine::codec::pth;
use higgs_engine::config::ModelConfig;
use higgs_engine::weights::safetensors::{self as st, Checkpoint};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest single allocation a parser may make on hostile input. Above it the allocator
/// refuses, which aborts the run with "memory allocation of N bytes failed": a found bug.
const ALLOC_CAP: usize = 512 << 20;
static LARGEST_ALLOC: AtomicUsize = AtomicUsize::new(0);

struct CappedAlloc;

// SAFETY: forwards to the system allocator unchanged; only refuses (null) requests above the
// cap, which GlobalAlloc permits.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(l.size(), Ordering::Relaxed);
        if l.size() > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        System.alloc(l)
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l)
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LARGEST_ALLOC.fetch_max(new, Ordering::Relaxed);
        if new > ALLOC_CAP {
            return std::ptr::null_mut();
        }
        System.realloc(p, l, new)
    }
}

#[global_allocator]
static GLOBAL: CappedAlloc = CappedAlloc;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(rel)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs_fuzz_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `test` on inputs from `strategy` until the case count or the time budget is spent, and
/// print how many ran. A failure (Err or panic) is reported with its shrunk input.
fn fuzz<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seconds = env("HIGGS_FUZZ_SECONDS");
    let cases = env("HIGGS_FUZZ_CASES").unwrap_or(2000);
    let budget = seconds.map(Duration::from_secs);
    let chunk = if budget.is_some() {
        1000
    } else {
        cases.min(1000)
    } as u32;
    let t0 = Instant::now();
    let mut done: u64 = 0;
    let mut runner = TestRunner::new(Config {
        cases: chunk,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    });
    loop {
        let more = match budget {
            Some(b) => t0.elapsed() < b,
            None => done < cases,
        };
        if !more {
            break;
        }
        if let Err(e) = runner.run(&strategy, &test) {
            panic!("fuzz target {name} failed after {done} cases: {e}");
        }
        done += u64::from(chunk);
    }
    eprintln!(
        "fuzz {name}: {done} inputs in {:.1} s, 0 failures, largest allocation {} bytes",
        t0.elapsed().as_secs_f64(),
        LARGEST_ALLOC.load(Ordering::Relaxed)
    );
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Eight little-endian bytes of a boundary value (0, -1, 2^31, 2^32, 2^63 ...).
    Word(usize, u64),
}

fn boundary_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(u64::MAX),
        Just(1 << 31),
        Just(1 << 32),
        Just((1 << 32) + 3),
        Just(1 << 63),
        Just(i64::MAX as u64),
        Just(0x7fc0_0000),
        any::<u64>(),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let pos = any::<usize>();
    prop_oneof![
        (pos, 1u8..=255).prop_map(|(p, m)| Edit::Flip(p, m)),
        (pos, any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (pos, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| Edit::Insert(p, b)),
        (pos, 1usize..64).prop_map(|(p, n)| Edit::Delete(p, n)),
        pos.prop_map(Edit::Truncate),
        (pos, boundary_word()).prop_map(|(p, w)| Edit::Word(p, w)),
    ]
}

/// Positions are taken modulo the length; `focus` (when non-empty) is the byte range most edits
/// land in (the header of a file whose body is mostly tensor data).
fn apply(base: &[u8], edits: &[Edit], focus: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    for e in edits {
        let n = b.len().max(1);
        let at = |p: usize| {
            if focus > 0 && !p.is_multiple_of(4) {
                p % focus.min(n)
            } else {
                p % n
            }
        };
        match e {
            Edit::Flip(p, m) if !b.is_empty() => {
                let i = at(*p);
                b[i] ^= m;
            }
            Edit::Set(p, v) if !b.is_empty() => {
                let i = at(*p);
                b[i] = *v;
            }
            Edit::Insert(p, bytes) => {
                let i = at(*p).min(b.len());
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Delete(p, k) if !b.is_empty() => {
                let i = at(*p);
                let j = (i + k).min(b.len());
                b.drain(i..j);
            }
            Edit::Truncate(p) => b.truncate(p % n),
            Edit::Word(p, w) if b.len() >= 8 => {
                let i = at(*p).min(b.len() - 8);
                b[i..i + 8].copy_from_slice(&w.to_le_bytes());
            }
            _ => {}
        }
    }
    b
}

/// Arbitrary bytes, or the base file with a few edits.
fn bytes_or_mutation(base: Vec<u8>, focus: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        4 => prop::collection::vec(edit(), 1..6).prop_map(move |e| apply(&base, &e, focus)),
    ]
}

/// A JSON value likely to break a config field.
fn hostile_json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1u64 << 32)),
        Just(json!((1u64 << 32) + 5)),
        Just(json!(u64::MAX)),
        Just(json!(1e39)),
        Just(json!(-0.0)),
        Just(json!(1e-50)),
        Just(json!(null)),
        Just(json!("llama")),
        Just(json!([])),
        Just(json!([0, 99, 1u64 << 40])),
        Just(json!({})),
        Just(json!(true)),
        any::<u64>().prop_map(|x| json!(x)),
        any::<i64>().prop_map(|x| json!(x)),
        any::<f64>()
            .prop_filter("finite", |x| x.is_finite())
            .prop_map(|x| json!(x)),
        (0u32..24).prop_map(|s| json!(1u64 << s)),
    ]
}

/// Every leaf path of a JSON object (object keys only; arrays count as leaves).
fn leaf_paths(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            prefix.push(k.clone());
            out.push(prefix.clone());
            leaf_paths(x, prefix, out);
            prefix.pop();
        }
    }
}

fn set_path(v: &mut serde_json::Value, path: &[String], x: serde_json::Value) {
    // An earlier edit may have replaced a parent by a non-object: then this edit is skipped.
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for k in parents {
        match cur.get_mut(k.as_str()) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(o) = cur.as_object_mut() {
        o.insert(last.clone(), x);
    }
}

/// A JSON config with up to four fields replaced by hostile values, as text; or raw mutations
/// of the file's text.
fn json_mutation(base_text: String) -> impl Strategy<Value = String> {
    let base: serde_json::Value = serde_json::from_str(&base_text).unwrap();
    let mut paths = Vec::new();
    leaf_paths(&base, &mut Vec::new(), &mut paths);
    let n = paths.len();
    let fields = prop::collection::vec((0..n, hostile_json()), 1..5).prop_map(move |edits| {
        let mut v = base.clone();
        for (i, x) in edits {
            set_path(&mut v, &paths[i], x);
        }
        v.to_string()
    });
    let text = base_text.clone().into_bytes();
    let raw = prop::collection::vec(edit(), 1..4)
        .prop_map(move |e| String::from_utf8_lossy(&apply(&text, &e, 0)).into_owned());
    prop_oneof![3 => fields, 1 => raw]
}

#[test]
fn fuzz_safetensors_header() {
    let base = std::fs::read(fixture("llm/model.safetensors")).unwrap();
    let header_len = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let p = Path::new("fuzz.safetensors");
    fuzz("safetensors", bytes_or_mutation(base, header_len), |b| {
        if let Ok(t) = st::deserialize(p, &b) {
            for (name, view) in t.tensors() {
                let _ = st::view_to_storage(p, &name, &view);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_shard_index() {
    let dir = scratch("index");
    std::fs::copy(
        fixture("llm/model.safetensors"),
        dir.join("model-00001-of-00001.safetensors"),
    )
    .unwrap();
    let bytes = std::fs::read(fixture("llm/model.safetensors")).unwrap();
    let names: Vec<String> = st::deserialize(Path::new("x"), &bytes)
        .unwrap()
        .names()
        .into_iter()
        .cloned()
        .collect();
    let map: serde_json::Map<String, serde_json::Value> = names
        .iter()
        .map(|n| (n.clone(), "model-00001-of-00001.safetensors".into()))
        .collect();
    let index = serde_json::json!({"metadata": {"total_size": 1}, "weight_map": map}).to_string();
    let seq = AtomicUsize::new(0);
    fuzz("shard-index", json_mutation(index), |text| {
        // One file per case: the index is read from the folder.
        let case = dir.join(format!("c{}", seq.fetch_add(1, Ordering::Relaxed) % 4));
        std::fs::create_dir_all(&case).unwrap();
        let shard = case.join("model-00001-of-00001.safetensors");
        if !shard.exists() {
            std::fs::hard_link(dir.join("model-00001-of-00001.safetensors"), &shard)
                .or_else(|_| {
                    std::fs::copy(dir.join("model-00001-of-00001.safetensors"), &shard).map(|_| ())
                })
                .unwrap();
        }
        std::fs::write(case.join("model.safetensors.index.json"), text).unwrap();
        if let Ok(ck) = Checkpoint::open(&case) {
            // Every path it opened must be inside the case folder.
            let root = case.canonicalize().unwrap();
            for k in ck.keys().cloned().collect::<Vec<_>>() {
                if let Ok(info) = ck.info(&k) {
                    prop_assert!(info.file.canonicalize().unwrap().starts_with(&root));
                }
            }
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn fixture_pickle() -> Vec<u8> {
    use std::io::Read;
    let mut z =
        zip::ZipArchive::new(std::fs::File::open(fixture("codec/model.pth")).unwrap()).unwrap();
    let name = (0..z.len())
        .map(|i| z.name_for_index(i).unwrap().to_string())
        .find(|n| n.ends_with("data.pkl"))
        .unwrap();
    let mut b = Vec::new();
    z.by_name(&name).unwrap().read_to_end(&mut b).unwrap();
    b
}

#[test]
fn fuzz_pickle() {
    let base = fixture_pickle();
    let p = Path::new("fuzz.pkl");
    fuzz("pickle", bytes_or_mutation(base, 0), |b| {
        if let Ok(refs) = pth::parse_state_dict_pickle(p, &b) {
            // Geometry checks must be clean on any view the pickle can describe.
            for (k, t) in &refs {
                let _ = pth::view_extent(p, k, t);
                let _ = pth::materialize(p, k, t, &[0u8; 64]);
            }
        }
        Ok(())
    });
}

#[test]
fn fuzz_pth_zip() {
    let base = std::fs::read(fixture("codec/model.pth")).unwrap();
    let dir = scratch("pth");
    let seq = AtomicUsize::new(0);
    // Most edits land in the first 100 kB: local headers, data.pkl and the first storages.
    fuzz("pth-zip", bytes_or_mutation(base, 100_000), |b| {
        let f = dir.join(format!("m{}.pth", seq.fetch_add(1, Ordering::Relaxed) % 4));
        std::fs::write(&f, &b).unwrap();
        let _ = pth::read_pth(&f);
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fuzz_llm_config() {
    let text = std::fs::read_to_string(fixture("llm/config.json")).unwrap();
    let p = Path::new("config.json");
    fuzz("llm-config", json_mutation(text), |t| {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&t) else {
            return Ok(());
        };
        if let Ok(c) = ModelConfig::from_json(p, &v) {
            prop_assert!(c.rope_inv_freq().iter().all(|f| f.is_finite()));
            prop_assert!(c.rms_eps > 0.0);
            let _ = (c.q_dim(), c.kv_dim(), c.codebook_rows());
        }
        Ok(())
    });
}

#[test]
fn fuzz_codec_config() {
    let text = std::fs::read_to_string(fixture("codec/config.json")).unwrap();
    let p = Path::new("config.json");
    fuzz("codec-config", json_mutation(text), |t| {
        if let Ok(c) = CodecConfig::from_json(p, &t) {
            let _ = (
                c.hop_length(),
                c.frame_rate(),
                c.quantizer_dim(),
                c.encoder_out_channels(),
                c.semantic_downsample_factor(),
                c.n_q_for_bandwidth(Some(1.5)),
            );
        }
        Ok(())
    });
}

#[test]
fn fuzz_npy() {
    let dir = scratch("npy");
    let good = dir.join("good.npy");
    npy::write_codes(&good, &[vec![1, 2, 3, 4], vec![5, 6, 7, 63]]).unwrap();
    let base = std::fs::read(&good).unwrap();
    let seq = AtomicUsize::new(0);
    fuzz("npy", bytes_or_mutation(base, 64), |b| {
        let _ = npy::parse_npy(Path::new("fuzz.npy"), &b);
        // The code-file path too (shape and value checks), on a few of the cases.
        let i = seq.fetch_add(1, Ordering::Relaxed);
        if i.is_multiple_of(8) {
            let f = dir.join(format!("c{}.npy", i % 4));
            std::fs::write(&f, &b).unwrap();
            if let Ok(codes) = npy::read_codes(&f) {
                prop_assert!(!codes.is_empty() && !codes[0].is_empty());
                let _ = npy::check_codes(&f, &codes, 8, 64);
            }
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&dir);
}
