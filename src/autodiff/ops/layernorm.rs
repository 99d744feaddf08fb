//! Layer normalisation over the last axis, fused: y = (x − μ) · rstd · γ + β with
//! rstd = 1 / √(σ² + ε). Forward saves μ and rstd per row, as llm.c does.
//!
//! Backward, per row of C values with n = (x − μ)·rstd and dn = g ⊙ γ:
//!   dβ += g,  dγ += g ⊙ n,  dx = rstd · (dn − mean(dn) − n · mean(dn ⊙ n))
//!
//! Forward and dx are computed per row, spread over the kernel threads; dγ and dβ sum over rows
//! on one thread, so results do not depend on the thread count.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{shape_err, Result};
use crate::kernels::{fastmath, for_each_piece};
use crate::tensor::{fmt_shape, Float};
use ndarray::{
    Array1, Array2, ArrayBase, ArrayD, ArrayView1, ArrayView2, ArrayViewD, Axis, Data, Ix1, Zip,
};
use std::borrow::Cow;

/// Rows are independent in forward and in dx: pieces of this many rows go to the threads.
const ROWS_PER_PIECE: usize = 64;

/// A 1-D array as a slice, copied only when it is strided.
fn contiguous<'a, F: Float, S: Data<Elem = F>>(a: &'a ArrayBase<S, Ix1>) -> Cow<'a, [F]> {
    a.as_slice()
        .map_or_else(|| Cow::Owned(a.to_vec()), Cow::Borrowed)
}

struct LayerNorm<F: Float> {
    x: Var,
    gamma: Var,
    beta: Var,
    mean: Array1<F>,
    rstd: Array1<F>,
}

// ANCHOR: backward
impl<F: Float> Backward<F> for LayerNorm<F> {
    // x (with the saved μ and rstd) gives n for dγ and dx; γ is needed for dx.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::inputs([self.x, self.gamma])
    }

    fn saved_bytes(&self) -> usize {
        (self.mean.len() + self.rstd.len()) * std::mem::size_of::<F>()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let xv = ctx.value(self.x);
        let c = *xv.shape().last().expect("checked in forward");
        let rows = self.mean.len();
        let x2 = xv.to_shape((rows, c)).expect("element count");
        let g2 = g
            .view()
            .into_shape_with_order((rows, c))
            .expect("contiguous");
        let gamma = ctx
            .value(self.gamma)
            .into_dimensionality::<Ix1>()
            .expect("1-D");
        if ctx.needs(self.beta) {
            let mut gb = ctx
                .grad_mut(self.beta)
                .view_mut()
                .into_dimensionality::<Ix1>()
                .expect("1-D");
            for r in 0..rows {
                gb += &g2.row(r);
            }
        }
        if ctx.needs(self.gamma) {
            let mut gg = ctx
                .grad_mut(self.gamma)
                .view_mut()
                .into_dimensionality::<Ix1>()
                .expect("1-D");
            for r in 0..rows {
                let (mu, rs) = (self.mean[r], self.rstd[r]);
                Zip::from(&mut gg)
                    .and(&g2.row(r))
                    .and(&x2.row(r))
                    .for_each(|a, &g, &x| *a += g * (x - mu) * rs);
            }
        }
        if ctx.needs(self.x) {
            let mut dx = ArrayD::<F>::zeros(xv.raw_dim());
            {
                let mut dx2 = dx
                    .view_mut()
                    .into_shape_with_order((rows, c))
                    .expect("contiguous");
                let inv_c = F::one() / F::of(c as f64);
                let gamma = contiguous(&gamma);
                let (x2, g2, gamma) = (&x2, &g2, &gamma[..]);
                let pieces: Vec<_> = dx2
                    .axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE)
                    .enumerate()
                    .collect();
                for_each_piece(pieces, |(p, mut dx_rows)| {
                    // Per row: dn = g ⊙ γ and n = (x − μ) · rstd, then the two means and dx,
                    // each a loop over slices that vectorises.
                    let (mut dn, mut nr) = (vec![F::zero(); c], vec![F::zero(); c]);
                    for (i, mut dxr) in dx_rows.outer_iter_mut().enumerate() {
                        let r = p * ROWS_PER_PIECE + i;
                        let (mu, rs) = (self.mean[r], self.rstd[r]);
                        let (xr, gr) = (x2.row(r), g2.row(r));
                        let (xr, gr) = (contiguous(&xr), contiguous(&gr));
                        for ((dn, &g), &w) in dn.iter_mut().zip(gr.iter()).zip(gamma) {
                            *dn = g * w;
                        }
                        for (n, &x) in nr.iter_mut().zip(xr.iter()) {
                            *n = (x - mu) * rs;
                        }
                        let mean_dn = fastmath::sum(&dn) * inv_c;
                        let mean_dn_n = fastmath::dot(&dn, &nr) * inv_c;
                        let dxr = dxr.as_slice_mut().expect("a fresh array");
                        for ((d, &dn), &n) in dxr.iter_mut().zip(&dn).zip(&nr) {
                            *d = rs * (dn - mean_dn - n * mean_dn_n);
                        }
                    }
                });
            }
            ctx.accumulate(self.x, dx);
        }
    }
}
// ANCHOR_END: backward

// ANCHOR: backward_reference
/// Layer norm's backward written plainly for x (rows, C), γ (C) and the output's gradient g
/// (rows, C): returns (dx, dγ, dβ). Per row, n = (x − μ)·rstd and dn = g ⊙ γ; then
/// dβ += g, dγ += g ⊙ n and dx = rstd · (dn − mean(dn) − n · mean(dn ⊙ n)). The op's backward
/// above computes the same from the saved μ and rstd, rows spread over the kernel threads; a
/// test checks that the two agree.
pub fn layer_norm_backward_reference<F: Float>(
    x: ArrayView2<'_, F>,
    gamma: ArrayView1<'_, F>,
    g: ArrayView2<'_, F>,
    eps: F,
) -> (Array2<F>, Array1<F>, Array1<F>) {
    let (rows, c) = x.dim();
    let cf = F::of(c as f64);
    let mut dx = Array2::zeros((rows, c));
    let mut dgamma = Array1::zeros(c);
    let mut dbeta = Array1::zeros(c);
    for r in 0..rows {
        let mean = x.row(r).sum() / cf;
        let var = x
            .row(r)
            .fold(F::zero(), |s, &v| s + (v - mean) * (v - mean))
            / cf;
        let rstd = F::one() / (var + eps).sqrt();
        let n: Vec<F> = x.row(r).iter().map(|&v| (v - mean) * rstd).collect();
        let dn: Vec<F> = (0..c).map(|j| g[[r, j]] * gamma[j]).collect();
        let mean_dn = dn.iter().fold(F::zero(), |s, &v| s + v) / cf;
        let mean_dn_n = (0..c).fold(F::zero(), |s, j| s + dn[j] * n[j]) / cf;
        for j in 0..c {
            dbeta[j] += g[[r, j]];
            dgamma[j] += g[[r, j]] * n[j];
            dx[[r, j]] = rstd * (dn[j] - mean_dn - n[j] * mean_dn_n);
        }
    }
    (dx, dgamma, dbeta)
}
// ANCHOR_END: backward_reference

impl<F: Float> Tape<'_, F> {
    /// Layer norm of x (..., C) with weight γ (C) and bias β (C).
    pub fn layer_norm(&mut self, x: Var, gamma: Var, beta: Var, eps: f64) -> Result<Var> {
        let xs = self.shape(x).to_vec();
        let c = match xs.last() {
            Some(&c) if c > 0 => c,
            _ => {
                return shape_err(
                    "layer_norm",
                    format!("input {} has no channel axis", fmt_shape(&xs)),
                )
            }
        };
        for (name, v) in [("weight", gamma), ("bias", beta)] {
            if self.shape(v) != [c] {
                return shape_err(
                    "layer_norm",
                    format!("{name} is {}, expected ({c})", fmt_shape(self.shape(v))),
                );
            }
        }
        let rows = xs.iter().product::<usize>() / c;
        let mut mean = Array1::<F>::zeros(rows);
        let mut rstd = Array1::<F>::zeros(rows);
        let mut y = ArrayD::<F>::zeros(ndarray::IxDyn(&xs));
        {
            let xv = self.value(x);
            let x2 = xv.to_shape((rows, c)).expect("element count");
            let gamma_v = self.value(gamma).into_dimensionality::<Ix1>().expect("1-D");
            let beta_v = self.value(beta).into_dimensionality::<Ix1>().expect("1-D");
            let mut y2 = y
                .view_mut()
                .into_shape_with_order((rows, c))
                .expect("contiguous");
            let inv_c = F::one() / F::of(c as f64);
            let (gamma_v, beta_v) = (contiguous(&gamma_v), contiguous(&beta_v));
            let (x2, gamma_v, beta_v) = (&x2, &gamma_v[..], &beta_v[..]);
            let pieces: Vec<_> = y2
                .axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE)
                .zip(mean.axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE))
                .zip(rstd.axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE))
                .enumerate()
                .collect();
            for_each_piece(pieces, |(p, ((mut y_rows, mut mean), mut rstd))| {
                for (i, mut yr) in y_rows.outer_iter_mut().enumerate() {
                    let row = x2.row(p * ROWS_PER_PIECE + i);
                    let row = contiguous(&row);
                    let yr = yr.as_slice_mut().expect("a fresh array");
                    // y holds x − μ first, so the variance is one dot product.
                    let mu = fastmath::sum(&row) * inv_c;
                    for (y, &x) in yr.iter_mut().zip(row.iter()) {
                        *y = x - mu;
                    }
                    let var = fastmath::dot(yr, yr) * inv_c;
                    let rs = F::one() / (var + F::of(eps)).sqrt();
                    for ((y, &w), &b) in yr.iter_mut().zip(gamma_v).zip(beta_v) {
                        *y = *y * rs * w + b;
                    }
                    mean[i] = mu;
                    rstd[i] = rs;
                }
            });
        }
        Ok(self.push(
            "layer_norm",
            y,
            &[x, gamma, beta],
            LayerNorm {
                x,
                gamma,
                beta,
                mean,
                rstd,
            },
        ))
    }
}
