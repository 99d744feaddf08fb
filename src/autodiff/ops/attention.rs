//! Scaled dot-product attention, fused, with causal, key-padding and document masks.
//!
//! Shapes: q (B, NH, T, HS), k and v (B, NH, S, HS), output (B, NH, T, HS). S may exceed T
//! (prefix tuning prepends S − T learned keys): with the causal mask, query t sees keys
//! 0..=t + (S − T), so every query sees the whole prefix and no future token.
//!
//! Forward per (b, h): A = softmax(mask(q kᵀ / √HS)), y = A v. The probabilities A
//! (B, NH, T, S) are the cache. A query whose keys are all masked (a padding row) gets A = 0.
//!
//! **Documents** (packing): several short examples concatenated into one row of length T each
//! carry a document id; a query then sees only keys of its own document, so with the causal mask
//! the mask is block-diagonal and causal within each block. A masked score is −∞, so its
//! probability is 0, and backward (which reads only A) sends it no gradient: each document's
//! outputs and gradients are those of the document alone (its positions restart at 0 too: that is
//! the caller's [`crate::nn::Input::with_positions`]).
//!
//! Backward per (b, h), with G = dL/dy:
//!   dA = G vᵀ,  dv += Aᵀ G,  dS = A ⊙ (dA − rowsum(dA ⊙ A)),
//!   dq += dS k / √HS,  dk += dSᵀ q / √HS
//!
//! Every (b, h) is independent, so both passes spread them over the kernel threads.

use super::softmax::softmax_slice;
use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::kernels::{fastmath, for_each_piece, gemm};
use crate::tensor::{fmt_shape, Float};
use ndarray::{
    s, Array2, Array4, ArrayD, ArrayView2, ArrayView4, ArrayViewD, ArrayViewMut2, ArrayViewMut4,
    Axis, Ix4,
};

/// The document id of a key every query sees (prefix tuning's learned keys in a packed row).
pub const SHARED_DOCUMENT: usize = usize::MAX;

/// Which keys each query may attend to.
#[derive(Debug, Clone, Default)]
pub struct AttnMask {
    /// Query t sees keys up to t + (S − T) only.
    pub causal: bool,
    /// (B, S): `true` for real keys, `false` for padding. `None`: every key is real.
    pub key_padding: Option<Array2<bool>>,
    /// (B, S): the document each key belongs to, for packed rows. Query t (key position
    /// t + S − T) sees only keys of its own document and keys marked [`SHARED_DOCUMENT`].
    /// `None`: one document per row.
    pub documents: Option<Array2<usize>>,
}

impl AttnMask {
    pub fn causal() -> Self {
        Self {
            causal: true,
            ..Self::default()
        }
    }

    pub fn bidirectional() -> Self {
        Self::default()
    }

    pub fn with_padding(mut self, key_padding: Array2<bool>) -> Self {
        self.key_padding = Some(key_padding);
        self
    }

    /// Queries see only keys of their own document (see the module docs).
    pub fn with_documents(mut self, documents: Array2<usize>) -> Self {
        self.documents = Some(documents);
        self
    }
}

struct Attention<F: Float> {
    q: Var,
    k: Var,
    v: Var,
    probs: Array4<F>,
    scale: F,
}

/// A (B, NH, rows, cols) value as a 4-D view (checked 4-D by the caller).
pub(crate) fn view4<'a, F: Float>(x: ArrayViewD<'a, F>) -> ArrayView4<'a, F> {
    x.into_dimensionality::<Ix4>().expect("checked in forward")
}

/// One 2-D (rows, cols) matrix per (b, h) of a (B, NH, rows, cols) array, with its (b, h):
/// the independent pieces that attention spreads over threads.
fn heads_mut<F: Float>(x: ArrayViewMut4<'_, F>) -> Vec<(usize, usize, ArrayViewMut2<'_, F>)> {
    let mut out = Vec::new();
    for (b, xb) in x.into_outer_iter_mut().enumerate() {
        for (h, xbh) in xb.into_outer_iter_mut().enumerate() {
            out.push((b, h, xbh));
        }
    }
    out
}

/// The (rows, cols) matrix of head h of batch entry b.
fn head<'a, F: Float>(x: &ArrayView4<'a, F>, b: usize, h: usize) -> ArrayView2<'a, F> {
    (*x).slice_move(s![b, h, .., ..])
}

fn grad4<'a, F: Float>(ctx: &'a mut BackwardCtx<'_, '_, F>, x: Var) -> ArrayViewMut4<'a, F> {
    ctx.grad_mut(x)
        .view_mut()
        .into_dimensionality::<Ix4>()
        .expect("4-D")
}

impl<F: Float> Backward<F> for Attention<F> {
    // dA = G vᵀ (for dq, dk) needs v; dq needs k; dk needs q; dv needs only A and G.
    fn saves(&self, needs: &dyn Fn(Var) -> bool) -> Saves {
        let (nq, nk) = (needs(self.q), needs(self.k));
        Saves::nothing()
            .with_if(nk, self.q)
            .with_if(nq, self.k)
            .with_if(nq || nk, self.v)
    }

    fn saved_bytes(&self) -> usize {
        self.probs.len() * std::mem::size_of::<F>()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let g = view4(g.view());
        let probs = &self.probs;
        let g = &g;
        if ctx.needs(self.v) {
            for_each_piece(heads_mut(grad4(ctx, self.v)), |(b, h, mut out)| {
                let a = probs.slice(s![b, h, .., ..]);
                gemm(F::one(), a.t(), head(g, b, h), F::one(), &mut out);
            });
        }
        let (nq, nk) = (ctx.needs(self.q), ctx.needs(self.k));
        if !(nq || nk) {
            return;
        }
        let v = view4(ctx.value(self.v));
        let v = &v;
        // ANCHOR: scores_backward
        // dS for every (b, h): the gradient of the pre-softmax scores.
        let mut ds = Array4::<F>::zeros(probs.raw_dim());
        for_each_piece(heads_mut(ds.view_mut()), |(b, h, mut d)| {
            let a = probs.slice(s![b, h, .., ..]);
            gemm(
                F::one(),
                head(g, b, h),
                head(v, b, h).t(),
                F::zero(),
                &mut d,
            );
            for (mut dr, ar) in d.rows_mut().into_iter().zip(a.rows()) {
                let (dr, ar) = (
                    dr.as_slice_mut().expect("a fresh (T, S) matrix"),
                    ar.as_slice().expect("a fresh (B, NH, T, S) array"),
                );
                let dot = fastmath::dot(dr, ar);
                for (x, &y) in dr.iter_mut().zip(ar) {
                    *x = y * (*x - dot);
                }
            }
        });
        // ANCHOR_END: scores_backward
        let ds = &ds;
        if nq {
            let k = view4(ctx.value(self.k));
            let k = &k;
            for_each_piece(heads_mut(grad4(ctx, self.q)), |(b, h, mut out)| {
                let d = ds.slice(s![b, h, .., ..]);
                gemm(self.scale, d, head(k, b, h), F::one(), &mut out);
            });
        }
        if nk {
            let q = view4(ctx.value(self.q));
            let q = &q;
            for_each_piece(heads_mut(grad4(ctx, self.k)), |(b, h, mut out)| {
                let d = ds.slice(s![b, h, .., ..]);
                gemm(self.scale, d.t(), head(q, b, h), F::one(), &mut out);
            });
        }
    }
}

// ANCHOR: backward_reference
/// Attention's backward for one head, written plainly with loops: q (T, HS), k and v (S, HS),
/// the output's gradient g (T, HS), causal or not (query t sees keys up to t + S − T). Returns
/// (dq, dk, dv). It recomputes A = softmax(q kᵀ / √HS) with the mask, then
/// dA = G vᵀ, dv = Aᵀ G, dS = A ⊙ (dA − rowsum(dA ⊙ A)), dq = dS k / √HS, dk = dSᵀ q / √HS.
/// The op's backward above computes the same from the cached A with one matrix product per
/// step, every (batch, head) on the kernel threads; a test checks that the two agree.
pub fn attention_backward_reference<F: Float>(
    q: ArrayView2<'_, F>,
    k: ArrayView2<'_, F>,
    v: ArrayView2<'_, F>,
    g: ArrayView2<'_, F>,
    causal: bool,
) -> (Array2<F>, Array2<F>, Array2<F>) {
    let (t_len, hs) = q.dim();
    let s_len = k.nrows();
    let scale = F::one() / F::of(hs as f64).sqrt();
    let visible = |t: usize, s: usize| !causal || s <= t + (s_len - t_len);
    // A: the attention probabilities, row by row.
    let mut a = Array2::<F>::zeros((t_len, s_len));
    for t in 0..t_len {
        let score =
            |s: usize| (0..hs).fold(F::zero(), |acc, d| acc + q[[t, d]] * k[[s, d]]) * scale;
        let max = (0..s_len)
            .filter(|&s| visible(t, s))
            .fold(F::neg_infinity(), |m, s| m.max(score(s)));
        let sum = (0..s_len)
            .filter(|&s| visible(t, s))
            .fold(F::zero(), |acc, s| acc + (score(s) - max).exp());
        for s in (0..s_len).filter(|&s| visible(t, s)) {
            a[[t, s]] = (score(s) - max).exp() / sum;
        }
    }
    // dA = G vᵀ and dv = Aᵀ G.
    let da = Array2::from_shape_fn((t_len, s_len), |(t, s)| {
        (0..hs).fold(F::zero(), |acc, d| acc + g[[t, d]] * v[[s, d]])
    });
    let dv = Array2::from_shape_fn((s_len, hs), |(s, d)| {
        (0..t_len).fold(F::zero(), |acc, t| acc + a[[t, s]] * g[[t, d]])
    });
    // dS = A ⊙ (dA − rowsum(dA ⊙ A)): the softmax's backward, row by row.
    let mut ds = Array2::<F>::zeros((t_len, s_len));
    for t in 0..t_len {
        let dot = (0..s_len).fold(F::zero(), |acc, s| acc + da[[t, s]] * a[[t, s]]);
        for s in 0..s_len {
            ds[[t, s]] = a[[t, s]] * (da[[t, s]] - dot);
        }
    }
    // Through S = q kᵀ · scale.
    let dq = Array2::from_shape_fn((t_len, hs), |(t, d)| {
        (0..s_len).fold(F::zero(), |acc, s| acc + ds[[t, s]] * k[[s, d]]) * scale
    });
    let dk = Array2::from_shape_fn((s_len, hs), |(s, d)| {
        (0..t_len).fold(F::zero(), |acc, t| acc + ds[[t, s]] * q[[t, d]]) * scale
    });
    (dq, dk, dv)
}
// ANCHOR_END: backward_reference

/// Checks q (B, NH, T, HS), k and v (B, NH, S, HS) and the mask against each other.
fn check_shapes(qs: &[usize], ks: &[usize], vs: &[usize], mask: &AttnMask) -> Result<()> {
    if qs.len() != 4
        || ks.len() != 4
        || ks != vs
        || qs[0] != ks[0]
        || qs[1] != ks[1]
        || qs[3] != ks[3]
    {
        return shape_err(
            "attention",
            format!(
                "q {}, k {}, v {}",
                fmt_shape(qs),
                fmt_shape(ks),
                fmt_shape(vs)
            ),
        );
    }
    let (b_, t, s_) = (qs[0], qs[2], ks[2]);
    if mask.causal && s_ < t {
        return shape_err(
            "attention",
            format!("causal attention needs at least as many keys ({s_}) as queries ({t})"),
        );
    }
    if let Some(m) = &mask.key_padding {
        if m.dim() != (b_, s_) {
            return shape_err(
                "attention",
                format!("key padding mask is {:?}, expected ({b_}, {s_})", m.dim()),
            );
        }
    }
    if let Some(d) = &mask.documents {
        if d.dim() != (b_, s_) {
            return shape_err(
                "attention",
                format!("document ids are {:?}, expected ({b_}, {s_})", d.dim()),
            );
        }
    }
    Ok(())
}

/// The forward pass on checked values: the probabilities A (B, NH, T, S) and y = A v
/// (B, NH, T, HS).
fn forward<F: Float>(
    qv: &ArrayView4<'_, F>,
    kv: &ArrayView4<'_, F>,
    vv: &ArrayView4<'_, F>,
    mask: &AttnMask,
    scale: F,
) -> (Array4<F>, Array4<F>) {
    let (b_, nh, t, hs) = qv.dim();
    let s_ = kv.dim().2;
    let offset = s_ - t.min(s_);
    let mut probs = Array4::<F>::zeros((b_, nh, t, s_));
    let mut y = Array4::<F>::zeros((b_, nh, t, hs));
    let pieces: Vec<_> = heads_mut(probs.view_mut())
        .into_iter()
        .zip(heads_mut(y.view_mut()))
        .map(|((b, h, a), (_, _, out))| (b, h, a, out))
        .collect();
    for_each_piece(pieces, |(b, h, mut a, mut out)| {
        gemm(scale, head(qv, b, h), head(kv, b, h).t(), F::zero(), &mut a);
        let padding = mask.key_padding.as_ref().map(|m| m.row(b));
        let documents = mask.documents.as_ref().map(|d| d.row(b));
        for (ti, mut row) in a.axis_iter_mut(Axis(0)).enumerate() {
            let row = row.as_slice_mut().expect("a fresh (T, S) matrix");
            // Keys past the causal limit get probability 0 without an exp; padded keys before
            // it are −∞ scores.
            let seen = if mask.causal {
                (ti + offset + 1).min(s_)
            } else {
                s_
            };
            let (visible, future) = row.split_at_mut(seen);
            if let Some(p) = &padding {
                for (x, &real) in visible.iter_mut().zip(p.iter()) {
                    if !real {
                        *x = F::neg_infinity();
                    }
                }
            }
            if let Some(d) = &documents {
                let own = d[(ti + offset).min(s_ - 1)];
                for (x, &doc) in visible.iter_mut().zip(d.iter()) {
                    if doc != own && doc != SHARED_DOCUMENT {
                        *x = F::neg_infinity();
                    }
                }
            }
            softmax_slice(visible);
            future.fill(F::zero());
        }
        gemm(F::one(), a.view(), head(vv, b, h), F::zero(), &mut out);
    });
    (probs, y)
}

impl<F: Float> Tape<'_, F> {
    /// softmax(mask(q kᵀ / √HS)) v; see the module docs for shapes and masks.
    pub fn attention(&mut self, q: Var, k: Var, v: Var, mask: &AttnMask) -> Result<Var> {
        check_shapes(self.shape(q), self.shape(k), self.shape(v), mask)?;
        let scale = F::one() / F::of(self.shape(q)[3] as f64).sqrt();
        let (probs, y) = forward(
            &view4(self.value(q)),
            &view4(self.value(k)),
            &view4(self.value(v)),
            mask,
            scale,
        );
        // Without a gradient to compute, the probabilities are not kept.
        let probs = match self.records(&[q, k, v]) {
            true => probs,
            false => Array4::zeros((0, 0, 0, 0)),
        };
        Ok(self.push(
            "attention",
            y.into_dyn(),
            &[q, k, v],
            Attention {
                q,
                k,
                v,
                probs,
                scale,
            },
        ))
    }

    /// [`Tape::attention`] of q over keys and values that are not on the tape (a key/value
    /// cache's, read in place): the same numbers, for inference only, since nothing is recorded
    /// and no gradient could reach the keys and values.
    pub fn attention_over(
        &mut self,
        q: Var,
        k: ArrayView4<'_, F>,
        v: ArrayView4<'_, F>,
        mask: &AttnMask,
    ) -> Result<Var> {
        if self.records(&[q]) {
            return invalid(
                "attention",
                "attention over keys and values off the tape records no gradient: use it on a \
                 tape without gradients (inference)",
            );
        }
        check_shapes(self.shape(q), k.shape(), v.shape(), mask)?;
        let scale = F::one() / F::of(self.shape(q)[3] as f64).sqrt();
        let (_, y) = forward(&view4(self.value(q)), &k, &v, mask, scale);
        Ok(self.constant(y.into_dyn()))
    }
}
