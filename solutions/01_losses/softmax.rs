//! # Softmax, computed stably
//!
//! A model's last layer gives one logit z_j per class (or per vocabulary token); softmax turns
//! them into probabilities:
//!
//!     p_j = exp(z_j) / Σ_k exp(z_k)
//!
//! Written like that, exp(1000) overflows to infinity and the result is NaN. Subtract the row's
//! maximum m first: exp(z_j − m) / Σ_k exp(z_k − m) is the same number (the factor exp(−m)
//! cancels), and now every exponent is ≤ 0, so nothing overflows and the largest term is 1.
//!
//! Graded against tunelab's `Tape::softmax` on random rows, very large logits included.

use ndarray::Array2;

/// The softmax of each row of `logits` (N, V).
///
///     [[1, 2, 3]]         → [[0.0900, 0.2447, 0.6652]]
///     [[1000, 1000, 990]] → [[0.49998, 0.49998, 0.00005]]  (no NaN)
pub fn softmax(logits: &Array2<f64>) -> Array2<f64> {
    let mut p = logits.clone();
    for mut row in p.rows_mut() {
        let max = row.fold(f64::NEG_INFINITY, |m, &z| m.max(z));
        row.mapv_inplace(|z| (z - max).exp());
        let sum = row.sum();
        row /= sum;
    }
    p
}
