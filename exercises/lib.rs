//! tunelab's graded exercises, in the rustlings layout: each exercise is a file
//! `NN_topic/name.rs` with `todo!()` stubs, and `../solutions/` mirrors them. This crate compiles
//! the exercises (or, with the `solutions` feature, the solutions) as its modules; the graders
//! (`graders/`, run by the integration test `tests/grade.rs`) grade each one against tunelab's
//! own implementation on random inputs.
//!
//! **tunelab is not a dependency of this library**, only of its tests: an exercise cannot call
//! the reference it is graded against (it does not compile), and the types an exercise needs
//! live in [`types`]. Each exercise's module is gated on `not(skip_<name>)` (see `build.rs`), so
//! `tunelab exercises` can leave out the ones that do not compile and grade all the others.
//!
//! `tunelab exercises` shows progress, `tunelab exercises verify` grades them all,
//! `tunelab exercises hint N` prints a hint; `info.toml` gives the order and the hints.

// A stub's parameters and imports are unused until it is solved.
#![cfg_attr(not(feature = "solutions"), allow(unused_imports, unused_variables))]

pub mod types;

#[cfg(all(not(skip_bitfit), not(feature = "solutions")))]
#[path = "05_peft/bitfit.rs"]
pub mod bitfit;
#[cfg(all(not(skip_bitfit), feature = "solutions"))]
#[path = "../solutions/05_peft/bitfit.rs"]
pub mod bitfit;

#[cfg(all(not(skip_rslora_scale), not(feature = "solutions")))]
#[path = "04_lora/rslora_scale.rs"]
pub mod rslora_scale;
#[cfg(all(not(skip_rslora_scale), feature = "solutions"))]
#[path = "../solutions/04_lora/rslora_scale.rs"]
pub mod rslora_scale;

#[cfg(all(not(skip_lora_params), not(feature = "solutions")))]
#[path = "04_lora/lora_params.rs"]
pub mod lora_params;
#[cfg(all(not(skip_lora_params), feature = "solutions"))]
#[path = "../solutions/04_lora/lora_params.rs"]
pub mod lora_params;

#[cfg(all(not(skip_memory_estimate), not(feature = "solutions")))]
#[path = "07_training/memory_estimate.rs"]
pub mod memory_estimate;
#[cfg(all(not(skip_memory_estimate), feature = "solutions"))]
#[path = "../solutions/07_training/memory_estimate.rs"]
pub mod memory_estimate;

#[cfg(all(not(skip_softmax), not(feature = "solutions")))]
#[path = "01_losses/softmax.rs"]
pub mod softmax;
#[cfg(all(not(skip_softmax), feature = "solutions"))]
#[path = "../solutions/01_losses/softmax.rs"]
pub mod softmax;

#[cfg(all(not(skip_word_labels), not(feature = "solutions")))]
#[path = "02_data/word_labels.rs"]
pub mod word_labels;
#[cfg(all(not(skip_word_labels), feature = "solutions"))]
#[path = "../solutions/02_data/word_labels.rs"]
pub mod word_labels;

#[cfg(all(not(skip_padding_masks), not(feature = "solutions")))]
#[path = "02_data/padding_masks.rs"]
pub mod padding_masks;
#[cfg(all(not(skip_padding_masks), feature = "solutions"))]
#[path = "../solutions/02_data/padding_masks.rs"]
pub mod padding_masks;

#[cfg(all(not(skip_instruction_labels), not(feature = "solutions")))]
#[path = "02_data/instruction_labels.rs"]
pub mod instruction_labels;
#[cfg(all(not(skip_instruction_labels), feature = "solutions"))]
#[path = "../solutions/02_data/instruction_labels.rs"]
pub mod instruction_labels;

#[cfg(all(not(skip_early_stopping), not(feature = "solutions")))]
#[path = "07_training/early_stopping.rs"]
pub mod early_stopping;
#[cfg(all(not(skip_early_stopping), feature = "solutions"))]
#[path = "../solutions/07_training/early_stopping.rs"]
pub mod early_stopping;

#[cfg(all(not(skip_warmup_cosine), not(feature = "solutions")))]
#[path = "06_optim/warmup_cosine.rs"]
pub mod warmup_cosine;
#[cfg(all(not(skip_warmup_cosine), feature = "solutions"))]
#[path = "../solutions/06_optim/warmup_cosine.rs"]
pub mod warmup_cosine;

#[cfg(all(not(skip_clip_grad_norm), not(feature = "solutions")))]
#[path = "06_optim/clip_grad_norm.rs"]
pub mod clip_grad_norm;
#[cfg(all(not(skip_clip_grad_norm), feature = "solutions"))]
#[path = "../solutions/06_optim/clip_grad_norm.rs"]
pub mod clip_grad_norm;

#[cfg(all(not(skip_cross_entropy), not(feature = "solutions")))]
#[path = "01_losses/cross_entropy.rs"]
pub mod cross_entropy;
#[cfg(all(not(skip_cross_entropy), feature = "solutions"))]
#[path = "../solutions/01_losses/cross_entropy.rs"]
pub mod cross_entropy;

#[cfg(all(not(skip_causal_lm_loss), not(feature = "solutions")))]
#[path = "01_losses/causal_lm_loss.rs"]
pub mod causal_lm_loss;
#[cfg(all(not(skip_causal_lm_loss), feature = "solutions"))]
#[path = "../solutions/01_losses/causal_lm_loss.rs"]
pub mod causal_lm_loss;

#[cfg(all(not(skip_label_smoothing), not(feature = "solutions")))]
#[path = "01_losses/label_smoothing.rs"]
pub mod label_smoothing;
#[cfg(all(not(skip_label_smoothing), feature = "solutions"))]
#[path = "../solutions/01_losses/label_smoothing.rs"]
pub mod label_smoothing;

#[cfg(all(not(skip_lora_forward), not(feature = "solutions")))]
#[path = "04_lora/lora_forward.rs"]
pub mod lora_forward;
#[cfg(all(not(skip_lora_forward), feature = "solutions"))]
#[path = "../solutions/04_lora/lora_forward.rs"]
pub mod lora_forward;

#[cfg(all(not(skip_lora_merge), not(feature = "solutions")))]
#[path = "04_lora/lora_merge.rs"]
pub mod lora_merge;
#[cfg(all(not(skip_lora_merge), feature = "solutions"))]
#[path = "../solutions/04_lora/lora_merge.rs"]
pub mod lora_merge;

#[cfg(all(not(skip_bottleneck_adapter), not(feature = "solutions")))]
#[path = "05_peft/bottleneck_adapter.rs"]
pub mod bottleneck_adapter;
#[cfg(all(not(skip_bottleneck_adapter), feature = "solutions"))]
#[path = "../solutions/05_peft/bottleneck_adapter.rs"]
pub mod bottleneck_adapter;

#[cfg(all(not(skip_soft_prompt), not(feature = "solutions")))]
#[path = "05_peft/soft_prompt.rs"]
pub mod soft_prompt;
#[cfg(all(not(skip_soft_prompt), feature = "solutions"))]
#[path = "../solutions/05_peft/soft_prompt.rs"]
pub mod soft_prompt;

#[cfg(all(not(skip_prefix_kv), not(feature = "solutions")))]
#[path = "05_peft/prefix_kv.rs"]
pub mod prefix_kv;
#[cfg(all(not(skip_prefix_kv), feature = "solutions"))]
#[path = "../solutions/05_peft/prefix_kv.rs"]
pub mod prefix_kv;

#[cfg(all(not(skip_adamw), not(feature = "solutions")))]
#[path = "06_optim/adamw.rs"]
pub mod adamw;
#[cfg(all(not(skip_adamw), feature = "solutions"))]
#[path = "../solutions/06_optim/adamw.rs"]
pub mod adamw;

#[cfg(all(not(skip_grad_accumulation), not(feature = "solutions")))]
#[path = "07_training/grad_accumulation.rs"]
pub mod grad_accumulation;
#[cfg(all(not(skip_grad_accumulation), feature = "solutions"))]
#[path = "../solutions/07_training/grad_accumulation.rs"]
pub mod grad_accumulation;

#[cfg(all(not(skip_grpo_advantages), not(feature = "solutions")))]
#[path = "08_alignment/grpo_advantages.rs"]
pub mod grpo_advantages;
#[cfg(all(not(skip_grpo_advantages), feature = "solutions"))]
#[path = "../solutions/08_alignment/grpo_advantages.rs"]
pub mod grpo_advantages;

#[cfg(all(not(skip_span_loss), not(feature = "solutions")))]
#[path = "01_losses/span_loss.rs"]
pub mod span_loss;
#[cfg(all(not(skip_span_loss), feature = "solutions"))]
#[path = "../solutions/01_losses/span_loss.rs"]
pub mod span_loss;

#[cfg(all(not(skip_causal_attention), not(feature = "solutions")))]
#[path = "03_engine/causal_attention.rs"]
pub mod causal_attention;
#[cfg(all(not(skip_causal_attention), feature = "solutions"))]
#[path = "../solutions/03_engine/causal_attention.rs"]
pub mod causal_attention;

#[cfg(all(not(skip_ia3_fold), not(feature = "solutions")))]
#[path = "05_peft/ia3_fold.rs"]
pub mod ia3_fold;
#[cfg(all(not(skip_ia3_fold), feature = "solutions"))]
#[path = "../solutions/05_peft/ia3_fold.rs"]
pub mod ia3_fold;

#[cfg(all(not(skip_dora_weight), not(feature = "solutions")))]
#[path = "05_peft/dora_weight.rs"]
pub mod dora_weight;
#[cfg(all(not(skip_dora_weight), feature = "solutions"))]
#[path = "../solutions/05_peft/dora_weight.rs"]
pub mod dora_weight;

#[cfg(all(not(skip_ties_merge), not(feature = "solutions")))]
#[path = "10_merging/ties_merge.rs"]
pub mod ties_merge;
#[cfg(all(not(skip_ties_merge), feature = "solutions"))]
#[path = "../solutions/10_merging/ties_merge.rs"]
pub mod ties_merge;

#[cfg(all(not(skip_bradley_terry), not(feature = "solutions")))]
#[path = "08_alignment/bradley_terry.rs"]
pub mod bradley_terry;
#[cfg(all(not(skip_bradley_terry), feature = "solutions"))]
#[path = "../solutions/08_alignment/bradley_terry.rs"]
pub mod bradley_terry;

#[cfg(all(not(skip_dpo_loss), not(feature = "solutions")))]
#[path = "08_alignment/dpo_loss.rs"]
pub mod dpo_loss;
#[cfg(all(not(skip_dpo_loss), feature = "solutions"))]
#[path = "../solutions/08_alignment/dpo_loss.rs"]
pub mod dpo_loss;

#[cfg(all(not(skip_layer_norm_backward), not(feature = "solutions")))]
#[path = "03_engine/layer_norm_backward.rs"]
pub mod layer_norm_backward;
#[cfg(all(not(skip_layer_norm_backward), feature = "solutions"))]
#[path = "../solutions/03_engine/layer_norm_backward.rs"]
pub mod layer_norm_backward;

#[cfg(all(not(skip_lora_backward), not(feature = "solutions")))]
#[path = "04_lora/lora_backward.rs"]
pub mod lora_backward;
#[cfg(all(not(skip_lora_backward), feature = "solutions"))]
#[path = "../solutions/04_lora/lora_backward.rs"]
pub mod lora_backward;

#[cfg(all(not(skip_nf4), not(feature = "solutions")))]
#[path = "09_quantization/nf4.rs"]
pub mod nf4;
#[cfg(all(not(skip_nf4), feature = "solutions"))]
#[path = "../solutions/09_quantization/nf4.rs"]
pub mod nf4;

#[cfg(all(not(skip_grpo_clipped), not(feature = "solutions")))]
#[path = "08_alignment/grpo_clipped.rs"]
pub mod grpo_clipped;
#[cfg(all(not(skip_grpo_clipped), feature = "solutions"))]
#[path = "../solutions/08_alignment/grpo_clipped.rs"]
pub mod grpo_clipped;

#[cfg(all(not(skip_left_padded_generation), not(feature = "solutions")))]
#[path = "11_capstones/left_padded_generation.rs"]
pub mod left_padded_generation;
#[cfg(all(not(skip_left_padded_generation), feature = "solutions"))]
#[path = "../solutions/11_capstones/left_padded_generation.rs"]
pub mod left_padded_generation;

#[cfg(all(not(skip_kv_cache), not(feature = "solutions")))]
#[path = "11_capstones/kv_cache.rs"]
pub mod kv_cache;
#[cfg(all(not(skip_kv_cache), feature = "solutions"))]
#[path = "../solutions/11_capstones/kv_cache.rs"]
pub mod kv_cache;

#[cfg(all(not(skip_lora_finetune), not(feature = "solutions")))]
#[path = "11_capstones/lora_finetune.rs"]
pub mod lora_finetune;
#[cfg(all(not(skip_lora_finetune), feature = "solutions"))]
#[path = "../solutions/11_capstones/lora_finetune.rs"]
pub mod lora_finetune;
