//! System message and voice turns of `examples/generation.py::prepare_generation_context`
//! (smart voice, scene, multi-speaker defaults, voice clones as turns or in the system message,
//! text profiles), and the voice library they come from.
//! May use: error, prompt::{chatml, normalize}. Spec: model.md §9.2; fixtures README rules 3, 5.
//!
//! A voice library is a folder in the reference's preset form (`NAME.wav` + `NAME.txt`, text
//! profiles in `profile.yaml`), or a folder with a `config.json` mapping names to
//! `{"transcript": .., "audio_file": ..}` (paths relative to the folder).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

use super::chatml::{AudioSource, Content, Message, Role};
use super::normalize::py_strip;

/// `G`: the system message of the single-speaker modes.
pub const GENERATE_INSTRUCTION: &str = "Generate audio following instruction.";

/// `MS`: `MULTISPEAKER_DEFAULT_SYSTEM_MESSAGE`, three lines, no trailing newline.
pub const MULTISPEAKER_SYSTEM_MESSAGE: &str = "You are an AI assistant designed to convert text into speech.\nIf the user's message includes a [SPEAKER*] tag, do not read out the tag and generate speech for the following text, using the specified voice.\nIf no speaker tag is present, select a suitable voice on your own.";

/// A reference clip: where it is and its length after resampling to 24 kHz.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioClip {
    pub path: PathBuf,
    /// Samples after `librosa.load(mono)` + resample to 24 kHz: the codec's input length.
    pub n_samples_24k: usize,
}

impl AudioClip {
    /// Probes `path` (any format `audio::decode` reads: WAV, MP3, FLAC, Ogg Vorbis, AAC) and
    /// derives the 24 kHz length. WAV and FLAC lengths come from the header; other formats
    /// are counted by decoding, so the length always equals what `encode_file` will encode.
    pub fn from_file(path: &Path) -> Result<Self> {
        let info = crate::audio::decode::probe(path)?;
        let n_samples = usize::try_from(info.n_frames)
            .map_err(|_| Error::Audio(format!("{}: {} frames", path.display(), info.n_frames)))?;
        Ok(AudioClip {
            path: path.to_path_buf(),
            n_samples_24k: resampled_len(n_samples, info.sample_rate_hz),
        })
    }

    /// [`AudioClip::from_file`] under its older name (clips used to be WAV only).
    pub fn from_wav(path: &Path) -> Result<Self> {
        Self::from_file(path)
    }

    /// Codec frames T of this clip.
    pub fn frames(&self) -> usize {
        frames_for_samples(self.n_samples_24k)
    }
}

/// Length after resampling `n` samples at `rate_hz` to 24 kHz, as `librosa.resample` fixes it
/// (`audio::resample::resampled_len`: `ceil(n * (24000 / rate))` in float64, the float
/// product being what the reference rounds).
pub fn resampled_len(n: usize, rate_hz: u32) -> usize {
    crate::audio::resample::resampled_len(n, rate_hz, 24_000)
}

/// Codec frames for `n_24k` samples: `floor((n_24k + 841) / 960)` (conv geometry of the
/// released codec: hop 960).
pub fn frames_for_samples(n_24k: usize) -> usize {
    (n_24k + 841) / 960
}

/// One resolved `--ref_audio` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VoiceRef {
    /// A recorded voice: its clip and what it says.
    Clip {
        name: String,
        transcript: String,
        clip: AudioClip,
    },
    /// `profile:NAME`: a text description instead of a recording.
    Profile { name: String, description: String },
}

#[derive(Clone, Debug)]
struct PresetEntry {
    transcript: String,
    audio: PathBuf,
}

/// A folder of voices.
#[derive(Clone, Debug)]
pub struct VoiceLibrary {
    dir: PathBuf,
    /// `config.json` entries, when the folder has one.
    config: Option<BTreeMap<String, PresetEntry>>,
}

impl VoiceLibrary {
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::BadRequest(format!(
                "voice folder {} does not exist",
                dir.display()
            )));
        }
        let config_path = dir.join("config.json");
        let config = if config_path.is_file() {
            Some(read_voice_config(&config_path, dir)?)
        } else {
            None
        };
        Ok(VoiceLibrary {
            dir: dir.to_path_buf(),
            config,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves one entry: `profile:NAME` or a voice name (used as given, not trimmed, like
    /// the reference's file lookup).
    pub fn resolve(&self, entry: &str) -> Result<VoiceRef> {
        if let Some(profile) = entry.strip_prefix("profile:") {
            let name = py_strip(profile);
            let description = self.profile(name)?;
            return Ok(VoiceRef::Profile {
                name: name.to_string(),
                description,
            });
        }
        let (transcript, audio) = match &self.config {
            Some(cfg) => {
                let e = cfg.get(entry).ok_or_else(|| {
                    Error::BadRequest(format!(
                        "voice `{entry}` is not in {}",
                        self.dir.join("config.json").display()
                    ))
                })?;
                (e.transcript.clone(), e.audio.clone())
            }
            None => {
                if entry.is_empty() || entry.contains(['/', '\\']) {
                    return Err(Error::BadRequest(format!(
                        "voice name `{entry}` is not a plain name"
                    )));
                }
                let wav = self.dir.join(format!("{entry}.wav"));
                let txt = self.dir.join(format!("{entry}.txt"));
                if !wav.is_file() {
                    return Err(Error::BadRequest(format!(
                        "voice `{entry}`: {} does not exist",
                        wav.display()
                    )));
                }
                let text = std::fs::read_to_string(&txt).map_err(|e| {
                    Error::BadRequest(format!(
                        "voice `{entry}`: cannot read its transcript {}: {e}",
                        txt.display()
                    ))
                })?;
                (py_strip(&text).to_string(), wav)
            }
        };
        Ok(VoiceRef::Clip {
            name: entry.to_string(),
            transcript,
            clip: AudioClip::from_wav(&audio)?,
        })
    }

    /// The voices of this folder, sorted: the `config.json` names, or every `NAME.wav` with a
    /// `NAME.txt` beside it; then `profile:NAME` for each text profile of `profile.yaml`.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = match &self.config {
            Some(cfg) => cfg.keys().cloned().collect(),
            None => std::fs::read_dir(&self.dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| {
                    let p = e.path();
                    let stem = p.file_stem()?.to_str()?.to_string();
                    (p.extension()? == "wav" && p.with_extension("txt").is_file()).then_some(stem)
                })
                .collect(),
        };
        names.sort();
        let yaml = self.dir.join("profile.yaml");
        if let Ok(text) = std::fs::read_to_string(&yaml) {
            if let Ok(profiles) = parse_profiles_yaml(&text) {
                names.extend(profiles.keys().map(|k| format!("profile:{k}")));
            }
        }
        names
    }

    /// Resolves a comma-separated `--ref_audio` list (entries are not trimmed).
    pub fn resolve_list(&self, ref_audio: &str) -> Result<Vec<VoiceRef>> {
        ref_audio.split(',').map(|e| self.resolve(e)).collect()
    }

    /// A text profile from `profile.yaml` (`profiles: {NAME: text}`).
    pub fn profile(&self, name: &str) -> Result<String> {
        let path = self.dir.join("profile.yaml");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let profiles = parse_profiles_yaml(&text)
            .map_err(|reason| Error::config(&path, "profiles", reason))?;
        profiles.get(name).cloned().ok_or_else(|| {
            Error::BadRequest(format!(
                "voice profile `{name}` is not in {}",
                path.display()
            ))
        })
    }
}

fn read_voice_config(path: &Path, dir: &Path) -> Result<BTreeMap<String, PresetEntry>> {
    #[derive(serde::Deserialize)]
    struct Entry {
        transcript: String,
        audio_file: String,
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let raw: BTreeMap<String, Entry> =
        serde_json::from_str(&text).map_err(|e| Error::config(path, "voices", e.to_string()))?;
    Ok(raw
        .into_iter()
        .map(|(name, e)| {
            let entry = PresetEntry {
                transcript: e.transcript,
                audio: dir.join(e.audio_file),
            };
            (name, entry)
        })
        .collect())
}

/// The subset of YAML `profile.yaml` uses: a top-level `profiles:` mapping of names to plain
/// or quoted one-line scalars (a plain scalar may continue on more-indented lines, folded with
/// one space). Anything else is an error rather than a guess.
fn parse_profiles_yaml(text: &str) -> std::result::Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut in_profiles = false;
    let mut last: Option<(String, usize)> = None;
    for (n, raw_line) in text.lines().enumerate() {
        let line = raw_line.trim_end();
        let content = line.trim_start();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let indent = line.len() - content.len();
        if indent == 0 {
            in_profiles = content == "profiles:";
            last = None;
            continue;
        }
        if !in_profiles {
            continue;
        }
        if let Some((key, key_indent)) = &last {
            if indent > *key_indent {
                let v: &mut String = out.get_mut(key).ok_or("internal")?;
                v.push(' ');
                v.push_str(content);
                continue;
            }
        }
        let (key, value) = content
            .split_once(": ")
            .or_else(|| content.strip_suffix(':').map(|k| (k, "")))
            .ok_or_else(|| format!("line {}: expected `name: text`", n + 1))?;
        let value = unquote(value.trim()).map_err(|e| format!("line {}: {e}", n + 1))?;
        let key = unquote(key.trim()).map_err(|e| format!("line {}: {e}", n + 1))?;
        out.insert(key.clone(), value);
        last = Some((key, indent));
    }
    if out.is_empty() {
        return Err("no `profiles:` entries".into());
    }
    Ok(out)
}

fn unquote(s: &str) -> std::result::Result<String, String> {
    if s.len() >= 2 && s.starts_with('\'') && s.ends_with('\'') {
        return Ok(s[1..s.len() - 1].replace("''", "'"));
    }
    if s.len() >= 2 && s.starts_with('"') && s.ends_with('"') {
        let inner = &s[1..s.len() - 1];
        if inner.contains('\\') {
            return serde_json::from_str::<String>(s).map_err(|e| format!("quoted string: {e}"));
        }
        return Ok(inner.to_string());
    }
    Ok(s.to_string())
}

/// The messages before the first chunk and the voices whose clips are encoded (in list order:
/// their codes are the first entries of the audio list).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationContext {
    pub messages: Vec<Message>,
    pub clips: Vec<AudioClip>,
}

/// Where the voices go when there are voices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum VoicePlacement {
    /// One user turn (the clip's transcript) and one assistant turn (its audio) per voice.
    #[default]
    Turns,
    /// `SPEAKERk: <audio>` lines in the system message's scene block (forced by any profile).
    SystemMessage,
}

/// `prepare_generation_context`. `scene`: the resolved scene text (None or "" = no scene);
/// `speaker_tags`: from the raw transcript ([`super::normalize::speaker_tags`]).
pub fn generation_context(
    scene: Option<&str>,
    voices: &[VoiceRef],
    placement: VoicePlacement,
    speaker_tags: &[String],
) -> GenerationContext {
    let scene = scene.filter(|s| !s.is_empty());
    let scene_block = |body: &str| format!("<|scene_desc_start|>\n{body}\n<|scene_desc_end|>");
    let mut messages = Vec::new();
    let mut clips = Vec::new();
    if voices.is_empty() {
        let system = if speaker_tags.len() > 1 {
            let lines: Vec<String> = speaker_tags
                .iter()
                .enumerate()
                .map(|(i, tag)| {
                    format!(
                        "{tag}: {}",
                        if i % 2 == 0 { "feminine" } else { "masculine" }
                    )
                })
                .collect();
            let desc = match scene {
                Some(s) => format!("{s}\n\n{}", lines.join("\n")),
                None => lines.join("\n"),
            };
            format!("{MULTISPEAKER_SYSTEM_MESSAGE}\n\n{}", scene_block(&desc))
        } else {
            match scene {
                Some(s) => format!("{GENERATE_INSTRUCTION}\n\n{}", scene_block(s)),
                None => GENERATE_INSTRUCTION.to_string(),
            }
        };
        messages.push(Message::text(Role::System, system));
        return GenerationContext { messages, clips };
    }

    let in_system = placement == VoicePlacement::SystemMessage
        || voices.iter().any(|v| matches!(v, VoiceRef::Profile { .. }));
    if in_system {
        messages.push(system_message_with_voices(scene, voices));
    } else if let Some(s) = scene {
        messages.push(Message::text(
            Role::System,
            format!("{GENERATE_INSTRUCTION}\n\n{}", scene_block(s)),
        ));
    }
    let multi = voices.len() > 1;
    for (k, voice) in voices.iter().enumerate() {
        if let VoiceRef::Clip {
            transcript, clip, ..
        } = voice
        {
            clips.push(clip.clone());
            if !in_system {
                let text = if multi {
                    format!("[SPEAKER{k}] {transcript}")
                } else {
                    transcript.clone()
                };
                messages.push(Message::text(Role::User, text));
                messages.push(Message::audio(
                    Role::Assistant,
                    AudioSource::Url(clip.path.display().to_string()),
                ));
            }
        }
    }
    GenerationContext { messages, clips }
}

/// The voices-in-system message: the scene block's `SPEAKERk: X` lines, cut at every audio
/// into [text, audio, text, ...] parts (`_build_system_message_with_audio_prompt`). A leading
/// empty text part is kept (it encodes to nothing); a trailing empty one is dropped.
fn system_message_with_voices(scene: Option<&str>, voices: &[VoiceRef]) -> Message {
    let mut content = Vec::new();
    let mut text = format!("{GENERATE_INSTRUCTION}\n\n<|scene_desc_start|>\n");
    if let Some(s) = scene {
        text.push_str(s);
        text.push_str("\n\n");
    }
    for (k, voice) in voices.iter().enumerate() {
        if k > 0 {
            text.push('\n');
        }
        text.push_str(&format!("SPEAKER{k}: "));
        match voice {
            VoiceRef::Profile { description, .. } => text.push_str(description),
            VoiceRef::Clip { .. } => {
                content.push(Content::Text(std::mem::take(&mut text)));
                content.push(Content::Audio(AudioSource::Slot));
            }
        }
    }
    text.push_str("\n<|scene_desc_end|>");
    content.push(Content::Text(text));
    Message {
        role: Role::System,
        recipient: None,
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(name: &str) -> VoiceRef {
        VoiceRef::Clip {
            name: name.into(),
            transcript: format!("{name} says hi."),
            clip: AudioClip {
                path: PathBuf::from(format!("/v/{name}.wav")),
                n_samples_24k: 24_000,
            },
        }
    }

    fn texts(m: &Message) -> Vec<String> {
        m.content
            .iter()
            .map(|c| match c {
                Content::Text(t) => t.clone(),
                Content::Audio(_) => "<audio>".into(),
            })
            .collect()
    }

    #[test]
    fn frames_rule() {
        assert_eq!(resampled_len(448_366, 44_100), 244_009);
        assert_eq!(resampled_len(845_815, 44_100), 460_308);
        assert_eq!(resampled_len(185_011, 24_000), 185_011);
        assert_eq!(frames_for_samples(244_009), 255);
        assert_eq!(frames_for_samples(460_308), 480);
        assert_eq!(frames_for_samples(185_011), 193);
    }

    #[test]
    fn smart_voice_and_multi_speaker() {
        let c = generation_context(Some("Quiet."), &[], VoicePlacement::Turns, &[]);
        assert_eq!(texts(&c.messages[0]), vec!["Generate audio following instruction.\n\n<|scene_desc_start|>\nQuiet.\n<|scene_desc_end|>"]);
        let c = generation_context(None, &[], VoicePlacement::Turns, &["SPEAKER0".into()]);
        assert_eq!(texts(&c.messages[0]), vec![GENERATE_INSTRUCTION]);
        let tags = vec!["SPEAKER0".to_string(), "SPEAKER1".into(), "SPEAKER2".into()];
        let c = generation_context(Some("S."), &[], VoicePlacement::Turns, &tags);
        let want = format!("{MULTISPEAKER_SYSTEM_MESSAGE}\n\n<|scene_desc_start|>\nS.\n\nSPEAKER0: feminine\nSPEAKER1: masculine\nSPEAKER2: feminine\n<|scene_desc_end|>");
        assert_eq!(texts(&c.messages[0]), vec![want]);
    }

    #[test]
    fn voices_as_turns() {
        let c = generation_context(None, &[clip("a"), clip("b")], VoicePlacement::Turns, &[]);
        assert_eq!(c.messages.len(), 4);
        assert_eq!(
            c.messages[0],
            Message::text(Role::User, "[SPEAKER0] a says hi.")
        );
        assert_eq!(c.messages[1].role, Role::Assistant);
        assert_eq!(c.clips.len(), 2);
        let c = generation_context(Some("S."), &[clip("a")], VoicePlacement::Turns, &[]);
        assert_eq!(c.messages.len(), 3);
        assert_eq!(c.messages[1], Message::text(Role::User, "a says hi."));
    }

    #[test]
    fn voices_in_system_message() {
        let prof = VoiceRef::Profile {
            name: "p".into(),
            description: "Calm.".into(),
        };
        let c = generation_context(Some("S."), &[clip("a"), prof], VoicePlacement::Turns, &[]);
        assert_eq!(c.messages.len(), 1);
        assert_eq!(
            texts(&c.messages[0]),
            vec![
                "Generate audio following instruction.\n\n<|scene_desc_start|>\nS.\n\nSPEAKER0: ",
                "<audio>",
                "\nSPEAKER1: Calm.\n<|scene_desc_end|>"
            ]
        );
        assert_eq!(c.clips.len(), 1);
    }

    #[test]
    fn profile_yaml() {
        let y = "# c\nprofiles:\n  a: Plain text, with comma.\n  b: 'it''s'\n  c: \"q \\\"x\\\"\"\n  d: long\n    folded\nother:\n  z: no\n";
        let p = parse_profiles_yaml(y).unwrap();
        assert_eq!(p["a"], "Plain text, with comma.");
        assert_eq!(p["b"], "it's");
        assert_eq!(p["c"], "q \"x\"");
        assert_eq!(p["d"], "long folded");
        assert!(!p.contains_key("z"));
        assert!(parse_profiles_yaml("x: 1\n").is_err());
    }
}
