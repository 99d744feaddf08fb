//! # DoRA's weight: magnitude times direction
//!
//! DoRA (Liu et al., 2024) writes a weight as a magnitude and a direction per output column,
//! and lets LoRA change only the direction while a separate vector m learns the magnitude:
//!
//!     V = W + s·(B A)ᵀ                       the direction, before normalising (W is (d_in, d_out))
//!     W' = m ⊙ V / ‖V‖                       each output column j rescaled to length m_j
//!
//! The norm is per output column, over the inputs (PEFT's `weight_norm` over dim 1 of the
//! (out, in) weight), and m starts at the column norms of W: with B = 0 at init, V = W and
//! W' = W, so the model is unchanged at step 0. After training W' is a fixed matrix and can be
//! merged into the base like LoRA's update.
//!
//!     W [[3, 0], [4, 1]] → ‖W‖ = [5, 1];  with B = 0 and m = [10, 1]: W' = [[6, 0], [8, 1]]
//!
//! Graded against `tunelab::peft::dora`: the magnitude it initialises, and the weight its merge
//! (`dora::fold`, PEFT's merge) writes, for random A, B and m on a GPT Linear.

use ndarray::{Array1, Array2};

/// ‖W‖ per output column of W (d_in, d_out): DoRA's initial magnitude, (d_out).
pub fn column_norms(w: &Array2<f64>) -> Array1<f64> {
    // TODO: the Euclidean norm of each column, over the d_in rows.
    todo!()
}

/// DoRA's merged weight (d_in, d_out) for W (d_in, d_out), A (r, d_in), B (d_out, r),
/// magnitude m (d_out) and LoRA scale s.
pub fn dora_weight(
    w: &Array2<f64>,
    a: &Array2<f64>,
    b: &Array2<f64>,
    m: &Array1<f64>,
    s: f64,
) -> Array2<f64> {
    // TODO: V = W + s·(B·A)ᵀ; divide each column of V by its norm and multiply it by m.
    todo!()
}
