//! Softmax and log-softmax over the last axis, fused and numerically stable (the row max is
//! subtracted before exponentiating).
//!
//! Backward, per row with output y and gradient g:
//!   softmax:      dx = y ⊙ (g − Σ g⊙y)
//!   log-softmax:  dx = g − softmax(x) · Σ g

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{shape_err, Result};
use crate::kernels::{fastmath, for_each_piece};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, ArrayView1, ArrayView2, ArrayViewD, ArrayViewMut1, Axis};

/// Replaces a row by its softmax. A row that is all −∞ (fully masked) becomes all zeros.
///
/// Three passes over the row, each a loop the compiler vectorises: the max (in lanes), the
/// shifted exponentials written in place, then their sum (in lanes) and the division.
pub(crate) fn softmax_slice<F: Float>(row: &mut [F]) {
    let max = fastmath::max(row);
    if max == F::neg_infinity() {
        row.fill(F::zero());
        return;
    }
    for v in row.iter_mut() {
        *v = (*v - max).exp_fast();
    }
    let inv = F::one() / fastmath::sum(row);
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// [`softmax_slice`] on a row that may be strided.
pub(crate) fn softmax_inplace<F: Float>(mut row: ArrayViewMut1<'_, F>) {
    if let Some(r) = row.as_slice_mut() {
        return softmax_slice(r);
    }
    let mut r = row.to_vec();
    softmax_slice(&mut r);
    row.assign(&ArrayView1::from(&r));
}

/// Replaces a row by its log-softmax: x − max − log Σ exp(x − max).
pub(crate) fn log_softmax_inplace<F: Float>(mut row: ArrayViewMut1<'_, F>) {
    let max = row.fold(F::neg_infinity(), |m, &v| m.max(v));
    let lse = max + row.fold(F::zero(), |s, &v| s + (v - max).exp()).ln();
    row.mapv_inplace(|v| v - lse);
}

struct Softmax {
    x: Var,
    log: bool,
}

// ANCHOR: backward
impl<F: Float> Backward<F> for Softmax {
    // Both forms' backward is written with the output y alone.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::output()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let cols = *g.shape().last().expect("at least one axis");
        let mut dx = g.as_standard_layout().into_owned();
        let ys = y.as_standard_layout();
        let (d, ys) = (
            dx.as_slice_mut().expect("standard layout"),
            ys.as_slice().expect("standard layout"),
        );
        for (d, y) in d.chunks_mut(cols.max(1)).zip(ys.chunks(cols.max(1))) {
            if self.log {
                let gsum = fastmath::sum(d);
                for (d, &y) in d.iter_mut().zip(y) {
                    *d -= y.exp() * gsum;
                }
            } else {
                let dot = fastmath::dot(d, y);
                for (d, &y) in d.iter_mut().zip(y) {
                    *d = y * (*d - dot);
                }
            }
        }
        ctx.accumulate(self.x, dx);
    }
}
// ANCHOR_END: backward

// ANCHOR: backward_reference
/// The softmax's backward written plainly, one row of the last axis at a time, from the output
/// y and the output's gradient g: dx_j = Σ_i g_i ∂y_i/∂x_j with the Jacobian
/// ∂y_i/∂x_j = y_i ([i = j] − y_j), which sums to y_j (g_j − ⟨g, y⟩). For the log-softmax
/// (y = log p) the Jacobian is [i = j] − p_j, giving dx_j = g_j − p_j Σ_i g_i. The op's backward
/// above computes the same with vectorised sums; a test checks that the two agree.
pub fn softmax_backward_reference<F: Float>(
    y: ArrayView2<'_, F>,
    g: ArrayView2<'_, F>,
    log: bool,
) -> Array2<F> {
    let mut dx = Array2::zeros(y.raw_dim());
    for r in 0..y.nrows() {
        let c = y.ncols();
        for j in 0..c {
            let mut sum = F::zero();
            for i in 0..c {
                let kronecker = if i == j { F::one() } else { F::zero() };
                let jacobian = if log {
                    kronecker - y[[r, j]].exp()
                } else {
                    y[[r, i]] * (kronecker - y[[r, j]])
                };
                sum += g[[r, i]] * jacobian;
            }
            dx[[r, j]] = sum;
        }
    }
    dx
}
// ANCHOR_END: backward_reference

impl<F: Float> Tape<'_, F> {
    fn softmax_op(&mut self, x: Var, log: bool) -> Result<Var> {
        let name = if log { "log_softmax" } else { "softmax" };
        if self.shape(x).is_empty() {
            return shape_err(name, "needs at least one axis");
        }
        let mut y = self.value(x).as_standard_layout().into_owned();
        let cols = *y.shape().last().expect("at least one axis");
        let rows = y.len() / cols.max(1);
        if rows > 0 && cols > 0 {
            // Rows are independent: spread them over the kernel threads.
            let mut y2 = y
                .view_mut()
                .into_shape_with_order((rows, cols))
                .expect("standard layout");
            let pieces: Vec<_> = y2.axis_chunks_iter_mut(Axis(0), 64).collect();
            for_each_piece(pieces, |mut chunk| {
                for row in chunk.outer_iter_mut() {
                    if log {
                        log_softmax_inplace(row)
                    } else {
                        softmax_inplace(row)
                    }
                }
            });
        }
        Ok(self.push(name, y, &[x], Softmax { x, log }))
    }

    /// Softmax over the last axis.
    pub fn softmax(&mut self, x: Var) -> Result<Var> {
        self.softmax_op(x, false)
    }

    /// Log-softmax over the last axis.
    pub fn log_softmax(&mut self, x: Var) -> Result<Var> {
        self.softmax_op(x, true)
    }
}
