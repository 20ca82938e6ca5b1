//! `mp3`: MPEG-2 Layer III at 24 kHz mono, 64 kbit/s CBR, through LAME (`mp3lame-encoder`,
//! which builds LAME from bundled source). No Xing/Info tag: it would have to be rewritten at
//! the start once the stream ends, which a streamed body cannot do; CBR needs none to seek.
//! LAME is fed 1152 samples per call (two MPEG-2 granule frames), whatever the pushes were.
//! May use: error, audio::encode.

use mp3lame_encoder::{Bitrate, Builder, Encoder, FlushGap, Mode, MonoPcm, Quality};

use super::{FrameCodec, OUTPUT_RATE_HZ};
use crate::error::{Error, Result};

/// Samples per LAME call: two MPEG-2 Layer III frames of 576.
const CALL: usize = 1152;
/// LAME's own bound for a final flush.
const FLUSH_BYTES: usize = 7200;

pub(super) struct Mp3Codec {
    lame: Encoder,
}

fn lame_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Audio(format!("MP3 encoder (LAME): {what}: {e}"))
}

impl Mp3Codec {
    pub(super) fn new() -> Result<Self> {
        let b = Builder::new().ok_or_else(|| lame_error("init", "lame_init failed"))?;
        let lame = b
            .with_num_channels(1)
            .and_then(|b| b.with_sample_rate(OUTPUT_RATE_HZ))
            .and_then(|b| b.with_output_sample_rate(std::num::NonZeroU32::new(OUTPUT_RATE_HZ)))
            .and_then(|b| b.with_mode(Mode::Mono))
            // 64 kbit/s mono at 24 kHz is transparent for speech; OpenAI's mp3 is similar.
            .and_then(|b| b.with_brate(Bitrate::Kbps64))
            .and_then(|b| b.with_quality(Quality::Good))
            .and_then(|b| b.with_to_write_vbr_tag(false))
            .and_then(|b| b.build())
            .map_err(|e| lame_error("config", e))?;
        Ok(Mp3Codec { lame })
    }

    fn encode_call(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        out.reserve(mp3lame_encoder::max_required_buffer_size(samples.len()));
        self.lame
            .encode_to_vec(MonoPcm(samples), out)
            .map_err(|e| lame_error("encode", e))?;
        Ok(())
    }
}

impl FrameCodec for Mp3Codec {
    fn frame_len(&self) -> usize {
        CALL
    }

    fn header(&mut self) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    fn encode_frames(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        for call in samples.chunks_exact(CALL) {
            self.encode_call(call, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, tail: &[f32], out: &mut Vec<u8>) -> Result<()> {
        if !tail.is_empty() {
            self.encode_call(tail, out)?;
        }
        out.reserve(FLUSH_BYTES);
        self.lame
            .flush_to_vec::<FlushGap>(out)
            .map_err(|e| lame_error("flush", e))?;
        Ok(())
    }
}
