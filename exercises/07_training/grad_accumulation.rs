//! # Token-weighted gradient accumulation
//!
//! When a batch does not fit in memory it is split into k micro-batches whose gradients are
//! added before one optimizer step. Each micro-batch's loss is a *mean* over its own items (the
//! target tokens of a language model, −100 labels excluded). Dividing each mean by k, the obvious
//! rule (and Hugging Face's before 4.46), weights a token of a short micro-batch more than a
//! token of a long one: the result is not the loss of the whole batch.
//!
//! Hugging Face's Trainer now passes `num_items_in_batch`, and tunelab's Trainer does the same:
//! each micro-batch's mean times its item count is its *sum*, the sums add up, and the total is
//! divided by the number of items in all micro-batches. For gradients the same, since the
//! gradient of a sum is the sum of the gradients:
//!
//!     L = Σ_k n_k·L_k / Σ_k n_k,        g = Σ_k n_k·g_k / Σ_k n_k        (0 when Σ n_k = 0)
//!
//!     means [2.0, 1.0] over [1, 3] items → (2·1 + 1·3) / 4 = 1.25   (the 1/k rule gives 1.5)
//!
//! Graded against tunelab's cross-entropy of the whole batch at once: your accumulation of the
//! micro-batches' means and gradients must give the same loss and gradient.

use ndarray::Array2;

/// One micro-batch's contribution, as the backward pass of its mean loss left it.
#[derive(Debug, Clone)]
pub struct MicroBatch {
    /// The micro-batch's loss, a mean over its items.
    pub mean_loss: f64,
    /// The gradient of that mean with respect to a parameter.
    pub grad: Array2<f64>,
    /// How many items (counted target tokens) the mean was over: `num_items_in_batch`.
    pub num_items: usize,
}

/// The loss and gradient of the whole batch from its micro-batches (at least one, all
/// gradients of the same shape).
pub fn accumulate(micro: &[MicroBatch]) -> (f64, Array2<f64>) {
    // TODO: weight each micro-batch by its items; divide by the total items (0 if there are none).
    todo!()
}
