//! `higgs codec encode|decode`: a WAV to a `.npy` code file (int64 `[8, T]`, as the reference's
//! `encode()` returns) and back to a 24 kHz mono WAV (16-bit PCM, saturated, unless `--float`).
//! Output paths are checked before any work and written atomically (temporary file + rename),
//! and code files are checked (shape, values in the codebook) before decoding. spec: codec.md §2.

use crate::atomic_file::{check_writable, write_atomic_via_path};
use crate::codec::npy::{check_codes, read_codes, write_codes};
use crate::codec::AudioTokenizer;
use anyhow::Context;
use std::path::{Path, PathBuf};

use super::progress::{QuietArg, Reporter};

#[derive(clap::Subcommand)]
pub enum CodecCmd {
    /// Encode a WAV (any rate, channels averaged, resampled to 24 kHz) into codes [8, T].
    Encode {
        /// Input WAV.
        input: PathBuf,
        /// Codec folder (config.json + model.safetensors or model.pth).
        #[arg(long)]
        codec: PathBuf,
        /// Output .npy (int64 [n_q, T]).
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        quiet: QuietArg,
    },
    /// Decode codes ([n_q, T] or [1, n_q, T] int .npy) into a 24 kHz mono WAV.
    Decode {
        /// Input .npy codes.
        input: PathBuf,
        /// Codec folder (config.json + model.safetensors or model.pth).
        #[arg(long)]
        codec: PathBuf,
        /// Output WAV.
        #[arg(short, long)]
        output: PathBuf,
        /// Write 32-bit float samples (unclipped) instead of 16-bit PCM.
        #[arg(long)]
        float: bool,
        #[command(flatten)]
        quiet: QuietArg,
    },
}

pub fn run(cmd: CodecCmd) -> anyhow::Result<()> {
    match cmd {
        CodecCmd::Encode {
            input,
            codec,
            output,
            quiet,
        } => {
            let report = Reporter::new(quiet);
            check_writable(&output)?;
            let tok = load(&codec)?;
            let bar = report.spinner(format!("encoding {}", input.display()));
            let codes = tok.encode_file(&input);
            bar.finish_and_clear();
            let codes = codes.with_context(|| format!("encoding {}", input.display()))?;
            write_codes(&output, &codes)?;
            let t = codes.first().map_or(0, Vec::len);
            report.line(format_args!(
                "{}: {} x {t} codes -> {}",
                input.display(),
                codes.len(),
                output.display()
            ));
        }
        CodecCmd::Decode {
            input,
            codec,
            output,
            float,
            quiet,
        } => {
            let report = Reporter::new(quiet);
            check_writable(&output)?;
            let codes = read_codes(&input)?;
            let tok = load(&codec)?;
            check_codes(&input, &codes, tok.n_q(), tok.config().bins)?;
            let bar = report.spinner(format!("decoding {}", input.display()));
            let audio = tok.decode(&codes);
            bar.finish_and_clear();
            let audio = audio.with_context(|| format!("decoding {}", input.display()))?;
            let rate = tok.sample_rate() as u32;
            write_atomic_via_path(&output, |tmp| -> anyhow::Result<()> {
                if float {
                    write_f32_wav(tmp, &audio, rate)
                } else {
                    Ok(crate::audio::wav::write_wav_mono_i16(tmp, &audio, rate)?)
                }
            })?;
            report.line(format_args!(
                "{}: {} frames -> {} samples at {rate} Hz ({}) -> {}",
                input.display(),
                codes.first().map_or(0, Vec::len),
                audio.len(),
                if float { "f32" } else { "pcm16" },
                output.display()
            ));
        }
    }
    Ok(())
}

fn load(dir: &Path) -> anyhow::Result<AudioTokenizer> {
    AudioTokenizer::load(dir).with_context(|| format!("loading codec {}", dir.display()))
}

fn write_f32_wav(path: &Path, samples: &[f32], rate: u32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("creating {}", path.display()))?;
    for &s in samples {
        w.write_sample(s)?;
    }
    w.finalize()?;
    Ok(())
}
