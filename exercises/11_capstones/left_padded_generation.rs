//! # Batched greedy generation with left padding
//!
//! A decoder generates the next token of every row from the row's *last* position. To generate
//! for several prompts of different lengths in one batch, pad them on the **left**: every row's
//! last real token then sits in the last column, and each step appends one column.
//!
//! Each step, for a batch (B, T):
//! 1. `next_logits(ids, mask, positions)` returns the logits (B, V) at the last column;
//! 2. each row's next token is the argmax of its row of logits (greedy; the first maximum wins);
//! 3. append a column: the new tokens, mask `true`, and position = the row's previous last
//!    position + 1 (positions count from each row's first real token, so a padded prompt sees
//!    exactly the positions it would see alone; pads get position 0 and mask `false`).
//!
//! ```text
//! prompts [[5, 6, 7], [8]], pad 0 → ids [[5, 6, 7], [0, 0, 8]], mask [[1, 1, 1], [0, 0, 1]],
//!                                   positions [[0, 1, 2], [0, 0, 0]]
//! after one step with tokens [3, 4] → ids [[5, 6, 7, 3], [0, 0, 8, 4]], positions
//!                                   [[0, 1, 2, 3], [0, 0, 0, 1]]
//! ```
//!
//! Graded with a real gpt model behind `next_logits`: your batch must generate, for every
//! prompt, exactly the tokens tunelab's `generate_uncached` produces for that prompt alone.

use ndarray::Array2;

/// The logits (B, V) at the last column, for ids, attention mask and positions (B, T).
pub type NextLogits<'a> =
    dyn FnMut(&Array2<usize>, &Array2<bool>, &Array2<usize>) -> Array2<f64> + 'a;

/// Greedily generates `max_new_tokens` tokens for each prompt (none empty) in one left-padded
/// batch; returns each prompt's new tokens (without the prompt).
pub fn generate_left_padded(
    prompts: &[Vec<usize>],
    pad: usize,
    max_new_tokens: usize,
    next_logits: &mut NextLogits<'_>,
) -> Vec<Vec<usize>> {
    // TODO: left-pad the prompts into ids, mask and positions (B, T).
    // TODO: max_new_tokens times: logits → argmax per row → append a column to all three arrays.
    todo!()
}
