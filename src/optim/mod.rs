//! Optimisation: what happens between `tape.backward` and the next forward pass.
//!
//! One training step, in the order a trainer calls these:
//!
//! 1. `tape.backward(loss, &mut grads)` fills [`Grads`] for the trainable parameters;
//! 2. [`grad_norms`] reports each parameter's gradient norm (for grad-norm logging) and
//!    [`clip_grad_norm`] rescales all gradients together when their global norm is too large
//!    (the guard against exploding gradients);
//! 3. [`Schedule::lr`] gives this step's learning rate (warmup, then constant, linear or cosine
//!    decay);
//! 4. [`Optimizer::step`] moves the parameters: [`Sgd`] (with momentum, optionally Nesterov) or
//!    [`AdamW`] (with per-parameter learning-rate multipliers for LoRA+ and weight-decay
//!    exclusion for biases and LayerNorm weights).
//!
//! Every formula matches PyTorch (`torch.optim.SGD`, `torch.optim.AdamW`,
//! `torch.nn.utils.clip_grad_norm_`) and Hugging Face transformers' schedules; `tests/suite/optim.rs`
//! replays golden files written by `tools/optim_golden.py` and checks every parameter after
//! every step to 1e-6.
//!
//! **Frozen means untouched.** An optimizer updates a parameter only when it is trainable *and*
//! holds a gradient. Frozen parameters are never written (they stay bit-identical) and get no
//! optimizer state, so AdamW's memory (two tensors per parameter) scales with the trainable
//! parameters only: the reason LoRA's optimizer state is tiny. [`Optimizer::state_bytes`]
//! measures it.
//!
//! **Checkpoints.** [`Optimizer::state`] lists the state as named tensors,
//! `<param name>.exp_avg`, `<param name>.exp_avg_sq`, `<param name>.momentum_buffer`,
//! `<param name>.step` (AdamW's per-parameter update count, as in PyTorch's state dict) and a
//! 0-d `step` (number of [`Optimizer::step`] calls), ready for safetensors;
//! [`Optimizer::load_state`] restores them so a resumed run continues exactly where it stopped.
//! Counts are stored as floats: exact up to 2^24 steps in f32. The Trainer holds its optimizer as
//! a `Box<dyn Optimizer<F>>` and saves and restores it only through these two methods
//! (`crate::io::checkpoint::save_training`), so either optimizer resumes.
//!
//! ```
//! use ndarray::array;
//! use tunelab::optim::{AdamW, AdamWConfig, Optimizer, Schedule};
//! use tunelab::{Grads, ParamStore, Tape};
//!
//! let mut store = ParamStore::<f64>::new();
//! let w = store.add("w", array![1.0, -1.0].into_dyn(), true).unwrap();
//! let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
//! let schedule = Schedule::Cosine { warmup_steps: 1, total_steps: 10 };
//! for step in 0..10 {
//!     // loss = sum(w * w): gradient 2w
//!     let mut grads = Grads::new(&store);
//!     let mut tape = Tape::new(&store);
//!     let wv = tape.param(w);
//!     let sq = tape.mul(wv, wv).unwrap();
//!     let loss = tape.sum_all(sq).unwrap();
//!     tape.backward(loss, &mut grads).unwrap();
//!     drop(tape);
//!     opt.step(&mut store, &grads, schedule.lr(1e-1, step));
//! }
//! assert!(store.value(w)[0] < 1.0 && store.value(w)[1] > -1.0);
//! assert_eq!(opt.state_bytes(), 2 * 2 * 8); // exp_avg and exp_avg_sq, 2 f64 each
//! ```

mod adamw;
mod clip;
mod schedule;
mod sgd;

pub use adamw::{is_no_decay_name, AdamW, AdamWConfig, ParamOptions};
pub use clip::{clip_grad_norm, grad_norm, grad_norms, CLIP_EPS};
pub use schedule::Schedule;
pub use sgd::{Sgd, SgdConfig};

use crate::autodiff::{Grads, ParamId, ParamStore};
use crate::error::{Error, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, IxDyn};

/// An optimizer: moves trainable parameters along their gradients, keeping whatever state it
/// needs (momentum, moment estimates) per parameter.
pub trait Optimizer<F: Float> {
    /// The optimizer's name (`AdamW`, `SGD`), recorded in training checkpoints so a run resumes
    /// only with the optimizer that wrote its state. Defaults to the Rust type's name.
    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    /// One update with learning rate `lr` (the schedule's value for this step). Only parameters
    /// that are trainable and hold a gradient in `grads` are touched; the others keep their
    /// values bit for bit and get no state.
    ///
    /// # Panics
    /// If a gradient's shape differs from its parameter's: `grads` must come from a backward
    /// pass over this `store` (never user input).
    fn step(&mut self, store: &mut ParamStore<F>, grads: &Grads<F>, lr: f64);

    /// Number of completed [`Optimizer::step`] calls (restored by [`Optimizer::load_state`]).
    fn steps(&self) -> u64;

    /// Bytes of optimizer state: the tensors [`Optimizer::state`] would save.
    fn state_bytes(&self) -> usize;

    /// The state as named tensors (parameter order, then the 0-d `step`), for a checkpoint.
    fn state(&self) -> Vec<(String, ArrayD<F>)>;

    /// Replaces the state with one saved by [`Optimizer::state`]. Names must be parameters of
    /// `store` and shapes must match; parameters without saved state start fresh. On error the
    /// optimizer is left unchanged.
    fn load_state(&mut self, store: &ParamStore<F>, state: Vec<(String, ArrayD<F>)>) -> Result<()>;
}

/// A 0-d tensor holding a count (a step number).
pub(crate) fn count_tensor<F: Float>(n: u64) -> ArrayD<F> {
    ArrayD::from_elem(IxDyn(&[]), F::of(n as f64))
}

/// Reads a count back from a one-element tensor, refusing anything but a non-negative integer.
pub(crate) fn read_count<F: Float>(op: &'static str, name: &str, t: &ArrayD<F>) -> Result<u64> {
    let bad = |detail: String| Error::Invalid { op, detail };
    if t.len() != 1 {
        return Err(bad(format!(
            "{name} must hold one number, got shape {}",
            fmt_shape(t.shape())
        )));
    }
    let x = t
        .iter()
        .next()
        .map(|&x| Float::as_f64(x))
        .unwrap_or(f64::NAN);
    if !(x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(53)) {
        return Err(bad(format!(
            "{name} must be a non-negative whole number, got {x}"
        )));
    }
    Ok(x as u64)
}

/// Splits a state name `<param name>.<key>` into the parameter (looked up in `store`) and the
/// key, checking the key is one of `keys`. Parameter names may themselves contain dots.
pub(crate) fn split_state_name<'n, F: Float>(
    op: &'static str,
    store: &ParamStore<F>,
    name: &'n str,
    keys: &[&str],
) -> Result<(ParamId, &'n str)> {
    let Some((param, key)) = name.rsplit_once('.') else {
        return Err(Error::Invalid {
            op,
            detail: format!("state tensor {name:?} is not <param name>.<key>"),
        });
    };
    if !keys.contains(&key) {
        return Err(Error::Invalid {
            op,
            detail: format!(
                "state tensor {name:?}: unknown key {key:?} (expected one of {keys:?})"
            ),
        });
    }
    Ok((store.id(param)?, key))
}

/// Checks that a saved state tensor has its parameter's shape.
pub(crate) fn check_state_shape<F: Float>(
    op: &'static str,
    store: &ParamStore<F>,
    id: ParamId,
    name: &str,
    t: &ArrayD<F>,
) -> Result<()> {
    let want = store.value(id).shape();
    if t.shape() != want {
        return Err(Error::Shape {
            op,
            detail: format!(
                "state tensor {name} has shape {}, parameter {} has {}",
                fmt_shape(t.shape()),
                store.name(id),
                fmt_shape(want)
            ),
        });
    }
    Ok(())
}

/// The parameters an optimizer step updates: trainable, with a gradient. The one place that
/// decides it, so SGD and AdamW agree.
pub(crate) fn updatable<'a, F: Float>(
    store: &'a mut ParamStore<F>,
    grads: &'a Grads<F>,
) -> impl Iterator<Item = (ParamId, &'a mut crate::autodiff::Param<F>, &'a ArrayD<F>)> + 'a {
    store.iter_mut().filter_map(move |(id, p)| {
        if !p.trainable {
            return None;
        }
        let g = grads.get(id)?;
        assert_eq!(
            p.value.shape(),
            g.shape(),
            "optimizer: gradient of {} has the wrong shape",
            p.name
        );
        Some((id, p, g))
    })
}
