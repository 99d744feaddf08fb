//! Forgetting: how much fine-tuning damaged what pre-training taught.
//!
//! Measured as the change in the model's language-modelling loss (causal LM for decoders,
//! masked LM for encoders) on held-out pre-training text — documents of the same world that
//! neither pre-training nor the task saw. The fine-tuned model is read through its method's
//! hooks, so a LoRA or an adapter counts exactly as it runs; a method that only adds parameters
//! beside a frozen base can still change the loss, because its hooks change the hidden states.

use super::finetune::Base;
use crate::data::lm::{validation_batches, LmBatch};
use crate::error::Result;
use crate::nn::{Hooks, NoHooks};
use crate::train::pretrain;

/// The held-out text of a base, ready to score: the same batches `pretrain` validates on.
pub fn heldout_batches(base: &Base) -> Result<Vec<LmBatch>> {
    validation_batches(
        &base.tok,
        base.model.config.causal,
        base.model.config.max_len,
    )
}

/// The base's LM loss on held-out `batches` through `hooks` (`NoHooks` for the untouched base):
/// the token-weighted mean over the batches.
pub fn heldout_loss(base: &Base, hooks: &dyn Hooks<f32>, batches: &[LmBatch]) -> Result<f64> {
    pretrain::validation_loss(&base.model, &base.store, hooks, batches)
}

/// A base's held-out text and the pre-trained model's loss on it: measured once, before any
/// training, then compared with every fine-tuned model (no reload of the pristine weights).
pub struct HeldOut {
    pub batches: Vec<LmBatch>,
    pub before: f64,
}

impl HeldOut {
    /// Of `base` as loaded (its pre-trained weights), on its first `n_batches` batches of 16
    /// held-out windows (at least one).
    pub fn of(base: &Base, n_batches: usize) -> Result<Self> {
        let mut batches = heldout_batches(base)?;
        batches.truncate(n_batches.max(1));
        let before = heldout_loss(base, &NoHooks, &batches)?;
        Ok(Self { batches, before })
    }

    /// The forgetting of `base` (fine-tuned, read through `hooks`) on this text.
    pub fn forgetting(&self, base: &Base, hooks: &dyn Hooks<f32>) -> Result<Forgetting> {
        Ok(Forgetting {
            before: self.before,
            after: heldout_loss(base, hooks, &self.batches)?,
        })
    }
}

/// LM loss before and after fine-tuning; forgetting is their difference.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Forgetting {
    pub before: f64,
    pub after: f64,
}

impl Forgetting {
    /// After minus before: positive when the model got worse at language modelling.
    pub fn delta(&self) -> f64 {
        self.after - self.before
    }
}

/// The LM loss of the pre-trained weights (read from disk again, so `base` may already hold
/// fine-tuned values) and of `base` through `hooks`.
pub fn measure(base: &Base, hooks: &dyn Hooks<f32>, batches: &[LmBatch]) -> Result<Forgetting> {
    let pristine = super::finetune::load_base(&base.dir.display().to_string())?;
    let before = pretrain::validation_loss(&base.model, &pristine.store, &NoHooks, batches)?;
    let after = heldout_loss(base, hooks, batches)?;
    Ok(Forgetting { before, after })
}
