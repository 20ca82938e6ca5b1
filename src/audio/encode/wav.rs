//! `wav` and `pcm`: 16-bit little-endian PCM at 24 kHz mono, converted exactly as
//! `audio::wav::write_wav_mono_i16` converts (clamp, x32767, round). The streamed WAV header
//! states RIFF and data sizes of 0xFFFFFFFF (length unknown, the convention ffmpeg uses when
//! writing to a pipe); [`encode_wav_whole`] writes the real sizes, byte-identical to hound.
//! May use: error, audio::wav, audio::encode.

use super::{FrameCodec, OUTPUT_RATE_HZ};
use crate::audio::wav::pcm16;
use crate::error::{Error, Result};

/// Bytes of the canonical PCM WAV header (RIFF + 16-byte `fmt ` + `data` chunk header).
pub const WAV_HEADER_LEN: usize = 44;

/// Size field value that means "length unknown".
const UNKNOWN: u32 = u32::MAX;

pub(super) struct WavCodec {
    with_header: bool,
}

impl WavCodec {
    pub(super) fn new(with_header: bool) -> Self {
        WavCodec { with_header }
    }
}

impl FrameCodec for WavCodec {
    fn frame_len(&self) -> usize {
        1
    }

    fn header(&mut self) -> Result<Vec<u8>> {
        Ok(if self.with_header {
            header(UNKNOWN, UNKNOWN).to_vec()
        } else {
            Vec::new()
        })
    }

    fn encode_frames(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        push_pcm(samples, out);
        Ok(())
    }

    fn finish(&mut self, tail: &[f32], out: &mut Vec<u8>) -> Result<()> {
        push_pcm(tail, out);
        Ok(())
    }
}

fn push_pcm(samples: &[f32], out: &mut Vec<u8>) {
    out.reserve(samples.len() * 2);
    for &s in samples {
        out.extend_from_slice(&pcm16(s).to_le_bytes());
    }
}

/// The 44-byte header of 16-bit mono PCM at 24 kHz with the given RIFF and data sizes.
fn header(riff_size: u32, data_size: u32) -> [u8; WAV_HEADER_LEN] {
    let mut h = [0u8; WAV_HEADER_LEN];
    let channels = 1u16;
    let bits = 16u16;
    let block_align = channels * bits / 8;
    let fields: [&[u8]; 13] = [
        b"RIFF",
        &riff_size.to_le_bytes(),
        b"WAVE",
        b"fmt ",
        &16u32.to_le_bytes(),
        &1u16.to_le_bytes(), // WAVE_FORMAT_PCM
        &channels.to_le_bytes(),
        &OUTPUT_RATE_HZ.to_le_bytes(),
        &(OUTPUT_RATE_HZ * u32::from(block_align)).to_le_bytes(),
        &block_align.to_le_bytes(),
        &bits.to_le_bytes(),
        b"data",
        &data_size.to_le_bytes(),
    ];
    let mut at = 0;
    for f in fields {
        h[at..at + f.len()].copy_from_slice(f);
        at += f.len();
    }
    h
}

/// RIFF and data sizes for `data_len` bytes of samples, or an error past WAV's 4 GiB limit.
fn sizes(data_len: usize) -> Result<(u32, u32)> {
    let too_long = || {
        Error::Audio(format!(
            "{} samples are too many for one WAV (4 GiB limit)",
            data_len / 2
        ))
    };
    let data = u32::try_from(data_len).map_err(|_| too_long())?;
    let riff = data
        .checked_add(WAV_HEADER_LEN as u32 - 8)
        .filter(|&r| r != UNKNOWN)
        .ok_or_else(too_long)?;
    Ok((riff, data))
}

/// A whole 24 kHz mono 16-bit WAV with correct sizes (the bytes `write_wav_24k` writes).
pub fn encode_wav_whole(samples: &[f32]) -> Result<Vec<u8>> {
    let (riff, data) = sizes(samples.len() * 2)?;
    let mut out = Vec::with_capacity(WAV_HEADER_LEN + samples.len() * 2);
    out.extend_from_slice(&header(riff, data));
    push_pcm(samples, &mut out);
    Ok(out)
}

/// Replace the unknown sizes of a streamed WAV held whole in `bytes` by the real ones.
pub(super) fn patch_sizes(bytes: &mut [u8]) -> Result<()> {
    let data_len = bytes
        .len()
        .checked_sub(WAV_HEADER_LEN)
        .ok_or_else(|| Error::Audio("WAV shorter than its header".into()))?;
    let (riff, data) = sizes(data_len)?;
    bytes[4..8].copy_from_slice(&riff.to_le_bytes());
    bytes[40..44].copy_from_slice(&data.to_le_bytes());
    Ok(())
}
