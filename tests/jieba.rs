//! Chinese word chunking against Python jieba 0.42.1 and langid 1.1.6 (spec: the prompt fixtures
//! README rule 6): `tests/fixtures/jieba/cases.json`, written by `scripts/make-jieba-fixtures.py`,
//! holds jieba's `lcut` tokens and langid's language for a few dozen sentences, and the reference's
//! `prepare_chunk_text(.., "word")` chunks for a few texts. Needs no shared data.

use std::path::PathBuf;

use higgs_engine::prompt::chunk::{chunk_text, is_chinese, segment_chinese};
use higgs_engine::prompt::{ChunkMethod, Chunking};
use serde_json::Value;

fn fixtures() -> Value {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/jieba/cases.json");
    let text = std::fs::read_to_string(&p).expect("jieba fixtures");
    serde_json::from_str(&text).expect("jieba fixtures parse")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

#[test]
fn jieba_rs_matches_python_jieba() {
    let root = fixtures();
    let cases = root["cases"].as_array().expect("cases");
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let want = strings(&case["tokens"]);
        let got = segment_chinese(text);
        if got != want {
            mismatches.push(format!(
                "{text:?}\n  jieba:    {want:?}\n  jieba-rs: {got:?}"
            ));
        }
    }
    println!(
        "{} of {} cases give Python jieba's tokens",
        cases.len() - mismatches.len(),
        cases.len()
    );
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn language_rule_matches_langid() {
    let root = fixtures();
    let cases = root["cases"].as_array().expect("cases");
    let mut mismatches = Vec::new();
    for case in cases {
        let text = case["text"].as_str().expect("text");
        let langid_zh = case["langid"] == "zh";
        if is_chinese(text) != langid_zh {
            mismatches.push(format!("{text:?}: langid says {}", case["langid"]));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn word_chunks_match_the_reference() {
    let root = fixtures();
    for case in root["chunk_cases"].as_array().expect("chunk_cases") {
        let text = case["text"].as_str().expect("text");
        let opts = Chunking {
            method: ChunkMethod::Word,
            max_word_num: case["chunk_max_word_num"].as_u64().expect("n") as usize,
            max_num_turns: 1,
        };
        let got = chunk_text(text, &opts).expect("chunks");
        assert_eq!(got, strings(&case["chunks"]), "{text:?}");
    }
}
