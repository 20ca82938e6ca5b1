//! The serving engine: the core step loop (`core`: schedule -> execute -> update), the model
//! runner (`runner`), each sequence's generation state (`sequence`), per-request output
//! processing shared by every front end (`output`: frame revert, long-form chaining, batched
//! streaming codec decode), and the thread that owns the device (`handle`).
//! May use: model, kv, scheduler, sampling, prompt, codec, delay, tokenizer.

pub mod core;
pub mod handle;
pub mod load;
pub mod output;
mod runner;
mod sequence;
pub mod types;

pub use self::core::{Engine, EngineConfig, EngineCounters, StepTimes};
pub use handle::{EngineHandle, EngineParts, EngineStats, EventStream, HandleConfig, RequestId};
pub use load::LoadSpec;
pub use output::{
    model_prompt, OutputProcessor, RequestEvent, StreamPolicy, TtsInput, TtsRequest, Usage,
};
pub use types::{Event, FinishReason, GenerationParams, Output, Prompt};
