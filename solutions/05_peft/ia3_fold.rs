//! # IA3: rescaled activations, folded into the weights (solution)
//!
//! With W stored (d_in, d_out), output j of x W + b is Σ_i x_i W_ij + b_j: multiplying it by l_j
//! multiplies column j of W and entry j of b. Input i enters through row i of W: scaling h_i by
//! l_i is scaling row i.

use ndarray::{Array1, Array2, Axis};

/// A (d_in, d_out) Linear with bias whose output is rescaled by `l` (size d_out), folded:
/// returns (W', b') with x W' + b' = l ⊙ (x W + b) for every x.
pub fn fold_output_scale(
    w: &Array2<f64>,
    b: &Array1<f64>,
    l: &Array1<f64>,
) -> (Array2<f64>, Array1<f64>) {
    // Broadcasting a (d_out) vector over the rows of (d_in, d_out) scales each column.
    (w * l, b * l)
}

/// A (d_in, d_out) weight whose input is rescaled by `l` (size d_in), folded: returns W' with
/// (l ⊙ h) W = h W' for every h.
pub fn fold_input_scale(w: &Array2<f64>, l: &Array1<f64>) -> Array2<f64> {
    // l as a (d_in, 1) column scales each row.
    w * &l.view().insert_axis(Axis(1))
}
