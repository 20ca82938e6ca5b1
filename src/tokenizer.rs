//! Text tokenizer wrapper (filled by the prompt work).
