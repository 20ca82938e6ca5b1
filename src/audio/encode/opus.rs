//! `opus`: Ogg Opus (RFC 7845) from 24 kHz mono, through libopus (`opus` crate, which builds
//! libopus from bundled source with cmake) and the pure-Rust `ogg` page writer.
//!
//! 20 ms packets (480 samples at 24 kHz, a rate Opus takes natively), five per Ogg page so a
//! streamed body gets a page every 100 ms. Granule positions count 48 kHz samples as RFC 7845
//! requires; the OpusHead pre-skip is the encoder lookahead, and the stream is padded with
//! zeros past the last sample by at least that lookahead, with the final granule trimming the
//! padding off again, so a conforming decoder returns exactly the input length.
//! May use: error, audio::encode.

use ogg::writing::{PacketWriteEndInfo, PacketWriter};

use super::{FrameCodec, OUTPUT_RATE_HZ};
use crate::error::{Error, Result};

/// Samples per packet: 20 ms, Opus's default frame.
const FRAME: usize = (OUTPUT_RATE_HZ / 50) as usize;
/// Granule (48 kHz) units per input sample.
const GRANULE_PER_SAMPLE: u64 = 48_000 / OUTPUT_RATE_HZ as u64;
const PACKETS_PER_PAGE: u64 = 5;
/// libopus's recommended bound on one packet's size.
const MAX_PACKET: usize = 4000;
/// 48 kbit/s: transparent for 24 kHz speech (OpenAI's opus is in the same range).
const BITRATE: i32 = 48_000;
/// Any fixed serial: a response is one logical stream, and a fixed one keeps output
/// reproducible.
const SERIAL: u32 = 0x4869_6767; // "Higg"
const VENDOR: &str = concat!("higgs-engine ", env!("CARGO_PKG_VERSION"));

pub(super) struct OpusCodec {
    enc: opus::Encoder,
    ogg: PacketWriter<'static, Vec<u8>>,
    /// Encoder lookahead in input samples (24 kHz).
    lookahead: usize,
    packets: u64,
    /// Input samples (without padding) encoded so far.
    samples: u64,
}

fn opus_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Audio(format!("Opus encoder: {what}: {e}"))
}

impl OpusCodec {
    pub(super) fn new() -> Result<Self> {
        let mut enc = opus::Encoder::new(
            OUTPUT_RATE_HZ,
            opus::Channels::Mono,
            opus::Application::Audio,
        )
        .map_err(|e| opus_error("init", e))?;
        enc.set_bitrate(opus::Bitrate::Bits(BITRATE))
            .map_err(|e| opus_error("bitrate", e))?;
        let lookahead = enc
            .get_lookahead()
            .map_err(|e| opus_error("lookahead", e))?;
        let lookahead = usize::try_from(lookahead)
            .map_err(|_| opus_error("lookahead", format!("negative ({lookahead})")))?;
        Ok(OpusCodec {
            enc,
            ogg: PacketWriter::new(Vec::new()),
            lookahead,
            packets: 0,
            samples: 0,
        })
    }

    fn pre_skip(&self) -> u64 {
        self.lookahead as u64 * GRANULE_PER_SAMPLE
    }

    fn write(&mut self, packet: Vec<u8>, end: PacketWriteEndInfo, granule: u64) -> Result<()> {
        self.ogg
            .write_packet(packet, SERIAL, end, granule)
            .map_err(|e| opus_error("ogg page", e))
    }

    /// Encode one 480-sample frame; `last` closes the stream with `final_granule`.
    fn encode_frame(&mut self, frame: &[f32], last: Option<u64>) -> Result<()> {
        let packet = self
            .enc
            .encode_vec_float(frame, MAX_PACKET)
            .map_err(|e| opus_error("encode", e))?;
        self.packets += 1;
        let granule = self.packets * FRAME as u64 * GRANULE_PER_SAMPLE;
        match last {
            Some(final_granule) => self.write(packet, PacketWriteEndInfo::EndStream, final_granule),
            None if self.packets.is_multiple_of(PACKETS_PER_PAGE) => {
                self.write(packet, PacketWriteEndInfo::EndPage, granule)
            }
            None => self.write(packet, PacketWriteEndInfo::NormalPacket, granule),
        }
    }

    fn drain(&mut self, out: &mut Vec<u8>) {
        out.append(self.ogg.inner_mut());
    }
}

impl FrameCodec for OpusCodec {
    fn frame_len(&self) -> usize {
        FRAME
    }

    fn header(&mut self) -> Result<Vec<u8>> {
        // RFC 7845 §5.1: OpusHead, version 1, mono, pre-skip, input rate, gain 0, family 0.
        let pre_skip = u16::try_from(self.pre_skip())
            .map_err(|_| opus_error("pre-skip", "does not fit 16 bits"))?;
        let mut head = b"OpusHead".to_vec();
        head.push(1);
        head.push(1);
        head.extend_from_slice(&pre_skip.to_le_bytes());
        head.extend_from_slice(&OUTPUT_RATE_HZ.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        // §5.2: OpusTags with a vendor string and no comments.
        let mut tags = b"OpusTags".to_vec();
        tags.extend_from_slice(&(VENDOR.len() as u32).to_le_bytes());
        tags.extend_from_slice(VENDOR.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes());
        // Each header packet ends its own page (§3).
        self.write(head, PacketWriteEndInfo::EndPage, 0)?;
        self.write(tags, PacketWriteEndInfo::EndPage, 0)?;
        let mut out = Vec::new();
        self.drain(&mut out);
        Ok(out)
    }

    fn encode_frames(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()> {
        for frame in samples.chunks_exact(FRAME) {
            self.encode_frame(frame, None)?;
            self.samples += FRAME as u64;
        }
        self.drain(out);
        Ok(())
    }

    fn finish(&mut self, tail: &[f32], out: &mut Vec<u8>) -> Result<()> {
        let total = self.samples + tail.len() as u64;
        let final_granule = self.pre_skip() + total * GRANULE_PER_SAMPLE;
        // The last real sample leaves the encoder `lookahead` samples later: pad past it with
        // zeros to whole frames (at least one frame, since the lookahead is never zero).
        let padded = (tail.len() + self.lookahead).div_ceil(FRAME).max(1) * FRAME;
        let mut rest = tail.to_vec();
        rest.resize(padded, 0.0);
        let n = rest.len() / FRAME;
        for (i, frame) in rest.chunks_exact(FRAME).enumerate() {
            let last = (i + 1 == n).then_some(final_granule);
            self.encode_frame(frame, last)?;
        }
        self.drain(out);
        Ok(())
    }
}
