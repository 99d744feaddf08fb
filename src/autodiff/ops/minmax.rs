//! Piecewise-linear ops: the elementwise minimum of two tensors (broadcasting) and clamping to an
//! interval. PPO-style clipped objectives are made of them: GRPO's per-token
//! min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A) is a `clamp` and a `minimum`.
//!
//! Backward routes the gradient to the side that was taken:
//!
//! ```text
//! minimum(a, b):     dA = G·[a < b] + ½G·[a = b]     dB = G·[b < a] + ½G·[a = b]
//! clamp(x, lo, hi):  dX = G·[lo ≤ x ≤ hi]
//! ```
//!
//! (then summed over broadcast axes, as in `binary.rs`). The conventions at the kinks, where
//! neither function has a derivative, are PyTorch's: `torch.minimum` splits a tie evenly
//! (`grad / 2` where self == other, in its derivatives.yaml) and `torch.clamp` passes the
//! gradient at the bounds themselves (`clamp_backward` masks with `x >= min & x <= max`), so a
//! golden file written by PyTorch code sees the same subgradient. A NaN propagates through both
//! (as in PyTorch) and gets no gradient.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{broadcast_shape, fmt_shape, sum_to_shape, Float};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Zip};

struct Minimum {
    a: Var,
    b: Var,
}

impl<F: Float> Backward<F> for Minimum {
    // Which side was taken needs both values, whichever input needs the gradient.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::inputs([self.a, self.b])
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let (av, bv) = (ctx.value(self.a), ctx.value(self.b));
        let full = g.raw_dim();
        let av = av
            .broadcast(full.clone())
            .expect("output shape is the broadcast");
        let bv = bv.broadcast(full).expect("output shape is the broadcast");
        let half = F::of(0.5);
        // The share of G that goes to `x` when the other side is `y`.
        let share = |g: F, x: F, y: F| {
            if x < y {
                g
            } else if x == y {
                g * half
            } else {
                F::zero()
            }
        };
        for (v, mine, other) in [(self.a, &av, &bv), (self.b, &bv, &av)] {
            if !ctx.needs(v) {
                continue;
            }
            let mut gv = g.clone();
            Zip::from(&mut gv)
                .and(mine)
                .and(other)
                .for_each(|g, &x, &y| *g = share(*g, x, y));
            let s = ctx.shape(v);
            ctx.accumulate(v, sum_to_shape(gv.view(), s));
        }
    }
}

struct Clamp {
    x: Var,
    lo: f64,
    hi: f64,
}

impl<F: Float> Backward<F> for Clamp {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::inputs([self.x])
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let xv = ctx.value(self.x);
        let (lo, hi) = (F::of(self.lo), F::of(self.hi));
        let mut gx = g.clone();
        Zip::from(&mut gx).and(&xv).for_each(|g, &x| {
            if !(x >= lo && x <= hi) {
                *g = F::zero();
            }
        });
        ctx.accumulate(self.x, gx);
    }
}

impl<F: Float> Tape<'_, F> {
    /// The elementwise minimum of `a` and `b`, broadcasting (`torch.minimum`).
    pub fn minimum(&mut self, a: Var, b: Var) -> Result<Var> {
        let Some(shape) = broadcast_shape(self.shape(a), self.shape(b)) else {
            return shape_err(
                "minimum",
                format!(
                    "{} and {} do not broadcast",
                    fmt_shape(self.shape(a)),
                    fmt_shape(self.shape(b))
                ),
            );
        };
        let mut out = ArrayD::<F>::zeros(IxDyn(&shape));
        let (av, bv) = (self.value(a), self.value(b));
        Zip::from(&mut out)
            .and_broadcast(&av)
            .and_broadcast(&bv)
            .for_each(|o, &x, &y| {
                // NaN propagates, as in torch.minimum, so a diverging loss is seen as one.
                *o = if x.is_nan() || y.is_nan() {
                    F::nan()
                } else if y < x {
                    y
                } else {
                    x
                }
            });
        Ok(self.push("minimum", out, &[a, b], Minimum { a, b }))
    }

    /// `x` clamped to `[lo, hi]` elementwise (`torch.clamp(x, lo, hi)`); `lo ≤ hi`, both finite.
    pub fn clamp(&mut self, x: Var, lo: f64, hi: f64) -> Result<Var> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return invalid("clamp", format!("bounds [{lo}, {hi}]: need finite lo ≤ hi"));
        }
        let (flo, fhi) = (F::of(lo), F::of(hi));
        let y = self.value(x).mapv(|v| {
            if v < flo {
                flo
            } else if v > fhi {
                fhi
            } else {
                v
            }
        });
        Ok(self.push("clamp", y, &[x], Clamp { x, lo, hi }))
    }
}
