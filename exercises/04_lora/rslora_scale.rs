//! # LoRA's scale, and rsLoRA's
//!
//! LoRA adds s·(x Aᵀ) Bᵀ to a frozen Linear. The paper's scale is s = α / r, meant to let α stay
//! fixed while r changes. It does not keep the update's size constant: under Adam every entry of
//! A and B moves about lr per step whatever r is, so B·A (a sum over r products) grows like √r and
//! s·B·A shrinks like α / √r. `tunelab interview 7` measures it on gpt-tiny: the update at r 32
//! against the one at r 2, under α / r and under α / √r.
//!
//! rsLoRA (Kalajdzievski, 2023; PEFT's `use_rslora=True`) scales by s = α / √r instead, which
//! keeps s·B·A about the same size across ranks, so a larger r actually gets used.
//!
//!     α 16, r 4 → 4 (LoRA), 8 (rsLoRA);   α 16, r 64 → 0.25 (LoRA), 2 (rsLoRA)
//!
//! Graded against `tunelab::peft::spec::LoraConfig::scaling` for random α and r.

/// LoRA's scale s for `alpha` and rank `r`: α / r, or α / √r with `rslora`.
pub fn lora_scaling(alpha: f64, r: usize, rslora: bool) -> f64 {
    // TODO: the two formulas of the doc comment, chosen by `rslora`.
    todo!()
}
