//! A Linear whose frozen weight is stored quantised (bf16 or NF4, [`QuantWeight`]):
//! `y = x · Ŵᵀ`, with Ŵ (out, in) dequantised a tile of [`TILE_ROWS`] rows at a time, inside the
//! forward and again inside the backward. No full-precision copy of the weight exists at any
//! moment: the largest buffer is one tile, TILE_ROWS × in values. This is what QLoRA's
//! bitsandbytes kernels do on a GPU (dequantise into registers, multiply, discard).
//!
//! The weight is frozen, so backward computes only the input's gradient:
//! `dx = G · Ŵ`, again tile by tile: dx += G[:, rows] · Ŵ[rows, :]. Nothing of x is saved.
//! (A quantised weight cannot train: its `ParamStore` entry is never trainable.)

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{shape_err, Result};
use crate::kernels::gemm;
use crate::kernels::quant::QuantWeight;
use crate::tensor::{fmt_shape, Float};
use ndarray::{s, Array2, ArrayD, ArrayViewD, IxDyn};
use std::sync::Arc;

/// Rows of the weight dequantised at once.
pub const TILE_ROWS: usize = 64;

struct QuantMatMul {
    x: Var,
    w: Arc<QuantWeight>,
}

/// Rows `r0..r1` of Ŵ as an (r1 − r0, in) matrix of `F`.
fn tile<F: Float>(w: &QuantWeight, r0: usize, r1: usize, buf: &mut Vec<f32>) -> Array2<F> {
    buf.resize((r1 - r0) * w.cols, 0.0);
    w.dequantize_rows(r0, r1, buf);
    Array2::from_shape_fn((r1 - r0, w.cols), |(i, j)| {
        F::of(buf[i * w.cols + j] as f64)
    })
}

/// The row ranges of the tiles.
fn tiles(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows)
        .step_by(TILE_ROWS)
        .map(move |r0| (r0, (r0 + TILE_ROWS).min(rows)))
}

impl<F: Float> Backward<F> for QuantMatMul {
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        if !ctx.needs(self.x) {
            return;
        }
        let (out, cols) = (self.w.rows, self.w.cols);
        let m = g.len() / out.max(1);
        let g2 = g
            .view()
            .into_shape_with_order((m, out))
            .expect("gradient is contiguous");
        let gx = ctx.grad_mut(self.x);
        let mut gx2 = gx
            .view_mut()
            .into_shape_with_order((m, cols))
            .expect("gradient is contiguous");
        let mut buf = Vec::new();
        for (r0, r1) in tiles(out) {
            let t = tile::<F>(&self.w, r0, r1, &mut buf);
            gemm(
                F::one(),
                g2.slice(s![.., r0..r1]),
                t.view(),
                F::one(),
                &mut gx2,
            );
        }
    }
}

impl<F: Float> Tape<'_, F> {
    // ANCHOR: matmul_quantized
    /// `x (…, in) · Ŵᵀ → (…, out)` for a quantised weight Ŵ (out, in), dequantised tile by tile.
    pub fn matmul_quantized(&mut self, x: Var, w: Arc<QuantWeight>) -> Result<Var> {
        let sx = self.shape(x).to_vec();
        if sx.is_empty() || sx[sx.len() - 1] != w.cols {
            return shape_err(
                "matmul_quantized",
                format!(
                    "input {} against a quantised weight of {} × {} (out, in)",
                    fmt_shape(&sx),
                    w.rows,
                    w.cols
                ),
            );
        }
        let m: usize = sx[..sx.len() - 1].iter().product();
        let mut out_shape = sx[..sx.len() - 1].to_vec();
        out_shape.push(w.rows);
        let mut y = ArrayD::<F>::zeros(IxDyn(&out_shape));
        {
            let xv = self.value(x);
            let x2 = xv.to_shape((m, w.cols)).expect("element count matches");
            let mut y2 = y
                .view_mut()
                .into_shape_with_order((m, w.rows))
                .expect("contiguous");
            let mut buf = Vec::new();
            for (r0, r1) in tiles(w.rows) {
                let t = tile::<F>(&w, r0, r1, &mut buf);
                let mut block = y2.slice_mut(s![.., r0..r1]);
                gemm(F::one(), x2.view(), t.t(), F::zero(), &mut block);
            }
        }
        Ok(self.push("matmul_quantized", y, &[x], QuantMatMul { x, w }))
    }
    // ANCHOR_END: matmul_quantized
}
