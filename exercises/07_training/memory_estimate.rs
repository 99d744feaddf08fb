//! # Memory: full fine-tuning versus LoRA
//!
//! Why does LoRA fit a 7B model on one GPU when full fine-tuning does not? Count the bytes of
//! the *model states* (weights, gradients, optimizer state) per parameter:
//!
//! - **full fine-tuning in fp32 with Adam**: weights 4 + gradients 4 + Adam's m and v 8 =
//!   16 bytes for every parameter. A 7B model: 7·10⁹ · 16 = 112 GB before any activation.
//! - **LoRA**: the frozen base is held in 16-bit, 2 bytes per parameter, with no gradient and no
//!   optimizer state. Only the N_lora adapter parameters train, in fp32: 4 (weight) + 4 (grad) +
//!   8 (Adam) = 16 bytes each. Total 2·N + 16·N_lora: about 14 GB for 7B with r = 8 on q, v.
//!
//! (Mixed-precision full fine-tuning is *also* 16 bytes per parameter: 2 + 2 for 16-bit weights
//! and gradients, plus 12 for the fp32 master copy and Adam's moments; ZeRO's count.)
//! Activations come on top and are the same for both: the gradient must still flow back
//! through every frozen layer to reach the adapters. `tunelab estimate 7B` prints it all.
//!
//! Graded against the rows of `tunelab::lab::estimate::estimate` for named model sizes.

/// Bytes of weights, gradients and Adam state for full fine-tuning in fp32 of `n_params`.
///
///     1_000_000_000 → 16e9
pub fn full_ft_state_bytes(n_params: u64) -> f64 {
    // TODO: 4 + 4 + 8 bytes per parameter.
    todo!()
}

/// Bytes of weights, gradients and Adam state for LoRA: a 16-bit frozen base of `n_params` and
/// `n_lora` trained adapter parameters in fp32.
///
///     1_000_000_000 base, 1_000_000 LoRA → 2e9 + 16e6
pub fn lora_state_bytes(n_params: u64, n_lora: u64) -> f64 {
    // TODO: 2 bytes per base parameter, 4 + 4 + 8 per adapter parameter.
    todo!()
}
