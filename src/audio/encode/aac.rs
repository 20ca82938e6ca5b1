//! `aac`: AAC-LC in ADTS framing at 24 kHz mono, 64 kbit/s CBR, through Fraunhofer FDK AAC
//! (`fdk-aac`, which builds the library from bundled source). The encoder is fed one
//! 1024-sample frame per call. The crate exposes no flush, so `finish` pads with zero frames
//! until the encoder delay has been pushed out: decoders then return the input followed by at
//! most a few frames of silence (ADTS has no field to trim them).
//! May use: error, audio::wav, audio::encode.

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use super::{FrameCodec, OUTPUT_RATE_HZ};
use crate::audio::wav::pcm16;
use crate::error::{Error, Result};

const BITRATE: u32 = 64_000;

pub(super) struct AacCodec {
    enc: Encoder,
    frame: usize,
    /// Codec delay in samples: how much zero input `finish` must add.
    delay: usize,
    /// Room for one access unit.
    out_buf: Vec<u8>,
}

fn aac_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Audio(format!("AAC encoder (fdk-aac): {what}: {e}"))
}

impl AacCodec {
    pub(super) fn new() -> Result<Self> {
        let enc = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(BITRATE),
            sample_rate: OUTPUT_RATE_HZ,
            transport: Transport::Adts,
            channels: ChannelMode::Mono,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| aac_error("init", e))?;
        let info = enc.info().map_err(|e| aac_error("info", e))?;
        let frame = info.frameLength as usize;
        if frame == 0 {
            return Err(aac_error("info", "frame length 0"));
        }
        // An ADTS access unit is at most 6144 bits per channel plus its header; take the
        // library's own bound when it is larger.
        let out_len = (info.maxOutBufBytes as usize).max(8192);
        Ok(AacCodec {
            enc,
            frame,
            delay: info.nDelay as usize,
            out_buf: vec![0; out_len],
        })
    }

    fn encode_frame(&mut self, frame: &[f32], out: &mut Vec<u8>) -> Result<()> {
        let pcm: Vec<i16> = frame.iter().map(|&s| pcm16(s)).collect();
        let mut at = 0;
        // fdk-aac consumes a whole frame per call; the loop is for safety, and it stops if the
        // library makes no progress rather than spinning.
        while at < pcm.len() {
            let info = self
                .enc
                .encode(&pcm[at..], &mut self.out_buf)
                .map_err(|e| aac_error("encode", e))?;
            let written = info.output_size.min(self.out_buf.len());
            out.extend_from_slice(&self.out_buf[..written]);
            if info.input_consumed == 0 {
                return Err(aac_error("encode", "encoder consumed no input"));
            }
            at += info.input_consumed;
        }
        Ok(())
    }
}

impl FrameCodec for AacCodec {
    fn frame_len(&self) -> usize {
        self.frame
    }

    fn header(&mut self) -> Result<Vec<u8>> {
        // ADTS repeats its header on every frame; there is no stream header.
        Ok(Vec::new())
    }

    fn encode_frames(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        for frame in samples.chunks_exact(self.frame) {
            self.encode_frame(frame, out)?;
        }
        Ok(())
    }

    fn finish(&mut self, tail: &[f32], out: &mut Vec<u8>) -> Result<()> {
        // Zero-pad the tail, then feed enough silence for the delay line to reach the output,
        // plus one frame for the encoder's own buffering.
        let padded = (tail.len() + self.delay).div_ceil(self.frame) * self.frame + self.frame;
        let mut rest = tail.to_vec();
        rest.resize(padded, 0.0);
        for frame in rest.chunks_exact(self.frame) {
            self.encode_frame(frame, out)?;
        }
        Ok(())
    }
}
