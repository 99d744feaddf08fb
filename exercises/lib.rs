//! tunelab's graded exercises, in the rustlings layout: each exercise is a file
//! `NN_topic/name.rs` with `todo!()` stubs, and `../solutions/` mirrors them. This crate compiles
//! the exercises (or, with the `solutions` feature, the solutions) as its modules, and its tests
//! (`graders/`) grade each one against tunelab's own implementation on random inputs.
//!
//! `tunelab exercises` shows progress, `tunelab exercises verify` grades them all,
//! `tunelab exercises hint N` prints a hint; `info.toml` gives the order and the hints.

// A stub's parameters and imports are unused until it is solved.
#![cfg_attr(not(feature = "solutions"), allow(unused_imports, unused_variables))]

#[cfg(not(feature = "solutions"))]
#[path = "01_losses/softmax.rs"]
pub mod softmax;
#[cfg(feature = "solutions")]
#[path = "../solutions/01_losses/softmax.rs"]
pub mod softmax;

#[cfg(not(feature = "solutions"))]
#[path = "01_losses/cross_entropy.rs"]
pub mod cross_entropy;
#[cfg(feature = "solutions")]
#[path = "../solutions/01_losses/cross_entropy.rs"]
pub mod cross_entropy;

#[cfg(not(feature = "solutions"))]
#[path = "01_losses/causal_lm_loss.rs"]
pub mod causal_lm_loss;
#[cfg(feature = "solutions")]
#[path = "../solutions/01_losses/causal_lm_loss.rs"]
pub mod causal_lm_loss;

#[cfg(not(feature = "solutions"))]
#[path = "02_data/instruction_labels.rs"]
pub mod instruction_labels;
#[cfg(feature = "solutions")]
#[path = "../solutions/02_data/instruction_labels.rs"]
pub mod instruction_labels;

#[cfg(not(feature = "solutions"))]
#[path = "02_data/padding_masks.rs"]
pub mod padding_masks;
#[cfg(feature = "solutions")]
#[path = "../solutions/02_data/padding_masks.rs"]
pub mod padding_masks;

#[cfg(not(feature = "solutions"))]
#[path = "03_engine/layer_norm_backward.rs"]
pub mod layer_norm_backward;
#[cfg(feature = "solutions")]
#[path = "../solutions/03_engine/layer_norm_backward.rs"]
pub mod layer_norm_backward;

#[cfg(not(feature = "solutions"))]
#[path = "03_engine/causal_attention.rs"]
pub mod causal_attention;
#[cfg(feature = "solutions")]
#[path = "../solutions/03_engine/causal_attention.rs"]
pub mod causal_attention;

#[cfg(not(feature = "solutions"))]
#[path = "04_lora/lora_forward.rs"]
pub mod lora_forward;
#[cfg(feature = "solutions")]
#[path = "../solutions/04_lora/lora_forward.rs"]
pub mod lora_forward;

#[cfg(not(feature = "solutions"))]
#[path = "04_lora/lora_merge.rs"]
pub mod lora_merge;
#[cfg(feature = "solutions")]
#[path = "../solutions/04_lora/lora_merge.rs"]
pub mod lora_merge;

#[cfg(not(feature = "solutions"))]
#[path = "04_lora/lora_params.rs"]
pub mod lora_params;
#[cfg(feature = "solutions")]
#[path = "../solutions/04_lora/lora_params.rs"]
pub mod lora_params;

#[cfg(not(feature = "solutions"))]
#[path = "05_peft/bottleneck_adapter.rs"]
pub mod bottleneck_adapter;
#[cfg(feature = "solutions")]
#[path = "../solutions/05_peft/bottleneck_adapter.rs"]
pub mod bottleneck_adapter;

#[cfg(not(feature = "solutions"))]
#[path = "05_peft/prefix_kv.rs"]
pub mod prefix_kv;
#[cfg(feature = "solutions")]
#[path = "../solutions/05_peft/prefix_kv.rs"]
pub mod prefix_kv;

#[cfg(not(feature = "solutions"))]
#[path = "05_peft/soft_prompt.rs"]
pub mod soft_prompt;
#[cfg(feature = "solutions")]
#[path = "../solutions/05_peft/soft_prompt.rs"]
pub mod soft_prompt;

#[cfg(not(feature = "solutions"))]
#[path = "05_peft/bitfit.rs"]
pub mod bitfit;
#[cfg(feature = "solutions")]
#[path = "../solutions/05_peft/bitfit.rs"]
pub mod bitfit;

#[cfg(not(feature = "solutions"))]
#[path = "06_optim/adamw.rs"]
pub mod adamw;
#[cfg(feature = "solutions")]
#[path = "../solutions/06_optim/adamw.rs"]
pub mod adamw;

#[cfg(not(feature = "solutions"))]
#[path = "06_optim/clip_grad_norm.rs"]
pub mod clip_grad_norm;
#[cfg(feature = "solutions")]
#[path = "../solutions/06_optim/clip_grad_norm.rs"]
pub mod clip_grad_norm;

#[cfg(not(feature = "solutions"))]
#[path = "06_optim/warmup_cosine.rs"]
pub mod warmup_cosine;
#[cfg(feature = "solutions")]
#[path = "../solutions/06_optim/warmup_cosine.rs"]
pub mod warmup_cosine;

#[cfg(not(feature = "solutions"))]
#[path = "07_training/early_stopping.rs"]
pub mod early_stopping;
#[cfg(feature = "solutions")]
#[path = "../solutions/07_training/early_stopping.rs"]
pub mod early_stopping;

#[cfg(not(feature = "solutions"))]
#[path = "07_training/memory_estimate.rs"]
pub mod memory_estimate;
#[cfg(feature = "solutions")]
#[path = "../solutions/07_training/memory_estimate.rs"]
pub mod memory_estimate;

#[cfg(not(feature = "solutions"))]
#[path = "08_alignment/bradley_terry.rs"]
pub mod bradley_terry;
#[cfg(feature = "solutions")]
#[path = "../solutions/08_alignment/bradley_terry.rs"]
pub mod bradley_terry;

#[cfg(not(feature = "solutions"))]
#[path = "08_alignment/dpo_loss.rs"]
pub mod dpo_loss;
#[cfg(feature = "solutions")]
#[path = "../solutions/08_alignment/dpo_loss.rs"]
pub mod dpo_loss;

#[cfg(not(feature = "solutions"))]
#[path = "08_alignment/grpo_advantages.rs"]
pub mod grpo_advantages;
#[cfg(feature = "solutions")]
#[path = "../solutions/08_alignment/grpo_advantages.rs"]
pub mod grpo_advantages;

#[cfg(not(feature = "solutions"))]
#[path = "08_alignment/grpo_clipped.rs"]
pub mod grpo_clipped;
#[cfg(feature = "solutions")]
#[path = "../solutions/08_alignment/grpo_clipped.rs"]
pub mod grpo_clipped;

#[cfg(not(feature = "solutions"))]
#[path = "09_quantization/nf4.rs"]
pub mod nf4;
#[cfg(feature = "solutions")]
#[path = "../solutions/09_quantization/nf4.rs"]
pub mod nf4;

#[cfg(test)]
mod graders;
