//! Replay: mixing pre-training data back into fine-tuning, against catastrophic forgetting.
//!
//! [`Replay`] wraps any [`TrainTask`] whose model has an LM head: in every micro-batch of B
//! examples the Trainer draws, a share ρ of them (round(ρ·B)) is replaced by windows of
//! pre-training text, trained with the causal LM loss, and the rest are the task's own. The loss
//! is the mean over the B examples, each weighing the same:
//!
//! ```text
//! L = ((B − n)·L_task + n·L_LM) / B,   n = round(ρ·B)
//! ```
//!
//! with L_task the task's mean over its examples and L_LM the mean per-token LM loss of the n
//! windows. The gradient keeps pulling the weights toward what pre-training taught while the
//! task pulls them away, which is why replay reduces forgetting; the price is fewer task examples
//! per step at the same compute. (A task whose own loss is a mean over tokens, such as an
//! instruction task, is weighted per example here, not per token.)
//!
//! The windows are drawn from `windows` (token windows of T + 1 tokens, as
//! [`crate::data::lm::windows`] cuts them) with a random stream seeded by (seed, micro-batch), so
//! a run is deterministic and a resumed run draws the same ones. The task examples replaced are
//! the last n the Trainer drew for the micro-batch: they are skipped for this epoch.

use super::trainer::{Metrics, MicroBatch, Split, TrainTask};
use crate::autodiff::{ParamStore, Tape, Var};
use crate::data::lm::causal_batch;
use crate::error::{invalid, Result};
use crate::nn::{Hooks, Transformer};
use crate::tensor::Float;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A task with a share of every micro-batch replaced by pre-training text.
pub struct Replay<'a, T> {
    pub task: &'a T,
    /// Causal LM windows of T + 1 tokens (inputs and shifted targets).
    pub windows: &'a [Vec<u32>],
    /// ρ in [0, 1]: the share of each micro-batch's examples drawn from `windows`.
    pub share: f64,
    pub seed: u64,
}

impl<'a, T> Replay<'a, T> {
    /// Checks the share and that there is text to replay when the share is not 0.
    pub fn new(task: &'a T, windows: &'a [Vec<u32>], share: f64, seed: u64) -> Result<Self> {
        if !(0.0..=1.0).contains(&share) {
            return invalid("replay", format!("replay share {share} is outside [0, 1]"));
        }
        let len = windows.first().map_or(0, Vec::len);
        if share > 0.0 && (len < 2 || windows.iter().any(|w| w.len() != len)) {
            return invalid(
                "replay",
                "replay needs pre-training windows, all of the same length of at least 2 tokens",
            );
        }
        Ok(Self {
            task,
            windows,
            share,
            seed,
        })
    }

    /// Replayed windows in a micro-batch of `b` examples: round(ρ·b).
    pub fn replayed(&self, b: usize) -> usize {
        ((self.share * b as f64).round() as usize).min(b)
    }
}

impl<F: Float, T: TrainTask<F>> TrainTask<F> for Replay<'_, T> {
    fn train_len(&self) -> usize {
        self.task.train_len()
    }

    fn model(&self) -> Option<&Transformer> {
        self.task.model()
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        self.task.metric_names()
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        let b = batch.indices.len();
        let n = self.replayed(b);
        let kept = &batch.indices[..b - n];
        let mut total: Option<Var> = None;
        if !kept.is_empty() {
            let sub = MicroBatch {
                indices: kept,
                ..*batch
            };
            let (mean, _) = self.task.loss(tape, hooks, &sub)?;
            total = Some(tape.scale(mean, kept.len() as f64)?);
        }
        if n > 0 {
            let Some(model) = self.task.model() else {
                return invalid(
                    "replay",
                    "the task has no transformer to run the LM loss on",
                );
            };
            let mut rng = StdRng::seed_from_u64(self.seed ^ ((batch.micro as u64) << 24) ^ 0x5e91);
            let picked: Vec<&Vec<u32>> = (0..n)
                .map(|_| &self.windows[rng.random_range(0..self.windows.len())])
                .collect();
            let lm = causal_batch(&picked);
            let (mean, _) = super::pretrain::lm_batch_loss(model, tape, hooks, &lm)?;
            let part = tape.scale(mean, n as f64)?;
            total = Some(match total {
                Some(t) => tape.add(t, part)?,
                None => part,
            });
        }
        let Some(total) = total else {
            return invalid("replay", "an empty micro-batch");
        };
        Ok((tape.scale(total, 1.0 / b as f64)?, b))
    }

    fn tokens(&self, batch: &MicroBatch<'_>) -> Option<usize> {
        let b = batch.indices.len();
        let n = self.replayed(b);
        let kept = MicroBatch {
            indices: &batch.indices[..b - n],
            ..*batch
        };
        let window = self
            .windows
            .first()
            .map_or(0, |w| w.len().saturating_sub(1));
        Some(self.task.tokens(&kept).unwrap_or(kept.indices.len()) + n * window)
    }

    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        self.task.evaluate(store, hooks, split, limit, batch_size)
    }
}
