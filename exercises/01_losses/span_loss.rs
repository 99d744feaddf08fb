//! # The QA span loss
//!
//! Extractive question answering (SQuAD) does not generate the answer: it points at it. The
//! model reads question and context together and a head gives every position two logits, "the
//! answer starts here" and "the answer ends here". Training is two classifications over the
//! positions of each row, averaged (Hugging Face's `BertForQuestionAnswering`):
//!
//!     L = ½ · (CE(start_logits, starts) + CE(end_logits, ends)),   each CE a mean over the B rows
//!
//! Positions where an answer may not lie (pads; the question too, if you like) are masked: they
//! are taken out of both softmaxes (probability 0, gradient 0). The gradient has the familiar
//! form, with the two halves and the batch mean in it:
//!
//!     ∂L/∂s_bt = (softmax(s_b)_t − [t = start_b]) / (2B) at allowed t, 0 at masked t
//!
//!     start [[0, 0, 0]], end [[0, ln 2, 0]], mask [[1, 1, 0]], start 0, end 1
//!       → ½·(ln 2 + (ln 3 − ln 2)) = ½ ln 3 = 0.5493
//!
//! Graded against `tunelab::loss::span_loss` and its gradient on the tape.

use ndarray::Array2;

/// The span loss of start and end logits (B, T) for one start and one end position per row,
/// with `mask` (B, T) true where an answer may lie (every row has its start and end allowed).
/// Returns the loss and its gradients with respect to the start and the end logits.
pub fn span_loss(
    start_logits: &Array2<f64>,
    end_logits: &Array2<f64>,
    starts: &[usize],
    ends: &[usize],
    mask: &Array2<bool>,
) -> (f64, Array2<f64>, Array2<f64>) {
    // TODO: one masked cross-entropy per side (softmax over the allowed positions only, its
    // TODO: mean over the rows); average the two; every gradient entry carries 1 / (2B).
    todo!()
}
