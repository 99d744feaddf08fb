//! Token-level cross-entropy for token classification (NER).
//!
//! Logits z (B, T, K) from a [`TokenHead`](crate::nn::heads::TokenHead), one tag per position in
//! labels (B, T). Positions that must not be scored carry [`IGNORE_INDEX`]: padding, special
//! tokens, and every sub-word of a word but its first (so a word split into three pieces counts
//! once, as Hugging Face's token-classification recipe does; [`align_labels`] builds such
//! labels). With M counted positions and p = softmax(z),
//!
//! ```text
//! L = −(1/M) Σ_{(b,t) counted} log p_bt[y_bt]        ∂L/∂z_bt = (p_bt − onehot(y_bt)) / M
//! ```
//!
//! and ∂L/∂z_bt = 0 at ignored positions. The mean is over tags, not over sentences, so a long
//! sentence weighs more than a short one. It is the fused cross-entropy op with the (B, T) grid
//! read as B·T rows; [`token_classification_loss_with`] adds label smoothing and class weights
//! (useful because `O` dominates NER tags), with the formulas of
//! [`classification`](super::classification).

use super::classification::ClassificationLoss;
use crate::autodiff::{Tape, Var};
use crate::error::{shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::ArrayView2;

/// Mean cross-entropy over the counted positions: logits (B, T, K), labels (B, T) with
/// [`IGNORE_INDEX`] at positions that are not scored.
pub fn token_classification_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
) -> Result<Var> {
    token_classification_loss_with(tape, logits, labels, &ClassificationLoss::default())
}

/// [`token_classification_loss`] with label smoothing and/or class weights.
pub fn token_classification_loss_with<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
    options: &ClassificationLoss,
) -> Result<Var> {
    let s = tape.shape(logits);
    let (b, t) = labels.dim();
    if s.len() != 3 || s[0] != b || s[1] != t {
        return shape_err(
            "token_classification_loss",
            format!(
                "logits must be (B, T, K) = ({b}, {t}, K) to match labels, got {}",
                fmt_shape(s)
            ),
        );
    }
    // Row-major order: row b·T + t of the logits is position (b, t).
    let targets: Vec<i64> = labels.iter().copied().collect();
    options.cross_entropy(tape, logits, &targets)
}
