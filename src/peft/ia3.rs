//! IA3 (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
//! In-Context Learning"): learned vectors that rescale activations elementwise,
//!
//! ```text
//! attention: softmax(Q (l_k ⊙ K)ᵀ / √HS) (l_v ⊙ V)      MLP: (l_ff ⊙ act(x W_fc)) W_proj
//! ```
//!
//! with l_k, l_v of size C and l_ff of size d_ff, all initialised to ones so the model is
//! unchanged at step 0. K and V are the key and value projections' outputs, bias included. That
//! is 2·C + d_ff parameters per block, fewer than any method here but prompt tuning (on gpt-tiny
//! 3,328 against prompt tuning's 1,536, heads included), and since each vector only rescales one
//! side of a frozen weight (l_k and l_v its output columns, l_ff W_proj's input rows) it can be
//! folded into that weight for serving.
//!
//! Where the vectors plug in:
//! - GPT-2's fused `c_attn` (output [q | k | v], 3C): the [`Hooks::linear`] hook multiplies its
//!   output by [1…1 | l_k | l_v], the ones a constant, so queries are untouched (PEFT's IA3 on
//!   GPT-2 rescales the whole `c_attn` output instead; we follow the paper).
//! - BERT's separate `key` and `value` Linears: the same hook multiplies their outputs by l_k and
//!   l_v.
//! - The MLP activations: the [`Hooks::mlp_hidden`] hook multiplies them by l_ff (the same as
//!   PEFT's rescaling of the second MLP Linear's input).
//!
//! Parameter names (the vectors live on the module whose output they rescale):
//!
//! | parameter | shape | GPT-2 | BERT |
//! |---|---|---|---|
//! | l_k | (C) | `h.{i}.attn.c_attn.ia3_l_k` | `encoder.layer.{i}.attention.self.key.ia3_l_k` |
//! | l_v | (C) | `h.{i}.attn.c_attn.ia3_l_v` | `encoder.layer.{i}.attention.self.value.ia3_l_v` |
//! | l_ff | (d_ff) | `h.{i}.mlp.ia3_l_ff` | `encoder.layer.{i}.intermediate.ia3_l_ff` |
//!
//! Folding into the base ([`Method::merge_into_base`], [`fold`]): l_k and l_v scale the key and
//! value projections' output columns and their biases (their output is rescaled bias included);
//! l_ff scales the *input* rows of the MLP's second Linear (W_proj: (l_ff ⊙ h) W = h (diag(l_ff) W)),
//! whose bias stays.

use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::transformer::Qkv;
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Layout, Linear, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array1, ArrayD, Axis, Ix2, IxDyn};
use std::collections::HashMap;

/// IA3's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "ia3",
    help: "learned rescaling of keys, values and MLP activations",
    identity_at_init: true,
    spec: |_, _| Ok(MethodSpec::Ia3),
    examples,
};

fn examples(_: &ExampleContext) -> Examples {
    Examples {
        compare: vec![CompareExample {
            label: "ia3",
            spec: MethodSpec::Ia3,
            lr: 3e-2,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![("ia3", MethodSpec::Ia3)],
        tests: vec![("ia3", MethodSpec::Ia3)],
    }
}

/// How one attention Linear's output is rescaled.
#[derive(Debug, Clone, Copy)]
pub enum Scale {
    /// GPT-2's fused c_attn, (…, 3C): q unchanged, k by l_k, v by l_v.
    Fused {
        c: usize,
        l_k: ParamId,
        l_v: ParamId,
    },
    /// A separate key or value Linear, (…, C): by this vector.
    Whole(ParamId),
}

/// IA3's vectors for one block.
#[derive(Debug, Clone)]
pub struct Ia3Block {
    pub l_k: ParamId,
    pub l_v: ParamId,
    pub l_ff: ParamId,
    /// The MLP's second Linear, whose input l_ff rescales (for [`fold`]).
    pub proj: Linear,
}

/// IA3 applied to a model.
pub struct Ia3 {
    /// The attention Linears that are rescaled, by module path.
    pub scales: HashMap<String, Scale>,
    /// Those Linears themselves, in block order (for [`fold`]).
    pub linears: Vec<Linear>,
    /// The vectors of each block, by block index.
    pub blocks: Vec<Ia3Block>,
    params: Vec<ParamId>,
}

/// The module a Linear belongs to: `h.0.mlp.c_fc` → `h.0.mlp`.
fn parent(module: &str) -> &str {
    module.rsplit_once('.').map_or(module, |(p, _)| p)
}

impl Ia3 {
    pub fn apply<F: Float>(model: &Transformer, store: &mut ParamStore<F>) -> Result<Self> {
        if model.blocks.is_empty() {
            return invalid("ia3", "this model has no blocks to rescale");
        }
        let c = model.config.d_model;
        let ones = |n: usize| ArrayD::<F>::ones(IxDyn(&[n]));
        let mut scales = HashMap::new();
        let mut linears = Vec::new();
        let mut blocks = Vec::with_capacity(model.blocks.len());
        let mut params = Vec::new();
        for block in &model.blocks {
            let (l_k, l_v) = match &block.qkv {
                Qkv::Fused(lin) => {
                    let l_k = store.add(format!("{}.ia3_l_k", lin.module), ones(c), true)?;
                    let l_v = store.add(format!("{}.ia3_l_v", lin.module), ones(c), true)?;
                    scales.insert(lin.module.clone(), Scale::Fused { c, l_k, l_v });
                    linears.push(lin.clone());
                    (l_k, l_v)
                }
                Qkv::Split { k, v, .. } => {
                    let l_k = store.add(format!("{}.ia3_l_k", k.module), ones(c), true)?;
                    let l_v = store.add(format!("{}.ia3_l_v", v.module), ones(c), true)?;
                    scales.insert(k.module.clone(), Scale::Whole(l_k));
                    scales.insert(v.module.clone(), Scale::Whole(l_v));
                    linears.extend([k.clone(), v.clone()]);
                    (l_k, l_v)
                }
            };
            let l_ff = store.add(
                format!("{}.ia3_l_ff", parent(&block.fc.module)),
                ones(block.fc.d_out),
                true,
            )?;
            params.extend([l_k, l_v, l_ff]);
            blocks.push(Ia3Block {
                l_k,
                l_v,
                l_ff,
                proj: block.proj.clone(),
            });
        }
        Ok(Self {
            scales,
            linears,
            blocks,
            params,
        })
    }
}

// ANCHOR: hooks
impl<F: Float> Hooks<F> for Ia3 {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, _x: Var, y: Var) -> Result<Var> {
        let scale = match self.scales.get(site.module) {
            None => return Ok(y),
            Some(&Scale::Whole(l)) => tape.param(l),
            Some(&Scale::Fused { c, l_k, l_v }) => {
                // [1…1 | l_k | l_v], (3C): the constant ones keep the queries as they are.
                let ones = tape.constant(ArrayD::ones(IxDyn(&[c])));
                let (l_k, l_v) = (tape.param(l_k), tape.param(l_v));
                tape.concat(&[ones, l_k, l_v], 0)?
            }
        };
        tape.mul(y, scale)
    }

    fn mlp_hidden(&self, tape: &mut Tape<'_, F>, layer: usize, h: Var) -> Result<Var> {
        match self.blocks.get(layer) {
            Some(b) => {
                let l_ff = tape.param(b.l_ff);
                tape.mul(h, l_ff)
            }
            None => Ok(h),
        }
    }
}
// ANCHOR_END: hooks

impl<F: Float> Method<F> for Ia3 {
    fn name(&self) -> &'static str {
        "ia3"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }

    fn merge_into_base(self: Box<Self>, store: &mut ParamStore<F>) -> Result<()> {
        fold(&self, store)
    }
}

// ANCHOR: fold
/// Folds the vectors into the weights: each rescaled Linear's output columns (and bias) by its
/// scale, each block's W_proj input rows by l_ff, in the weights' own layouts.
pub fn fold<F: Float>(ia3: &Ia3, store: &mut ParamStore<F>) -> Result<()> {
    let vector = |store: &ParamStore<F>, id: ParamId| -> Array1<F> {
        store.value(id).iter().copied().collect()
    };
    for lin in &ia3.linears {
        // The scale of every output column: [1…1 | l_k | l_v] for a fused c_attn.
        let scale: Array1<F> = match ia3.scales[&lin.module] {
            Scale::Whole(l) => vector(store, l),
            Scale::Fused { c, l_k, l_v } => {
                let mut s = Array1::from_elem(3 * c, F::one());
                s.slice_mut(ndarray::s![c..2 * c])
                    .assign(&vector(store, l_k));
                s.slice_mut(ndarray::s![2 * c..])
                    .assign(&vector(store, l_v));
                s
            }
        };
        // Output columns: rows of an (out, in) weight, columns of an (in, out) one.
        let out_axis = match lin.layout {
            Layout::OutIn => 0,
            Layout::InOut => 1,
        };
        scale_along(store, lin.weight, out_axis, &scale);
        if let Some(b) = lin.bias {
            scale_along(store, b, 0, &scale);
        }
    }
    for block in &ia3.blocks {
        let l_ff = vector(store, block.l_ff);
        // Input rows: rows of an (in, out) weight, columns of an (out, in) one.
        let in_axis = match block.proj.layout {
            Layout::OutIn => 1,
            Layout::InOut => 0,
        };
        scale_along(store, block.proj.weight, in_axis, &l_ff);
    }
    Ok(())
}
// ANCHOR_END: fold

/// Multiplies the lanes of `id`'s value along `axis` by `scale` (one factor per index).
fn scale_along<F: Float>(store: &mut ParamStore<F>, id: ParamId, axis: usize, scale: &Array1<F>) {
    let value = &mut store.get_mut(id).value;
    if value.ndim() == 1 {
        value.zip_mut_with(scale, |x, &s| *x *= s);
        return;
    }
    let mut w = value.view_mut().into_dimensionality::<Ix2>().expect("2-D");
    for (mut lane, &s) in w.axis_iter_mut(Axis(axis)).zip(scale) {
        lane.mapv_inplace(|x| x * s);
    }
}
