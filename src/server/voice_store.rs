//! Custom voices of `POST /v1/audio/voices`: a clip's codec codes and transcript (encoded once,
//! at upload), or a text description (a Higgs profile voice). With a store folder each voice
//! is one JSON file `ID.json`, written atomically (temporary file, fsync, rename), so a crash
//! at any moment leaves either the whole voice or none; at start every file is read back and a
//! corrupt one is skipped with a log line naming it (temporary files of writes that a crash
//! cut short are removed).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a custom voice speaks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VoiceKind {
    /// A cloned clip: what it says and its codec frames `[n_codebooks][T]`.
    AudioSample {
        transcript: String,
        codes: Vec<Vec<u32>>,
        /// The clip's length at 24 kHz (before encoding).
        n_samples_24k: usize,
        /// The client's consent recording id, kept as given.
        #[serde(default)]
        consent: Option<String>,
    },
    /// A described voice (`type=prompt`): the description becomes the speaker's profile.
    Prompt { prompt: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomVoice {
    pub id: String,
    pub name: String,
    pub created_at: u64,
    pub kind: VoiceKind,
}

impl CustomVoice {
    /// The OpenAI `audio.voice` object.
    pub fn object(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "object": "audio.voice",
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
        });
        match &self.kind {
            VoiceKind::AudioSample { .. } => v["type"] = "audio_sample".into(),
            VoiceKind::Prompt { prompt } => {
                v["type"] = "prompt".into();
                v["prompt"] = prompt.clone().into();
            }
        }
        v
    }
}

/// The custom voices, in memory and (with a folder) on disk.
pub struct VoiceStore {
    dir: Option<PathBuf>,
    voices: RwLock<BTreeMap<String, CustomVoice>>,
}

/// Ids are `voice_` + hex digits; nothing else names a store file.
fn valid_id(id: &str) -> bool {
    id.strip_prefix("voice_")
        .is_some_and(|h| !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl VoiceStore {
    /// Voices kept in memory only (lost at exit).
    pub fn in_memory() -> Self {
        VoiceStore {
            dir: None,
            voices: RwLock::new(BTreeMap::new()),
        }
    }

    /// Opens (creating) a store folder and reads every voice in it; a file that does not
    /// parse, or whose id does not match its name, is skipped with a log line.
    pub fn open(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut voices = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            // A write cut short (crash, kill -9) leaves its temporary file; the voice itself
            // was never renamed into place, so the file is garbage.
            let fname = entry.file_name().to_string_lossy().into_owned();
            if fname.starts_with(".voice_") && fname.ends_with(".tmp") {
                match std::fs::remove_file(&path) {
                    Ok(()) => eprintln!("voices-store: removed the unfinished write {fname}"),
                    Err(e) => eprintln!("voices-store: cannot remove {fname}: {e}"),
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "json") || !valid_id(stem) {
                continue;
            }
            match read_voice(&path) {
                Ok(v) if v.id == stem => {
                    voices.insert(v.id.clone(), v);
                }
                Ok(v) => eprintln!(
                    "voices-store: skipping {}: it holds voice `{}`, not `{stem}`",
                    path.display(),
                    v.id
                ),
                Err(e) => eprintln!("voices-store: skipping {}: {e}", path.display()),
            }
        }
        Ok(VoiceStore {
            dir: Some(dir.to_path_buf()),
            voices: RwLock::new(voices),
        })
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Every voice, oldest first.
    pub fn list(&self) -> Vec<CustomVoice> {
        let mut v: Vec<CustomVoice> = self
            .voices
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        v
    }

    pub fn get(&self, id: &str) -> Option<CustomVoice> {
        self.voices.read().ok()?.get(id).cloned()
    }

    /// The newest voice with this name.
    pub fn by_name(&self, name: &str) -> Option<CustomVoice> {
        self.list().into_iter().rev().find(|v| v.name == name)
    }

    /// Where voice `id` lives on disk (also the key of its codes in an engine request).
    pub fn path_of(&self, id: &str) -> PathBuf {
        match &self.dir {
            Some(d) => d.join(format!("{id}.json")),
            None => PathBuf::from(format!("memory:{id}")),
        }
    }

    /// Saves a voice (blocking file io: call from a blocking task).
    pub fn insert(&self, v: CustomVoice) -> Result<()> {
        if !valid_id(&v.id) {
            return Err(Error::BadRequest(format!(
                "voice id `{}` is malformed",
                v.id
            )));
        }
        if self.dir.is_some() {
            let path = self.path_of(&v.id);
            let json = serde_json::to_vec(&v).map_err(|e| Error::Other(e.to_string()))?;
            crate::atomic_file::write_atomic(&path, |w| {
                std::io::Write::write_all(w, &json).map_err(|e| Error::io(&path, e))
            })?;
        }
        self.voices
            .write()
            .map_err(|_| Error::Other("voice store poisoned".into()))?
            .insert(v.id.clone(), v);
        Ok(())
    }

    /// Deletes a voice; false when there is none with this id.
    pub fn remove(&self, id: &str) -> Result<bool> {
        if !valid_id(id) {
            return Ok(false);
        }
        let mut map = self
            .voices
            .write()
            .map_err(|_| Error::Other("voice store poisoned".into()))?;
        if !map.contains_key(id) {
            return Ok(false);
        }
        if self.dir.is_some() {
            let path = self.path_of(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        map.remove(id);
        Ok(true)
    }
}

/// A stored voice file, bounded (a voice of ten minutes of codes is about 1 MB of JSON).
fn read_voice(path: &Path) -> Result<CustomVoice> {
    const MAX_FILE: u64 = 64 << 20;
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    if len > MAX_FILE {
        return Err(Error::BadRequest(format!(
            "{len} bytes, more than a voice file may hold ({MAX_FILE})"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let v: CustomVoice = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadRequest(format!("not a voice: {e}")))?;
    if let VoiceKind::AudioSample { codes, .. } = &v.kind {
        crate::prompt::check_codes(codes, "stored voice codes")?;
    }
    Ok(v)
}
