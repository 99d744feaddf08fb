//! Embedding lookup: rows of a table (V, C) picked by integer ids.
//!
//! Backward is a scatter-add: row `id` of the table's gradient receives the output gradient of
//! every position that looked it up. A frozen table receives nothing and costs nothing.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, ArrayView, ArrayViewD, Axis, Dimension, Ix2, IxDyn};

struct Embedding {
    table: Var,
    ids: Vec<usize>,
}

impl<F: Float> Backward<F> for Embedding {
    // The ids are the cache.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn saved_bytes(&self) -> usize {
        self.ids.len() * std::mem::size_of::<usize>()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        let gw = ctx.grad_mut(self.table);
        let c = gw.shape()[1];
        let g2 = g
            .view()
            .into_shape_with_order((self.ids.len(), c))
            .expect("contiguous gradient");
        let mut gw2 = gw
            .view_mut()
            .into_dimensionality::<Ix2>()
            .expect("2-D table");
        for (r, &id) in self.ids.iter().enumerate() {
            let mut row = gw2.row_mut(id);
            row += &g2.row(r);
        }
    }
}

impl<F: Float> Tape<'_, F> {
    /// Looks up `ids` (any shape) in `table` (V, C); the output has shape `ids.shape() + (C,)`.
    pub fn embedding<D: Dimension>(
        &mut self,
        table: Var,
        ids: ArrayView<'_, usize, D>,
    ) -> Result<Var> {
        let ts = self.shape(table).to_vec();
        if ts.len() != 2 {
            return shape_err(
                "embedding",
                format!("table must be (V, C), got {}", fmt_shape(&ts)),
            );
        }
        let flat: Vec<usize> = ids.iter().copied().collect();
        if let Some((pos, &id)) = flat.iter().enumerate().find(|(_, &id)| id >= ts[0]) {
            return invalid(
                "embedding",
                format!(
                    "id {id} at position {pos} is out of range for a vocabulary of {}",
                    ts[0]
                ),
            );
        }
        let mut shape = ids.shape().to_vec();
        shape.push(ts[1]);
        let y = self
            .value(table)
            .select(Axis(0), &flat)
            .into_shape_with_order(IxDyn(&shape))
            .expect("element count matches");
        Ok(self.push("embedding", y, &[table], Embedding { table, ids: flat }))
    }
}
