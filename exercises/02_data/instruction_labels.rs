//! # Instruction tuning: mask the prompt out of the labels
//!
//! An instruction example is a prompt followed by a response: "Translate: hello" → "xin chào".
//! The model reads both, but should be trained to *produce* only the response; learning to
//! predict the prompt wastes capacity and teaches the model to continue instructions instead of
//! answering them. So the labels are the ids with −100 (ignored) everywhere except the response:
//!
//!     ids    [p0 p1 p2 r0 r1 r2 PAD]      prompt_len 3, mask [1 1 1 1 1 1 0]
//!     labels [−100 −100 −100 r0 r1 r2 −100]
//!
//! Padding is never learned either. Rows may be left-padded (batched generation puts pads
//! first), so count the prompt from each row's first *real* token, not from column 0.
//!
//! Graded against `tunelab::loss::instruction_labels` on random batches, both pad sides.

use ndarray::Array2;

/// The label value that means "no loss here".
pub const IGNORE_INDEX: i64 = -100;

/// Labels (B, T) for `ids` (B, T): the id where `mask` is true and the token is past the first
/// `prompt_lens[b]` real tokens of its row, [`IGNORE_INDEX`] elsewhere.
///
///     ids [[9, 4, 5, 6]], mask [[false, true, true, true]], prompt_lens [1]
///     → [[−100, −100, 5, 6]]
pub fn instruction_labels(
    ids: &Array2<usize>,
    mask: &Array2<bool>,
    prompt_lens: &[usize],
) -> Array2<i64> {
    // TODO: start from all IGNORE_INDEX; walk each row counting real tokens (mask true);
    // TODO: once prompt_lens[b] real tokens have been seen, copy the ids of the real tokens.
    todo!()
}
