//! The `higgs` command line: `check-reference`, `bench`, `codec`, `tts`, `serve`. Each subcommand's
//! flags and runner live in their own file; this file only parses and dispatches.

mod check;
mod codec;
pub mod dual_ffn_flags;
pub mod model_flags;
mod progress;
mod serve;
mod tts;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "higgs", version, about = "Higgs Audio v2 inference engine")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run every case of a reference fixture folder and report PASS/FAIL per case.
    CheckReference(check::CheckArgs),
    /// Benchmarks with random weights of a given shape.
    Bench(Box<crate::bench::BenchArgs>),
    /// The audio tokenizer alone: encode a WAV to codes, decode codes to a WAV.
    #[command(subcommand)]
    Codec(codec::CodecCmd),
    /// Text to speech: write a WAV, or stream raw PCM to stdout.
    Tts(Box<tts::TtsArgs>),
    /// The OpenAI-compatible speech server (speech, chat completions, voices, metrics).
    Serve(Box<serve::ServeArgs>),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::CheckReference(a) => check::run(a),
        Cmd::Bench(a) => crate::bench::run(*a),
        Cmd::Tts(a) => tts::run(*a),
        Cmd::Serve(a) => serve::run(*a),
        Cmd::Codec(c) => codec::run(c).map(|()| ExitCode::SUCCESS),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
