//! Log-probabilities of given tokens under a causal LM: the quantity preference tuning and RL
//! train on, where supervised fine-tuning trains on its negative mean.
//!
//! With logits z (B, T, V) and labels (B, T) laid out as for [`causal_lm_loss`](super::causal_lm)
//! (unshifted: position t is scored on label t + 1; [`IGNORE_INDEX`] where nothing is scored,
//! so the prompt and padding are masked), the log-probability of the token that follows
//! position t is
//!
//! ```text
//! ℓ_bt = log softmax(z_bt)[y_b,t+1]      (0 where y_b,t+1 is ignored)
//! ```
//!
//! [`token_logps`] returns ℓ (B, T − 1); [`sequence_logps`] its sum over each row, log π(y | x)
//! of the whole response, or the mean over the row's counted tokens (SimPO's and ORPO's
//! length-normalised form). The gradient of ℓ_bt with respect to z_bt is onehot(y) − softmax(z_bt):
//! raising a token's log-probability pushes its own logit up and every other down in proportion
//! to its probability. Both are built from `log_softmax`, a product with a constant one-hot mask
//! and a sum over V, so their backward is those ops' (gradchecked with the others in
//! `tests/suite/gradcheck.rs`).

use crate::autodiff::{Tape, Var, IGNORE_INDEX};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};

/// Per-token log-probabilities ℓ (B, T − 1) of each row's next tokens, 0 where the label is
/// [`IGNORE_INDEX`]. Logits (B, T, V), labels (B, T) unshifted.
pub fn token_logps<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
) -> Result<Var> {
    const OP: &str = "token_logps";
    let s = tape.shape(logits).to_vec();
    let (b, t) = labels.dim();
    if s.len() != 3 || s[0] != b || s[1] != t {
        return shape_err(
            OP,
            format!(
                "logits must be (B, T, V) = ({b}, {t}, V) to match labels, got {}",
                fmt_shape(&s)
            ),
        );
    }
    if t < 2 {
        return invalid(OP, format!("sequences of {t} tokens predict no next token"));
    }
    let v = s[2];
    let mut onehot = ArrayD::<F>::zeros(IxDyn(&[b, t - 1, v]));
    for ((i, j), &y) in labels.indexed_iter() {
        if j == 0 || y == IGNORE_INDEX {
            continue;
        }
        if y < 0 || y as usize >= v {
            return invalid(
                OP,
                format!("label {y} at row {i}, position {j} is outside the vocabulary of {v}"),
            );
        }
        onehot[[i, j - 1, y as usize]] = F::one();
    }
    // ANCHOR: token_logps
    let head = tape.slice(logits, 1, 0, t - 1)?; // (B, T−1, V): position t predicts t + 1
    let logp = tape.log_softmax(head)?;
    let mask = tape.constant(onehot);
    let picked = tape.mul(logp, mask)?;
    tape.sum(picked, &[2], false)
    // ANCHOR_END: token_logps
}

/// Each row's log-probability of its counted tokens (B,): the sum of [`token_logps`] over the
/// row, or its mean over the row's counted tokens when `average` (0 for a row with none); and
/// each row's count.
pub fn sequence_logps<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
    average: bool,
) -> Result<(Var, Vec<usize>)> {
    let per_token = token_logps(tape, logits, labels)?;
    let counts: Vec<usize> = labels
        .rows()
        .into_iter()
        .map(|row| row.iter().skip(1).filter(|&&y| y != IGNORE_INDEX).count())
        .collect();
    let summed = tape.sum(per_token, &[1], false)?;
    if !average {
        return Ok((summed, counts));
    }
    let inv = counts
        .iter()
        .map(|&n| {
            if n == 0 {
                F::zero()
            } else {
                F::of(1.0 / n as f64)
            }
        })
        .collect::<Vec<_>>();
    let inv = tape.constant(ArrayD::from_shape_vec(IxDyn(&[counts.len()]), inv).expect("B"));
    Ok((tape.mul(summed, inv)?, counts))
}

/// The counted-token mask (B, T − 1) that [`token_logps`] scores: true where label t + 1 is not
/// ignored. For the per-token reductions of GRPO's losses.
pub fn completion_mask(labels: ArrayView2<'_, i64>) -> Array2<bool> {
    let (b, t) = labels.dim();
    Array2::from_shape_fn((b, t.saturating_sub(1)), |(i, j)| {
        labels[[i, j + 1]] != IGNORE_INDEX
    })
}
