//! Response encoders: the engine's 24 kHz mono f32 output to the bytes of an OpenAI
//! `response_format` (`wav`, `pcm`, `flac`, `mp3`, `opus`, `aac`), streaming or whole.
//!
//! [`AudioEncoder`] buffers input to the codec's frame size and always hands the codec the same
//! sequence of whole frames, so the concatenation of everything `push` and `finish` return is
//! byte-identical however the samples were chunked: a streamed HTTP body equals the one-shot
//! body of [`encode_all`] (except the WAV and FLAC length fields, which only a whole encode
//! knows). One file per format; this file holds the format enum and the frame buffering.
//! May use: error, audio::wav.

mod aac;
mod flac;
mod mp3;
mod opus;
mod wav;

pub use wav::{encode_wav_whole, WAV_HEADER_LEN};

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The rate of every encoder's input: the codec's output rate.
pub const OUTPUT_RATE_HZ: u32 = 24_000;

/// An OpenAI-compatible `response_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AudioFormat {
    /// RIFF WAVE, 16-bit PCM mono.
    Wav,
    /// Raw signed 16-bit little-endian PCM, mono, no header.
    Pcm,
    /// FLAC, 16-bit mono.
    Flac,
    /// MPEG-2 Layer III, CBR, mono (LAME).
    Mp3,
    /// Opus in an Ogg container (RFC 7845).
    Opus,
    /// AAC-LC in ADTS framing (fdk-aac).
    Aac,
}

impl AudioFormat {
    /// Every format, in OpenAI's documentation order.
    pub const ALL: [AudioFormat; 6] = [
        AudioFormat::Mp3,
        AudioFormat::Opus,
        AudioFormat::Aac,
        AudioFormat::Flac,
        AudioFormat::Wav,
        AudioFormat::Pcm,
    ];

    /// Parse OpenAI's name for a format (ASCII case ignored).
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|f| f.name()).collect();
                Error::BadRequest(format!(
                    "unsupported response_format `{name}` (supported: {})",
                    names.join(", ")
                ))
            })
    }

    /// OpenAI's name for the format.
    pub fn name(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Pcm => "pcm",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
            AudioFormat::Opus => "opus",
            AudioFormat::Aac => "aac",
        }
    }

    /// The HTTP `Content-Type` of a body in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            // No registered type names headerless little-endian PCM (audio/L16 is big-endian).
            AudioFormat::Pcm => "audio/pcm",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Mp3 => "audio/mpeg",
            AudioFormat::Opus => "audio/ogg; codecs=opus",
            AudioFormat::Aac => "audio/aac",
        }
    }

    /// The usual file extension.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Opus => "ogg",
            other => other.name(),
        }
    }
}

impl FromStr for AudioFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One format's codec, fed only whole frames so its output cannot depend on the chunking.
trait FrameCodec: Send {
    /// Samples per frame; the input of `encode_frames` is a whole number of frames.
    fn frame_len(&self) -> usize;
    /// Bytes that open the stream (container headers), emitted before any audio.
    fn header(&mut self) -> Result<Vec<u8>>;
    /// Encode `samples` (a multiple of `frame_len`, values finite and in [-1, 1]).
    fn encode_frames(&mut self, samples: &[f32], out: &mut Vec<u8>) -> Result<()>;
    /// Encode the last `tail` (< `frame_len` samples, possibly none), flush, close the stream.
    fn finish(&mut self, tail: &[f32], out: &mut Vec<u8>) -> Result<()>;
}

/// A streaming encoder from 24 kHz mono f32 to one [`AudioFormat`].
///
/// Samples are clamped to [-1, 1] (NaN becomes 0) before they reach a codec, as
/// `wav::write_wav_mono_i16` does at its PCM conversion.
pub struct AudioEncoder {
    format: AudioFormat,
    codec: Box<dyn FrameCodec>,
    /// Samples waiting for a whole frame.
    pending: Vec<f32>,
    header_sent: bool,
    /// Samples pushed so far.
    n_samples: u64,
}

impl AudioEncoder {
    pub fn new(format: AudioFormat) -> Result<Self> {
        let codec: Box<dyn FrameCodec> = match format {
            AudioFormat::Wav => Box::new(wav::WavCodec::new(true)),
            AudioFormat::Pcm => Box::new(wav::WavCodec::new(false)),
            AudioFormat::Flac => Box::new(flac::FlacCodec::new()?),
            AudioFormat::Mp3 => Box::new(mp3::Mp3Codec::new()?),
            AudioFormat::Opus => Box::new(opus::OpusCodec::new()?),
            AudioFormat::Aac => Box::new(aac::AacCodec::new()?),
        };
        let frame = codec.frame_len();
        Ok(AudioEncoder {
            format,
            codec,
            pending: Vec::with_capacity(frame),
            header_sent: false,
            n_samples: 0,
        })
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Samples pushed so far.
    pub fn n_samples(&self) -> u64 {
        self.n_samples
    }

    /// Encode `samples`; returns the bytes that are ready (the header on the first call, even
    /// when `samples` is empty, then whole codec frames).
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<u8>> {
        let mut out = self.take_header()?;
        self.n_samples += samples.len() as u64;
        let frame = self.codec.frame_len();
        let mut rest = samples;
        if !self.pending.is_empty() {
            let need = frame - self.pending.len();
            let take = need.min(rest.len());
            self.pending.extend(rest[..take].iter().map(|&s| clean(s)));
            rest = &rest[take..];
            if self.pending.len() == frame {
                self.codec.encode_frames(&self.pending, &mut out)?;
                self.pending.clear();
            }
        }
        let whole = rest.len() / frame * frame;
        if whole > 0 {
            let cleaned: Vec<f32> = rest[..whole].iter().map(|&s| clean(s)).collect();
            self.codec.encode_frames(&cleaned, &mut out)?;
        }
        self.pending.extend(rest[whole..].iter().map(|&s| clean(s)));
        Ok(out)
    }

    /// Encode what is buffered, flush the codec and close the stream.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        let mut out = self.take_header()?;
        self.codec.finish(&self.pending, &mut out)?;
        Ok(out)
    }

    fn take_header(&mut self) -> Result<Vec<u8>> {
        if self.header_sent {
            return Ok(Vec::new());
        }
        self.header_sent = true;
        self.codec.header()
    }
}

/// Clamp to [-1, 1], NaN to 0: what every codec below may assume of its input.
fn clean(s: f32) -> f32 {
    if s.is_nan() {
        0.0
    } else {
        s.clamp(-1.0, 1.0)
    }
}

/// Encode a whole clip in one call through [`AudioEncoder`]. For WAV the header then states
/// the real sizes (equal to [`encode_wav_whole`]), for FLAC the STREAMINFO states the total
/// sample count; every other byte equals the streamed output.
pub fn encode_all(format: AudioFormat, samples: &[f32]) -> Result<Vec<u8>> {
    let mut enc = AudioEncoder::new(format)?;
    let mut out = enc.push(samples)?;
    out.extend(enc.finish()?);
    match format {
        AudioFormat::Wav => wav::patch_sizes(&mut out)?,
        AudioFormat::Flac => flac::patch_total_samples(&mut out, samples.len() as u64)?,
        _ => {}
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_and_errors() {
        for f in AudioFormat::ALL {
            assert_eq!(AudioFormat::parse(f.name()).unwrap(), f);
            assert_eq!(f.to_string().parse::<AudioFormat>().unwrap(), f);
        }
        assert_eq!(AudioFormat::parse("MP3").unwrap(), AudioFormat::Mp3);
        let e = AudioFormat::parse("ogg").unwrap_err().to_string();
        assert!(e.contains("`ogg`") && e.contains("wav, pcm"), "{e}");
    }

    #[test]
    fn clean_clamps_and_kills_nan() {
        assert_eq!(clean(f32::NAN), 0.0);
        assert_eq!(clean(2.0), 1.0);
        assert_eq!(clean(f32::NEG_INFINITY), -1.0);
        assert_eq!(clean(0.25), 0.25);
    }
}
