//! The extractive QA loss: cross-entropy over start positions plus cross-entropy over end
//! positions, halved.
//!
//! A [`SpanHead`](crate::nn::heads::SpanHead) gives start logits s (B, T) and end logits e
//! (B, T); the answer to row b is the token span startᵦ..=endᵦ. Each position is a class, so
//! with p = softmax(s), q = softmax(e) (over T):
//!
//! ```text
//! L = ( −(1/B) Σᵦ log pᵦ[startᵦ] − (1/B) Σᵦ log qᵦ[endᵦ] ) / 2
//! ∂L/∂sᵦ = (pᵦ − onehot(startᵦ)) / 2B        ∂L/∂eᵦ = (qᵦ − onehot(endᵦ)) / 2B
//! ```
//!
//! (Hugging Face's `BertForQuestionAnswering` computes the same (start + end) / 2.)
//!
//! # Masking padded positions
//!
//! Padding is not a place an answer can be, so it is taken out of the softmax: before the
//! cross-entropy, a constant tensor holding 0 at real positions and [`MASK_OFFSET`] (−10⁹) at
//! padded ones is added to the logits. Why:
//!
//! - without it a row's loss depends on how much padding its batch has (every pad takes some
//!   probability mass), and argmax at inference could pick a pad;
//! - Hugging Face does not mask here and relies on the model learning that pads never answer;
//!   masking costs one addition and removes the question;
//! - the offset is a large *finite* constant, not −∞: exp(z − 10⁹ − max) underflows to exactly 0
//!   in f32 and f64 for any sane logits, so pads get exactly zero probability and, by the formula
//!   above, exactly zero gradient (the `add` passes the gradient through unchanged and the
//!   constant takes none), while a row with every position masked still gives finite numbers
//!   instead of ∞ − ∞ = NaN.
//!
//! The mask marks where an answer may lie; pass one that is false on the question tokens too
//! to restrict answers to the context. Positions outside 0..T or at masked positions are errors.

use crate::autodiff::{Tape, Var, IGNORE_INDEX};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{Array2, ArrayView2};

/// What is added to the logits of masked positions: large enough that they get exactly zero
/// probability, finite so that a fully masked row cannot give NaN.
pub const MASK_OFFSET: f64 = -1e9;

/// The QA loss (CE(start) + CE(end)) / 2, each CE a mean over the batch: start and end logits
/// (B, T), one start and one end position per row, and an optional mask (B, T) that is true where
/// an answer may lie (the real tokens); masked positions are taken out of both softmaxes.
pub fn span_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    start_logits: Var,
    end_logits: Var,
    starts: &[usize],
    ends: &[usize],
    mask: Option<ArrayView2<'_, bool>>,
) -> Result<Var> {
    const OP: &str = "span_loss";
    let s = tape.shape(start_logits).to_vec();
    if s.len() != 2 || tape.shape(end_logits) != s.as_slice() {
        return shape_err(
            OP,
            format!(
                "start and end logits must both be (B, T), got {} and {}",
                fmt_shape(&s),
                fmt_shape(tape.shape(end_logits))
            ),
        );
    }
    let (b, t) = (s[0], s[1]);
    if starts.len() != b || ends.len() != b {
        return shape_err(
            OP,
            format!(
                "{} starts and {} ends for a batch of {b}",
                starts.len(),
                ends.len()
            ),
        );
    }
    if let Some(m) = mask {
        if m.dim() != (b, t) {
            return shape_err(OP, format!("mask is {:?}, logits are ({b}, {t})", m.dim()));
        }
    }
    for (which, positions) in [("start", starts), ("end", ends)] {
        for (row, &p) in positions.iter().enumerate() {
            if p >= t {
                return invalid(OP, format!("row {row}: {which} {p} is outside 0..{t}"));
            }
            if mask.is_some_and(|m| !m[[row, p]]) {
                return invalid(OP, format!("row {row}: {which} {p} is a masked position"));
            }
        }
    }
    let (start_logits, end_logits) =
        match mask {
            None => (start_logits, end_logits),
            Some(m) => {
                let offset = Array2::from_shape_fn((b, t), |ij| {
                    if m[ij] {
                        F::zero()
                    } else {
                        F::of(MASK_OFFSET)
                    }
                });
                let offset = tape.constant(offset.into_dyn());
                (
                    tape.add(start_logits, offset)?,
                    tape.add(end_logits, offset)?,
                )
            }
        };
    let to_i64 = |p: &[usize]| p.iter().map(|&x| x as i64).collect::<Vec<_>>();
    let start = tape.cross_entropy(start_logits, &to_i64(starts), IGNORE_INDEX)?;
    let end = tape.cross_entropy(end_logits, &to_i64(ends), IGNORE_INDEX)?;
    let both = tape.add(start, end)?;
    tape.scale(both, 0.5)
}
