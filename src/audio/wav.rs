//! WAV read/write with `hound` (spec: codec.md §2.1).
//!
//! Reading follows `librosa.load(path, mono=True, sr=None)`, which the reference uses for voice
//! prompts: integer PCM is scaled by 1/2^(bits-1) (int16 / 32768, 8-bit unsigned centred on 128),
//! float PCM is taken as is, and multi-channel audio is averaged to mono. No resampling here.
//! Writing produces 16-bit PCM mono at the given rate (the codec's output is 24 kHz), clamping
//! to [-1, 1] only at the PCM conversion (the decoder has no tanh, spec §11.3).
//! May use: error.

use crate::error::{Error, Result};
use std::io::{Read, Seek};
use std::path::Path;

/// A mono waveform in [-1, 1] (nominally) at `sample_rate_hz`.
#[derive(Clone, Debug, PartialEq)]
pub struct Waveform {
    pub samples: Vec<f32>,
    pub sample_rate_hz: u32,
}

/// Read a WAV file and downmix it to mono f32.
pub fn read_wav(path: &Path) -> Result<Waveform> {
    let reader = hound::WavReader::open(path)
        .map_err(|e| Error::Audio(format!("{}: cannot read WAV: {e}", path.display())))?;
    decode(reader).map_err(|e| match e {
        Error::Audio(msg) => Error::Audio(format!("{}: {msg}", path.display())),
        other => other,
    })
}

/// Read a WAV held in memory (e.g. an uploaded voice prompt) and downmix it to mono f32.
pub fn read_wav_bytes(bytes: &[u8]) -> Result<Waveform> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::Audio(format!("cannot parse WAV: {e}")))?;
    decode(reader)
}

fn decode<R: Read + Seek>(reader: hound::WavReader<R>) -> Result<Waveform> {
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return Err(Error::Audio("WAV has 0 channels".into()));
    }
    if spec.sample_rate == 0 {
        return Err(Error::Audio("WAV has sample rate 0".into()));
    }
    let interleaved = read_interleaved(reader, spec)?;
    if interleaved.is_empty() {
        return Err(Error::Audio("WAV holds no samples".into()));
    }
    if interleaved.len() % channels != 0 {
        return Err(Error::Audio(format!(
            "WAV is truncated: {} samples for {channels} channels",
            interleaved.len()
        )));
    }
    let samples = downmix(&interleaved, channels);
    Ok(Waveform {
        samples,
        sample_rate_hz: spec.sample_rate,
    })
}

fn read_interleaved<R: Read + Seek>(
    mut reader: hound::WavReader<R>,
    spec: hound::WavSpec,
) -> Result<Vec<f32>> {
    let bad = |e: hound::Error| Error::Audio(format!("corrupt WAV data: {e}"));
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.samples::<f32>().map(|s| s.map_err(bad)).collect(),
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            // librosa (soundfile) maps the full integer range onto [-1, 1): divide by 2^(bits-1).
            // hound already re-centres unsigned 8-bit PCM on 0.
            let scale = 1.0f64 / f64::from(1u32 << (bits - 1));
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (f64::from(v) * scale) as f32).map_err(bad))
                .collect()
        }
        (format, bits) => Err(Error::Audio(format!(
            "unsupported WAV sample format {format:?} with {bits} bits (supported: 8/16/24/32-bit int, 32-bit float)"
        ))),
    }
}

/// Average the channels of interleaved frames, as `librosa.to_mono` does (mean over channels).
fn downmix(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels == 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| frame.iter().sum::<f32>() / channels as f32)
        .collect()
}

/// Write mono f32 samples as 16-bit PCM (scaled by 32767, saturating, as spec §11.3 advises).
pub fn write_wav_mono_i16(path: &Path, samples: &[f32], sample_rate_hz: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sample_rate_hz,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| Error::Audio(format!("{}: cannot write WAV: {e}", path.display()));
    let mut writer = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in samples {
        writer.write_sample(pcm16(s)).map_err(err)?;
    }
    writer.finalize().map_err(err)
}

/// Write the codec's 24 kHz mono output.
pub fn write_wav_24k(path: &Path, samples: &[f32]) -> Result<()> {
    write_wav_mono_i16(path, samples, 24_000)
}

/// f32 to 16-bit PCM as every writer here converts: clamp to [-1, 1], scale by 32767, round.
pub(crate) fn pcm16(s: f32) -> i16 {
    // NaN maps to 0 (`as` saturates and sends NaN to 0), so no panic is reachable here.
    (s.clamp(-1.0, 1.0) * 32767.0).round() as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("higgs_wav_{}_{name}.wav", std::process::id()))
    }

    fn write_int(path: &Path, bits: u16, channels: u16, frames: &[Vec<i32>]) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 22_050,
            bits_per_sample: bits,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for f in frames {
            for &v in f {
                match bits {
                    8 => w.write_sample(v as i8).unwrap(),
                    16 => w.write_sample(v as i16).unwrap(),
                    _ => w.write_sample(v).unwrap(),
                }
            }
        }
        w.finalize().unwrap();
    }

    #[test]
    fn int_formats_scale_like_librosa() {
        for bits in [8u16, 16, 24, 32] {
            let full = 1i64 << (bits - 1);
            let vals: Vec<i32> = [-full, -full / 2, 0, full / 4, full - 1]
                .iter()
                .map(|&v| v as i32)
                .collect();
            let path = tmp(&format!("int{bits}"));
            write_int(
                &path,
                bits,
                1,
                &vals.iter().map(|&v| vec![v]).collect::<Vec<_>>(),
            );
            let w = read_wav(&path).unwrap();
            std::fs::remove_file(&path).ok();
            assert_eq!(w.sample_rate_hz, 22_050);
            let want: Vec<f32> = vals
                .iter()
                .map(|&v| (v as f64 / full as f64) as f32)
                .collect();
            assert_eq!(w.samples, want, "bits {bits}");
        }
    }

    #[test]
    fn float_and_stereo() {
        let path = tmp("f32");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for (l, r) in [(0.5f32, -0.25f32), (1.5, 0.5), (-1.0, -1.0)] {
            w.write_sample(l).unwrap();
            w.write_sample(r).unwrap();
        }
        w.finalize().unwrap();
        let wav = read_wav(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(wav.sample_rate_hz, 44_100);
        assert_eq!(wav.samples, vec![0.125, 1.0, -1.0]);
    }

    #[test]
    fn bad_inputs_are_audio_errors() {
        assert!(matches!(read_wav_bytes(b"not a wav"), Err(Error::Audio(_))));
        assert!(matches!(
            read_wav(Path::new("/nonexistent/x.wav")),
            Err(Error::Audio(_))
        ));
        let path = tmp("empty");
        write_int(&path, 16, 1, &[]);
        let r = read_wav(&path);
        std::fs::remove_file(&path).ok();
        assert!(matches!(r, Err(Error::Audio(m)) if m.contains("no samples")));
    }

    #[test]
    fn write_then_read_round_trips() {
        let path = tmp("rt");
        let x: Vec<f32> = (0..100).map(|i| ((i as f32) * 0.1).sin() * 0.9).collect();
        write_wav_24k(&path, &x).unwrap();
        let w = read_wav(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(w.sample_rate_hz, 24_000);
        for (a, b) in x.iter().zip(&w.samples) {
            // 32767 on write, 32768 on read (librosa): up to one LSB of gain error plus rounding.
            assert!((a - b).abs() < 2.0 / 32768.0);
        }
    }
}
