//! # One AdamW step
//!
//! AdamW (Loshchilov & Hutter, 2019) keeps two running averages per parameter, the mean of the
//! gradient m and of its square v, and steps by their ratio. At the t-th update (t = 1, 2, …):
//!
//!     p ← p − lr·wd·p                      decoupled weight decay: shrink p itself
//!     m ← β₁·m + (1 − β₁)·g
//!     v ← β₂·v + (1 − β₂)·g²
//!     m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)   bias correction: m and v start at 0
//!     p ← p − lr · m̂ / (√v̂ + ε)
//!
//! On the first step m̂ = g and v̂ = g², so every element moves by about lr·sign(g), whatever the
//! gradient's scale. "Decoupled" means the decay is applied to the weights, not added to g
//! (Adam would divide it by √v and weaken it where gradients are large). m and v cost two
//! floats per *trained* parameter: the reason LoRA's optimizer state is tiny.
//!
//! Graded against `tunelab::optim::AdamW` (which matches `torch.optim.AdamW`) over several
//! steps with random gradients.

pub use crate::types::AdamWConfig;
use ndarray::{ArrayD, Zip};

/// AdamW's state for one parameter.
#[derive(Debug, Clone)]
pub struct AdamState {
    /// m, the first moment.
    pub m: ArrayD<f64>,
    /// v, the second moment.
    pub v: ArrayD<f64>,
    /// t, the number of updates so far.
    pub t: u64,
}

impl AdamState {
    /// Zero moments for a parameter of this shape.
    pub fn new(shape: &[usize]) -> Self {
        Self {
            m: ArrayD::zeros(shape),
            v: ArrayD::zeros(shape),
            t: 0,
        }
    }
}

/// One AdamW update of `p` with gradient `g` and learning rate `lr`.
pub fn adamw_step(
    p: &mut ArrayD<f64>,
    g: &ArrayD<f64>,
    state: &mut AdamState,
    lr: f64,
    cfg: &AdamWConfig,
) {
    // TODO: t += 1; decay p; update m and v; bias-correct; step p (see the formulas above).
    todo!()
}
