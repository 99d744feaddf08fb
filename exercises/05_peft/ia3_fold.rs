//! # IA3: rescaled activations, folded into the weights
//!
//! IA3 (Liu et al., 2022) learns three vectors per block, all starting at ones, that rescale
//! activations elementwise: the keys by l_k and the values by l_v (each of size C), and the MLP's
//! hidden activations by l_ff (size d_ff) just before the MLP's second Linear, W_proj:
//!
//! ```text
//! K' = l_k ⊙ (x W_k + b_k)        V' = l_v ⊙ (x W_v + b_v)        out = (l_ff ⊙ h) W_proj + b
//! ```
//!
//! For serving, the vectors fold into the frozen weights so the model costs nothing extra. Here
//! weights are stored (d_in, d_out), as GPT-2's Conv1D stores them (y = x W + b):
//! - l_k and l_v rescale the *output* columns of their projection, and its bias too (the bias is
//!   inside the rescaled output);
//! - l_ff rescales the *input* rows of W_proj, and W_proj's bias stays as it is.
//!
//! ```text
//! W (2, 2) = [[1, 2], [3, 4]], b = [1, 1], l = [2, 10]
//!   → output columns: W' = [[2, 20], [6, 40]], b' = [2, 10]
//!   → input rows:     W' = [[2, 4], [30, 40]]
//! ```
//!
//! Graded against `tunelab::peft::ia3::fold` on a small GPT-2 (its fused c_attn, whose output is
//! [q | k | v], is rescaled by [1…1 | l_k | l_v]), and on the identities above for random x.

use ndarray::{Array1, Array2};

/// A (d_in, d_out) Linear with bias whose output is rescaled by `l` (size d_out), folded:
/// returns (W', b') with x W' + b' = l ⊙ (x W + b) for every x.
pub fn fold_output_scale(
    w: &Array2<f64>,
    b: &Array1<f64>,
    l: &Array1<f64>,
) -> (Array2<f64>, Array1<f64>) {
    // TODO: scale each output column of W, and each entry of b, by its entry of l.
    todo!()
}

/// A (d_in, d_out) weight whose input is rescaled by `l` (size d_in), folded: returns W' with
/// (l ⊙ h) W = h W' for every h.
pub fn fold_input_scale(w: &Array2<f64>, l: &Array1<f64>) -> Array2<f64> {
    // TODO: scale each input row of W by its entry of l.
    todo!()
}
