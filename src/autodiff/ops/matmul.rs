//! Matrix multiply, 2-D and batched: `y = op(a) · op(b)` where `op` optionally transposes the
//! last two axes. Transposes are strided views handed to the kernel, never copies.
//!
//! Shapes: a (..., M, K) — or (..., K, M) with `ta` — and b either (K, N) shared by every batch
//! entry (a Linear weight) or (..., K, N) with the same batch axes as a. Output (..., M, N).
//!
//! Backward, with G = dL/dy:  d op(a) = G · op(b)ᵀ,  d op(b) = op(a)ᵀ · G.
//! A shared 2-D b sums its gradient over the batch, as one large product when a is not
//! transposed (rows of a flattened to (B·T, K)). Both are accumulated in place (beta = 1), and
//! each is computed only if that input needs a gradient.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{shape_err, Result};
use crate::kernels::gemm;
use crate::tensor::{fmt_shape, Float};
use ndarray::{
    ArrayD, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMut2, Axis, CowArray, Ix2, Ix3, IxDyn,
};

struct MatMul {
    a: Var,
    b: Var,
    ta: bool,
    tb: bool,
}

/// Views `x` as (batch, rows, cols), copying only when its strides make that impossible.
fn as3<F: Float>(x: ArrayViewD<'_, F>, nb: usize) -> CowArray<'_, F, Ix3> {
    let nd = x.ndim();
    let (r, c) = (x.shape()[nd - 2], x.shape()[nd - 1]);
    if nd == 3 {
        CowArray::from(x.into_dimensionality::<Ix3>().expect("3-D"))
    } else if nd == 2 {
        CowArray::from(
            x.into_dimensionality::<Ix2>()
                .expect("2-D")
                .insert_axis(Axis(0)),
        )
    } else if x.is_standard_layout() {
        CowArray::from(
            x.into_shape_with_order((nb, r, c))
                .expect("element count checked by the caller"),
        )
    } else {
        CowArray::from(
            x.as_standard_layout()
                .into_owned()
                .into_shape_with_order((nb, r, c))
                .expect("element count"),
        )
    }
}

/// The 2-D matrices of one batch entry of a (possibly shared) operand.
fn entry<'a, F: Float>(x: &'a ArrayView3<'a, F>, shared: bool, i: usize) -> ArrayView2<'a, F> {
    x.index_axis(Axis(0), if shared { 0 } else { i })
}

fn op_view<F: Float>(x: ArrayView2<'_, F>, t: bool) -> ArrayView2<'_, F> {
    if t {
        x.reversed_axes()
    } else {
        x
    }
}

// ANCHOR: backward_2d
/// d op(a) += G · op(b)ᵀ, written into a's gradient (transposed back when `ta`).
fn grad_a<F: Float>(
    g: ArrayView2<F>,
    b: ArrayView2<F>,
    (ta, tb): (bool, bool),
    ga: ArrayViewMut2<F>,
) {
    let mut target = if ta { ga.reversed_axes() } else { ga };
    gemm(F::one(), g, op_view(b, tb).t(), F::one(), &mut target);
}

/// d op(b) += op(a)ᵀ · G, written into b's gradient (transposed back when `tb`).
fn grad_b<F: Float>(
    a: ArrayView2<F>,
    g: ArrayView2<F>,
    (ta, tb): (bool, bool),
    gb: ArrayViewMut2<F>,
) {
    let mut target = if tb { gb.reversed_axes() } else { gb };
    gemm(F::one(), op_view(a, ta).t(), g, F::one(), &mut target);
}
// ANCHOR_END: backward_2d

impl<F: Float> Backward<F> for MatMul {
    // ANCHOR: saves
    // d op(a) needs b and d op(b) needs a: a frozen weight keeps nothing of its input.
    fn saves(&self, needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
            .with_if(needs(self.b), self.a)
            .with_if(needs(self.a), self.b)
    }
    // ANCHOR_END: saves

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let (sa, sb) = (ctx.shape(self.a), ctx.shape(self.b));
        let nd = sa.len();
        let batch: usize = sa[..nd - 2].iter().product();
        let shared = sb.len() == 2;
        let (m, n) = (g.shape()[nd - 2], g.shape()[nd - 1]);
        let t = (self.ta, self.tb);
        if shared && !self.ta {
            // One product over all rows: a (B·T, K), G (B·T, N).
            let k = sa[nd - 1];
            let g2 = g
                .view()
                .into_shape_with_order((batch * m, n))
                .expect("gradient is contiguous");
            if ctx.needs(self.a) {
                let b2 = ctx.value(self.b).into_dimensionality().expect("2-D");
                let ga = ctx
                    .grad_mut(self.a)
                    .view_mut()
                    .into_shape_with_order((batch * m, k))
                    .expect("contiguous");
                grad_a(g2, b2, t, ga);
            }
            if ctx.needs(self.b) {
                let av = ctx.value(self.a);
                let a2 = av.to_shape((batch * m, k)).expect("checked in forward");
                let gb = ctx
                    .grad_mut(self.b)
                    .view_mut()
                    .into_dimensionality()
                    .expect("2-D");
                grad_b(a2.view(), g2, t, gb);
            }
            return;
        }
        let g3 = g
            .view()
            .into_shape_with_order((batch, m, n))
            .expect("gradient is contiguous");
        if ctx.needs(self.a) {
            let b3 = as3(ctx.value(self.b), if shared { 1 } else { batch });
            let b3v = b3.view();
            let ga = ctx.grad_mut(self.a);
            let mut ga3 = ga
                .view_mut()
                .into_shape_with_order((batch, sa[nd - 2], sa[nd - 1]))
                .expect("contiguous");
            for i in 0..batch {
                let gi = ga3.index_axis_mut(Axis(0), i);
                grad_a(g3.index_axis(Axis(0), i), entry(&b3v, shared, i), t, gi);
            }
        }
        if ctx.needs(self.b) {
            let a3 = as3(ctx.value(self.a), batch);
            let a3v = a3.view();
            let r = sb.len();
            let gb = ctx.grad_mut(self.b);
            let mut gb3 = gb
                .view_mut()
                .into_shape_with_order((if shared { 1 } else { batch }, sb[r - 2], sb[r - 1]))
                .expect("contiguous");
            for i in 0..batch {
                let gi = gb3.index_axis_mut(Axis(0), if shared { 0 } else { i });
                grad_b(entry(&a3v, false, i), g3.index_axis(Axis(0), i), t, gi);
            }
        }
    }
}

impl<F: Float> Tape<'_, F> {
    /// `a · b` over the last two axes (see the module docs for shapes).
    pub fn matmul(&mut self, a: Var, b: Var) -> Result<Var> {
        self.matmul_t(a, b, false, false)
    }

    /// `op(a) · op(b)`, where `ta` / `tb` transpose the last two axes of `a` / `b` as views.
    pub fn matmul_t(&mut self, a: Var, b: Var, ta: bool, tb: bool) -> Result<Var> {
        let (sa, sb) = (self.shape(a).to_vec(), self.shape(b).to_vec());
        let bad = || {
            shape_err(
                "matmul",
                format!(
                    "a {} (ta={ta}) and b {} (tb={tb})",
                    fmt_shape(&sa),
                    fmt_shape(&sb)
                ),
            )
        };
        if sa.len() < 2 || sb.len() < 2 {
            return bad();
        }
        let nd = sa.len();
        let (m, ka) = if ta {
            (sa[nd - 1], sa[nd - 2])
        } else {
            (sa[nd - 2], sa[nd - 1])
        };
        let rb = sb.len();
        let (kb, n) = if tb {
            (sb[rb - 1], sb[rb - 2])
        } else {
            (sb[rb - 2], sb[rb - 1])
        };
        let shared = rb == 2;
        if ka != kb || (!shared && sb[..rb - 2] != sa[..nd - 2]) {
            return bad();
        }
        let batch: usize = sa[..nd - 2].iter().product();
        let mut out_shape = sa[..nd - 2].to_vec();
        out_shape.extend([m, n]);
        let mut out = ArrayD::<F>::zeros(IxDyn(&out_shape));
        {
            let (av, bv) = (self.value(a), self.value(b));
            if shared && !ta {
                let a2 = av.to_shape((batch * m, ka)).expect("element count matches");
                let b2: ArrayView2<F> = bv.into_dimensionality().expect("2-D");
                let mut o2 = out
                    .view_mut()
                    .into_shape_with_order((batch * m, n))
                    .expect("contiguous");
                gemm(F::one(), a2.view(), op_view(b2, tb), F::zero(), &mut o2);
            } else {
                let a3 = as3(av, batch);
                let b3 = as3(bv, if shared { 1 } else { batch });
                let (a3v, b3v) = (a3.view(), b3.view());
                let mut o3 = out
                    .view_mut()
                    .into_shape_with_order((batch, m, n))
                    .expect("contiguous");
                for i in 0..batch {
                    let mut oi = o3.index_axis_mut(Axis(0), i);
                    gemm(
                        F::one(),
                        op_view(entry(&a3v, false, i), ta),
                        op_view(entry(&b3v, shared, i), tb),
                        F::zero(),
                        &mut oi,
                    );
                }
            }
        }
        Ok(self.push("matmul", out, &[a, b], MatMul { a, b, ta, tb }))
    }
}
