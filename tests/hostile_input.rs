//! Regression tests for the hostile-input classes of issue 12 (model files, configs, code files,
//! outputs): each builds its hostile file in the test (a tiny pickle and zip writer below) and
//! asserts a clean error naming the file, key or field and the value, never a panic, abort or
//! huge allocation. Failures found by tests/fuzz.rs are kept here too. spec: issue 12 §1-2.

use higgs_engine::codec::config::CodecConfig;
use higgs_engine::codec::npy;
use higgs_engine::codec::pth::{parse_state_dict_pickle, read_pth};
use higgs_engine::config::ModelConfig;
use higgs_engine::weights::safetensors::{self as st, Checkpoint};
use higgs_engine::weights::WeightMap;
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference")
        .join(rel)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("higgs_hostile_{tag}_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn binunicode(s: &str) -> Vec<u8> {
    let mut v = vec![b'X'];
    v.extend((s.len() as u32).to_le_bytes());
    v.extend(s.as_bytes());
    v
}

/// LONG1 of a non-negative value (8 bytes, so values up to 2^63 - 1).
fn long(v: u64) -> Vec<u8> {
    let mut b = vec![0x8a, 8];
    b.extend(v.to_le_bytes());
    b
}

/// `OrderedDict(w = _rebuild_tensor_v2(storage "0" of FloatStorage, 0, shape, stride))`.
fn tensor_pickle(shape: &[u64], stride: &[u64]) -> Vec<u8> {
    let mut p = vec![0x80, 2];
    p.extend(b"ccollections\nOrderedDict\n)R(");
    p.extend(binunicode("w"));
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    p.extend(binunicode("storage"));
    p.extend(b"ctorch\nFloatStorage\n");
    p.extend(binunicode("0"));
    p.extend(binunicode("cpu"));
    p.extend(b"K\x01tQK\x00(");
    for &d in shape {
        p.extend(long(d));
    }
    p.extend(b"t(");
    for &s in stride {
        p.extend(long(s));
    }
    p.extend(b"t\x89)tRu.");
    p
}

/// A torch-style zip: `archive/data.pkl` plus `archive/data/<name>` entries, deflated.
fn write_pth(path: &Path, pkl: &[u8], storages: &[(&str, &[u8])]) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(pkl).unwrap();
    for (name, bytes) in storages {
        z.start_file(format!("archive/data/{name}"), opts).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn err_of<T: std::fmt::Debug>(r: higgs_engine::Result<T>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn deeply_nested_pickle_is_refused_small_file() {
    let d = scratch("nest");
    // A million TUPLE1s deflate to a file of a few hundred bytes (the 444-byte report).
    let mut pkl = vec![0x80, 2, b')'];
    pkl.extend(std::iter::repeat_n(0x85u8, 1_000_000));
    pkl.push(b'.');
    let p = d.join("nested.pth");
    write_pth(&p, &pkl, &[]);
    assert!(std::fs::metadata(&p).unwrap().len() < 4096);
    let e = err_of(read_pth(&p));
    assert!(
        e.contains("nests deeper") && e.contains("nested.pth"),
        "{e}"
    );
    // Lists and dicts nest through APPEND and SETITEM too.
    let mut lists = vec![0x80, 2];
    lists.extend(std::iter::repeat_n(b']', 1000));
    lists.extend(std::iter::repeat_n(b'a', 999));
    lists.push(b'.');
    let e = err_of(parse_state_dict_pickle(Path::new("l.pkl"), &lists));
    assert!(e.contains("nests deeper"), "{e}");
}

#[test]
fn memo_dag_error_does_not_print_the_value() {
    // (x, x) memoized 64 times: 2^64 leaves if printed; the error names only the kind.
    let mut p = vec![0x80, 2, b')', b'q', 0];
    for _ in 0..30 {
        p.extend([b'h', 0, b'h', 0, 0x86, b'q', 0]);
    }
    p.extend(b")R.");
    let e = err_of(parse_state_dict_pickle(Path::new("dag.pkl"), &p));
    assert!(e.contains("non-callable tuple"), "{e}");
}

#[test]
fn huge_declared_shapes_are_refused_before_allocating() {
    let d = scratch("shape");
    let storage = [0u8; 16];
    let cases: [(&[u64], &[u64], &str); 4] = [
        (&[1 << 31, 1 << 31], &[1 << 31, 1], "overflows"),
        (&[1 << 20, 1 << 20], &[0, 0], "broadcast"),
        (&[1 << 62, 1 << 62], &[1, 1], "overflows"),
        (&[1, 1 << 62], &[1 << 62, 1], "overflows"),
    ];
    for (i, (shape, stride, want)) in cases.iter().enumerate() {
        let p = d.join(format!("s{i}.pth"));
        write_pth(&p, &tensor_pickle(shape, stride), &[("0", &storage)]);
        let e = err_of(read_pth(&p));
        assert!(
            e.contains(want) && e.contains("`w`"),
            "{shape:?} {stride:?}: {e}"
        );
    }
    // A size-1 axis may carry any stride (it never advances).
    let p = d.join("ok.pth");
    write_pth(
        &p,
        &tensor_pickle(&[1, 4], &[u64::MAX >> 1, 1]),
        &[("0", &storage)],
    );
    assert_eq!(read_pth(&p).unwrap().get("w").unwrap().shape, vec![1, 4]);
}

#[test]
fn zip_entries_are_inflated_only_as_far_as_tensors_reach() {
    let d = scratch("bomb");
    // 64 MiB of zeros deflates to ~64 kB; the tensor needs 16 bytes of it.
    let big = vec![0u8; 64 << 20];
    let p = d.join("bomb.pth");
    write_pth(&p, &tensor_pickle(&[4], &[1]), &[("0", &big)]);
    assert!(std::fs::metadata(&p).unwrap().len() < 1 << 20);
    assert_eq!(read_pth(&p).unwrap().get("w").unwrap().data, vec![0.0; 4]);
    // An entry shorter than the view is refused naming both sizes.
    let p = d.join("short.pth");
    write_pth(&p, &tensor_pickle(&[8], &[1]), &[("0", &[0u8; 16])]);
    let e = err_of(read_pth(&p));
    assert!(e.contains("need 32 bytes") && e.contains("holds 16"), "{e}");
}

#[test]
fn nan_weights_are_refused_with_file_and_key() {
    let d = scratch("nan");
    let mut s = vec![0u8; 16];
    s[8..12].copy_from_slice(&f32::NAN.to_le_bytes());
    let p = d.join("nan.pth");
    write_pth(&p, &tensor_pickle(&[4], &[1]), &[("0", &s)]);
    let e = err_of(read_pth(&p));
    assert!(
        e.contains("nan.pth") && e.contains("`w`") && e.contains("index 2"),
        "{e}"
    );

    // LLM safetensors: overwrite the first element of one tensor with +inf.
    let mut b = std::fs::read(fixture("llm/model.safetensors")).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    let (key, at) = h
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, v)| *k != "__metadata__" && v["dtype"] == "F32")
        .map(|(k, v)| {
            (
                k.clone(),
                8 + n + v["data_offsets"][0].as_u64().unwrap() as usize,
            )
        })
        .unwrap();
    b[at..at + 4].copy_from_slice(&f32::INFINITY.to_le_bytes());
    let dir = d.join("llm");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("model.safetensors"), &b).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let shape = ck.info(&key).unwrap().shape;
    let e = err_of(ck.load(&key, &shape));
    assert!(
        e.contains(&key) && e.contains("non-finite weight inf"),
        "{e}"
    );
    let e = err_of(WeightMap::from_safetensors(&dir.join("model.safetensors")));
    assert!(e.contains("non-finite"), "{e}");
}

#[test]
fn safetensors_header_errors_name_key_and_value() {
    let p = Path::new("m.safetensors");
    let file = |header: &Value, data: usize| {
        let h = header.to_string();
        let mut b = (h.len() as u64).to_le_bytes().to_vec();
        b.extend(h.as_bytes());
        b.extend(vec![0u8; data]);
        b
    };
    let e = err_of(st::deserialize(
        p,
        &file(
            &json!({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}),
            4,
        ),
    ));
    assert!(
        e.contains("`a`") && e.contains("[0, 4]") && e.contains("8 bytes"),
        "{e}"
    );
    let e = err_of(st::deserialize(
        p,
        &file(
            &json!({"b": {"dtype": "F32", "shape": [1u64 << 40, 1u64 << 40], "data_offsets": [0, 0]}}),
            0,
        ),
    ));
    assert!(e.contains("`b`") && e.contains("overflows"), "{e}");
    let e = err_of(st::deserialize(p, &[0xff; 16]));
    assert!(e.contains("header length"), "{e}");
    assert!(!e.contains("TensorInvalidInfo") && !e.contains("ValidationOverflow"));
}

#[test]
fn index_shards_must_stay_inside_the_model_folder() {
    let d = scratch("index");
    let outside = d.join("outside.safetensors");
    std::fs::copy(fixture("llm/model.safetensors"), &outside).unwrap();
    let model = d.join("model");
    std::fs::create_dir_all(&model).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, model.join("link.safetensors")).unwrap();
    let mut names = vec![
        "../outside.safetensors".to_string(),
        outside.display().to_string(),
        String::new(),
    ];
    if cfg!(unix) {
        names.push("link.safetensors".into());
    }
    for name in names {
        let index = json!({"weight_map": {"lm_head.weight": name}});
        std::fs::write(
            model.join("model.safetensors.index.json"),
            index.to_string(),
        )
        .unwrap();
        let e = err_of(Checkpoint::open(&model).map(|_| ()));
        assert!(
            e.contains("inside the model folder") || e.contains("outside the model folder"),
            "{name}: {e}"
        );
    }
}

fn llm_config() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("llm/config.json")).unwrap()).unwrap()
}

#[test]
fn absurd_llm_config_values_are_refused_naming_field_and_value() {
    let t = |k: &str| format!("text_config.{k}");
    let cases: Vec<(String, Value, &str)> = vec![
        (
            t("num_hidden_layers"),
            json!(1_000_000_000_000u64),
            "1000000000000",
        ),
        (t("hidden_size"), json!(1u64 << 40), "1099511627776"),
        (t("head_dim"), json!(17), "17"),
        (t("head_dim"), json!(1u64 << 30), "1073741824"),
        (t("vocab_size"), json!(1u64 << 30), "1073741824"),
        (t("intermediate_size"), json!(0), "> 0"),
        (t("rope_theta"), json!(0.0), "0"),
        (t("rope_theta"), json!(-1.0), "-1"),
        (
            t("rope_theta"),
            json!(1e39),
            "1000000000000000000000000000000000000000",
        ),
        (t("rms_norm_eps"), json!(-1e-5), "-0.00001"),
        (t("rms_norm_eps"), json!(0.0), "0"),
        (t("rms_norm_eps"), json!(1e-50), "rms_norm_eps"),
        ("audio_dual_ffn_layers".into(), json!([0, 99]), "99"),
        (
            "audio_in_token_idx".into(),
            json!((1u64 << 32) + 5),
            "4294967301",
        ),
        ("audio_num_codebooks".into(), json!(100000), "100000"),
    ];
    for (field, value, shown) in cases {
        let mut v = llm_config();
        match field.strip_prefix("text_config.") {
            Some(k) => v["text_config"][k] = value.clone(),
            None => v[field.as_str()] = value.clone(),
        }
        let e = err_of(ModelConfig::from_json(Path::new("c.json"), &v));
        assert!(
            e.contains("c.json") && e.contains(shown),
            "{field}={value}: {e}"
        );
    }
    // Layers and widths that fit alone but whose weights overflow together.
    let mut v = llm_config();
    v["text_config"]["hidden_size"] = json!(1 << 20);
    v["text_config"]["intermediate_size"] = json!(1 << 20);
    v["text_config"]["num_attention_heads"] = json!(1 << 10);
    v["text_config"]["num_key_value_heads"] = json!(1 << 10);
    v["text_config"]["head_dim"] = json!(1 << 10);
    v["text_config"]["num_hidden_layers"] = json!(1024);
    let e = err_of(ModelConfig::from_json(Path::new("c.json"), &v));
    assert!(e.contains("2^38"), "{e}");
}

#[test]
fn rope_scaling_values_are_checked() {
    // Found by tests/fuzz.rs: factor 1e-50 is 0 as an f32 and made every frequency infinite.
    for (k, x) in [
        ("factor", json!(0.0)),
        ("factor", json!(-2.0)),
        ("factor", json!(1e-50)),
        ("low_freq_factor", json!(4.0)),
        ("original_max_position_embeddings", json!(0)),
    ] {
        let mut v = llm_config();
        v["text_config"]["rope_scaling"][k] = x.clone();
        let e = err_of(ModelConfig::from_json(Path::new("c.json"), &v));
        assert!(e.contains("rope_scaling"), "{k}={x}: {e}");
    }
}

#[test]
fn absurd_codec_config_values_are_refused() {
    let base: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("codec/config.json")).unwrap())
            .unwrap();
    for (k, x, shown) in [
        ("ratios", json!([0, 2]), "[0, 2]"),
        ("ratios", json!(vec![2; 100]), "16"),
        ("ratios", json!([1u64 << 40, 1u64 << 40]), "hop"),
        ("sample_rate", json!(0), "sample_rate"),
        ("sample_rate", json!(2147483647), "2147483647"),
        ("bins", json!(0), "bins"),
        ("n_q", json!(1_000_000), "1000000"),
        ("decoder_channels", json!(1u64 << 40), "1099511627776"),
        ("target_bandwidths", json!([-1.0]), "-1"),
    ] {
        let mut v = base.clone();
        v[k] = x.clone();
        let e = err_of(CodecConfig::from_json(
            Path::new("codec.json"),
            &v.to_string(),
        ));
        assert!(
            e.contains("codec.json") && e.contains(shown),
            "{k}={x}: {e}"
        );
    }
}

fn npy_i64(shape: &[usize], data: &[i64], d: &Path, name: &str) -> PathBuf {
    let p = d.join(name);
    npy::write_npy_i64(&p, shape, data).unwrap();
    p
}

#[test]
fn code_files_refuse_empty_huge_and_out_of_codebook_values() {
    let d = scratch("npy");
    for shape in [[0usize, 5], [8, 0]] {
        let p = npy_i64(&shape, &[], &d, "empty.npy");
        let e = err_of(npy::read_codes(&p));
        assert!(e.contains("no frames") && e.contains("empty.npy"), "{e}");
    }
    // 2^32 + 3 would be 3 after `as u32`.
    let p = npy_i64(&[1, 2], &[1, (1 << 32) + 3], &d, "huge.npy");
    let e = err_of(npy::read_codes(&p));
    assert!(
        e.contains("4294967299") && e.contains("larger than 2^32"),
        "{e}"
    );
    let p = npy_i64(&[1, 2], &[1, -4], &d, "neg.npy");
    assert!(err_of(npy::read_codes(&p)).contains("negative code -4"));
    let p = npy_i64(&[2, 2], &[1, 2, 3, 64], &d, "range.npy");
    let codes = npy::read_codes(&p).unwrap();
    let e = err_of(npy::check_codes(&p, &codes, 8, 64));
    assert!(
        e.contains("code 64 at [1, 1]") && e.contains("0..64"),
        "{e}"
    );
    // A header longer than any numpy writes.
    let mut b = b"\x93NUMPY\x02\x00".to_vec();
    b.extend(u32::MAX.to_le_bytes());
    assert!(err_of(npy::parse_npy(Path::new("h.npy"), &b)).contains("header of"));
}

#[test]
fn npy_writes_are_atomic() {
    let d = scratch("atomic");
    let p = d.join("codes.npy");
    npy::write_codes(&p, &[vec![1, 2]]).unwrap();
    let before = std::fs::read(&p).unwrap();
    // Rows of different lengths fail before anything is written; a missing folder fails too.
    assert!(npy::write_codes(&p, &[vec![1], vec![1, 2]]).is_err());
    assert!(npy::write_codes(&d.join("missing/c.npy"), &[vec![1]]).is_err());
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let left: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn cli_checks_output_and_sizes_before_work() {
    let d = scratch("cli");
    let codes = npy_i64(&[8, 2], &[1; 16], &d, "c.npy");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_higgs"))
        .args(["codec", "decode"])
        .arg(&codes)
        .arg("--codec")
        .arg(fixture("codec"))
        .arg("-o")
        .arg(d.join("missing/x.wav"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("does not exist"),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_higgs"))
        .args(["bench", "--batch", "1000000000"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--batch"), "{err}");
}

/// Found by `fuzz_audio_formats`: an ADTS AAC stream with three flipped header bits makes
/// symphonia's AAC decoder index out of bounds (symphonia-codec-aac 0.5.5, ics/mod.rs). The
/// decoder's panic is contained: the caller gets an audio error, and the process goes on.
#[test]
fn a_decoder_panic_on_malformed_audio_is_an_error() {
    use higgs_engine::audio::decode::{decode_bytes, probe_bytes, DecodeLimits};
    let bytes = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile/aac_ics_panic.aac"),
    )
    .unwrap();
    let e = err_of(decode_bytes(&bytes, &DecodeLimits::default()));
    assert!(e.contains("malformed audio"), "{e}");
    let _ = probe_bytes(&bytes, &DecodeLimits::default());
    // Still decoding afterwards.
    let wav = std::fs::read(fixture("codec/test_signal.wav")).unwrap();
    assert!(decode_bytes(&wav, &DecodeLimits::default()).is_ok());
}

/// NaN logits at run time (weights that passed the load checks but break in compute) fail
/// that request with a clear error instead of sampling garbage; other requests are untouched.
#[test]
fn non_finite_logits_fail_the_request() {
    use higgs_engine::engine::{Engine, EngineConfig, FinishReason, GenerationParams, Prompt};
    use higgs_engine::model::{LoadOptions, Model, ModelWeights};
    use std::sync::Arc;
    let dir = fixture("llm");
    let cfg = ModelConfig::load(&dir).unwrap();
    let ck = Checkpoint::open(&dir).unwrap();
    let mut w = ModelWeights::load(&ck, &cfg, LoadOptions::default()).unwrap();
    for v in w.text_head.as_f32_mut().unwrap().iter_mut() {
        *v = f32::NAN;
    }
    let model = Arc::new(Model::new(cfg.clone(), w));
    let mut engine = Engine::new(model, EngineConfig::default()).unwrap();
    let prompt = Prompt {
        ids: vec![cfg.bos_token, 20, 21, 22],
        ..Prompt::default()
    };
    let out = engine
        .generate(&prompt, GenerationParams::new(8, vec![cfg.eos_token]))
        .unwrap();
    match out.finish {
        Some(FinishReason::Error(m)) => assert!(m.contains("non-finite text logit"), "{m}"),
        other => panic!("finished with {other:?}"),
    }
}

/// A reference clip longer than the whole KV cache is refused from its header, before the
/// clip is encoded.
#[test]
fn a_clip_that_can_never_fit_is_refused_before_encoding() {
    let d = scratch("fit");
    let clip = d.join("long.wav");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(&clip, spec).unwrap();
    for i in 0..8000 * 60 {
        w.write_sample(((i % 200) as i16 - 100) * 50).unwrap();
    }
    w.finalize().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_higgs"))
        .args(["tts", "--model"])
        .arg(fixture("llm"))
        .arg("--audio-tokenizer")
        .arg(fixture("codec"))
        .arg("--tokenizer")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/toy-tokenizer.json"))
        .args([
            "--text",
            "The fox.",
            "--ref-text",
            "The dog.",
            "--max-context",
            "512",
        ])
        .arg("--ref-audio")
        .arg(&clip)
        .arg("-o")
        .arg(d.join("out.wav"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("reference clips alone are 1500 frames"),
        "{err}"
    );
    assert!(!d.join("out.wav").exists());
}
