//! Decoding response bodies back to samples with decoders independent of ours where one
//! exists (libopus for Ogg Opus), and the lag/correlation measure; shared by
//! tests/audio_formats.rs and tests/server.rs.
#![allow(dead_code)]

use std::io::Cursor;

use higgs_engine::audio::decode::{decode_bytes, DecodeLimits};
use higgs_engine::audio::encode::{AudioFormat, OUTPUT_RATE_HZ};

/// Lag in 0..=max_lag maximising the normalised correlation of `x` with `y[lag..]`, and that
/// correlation, over the middle of `x` (codec edges are excluded).
pub fn best_lag(x: &[f32], y: &[f32], max_lag: usize) -> (usize, f64) {
    let (lo, hi) = (x.len() / 10, x.len() * 9 / 10);
    let mut best = (0, f64::MIN);
    for lag in 0..=max_lag {
        if hi + lag > y.len() {
            break;
        }
        let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
        for i in lo..hi {
            let (a, b) = (f64::from(x[i]), f64::from(y[i + lag]));
            xy += a * b;
            xx += a * a;
            yy += b * b;
        }
        let c = xy / (xx * yy).sqrt().max(1e-30);
        if c > best.1 {
            best = (lag, c);
        }
    }
    best
}

/// Decode an Ogg Opus stream with libopus, applying pre-skip and end trimming (RFC 7845 §4).
pub fn decode_ogg_opus(bytes: &[u8]) -> Vec<f32> {
    let mut r = ogg::PacketReader::new(Cursor::new(bytes.to_vec()));
    let head = r.read_packet_expected().unwrap();
    assert_eq!(&head.data[..8], b"OpusHead");
    assert_eq!(head.data[9], 1, "mono");
    let pre_skip = u64::from(u16::from_le_bytes([head.data[10], head.data[11]]));
    let rate = u32::from_le_bytes(head.data[12..16].try_into().unwrap());
    assert_eq!(rate, OUTPUT_RATE_HZ);
    let tags = r.read_packet_expected().unwrap();
    assert_eq!(&tags.data[..8], b"OpusTags");
    let mut dec = opus::Decoder::new(OUTPUT_RATE_HZ, opus::Channels::Mono).unwrap();
    let mut out = Vec::new();
    let mut final_granule = None;
    let mut buf = vec![0f32; 5760];
    while let Some(p) = r.read_packet().unwrap() {
        let k = dec.decode_float(&p.data, &mut buf, false).unwrap();
        out.extend_from_slice(&buf[..k]);
        if p.last_in_stream() {
            final_granule = Some(p.absgp_page());
        }
    }
    let final_granule = final_granule.expect("stream has an end-of-stream page");
    // Granules are 48 kHz samples; this decoder runs at 24 kHz.
    let skip = (pre_skip / 2) as usize;
    let len = ((final_granule - pre_skip) / 2) as usize;
    assert!(skip + len <= out.len(), "granule past the decoded audio");
    out[skip..skip + len].to_vec()
}

pub fn decode_pcm(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect()
}

/// Decode a response body back to samples with an independent decoder.
pub fn decode_response(format: AudioFormat, bytes: &[u8]) -> Vec<f32> {
    match format {
        AudioFormat::Pcm => decode_pcm(bytes),
        AudioFormat::Opus => decode_ogg_opus(bytes),
        _ => {
            let w = decode_bytes(bytes, &DecodeLimits::default())
                .unwrap_or_else(|e| panic!("{format}: {e}"));
            assert_eq!(w.sample_rate_hz, OUTPUT_RATE_HZ, "{format}");
            w.samples
        }
    }
}
