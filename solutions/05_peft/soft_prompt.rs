//! # Prompt tuning: soft prompts
//!
//! Prompt tuning (Lester et al., 2021) is the lightest method of all: P learned vectors (P, C),
//! the "soft prompt", are prepended to the *embedded* input of every sequence. They are not
//! tokens of the vocabulary, just points in embedding space that gradient descent is free to
//! move; everything else stays frozen. For a 7B model with P = 20 that is 20·4096 = 82k
//! parameters.
//!
//! Three pieces of bookkeeping go with it:
//!
//! - prepend: (B, T, C) → (B, P + T, C), the same P vectors in front of every row;
//! - the attention mask gets P `true`s in front (every token may attend to the prompt);
//! - the model's output drops the P prompt positions again, so heads, labels and losses see
//!   (B, T, ·) exactly as without a prompt (PEFT instead adds P ignored labels: the same loss).
//!
//! Graded against the `embeddings` hook of `tunelab::peft::prompt`, and the mask and strip rules.

use ndarray::{Array2, Array3};

/// The soft prompt (P, C) in front of every row of x (B, T, C): (B, P + T, C).
pub fn prepend_prompt(prompt: &Array2<f64>, x: &Array3<f64>) -> Array3<f64> {
    let (b, t, c) = x.dim();
    let p = prompt.nrows();
    Array3::from_shape_fn((b, p + t, c), |(bi, i, j)| {
        if i < p {
            prompt[[i, j]]
        } else {
            x[[bi, i - p, j]]
        }
    })
}

/// The attention mask (B, T) with P `true`s in front: (B, P + T).
pub fn extend_mask(mask: &Array2<bool>, p: usize) -> Array2<bool> {
    let (b, t) = mask.dim();
    Array2::from_shape_fn((b, p + t), |(bi, i)| i < p || mask[[bi, i - p]])
}

/// The model's output (B, P + T, C) without the P prompt positions: (B, T, C).
pub fn strip_prompt(hidden: &Array3<f64>, p: usize) -> Array3<f64> {
    hidden.slice(ndarray::s![.., p.., ..]).to_owned()
}
