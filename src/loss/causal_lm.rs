//! The causal language-modelling loss, and its instruction-tuning form with the prompt masked.
//!
//! A causal LM reads tokens x₀ … x_{T−1} and at each position t outputs logits z_t (V) for the
//! *next* token. The notes' loss for one sequence, with X the prompt and y the response, is
//!
//! ```text
//! L = −Σₜ log P(yₜ | y<ₜ, X)
//! ```
//!
//! # Labels and the shift
//!
//! Labels follow Hugging Face: `labels` (B, T) is the input ids with [`IGNORE_INDEX`] wherever no
//! loss is wanted, and the loss shifts them itself. Position t predicts label t + 1, so the
//! logits used are z[:, :T−1] (a `slice` on the tape) and the targets labels[:, 1:]; the last
//! position predicts nothing. [`lm_labels`] makes labels that ignore padding; [`instruction_labels`]
//! also ignores the first `prompt_len` real tokens of each row, so only the response is learned:
//! the model still reads the prompt, but is never scored (or pushed) on predicting it.
//!
//! One subtlety: the logits at the *last prompt token* are scored, because they predict the first
//! response token. The positions with zero gradient are the ones whose next token is ignored.
//!
//! # Reductions and gradients
//!
//! With pₜ = softmax(zₜ), M counted targets and S = −Σₜ log pₜ[yₜ₊₁] over counted positions:
//!
//! - [`causal_lm_loss`] is S / M, the per-token mean (what Hugging Face trains on); its gradient
//!   is ∂/∂zₜ = (pₜ − onehot(yₜ₊₁)) / M at counted positions and 0 elsewhere. It is the fused
//!   cross-entropy op on the shifted logits; the slice's backward puts the gradient back at
//!   positions 0..T−1 and zero at T−1.
//! - [`causal_lm_loss_sum`] is S itself (the notes' formula, summed over the batch) with M
//!   returned beside it: ∂S/∂zₜ = pₜ − onehot(yₜ₊₁), no 1/M. S / B is the mean per-sequence loss;
//!   its size, and its gradient's, grows with response length, which is why trainers divide by
//!   M. `exp(S / M)` is the perplexity.

use crate::autodiff::{Tape, Var, IGNORE_INDEX};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{Array2, ArrayView2};

// ANCHOR: shift
/// Checks logits (B, T, V) against labels (B, T) and returns the shifted logits z[:, :T−1] and
/// targets labels[:, 1:] (flattened row-major, one per row of the shifted logits).
fn shift<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
) -> Result<(Var, Vec<i64>)> {
    let s = tape.shape(logits).to_vec();
    let (b, t) = labels.dim();
    if s.len() != 3 || s[0] != b || s[1] != t {
        return shape_err(
            "causal_lm_loss",
            format!(
                "logits must be (B, T, V) = ({b}, {t}, V) to match labels, got {}",
                fmt_shape(&s)
            ),
        );
    }
    if t == 0 {
        return invalid("causal_lm_loss", "sequences are empty (T = 0)");
    }
    let head = tape.slice(logits, 1, 0, t - 1)?; // (B, T−1, V)
    let targets = labels
        .rows()
        .into_iter()
        .flat_map(|row| row.into_iter().skip(1).copied().collect::<Vec<_>>())
        .collect();
    Ok((head, targets))
}
// ANCHOR_END: shift

/// Mean next-token cross-entropy over the counted targets: logits (B, T, V), labels (B, T)
/// unshifted (position t is scored on labels[t + 1]), [`IGNORE_INDEX`] where nothing is learned.
pub fn causal_lm_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
) -> Result<Var> {
    let (head, targets) = shift(tape, logits, labels)?;
    tape.cross_entropy(head, &targets, IGNORE_INDEX)
}

/// The summed next-token loss S = −Σ log P(y_{t+1} | y_≤t) over counted targets, and their count
/// M (S / M is [`causal_lm_loss`]). Same arguments as [`causal_lm_loss`].
pub fn causal_lm_loss_sum<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: ArrayView2<'_, i64>,
) -> Result<(Var, usize)> {
    let (head, targets) = shift(tape, logits, labels)?;
    let count = targets.iter().filter(|&&y| y != IGNORE_INDEX).count();
    let mean = tape.cross_entropy(head, &targets, IGNORE_INDEX)?;
    Ok((tape.scale(mean, count as f64)?, count))
}

fn check_mask(
    op: &'static str,
    ids: (usize, usize),
    mask: Option<ArrayView2<'_, bool>>,
) -> Result<()> {
    match mask {
        Some(m) if m.dim() != ids => {
            shape_err(op, format!("mask is {:?} but ids are {:?}", m.dim(), ids))
        }
        _ => Ok(()),
    }
}

/// Language-modelling labels: the ids, with [`IGNORE_INDEX`] where `mask` (true = real token)
/// is false. Works for either padding side.
pub fn lm_labels(
    ids: ArrayView2<'_, usize>,
    mask: Option<ArrayView2<'_, bool>>,
) -> Result<Array2<i64>> {
    instruction_labels(ids, mask, &vec![0; ids.nrows()])
}

// ANCHOR: instruction_labels
/// Instruction-tuning labels: like [`lm_labels`], and the first `prompt_lens[b]` real tokens of
/// row b are ignored too, so only the response is learned. Real tokens are counted from the
/// first one that `mask` marks real, so left-padded rows work.
pub fn instruction_labels(
    ids: ArrayView2<'_, usize>,
    mask: Option<ArrayView2<'_, bool>>,
    prompt_lens: &[usize],
) -> Result<Array2<i64>> {
    const OP: &str = "instruction_labels";
    check_mask(OP, ids.dim(), mask)?;
    if prompt_lens.len() != ids.nrows() {
        return shape_err(
            OP,
            format!(
                "{} prompt lengths for {} rows",
                prompt_lens.len(),
                ids.nrows()
            ),
        );
    }
    let mut labels = Array2::from_elem(ids.dim(), IGNORE_INDEX);
    for (b, &p) in prompt_lens.iter().enumerate() {
        let mut seen = 0;
        for t in 0..ids.ncols() {
            if mask.is_some_and(|m| !m[[b, t]]) {
                continue;
            }
            if seen >= p {
                labels[[b, t]] = ids[[b, t]] as i64;
            }
            seen += 1;
        }
        if p > seen {
            return invalid(
                OP,
                format!("row {b}: prompt of {p} tokens but only {seen} real tokens"),
            );
        }
    }
    Ok(labels)
}
// ANCHOR_END: instruction_labels

/// The instruction-tuning loss in one call: [`instruction_labels`] then [`causal_lm_loss`], the
/// mean over response tokens only.
pub fn instruction_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    ids: ArrayView2<'_, usize>,
    mask: Option<ArrayView2<'_, bool>>,
    prompt_lens: &[usize],
) -> Result<Var> {
    let labels = instruction_labels(ids, mask, prompt_lens)?;
    causal_lm_loss(tape, logits, labels.view())
}
