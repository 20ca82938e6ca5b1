//! The crate's error type. Every variant carries the context a user needs to find the fault:
//! the file and key of a bad checkpoint tensor, the op and argument of a shape mismatch, the
//! config field of an unsupported combination.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The io error is part of the message, not a `source`, so reports that print the whole
    // chain (anyhow's `{:#}`) do not say it twice.
    #[error("io error on {path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("checkpoint {path}: key `{key}`: {reason}")]
    Checkpoint {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("config {path}: field `{field}`: {reason}")]
    Config {
        path: PathBuf,
        field: String,
        reason: String,
    },
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("shape mismatch in {op}: argument `{arg}` expected {expected}, got {got}")]
    Shape {
        op: &'static str,
        arg: &'static str,
        expected: String,
        got: String,
    },
    #[error("dtype mismatch in {op}: argument `{arg}` expected {expected}, got {got}")]
    DType {
        op: &'static str,
        arg: &'static str,
        expected: String,
        got: String,
    },
    #[error("KV cache capacity: needed {needed_blocks} blocks, {free_blocks} free")]
    Capacity {
        needed_blocks: usize,
        free_blocks: usize,
    },
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The engine's queue is full (back-pressure): retry later.
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("audio: {0}")]
    Audio(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("cuda kernel {kernel}: {reason}")]
    Kernel { kernel: String, reason: String },
    /// A Hugging Face hub download (weights/download.rs): the repo id, the URL asked, and what
    /// went wrong (HTTP status, refused listing, io).
    #[error("hub model `{repo}`: {url}: {reason}")]
    Hub {
        repo: String,
        url: String,
        reason: String,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            err: source,
        }
    }

    pub fn checkpoint(
        path: impl Into<PathBuf>,
        key: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Checkpoint {
            path: path.into(),
            key: key.into(),
            reason: reason.into(),
        }
    }

    pub fn config(
        path: impl Into<PathBuf>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::Config {
            path: path.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }
}
