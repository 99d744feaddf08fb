//! DoRA (Liu et al., 2024): decompose the adapted weight into a magnitude and a direction,
//! W' = m ⊙ (W + s·B A) / ‖W + s·B A‖, with the norm taken per output column (over the inputs)
//! and m (d_out) initialised to ‖W‖ so the model is unchanged at step 0. LoRA learns the
//! direction, m the magnitude.
//!
//! Per output column the rescaling commutes with the product, so the forward is
//! y' = (m / ‖W + s·B A‖) ⊙ (x W + s·x Aᵀ Bᵀ) + b, computed from the base output y = x W + b.
//! The norm is differentiated through (not detached), so A and B get exact gradients.
//!
//! DoRA wraps LoRA: [`Lora::build`] adds the pairs, and right after each pair its magnitude
//! `…lora_magnitude_vector[.q]` over the pair's columns (so the store holds A, B, m per pair, as
//! PEFT names them). The hook computes LoRA's update of each pair and rescales with it. After
//! training W' = m ⊙ V / ‖V‖ is a fixed matrix: [`Method::merge_into_base`] writes it into the
//! weight as PEFT's merge does ([`fold`]), the bias unchanged.

use super::lora::{self, Lora, LoraConfig, LoraPair};
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::Result;
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Layout, Linear, Site, Transformer};
use crate::tensor::Float;
use ndarray::{ArrayD, Axis, Ix2};
use std::collections::HashMap;

/// DoRA's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "dora",
    help: "LoRA with a learned magnitude per output column (LoRA's options)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Dora(lora::config(o)?)),
    examples,
};

fn examples(_: &ExampleContext) -> Examples {
    Examples {
        compare: vec![CompareExample {
            label: "dora r=8 q,v",
            spec: MethodSpec::Dora(lora::compare_config()),
            lr: 3e-3,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![],
        tests: vec![
            ("dora", MethodSpec::Dora(lora::test_config(false))),
            ("dora_fc", MethodSpec::Dora(lora::test_config(true))),
        ],
    }
}

/// DoRA applied to a model: LoRA's pairs plus a magnitude per pair.
pub struct Dora {
    pub lora: Lora,
    /// Per targeted module, the magnitude of each of its pairs (aligned with `pairs`).
    pub magnitudes: HashMap<String, Vec<ParamId>>,
    /// A, B and m of every pair, in store order.
    params: Vec<ParamId>,
}

impl Dora {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let mut magnitudes: HashMap<String, Vec<ParamId>> = HashMap::new();
        let mut params = Vec::new();
        let lora = Lora::build(model, store, config, seed, |store, lin, pair, tag| {
            let m = column_norms(&store.dense_value(lin.weight), lin.layout, pair.cols);
            let id = store.add(
                format!("{}.lora_magnitude_vector{tag}", lin.module),
                m,
                true,
            )?;
            params.extend([pair.a, pair.b, id]);
            magnitudes.entry(lin.module.clone()).or_default().push(id);
            Ok(())
        })?;
        Ok(Self {
            lora,
            magnitudes,
            params,
        })
    }
}

impl<F: Float> Hooks<F> for Dora {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        let Some(target) = self.lora.targets.get(site.module) else {
            return Ok(y);
        };
        let scaling = self.lora.config.scaling();
        let mut y = y;
        for (pair, &m) in target.pairs.iter().zip(&self.magnitudes[site.module]) {
            let d = self.lora.delta(tape, x, pair)?;
            y = apply_pair(tape, &target.linear, pair, m, scaling, y, d)?;
        }
        Ok(y)
    }
}

impl<F: Float> Method<F> for Dora {
    fn name(&self) -> &'static str {
        "dora"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }

    fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        Method::<F>::lr_multipliers(&self.lora)
    }

    fn merge_into_base(self: Box<Self>, store: &mut ParamStore<F>) -> Result<()> {
        fold(&self, store)
    }
}

// ANCHOR: fold
/// W[cols] ← m ⊙ V / ‖V‖ with V = W[cols] + s·B A, per output column (PEFT's DoRA merge), in
/// the weight's own layout; the bias stays as it is (the forward rescales the output without it).
pub fn fold<F: Float>(dora: &Dora, store: &mut ParamStore<F>) -> Result<()> {
    let s = dora.lora.config.scaling();
    for (module, target) in &dora.lora.targets {
        for (pair, &m) in target.pairs.iter().zip(&dora.magnitudes[module]) {
            let two_d = |id| {
                store
                    .value(id)
                    .mapv(|x: F| x.as_f64())
                    .into_dimensionality::<Ix2>()
                    .expect("2-D")
            };
            let (a, b) = (two_d(pair.a), two_d(pair.b));
            let mag: Vec<f64> = store.value(m).iter().map(|x| x.as_f64()).collect();
            let (c0, c1) = pair.cols;
            let w = two_d(target.linear.weight);
            let w_oi = match target.linear.layout {
                Layout::OutIn => w.slice(ndarray::s![c0..c1, ..]).to_owned(),
                Layout::InOut => w.slice(ndarray::s![.., c0..c1]).t().to_owned(),
            };
            let mut v = w_oi + b.dot(&a) * s; // (cols, in)
            for (mut row, &mj) in v.axis_iter_mut(Axis(0)).zip(&mag) {
                let norm = row.dot(&row).sqrt();
                row *= mj / norm;
            }
            let value = &mut store.get_mut(target.linear.weight).value;
            let mut w2 = value
                .view_mut()
                .into_dimensionality::<Ix2>()
                .expect("W is 2-D");
            let v = v.mapv(F::of);
            match target.linear.layout {
                Layout::OutIn => w2.slice_mut(ndarray::s![c0..c1, ..]).assign(&v),
                Layout::InOut => w2.slice_mut(ndarray::s![.., c0..c1]).assign(&v.t()),
            }
        }
    }
    Ok(())
}
// ANCHOR_END: fold

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

// ANCHOR: apply_pair
/// y' for one pair with magnitude m: rescales the pair's columns of y (bias removed and
/// restored) by m / ‖V‖.
pub fn apply_pair<F: Float>(
    tape: &mut Tape<'_, F>,
    linear: &Linear,
    pair: &LoraPair,
    magnitude: ParamId,
    scaling: f64,
    y: Var,
    delta: Var,
) -> Result<Var> {
    let (c0, c1) = pair.cols;
    let width = linear.d_out;
    // V = W[cols] + s·B A, as (cols, in).
    // A quantised base weight (QDoRA) enters as a constant, dequantised: it is frozen anyway.
    let w = match tape.store().quantized(linear.weight) {
        Some(q) => {
            let dense = q
                .dequantize_as_stored()
                .mapv(|x| F::of(x as f64))
                .into_dyn();
            tape.constant(dense)
        }
        None => tape.param(linear.weight),
    };
    let w_oi = match linear.layout {
        Layout::OutIn => tape.slice(w, 0, c0, c1)?,
        Layout::InOut => {
            let wc = tape.slice(w, 1, c0, c1)?;
            tape.transpose(wc, 0, 1)?
        }
    };
    let (a, b) = (tape.param(pair.a), tape.param(pair.b));
    let ba = tape.matmul(b, a)?;
    let ba = tape.scale(ba, scaling)?;
    let v = tape.add(w_oi, ba)?;
    let v2 = tape.square(v)?;
    let norm2 = tape.sum(v2, &[1], false)?;
    let norm = tape.sqrt(norm2)?;
    let m = tape.param(magnitude);
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
// ANCHOR_END: apply_pair
