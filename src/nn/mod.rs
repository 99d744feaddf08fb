//! Layers built from the autodiff ops, and the transformer made of them.
//!
//! Weights are named as in Hugging Face's GPT-2 (`GPT2LMHeadModel`) and BERT (`BertModel`)
//! checkpoints, so loading a real checkpoint is a name map. Fine-tuning methods plug in through
//! [`hooks::Hooks`]; this code never knows which method is active.

pub mod config;
pub mod generate;
pub mod heads;
pub mod hooks;
pub mod kv_cache;
pub mod layer_cache;
pub mod layers;
pub mod quantize;
pub mod transformer;

pub use config::{Activation, Arch, Config};
pub use heads::{Pooling, RewardHead, SequenceHead, SpanHead, TokenHead};
pub use hooks::{Hooks, NoHooks, Role, Site};
pub use kv_cache::{KvCache, LayerCache};
pub use layers::{LayerNorm, Layout, Linear};
pub use quantize::{BaseDtype, QuantReport};
pub use transformer::{BlockRecompute, Input, Transformer};
