//! The Higgs Audio v2 generation model (spec: model.md §4-6): embeddings, decoder layers
//! (dual-FFN, fast-forward and plain), final norm, text and audio heads. Sees tensors and a
//! `BatchInputs`, never requests.
//! May use: ops, tensor, config, weights, kv::cache.

mod batch;
mod dual_ffn;
#[cfg(feature = "cuda")]
mod graph;
mod layer;
mod llm;
pub mod quantize;
mod sub_batch;
mod weights;

pub use batch::{BatchInputs, RowInput};
pub use dual_ffn::{DualFfnStrategy, LayerRouting, RoutingStats};
pub use llm::{ForwardOptions, ForwardOutput, Model};
pub use weights::{AudioBranch, FfnWeights, LayerWeights, LinearRole, LoadOptions, ModelWeights};
