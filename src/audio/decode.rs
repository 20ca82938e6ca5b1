//! Decode reference clips and uploads in any common container (WAV, MP3, FLAC, Ogg Vorbis,
//! ADTS AAC) through symphonia into the same mono [`Waveform`] as [`super::wav::read_wav`]:
//! integer PCM scaled like librosa (int16 / 32768, 8-bit unsigned centred on 128), float as is,
//! channels averaged. For WAV the result is bit-identical to `read_wav`.
//!
//! Input is untrusted (the speech server decodes uploads), so every entry point takes
//! [`DecodeLimits`]: rate, channel count and declared length are checked from the header before
//! anything is decoded, and the decoded length is checked again after every packet, so a lying
//! header can neither allocate without bound nor run for long. [`probe`] reads only the header
//! where the header states an exact length (WAV, FLAC) and otherwise counts frames by decoding
//! without keeping them, so its `n_frames` always equals the decoded length.
//! May use: error, audio::wav.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use symphonia::core::audio::{AudioBufferRef, Signal};
use symphonia::core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;
use symphonia::core::sample::{i24, u24};

use super::wav::Waveform;
use crate::error::{Error, Result};

/// Bounds on what a decode may accept. The defaults admit every real voice prompt or upload
/// (telephone 8 kHz up to studio 192 kHz, up to 7.1 surround, ten minutes) while keeping the
/// worst case to about 600 s x 192 kHz x 4 bytes = 461 MB of mono f32.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodeLimits {
    /// Lowest sample rate accepted (default 8 000 Hz: below it speech is not intelligible).
    pub min_rate_hz: u32,
    /// Highest sample rate accepted (default 192 000 Hz, the highest common studio rate).
    pub max_rate_hz: u32,
    /// Longest clip accepted, in seconds of audio (default 600).
    pub max_seconds: f64,
    /// Most channels accepted before the downmix (default 8, i.e. 7.1).
    pub max_channels: usize,
    /// Largest input accepted, in bytes (default 1 GiB: a 600 s 192 kHz 24-bit stereo WAV is
    /// 691 MB). Bounds the work on inputs that are mostly not audio.
    pub max_bytes: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            min_rate_hz: 8_000,
            max_rate_hz: 192_000,
            max_seconds: 600.0,
            max_channels: 8,
            max_bytes: 1 << 30,
        }
    }
}

impl DecodeLimits {
    /// Most frames accepted at `rate_hz`.
    fn max_frames(&self, rate_hz: u32) -> u64 {
        // `as` saturates: a huge or NaN max_seconds gives u64::MAX or 0, never a panic.
        (self.max_seconds * f64::from(rate_hz)).floor() as u64
    }
}

/// What a header (or a counting pass) says about a clip, before any resampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioInfo {
    pub sample_rate_hz: u32,
    /// Frames (samples per channel) that decoding yields.
    pub n_frames: u64,
    pub channels: usize,
}

/// Decode an audio file of any supported format to mono f32, with default limits.
pub fn read_audio(path: &Path) -> Result<Waveform> {
    read_audio_with(path, &DecodeLimits::default())
}

/// [`read_audio`] with explicit limits.
pub fn read_audio_with(path: &Path, limits: &DecodeLimits) -> Result<Waveform> {
    let (source, head) = open_file(path, limits)?;
    decode_source(source, &head, hint_for(path), limits).map_err(|e| name_error(e, path))
}

/// Decode audio held in memory (an upload) to mono f32; the format is found from the content.
pub fn decode_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<Waveform> {
    check_size(bytes.len() as u64, limits)?;
    let source = Box::new(std::io::Cursor::new(bytes.to_vec()));
    decode_source(source, bytes, Hint::new(), limits)
}

/// Rate, length and channels of an audio file, with default limits (see the module doc for
/// when this reads only the header).
pub fn probe(path: &Path) -> Result<AudioInfo> {
    probe_with(path, &DecodeLimits::default())
}

/// [`probe`] with explicit limits.
pub fn probe_with(path: &Path, limits: &DecodeLimits) -> Result<AudioInfo> {
    let (source, head) = open_file(path, limits)?;
    probe_source(source, &head, hint_for(path), limits).map_err(|e| name_error(e, path))
}

/// [`probe`] for audio held in memory.
pub fn probe_bytes(bytes: &[u8], limits: &DecodeLimits) -> Result<AudioInfo> {
    check_size(bytes.len() as u64, limits)?;
    let source = Box::new(std::io::Cursor::new(bytes.to_vec()));
    probe_source(source, bytes, Hint::new(), limits)
}

/// Bytes of the file start kept to recognise a streamed WAV (RIFF size 0xFFFFFFFF).
const HEAD_LEN: usize = 8;

/// Decode errors tolerated before giving up: a real MP3 may open with a frame whose bit
/// reservoir is missing, but a stream of broken packets is not audio.
const MAX_DECODE_ERRORS: usize = 8;

fn open_file(path: &Path, limits: &DecodeLimits) -> Result<(Box<dyn MediaSource>, Vec<u8>)> {
    let io = |err: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        err,
    };
    let mut file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    check_size(len, limits).map_err(|e| name_error(e, path))?;
    let mut head = Vec::with_capacity(HEAD_LEN);
    (&mut file)
        .take(HEAD_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    Ok((Box::new(file), head))
}

fn check_size(len: u64, limits: &DecodeLimits) -> Result<()> {
    if len == 0 {
        return Err(Error::Audio("input is empty".into()));
    }
    if len > limits.max_bytes {
        return Err(Error::Audio(format!(
            "input is {len} bytes, over the limit of {} bytes",
            limits.max_bytes
        )));
    }
    Ok(())
}

fn hint_for(path: &Path) -> Hint {
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    hint
}

/// Prefix an audio error with the file it came from.
fn name_error(e: Error, path: &Path) -> Error {
    match e {
        Error::Audio(msg) => Error::Audio(format!("{}: {msg}", path.display())),
        other => other,
    }
}

/// ffmpeg and our own streaming WAV encoder write RIFF size 0xFFFFFFFF when the length is not
/// known up front; the data size is then a placeholder, not a declaration.
fn riff_length_unknown(head: &[u8]) -> bool {
    head.len() >= 8 && &head[..4] == b"RIFF" && head[4..8] == [0xff; 4]
}

/// An opened stream whose header passed the limits.
struct Opened {
    format: Box<dyn FormatReader>,
    decoder: Box<dyn Decoder>,
    track_id: u32,
    rate: u32,
    channels: usize,
    /// Frames the header declares, when it declares a trustworthy exact length.
    declared: Option<u64>,
    /// Whether the codec's decoded length is exactly the declared one (PCM, FLAC).
    exact_codec: bool,
}

fn open(
    source: Box<dyn MediaSource>,
    head: &[u8],
    hint: Hint,
    limits: &DecodeLimits,
) -> Result<Opened> {
    let mss = MediaSourceStream::new(source, Default::default());
    let format_opts = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &format_opts, &MetadataOptions::default())
        .map_err(|e| sym_error("cannot recognise the audio format", e))?;
    let format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| Error::Audio("no audio track".into()))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let (rate, channels) = check_header(&params, limits)?;
    let exact_codec = symphonia::default::get_codecs()
        .get_codec(params.codec)
        .is_some_and(|d| d.short_name.starts_with("pcm") || d.short_name == "flac");
    let declared = params.n_frames.filter(|_| !riff_length_unknown(head));
    if let Some(n) = declared {
        let max = limits.max_frames(rate);
        if n > max {
            return Err(Error::Audio(format!(
                "header declares {n} frames ({:.1} s at {rate} Hz), over the limit of {} s",
                n as f64 / f64::from(rate),
                limits.max_seconds
            )));
        }
    }
    let decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| sym_error("unsupported codec", e))?;
    Ok(Opened {
        format,
        decoder,
        track_id,
        rate,
        channels,
        declared: declared.filter(|_| exact_codec),
        exact_codec,
    })
}

/// Rate and channel count from the codec parameters, checked against the limits.
fn check_header(params: &CodecParameters, limits: &DecodeLimits) -> Result<(u32, usize)> {
    let rate = params
        .sample_rate
        .ok_or_else(|| Error::Audio("header states no sample rate".into()))?;
    if rate < limits.min_rate_hz || rate > limits.max_rate_hz {
        return Err(Error::Audio(format!(
            "sample rate {rate} Hz is outside the accepted {}..={} Hz",
            limits.min_rate_hz, limits.max_rate_hz
        )));
    }
    // Some containers (ADTS, MP3) only know the channel layout once a packet is decoded;
    // then the first decoded buffer is checked instead.
    let channels = params.channels.map_or(0, |c| c.count());
    check_channels(channels, limits)?;
    Ok((rate, channels))
}

fn check_channels(channels: usize, limits: &DecodeLimits) -> Result<()> {
    if channels > limits.max_channels {
        return Err(Error::Audio(format!(
            "{channels} channels, over the limit of {}",
            limits.max_channels
        )));
    }
    Ok(())
}

fn sym_error(what: &str, e: SymError) -> Error {
    Error::Audio(format!("{what}: {e}"))
}

/// Decode every packet of the track, handing each buffer to `sink` after checking rate,
/// channels and the running length. Returns the total frames decoded.
fn run(
    opened: &mut Opened,
    limits: &DecodeLimits,
    mut sink: impl FnMut(&AudioBufferRef<'_>, usize) -> Result<()>,
) -> Result<u64> {
    let max = limits.max_frames(opened.rate);
    let mut total = 0u64;
    let mut errors = 0usize;
    loop {
        let packet = match opened.format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => {
                return Err(Error::Audio(
                    "stream changes its parameters mid-way (chained streams are not supported)"
                        .into(),
                ))
            }
            Err(e) => return Err(sym_error("corrupt container", e)),
        };
        if packet.track_id() != opened.track_id {
            continue;
        }
        let buf = match opened.decoder.decode(&packet) {
            Ok(buf) => buf,
            Err(SymError::DecodeError(msg)) => {
                errors += 1;
                if errors > MAX_DECODE_ERRORS {
                    return Err(Error::Audio(format!(
                        "more than {MAX_DECODE_ERRORS} corrupt packets (last: {msg})"
                    )));
                }
                continue;
            }
            Err(SymError::IoError(e)) if e.kind() == ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(sym_error("cannot decode", e)),
        };
        let spec = buf.spec();
        if spec.rate != opened.rate {
            return Err(Error::Audio(format!(
                "sample rate changes mid-stream ({} Hz, then {} Hz)",
                opened.rate, spec.rate
            )));
        }
        let channels = spec.channels.count();
        if opened.channels == 0 {
            check_channels(channels, limits)?;
            opened.channels = channels;
        }
        if channels != opened.channels || channels == 0 {
            return Err(Error::Audio(format!(
                "channel count changes mid-stream ({}, then {channels})",
                opened.channels
            )));
        }
        total += buf.frames() as u64;
        if total > max {
            return Err(Error::Audio(format!(
                "decoded length passes the limit of {} s ({max} frames at {} Hz)",
                limits.max_seconds, opened.rate
            )));
        }
        sink(&buf, channels)?;
    }
    if total == 0 {
        return Err(Error::Audio(format!(
            "no audio decoded ({errors} corrupt packets)"
        )));
    }
    if let Some(n) = opened.declared {
        if total != n {
            return Err(Error::Audio(format!(
                "truncated or corrupt: header declares {n} frames, {total} decoded"
            )));
        }
    }
    Ok(total)
}

/// Runs a symphonia pass; a panic inside the decoder (a bug on malformed input) becomes an
/// audio error for this input instead of taking the process (or a server) down.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown".into());
        Err(Error::Audio(format!(
            "the decoder failed while {what} this input (malformed audio): {msg}"
        )))
    })
}

fn decode_source(
    source: Box<dyn MediaSource>,
    head: &[u8],
    hint: Hint,
    limits: &DecodeLimits,
) -> Result<Waveform> {
    guarded("decoding", || {
        decode_source_inner(source, head, hint, limits)
    })
}

fn decode_source_inner(
    source: Box<dyn MediaSource>,
    head: &[u8],
    hint: Hint,
    limits: &DecodeLimits,
) -> Result<Waveform> {
    let mut opened = open(source, head, hint, limits)?;
    let mut samples = Vec::new();
    if let Some(n) = opened.declared {
        // Bounded by the header check above.
        samples.reserve(usize::try_from(n).unwrap_or(0));
    }
    let mut frame = Vec::new();
    run(&mut opened, limits, |buf, channels| {
        append_mono(buf, channels, &mut frame, &mut samples);
        Ok(())
    })?;
    Ok(Waveform {
        samples,
        sample_rate_hz: opened.rate,
    })
}

fn probe_source(
    source: Box<dyn MediaSource>,
    head: &[u8],
    hint: Hint,
    limits: &DecodeLimits,
) -> Result<AudioInfo> {
    guarded("probing", || probe_source_inner(source, head, hint, limits))
}

fn probe_source_inner(
    source: Box<dyn MediaSource>,
    head: &[u8],
    hint: Hint,
    limits: &DecodeLimits,
) -> Result<AudioInfo> {
    let mut opened = open(source, head, hint, limits)?;
    let n_frames = match (opened.declared, opened.exact_codec && opened.channels > 0) {
        (Some(n), true) if n > 0 => n,
        // Lossy codecs add priming and padding the header does not state exactly, and a
        // streamed file states nothing: count by decoding, keeping no samples.
        _ => run(&mut opened, limits, |_, _| Ok(()))?,
    };
    Ok(AudioInfo {
        sample_rate_hz: opened.rate,
        n_frames,
        channels: opened.channels,
    })
}

/// Append the buffer's frames to `out` as mono f32, scaled as `read_wav` scales them.
fn append_mono(
    buf: &AudioBufferRef<'_>,
    channels: usize,
    frame: &mut Vec<f32>,
    out: &mut Vec<f32>,
) {
    // Integer PCM: divide by 2^(bits-1) in f64, as `wav::read_interleaved` does, so that WAV
    // results are bit-identical to `read_wav`.
    fn int(v: f64, bits: u32) -> f32 {
        (v * (1.0f64 / f64::from(1u32 << (bits - 1)))) as f32
    }
    match buf {
        AudioBufferRef::U8(b) => mix(b, channels, frame, out, |v| int(f64::from(v) - 128.0, 8)),
        AudioBufferRef::U16(b) => mix(b, channels, frame, out, |v| {
            int(f64::from(v) - 32_768.0, 16)
        }),
        AudioBufferRef::U24(b) => mix(b, channels, frame, out, |v: u24| {
            int(f64::from(v.inner()) - 8_388_608.0, 24)
        }),
        AudioBufferRef::U32(b) => mix(b, channels, frame, out, |v| {
            int(f64::from(v) - 2_147_483_648.0, 32)
        }),
        AudioBufferRef::S8(b) => mix(b, channels, frame, out, |v| int(f64::from(v), 8)),
        AudioBufferRef::S16(b) => mix(b, channels, frame, out, |v| int(f64::from(v), 16)),
        AudioBufferRef::S24(b) => mix(b, channels, frame, out, |v: i24| {
            int(f64::from(v.inner()), 24)
        }),
        AudioBufferRef::S32(b) => mix(b, channels, frame, out, |v| int(f64::from(v), 32)),
        AudioBufferRef::F32(b) => mix(b, channels, frame, out, |v| v),
        AudioBufferRef::F64(b) => mix(b, channels, frame, out, |v| v as f32),
    }
}

/// Downmix planar channels by the mean, summing in channel order exactly as
/// `wav::downmix` sums interleaved frames.
fn mix<S: symphonia::core::sample::Sample>(
    buf: &symphonia::core::audio::AudioBuffer<S>,
    channels: usize,
    frame: &mut Vec<f32>,
    out: &mut Vec<f32>,
    conv: impl Fn(S) -> f32,
) {
    if channels == 1 {
        out.extend(buf.chan(0).iter().map(|&v| conv(v)));
        return;
    }
    let planes: Vec<&[S]> = (0..channels).map(|c| buf.chan(c)).collect();
    for i in 0..buf.frames() {
        frame.clear();
        frame.extend(planes.iter().map(|p| conv(p[i])));
        out.push(frame.iter().sum::<f32>() / channels as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_sane() {
        let l = DecodeLimits::default();
        assert_eq!(l.max_frames(24_000), 14_400_000);
        assert!(l.min_rate_hz <= 16_000 && l.max_rate_hz >= 48_000);
    }

    #[test]
    fn streamed_riff_header_is_recognised() {
        let mut h = b"RIFF".to_vec();
        h.extend_from_slice(&[0xff; 4]);
        assert!(riff_length_unknown(&h));
        assert!(!riff_length_unknown(b"RIFF\x10\0\0\0"));
        assert!(!riff_length_unknown(b"RIF"));
    }

    #[test]
    fn empty_and_garbage_are_errors() {
        let l = DecodeLimits::default();
        assert!(matches!(decode_bytes(&[], &l), Err(Error::Audio(_))));
        assert!(matches!(
            decode_bytes(b"definitely not audio", &l),
            Err(Error::Audio(_))
        ));
    }
}
