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
    let (ls, gs) = masked_cross_entropy(start_logits, starts, mask);
    let (le, ge) = masked_cross_entropy(end_logits, ends, mask);
    (0.5 * (ls + le), gs * 0.5, ge * 0.5)
}

/// The mean over rows of −log softmax(z_b)_{y_b}, the softmax over the allowed positions only,
/// and its gradient.
fn masked_cross_entropy(z: &Array2<f64>, y: &[usize], mask: &Array2<bool>) -> (f64, Array2<f64>) {
    let (b, t) = z.dim();
    let mut loss = 0.0;
    let mut grad = Array2::zeros((b, t));
    for r in 0..b {
        let allowed = (0..t).filter(|&j| mask[[r, j]]);
        let max = allowed
            .clone()
            .fold(f64::NEG_INFINITY, |m, j| m.max(z[[r, j]]));
        let sum: f64 = allowed.clone().map(|j| (z[[r, j]] - max).exp()).sum();
        let lse = max + sum.ln();
        loss += lse - z[[r, y[r]]];
        for j in allowed {
            let p = (z[[r, j]] - lse).exp();
            grad[[r, j]] = (p - f64::from(u8::from(j == y[r]))) / b as f64;
        }
    }
    (loss / b as f64, grad)
}
