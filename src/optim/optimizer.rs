//! The [`Optimizer`] trait every optimizer implements, and the helpers its implementations share
//! for naming, counting and checking their checkpointed state.

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
