//! # Padding and attention masks
//!
//! Sequences in a batch have different lengths; a batch is a rectangle (B, T). Shorter rows are
//! padded with a pad id, and an **attention mask** says which slots are real, so that no token
//! attends to a pad (and no loss is computed at one).
//!
//! - **Right padding** (training): tokens at 0..n, pads after.
//! - **Left padding** (batched generation with a decoder): pads first, so every row's last real
//!   token is in the last column and the next token of every row is read from the same place.
//! - **Positions** count from each row's first real token (0, 1, 2, …), whatever the side, so a
//!   left-padded prompt gets the same position embeddings as when it is alone; pads get 0.
//!
//! Attention then combines two masks: query t of row b may attend to key j when key j is real
//! (the padding mask) and, for a decoder, j ≤ t (the causal mask).
//!
//! Graded against `tunelab::data::batch::pad`, and the attention rule against which keys
//! tunelab's attention op actually gives a non-zero weight.

pub use crate::types::PadSide;
use ndarray::{Array2, Array3};

/// A padded batch; every array is (B, T) with T the longest sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct Padded {
    pub ids: Array2<usize>,
    /// true for a real token, false for a pad.
    pub attention_mask: Array2<bool>,
    /// 0, 1, 2, … from each row's first real token; 0 at pads.
    pub positions: Array2<usize>,
}

/// Pads `seqs` (none empty) to the longest one.
///
///     [[5, 6, 7], [8]], pad 0, Right → ids [[5, 6, 7], [8, 0, 0]], mask [[1, 1, 1], [1, 0, 0]],
///                                      positions [[0, 1, 2], [0, 0, 0]]
///     the same, Left                 → ids [[5, 6, 7], [0, 0, 8]], mask [[1, 1, 1], [0, 0, 1]],
///                                      positions [[0, 1, 2], [0, 0, 0]]
pub fn pad(seqs: &[Vec<u32>], pad_id: u32, side: PadSide) -> Padded {
    let t = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let b = seqs.len();
    let mut out = Padded {
        ids: Array2::from_elem((b, t), pad_id as usize),
        attention_mask: Array2::from_elem((b, t), false),
        positions: Array2::zeros((b, t)),
    };
    for (i, seq) in seqs.iter().enumerate() {
        let first = match side {
            PadSide::Right => 0,
            PadSide::Left => t - seq.len(),
        };
        for (k, &tok) in seq.iter().enumerate() {
            out.ids[[i, first + k]] = tok as usize;
            out.attention_mask[[i, first + k]] = true;
            out.positions[[i, first + k]] = k;
        }
    }
    out
}

/// allowed[b, t, j]: whether query t of row b may attend to key j, for an attention mask (B, T).
///
///     mask [[1, 1, 0]], causal → row 0: [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
pub fn attention_allowed(mask: &Array2<bool>, causal: bool) -> Array3<bool> {
    let (b, t) = mask.dim();
    Array3::from_shape_fn((b, t, t), |(b, q, k)| mask[[b, k]] && !(causal && k > q))
}
