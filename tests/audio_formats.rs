//! Audio formats in and out (`audio::decode`, `audio::encode`): every response format decodes
//! back to the signal it was made from (length within the codec's priming and padding, and a
//! correlation / SNR check that it is the same signal), streamed output does not depend on the
//! push chunking, the streamed WAV header says "unknown length", WAV decoding equals
//! `read_wav` exactly, Ogg Vorbis from libvorbis decodes, and hostile inputs fail fast.
//! Fixture files are generated here at run time; none are committed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use higgs_engine::audio::decode::{
    decode_bytes, probe, probe_bytes, read_audio, read_audio_with, DecodeLimits,
};
use higgs_engine::audio::encode::{
    encode_all, encode_wav_whole, AudioEncoder, AudioFormat, OUTPUT_RATE_HZ, WAV_HEADER_LEN,
};
use higgs_engine::audio::wav::{read_wav, read_wav_bytes, write_wav_mono_i16, Waveform};
use higgs_engine::error::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

#[path = "common/audio_check.rs"]
mod audio_check;
use audio_check::{best_lag, decode_response};

const RATE: usize = OUTPUT_RATE_HZ as usize;
/// One second plus an odd tail, so no codec's frame size divides it.
const N: usize = RATE + 1234;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("higgs_audio_formats_{}_{name}", std::process::id()))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/reference/codec")
        .join(name)
}

/// Two tones well inside every codec's band, 0.7 peak.
fn signal(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            0.5 * (2.0 * std::f32::consts::PI * 440.0 * t).sin()
                + 0.2 * (2.0 * std::f32::consts::PI * 1250.0 * t).sin()
        })
        .collect()
}

/// SNR in dB of `y[lag..]` against `x` over the middle of `x`.
fn snr_db(x: &[f32], y: &[f32], lag: usize) -> f64 {
    let (lo, hi) = (x.len() / 10, x.len() * 9 / 10);
    let (mut s, mut e) = (0f64, 0f64);
    for i in lo..hi {
        let a = f64::from(x[i]);
        let d = a - f64::from(y[i + lag]);
        s += a * a;
        e += d * d;
    }
    10.0 * (s / e.max(1e-30)).log10()
}

#[test]
fn every_format_round_trips_to_the_same_signal() {
    let x = signal(N);
    for format in AudioFormat::ALL {
        let bytes = encode_all(format, &x).unwrap();
        let y = decode_response(format, &bytes);
        // (priming + padding allowed, minimum correlation, minimum SNR in dB)
        let (slack, min_corr, min_snr) = match format {
            AudioFormat::Wav | AudioFormat::Pcm | AudioFormat::Flac => (0, 0.999_999, 80.0),
            AudioFormat::Opus => (0, 0.99, 15.0),
            // LAME: 576-sample encoder delay + 529 decoder delay, flush pads to whole frames.
            AudioFormat::Mp3 => (576 + 529 + 4 * 1152, 0.99, 15.0),
            // fdk-aac: encoder delay plus the zero frames `finish` adds.
            AudioFormat::Aac => (4096 + 3 * 1024, 0.99, 15.0),
        };
        assert!(
            y.len() >= N && y.len() <= N + slack,
            "{format}: decoded {} samples for {N} (slack {slack})",
            y.len()
        );
        let (lag, corr) = best_lag(&x, &y, slack.min(6000));
        let snr = snr_db(&x, &y, lag);
        eprintln!(
            "{format}: {} bytes, decoded {} (+{}), lag {lag}, corr {corr:.5}, snr {snr:.1} dB",
            bytes.len(),
            y.len(),
            y.len() - N
        );
        assert!(
            corr >= min_corr,
            "{format}: correlation {corr} at lag {lag}"
        );
        assert!(snr >= min_snr, "{format}: SNR {snr:.1} dB at lag {lag}");
        if slack == 0 {
            assert_eq!(lag, 0, "{format}");
        }
    }
}

#[test]
fn lossless_formats_are_exact_16_bit() {
    let x = signal(N);
    let want: Vec<f32> = x
        .iter()
        .map(|&s| f32::from((s.clamp(-1.0, 1.0) * 32767.0).round() as i16) / 32768.0)
        .collect();
    for format in [AudioFormat::Wav, AudioFormat::Pcm, AudioFormat::Flac] {
        let y = decode_response(format, &encode_all(format, &x).unwrap());
        assert_eq!(y, want, "{format}");
    }
}

/// Everything one encoder returns for `samples` pushed in `chunks`-sized pieces.
fn stream(format: AudioFormat, samples: &[f32], chunks: &[usize]) -> Vec<u8> {
    let mut enc = AudioEncoder::new(format).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    for &c in chunks {
        let end = (at + c).min(samples.len());
        out.extend(enc.push(&samples[at..end]).unwrap());
        at = end;
    }
    out.extend(enc.push(&samples[at..]).unwrap());
    assert_eq!(enc.n_samples(), samples.len() as u64);
    out.extend(enc.finish().unwrap());
    out
}

#[test]
fn streamed_bytes_do_not_depend_on_chunking() {
    let x = signal(N);
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for format in AudioFormat::ALL {
        let whole = stream(format, &x, &[]);
        for trial in 0..3 {
            let chunks: Vec<usize> = (0..200)
                .map(|_| match trial {
                    0 => rng.gen_range(0..40),
                    1 => rng.gen_range(0..3000),
                    _ => [1, 479, 480, 481, 1023, 1152, 4096][rng.gen_range(0..7)],
                })
                .collect();
            assert!(
                stream(format, &x, &chunks) == whole,
                "{format}: chunking trial {trial} changed the bytes"
            );
        }
        // An empty stream is still a valid, decodable-or-empty body, and deterministic.
        assert_eq!(stream(format, &[], &[0, 0]), stream(format, &[], &[]));
    }
}

#[test]
fn encode_all_equals_the_stream_but_for_length_fields() {
    let x = signal(N);
    for format in AudioFormat::ALL {
        let streamed = stream(format, &x, &[1000, 7]);
        let all = encode_all(format, &x).unwrap();
        assert_eq!(streamed.len(), all.len(), "{format}");
        let differing: Vec<usize> = (0..all.len()).filter(|&i| all[i] != streamed[i]).collect();
        match format {
            AudioFormat::Wav => assert!(differing
                .iter()
                .all(|&i| (4..8).contains(&i) || (40..44).contains(&i))),
            // STREAMINFO's 36-bit total sample count, bytes 21..26.
            AudioFormat::Flac => assert!(differing.iter().all(|&i| (21..26).contains(&i))),
            _ => assert!(differing.is_empty(), "{format}"),
        }
    }
}

#[test]
fn streamed_wav_header_says_unknown_length() {
    let x = signal(1000);
    let mut enc = AudioEncoder::new(AudioFormat::Wav).unwrap();
    let head = enc.push(&[]).unwrap();
    assert_eq!(head.len(), WAV_HEADER_LEN);
    assert_eq!(&head[0..4], b"RIFF");
    assert_eq!(&head[4..8], &[0xff; 4]);
    assert_eq!(&head[8..16], b"WAVEfmt ");
    assert_eq!(u32::from_le_bytes(head[16..20].try_into().unwrap()), 16);
    assert_eq!(u16::from_le_bytes([head[20], head[21]]), 1, "PCM");
    assert_eq!(u16::from_le_bytes([head[22], head[23]]), 1, "mono");
    assert_eq!(u32::from_le_bytes(head[24..28].try_into().unwrap()), 24_000);
    assert_eq!(u32::from_le_bytes(head[28..32].try_into().unwrap()), 48_000);
    assert_eq!(u16::from_le_bytes([head[32], head[33]]), 2);
    assert_eq!(u16::from_le_bytes([head[34], head[35]]), 16);
    assert_eq!(&head[36..40], b"data");
    assert_eq!(&head[40..44], &[0xff; 4]);
    let mut body = head;
    body.extend(enc.push(&x).unwrap());
    body.extend(enc.finish().unwrap());
    assert_eq!(body.len(), WAV_HEADER_LEN + 2 * x.len());
    // Our decoder takes a streamed WAV (the length comes from the data, not the header).
    let w = decode_bytes(&body, &DecodeLimits::default()).unwrap();
    assert_eq!(w.samples.len(), x.len());
    assert_eq!(
        probe_bytes(&body, &DecodeLimits::default())
            .unwrap()
            .n_frames,
        1000
    );
}

#[test]
fn whole_wav_equals_hound_and_pcm_rounds_like_write_wav() {
    // Out-of-range, NaN and rounding-edge values exercise the clamp and the rounding.
    let mut x = signal(3001);
    x.extend([
        1.5,
        -1.5,
        f32::NAN,
        0.5 / 32767.0,
        -0.5 / 32767.0,
        1.0,
        -1.0,
    ]);
    let path = tmp("hound.wav");
    write_wav_mono_i16(&path, &x, OUTPUT_RATE_HZ).unwrap();
    let hound_bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).ok();
    let ours = encode_wav_whole(&x).unwrap();
    assert_eq!(ours, hound_bytes);
    assert_eq!(encode_all(AudioFormat::Wav, &x).unwrap(), hound_bytes);
    assert_eq!(
        encode_all(AudioFormat::Pcm, &x).unwrap(),
        hound_bytes[WAV_HEADER_LEN..]
    );
}

#[test]
fn format_names_and_content_types() {
    let names: Vec<&str> = AudioFormat::ALL.iter().map(|f| f.name()).collect();
    assert_eq!(names, ["mp3", "opus", "aac", "flac", "wav", "pcm"]);
    assert_eq!(
        AudioFormat::parse("mp3").unwrap().content_type(),
        "audio/mpeg"
    );
    assert_eq!(
        AudioFormat::parse("wav").unwrap().content_type(),
        "audio/wav"
    );
    assert!(AudioFormat::parse("opus")
        .unwrap()
        .content_type()
        .starts_with("audio/ogg"));
    let err = AudioFormat::parse("vorbis").unwrap_err();
    assert!(matches!(&err, Error::BadRequest(m) if m.contains("mp3, opus, aac, flac, wav, pcm")));
}

#[test]
fn wav_decode_equals_read_wav_on_fixtures() {
    for name in ["test_signal.wav", "test_signal_odd.wav"] {
        let path = fixture(name);
        let want = read_wav(&path).unwrap();
        assert_eq!(read_audio(&path).unwrap(), want, "{name}");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            decode_bytes(&bytes, &DecodeLimits::default()).unwrap(),
            read_wav_bytes(&bytes).unwrap()
        );
        let info = probe(&path).unwrap();
        assert_eq!(info.sample_rate_hz, want.sample_rate_hz, "{name}");
        assert_eq!(info.n_frames, want.samples.len() as u64, "{name}");
    }
}

fn write_hound(path: &Path, spec: hound::WavSpec, frames: usize) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let ch = usize::from(spec.channels);
    for i in 0..frames * ch {
        let v = ((i * 7919) % 2001) as f64 / 1000.0 - 1.0; // spread over [-1, 1]
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Float, _) => w.write_sample(v as f32 * 1.25).unwrap(),
            (_, 8) => w.write_sample((v * 127.0) as i8).unwrap(),
            (_, 16) => w.write_sample((v * 32767.0) as i16).unwrap(),
            (_, 24) => w.write_sample((v * 8_388_607.0) as i32).unwrap(),
            _ => w.write_sample((v * 2_147_483_647.0) as i32).unwrap(),
        }
    }
    w.finalize().unwrap();
}

#[test]
fn wav_decode_equals_read_wav_for_every_sample_format() {
    let cases = [
        (hound::SampleFormat::Int, 8, 1),
        (hound::SampleFormat::Int, 16, 1),
        (hound::SampleFormat::Int, 16, 2),
        (hound::SampleFormat::Int, 24, 3),
        (hound::SampleFormat::Int, 32, 2),
        (hound::SampleFormat::Float, 32, 1),
        (hound::SampleFormat::Float, 32, 6),
    ];
    for (i, (fmt, bits, channels)) in cases.into_iter().enumerate() {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 22_050,
            bits_per_sample: bits,
            sample_format: fmt,
        };
        let path = tmp(&format!("fmt{i}.wav"));
        write_hound(&path, spec, 1001);
        let want = read_wav(&path).unwrap();
        let got = read_audio(&path);
        std::fs::remove_file(&path).ok();
        assert_eq!(got.unwrap(), want, "{fmt:?} {bits} bits {channels} ch");
    }
}

/// A hand-made 16-bit PCM WAV header: `rate`, `channels`, declared data bytes, then `body`.
fn wav_bytes(rate: u32, channels: u16, data_len: u32, body: &[u8]) -> Vec<u8> {
    let block = channels.wrapping_mul(2);
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&data_len.wrapping_add(36).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&channels.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&rate.wrapping_mul(u32::from(block)).to_le_bytes());
    v.extend_from_slice(&block.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    v.extend_from_slice(body);
    v
}

/// Decoding and probing `bytes` (in memory and from a file) fails within two seconds.
fn assert_rejected(what: &str, bytes: &[u8], expect: &str) {
    check_rejected(what, bytes, expect, true)
}

/// Decoding `bytes` fails; a probe may trust the header (WAV and FLAC state their length,
/// and truncation only shows when the data runs out).
fn assert_decode_rejected(what: &str, bytes: &[u8], expect: &str) {
    check_rejected(what, bytes, expect, false)
}

fn check_rejected(what: &str, bytes: &[u8], expect: &str, with_probe: bool) {
    let limits = DecodeLimits::default();
    let path = tmp(&format!("hostile_{}.bin", what.replace(' ', "_")));
    std::fs::write(&path, bytes).unwrap();
    let start = Instant::now();
    let mut results = vec![
        decode_bytes(bytes, &limits).map(|w| w.samples.len() as u64),
        read_audio(&path).map(|w| w.samples.len() as u64),
    ];
    if with_probe {
        results.push(probe_bytes(bytes, &limits).map(|i| i.n_frames));
        results.push(probe(&path).map(|i| i.n_frames));
    }
    let took = start.elapsed();
    std::fs::remove_file(&path).ok();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok(n) => panic!("{what}: call {i} accepted it ({n} frames)"),
            Err(e) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(expect),
                    "{what}: call {i}: `{msg}` does not mention `{expect}`"
                );
                if i % 2 == 1 && !matches!(e, Error::Io { .. }) {
                    assert!(msg.contains("hostile_"), "{what}: `{msg}` names no file");
                }
            }
        }
    }
    assert!(took < Duration::from_secs(2), "{what}: took {took:?}");
}

#[test]
fn hostile_inputs_are_errors_and_fast() {
    let body = vec![0u8; 4000];
    assert_rejected(
        "rate 2147483647",
        &wav_bytes(2_147_483_647, 1, 4000, &body),
        "2147483647 Hz",
    );
    assert_rejected("rate 1", &wav_bytes(1, 1, 4000, &body), "1 Hz");
    let ten_hours = 10 * 3600 * 24_000 * 2;
    assert_rejected(
        "ten hours",
        &wav_bytes(24_000, 1, ten_hours, &body),
        "over the limit of 600 s",
    );
    assert_rejected("64 channels", &wav_bytes(24_000, 64, 4096, &body), "");
    assert_rejected("0 channels", &wav_bytes(24_000, 0, 4000, &body), "");
    assert_rejected("empty", &[], "empty");
    assert_rejected("header only", &wav_bytes(24_000, 1, 0, &[]), "");

    // Truncations of real files of every decodable format.
    let x = signal(N);
    let wav = encode_all(AudioFormat::Wav, &x).unwrap();
    assert_decode_rejected("truncated wav", &wav[..wav.len() / 2], "truncated");
    let flac = encode_all(AudioFormat::Flac, &x).unwrap();
    assert_decode_rejected("truncated flac", &flac[..flac.len() / 2], "");
    for format in [
        AudioFormat::Mp3,
        AudioFormat::Aac,
        AudioFormat::Flac,
        AudioFormat::Opus,
    ] {
        let b = encode_all(format, &x).unwrap();
        assert_rejected(&format!("{format} cut to 20 bytes"), &b[..20], "");
    }

    // Random bytes, and random bytes behind a plausible magic number.
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    for (i, len) in [1usize, 7, 100, 4096, 100_000].into_iter().enumerate() {
        let mut noise = vec![0u8; len];
        rng.fill(&mut noise[..]);
        assert_rejected(&format!("random {len}"), &noise, "");
        for magic in [
            &b"RIFF"[..],
            b"fLaC",
            b"OggS",
            b"ID3\x03",
            b"\xff\xfb",
            b"\xff\xf1",
        ] {
            let mut v = magic.to_vec();
            v.extend_from_slice(&noise);
            assert_rejected(&format!("magic {i} {magic:?}"), &v, "");
        }
    }
}

#[test]
fn missing_file_is_an_io_error() {
    let e = read_audio(Path::new("/nonexistent/clip.mp3")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

#[test]
fn length_limit_is_enforced_while_decoding() {
    // A streamed WAV declares no length, so only the running check can stop it.
    let x = signal(3 * RATE);
    let mut body = stream(AudioFormat::Wav, &x, &[]);
    let limits = DecodeLimits {
        max_seconds: 1.0,
        ..Default::default()
    };
    let e = decode_bytes(&body, &limits).unwrap_err().to_string();
    assert!(e.contains("passes the limit of 1 s"), "{e}");
    // The same through a file, for MP3 (whose header length, when symphonia estimates one from
    // the file size, is checked up front instead).
    let path = tmp("limit.mp3");
    std::fs::write(&path, encode_all(AudioFormat::Mp3, &x).unwrap()).unwrap();
    let e = read_audio_with(&path, &limits).unwrap_err().to_string();
    std::fs::remove_file(&path).ok();
    assert!(e.contains("limit.mp3") && e.contains("limit of 1 s"), "{e}");
    // A declared length over the limit is refused before decoding.
    body = encode_wav_whole(&x).unwrap();
    let e = decode_bytes(&body, &limits).unwrap_err().to_string();
    assert!(e.contains("header declares 72000 frames"), "{e}");
}

#[test]
fn probe_equals_decoded_length_for_every_format() {
    let x = signal(N);
    for format in [
        AudioFormat::Wav,
        AudioFormat::Flac,
        AudioFormat::Mp3,
        AudioFormat::Aac,
    ] {
        let path = tmp(&format!("probe.{}", format.extension()));
        std::fs::write(&path, encode_all(format, &x).unwrap()).unwrap();
        let info = probe(&path).unwrap();
        let w = read_audio(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(info.sample_rate_hz, OUTPUT_RATE_HZ, "{format}");
        assert_eq!(info.channels, 1, "{format}");
        assert_eq!(info.n_frames, w.samples.len() as u64, "{format}");
    }
}

/// An Ogg Vorbis file written by libvorbis (aoTuV), i.e. by an encoder independent of ours.
fn vorbis_file(x: &[f32], rate: u32, channels: u8) -> Vec<u8> {
    use std::num::{NonZeroU32, NonZeroU8};
    let mut enc = vorbis_rs::VorbisEncoderBuilder::new_with_serial(
        NonZeroU32::new(rate).unwrap(),
        NonZeroU8::new(channels).unwrap(),
        Vec::new(),
        1,
    )
    .build()
    .unwrap();
    let planes: Vec<Vec<f32>> = (0..channels)
        .map(|c| x.iter().map(|&s| s * (1.0 - 0.5 * f32::from(c))).collect())
        .collect();
    for start in (0..x.len()).step_by(1024) {
        let end = (start + 1024).min(x.len());
        let block: Vec<&[f32]> = planes.iter().map(|p| &p[start..end]).collect();
        enc.encode_audio_block(&block).unwrap();
    }
    enc.finish().unwrap()
}

#[test]
fn ogg_vorbis_from_libvorbis_decodes() {
    let x = signal(N);
    let path = tmp("clip.ogg");
    std::fs::write(&path, vorbis_file(&x, OUTPUT_RATE_HZ, 1)).unwrap();
    let w: Waveform = read_audio(&path).unwrap();
    let info = probe(&path).unwrap();
    std::fs::remove_file(&path).ok();
    assert_eq!(w.sample_rate_hz, OUTPUT_RATE_HZ);
    assert_eq!(info.n_frames, w.samples.len() as u64);
    assert!(
        w.samples.len() >= N - 2048 && w.samples.len() <= N + 2048,
        "decoded {} for {N}",
        w.samples.len()
    );
    let (lag, corr) = best_lag(&x[..N - 2048], &w.samples, 2048);
    assert!(corr > 0.99, "corr {corr} at lag {lag}");

    // Stereo at 44.1 kHz: channels are averaged (right is half the left: mean 0.75 x).
    let x44 = signal(44_100);
    let w = decode_bytes(&vorbis_file(&x44, 44_100, 2), &DecodeLimits::default()).unwrap();
    assert_eq!(w.sample_rate_hz, 44_100);
    let scaled: Vec<f32> = x44.iter().map(|&s| 0.75 * s).collect();
    let (lag, corr) = best_lag(&scaled[..40_000], &w.samples, 2048);
    assert!(corr > 0.99, "stereo corr {corr} at lag {lag}");
    assert!(snr_db(&scaled[..40_000], &w.samples, lag) > 15.0);
}

#[test]
fn shared_voice_clips_decode_and_probe_like_hound() {
    // The reference voices (../shared/voices, when this checkout has them): what `--ref-audio`
    // and the voice library read. Probe lengths must equal hound's, decodes `read_wav`'s.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/voices");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: no {}", dir.display());
        return;
    };
    let mut n = 0;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        let reader = hound::WavReader::open(&path).unwrap();
        let (spec, frames) = (reader.spec(), u64::from(reader.duration()));
        let info = probe(&path).unwrap();
        assert_eq!(info.n_frames, frames, "{}", path.display());
        assert_eq!(info.sample_rate_hz, spec.sample_rate, "{}", path.display());
        assert_eq!(
            info.channels,
            usize::from(spec.channels),
            "{}",
            path.display()
        );
        assert_eq!(read_audio(&path).unwrap(), read_wav(&path).unwrap());
        n += 1;
    }
    eprintln!("{n} voice clips checked");
}
