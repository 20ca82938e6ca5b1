//! (filled by the prompt work)
