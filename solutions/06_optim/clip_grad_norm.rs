//! # Clipping gradients by their global norm
//!
//! A loss spike can produce a gradient hundreds of times larger than usual, and one such step
//! can throw a fine-tuned model far from its pre-trained weights (exploding gradients). Clipping
//! by the **global** norm treats all gradients as one long vector:
//!
//!     norm = √(Σ_params Σ_elements g²)
//!     coef = max_norm / (norm + 1e-6)
//!     if coef < 1: every g ← g · coef
//!
//! Every gradient is scaled by the same factor, so the update keeps its direction and only gets
//! shorter; clipping each tensor separately would change the direction. The norm *before*
//! clipping is returned: it is what the trainer logs (`grad_norm`), the first thing to look at
//! when training goes wrong. The 1e-6 is PyTorch's: a norm of exactly `max_norm` is scaled by a
//! hair under 1.
//!
//! Graded against `tunelab::optim::clip_grad_norm` (which matches
//! `torch.nn.utils.clip_grad_norm_`) on random gradients, large and small.

use ndarray::ArrayD;

/// Clips `grads` together to global norm `max_norm` (> 0) and returns the norm before clipping.
///
///     grads [[3, 4]], max_norm 1 → returns 5, grads become [[0.6, 0.8]] (to 1e-6)
///     grads [[3, 4]], max_norm 10 → returns 5, grads unchanged
pub fn clip_grad_norm(grads: &mut [ArrayD<f64>], max_norm: f64) -> f64 {
    let norm = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|x| x * x)
        .sum::<f64>()
        .sqrt();
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        for g in grads.iter_mut() {
            *g *= coef;
        }
    }
    norm
}
