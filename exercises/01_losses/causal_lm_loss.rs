//! # The causal language-modelling loss: shift and ignore index
//!
//! A causal LM reads tokens x_0 … x_{T−1} and at every position t outputs logits z_t for the
//! *next* token. The notes' loss, L = −Σ_t log P(y_t | y_<t, X), becomes, with labels laid out as
//! Hugging Face does (labels[t] = the token at t, unshifted):
//!
//! - **shift**: the logits at position t are scored against labels[t + 1]; the last position
//!   predicts nothing. Positions 0..T−1 of the logits meet labels 1..T.
//! - **ignore index**: a label of −100 means "no loss here" (padding, prompt tokens). Those
//!   positions are skipped, and the mean is over the M positions that count.
//!
//!     L = −(1/M) Σ_{counted (b, t)} log softmax(z[b, t])[labels[b, t + 1]]
//!
//! When no position counts, the loss is 0 (PyTorch would give NaN). The gradient is the
//! cross-entropy one, placed at the shifted positions: (softmax(z[b, t]) − onehot(labels[b, t+1]))
//! / M where counted, 0 elsewhere (including every last position).
//!
//! Graded against `tunelab::loss::causal_lm_loss`, its loss and its gradient, and by a gradient
//! check of your gradient against your loss.

use ndarray::{Array3, ArrayView1};

/// The label value that means "no loss here".
pub const IGNORE_INDEX: i64 = -100;

/// log Σ_k exp(z_k), computed stably (given).
pub fn log_sum_exp(row: ArrayView1<f64>) -> f64 {
    let max = row.fold(f64::NEG_INFINITY, |m, &z| m.max(z));
    max + row.iter().map(|&z| (z - max).exp()).sum::<f64>().ln()
}

/// Mean next-token cross-entropy: logits (B, T, V), labels (B, T) unshifted, −100 ignored.
///
///     T = 3, labels [[5, 7, -100]]: positions 0 (→ 7) counts, position 1 (→ −100) does not,
///     position 2 predicts nothing; M = 1.
pub fn causal_lm_loss(logits: &Array3<f64>, labels: &ndarray::Array2<i64>) -> f64 {
    // TODO: for every row b and position t < T − 1 whose next label is not IGNORE_INDEX,
    // TODO: add logsumexp(z[b, t]) − z[b, t][label]; divide by the count (0 if none).
    todo!()
}

/// ∂L/∂logits for [`causal_lm_loss`], shape (B, T, V).
pub fn causal_lm_grad(logits: &Array3<f64>, labels: &ndarray::Array2<i64>) -> Array3<f64> {
    // TODO: count the targets M first; then at every counted (b, t) write
    // TODO: (softmax(z[b, t]) − onehot(labels[b, t + 1])) / M; leave everything else 0.
    todo!()
}
