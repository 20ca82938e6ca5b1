//! `flac`: 16-bit mono FLAC at 24 kHz through `flacenc` (pure Rust), one fixed-size frame per
//! 4096 samples. The stream opens with a STREAMINFO that says "unknown" for what only the end
//! knows (total samples, frame sizes, MD5 all zero, as the FLAC format allows for streams);
//! [`patch_total_samples`] fills the total in when the whole file is at hand.
//! May use: error, audio::wav, audio::encode.

use flacenc::bitsink::ByteSink;
use flacenc::component::{BitRepr, StreamInfo};
use flacenc::error::Verify;
use flacenc::source::{Fill, FrameBuf};

use super::{FrameCodec, OUTPUT_RATE_HZ};
use crate::audio::wav::pcm16;
use crate::error::{Error, Result};

/// Samples per FLAC frame: flacenc's and libFLAC's default block size.
const BLOCK: usize = 4096;
const BITS: usize = 16;
/// Where STREAMINFO's 36-bit total sample count ends: "fLaC" (4) + block header (4) +
/// block sizes (4) + frame sizes (6) + rate/channels/bits/total (8).
const TOTAL_END: usize = 26;

pub(super) struct FlacCodec {
    config: flacenc::error::Verified<flacenc::config::Encoder>,
    info: StreamInfo,
    buf: FrameBuf,
    frame_number: usize,
}

fn flac_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Audio(format!("FLAC encoder: {what}: {e}"))
}

impl FlacCodec {
    pub(super) fn new() -> Result<Self> {
        let mut config = flacenc::config::Encoder::default();
        // Frames are encoded as they arrive; there is nothing to parallelise.
        config.multithread = false;
        let config = config
            .into_verified()
            .map_err(|(_, e)| flac_error("config", e))?;
        let info = StreamInfo::new(OUTPUT_RATE_HZ as usize, 1, BITS)
            .map_err(|e| flac_error("stream info", e))?;
        let buf = FrameBuf::with_size(1, BLOCK).map_err(|e| flac_error("frame buffer", e))?;
        Ok(FlacCodec {
            config,
            info,
            buf,
            frame_number: 0,
        })
    }

    fn encode_frame(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        let pcm: Vec<i32> = samples.iter().map(|&s| i32::from(pcm16(s))).collect();
        self.buf
            .fill_interleaved(&pcm)
            .map_err(|e| flac_error("fill", e))?;
        let frame = flacenc::encode_fixed_size_frame(
            &self.config,
            &self.buf,
            self.frame_number,
            &self.info,
        )
        .map_err(|e| flac_error("frame", e))?;
        self.frame_number += 1;
        let mut sink = ByteSink::new();
        frame.write(&mut sink).map_err(|e| flac_error("write", e))?;
        out.extend_from_slice(sink.as_slice());
        Ok(())
    }
}

impl FrameCodec for FlacCodec {
    fn frame_len(&self) -> usize {
        BLOCK
    }

    fn header(&mut self) -> Result<Vec<u8>> {
        let mut h = Vec::with_capacity(42);
        h.extend_from_slice(b"fLaC");
        // Last-metadata-block flag + type 0 (STREAMINFO), then its 24-bit length, 34.
        h.extend_from_slice(&[0x80, 0, 0, 34]);
        let block = (BLOCK as u16).to_be_bytes();
        h.extend_from_slice(&block); // min block size (the last block may be shorter)
        h.extend_from_slice(&block); // max block size
        h.extend_from_slice(&[0; 6]); // min, max frame size: unknown
        let packed: u64 = (u64::from(OUTPUT_RATE_HZ) << 44) | ((BITS as u64 - 1) << 36);
        h.extend_from_slice(&packed.to_be_bytes()); // rate, channels-1 = 0, bps-1, total 0
        h.extend_from_slice(&[0; 16]); // MD5: unknown
        Ok(h)
    }

    fn encode_frames(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        for frame in samples.chunks_exact(BLOCK) {
            self.encode_frame(frame, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, tail: &[f32], out: &mut Vec<u8>) -> Result<()> {
        if tail.is_empty() {
            return Ok(());
        }
        self.encode_frame(tail, out)
    }
}

/// Write the total sample count into the STREAMINFO of a whole stream made by this encoder.
pub(super) fn patch_total_samples(bytes: &mut [u8], total: u64) -> Result<()> {
    if bytes.len() < TOTAL_END || &bytes[..4] != b"fLaC" {
        return Err(Error::Audio("not a FLAC stream of this encoder".into()));
    }
    // 36 bits: past that the count is "unknown", which stays valid.
    if total >= 1 << 36 {
        return Ok(());
    }
    let field = &mut bytes[TOTAL_END - 5..TOTAL_END];
    let high = u64::from(field[0] & 0xf0) << 32;
    let value = high | total;
    field.copy_from_slice(&value.to_be_bytes()[3..]);
    Ok(())
}
