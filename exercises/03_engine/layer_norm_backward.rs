//! # Layer norm, backward
//!
//! Layer norm normalises each row x (C values) and then scales and shifts it:
//!
//!     μ = mean(x),  σ² = mean((x − μ)²),  rstd = 1/√(σ² + ε)
//!     n = (x − μ)·rstd,   y = n ⊙ γ + β
//!
//! The forward is given; it saves μ and rstd per row (llm.c does the same) so the backward need
//! not recompute them. With g = ∂L/∂y for one row:
//!
//! - β and γ act per column: ∂L/∂β += g,  ∂L/∂γ += g ⊙ n (summed over rows).
//! - Through n: let dn = g ⊙ γ. Each n_j depends on every x_k through μ and rstd. Using
//!   ∂μ/∂x_k = 1/C and ∂rstd/∂x_k = −rstd³·(x_k − μ)/C = −rstd²·n_k/C, differentiating
//!   n_j = (x_j − μ)·rstd gives
//!
//!     ∂n_j/∂x_k = rstd·([j = k] − 1/C − n_j·n_k/C)
//!
//!   and so  dx_k = Σ_j dn_j·∂n_j/∂x_k = rstd·(dn_k − mean(dn) − n_k·mean(dn ⊙ n)).
//!
//! Three terms: the direct path, the mean's path (shifting x shifts μ) and the variance's path
//! (scaling x scales σ). It is tunelab's backward in src/autodiff/ops/layernorm.rs.
//!
//! Graded against tunelab's layer-norm backward on random inputs, and by a gradient check: all
//! three gradients against central differences of the forward.

use ndarray::{Array1, Array2, Axis};

/// What the forward saves for the backward: μ and rstd per row.
#[derive(Debug, Clone)]
pub struct LayerNormCache {
    pub mean: Array1<f64>,
    pub rstd: Array1<f64>,
}

/// The three gradients of layer norm.
#[derive(Debug, Clone)]
pub struct LayerNormGrads {
    /// (N, C)
    pub dx: Array2<f64>,
    /// (C)
    pub dgamma: Array1<f64>,
    /// (C)
    pub dbeta: Array1<f64>,
}

/// Layer norm of every row of x (N, C) (given).
pub fn layer_norm_forward(
    x: &Array2<f64>,
    gamma: &Array1<f64>,
    beta: &Array1<f64>,
    eps: f64,
) -> (Array2<f64>, LayerNormCache) {
    let mean = x.mean_axis(Axis(1)).expect("C > 0");
    let var = x
        .rows()
        .into_iter()
        .zip(&mean)
        .map(|(row, &mu)| row.mapv(|v| (v - mu).powi(2)).mean().expect("C > 0"))
        .collect::<Array1<f64>>();
    let rstd = var.mapv(|v| 1.0 / (v + eps).sqrt());
    let mut y = x.clone();
    for ((mut row, &mu), &rs) in y.rows_mut().into_iter().zip(&mean).zip(&rstd) {
        row.mapv_inplace(|v| (v - mu) * rs);
        row *= gamma;
        row += beta;
    }
    (y, LayerNormCache { mean, rstd })
}

/// The gradients of layer norm, given dy = ∂L/∂y (N, C), the input x, γ and the forward's cache.
pub fn layer_norm_backward(
    dy: &Array2<f64>,
    x: &Array2<f64>,
    gamma: &Array1<f64>,
    cache: &LayerNormCache,
) -> LayerNormGrads {
    // TODO: per row r: n = (x_r − μ_r)·rstd_r and dn = dy_r ⊙ γ;
    // TODO: dβ += dy_r, dγ += dy_r ⊙ n, dx_r = rstd_r·(dn − mean(dn) − n·mean(dn ⊙ n)).
    todo!()
}
