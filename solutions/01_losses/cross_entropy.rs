//! # Softmax cross-entropy: the classification loss and its gradient
//!
//! For N examples with logits z_i (K classes) and true classes y_i, the notes' loss is
//!
//!     L = −(1/N) Σ_i log p_i[y_i],    p_i = softmax(z_i)
//!
//! Compute log p_i[y_i] without forming p: log softmax(z)[y] = z[y] − logsumexp(z), and
//! logsumexp(z) = m + log Σ_k exp(z_k − m) with m the row maximum (stable, as in softmax).
//!
//! The gradient. For one row, ℓ = logsumexp(z) − z_y, and ∂ logsumexp(z)/∂z_j = p_j, so
//!
//!     ∂ℓ/∂z_j = p_j − [j = y]        and for the mean:  ∂L/∂z_ij = (p_ij − [j = y_i]) / N
//!
//! "Predicted minus true", the same shape as the logits. This is the backward of tunelab's fused
//! cross-entropy op (src/autodiff/ops/cross_entropy.rs).
//!
//! Graded against `Tape::cross_entropy` (loss and gradient) and by a gradient check: your
//! gradient must match central differences of your loss.

use ndarray::{Array2, ArrayView1};

/// log Σ_k exp(z_k), computed stably (given).
pub fn log_sum_exp(row: ArrayView1<f64>) -> f64 {
    let max = row.fold(f64::NEG_INFINITY, |m, &z| m.max(z));
    max + row.iter().map(|&z| (z - max).exp()).sum::<f64>().ln()
}

/// The mean cross-entropy of `logits` (N, K) against one class index per row.
///
///     logits [[0, 0]], targets [0]          → ln 2 = 0.6931
///     logits [[2, 0], [0, 2]], targets [0, 0] → (0.1269 + 2.1269) / 2 = 1.1269
pub fn cross_entropy(logits: &Array2<f64>, targets: &[usize]) -> f64 {
    let n = targets.len() as f64;
    logits
        .rows()
        .into_iter()
        .zip(targets)
        .map(|(row, &y)| log_sum_exp(row) - row[y])
        .sum::<f64>()
        / n
}

/// ∂L/∂logits for [`cross_entropy`]: (softmax(z_i) − onehot(y_i)) / N, shape (N, K).
///
///     logits [[0, 0]], targets [0] → [[−0.5, 0.5]]
pub fn cross_entropy_grad(logits: &Array2<f64>, targets: &[usize]) -> Array2<f64> {
    let n = targets.len() as f64;
    let mut d = logits.clone();
    for (mut row, &y) in d.rows_mut().into_iter().zip(targets) {
        let lse = log_sum_exp(row.view());
        row.mapv_inplace(|z| (z - lse).exp());
        row[y] -= 1.0;
        row /= n;
    }
    d
}
