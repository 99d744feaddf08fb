//! Stochastic gradient descent with momentum, exactly as `torch.optim.SGD` (dampening 0).
//!
//! For each trainable parameter `p` with gradient `g`:
//!
//! ```text
//! d   = g + wd * p                 L2 weight decay, added to the gradient (coupled)
//! buf = d                          on the first update
//! buf = momentum * buf + d         afterwards: a running sum of past gradients
//! u   = d + momentum * buf         Nesterov: look ahead along the momentum
//! u   = buf                        classical momentum
//! p   = p - lr * u
//! ```
//!
//! With `momentum = 0` this is plain SGD (`p -= lr * d`) and no buffer is kept. Momentum
//! averages out gradient noise and speeds travel along consistent directions: with a constant
//! gradient the step grows to `lr * g / (1 - momentum)`, ten times `lr * g` at 0.9.
//!
//! Unlike AdamW, weight decay here is plain L2 regularisation: it goes through the momentum
//! like any other gradient, which is what PyTorch's SGD does.

use super::optimizer::{
    check_state_shape, count_tensor, read_count, split_state_name, updatable, Optimizer,
};
use crate::autodiff::{Grads, ParamStore};
use crate::error::{invalid, Error, Result};
use crate::tensor::Float;
use ndarray::{ArrayD, Zip};

/// SGD hyperparameters; the defaults are PyTorch's (plain SGD).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SgdConfig {
    /// Momentum factor (0 disables the buffer).
    pub momentum: f64,
    /// Nesterov momentum (needs `momentum > 0`).
    pub nesterov: bool,
    /// L2 penalty added to the gradient.
    pub weight_decay: f64,
}

impl SgdConfig {
    /// Checks the ranges PyTorch checks: momentum >= 0, weight_decay >= 0, Nesterov needs
    /// momentum.
    pub fn validate(&self) -> Result<()> {
        if !(self.momentum >= 0.0 && self.momentum.is_finite()) {
            return invalid(
                "SGD",
                format!("momentum must be >= 0, got {}", self.momentum),
            );
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return invalid(
                "SGD",
                format!("weight_decay must be >= 0, got {}", self.weight_decay),
            );
        }
        if self.nesterov && self.momentum == 0.0 {
            return invalid("SGD", "Nesterov momentum needs momentum > 0");
        }
        Ok(())
    }
}

/// One parameter's momentum buffer.
#[derive(Debug, Clone)]
struct Momentum<F: Float> {
    name: String,   // the parameter's name, for checkpoints
    buf: ArrayD<F>, // same shape as the parameter
}

/// The SGD optimizer.
#[derive(Debug, Clone)]
pub struct Sgd<F: Float> {
    config: SgdConfig,
    bufs: Vec<Option<Momentum<F>>>, // by ParamId index; empty when momentum is 0
    steps: u64,
}

impl<F: Float> Sgd<F> {
    pub fn new(config: SgdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            bufs: Vec::new(),
            steps: 0,
        })
    }

    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// The momentum buffer of parameter `id`, if it has been updated (and momentum is on).
    pub fn momentum_buffer(&self, id: crate::autodiff::ParamId) -> Option<&ArrayD<F>> {
        self.bufs
            .get(id.index())
            .and_then(|b| b.as_ref())
            .map(|m| &m.buf)
    }
}

impl<F: Float> Optimizer<F> for Sgd<F> {
    fn name(&self) -> &'static str {
        "SGD"
    }

    fn step(&mut self, store: &mut ParamStore<F>, grads: &Grads<F>, lr: f64) {
        let SgdConfig {
            momentum,
            nesterov,
            weight_decay,
        } = self.config;
        let (lr_f, wd, mom) = (F::of(lr), F::of(weight_decay), F::of(momentum));
        if momentum != 0.0 && self.bufs.len() < store.len() {
            self.bufs.resize_with(store.len(), || None);
        }
        for (id, p, g) in updatable(store, grads) {
            if momentum == 0.0 {
                Zip::from(&mut p.value).and(g).for_each(|w, &g| {
                    let d = g + wd * *w;
                    *w -= lr_f * d;
                });
                continue;
            }
            let slot = &mut self.bufs[id.index()];
            let first = slot.is_none();
            let m = slot.get_or_insert_with(|| Momentum {
                name: p.name.clone(),
                buf: ArrayD::zeros(p.value.raw_dim()),
            });
            Zip::from(&mut p.value)
                .and(&mut m.buf)
                .and(g)
                .for_each(|w, b, &g| {
                    let d = g + wd * *w;
                    *b = if first { d } else { mom * *b + d };
                    let u = if nesterov { d + mom * *b } else { *b };
                    *w -= lr_f * u;
                });
        }
        self.steps += 1;
    }

    fn steps(&self) -> u64 {
        self.steps
    }

    fn state_bytes(&self) -> usize {
        self.bufs
            .iter()
            .flatten()
            .map(|m| m.buf.len() * std::mem::size_of::<F>())
            .sum()
    }

    fn state(&self) -> Vec<(String, ArrayD<F>)> {
        let mut out: Vec<(String, ArrayD<F>)> = self
            .bufs
            .iter()
            .flatten()
            .map(|m| (format!("{}.momentum_buffer", m.name), m.buf.clone()))
            .collect();
        out.push(("step".to_string(), count_tensor(self.steps)));
        out
    }

    fn load_state(&mut self, store: &ParamStore<F>, state: Vec<(String, ArrayD<F>)>) -> Result<()> {
        const OP: &str = "SGD::load_state";
        let mut steps = None;
        let mut bufs: Vec<Option<Momentum<F>>> = (0..store.len()).map(|_| None).collect();
        for (name, t) in state {
            if name == "step" {
                steps = Some(read_count(OP, &name, &t)?);
                continue;
            }
            let (id, _) = split_state_name(OP, store, &name, &["momentum_buffer"])?;
            check_state_shape(OP, store, id, &name, &t)?;
            if self.config.momentum == 0.0 {
                return invalid(
                    OP,
                    format!("{name}: a momentum buffer, but this SGD has momentum 0"),
                );
            }
            let old = bufs[id.index()].replace(Momentum {
                name: store.name(id).to_string(),
                buf: t,
            });
            if old.is_some() {
                return invalid(OP, format!("state tensor {name} appears twice"));
            }
        }
        self.steps = steps.ok_or_else(|| Error::Invalid {
            op: OP,
            detail: "missing the 0-d state tensor \"step\"".to_string(),
        })?;
        self.bufs = if self.config.momentum == 0.0 {
            Vec::new()
        } else {
            bufs
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn first_step_buffer_is_the_gradient() {
        let mut store = ParamStore::<f64>::new();
        let w = store.add("w", array![1.0, 2.0].into_dyn(), true).unwrap();
        let mut grads = Grads::new(&store);
        grads.slots[w.index()] = Some(array![0.5, -4.0].into_dyn());
        let mut opt = Sgd::new(SgdConfig {
            momentum: 0.9,
            ..SgdConfig::default()
        })
        .unwrap();
        opt.step(&mut store, &grads, 0.5);
        assert_eq!(
            opt.momentum_buffer(w).unwrap(),
            &array![0.5, -4.0].into_dyn()
        );
        assert_eq!(store.value(w), &array![0.75, 4.0].into_dyn());
        assert_eq!(opt.state_bytes(), 16);
    }

    #[test]
    fn config_is_validated() {
        let bad = SgdConfig {
            momentum: -0.5,
            ..SgdConfig::default()
        };
        assert!(Sgd::<f32>::new(bad).is_err());
        let bad = SgdConfig {
            weight_decay: f64::INFINITY,
            ..SgdConfig::default()
        };
        assert!(Sgd::<f32>::new(bad).is_err());
    }
}
