//! The Higgs Audio v2 generation model (spec: model.md §4-6): embeddings, decoder layers
//! (dual-FFN, fast-forward and plain), final norm, text and audio heads. Sees tensors and a
//! `BatchInputs`, never requests.
//! May use: ops, tensor, config, weights, kv::cache.

mod batch;
#[cfg(feature = "cuda")]
mod graph;
mod layer;
mod llm;
mod weights;

pub use batch::{BatchInputs, RowInput};
pub use llm::{ForwardOptions, ForwardOutput, Model};
pub use weights::{LayerWeights, LoadOptions, ModelWeights};
