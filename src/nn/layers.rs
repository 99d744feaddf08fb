//! The layers a transformer is built from. Each holds only the ids of its parameters; the
//! tensors live in the [`ParamStore`] under Hugging Face names.

use super::hooks::{Hooks, Role, Site};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::Result;
use crate::tensor::Float;
use ndarray::{Array, ArrayD, IxDyn};
use ndarray_rand::rand_distr::Normal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;

/// How a Linear's weight is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// (in, out), GPT-2's Conv1D: y = x W.
    InOut,
    /// (out, in), PyTorch's nn.Linear (BERT): y = x Wᵀ.
    OutIn,
}

/// A normal(0, std) tensor.
pub fn normal<F: Float>(shape: &[usize], std: f64, rng: &mut StdRng) -> ArrayD<F> {
    let d = Normal::new(0.0, std).expect("std is positive");
    Array::<f64, _>::random_using(IxDyn(shape), d, rng).mapv(F::of)
}

/// y = x W (+ b), followed by the method hook for this module.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Hugging Face module path, e.g. `h.0.attn.c_attn`; the parameters are `<module>.weight`
    /// and `<module>.bias`.
    pub module: String,
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub layout: Layout,
    pub role: Role,
    pub layer: Option<usize>,
    pub d_in: usize,
    pub d_out: usize,
}

/// What a Linear is, before it has parameters.
pub struct LinearSpec<'a> {
    pub module: &'a str,
    pub d_in: usize,
    pub d_out: usize,
    pub bias: bool,
    pub layout: Layout,
    pub role: Role,
    pub layer: Option<usize>,
    pub std: f64,
}

impl Linear {
    /// Adds the weight (normal(0, std)) and bias (zeros) to `store`, trainable.
    pub fn new<F: Float>(
        store: &mut ParamStore<F>,
        spec: LinearSpec<'_>,
        rng: &mut StdRng,
    ) -> Result<Self> {
        let shape = match spec.layout {
            Layout::InOut => [spec.d_in, spec.d_out],
            Layout::OutIn => [spec.d_out, spec.d_in],
        };
        let weight = store.add(
            format!("{}.weight", spec.module),
            normal(&shape, spec.std, rng),
            true,
        )?;
        let bias = if spec.bias {
            Some(store.add(
                format!("{}.bias", spec.module),
                ArrayD::zeros(IxDyn(&[spec.d_out])),
                true,
            )?)
        } else {
            None
        };
        Ok(Self {
            module: spec.module.to_string(),
            weight,
            bias,
            layout: spec.layout,
            role: spec.role,
            layer: spec.layer,
            d_in: spec.d_in,
            d_out: spec.d_out,
        })
    }

    /// x (..., d_in) → (..., d_out). The transpose of an (out, in) weight is a view, not a copy.
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        x: Var,
    ) -> Result<Var> {
        // A base loaded with `--base-dtype bf16|nf4` keeps this weight quantised: the product
        // dequantises it tile by tile (`autodiff::ops::quant_matmul`).
        let mut y = match tape.store().quantized(self.weight) {
            Some(q) => tape.matmul_quantized(x, q.clone())?,
            None => {
                let w = tape.param(self.weight);
                tape.matmul_t(x, w, false, self.layout == Layout::OutIn)?
            }
        };
        if let Some(b) = self.bias {
            let b = tape.param(b);
            y = tape.add(y, b)?;
        }
        let site = Site {
            layer: self.layer,
            module: &self.module,
            role: self.role,
        };
        hooks.linear(tape, &site, x, y)
    }
}

/// Layer normalisation with weight γ (ones) and bias β (zeros).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub module: String,
    pub weight: ParamId,
    pub bias: ParamId,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new<F: Float>(
        store: &mut ParamStore<F>,
        module: &str,
        c: usize,
        eps: f64,
    ) -> Result<Self> {
        let weight = store.add(format!("{module}.weight"), ArrayD::ones(IxDyn(&[c])), true)?;
        let bias = store.add(format!("{module}.bias"), ArrayD::zeros(IxDyn(&[c])), true)?;
        Ok(Self {
            module: module.to_string(),
            weight,
            bias,
            eps,
        })
    }

    pub fn forward<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
        let (g, b) = (tape.param(self.weight), tape.param(self.bias));
        tape.layer_norm(x, g, b, self.eps)
    }
}
