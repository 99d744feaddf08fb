//! # LoRA: the forward pass and why B starts at zero
//!
//! LoRA (Hu et al., 2021) freezes a pre-trained weight W (d_in, d_out) and learns a low-rank
//! update beside it: two small matrices A (r, d_in) and B (d_out, r) with r ≪ d_in, d_out,
//!
//!     y = x W + s · (x Aᵀ) Bᵀ,      s = α / r
//!
//! The update ΔW = s·(B A)ᵀ has rank at most r, and costs r·(d_in + d_out) parameters instead of
//! d_in·d_out. x Aᵀ is computed first: (N, r) is tiny, and the d_in × d_out matrix B A is never
//! formed during training.
//!
//! **Zero init.** B starts at exactly zero, A at random (uniform in ±1/√d_in, PEFT's Kaiming
//! init). Then ΔW = 0 and the fine-tuned model *is* the pre-trained model at step 0: training
//! starts from what the base knows, not from a random perturbation of it. A is random so that B
//! gets a non-zero gradient (∂L/∂B involves x Aᵀ); if both were zero, neither would ever move.
//!
//! s = α / r is the paper's scale, meant to keep the update's size comparable across ranks. It
//! does not: under Adam every entry of A and B moves by about lr per step whatever r is, so B·A
//! (a sum of r products) grows like √r and s·B·A shrinks like α / √r. `tunelab interview 7`
//! measures the update at r 32 against the one at r 2 under both scales. rsLoRA's s = α / √r
//! (the `rslora_scale` exercise) keeps it about constant.
//!
//! Graded against the LoRA hook of `tunelab::peft::lora` on a Linear of a small model, and by
//! the zero-init property: your init gives exactly x W.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::Rng;

/// LoRA's initial A (r, d_in), uniform in ±1/√d_in, and B (d_out, r), zero.
pub fn lora_init(
    d_in: usize,
    d_out: usize,
    r: usize,
    rng: &mut StdRng,
) -> (Array2<f64>, Array2<f64>) {
    let bound = 1.0 / (d_in as f64).sqrt();
    let a = Array2::from_shape_fn((r, d_in), |_| rng.random_range(-bound..bound));
    let b = Array2::zeros((d_out, r));
    (a, b)
}

/// y = x W + (α/r) · (x Aᵀ) Bᵀ for x (N, d_in), W (d_in, d_out), A (r, d_in), B (d_out, r).
///
///     x [[1, 0]], W = I₂, A [[1, 1]], B [[1], [0]], α = 2, r = 1 → [[1 + 2, 0]] = [[3, 0]]
pub fn lora_forward(
    x: &Array2<f64>,
    w: &Array2<f64>,
    a: &Array2<f64>,
    b: &Array2<f64>,
    alpha: f64,
) -> Array2<f64> {
    let s = alpha / a.nrows() as f64;
    x.dot(w) + x.dot(&a.t()).dot(&b.t()) * s
}
