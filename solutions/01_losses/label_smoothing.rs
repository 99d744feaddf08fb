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
    let (n, k) = logits.dim();
    let mut loss = 0.0;
    let mut grad = Array2::zeros((n, k));
    for (i, row) in logits.rows().into_iter().enumerate() {
        let max = row.fold(f64::NEG_INFINITY, |m, &z| m.max(z));
        let lse = max + row.iter().map(|&z| (z - max).exp()).sum::<f64>().ln();
        for c in 0..k {
            let q = if c == targets[i] { 1.0 - eps } else { 0.0 } + eps / k as f64;
            let log_p = row[c] - lse;
            loss -= q * log_p;
            grad[[i, c]] = (log_p.exp() - q) / n as f64;
        }
    }
    (loss / n as f64, grad)
}
