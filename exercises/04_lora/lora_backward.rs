//! # LoRA's backward pass
//!
//! The forward of a LoRA Linear is y = x W + s·(x Aᵀ) Bᵀ with W frozen. Training needs the
//! gradients of the loss with respect to A and B (to update them) and to x (to keep
//! back-propagating into the layers below), given dy = ∂L/∂y. Name the middle product
//! u = x Aᵀ (N, r). Backward through a product Z = X·Y sends dZ·Yᵀ to X and Xᵀ·dZ to Y:
//!
//!     dB = s · dyᵀ u               (d_out, r)
//!     du = s · dy B                (N, r)
//!     dA = duᵀ x                   (r, d_in)
//!     dx = dy Wᵀ + du A            (N, d_in): through the frozen path and through the adapter
//!
//! Nothing here is (d_in, d_out) except W itself: LoRA's backward costs O(N·r·(d_in + d_out))
//! beyond the frozen path's dy Wᵀ, and no gradient of W is formed. At init B = 0, so dA = 0:
//! only B moves on the first step.
//!
//!     x [[1, 2]], W = I₂, A [[1, 0]], B [[1], [1]], α = r = 1, dy [[1, 0]]
//!       → u [[1]], dB [[1], [0]], du [[1]], dA [[1, 2]], dx [[1, 0]] + [[1, 0]] = [[2, 0]]
//!
//! Graded against the gradients tunelab's autodiff computes through its LoRA hook
//! (`tunelab::peft::lora`), and against central differences.

use ndarray::Array2;

/// The gradients of a LoRA Linear.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraGrads {
    /// ∂L/∂x, (N, d_in).
    pub dx: Array2<f64>,
    /// ∂L/∂A, (r, d_in).
    pub da: Array2<f64>,
    /// ∂L/∂B, (d_out, r).
    pub db: Array2<f64>,
}

/// The backward of y = x W + (α/r)·(x Aᵀ) Bᵀ for x (N, d_in), W (d_in, d_out), A (r, d_in),
/// B (d_out, r), given dy (N, d_out).
pub fn lora_backward(
    x: &Array2<f64>,
    w: &Array2<f64>,
    a: &Array2<f64>,
    b: &Array2<f64>,
    alpha: f64,
    dy: &Array2<f64>,
) -> LoraGrads {
    // TODO: s = α / r; recompute u = x·Aᵀ; then the four formulas of the doc comment.
    todo!()
}
