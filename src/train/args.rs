//! Training arguments: Hugging Face's `TrainingArguments`, as a struct with defaults that can also
//! be read from a TOML file (every field optional there).

use crate::error::{invalid, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// When to evaluate (and, with the same values, when to save).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Never.
    No,
    /// Every `eval_steps` / `save_steps` optimizer steps.
    Steps,
    /// At the end of every epoch.
    Epoch,
}

/// The learning-rate schedule after warmup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    Constant,
    Linear,
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingArgs {
    /// Where checkpoints, the JSONL log and the final adapter go.
    pub output_dir: PathBuf,
    pub epochs: f64,
    /// Stop after this many optimizer steps (overrides `epochs` when set).
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    pub eval_batch_size: usize,
    /// Micro-batches summed per optimizer step.
    pub gradient_accumulation_steps: usize,
    pub learning_rate: f64,
    pub schedule: ScheduleKind,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    /// Clip the global gradient norm to this (0 turns clipping off).
    pub max_grad_norm: f64,
    pub eval_strategy: Strategy,
    pub eval_steps: usize,
    pub save_strategy: Strategy,
    pub save_steps: usize,
    /// Keep only the newest k checkpoints (0 keeps all).
    pub save_total_limit: usize,
    /// Stop when the validation metric has not improved for this many evaluations.
    pub early_stopping_patience: Option<usize>,
    /// The validation metric that decides "best", for early stopping and
    /// `load_best_model_at_end` (Hugging Face's `metric_for_best_model`; the old TOML key
    /// `metric_for_best` is still read).
    #[serde(alias = "metric_for_best")]
    pub metric_for_best_model: String,
    /// Whether a greater `metric_for_best_model` is better. `None` (Hugging Face's default):
    /// false when the name ends in `loss` (tunelab: or `perplexity`), else true.
    pub greater_is_better: Option<bool>,
    /// Restore the trainable parameters of the best evaluation when training ends (Hugging Face's
    /// `load_best_model_at_end`): what a run reports, scores on test and saves is then the best
    /// evaluation's model, not the last one. Kept in memory, and in `checkpoint-best/` when a
    /// save strategy is set so that a resumed run can still restore it.
    pub load_best_model_at_end: bool,
    /// Recompute each block's forward in backward instead of keeping its activations (Hugging
    /// Face's `gradient_checkpointing`): less activation memory for about one more forward.
    pub gradient_checkpointing: bool,
    pub seed: u64,
    pub logging_steps: usize,
    /// Cap on the evaluation examples per split (0 = all), to keep evaluation cheap.
    pub max_eval_examples: usize,
    /// Tokens per sequence at most.
    pub max_len: usize,
    /// Delete the checkpoints an earlier run left in `output_dir` and start afresh (Hugging
    /// Face's `overwrite_output_dir`); without it (or a resume) such a directory is refused.
    pub overwrite_output_dir: bool,
}

impl Default for TrainingArgs {
    fn default() -> Self {
        Self {
            output_dir: PathBuf::from("runs/latest"),
            epochs: 1.0,
            max_steps: None,
            batch_size: 16,
            eval_batch_size: 32,
            gradient_accumulation_steps: 1,
            learning_rate: 1e-3,
            schedule: ScheduleKind::Linear,
            warmup_steps: 0,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            eval_strategy: Strategy::Epoch,
            eval_steps: 100,
            save_strategy: Strategy::No,
            save_steps: 100,
            save_total_limit: 2,
            early_stopping_patience: None,
            metric_for_best_model: "loss".into(),
            greater_is_better: None,
            load_best_model_at_end: false,
            gradient_checkpointing: false,
            seed: 42,
            logging_steps: 10,
            max_eval_examples: 0,
            max_len: 128,
            overwrite_output_dir: false,
        }
    }
}

/// Hugging Face's default for `greater_is_better`: a metric whose name ends in `loss` is
/// minimised, and so (tunelab's addition) is a perplexity; every other metric (accuracy, F1, ...)
/// is maximised.
pub fn default_greater_is_better(metric: &str) -> bool {
    !(metric.ends_with("loss") || metric.ends_with("perplexity"))
}

impl TrainingArgs {
    /// Reads a TOML file; unknown keys and wrong types are errors naming the file and line.
    pub fn from_toml_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Self> {
        let args: Self = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
                .unwrap_or(0);
            Error::Data {
                path: path.to_string(),
                line,
                detail: e.message().to_string(),
            }
        })?;
        args.validate()?;
        Ok(args)
    }

    pub fn validate(&self) -> Result<()> {
        if self.batch_size == 0
            || self.gradient_accumulation_steps == 0
            || self.eval_batch_size == 0
        {
            return invalid(
                "training args",
                "batch sizes and gradient_accumulation_steps must be at least 1",
            );
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return invalid(
                "training args",
                format!("learning_rate {} must be positive", self.learning_rate),
            );
        }
        if self.max_steps.is_none() && self.epochs <= 0.0 {
            return invalid("training args", "set epochs > 0 or max_steps");
        }
        if self.load_best_model_at_end && self.eval_strategy == Strategy::No {
            return invalid(
                "training args",
                "load_best_model_at_end needs an eval_strategy (steps or epoch) to find the best model",
            );
        }
        if self.max_grad_norm < 0.0 || self.weight_decay < 0.0 {
            return invalid(
                "training args",
                "max_grad_norm and weight_decay cannot be negative",
            );
        }
        Ok(())
    }

    /// Whether a greater `metric_for_best_model` is better: `greater_is_better` if set, else
    /// Hugging Face's default ([`default_greater_is_better`]).
    pub fn resolved_greater_is_better(&self) -> bool {
        self.greater_is_better
            .unwrap_or_else(|| default_greater_is_better(&self.metric_for_best_model))
    }

    /// The number of optimizer steps for a training set of `n` examples.
    pub fn total_steps(&self, n: usize) -> usize {
        let per_epoch = n
            .div_ceil(self.batch_size * self.gradient_accumulation_steps)
            .max(1);
        self.max_steps
            .unwrap_or_else(|| ((per_epoch as f64) * self.epochs).ceil() as usize)
    }

    /// Optimizer steps per epoch for `n` training examples.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(self.batch_size * self.gradient_accumulation_steps)
            .max(1)
    }
}
