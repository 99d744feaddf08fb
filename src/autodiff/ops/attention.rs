//! Scaled dot-product attention, fused, with causal and key-padding masks.
//!
//! Shapes: q (B, NH, T, HS), k and v (B, NH, S, HS), output (B, NH, T, HS). S may exceed T
//! (prefix tuning prepends S − T learned keys): with the causal mask, query t sees keys
//! 0..=t + (S − T), so every query sees the whole prefix and no future token.
//!
//! Forward per (b, h): A = softmax(mask(q kᵀ / √HS)), y = A v. The probabilities A
//! (B, NH, T, S) are the cache. A query whose keys are all masked (a padding row) gets A = 0.
//!
//! Backward per (b, h), with G = dL/dy:
//!   dA = G vᵀ,  dv += Aᵀ G,  dS = A ⊙ (dA − rowsum(dA ⊙ A)),
//!   dq += dS k / √HS,  dk += dSᵀ q / √HS

use super::softmax::softmax_inplace;
use crate::autodiff::tape::{Backward, BackwardCtx, Tape, Var};
use crate::error::{shape_err, Result};
use crate::kernels::gemm;
use crate::tensor::{fmt_shape, Float};
use ndarray::{s, Array2, Array4, ArrayD, ArrayView4, ArrayViewD, Axis, Ix4, Zip};

/// Which keys each query may attend to.
#[derive(Debug, Clone, Default)]
pub struct AttnMask {
    /// Query t sees keys up to t + (S − T) only.
    pub causal: bool,
    /// (B, S): `true` for real keys, `false` for padding. `None`: every key is real.
    pub key_padding: Option<Array2<bool>>,
}

impl AttnMask {
    pub fn causal() -> Self {
        Self {
            causal: true,
            key_padding: None,
        }
    }

    pub fn bidirectional() -> Self {
        Self::default()
    }

    pub fn with_padding(mut self, key_padding: Array2<bool>) -> Self {
        self.key_padding = Some(key_padding);
        self
    }

    fn allows(&self, b: usize, t: usize, j: usize, offset: usize) -> bool {
        !(self.causal && j > t + offset) && self.key_padding.as_ref().is_none_or(|m| m[[b, j]])
    }
}

struct Attention<F: Float> {
    q: Var,
    k: Var,
    v: Var,
    probs: Array4<F>,
    scale: F,
}

fn view4<'a, F: Float>(x: ArrayViewD<'a, F>) -> ArrayView4<'a, F> {
    x.into_dimensionality::<Ix4>().expect("checked in forward")
}

impl<F: Float> Backward<F> for Attention<F> {
    fn saved_bytes(&self) -> usize {
        self.probs.len() * std::mem::size_of::<F>()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let (q, k, v) = (
            view4(ctx.value(self.q)),
            view4(ctx.value(self.k)),
            view4(ctx.value(self.v)),
        );
        let g = view4(g.view());
        let (b_, nh, t, s_) = self.probs.dim();
        // ANCHOR: scores_backward
        // dS for every (b, h): the gradient of the pre-softmax scores.
        let mut ds = Array4::<F>::zeros((b_, nh, t, s_));
        for b in 0..b_ {
            for h in 0..nh {
                let a = self.probs.slice(s![b, h, .., ..]);
                let mut d = ds.slice_mut(s![b, h, .., ..]);
                gemm(
                    F::one(),
                    g.slice(s![b, h, .., ..]),
                    v.slice(s![b, h, .., ..]).t(),
                    F::zero(),
                    &mut d,
                );
                Zip::from(d.rows_mut())
                    .and(a.rows())
                    .for_each(|mut dr, ar| {
                        let dot = Zip::from(&dr)
                            .and(&ar)
                            .fold(F::zero(), |acc, &x, &y| acc + x * y);
                        Zip::from(&mut dr)
                            .and(&ar)
                            .for_each(|x, &y| *x = y * (*x - dot));
                    });
            }
        }
        // ANCHOR_END: scores_backward
        if ctx.needs(self.v) {
            let mut gv = ctx
                .grad_mut(self.v)
                .view_mut()
                .into_dimensionality::<Ix4>()
                .expect("4-D");
            for b in 0..b_ {
                for h in 0..nh {
                    let mut out = gv.slice_mut(s![b, h, .., ..]);
                    gemm(
                        F::one(),
                        self.probs.slice(s![b, h, .., ..]).t(),
                        g.slice(s![b, h, .., ..]),
                        F::one(),
                        &mut out,
                    );
                }
            }
        }
        if ctx.needs(self.q) {
            let mut gq = ctx
                .grad_mut(self.q)
                .view_mut()
                .into_dimensionality::<Ix4>()
                .expect("4-D");
            for b in 0..b_ {
                for h in 0..nh {
                    let mut out = gq.slice_mut(s![b, h, .., ..]);
                    gemm(
                        self.scale,
                        ds.slice(s![b, h, .., ..]),
                        k.slice(s![b, h, .., ..]),
                        F::one(),
                        &mut out,
                    );
                }
            }
        }
        if ctx.needs(self.k) {
            let mut gk = ctx
                .grad_mut(self.k)
                .view_mut()
                .into_dimensionality::<Ix4>()
                .expect("4-D");
            for b in 0..b_ {
                for h in 0..nh {
                    let mut out = gk.slice_mut(s![b, h, .., ..]);
                    gemm(
                        self.scale,
                        ds.slice(s![b, h, .., ..]).t(),
                        q.slice(s![b, h, .., ..]),
                        F::one(),
                        &mut out,
                    );
                }
            }
        }
    }
}

impl<F: Float> Tape<'_, F> {
    /// softmax(mask(q kᵀ / √HS)) v; see the module docs for shapes and masks.
    pub fn attention(&mut self, q: Var, k: Var, v: Var, mask: &AttnMask) -> Result<Var> {
        let (qs, ks, vs) = (
            self.shape(q).to_vec(),
            self.shape(k).to_vec(),
            self.shape(v).to_vec(),
        );
        let bad = || {
            shape_err(
                "attention",
                format!(
                    "q {}, k {}, v {}",
                    fmt_shape(&qs),
                    fmt_shape(&ks),
                    fmt_shape(&vs)
                ),
            )
        };
        if qs.len() != 4
            || ks.len() != 4
            || ks != vs
            || qs[0] != ks[0]
            || qs[1] != ks[1]
            || qs[3] != ks[3]
        {
            return bad();
        }
        let (b_, nh, t, hs) = (qs[0], qs[1], qs[2], qs[3]);
        let s_ = ks[2];
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
        let scale = F::one() / F::of(hs as f64).sqrt();
        let offset = s_ - t.min(s_);
        let mut probs = Array4::<F>::zeros((b_, nh, t, s_));
        let mut y = Array4::<F>::zeros((b_, nh, t, hs));
        {
            let (qv, kv, vv) = (
                view4(self.value(q)),
                view4(self.value(k)),
                view4(self.value(v)),
            );
            for b in 0..b_ {
                for h in 0..nh {
                    let mut a = probs.slice_mut(s![b, h, .., ..]);
                    gemm(
                        scale,
                        qv.slice(s![b, h, .., ..]),
                        kv.slice(s![b, h, .., ..]).t(),
                        F::zero(),
                        &mut a,
                    );
                    for (ti, mut row) in a.axis_iter_mut(Axis(0)).enumerate() {
                        for (j, x) in row.iter_mut().enumerate() {
                            if !mask.allows(b, ti, j, offset) {
                                *x = F::neg_infinity();
                            }
                        }
                        softmax_inplace(row);
                    }
                    let mut out = y.slice_mut(s![b, h, .., ..]);
                    gemm(
                        F::one(),
                        a.view(),
                        vv.slice(s![b, h, .., ..]),
                        F::zero(),
                        &mut out,
                    );
                }
            }
        }
        let y = y.into_dyn();
        if !self.records(&[q, k, v]) {
            return Ok(self.push(
                "attention",
                y,
                &[q, k, v],
                Attention {
                    q,
                    k,
                    v,
                    probs: Array4::zeros((0, 0, 0, 0)),
                    scale,
                },
            ));
        }
        Ok(self.push(
            "attention",
            y,
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
}
