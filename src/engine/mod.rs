//! The serving engine: the core step loop (`core`: schedule -> execute -> update), the model
//! runner (`runner`), each sequence's generation state (`sequence`), per-request output
//! processing shared by every front end (`output`: frame revert, long-form chaining, batched
//! streaming codec decode), the thread that owns the device (`handle`), and several of them behind one router (`pool`).
//! May use: model, kv, scheduler, sampling, prompt, codec, delay, tokenizer.

pub mod core;
pub mod handle;
pub mod load;
pub mod output;
pub mod pool;
mod runner;
mod sequence;
pub mod types;

pub use self::core::{Engine, EngineConfig, EngineCounters, StepTimes};
pub use handle::{EngineHandle, EngineParts, EngineStats, EventStream, HandleConfig, RequestId};
pub use load::LoadSpec;
pub use output::{
    model_prompt, OutputProcessor, RequestEvent, StreamPolicy, TtsInput, TtsRequest, Usage,
};
pub use pool::{affinity_key, EnginePool, ReplicaCounters, RouterConfig};
pub use types::{Event, FinishReason, GenerationParams, Output, Prompt};
