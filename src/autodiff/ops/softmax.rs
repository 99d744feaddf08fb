//! Softmax and log-softmax over the last axis, fused and numerically stable (the row max is
//! subtracted before exponentiating).
//!
//! Backward, per row with output y and gradient g:
//!   softmax:      dx = y ⊙ (g − Σ g⊙y)
//!   log-softmax:  dx = g − softmax(x) · Σ g

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{shape_err, Result};
use crate::kernels::for_each_piece;
use crate::tensor::Float;
use ndarray::{ArrayD, ArrayViewD, ArrayViewMut1, Axis, Zip};

/// Replaces a row by its softmax. A row that is all −∞ (fully masked) becomes all zeros.
pub(crate) fn softmax_inplace<F: Float>(mut row: ArrayViewMut1<'_, F>) {
    let max = row.fold(F::neg_infinity(), |m, &v| m.max(v));
    if max == F::neg_infinity() {
        row.fill(F::zero());
        return;
    }
    let mut sum = F::zero();
    row.mapv_inplace(|v| {
        let e = (v - max).exp();
        sum += e;
        e
    });
    let inv = F::one() / sum;
    row.mapv_inplace(|v| v * inv);
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
        let last = Axis(g.ndim() - 1);
        let mut dx = g.clone();
        Zip::from(dx.lanes_mut(last))
            .and(y.lanes(last))
            .for_each(|mut d, y| {
                if self.log {
                    let gsum = d.sum();
                    Zip::from(&mut d)
                        .and(&y)
                        .for_each(|d, &y| *d -= y.exp() * gsum);
                } else {
                    let dot = Zip::from(&d).and(&y).fold(F::zero(), |s, &d, &y| s + d * y);
                    Zip::from(&mut d)
                        .and(&y)
                        .for_each(|d, &y| *d = y * (*d - dot));
                }
            });
        ctx.accumulate(self.x, dx);
    }
}
// ANCHOR_END: backward

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
