//! Sum and mean over axes.
//!
//! Backward broadcasts the output gradient back over the reduced axes (times 1/count for mean).

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, Result};
use crate::tensor::Float;
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

struct Reduce {
    x: Var,
    axes: Vec<usize>,
    scale: f64,
}

impl<F: Float> Backward<F> for Reduce {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let xs = ctx.shape(self.x).to_vec();
        // The gradient with the reduced axes kept as size 1, then broadcast to x's shape.
        let mut kept = xs.clone();
        for &a in &self.axes {
            kept[a] = 1;
        }
        let gk = g
            .view()
            .into_shape_with_order(IxDyn(&kept))
            .expect("same element count");
        let c = F::of(self.scale);
        let gx = gk
            .broadcast(IxDyn(&xs))
            .expect("kept axes broadcast")
            .mapv(|v| v * c);
        ctx.accumulate(self.x, gx);
    }
}

impl<F: Float> Tape<'_, F> {
    fn reduce(
        &mut self,
        name: &'static str,
        x: Var,
        axes: &[usize],
        keepdim: bool,
        mean: bool,
    ) -> Result<Var> {
        let shape = self.shape(x).to_vec();
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        if let Some(&a) = axes.iter().find(|&&a| a >= shape.len()) {
            return invalid(
                name,
                format!("axis {a} out of range for {} dims", shape.len()),
            );
        }
        let count: usize = axes.iter().map(|&a| shape[a]).product();
        let mut y = self.value(x).to_owned();
        for &a in axes.iter().rev() {
            y = y.sum_axis(Axis(a));
            if keepdim {
                y = y.insert_axis(Axis(a));
            }
        }
        let scale = if mean { 1.0 / count.max(1) as f64 } else { 1.0 };
        if mean {
            let c = F::of(scale);
            y.mapv_inplace(|v| v * c);
        }
        Ok(self.push(name, y, &[x], Reduce { x, axes, scale }))
    }

    /// Sum over `axes` (kept as size-1 axes when `keepdim`).
    pub fn sum(&mut self, x: Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        self.reduce("sum", x, axes, keepdim, false)
    }

    /// Mean over `axes` (kept as size-1 axes when `keepdim`).
    pub fn mean(&mut self, x: Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        self.reduce("mean", x, axes, keepdim, true)
    }

    /// Sum of every element, as a 0-d tensor.
    pub fn sum_all(&mut self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.shape(x).len()).collect();
        self.reduce("sum", x, &axes, false, false)
    }

    /// Mean of every element, as a 0-d tensor.
    pub fn mean_all(&mut self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.shape(x).len()).collect();
        self.reduce("mean", x, &axes, false, true)
    }
}
