//! The fuzz driver shared by tests/fuzz.rs and tests/fuzz_server.rs: a capped global
//! allocator (an allocation above `ALLOC_CAP` fails the run), the proptest loop bounded by case
//! count or time (`HIGGS_FUZZ_CASES`, `HIGGS_FUZZ_SECONDS`), and byte and JSON mutations.
#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest single allocation a parser may make on hostile input. Above it the allocator
/// refuses, which aborts the run with "memory allocation of N bytes failed": a found bug.
pub const ALLOC_CAP: usize = 512 << 20;
pub static LARGEST_ALLOC: AtomicUsize = AtomicUsize::new(0);

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

pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(rel)
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs_fuzz_{tag}_{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `test` on inputs from `strategy` until the case count or the time budget is spent, and
/// print how many ran. A failure (Err or panic) is reported with its shrunk input.
pub fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
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
    let config = Config {
        cases: chunk,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    // Inputs actually tested (counted in the test itself, not inferred from the chunking).
    let ran = std::sync::atomic::AtomicU64::new(0);
    let counted = |v: S::Value| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    };
    let mut round: u64 = 0;
    loop {
        let more = match budget {
            Some(b) => t0.elapsed() < b,
            None => ran.load(Ordering::Relaxed) < cases,
        };
        if !more {
            break;
        }
        // A fresh runner per chunk, seeded by the chunk number: new inputs each chunk, and a
        // failure replays from its round.
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&round.to_le_bytes());
        let rng = proptest::test_runner::TestRng::from_seed(
            proptest::test_runner::RngAlgorithm::ChaCha,
            &seed,
        );
        let mut runner = TestRunner::new_with_rng(config.clone(), rng);
        if let Err(e) = runner.run(&strategy, counted) {
            panic!("fuzz target {name} failed in round {round}: {e}");
        }
        round += 1;
    }
    let done = ran.load(Ordering::Relaxed);
    eprintln!(
        "fuzz {name}: {done} inputs in {:.1} s, 0 failures, largest allocation {} bytes",
        t0.elapsed().as_secs_f64(),
        LARGEST_ALLOC.load(Ordering::Relaxed)
    );
}

/// One edit of a byte string.
#[derive(Clone, Debug)]
pub enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    /// Eight little-endian bytes of a boundary value (0, -1, 2^31, 2^32, 2^63 ...).
    Word(usize, u64),
}

pub fn boundary_word() -> impl Strategy<Value = u64> {
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

pub fn edit() -> impl Strategy<Value = Edit> {
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
pub fn apply(base: &[u8], edits: &[Edit], focus: usize) -> Vec<u8> {
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
pub fn bytes_or_mutation(base: Vec<u8>, focus: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        4 => prop::collection::vec(edit(), 1..6).prop_map(move |e| apply(&base, &e, focus)),
    ]
}

/// A JSON value likely to break a config field.
pub fn hostile_json() -> impl Strategy<Value = serde_json::Value> {
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
pub fn leaf_paths(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Some(o) = v.as_object() {
        for (k, x) in o {
            prefix.push(k.clone());
            out.push(prefix.clone());
            leaf_paths(x, prefix, out);
            prefix.pop();
        }
    }
}

pub fn set_path(v: &mut serde_json::Value, path: &[String], x: serde_json::Value) {
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
pub fn json_mutation(base_text: String) -> impl Strategy<Value = String> {
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
