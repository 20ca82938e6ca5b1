//! Atomic file output: a result file is either the complete new content or the old file, never
//! a truncated mix (a full disk or a crash mid-write used to leave a 0-byte `.npy` or a corrupt
//! WAV in place of the output). `check_writable` lets a command fail on a bad `-o` before it
//! spends minutes computing; `write_atomic` writes a temporary file in the destination's folder,
//! fsyncs it and renames it over the destination. spec: issue 12 §1 (late checks, atomic
//! outputs).
//! May use: error.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes temporary files of concurrent writes from one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The folder `path` will be written into ("." for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A temporary path next to `path`: same folder, so the final rename never crosses devices.
fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    parent_dir(path).join(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

fn io_err(path: &Path, kind: std::io::ErrorKind, msg: &str) -> Error {
    Error::io(path, std::io::Error::new(kind, msg.to_string()))
}

/// Check that `path` can be written: its folder exists and accepts a new file, and `path` is not
/// a folder. Creates and removes a probe file, so permission and read-only-mount problems show
/// up now rather than after the work.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(io_err(
            path,
            std::io::ErrorKind::InvalidInput,
            "empty output path",
        ));
    }
    if path.is_dir() {
        return Err(io_err(
            path,
            std::io::ErrorKind::InvalidInput,
            "output path is a folder",
        ));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        return Err(io_err(
            dir,
            std::io::ErrorKind::NotFound,
            "output folder does not exist",
        ));
    }
    let probe = temp_path(path);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .map_err(|e| Error::io(dir, e))?;
    std::fs::remove_file(&probe).map_err(|e| Error::io(&probe, e))
}

/// Removes the temporary file unless the write completed (also on panic or early return).
struct TempGuard {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if !self.keep {
            // Best effort: the write already failed, and that error is the one to report.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Write `path` atomically: `write` fills a buffered temporary file in the same folder, which
/// is then flushed, fsynced and renamed over `path`. On any error the temporary file is removed
/// and an existing `path` is left untouched. The writer is `Write + Seek` (WAV headers are
/// patched at the end).
pub fn write_atomic<T, E, F>(path: &Path, write: F) -> std::result::Result<T, E>
where
    F: FnOnce(&mut BufWriter<File>) -> std::result::Result<T, E>,
    E: From<Error>,
{
    if path.is_dir() {
        return Err(io_err(
            path,
            std::io::ErrorKind::InvalidInput,
            "output path is a folder",
        )
        .into());
    }
    let tmp = temp_path(path);
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(parent_dir(path), e))?;
    let mut guard = TempGuard {
        path: tmp.clone(),
        keep: false,
    };
    let mut w = BufWriter::new(file);
    let value = write(&mut w)?;
    w.flush().map_err(|e| Error::io(&tmp, e))?;
    let file = w
        .into_inner()
        .map_err(|e| Error::io(&tmp, e.into_error()))?;
    // Without the fsync a crash after the rename can leave a renamed but empty file.
    file.sync_all().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    guard.keep = true;
    sync_dir(parent_dir(path));
    Ok(value)
}

/// `write_atomic` for writers that want a path (`hound::WavWriter::create`, a library function
/// that creates its own file): `write` receives the temporary path, which is then fsynced and
/// renamed over `path`. Errors leave `path` as it was and remove the temporary file.
pub fn write_atomic_via_path<T, E, F>(path: &Path, write: F) -> std::result::Result<T, E>
where
    F: FnOnce(&Path) -> std::result::Result<T, E>,
    E: From<Error>,
{
    if path.is_dir() {
        return Err(io_err(
            path,
            std::io::ErrorKind::InvalidInput,
            "output path is a folder",
        )
        .into());
    }
    let tmp = temp_path(path);
    let mut guard = TempGuard {
        path: tmp.clone(),
        keep: false,
    };
    let value = write(&tmp)?;
    File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    guard.keep = true;
    sync_dir(parent_dir(path));
    Ok(value)
}

/// Persist the rename itself. Best effort: not every platform or file system can open a folder
/// for syncing, and the data is already safe in the renamed file.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("higgs_atomic_{tag}_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect()
    }

    #[test]
    fn replaces_on_success_and_keeps_old_on_error() {
        let d = tmp_dir("replace");
        let p = d.join("out.bin");
        std::fs::write(&p, b"old").unwrap();
        write_atomic(&p, |w| w.write_all(b"new").map_err(|e| Error::io("x", e))).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new");

        let r: Result<()> = write_atomic(&p, |w| {
            w.write_all(b"partial").map_err(|e| Error::io("x", e))?;
            Err(Error::Other("disk full".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(leftovers(&d).is_empty(), "{:?}", leftovers(&d));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn path_variant_renames_and_cleans_up() {
        let d = tmp_dir("via_path");
        let p = d.join("out.wav");
        write_atomic_via_path(&p, |tmp| {
            std::fs::write(tmp, b"wav").map_err(|e| Error::io(tmp, e))
        })
        .unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"wav");
        let r: Result<()> = write_atomic_via_path(&p, |tmp| {
            std::fs::write(tmp, b"half").map_err(|e| Error::io(tmp, e))?;
            Err(Error::Other("encoder failed".into()))
        });
        assert!(r.is_err());
        assert_eq!(std::fs::read(&p).unwrap(), b"wav");
        assert!(leftovers(&d).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn unwritable_destinations_are_refused_up_front() {
        let d = tmp_dir("check");
        assert!(check_writable(&d.join("ok.wav")).is_ok());
        let e = check_writable(&d.join("missing").join("x.wav")).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = check_writable(&d).unwrap_err();
        assert!(e.to_string().contains("folder"), "{e}");
        assert!(leftovers(&d).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }
}
