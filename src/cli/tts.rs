//! `higgs tts`: text to a 24 kHz WAV (or raw PCM on stdout with `--stream`), with smart voice,
//! voice cloning (`--voice NAME` from a preset folder, or `--ref-audio` + `--ref-text`),
//! scene descriptions, multi-speaker tags and long-form chunking, as `examples/generation.py`.
//! Sampling flags default to that script's values. Progress bars (terminal only) and summary
//! lines go to stderr; `--quiet` silences both.

use crate::engine::{
    EngineConfig, EngineHandle, GenerationParams, HandleConfig, TtsInput, TtsRequest,
};
use crate::prompt::{
    AudioClip, ChunkMethod, Chunking, PromptRequest, VoiceLibrary, VoicePlacement, VoiceRef,
    DEFAULT_SCENE,
};
use crate::sampling::processors::SamplingParams;
use crate::tts::synthesize;
use anyhow::{bail, Context};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use super::progress::{QuietArg, Reporter};

#[derive(clap::Args)]
pub struct TtsArgs {
    #[command(flatten)]
    model: super::model_flags::ModelFlags,
    /// Text to speak.
    #[arg(long, conflicts_with = "transcript")]
    text: Option<String>,
    /// File holding the text to speak.
    #[arg(long)]
    transcript: Option<PathBuf>,
    /// Voice preset name(s), comma-separated (one per [SPEAKERn]); `profile:NAME` for a profile.
    #[arg(long)]
    voice: Option<String>,
    /// Folder of voice presets (NAME.wav + NAME.txt, profile.yaml, or config.json); default $HIGGS_VOICES_DIR.
    #[arg(long)]
    voices_dir: Option<PathBuf>,
    /// Reference clip for voice cloning (with --ref-text).
    #[arg(long, requires = "ref_text", conflicts_with = "voice")]
    ref_audio: Option<PathBuf>,
    /// Transcript of --ref-audio.
    #[arg(long, requires = "ref_audio")]
    ref_text: Option<String>,
    /// Put reference voices in the system message.
    #[arg(long)]
    ref_audio_in_system_message: bool,
    /// Scene description; `empty` for none.
    #[arg(long, default_value = DEFAULT_SCENE)]
    scene: String,
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// 0 disables top-k.
    #[arg(long, default_value_t = 50)]
    top_k: usize,
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Repetition-aware sampling window (0 disables).
    #[arg(long, default_value_t = 7)]
    ras_win_len: usize,
    #[arg(long, default_value_t = 2)]
    ras_win_max_num_repeat: usize,
    #[arg(long, default_value_t = 2048)]
    max_new_tokens: usize,
    #[arg(long)]
    seed: Option<u64>,
    /// Long-form chunking: none, speaker or word.
    #[arg(long, default_value = "none", value_parser = ["none", "speaker", "word"])]
    chunk_method: String,
    #[arg(long, default_value_t = 200)]
    chunk_max_word_num: usize,
    #[arg(long, default_value_t = 1)]
    chunk_max_num_turns: usize,
    /// Keep only the last N generated chunks as context.
    #[arg(long)]
    generation_chunk_buffer_size: Option<usize>,
    /// Start the answer with <|audio_out_bos|> (as the serve engine's force_audio_gen).
    #[arg(long)]
    force_audio: bool,
    /// Output WAV (24 kHz mono 16-bit).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Write raw PCM s16le mono 24 kHz to stdout as it is generated.
    #[arg(long)]
    stream: bool,
    /// KV cache size in tokens.
    #[arg(long, default_value_t = 8192)]
    max_context: usize,
    #[command(flatten)]
    quiet: QuietArg,
}

fn read_request(a: &TtsArgs) -> anyhow::Result<PromptRequest> {
    let transcript = match (&a.text, &a.transcript) {
        (Some(t), _) => t.clone(),
        (None, Some(p)) => std::fs::read_to_string(p)
            .with_context(|| format!("reading --transcript {}", p.display()))?,
        (None, None) => bail!("give the text to speak with --text or --transcript FILE"),
    };
    if transcript.trim().is_empty() {
        bail!("the text to speak is empty");
    }
    let mut voices = Vec::new();
    if let Some(v) = &a.voice {
        let dir = a
            .voices_dir
            .clone()
            .or_else(|| std::env::var_os("HIGGS_VOICES_DIR").map(PathBuf::from))
            .context("--voice needs --voices-dir DIR (or HIGGS_VOICES_DIR)")?;
        voices = VoiceLibrary::open(&dir)?.resolve_list(v)?;
    }
    if let (Some(path), Some(text)) = (&a.ref_audio, &a.ref_text) {
        let clip = AudioClip::from_wav(path)?;
        voices.push(VoiceRef::Clip {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            transcript: text.clone(),
            clip,
        });
    }
    let method = match a.chunk_method.as_str() {
        "speaker" => ChunkMethod::Speaker,
        "word" => ChunkMethod::Word,
        _ => ChunkMethod::None,
    };
    Ok(PromptRequest {
        transcript,
        scene: if a.scene == "empty" || a.scene.is_empty() {
            None
        } else {
            Some(a.scene.clone())
        },
        voices,
        voice_placement: if a.ref_audio_in_system_message {
            VoicePlacement::SystemMessage
        } else {
            VoicePlacement::Turns
        },
        chunking: Chunking {
            method,
            max_word_num: a.chunk_max_word_num,
            max_num_turns: a.chunk_max_num_turns,
        },
        generation_chunk_buffer_size: a.generation_chunk_buffer_size,
    })
}

pub fn run(a: TtsArgs) -> anyhow::Result<ExitCode> {
    if a.output.is_none() && !a.stream {
        bail!("give an output file with -o OUT.wav, or --stream for raw PCM on stdout");
    }
    // An unwritable -o is found now, not after the whole synthesis.
    if let Some(path) = &a.output {
        crate::atomic_file::check_writable(path)?;
    }
    let report = Reporter::new(a.quiet);
    let req = read_request(&a)?;
    let spec = a
        .model
        .load_spec(EngineConfig::for_context(a.max_context)?)?;
    let t0 = Instant::now();
    let loading = report.spinner("loading model and codec");
    let handle = EngineHandle::spawn(move || spec.load(), HandleConfig::default());
    loading.finish_and_clear();
    let handle = handle?;
    let device_name = a.model.describe(a.model.device == "cuda");
    report.line(format_args!(
        "loaded model and codec in {:.1} s ({device_name})",
        t0.elapsed().as_secs_f64()
    ));
    let sp = handle.tokenizer().special();
    let mut gen = GenerationParams::new(a.max_new_tokens, vec![sp.eot_id.0, sp.end_of_text.0]);
    gen.sampling = SamplingParams {
        temperature: a.temperature,
        top_k: (a.top_k > 0).then_some(a.top_k),
        top_p: a.top_p,
    };
    gen.ras_win_len = a.ras_win_len;
    gen.ras_max_repeat = a.ras_win_max_num_repeat;
    gen.seed = a.seed;
    let mut treq = TtsRequest::new(TtsInput::LongForm(req), gen);
    treq.force_audio = a.force_audio;

    let start = Instant::now();
    let stdout = std::io::stdout();
    let mut out_lock = stdout.lock();
    let stream = a.stream;
    let mut on_audio = |pcm: &[f32]| -> crate::Result<()> {
        if stream {
            let bytes: Vec<u8> = pcm
                .iter()
                .flat_map(|&s| ((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes())
                .collect();
            out_lock
                .write_all(&bytes)
                .and_then(|_| out_lock.flush())
                .map_err(|e| crate::Error::io("<stdout>", e))?;
        }
        Ok(())
    };
    // The frame budget is max_new_tokens per chunk; long-form text may use several chunks, so
    // the bar's length grows when a chunk passes it.
    let bar = report.frames(a.max_new_tokens as u64);
    let mut on_progress = |frames: usize| {
        let s = start.elapsed().as_secs_f64().max(1e-9);
        let fps = frames as f64 / s;
        if frames as u64 > bar.length().unwrap_or(0) {
            bar.set_length(frames as u64 + a.max_new_tokens as u64);
        }
        bar.set_position(frames as u64);
        bar.set_message(format!(
            "{:.2} s of audio, {fps:.1} frames/s, real-time factor {:.2}x",
            frames as f64 / 25.0,
            fps / 25.0
        ));
    };
    let out = synthesize(&handle, treq, &mut on_audio, &mut on_progress);
    bar.finish_and_clear();
    let out = out?;
    let secs = start.elapsed().as_secs_f64();
    let frames = out.codes.first().map_or(0, Vec::len);
    report.line(format_args!(
        "generated {frames} frames = {:.2} s of audio in {secs:.2} s ({:.1} frames/s); finish: {:?}",
        out.samples.len() as f64 / 24000.0,
        frames as f64 / secs,
        out.finish
    ));
    if frames == 0 {
        eprintln!("warning: the model produced no audio frames");
    }
    if let Some(path) = &a.output {
        crate::audio::wav::write_wav_mono_i16(path, &out.samples, 24000)?;
        report.line(format_args!(
            "wrote {} ({} samples)",
            path.display(),
            out.samples.len()
        ));
    }
    Ok(ExitCode::SUCCESS)
}
