//! Codec decode side against the reference fixtures (tests/fixtures/reference/codec): RVQ sum,
//! fc_post2, the full decode within 1e-5 relative, model.pth == model.safetensors, clear errors
//! for corrupt checkpoints, and sample-exact streaming. spec: codec.md §6.5, §7, §8, §9.

use higgs_engine::codec::pth::read_pth;
use higgs_engine::codec::stream::StreamDecoder;
use higgs_engine::codec::AudioTokenizer;
use higgs_engine::reference::compare;
use higgs_engine::weights::WeightMap;
use std::path::{Path, PathBuf};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/codec")
}

/// A float tensor of expected.safetensors (widened) with its shape.
fn expected_f32(name: &str) -> (Vec<usize>, Vec<f32>) {
    // WeightMap::from_safetensors refuses the int64 code tensors, so read the file directly.
    let bytes = std::fs::read(fixture_dir().join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::F32, "{name}");
    let data = v
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    (v.shape().to_vec(), data)
}

fn expected_codes(name: &str) -> Vec<Vec<u32>> {
    let bytes = std::fs::read(fixture_dir().join("expected.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(name).unwrap();
    assert_eq!(v.dtype(), safetensors::Dtype::I64, "{name}");
    let t = *v.shape().last().unwrap();
    let flat: Vec<u32> = v
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()) as u32)
        .collect();
    flat.chunks(t).map(<[u32]>::to_vec).collect()
}

fn transpose(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut y = vec![0f32; x.len()];
    for r in 0..rows {
        for c in 0..cols {
            y[c * rows + r] = x[r * cols + c];
        }
    }
    y
}

fn codec() -> AudioTokenizer {
    AudioTokenizer::load(&fixture_dir()).expect("load fixture codec")
}

#[test]
fn decode_matches_reference() {
    let c = codec();
    let codes = expected_codes("decode.codes");
    let t = codes[0].len();
    let q = c.rvq().dim;

    let sum = c.rvq().decode(&codes).unwrap();
    let (shape, want) = expected_f32("decode.quantized_sum");
    assert_eq!(shape, vec![1, t, q]);
    let (_, rel) = compare(&sum, &transpose(&want, t, q));
    assert!(rel < 1e-5, "rvq sum rel {rel}");

    let z = c.decoder().fc_post2(&sum, t);
    let (_, want) = expected_f32("decode.decoder_input");
    let (_, rel) = compare(&z, &want);
    assert!(rel < 1e-5, "decoder input rel {rel}");

    let wav = c.decode(&codes).unwrap();
    let (shape, want) = expected_f32("decode.waveform");
    assert_eq!(shape, vec![1, 1, 960 * t]);
    let (abs, rel) = compare(&wav, &want);
    println!("decode waveform: max abs {abs:e}, rel {rel:e}");
    assert!(rel < 1e-5, "waveform abs {abs} rel {rel}");

    // The encode cases' round trip decodes the reference codes too.
    let codes = expected_codes("encode.codes");
    let (_, want) = expected_f32("encode.roundtrip_waveform");
    let (abs, rel) = compare(&c.decode(&codes).unwrap(), &want);
    println!("roundtrip waveform: max abs {abs:e}, rel {rel:e}");
    assert!(rel < 1e-5, "roundtrip abs {abs} rel {rel}");
}

#[test]
fn decode_edge_cases() {
    let c = codec();
    assert!(c.decode(&[]).unwrap().is_empty());
    assert!(c.decode(&vec![Vec::new(); 8]).unwrap().is_empty());
    // Fewer codebooks are used in order; too many, ragged rows or codes >= bins are errors.
    assert_eq!(c.decode(&vec![vec![1, 2, 3]; 4]).unwrap().len(), 3 * 960);
    assert!(c.decode(&vec![vec![1]; 9]).is_err());
    assert!(c.decode(&[vec![1, 2], vec![1]]).is_err());
    let bins = c.config().bins as u32;
    assert!(c.decode(&[vec![bins]]).is_err());
}

#[test]
fn pth_equals_safetensors() {
    let dir = fixture_dir();
    let a = read_pth(&dir.join("model.pth")).unwrap();
    let b = WeightMap::from_safetensors(&dir.join("model.safetensors")).unwrap();
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb);
    assert_eq!(a.len(), 442);
    for k in a.keys() {
        assert_eq!(a.get(k).unwrap(), b.get(k).unwrap(), "{k}");
    }

    // A folder with only config.json + model.pth loads (HuBERT from semantic_model.* inside)
    // and decodes identically.
    let tmp = std::env::temp_dir().join(format!("higgs_codec_pth_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::copy(dir.join("config.json"), tmp.join("config.json")).unwrap();
    std::fs::copy(dir.join("model.pth"), tmp.join("model.pth")).unwrap();
    let from_pth = AudioTokenizer::load(&tmp).unwrap();
    let from_st = codec();
    assert!(from_pth
        .weights()
        .keys()
        .any(|k| k.starts_with("semantic_model.")));
    let codes = expected_codes("decode.codes");
    let codes: Vec<Vec<u32>> = codes.iter().map(|r| r[..12].to_vec()).collect();
    assert_eq!(
        from_pth.decode(&codes).unwrap(),
        from_st.decode(&codes).unwrap()
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn weight_norm_is_folded_and_hubert_found() {
    let c = codec();
    let w = c.weights();
    assert!(!w
        .keys()
        .any(|k| k.ends_with("weight_g") || k.ends_with("weight_v") || k.contains("original0")));
    assert!(w.contains("encoder.block.0.weight"));
    assert!(w.contains("semantic_model.encoder.pos_conv_embed.conv.weight"));
}

/// Copy a torch zip, editing its data.pkl (the zip writer recomputes the checksums).
fn rewrite_pickle(src: &Path, dst: &Path, edit: impl Fn(&mut Vec<u8>)) {
    use std::io::{Read, Write};
    let mut zin = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut zout = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let opts =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..zin.len() {
        let mut f = zin.by_index(i).unwrap();
        let name = f.name().to_string();
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        if name.ends_with("data.pkl") {
            edit(&mut b);
        }
        zout.start_file(name, opts).unwrap();
        zout.write_all(&b).unwrap();
    }
    zout.finish().unwrap();
}

#[test]
fn corrupt_pth_gives_clear_errors() {
    let dir = fixture_dir();
    let good = std::fs::read(dir.join("model.pth")).unwrap();
    let tmp = std::env::temp_dir().join(format!("higgs_codec_bad_{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();

    // Truncated archive: the zip directory is gone.
    let p = tmp.join("truncated.pth");
    std::fs::write(&p, &good[..good.len() / 2]).unwrap();
    let e = read_pth(&p).unwrap_err().to_string();
    assert!(e.contains("truncated.pth"), "{e}");

    // Not a zip at all.
    let p = tmp.join("garbage.pth");
    std::fs::write(&p, b"not a checkpoint").unwrap();
    let e = read_pth(&p).unwrap_err().to_string();
    assert!(e.contains("zip"), "{e}");

    // A pickle naming a forbidden global.
    let needle = b"collections\nOrderedDict\n";
    let p = tmp.join("evil.pth");
    rewrite_pickle(&dir.join("model.pth"), &p, |pkl| {
        let at = pkl.windows(needle.len()).position(|w| w == needle).unwrap();
        pkl[at..at + needle.len()].copy_from_slice(b"subprocess\nPopenxxxxxxx\n");
    });
    let e = read_pth(&p).unwrap_err().to_string();
    assert!(
        e.contains("subprocess.Popenxxxxxxx") && e.contains("not allowed"),
        "{e}"
    );

    // A pickle cut short, and one with an opcode outside the state-dict subset.
    let p = tmp.join("short.pth");
    rewrite_pickle(&dir.join("model.pth"), &p, |pkl| {
        pkl.truncate(pkl.len() / 2)
    });
    let e = read_pth(&p).unwrap_err().to_string();
    assert!(e.contains("truncated pickle"), "{e}");
    let p = tmp.join("opcode.pth");
    rewrite_pickle(&dir.join("model.pth"), &p, |pkl| pkl[2] = b'i');
    let e = read_pth(&p).unwrap_err().to_string();
    assert!(e.contains("opcode 0x69"), "{e}");

    // A storage file shorter than its tensors need.
    let p = tmp.join("storage.pth");
    {
        use std::io::{Read, Write};
        let mut zin =
            zip::ZipArchive::new(std::fs::File::open(dir.join("model.pth")).unwrap()).unwrap();
        let mut zout = zip::ZipWriter::new(std::fs::File::create(&p).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for i in 0..zin.len() {
            let mut f = zin.by_index(i).unwrap();
            let name = f.name().to_string();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            if name.ends_with("/data/2") {
                b.truncate(4);
            }
            zout.start_file(name, opts).unwrap();
            zout.write_all(&b).unwrap();
        }
        zout.finish().unwrap();
    }
    let e = read_pth(&p).unwrap_err().to_string();
    assert!(
        e.contains("encoder.block.0.weight_v") && e.contains("storage"),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

#[test]
fn streaming_is_sample_exact() {
    let c = codec();
    let all = expected_codes("decode.codes");
    for total in [1usize, 7, 23, 37] {
        let codes: Vec<Vec<u32>> = all.iter().map(|r| r[..total].to_vec()).collect();
        let full = c.decode(&codes).unwrap();
        for chunk in 1..=30 {
            if total < 37 && chunk % 7 != 1 {
                continue; // the longest total covers every chunk size; the rest a sample
            }
            let mut s = StreamDecoder::new(&c, 8).unwrap();
            let mut out = Vec::new();
            let mut f = 0;
            while f < total {
                let e = (f + chunk).min(total);
                let piece: Vec<Vec<u32>> = codes.iter().map(|r| r[f..e].to_vec()).collect();
                out.extend(s.push(&piece).unwrap());
                assert_eq!(out.len(), s.frames_emitted() * 960);
                f = e;
            }
            out.extend(s.finish().unwrap());
            assert_eq!(out.len(), full.len(), "total {total} chunk {chunk}");
            let (abs, _) = compare(&out, &full);
            assert!(
                abs == 0.0,
                "total {total} chunk {chunk}: max abs diff {abs}"
            );
        }
        // Offline chunked decode of an arbitrary range.
        if total > 20 {
            let part = c.decode_frames(&codes, 5, total - 3).unwrap();
            assert_eq!(part, full[5 * 960..(total - 3) * 960]);
        }
    }
}

/// `higgs codec encode` then `higgs codec decode` on the fixture clip: the .npy holds the
/// reference's codes and the WAV has 960 samples per frame; a missing input is a clear error.
#[test]
fn cli_encode_decode_round_trip() {
    use higgs_engine::reference::fixture::Expected;
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference/codec");
    let tmp = std::env::temp_dir().join(format!("higgs-codec-cli-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let (npy, wav) = (tmp.join("codes.npy"), tmp.join("out.wav"));
    let higgs = env!("CARGO_BIN_EXE_higgs");
    let run = |args: &[&str]| {
        std::process::Command::new(higgs)
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "codec",
        "encode",
        dir.join("test_signal.wav").to_str().unwrap(),
        "--codec",
        dir.to_str().unwrap(),
        "-o",
        npy.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let codes = higgs_engine::codec::npy::read_codes(&npy).unwrap();
    let want = Expected::load(&dir.join("expected.safetensors"))
        .unwrap()
        .matrix("encode.codes")
        .unwrap();
    assert_eq!(codes, want);
    let o = run(&[
        "codec",
        "decode",
        npy.to_str().unwrap(),
        "--codec",
        dir.to_str().unwrap(),
        "-o",
        wav.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = hound::WavReader::open(&wav).unwrap();
    assert_eq!(r.spec().sample_rate, 24000);
    assert_eq!(r.len() as usize, 960 * codes[0].len());
    let o = run(&[
        "codec",
        "decode",
        tmp.join("missing.npy").to_str().unwrap(),
        "--codec",
        dir.to_str().unwrap(),
        "-o",
        wav.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("missing.npy") && !err.contains("panicked"),
        "{err}"
    );
}
