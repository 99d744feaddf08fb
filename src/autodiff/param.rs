//! Named parameters, their gradients, and counts.
//!
//! A [`ParamStore`] owns every parameter tensor under a Hugging Face style name
//! (`h.0.attn.c_attn.weight`), each trainable or frozen. [`Grads`] holds one gradient slot per
//! parameter, allocated only for parameters that actually receive a gradient, so a frozen base
//! costs no gradient memory. An optimizer is one loop over `store.iter_mut()` and `grads`.

use crate::error::{Error, Result};
use crate::kernels::quant::QuantWeight;
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, IxDyn, Zip};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

/// Index of a parameter in its [`ParamStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub(crate) usize);

impl ParamId {
    /// The position of this parameter in its store.
    pub fn index(self) -> usize {
        self.0
    }
}

/// One named tensor.
#[derive(Debug, Clone)]
pub struct Param<F: Float> {
    pub name: String,
    pub value: ArrayD<F>,
    pub trainable: bool,
}

/// All parameters of a model (and of any fine-tuning method applied to it), by name.
///
/// A frozen weight may be stored quantised ([`ParamStore::quantize`], `--base-dtype bf16|nf4`):
/// its `value` is then empty and [`ParamStore::quantized`] holds it; only a Linear's forward
/// reads it, through `Tape::matmul_quantized`, a tile of rows at a time.
#[derive(Debug, Clone, Default)]
pub struct ParamStore<F: Float> {
    params: Vec<Param<F>>,
    by_name: HashMap<String, ParamId>,
    quantized: HashMap<ParamId, Arc<QuantWeight>>,
}

impl<F: Float> ParamStore<F> {
    pub fn new() -> Self {
        Self {
            params: Vec::new(),
            by_name: HashMap::new(),
            quantized: HashMap::new(),
        }
    }

    /// Replaces the frozen 2-D weight `id` by its quantised form `q` (which must hold as many
    /// values); the f32 tensor is dropped. A quantised weight cannot train.
    pub fn quantize(&mut self, id: ParamId, q: QuantWeight) -> Result<()> {
        let p = &mut self.params[id.0];
        if p.value.ndim() != 2 || p.value.len() != q.len() {
            return Err(Error::Shape {
                op: "quantize",
                detail: format!(
                    "{} has shape {}, the quantised weight {} × {}",
                    p.name,
                    fmt_shape(p.value.shape()),
                    q.rows,
                    q.cols
                ),
            });
        }
        p.value = ArrayD::zeros(IxDyn(&[0]));
        p.trainable = false;
        self.quantized.insert(id, Arc::new(q));
        Ok(())
    }

    /// The quantised form of `id`, if it is stored quantised.
    pub fn quantized(&self, id: ParamId) -> Option<&Arc<QuantWeight>> {
        self.quantized.get(&id)
    }

    /// Whether any parameter is stored quantised.
    pub fn has_quantized(&self) -> bool {
        !self.quantized.is_empty()
    }

    /// The value of `id` in full precision: its own tensor, or a quantised weight dequantised
    /// in the parameter's layout (a copy, for readers outside the forward such as DoRA's
    /// initial magnitudes and merging).
    pub fn dense_value(&self, id: ParamId) -> Cow<'_, ArrayD<F>> {
        match self.quantized.get(&id) {
            Some(q) => Cow::Owned(
                q.dequantize_as_stored()
                    .mapv(|x| F::of(x as f64))
                    .into_dyn(),
            ),
            None => Cow::Borrowed(&self.params[id.0].value),
        }
    }

    /// Number of values of `id` (a quantised weight's too).
    pub fn numel(&self, id: ParamId) -> usize {
        match self.quantized.get(&id) {
            Some(q) => q.len(),
            None => self.params[id.0].value.len(),
        }
    }

    /// Adds a parameter; names are unique.
    pub fn add(
        &mut self,
        name: impl Into<String>,
        value: ArrayD<F>,
        trainable: bool,
    ) -> Result<ParamId> {
        let name = name.into();
        if self.by_name.contains_key(&name) {
            return Err(Error::Param(name, "already exists"));
        }
        let id = ParamId(self.params.len());
        self.by_name.insert(name.clone(), id);
        self.params.push(Param {
            name,
            value,
            trainable,
        });
        Ok(id)
    }

    /// Looks a parameter up by name.
    pub fn id(&self, name: &str) -> Result<ParamId> {
        self.by_name
            .get(name)
            .copied()
            .ok_or_else(|| Error::Param(name.to_string(), "not found"))
    }

    pub fn get(&self, id: ParamId) -> &Param<F> {
        &self.params[id.0]
    }

    pub fn get_mut(&mut self, id: ParamId) -> &mut Param<F> {
        &mut self.params[id.0]
    }

    pub fn value(&self, id: ParamId) -> &ArrayD<F> {
        &self.params[id.0].value
    }

    pub fn name(&self, id: ParamId) -> &str {
        &self.params[id.0].name
    }

    pub fn is_trainable(&self, id: ParamId) -> bool {
        self.params[id.0].trainable
    }

    /// Freezes or unfreezes one parameter (a quantised one stays frozen).
    pub fn set_trainable(&mut self, id: ParamId, trainable: bool) {
        self.params[id.0].trainable = trainable && !self.quantized.contains_key(&id);
    }

    /// Freezes or unfreezes every parameter (quantised ones stay frozen).
    pub fn set_all_trainable(&mut self, trainable: bool) {
        for (i, p) in self.params.iter_mut().enumerate() {
            p.trainable = trainable && !self.quantized.contains_key(&ParamId(i));
        }
    }

    /// Replaces a parameter's value, checking that the shape is unchanged.
    pub fn set_value(&mut self, id: ParamId, value: ArrayD<F>) -> Result<()> {
        let p = &mut self.params[id.0];
        if p.value.shape() != value.shape() {
            return Err(Error::Shape {
                op: "set_value",
                detail: format!(
                    "{} has shape {}, new value has {}",
                    p.name,
                    fmt_shape(p.value.shape()),
                    fmt_shape(value.shape())
                ),
            });
        }
        p.value = value;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.params.len()
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.params.len()).map(ParamId)
    }

    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &Param<F>)> {
        self.params.iter().enumerate().map(|(i, p)| (ParamId(i), p))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (ParamId, &mut Param<F>)> {
        self.params
            .iter_mut()
            .enumerate()
            .map(|(i, p)| (ParamId(i), p))
    }

    /// Number of scalar parameters in total (quantised ones included).
    pub fn num_params(&self) -> usize {
        self.params.iter().map(|p| p.value.len()).sum::<usize>()
            + self.quantized.values().map(|q| q.len()).sum::<usize>()
    }

    /// Bytes of all parameter values, frozen or not; a quantised weight at its stored size.
    pub fn bytes(&self) -> usize {
        let dense: usize = self.params.iter().map(|p| p.value.len()).sum();
        dense * std::mem::size_of::<F>() + self.quantized_bytes()
    }

    /// Bytes of the quantised weights (codes and constants).
    pub fn quantized_bytes(&self) -> usize {
        self.quantized.values().map(|q| q.bytes()).sum()
    }

    /// Number of scalar parameters that are trainable.
    pub fn num_trainable(&self) -> usize {
        self.params
            .iter()
            .filter(|p| p.trainable)
            .map(|p| p.value.len())
            .sum()
    }

    /// `trainable params: N || all params: M || trainable%: P`, as PEFT prints it.
    pub fn trainable_summary(&self) -> String {
        let (t, n) = (self.num_trainable(), self.num_params());
        let pct = if n == 0 {
            0.0
        } else {
            100.0 * t as f64 / n as f64
        };
        format!("trainable params: {t} || all params: {n} || trainable%: {pct:.4}")
    }

    /// The same parameters in another float type (for f64 gradient checks of f32 models).
    pub fn cast<G: Float>(&self) -> ParamStore<G> {
        let params = self
            .params
            .iter()
            .map(|p| Param {
                name: p.name.clone(),
                value: p.value.mapv(|x| G::of(x.as_f64())),
                trainable: p.trainable,
            })
            .collect();
        ParamStore {
            params,
            by_name: self.by_name.clone(),
            quantized: self.quantized.clone(),
        }
    }
}

/// One gradient slot per parameter of a store. Slots stay `None` until a backward pass writes
/// them, so frozen parameters never hold gradient memory. Backward passes add (`+=`) into the
/// slots; [`Grads::zero`] clears them between optimizer steps, keeping the buffers.
#[derive(Debug, Clone)]
pub struct Grads<F: Float> {
    pub(crate) slots: Vec<Option<ArrayD<F>>>,
}

impl<F: Float> Grads<F> {
    /// Empty gradients for every parameter of `store`.
    pub fn new(store: &ParamStore<F>) -> Self {
        Self {
            slots: vec![None; store.len()],
        }
    }

    pub fn get(&self, id: ParamId) -> Option<&ArrayD<F>> {
        self.slots.get(id.0).and_then(|s| s.as_ref())
    }

    pub fn get_mut(&mut self, id: ParamId) -> Option<&mut ArrayD<F>> {
        self.slots.get_mut(id.0).and_then(|s| s.as_mut())
    }

    /// Sets every gradient to zero in place (buffers are kept for the next step).
    pub fn zero(&mut self) {
        for g in self.slots.iter_mut().flatten() {
            g.fill(F::zero());
        }
    }

    /// The parameters that hold a gradient.
    pub fn ids(&self) -> impl Iterator<Item = ParamId> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| ParamId(i))
    }

    /// Bytes held by gradient buffers.
    pub fn bytes(&self) -> usize {
        self.slots
            .iter()
            .flatten()
            .map(|g| g.len() * std::mem::size_of::<F>())
            .sum()
    }

    /// The L2 norm of all gradients taken together.
    pub fn global_norm(&self) -> F {
        let mut s = F::zero();
        for g in self.slots.iter().flatten() {
            Zip::from(g).for_each(|&x| s += x * x);
        }
        s.sqrt()
    }

    /// Scales every gradient by `c`.
    pub fn scale(&mut self, c: F) {
        for g in self.slots.iter_mut().flatten() {
            g.mapv_inplace(|x| x * c);
        }
    }
}
