//! Ops that move elements without arithmetic: reshape, permute/transpose, concat, slice and
//! index_select. Their backward moves the gradient back the same way.
//!
//! Permute keeps the permuted strides (the result is not re-laid out), so downstream ops see a
//! genuinely non-contiguous tensor and must, and do, handle it.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, numel, Float};
use ndarray::{concatenate, ArrayD, ArrayViewD, Axis, IxDyn, Slice};

struct Reshape {
    x: Var,
}

impl<F: Float> Backward<F> for Reshape {
    // Only shapes and the op's own indices.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let xs = IxDyn(ctx.shape(self.x));
        let gx = g.to_shape(xs).expect("same element count").into_owned();
        ctx.accumulate(self.x, gx);
    }
}

struct Permute {
    x: Var,
    inverse: Vec<usize>,
}

impl<F: Float> Backward<F> for Permute {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let gx = g.view().permuted_axes(IxDyn(&self.inverse));
        ctx.grad_mut(self.x).zip_mut_with(&gx, |a, &b| *a += b);
    }
}

struct Concat {
    xs: Vec<Var>,
    axis: usize,
}

impl<F: Float> Backward<F> for Concat {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let mut start = 0;
        for &x in &self.xs {
            let len = ctx.shape(x)[self.axis];
            if ctx.needs(x) {
                let part = g.slice_axis(Axis(self.axis), Slice::from(start..start + len));
                ctx.grad_mut(x).zip_mut_with(&part, |a, &b| *a += b);
            }
            start += len;
        }
    }
}

struct SliceOp {
    x: Var,
    axis: usize,
    start: usize,
    end: usize,
}

impl<F: Float> Backward<F> for SliceOp {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let gx = ctx.grad_mut(self.x);
        let mut part = gx.slice_axis_mut(Axis(self.axis), Slice::from(self.start..self.end));
        part += g;
    }
}

struct AddAt {
    y: Var,
    d: Var,
    axis: usize,
    start: usize,
    end: usize,
}

impl<F: Float> Backward<F> for AddAt {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _out: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let part = g.slice_axis(Axis(self.axis), Slice::from(self.start..self.end));
        let gd = ctx.grad_mut(self.d);
        *gd += &part;
        ctx.accumulate(self.y, g.clone());
    }
}

struct IndexSelect {
    x: Var,
    axis: usize,
    index: Vec<usize>,
}

impl<F: Float> Backward<F> for IndexSelect {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let gx = ctx.grad_mut(self.x);
        for (j, &i) in self.index.iter().enumerate() {
            let mut row = gx.index_axis_mut(Axis(self.axis), i);
            row += &g.index_axis(Axis(self.axis), j);
        }
    }
}

impl<F: Float> Tape<'_, F> {
    /// The same elements in a new shape (row-major order).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        if numel(shape) != numel(self.shape(x)) {
            return shape_err(
                "reshape",
                format!(
                    "cannot reshape {} into {}",
                    fmt_shape(self.shape(x)),
                    fmt_shape(shape)
                ),
            );
        }
        let y = self
            .value(x)
            .to_shape(IxDyn(shape))
            .expect("element count checked")
            .into_owned();
        Ok(self.push("reshape", y, &[x], Reshape { x }))
    }

    /// Reorders axes: output axis i is input axis `perm[i]`.
    pub fn permute(&mut self, x: Var, perm: &[usize]) -> Result<Var> {
        let nd = self.shape(x).len();
        let mut seen = vec![false; nd];
        if perm.len() != nd
            || perm
                .iter()
                .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
        {
            return invalid(
                "permute",
                format!("{perm:?} is not a permutation of {nd} axes"),
            );
        }
        let mut inverse = vec![0; nd];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let y = self.value(x).to_owned().permuted_axes(IxDyn(perm));
        Ok(self.push("permute", y, &[x], Permute { x, inverse }))
    }

    /// Swaps two axes.
    pub fn transpose(&mut self, x: Var, a: usize, b: usize) -> Result<Var> {
        let nd = self.shape(x).len();
        if a >= nd || b >= nd {
            return invalid(
                "transpose",
                format!("axes ({a}, {b}) out of range for {nd} dims"),
            );
        }
        let mut perm: Vec<usize> = (0..nd).collect();
        perm.swap(a, b);
        self.permute(x, &perm)
    }

    /// Joins tensors along `axis`; all other axes must agree.
    pub fn concat(&mut self, xs: &[Var], axis: usize) -> Result<Var> {
        let Some(&first) = xs.first() else {
            return invalid("concat", "no inputs");
        };
        let s0 = self.shape(first).to_vec();
        if axis >= s0.len() {
            return invalid(
                "concat",
                format!("axis {axis} out of range for {} dims", s0.len()),
            );
        }
        for &x in xs {
            let s = self.shape(x);
            let fits = s.len() == s0.len()
                && s.iter()
                    .zip(&s0)
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !fits {
                return shape_err(
                    "concat",
                    format!(
                        "{} and {} differ off axis {axis}",
                        fmt_shape(&s0),
                        fmt_shape(s)
                    ),
                );
            }
        }
        let views: Vec<ArrayViewD<F>> = xs.iter().map(|&x| self.value(x)).collect();
        let y = concatenate(Axis(axis), &views).expect("shapes checked");
        Ok(self.push(
            "concat",
            y,
            xs,
            Concat {
                xs: xs.to_vec(),
                axis,
            },
        ))
    }

    /// Elements `start..end` along `axis`.
    pub fn slice(&mut self, x: Var, axis: usize, start: usize, end: usize) -> Result<Var> {
        let s = self.shape(x);
        if axis >= s.len() || start > end || end > s[axis] {
            return invalid(
                "slice",
                format!("{start}..{end} on axis {axis} of {}", fmt_shape(s)),
            );
        }
        let y = self
            .value(x)
            .slice_axis(Axis(axis), Slice::from(start..end))
            .to_owned();
        Ok(self.push(
            "slice",
            y,
            &[x],
            SliceOp {
                x,
                axis,
                start,
                end,
            },
        ))
    }

    /// `y` with `d` added to its elements `start..start + d.len` along `axis` (the adjoint of
    /// [`Tape::slice`]): a LoRA update of one block of a fused projection, without building the
    /// zero-padded full-width update.
    pub fn add_at(&mut self, y: Var, d: Var, axis: usize, start: usize) -> Result<Var> {
        let (sy, sd) = (self.shape(y), self.shape(d));
        let fits = axis < sy.len()
            && sd.len() == sy.len()
            && start + sd[axis] <= sy[axis]
            && (0..sy.len()).all(|i| i == axis || sy[i] == sd[i]);
        if !fits {
            return shape_err(
                "add_at",
                format!(
                    "{} at {start} on axis {axis} of {}",
                    fmt_shape(sd),
                    fmt_shape(sy)
                ),
            );
        }
        let end = start + sd[axis];
        let mut out = self.value(y).to_owned();
        let mut part = out.slice_axis_mut(Axis(axis), Slice::from(start..end));
        part += &self.value(d);
        Ok(self.push(
            "add_at",
            out,
            &[y, d],
            AddAt {
                y,
                d,
                axis,
                start,
                end,
            },
        ))
    }

    /// Picks entries `index` along `axis` (repeats allowed): `y.index_axis(axis, j) = x.index_axis(axis, index[j])`.
    pub fn index_select(&mut self, x: Var, axis: usize, index: &[usize]) -> Result<Var> {
        let s = self.shape(x);
        if axis >= s.len() {
            return invalid(
                "index_select",
                format!("axis {axis} out of range for {} dims", s.len()),
            );
        }
        if let Some(&bad) = index.iter().find(|&&i| i >= s[axis]) {
            return invalid(
                "index_select",
                format!(
                    "index {bad} out of range for axis {axis} of {}",
                    fmt_shape(s)
                ),
            );
        }
        let y = self.value(x).select(Axis(axis), index);
        Ok(self.push(
            "index_select",
            y,
            &[x],
            IndexSelect {
                x,
                axis,
                index: index.to_vec(),
            },
        ))
    }
}
