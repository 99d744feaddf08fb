//! DoRA (Liu et al., 2024): decompose the adapted weight into a magnitude and a direction,
//! W' = m ⊙ (W + s·B A) / ‖W + s·B A‖, with the norm taken per output column (over the inputs)
//! and m (d_out) initialised to ‖W‖ so the model is unchanged at step 0. LoRA learns the
//! direction, m the magnitude.
//!
//! Per output column the rescaling commutes with the product, so the forward is
//! y' = (m / ‖W + s·B A‖) ⊙ (x W + s·x Aᵀ Bᵀ) + b, computed from the base output y = x W + b.
//! The norm is differentiated through (not detached), so A and B get exact gradients.

use super::lora::Unit;
use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::nn::{Layout, Linear};
use crate::tensor::Float;
use ndarray::{ArrayD, Axis, Ix2};

/// ‖W‖ per output column in `cols`, (cols.1 − cols.0): DoRA's initial magnitude.
pub fn column_norms<F: Float>(w: &ArrayD<F>, layout: Layout, cols: (usize, usize)) -> ArrayD<F> {
    let w2 = w.view().into_dimensionality::<Ix2>().expect("2-D weight");
    // Rows of the (out, in) view are output columns.
    let out_in = match layout {
        Layout::OutIn => w2,
        Layout::InOut => w2.reversed_axes(),
    };
    out_in
        .slice(ndarray::s![cols.0..cols.1, ..])
        .map_axis(Axis(1), |row| {
            row.iter().fold(F::zero(), |s, &x| s + x * x).sqrt()
        })
        .into_dyn()
}

// ANCHOR: apply_unit
/// y' for one unit: rescales the unit's columns of y (bias removed and restored) by m / ‖V‖.
pub fn apply_unit<F: Float>(
    tape: &mut Tape<'_, F>,
    linear: &Linear,
    unit: &Unit,
    scaling: f64,
    y: Var,
    delta: Var,
) -> Result<Var> {
    let (c0, c1) = unit.cols;
    let width = linear.d_out;
    // V = W[cols] + s·B A, as (cols, in).
    let w = tape.param(linear.weight);
    let w_oi = match linear.layout {
        Layout::OutIn => tape.slice(w, 0, c0, c1)?,
        Layout::InOut => {
            let wc = tape.slice(w, 1, c0, c1)?;
            tape.transpose(wc, 0, 1)?
        }
    };
    let (a, b) = (tape.param(unit.a), tape.param(unit.b));
    let ba = tape.matmul(b, a)?;
    let ba = tape.scale(ba, scaling)?;
    let v = tape.add(w_oi, ba)?;
    let v2 = tape.square(v)?;
    let norm2 = tape.sum(v2, &[1], false)?;
    let norm = tape.sqrt(norm2)?;
    let m = tape.param(unit.magnitude.expect("DoRA units carry a magnitude"));
    let factor = tape.div(m, norm)?; // (cols)

    let nd = tape.shape(y).len();
    let mut block = if (c0, c1) == (0, width) {
        y
    } else {
        tape.slice(y, nd - 1, c0, c1)?
    };
    let bias_block = match linear.bias {
        Some(bid) => {
            let bv = tape.param(bid);
            Some(tape.slice(bv, 0, c0, c1)?)
        }
        None => None,
    };
    if let Some(bb) = bias_block {
        block = tape.sub(block, bb)?;
    }
    let block = tape.add(block, delta)?;
    let mut block = tape.mul(block, factor)?;
    if let Some(bb) = bias_block {
        block = tape.add(block, bb)?;
    }
    if (c0, c1) == (0, width) {
        return Ok(block);
    }
    let mut parts = Vec::new();
    if c0 > 0 {
        parts.push(tape.slice(y, nd - 1, 0, c0)?);
    }
    parts.push(block);
    if c1 < width {
        parts.push(tape.slice(y, nd - 1, c1, width)?);
    }
    tape.concat(&parts, nd - 1)
}
// ANCHOR_END: apply_unit
