//! Elementwise add, sub, mul, div with numpy broadcasting (a bias add is `add(x, b)` with
//! x (B, T, C) and b (C)).
//!
//! Backward: the output gradient G is mapped to each input, then summed over the axes that input
//! was broadcast along (`sum_to_shape`).
//!   add: dA = G, dB = G      sub: dA = G, dB = -G
//!   mul: dA = G·B, dB = G·A  div: dA = G / B, dB = -G·A / B²

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{shape_err, Result};
use crate::tensor::{broadcast_shape, fmt_shape, sum_to_shape, Float};
use ndarray::{ArrayD, ArrayViewD};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Add,
    Sub,
    Mul,
    Div,
}

struct Binary {
    kind: Kind,
    a: Var,
    b: Var,
}

impl<F: Float> Backward<F> for Binary {
    // a ± b needs only the shapes; a·b needs each factor for the other's gradient; a / b needs
    // b for both and a for b's.
    fn saves(&self, needs: &dyn Fn(Var) -> bool) -> Saves {
        let (na, nb) = (needs(self.a), needs(self.b));
        match self.kind {
            Kind::Add | Kind::Sub => Saves::nothing(),
            Kind::Mul => Saves::nothing().with_if(nb, self.a).with_if(na, self.b),
            Kind::Div => Saves::nothing()
                .with_if(nb, self.a)
                .with_if(na || nb, self.b),
        }
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let (sa, sb) = (ctx.shape(self.a), ctx.shape(self.b));
        match self.kind {
            Kind::Add => {
                pass_through(ctx, self.a, g);
                pass_through(ctx, self.b, g);
            }
            Kind::Sub => {
                pass_through(ctx, self.a, g);
                if ctx.needs(self.b) {
                    ctx.accumulate(self.b, sum_to_shape(g.view(), sb).mapv_into(|x| -x));
                }
            }
            Kind::Mul => {
                if ctx.needs(self.a) {
                    let bv = ctx.value(self.b);
                    ctx.accumulate(self.a, sum_to_shape((g * &bv).view(), sa));
                }
                if ctx.needs(self.b) {
                    let av = ctx.value(self.a);
                    ctx.accumulate(self.b, sum_to_shape((g * &av).view(), sb));
                }
            }
            Kind::Div => {
                let bv = ctx.value(self.b);
                if ctx.needs(self.a) {
                    ctx.accumulate(self.a, sum_to_shape((g / &bv).view(), sa));
                }
                if ctx.needs(self.b) {
                    let t = (g * &ctx.value(self.a)) / &bv.mapv(|x| x * x);
                    ctx.accumulate(self.b, sum_to_shape(t.view(), sb).mapv_into(|x| -x));
                }
            }
        }
    }
}

/// dX += G, summed over the axes X was broadcast along. The residual adds have no broadcast: there
/// the gradient passes through without a copy.
fn pass_through<F: Float>(ctx: &mut BackwardCtx<'_, '_, F>, x: Var, g: &ArrayD<F>) {
    if !ctx.needs(x) {
        return;
    }
    let xs = ctx.shape(x);
    if xs == g.shape() {
        ctx.accumulate_view(x, g.view());
    } else {
        ctx.accumulate(x, sum_to_shape(g.view(), xs));
    }
}

/// `op(a, b)` over slices for the two shapes the models use, without ndarray's general
/// broadcasting: equal shapes (residual adds) and `b` one row broadcast over the rows of `a`
/// (a bias (C) or a scale (1, 1, C) over (B, T, C)). `None` for anything else, or strided
/// inputs, which take the general path; both give the same values.
fn fast<F: Float>(
    a: ArrayViewD<'_, F>,
    b: ArrayViewD<'_, F>,
    op: impl Fn(F, F) -> F,
) -> Option<ArrayD<F>> {
    let (xs, ys) = (a.as_slice()?, b.as_slice()?);
    let c = *a.shape().last()?;
    let out = if a.shape() == b.shape() {
        xs.iter().zip(ys).map(|(&x, &y)| op(x, y)).collect()
    } else if is_row_of(b.shape(), a.shape()) && c > 0 {
        let mut out = vec![F::zero(); xs.len()];
        for (o, x) in out.chunks_exact_mut(c).zip(xs.chunks_exact(c)) {
            for ((o, &x), &y) in o.iter_mut().zip(x).zip(ys) {
                *o = op(x, y);
            }
        }
        out
    } else {
        return None;
    };
    Some(ArrayD::from_shape_vec(a.raw_dim(), out).expect("shape of a"))
}

/// Whether `row` is (..., 1, C) broadcast over `full` (..., C): its last axis matches and every
/// other axis is 1 (or missing).
fn is_row_of(row: &[usize], full: &[usize]) -> bool {
    match (row.split_last(), full.last()) {
        (Some((&c, rest)), Some(&fc)) => {
            c == fc && row.len() <= full.len() && rest.iter().all(|&d| d == 1)
        }
        _ => false,
    }
}

impl<F: Float> Tape<'_, F> {
    fn binary(&mut self, kind: Kind, a: Var, b: Var) -> Result<Var> {
        let name = match kind {
            Kind::Add => "add",
            Kind::Sub => "sub",
            Kind::Mul => "mul",
            Kind::Div => "div",
        };
        if broadcast_shape(self.shape(a), self.shape(b)).is_none() {
            return shape_err(
                name,
                format!(
                    "{} and {} do not broadcast",
                    fmt_shape(self.shape(a)),
                    fmt_shape(self.shape(b))
                ),
            );
        }
        let (av, bv) = (self.value(a), self.value(b));
        let out = match kind {
            Kind::Add => fast(av.view(), bv.view(), |x, y| x + y).unwrap_or_else(|| &av + &bv),
            Kind::Sub => fast(av.view(), bv.view(), |x, y| x - y).unwrap_or_else(|| &av - &bv),
            Kind::Mul => fast(av.view(), bv.view(), |x, y| x * y).unwrap_or_else(|| &av * &bv),
            Kind::Div => fast(av.view(), bv.view(), |x, y| x / y).unwrap_or_else(|| &av / &bv),
        };
        Ok(self.push(name, out, &[a, b], Binary { kind, a, b }))
    }

    /// `a + b`, broadcasting.
    pub fn add(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(Kind::Add, a, b)
    }

    /// `a - b`, broadcasting.
    pub fn sub(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(Kind::Sub, a, b)
    }

    /// `a * b` elementwise, broadcasting.
    pub fn mul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(Kind::Mul, a, b)
    }

    /// `a / b` elementwise, broadcasting.
    pub fn div(&mut self, a: Var, b: Var) -> Result<Var> {
        self.binary(Kind::Div, a, b)
    }
}
