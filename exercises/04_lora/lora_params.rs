//! # Counting LoRA's parameters
//!
//! Each targeted Linear (d_in → d_out) gets A (r, d_in) and B (d_out, r): r·(d_in + d_out)
//! trainable parameters, against d_in·d_out for the weight itself. Every block of the model has
//! the same Linears, so the total is L times the sum over one block's targets.
//!
//! The LoRA paper's GPT-3 175B setting, r = 4 on W_q and W_v (C = 12288, 96 layers):
//! 96 · 2 · 4·(12288 + 12288) = 18.9M trainable parameters, 0.01% of 175B. With grouped-query
//! attention (LLaMA 2 70B) the k and v projections are narrower (d_out = kv_dim), which the
//! formula handles by itself.
//!
//! Graded against `tunelab::lab::estimate::lora_params` on the named model shapes (GPT-3,
//! LLaMA), and against the number of parameters `tunelab::peft::lora` actually adds to a model.

/// LoRA's trainable parameters for `layers` blocks whose targeted Linears are `targets`, each
/// (d_in, d_out), at rank `r`.
///
///     layers 2, targets [(4, 4), (4, 8)], r 2 → 2 · (2·8 + 2·12) = 80
pub fn lora_params(layers: usize, targets: &[(usize, usize)], r: usize) -> u64 {
    // TODO: sum r·(d_in + d_out) over the targets, times the number of layers (in u64).
    todo!()
}
