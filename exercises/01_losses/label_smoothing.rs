//! # Cross-entropy with label smoothing
//!
//! A one-hot target asks the model to put probability 1 on the right class, which it can only
//! approach by growing its logits without bound: an over-confident classifier. Label smoothing
//! (Szegedy et al., 2016) mixes the target with the uniform distribution over the K classes,
//!
//!     q_c = (1 − ε)·[c = y] + ε / K
//!     ℓ = −Σ_c q_c · log softmax(z)_c,         L = mean of ℓ over the N rows
//!
//! which is PyTorch's `F.cross_entropy(z, y, label_smoothing=ε)` (note that the true class gets
//! 1 − ε + ε/K, not 1 − ε). The best the model can do is now a finite margin, and the gradient
//! keeps its simple form, prediction minus target:
//!
//!     ∂L/∂z_ic = (softmax(z_i)_c − q_ic) / N
//!
//!     z [[0, 0]], y [0], ε 0.2 → q [0.9, 0.1], loss = −(0.9 + 0.1)·log 0.5 = 0.6931,
//!                                  gradient [[0.5 − 0.9, 0.5 − 0.1]] = [[−0.4, 0.4]]
//!
//! Graded against tunelab's classification loss (`ClassificationLoss { label_smoothing }`, which
//! matches PyTorch) and its gradient on the tape.

use ndarray::Array2;

/// The mean smoothed cross-entropy of logits (N, K) against one class per row, and its gradient
/// with respect to the logits.
pub fn smoothed_cross_entropy(
    logits: &Array2<f64>,
    targets: &[usize],
    eps: f64,
) -> (f64, Array2<f64>) {
    // TODO: per row, a stable log-softmax (subtract the row's maximum); the smoothed target q;
    // TODO: the loss −Σ q·log p; the gradient (p − q) / N.
    todo!()
}
