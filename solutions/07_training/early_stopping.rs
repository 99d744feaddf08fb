//! # Early stopping
//!
//! On a small dataset, validation loss falls, bottoms out, then rises while the training loss
//! keeps falling: the model has started to memorise (overfitting, the notes' first pitfall).
//! Early stopping evaluates periodically and stops when the validation metric has not improved
//! for `patience` evaluations in a row; the checkpoint kept is the best one, not the last.
//!
//! - "Improved" means strictly better than the best so far: lower for a loss or a perplexity,
//!   higher for accuracy or F1. The first evaluation always improves.
//! - An improvement resets the count of bad evaluations to 0; anything else adds 1.
//! - Stop once the count reaches `patience`.
//!
//! Graded against the Trainer's own bookkeeping (`TrainerState::record_eval` and
//! `should_stop_early` in src/train/trainer.rs) on random sequences of evaluations.

/// Early-stopping bookkeeping.
#[derive(Debug, Clone)]
pub struct EarlyStopping {
    pub patience: usize,
    /// true for a loss or a perplexity, false for accuracy, F1, …
    pub lower_is_better: bool,
    /// The best value so far.
    pub best: Option<f64>,
    /// Evaluations since the last improvement.
    pub bad_evals: usize,
}

impl EarlyStopping {
    pub fn new(patience: usize, lower_is_better: bool) -> Self {
        Self {
            patience,
            lower_is_better,
            best: None,
            bad_evals: 0,
        }
    }

    /// Records one evaluation and returns whether training should stop now.
    ///
    ///     patience 2, lower is better: 1.0 → false, 0.8 → false, 0.9 → false, 0.85 → true
    pub fn update(&mut self, value: f64) -> bool {
        let improved = match self.best {
            None => true,
            Some(best) if self.lower_is_better => value < best,
            Some(best) => value > best,
        };
        if improved {
            self.best = Some(value);
            self.bad_evals = 0;
        } else {
            self.bad_evals += 1;
        }
        self.bad_evals >= self.patience
    }
}
