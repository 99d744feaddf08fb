//! AdamW: Adam with decoupled weight decay (Loshchilov & Hutter, 2019), exactly as
//! `torch.optim.AdamW`.
//!
//! For each trainable parameter `p` with gradient `g`, at its `t`-th update (t = 1, 2, ...):
//!
//! ```text
//! p  = p - lr * wd * p                  decoupled weight decay: shrink p, not g
//! m  = beta1 * m + (1 - beta1) * g      first moment (mean of g), the `exp_avg`
//! v  = beta2 * v + (1 - beta2) * g^2    second moment (uncentred variance), the `exp_avg_sq`
//! m_hat = m / (1 - beta1^t)             bias correction: m and v start at 0, so early
//! v_hat = v / (1 - beta2^t)             averages are too small by exactly these factors
//! p  = p - lr * m_hat / (sqrt(v_hat) + eps)
//! ```
//!
//! `eps` sits outside the square root, as in PyTorch. On the first step m_hat = g and
//! v_hat = g^2, so every element moves by `lr * g / (|g| + eps)`, about `lr * sign(g)`:
//! Adam's step size is set by the learning rate, not by the gradient's scale.
//!
//! Weight decay is *decoupled*: it is applied to the weights directly instead of being added to
//! the gradient (which Adam would then divide by sqrt(v), weakening decay for parameters with
//! large gradients). Biases and LayerNorm weights are usually excluded from it
//! ([`AdamW::exclude_from_decay_by_name`]).
//!
//! Per-parameter options play the role of PyTorch's param groups: a learning-rate multiplier
//! (LoRA+ trains LoRA's `B` matrices with a larger learning rate than `A`, e.g. 16x) and
//! exclusion from weight decay. The step count `t` is kept per parameter, as PyTorch does, so a
//! parameter that starts receiving gradients late gets the right bias correction.

use super::optimizer::{
    check_state_shape, count_tensor, read_count, split_state_name, updatable, Optimizer,
};
use crate::autodiff::{Grads, ParamId, ParamStore};
use crate::error::{invalid, Error, Result};
use crate::kernels::for_each_piece;
use crate::tensor::Float;
use ndarray::{ArrayD, Zip};
use std::collections::HashMap;
use std::slice::{from_mut, from_ref};

/// AdamW hyperparameters; the defaults are PyTorch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Decay rate of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay rate of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to sqrt(v_hat) so the division is safe (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay coefficient (default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

impl AdamWConfig {
    /// Checks the ranges PyTorch checks: 0 <= beta < 1, eps >= 0, weight_decay >= 0.
    pub fn validate(&self) -> Result<()> {
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return invalid("AdamW", format!("{name} must be in [0, 1), got {b}"));
            }
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return invalid("AdamW", format!("eps must be >= 0, got {}", self.eps));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return invalid(
                "AdamW",
                format!("weight_decay must be >= 0, got {}", self.weight_decay),
            );
        }
        Ok(())
    }
}

/// Options for one parameter (PyTorch would put it in its own param group).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamOptions {
    /// This parameter's learning rate is `lr * lr_mult` (LoRA+: 16 for LoRA's `B`).
    pub lr_mult: f64,
    /// Whether weight decay applies (false for biases and LayerNorm weights).
    pub weight_decay: bool,
}

impl Default for ParamOptions {
    fn default() -> Self {
        Self {
            lr_mult: 1.0,
            weight_decay: true,
        }
    }
}

/// Whether a parameter is conventionally excluded from weight decay, judged by its Hugging Face
/// style name: biases (`*.bias`) and normalisation weights (`ln_1`, `ln_f`, `LayerNorm`,
/// `layer_norm`, `*norm*`). Decaying them towards 0 fights their job (a LayerNorm gain of 0
/// switches the layer off) and gains nothing against overfitting.
pub fn is_no_decay_name(name: &str) -> bool {
    name.split('.').any(|part| {
        let lower = part.to_ascii_lowercase();
        lower == "bias" || lower == "ln" || lower.starts_with("ln_") || lower.contains("norm")
    })
}

/// Adam's two moments for one parameter, and how many updates it has had.
#[derive(Debug, Clone)]
struct AdamState<F: Float> {
    name: String,          // the parameter's name, for checkpoints
    exp_avg: ArrayD<F>,    // m, same shape as the parameter
    exp_avg_sq: ArrayD<F>, // v, same shape as the parameter
    step: u64,             // t, this parameter's update count
}

/// The AdamW optimizer. State is allocated on a parameter's first update, so frozen parameters
/// cost nothing.
#[derive(Debug, Clone)]
pub struct AdamW<F: Float> {
    config: AdamWConfig,
    options: Vec<ParamOptions>, // by ParamId index; missing entries are the default
    states: Vec<Option<AdamState<F>>>, // by ParamId index
    steps: u64,
}

impl<F: Float> AdamW<F> {
    /// A fresh optimizer (no state yet).
    pub fn new(config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            options: Vec::new(),
            states: Vec::new(),
            steps: 0,
        })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// The options of parameter `id` (the defaults unless set).
    pub fn options(&self, id: ParamId) -> ParamOptions {
        self.options.get(id.index()).copied().unwrap_or_default()
    }

    /// Sets the options of parameter `id`; the multiplier must be finite and >= 0.
    pub fn set_options(&mut self, id: ParamId, options: ParamOptions) -> Result<()> {
        if !(options.lr_mult >= 0.0 && options.lr_mult.is_finite()) {
            return invalid(
                "AdamW",
                format!("lr_mult must be finite and >= 0, got {}", options.lr_mult),
            );
        }
        *self.options_mut(id) = options;
        Ok(())
    }

    /// Sets parameter `id`'s learning-rate multiplier (LoRA+); finite and >= 0.
    pub fn set_lr_multiplier(&mut self, id: ParamId, lr_mult: f64) -> Result<()> {
        let o = self.options(id);
        self.set_options(id, ParamOptions { lr_mult, ..o })
    }

    /// Includes (`true`) or excludes (`false`) parameter `id` from weight decay.
    pub fn set_weight_decay(&mut self, id: ParamId, decay: bool) {
        self.options_mut(id).weight_decay = decay;
    }

    /// Excludes every parameter of `store` whose name [`is_no_decay_name`] from weight decay;
    /// returns how many were excluded.
    pub fn exclude_from_decay_by_name(&mut self, store: &ParamStore<F>) -> usize {
        let mut n = 0;
        for (id, p) in store.iter() {
            if is_no_decay_name(&p.name) {
                self.set_weight_decay(id, false);
                n += 1;
            }
        }
        n
    }

    fn options_mut(&mut self, id: ParamId) -> &mut ParamOptions {
        if self.options.len() <= id.index() {
            self.options.resize(id.index() + 1, ParamOptions::default());
        }
        &mut self.options[id.index()]
    }

    /// The first moment `m` of parameter `id`, if it has been updated.
    pub fn exp_avg(&self, id: ParamId) -> Option<&ArrayD<F>> {
        self.state_of(id).map(|s| &s.exp_avg)
    }

    /// The second moment `v` of parameter `id`, if it has been updated.
    pub fn exp_avg_sq(&self, id: ParamId) -> Option<&ArrayD<F>> {
        self.state_of(id).map(|s| &s.exp_avg_sq)
    }

    /// How many updates parameter `id` has received (its `t`).
    pub fn param_steps(&self, id: ParamId) -> u64 {
        self.state_of(id).map_or(0, |s| s.step)
    }

    fn state_of(&self, id: ParamId) -> Option<&AdamState<F>> {
        self.states.get(id.index()).and_then(|s| s.as_ref())
    }
}

/// Elements per piece of the update pass.
const ELEMS_PER_PIECE: usize = 1 << 15;

/// The scalars of one parameter's update at its step `t`.
#[derive(Clone, Copy)]
struct StepScalars<F> {
    decay: Option<F>,
    b1: F,
    b2: F,
    one_m_b1: F,
    one_m_b2: F,
    step_size: F,
    bc2_sqrt: F,
    eps: F,
}

/// Scalars in f64, as PyTorch computes them in Python floats.
fn step_scalars<F: Float>(lr: f64, decays: bool, c: &AdamWConfig, t: u64) -> StepScalars<F> {
    let wd = if decays { c.weight_decay } else { 0.0 };
    let t = t as f64;
    let bias_correction1 = 1.0 - c.beta1.powf(t);
    let bias_correction2_sqrt = (1.0 - c.beta2.powf(t)).sqrt();
    StepScalars {
        decay: (wd != 0.0).then(|| F::of(1.0 - lr * wd)),
        b1: F::of(c.beta1),
        b2: F::of(c.beta2),
        one_m_b1: F::of(1.0 - c.beta1),
        one_m_b2: F::of(1.0 - c.beta2),
        step_size: F::of(lr / bias_correction1),
        bc2_sqrt: F::of(bias_correction2_sqrt),
        eps: F::of(c.eps),
    }
}

// ANCHOR: update
/// One AdamW update of a slice of weights, moments and gradients.
fn update<F: Float>(w: &mut [F], m: &mut [F], v: &mut [F], g: &[F], k: &StepScalars<F>) {
    for (((w, m), v), &g) in w.iter_mut().zip(m).zip(v).zip(g) {
        if let Some(decay) = k.decay {
            *w *= decay;
        }
        *m = k.b1 * *m + k.one_m_b1 * g;
        *v = k.b2 * *v + k.one_m_b2 * g * g;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *w -= k.step_size * *m / denom;
    }
}
// ANCHOR_END: update

impl<F: Float> Optimizer<F> for AdamW<F> {
    fn name(&self) -> &'static str {
        "AdamW"
    }

    fn step(&mut self, store: &mut ParamStore<F>, grads: &Grads<F>, lr: f64) {
        if self.states.len() < store.len() {
            self.states.resize_with(store.len(), || None);
        }
        // Per parameter: create its state on first use and work out the step's scalars; then
        // one elementwise pass over every parameter, its gradient and both moments, in pieces
        // spread over the kernel threads (each element is independent, so the result does not
        // depend on the thread count).
        for (id, p) in store.iter() {
            if p.trainable && grads.get(id).is_some() && self.states[id.index()].is_none() {
                self.states[id.index()] = Some(AdamState {
                    name: p.name.clone(),
                    exp_avg: ArrayD::zeros(p.value.raw_dim()),
                    exp_avg_sq: ArrayD::zeros(p.value.raw_dim()),
                    step: 0,
                });
            }
        }
        let mut states: Vec<Option<&mut AdamState<F>>> =
            self.states.iter_mut().map(Option::as_mut).collect();
        let mut pieces = Vec::new();
        for (id, p, g) in updatable(store, grads) {
            let opts = self.options.get(id.index()).copied().unwrap_or_default();
            let st = states[id.index()].take().expect("state created above");
            st.step += 1;
            let k = step_scalars(lr * opts.lr_mult, opts.weight_decay, &self.config, st.step);
            let contiguous = [&p.value, &st.exp_avg, &st.exp_avg_sq, g]
                .iter()
                .all(|a| a.is_standard_layout());
            if !contiguous {
                Zip::from(&mut p.value)
                    .and(&mut st.exp_avg)
                    .and(&mut st.exp_avg_sq)
                    .and(g)
                    .for_each(|w, m, v, g| {
                        update(from_mut(w), from_mut(m), from_mut(v), from_ref(g), &k)
                    });
                continue;
            }
            let w = p.value.as_slice_mut().expect("standard layout");
            let m = st.exp_avg.as_slice_mut().expect("standard layout");
            let v = st.exp_avg_sq.as_slice_mut().expect("standard layout");
            let g = g.as_slice().expect("standard layout");
            for (((w, m), v), g) in w
                .chunks_mut(ELEMS_PER_PIECE)
                .zip(m.chunks_mut(ELEMS_PER_PIECE))
                .zip(v.chunks_mut(ELEMS_PER_PIECE))
                .zip(g.chunks(ELEMS_PER_PIECE))
            {
                pieces.push((w, m, v, g, k));
            }
        }
        for_each_piece(pieces, |(w, m, v, g, k)| update(w, m, v, g, &k));
        self.steps += 1;
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state_bytes(&self) -> usize {
        self.states
            .iter()
            .flatten()
            .map(|s| (s.exp_avg.len() + s.exp_avg_sq.len()) * std::mem::size_of::<F>())
            .sum()
    }

    fn state(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out = Vec::with_capacity(3 * self.states.len() + 1);
        for s in self.states.iter().flatten() {
            out.push((format!("{}.exp_avg", s.name), s.exp_avg.clone()));
            out.push((format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.clone()));
            out.push((format!("{}.step", s.name), count_tensor(s.step)));
        }
        out.push(("step".to_string(), count_tensor(self.steps)));
        out
    }

    fn load_state(&mut self, store: &ParamStore<F>, state: Vec<(String, ArrayD<F>)>) -> Result<()> {
        const OP: &str = "AdamW::load_state";
        let mut steps = None;
        let mut partial: HashMap<ParamId, [Option<ArrayD<F>>; 2]> = HashMap::new();
        let mut counts: HashMap<ParamId, u64> = HashMap::new();
        for (name, t) in state {
            if name == "step" {
                steps = Some(read_count(OP, &name, &t)?);
                continue;
            }
            let (id, key) = split_state_name(OP, store, &name, &["exp_avg", "exp_avg_sq", "step"])?;
            let dup = match key {
                "step" => counts.insert(id, read_count(OP, &name, &t)?).is_some(),
                _ => {
                    check_state_shape(OP, store, id, &name, &t)?;
                    let slot = &mut partial.entry(id).or_default()[(key == "exp_avg_sq") as usize];
                    slot.replace(t).is_some()
                }
            };
            if dup {
                return invalid(OP, format!("state tensor {name} appears twice"));
            }
        }
        let steps = steps.ok_or_else(|| Error::Invalid {
            op: OP,
            detail: "missing the 0-d state tensor \"step\"".to_string(),
        })?;
        let mut states: Vec<Option<AdamState<F>>> = (0..store.len()).map(|_| None).collect();
        for (id, [m, v]) in partial {
            let name = store.name(id);
            let (Some(exp_avg), Some(exp_avg_sq)) = (m, v) else {
                return invalid(
                    OP,
                    format!("{name}: exp_avg and exp_avg_sq must be saved together"),
                );
            };
            // A checkpoint without per-parameter counts: every parameter was updated each step.
            let step = counts.remove(&id).unwrap_or(steps);
            states[id.index()] = Some(AdamState {
                name: name.to_string(),
                exp_avg,
                exp_avg_sq,
                step,
            });
        }
        if let Some(id) = counts.keys().next() {
            return invalid(
                OP,
                format!("{}.step is saved without its moments", store.name(*id)),
            );
        }
        self.states = states;
        self.steps = steps;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn config_is_validated() {
        assert!(AdamW::<f32>::new(AdamWConfig::default()).is_ok());
        for bad in [
            AdamWConfig {
                beta1: 1.0,
                ..AdamWConfig::default()
            },
            AdamWConfig {
                beta2: -0.1,
                ..AdamWConfig::default()
            },
            AdamWConfig {
                eps: f64::NAN,
                ..AdamWConfig::default()
            },
            AdamWConfig {
                weight_decay: -1.0,
                ..AdamWConfig::default()
            },
        ] {
            assert!(AdamW::<f32>::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn state_is_allocated_on_first_update_only() {
        let mut store = ParamStore::<f64>::new();
        let a = store.add("a", array![1.0, 2.0].into_dyn(), true).unwrap();
        let b = store.add("b", array![3.0].into_dyn(), true).unwrap();
        let mut grads = Grads::new(&store);
        let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
        assert_eq!(opt.state_bytes(), 0);
        // Only `a` has a gradient: `b` is not touched and gets no state.
        grads.slots[a.index()] = Some(array![0.5, -0.5].into_dyn());
        opt.step(&mut store, &grads, 0.1);
        assert_eq!(opt.state_bytes(), 2 * 2 * 8);
        assert_eq!(store.value(b)[0], 3.0);
        assert!(opt.exp_avg(b).is_none());
        // `b` joins later: its own step count starts at 1 (bias correction per parameter).
        grads.slots[b.index()] = Some(array![1.0].into_dyn());
        opt.step(&mut store, &grads, 0.1);
        assert_eq!(
            (opt.param_steps(a), opt.param_steps(b), opt.steps()),
            (2, 1, 2)
        );
    }

    #[test]
    fn default_options() {
        let opt = AdamW::<f32>::new(AdamWConfig::default()).unwrap();
        let o = opt.options(ParamId(7));
        assert_eq!((o.lr_mult, o.weight_decay), (1.0, true));
    }
}
