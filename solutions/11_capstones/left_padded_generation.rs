//! # Batched greedy generation with left padding (solution)
//!
//! The batch grows by one column per step; rebuilding the three arrays with one more column is
//! the plainest way to append (a KV cache would avoid re-running the prefix, see `kv_cache`).

use ndarray::{concatenate, Array2, Axis};

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
    let b = prompts.len();
    let t = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Array2::from_elem((b, t), pad);
    let mut mask = Array2::from_elem((b, t), false);
    let mut positions = Array2::<usize>::zeros((b, t));
    for (row, prompt) in prompts.iter().enumerate() {
        let start = t - prompt.len();
        for (k, &token) in prompt.iter().enumerate() {
            ids[[row, start + k]] = token;
            mask[[row, start + k]] = true;
            positions[[row, start + k]] = k;
        }
    }
    let mut out = vec![Vec::with_capacity(max_new_tokens); b];
    for _ in 0..max_new_tokens {
        let logits = next_logits(&ids, &mask, &positions);
        let next: Vec<usize> = logits
            .rows()
            .into_iter()
            .map(|row| {
                // The first maximum wins.
                let mut best = 0;
                for (j, &z) in row.iter().enumerate() {
                    if z > row[best] {
                        best = j;
                    }
                }
                best
            })
            .collect();
        let last = positions.ncols() - 1;
        let column = |values: Vec<usize>| Array2::from_shape_vec((b, 1), values).unwrap();
        let new_positions: Vec<usize> = (0..b).map(|r| positions[[r, last]] + 1).collect();
        ids = concatenate![Axis(1), ids, column(next.clone())];
        mask = concatenate![Axis(1), mask, Array2::from_elem((b, 1), true)];
        positions = concatenate![Axis(1), positions, column(new_positions)];
        for (row, token) in next.into_iter().enumerate() {
            out[row].push(token);
        }
    }
    out
}
