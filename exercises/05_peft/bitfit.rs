//! # BitFit: train the biases only
//!
//! BitFit (Ben Zaken et al., 2021) freezes every weight matrix and trains only the bias terms:
//! every `*.bias` of the model, LayerNorm biases included. That is about 0.1% of a transformer's
//! parameters, yet on small and medium data it comes surprisingly close to full fine-tuning:
//! shifting activations is enough to re-route what the frozen weights compute.
//!
//! In tunelab a model's parameters live in a `ParamStore`, named as in Hugging Face checkpoints
//! (`h.0.attn.c_attn.weight`, `h.0.ln_1.bias`, `encoder.layer.0.output.dense.bias`, …), each with
//! a trainable flag; here you get them as a list of [`Param`]s (name and flag). The optimizer
//! only touches trainable parameters that got a gradient, and the tape computes no gradient that
//! no trainable parameter needs.
//!
//! Graded against `tunelab::peft::bitfit::BitFit::apply` on a GPT and a BERT model: the same
//! flag for every parameter.
//!
//!     [h.0.attn.c_attn.weight (true), h.0.ln_1.bias (false)] → [… (false), … (true)]

pub use crate::types::Param;

/// Makes exactly the biases trainable (the names ending in `.bias`) and freezes everything else.
pub fn freeze_for_bitfit(params: &mut [Param]) {
    // TODO: set every flag, true or false, from the parameter's name.
    todo!()
}
