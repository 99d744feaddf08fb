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
    /// A learning rate of its own for the task's new head (a classification, tagging or span
    /// head; a language model's tied head is not new and has none), instead of
    /// `learning_rate`: the head starts from random weights while the base or the adapters start
    /// from something good, so it can take larger steps. The schedule scales it as it scales
    /// `learning_rate`. `None`, the default: the head trains at `learning_rate`. (Hugging Face's
    /// Trainer has no such field: there it takes a custom optimizer with two parameter groups.)
    pub head_learning_rate: Option<f64>,
    pub seed: u64,
    pub logging_steps: usize,
    /// Cap on the evaluation examples per split (0 = all), to keep evaluation cheap.
    pub max_eval_examples: usize,
    /// Delete the checkpoints an earlier run left in `output_dir` and start afresh (Hugging
    /// Face's `overwrite_output_dir`); without it (or a resume) such a directory is refused.
    pub overwrite_output_dir: bool,
    /// Tokens per sequence at most: every example is encoded to at most this many (a question
    /// and context that do not fit, or a prompt that leaves no room for its response, is an
    /// error naming its file and line). `None`, the default: the model's own `max_len`; more
    /// than the model's is an error.
    pub max_len: Option<usize>,
    /// NEFTune (Hugging Face's `neftune_noise_alpha`): during training, uniform noise of bound
    /// α/√(L·d) on the token embeddings ([`crate::train::neftune`]); `None`: off.
    pub neftune_noise_alpha: Option<f64>,
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
            head_learning_rate: None,
            seed: 42,
            logging_steps: 10,
            max_eval_examples: 0,
            overwrite_output_dir: false,
            max_len: None,
            neftune_noise_alpha: None,
        }
    }
}

/// Hugging Face's default for `greater_is_better`: a metric whose name ends in `loss` is
/// minimised, and so (tunelab's additions) are a perplexity and the KL from the reference
/// policy (preference tuning and GRPO report `kl`); every other metric (accuracy, F1, ...)
/// is maximised.
pub fn default_greater_is_better(metric: &str) -> bool {
    !(metric.ends_with("loss") || metric.ends_with("perplexity") || metric == "kl")
}

/// The most optimizer steps a run may take (`--max-steps`, or epochs times the steps of one):
/// ten million, weeks of training at the speed of the tiny models; a larger budget is a typo.
pub const MAX_STEPS: usize = 10_000_000;
/// The most passes over the training data (`--epochs`).
pub const MAX_EPOCHS: f64 = 1e6;
/// The largest batch (`--batch-size`, `eval_batch_size`).
pub const MAX_BATCH_SIZE: usize = 1 << 16;
/// The most micro-batches per optimizer step (`--grad-accum`).
pub const MAX_GRADIENT_ACCUMULATION_STEPS: usize = 1 << 16;
/// The longest sequence `max_len` may ask for.
pub const MAX_LEN: usize = 1 << 20;

/// Every metric name an evaluation reports, over all tasks (what `metric_for_best_model` may
/// name; which ones a task reports is [`crate::train::task::TaskModel::metric_names`]).
pub const METRIC_NAMES: [&str; 13] = [
    "loss",
    "score",
    "accuracy",
    "macro_f1",
    "entity_f1",
    "exact_match",
    "f1",
    "perplexity",
    "rouge_l",
    "execution_accuracy",
    "margin",
    "reward",
    "kl",
];

/// A field of [`TrainingArgs`] that [`TrainingArgs::validate`] can refuse.
#[derive(Debug, Clone, Copy)]
enum Key {
    BatchSize,
    EvalBatchSize,
    GradAccum,
    MaxSteps,
    EvalSteps,
    SaveSteps,
    LoggingSteps,
    WarmupSteps,
    Patience,
    MaxLen,
    Epochs,
    LearningRate,
    HeadLearningRate,
    WeightDecay,
    MaxGradNorm,
    MetricForBest,
    LoadBest,
    Neftune,
}

impl Key {
    /// The TOML key.
    fn name(self) -> &'static str {
        match self {
            Key::BatchSize => "batch_size",
            Key::EvalBatchSize => "eval_batch_size",
            Key::GradAccum => "gradient_accumulation_steps",
            Key::MaxSteps => "max_steps",
            Key::EvalSteps => "eval_steps",
            Key::SaveSteps => "save_steps",
            Key::LoggingSteps => "logging_steps",
            Key::WarmupSteps => "warmup_steps",
            Key::Patience => "early_stopping_patience",
            Key::MaxLen => "max_len",
            Key::Epochs => "epochs",
            Key::LearningRate => "learning_rate",
            Key::HeadLearningRate => "head_learning_rate",
            Key::WeightDecay => "weight_decay",
            Key::MaxGradNorm => "max_grad_norm",
            Key::MetricForBest => "metric_for_best_model",
            Key::LoadBest => "load_best_model_at_end",
            Key::Neftune => "neftune_noise_alpha",
        }
    }

    /// The command-line flag that sets it, if one does.
    fn flag(self) -> Option<&'static str> {
        Some(match self {
            Key::BatchSize => "--batch-size",
            Key::GradAccum => "--grad-accum",
            Key::MaxSteps => "--max-steps",
            Key::EvalSteps => "--eval-steps",
            Key::SaveSteps => "--save-steps",
            Key::WarmupSteps => "--warmup-steps",
            Key::Patience => "--early-stopping-patience",
            Key::Epochs => "--epochs",
            Key::LearningRate => "--lr",
            Key::HeadLearningRate => "--head-learning-rate",
            Key::WeightDecay => "--weight-decay",
            Key::MaxGradNorm => "--max-grad-norm",
            Key::MetricForBest => "--metric-for-best-model",
            Key::LoadBest => "--load-best-model-at-end",
            Key::Neftune => "--neftune-noise-alpha",
            Key::EvalBatchSize | Key::LoggingSteps | Key::MaxLen => return None,
        })
    }
}

/// A refused value: its key and what is wrong with it.
struct Bad {
    key: Key,
    detail: String,
}

/// The 1-based line of a TOML file that sets `key` (or its old name), 0 if none does.
fn key_line(text: &str, key: Key) -> usize {
    let names: &[&str] = match key {
        Key::MetricForBest => &["metric_for_best_model", "metric_for_best"],
        k => &[k.name()],
    };
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            names.iter().any(|n| {
                l.strip_prefix(n)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            })
        })
        .map_or(0, |i| i + 1)
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
        args.check().map_err(|bad| Error::Data {
            path: path.to_string(),
            line: key_line(text, bad.key),
            detail: format!("{} {}", bad.key.name(), bad.detail),
        })?;
        Ok(args)
    }

    /// Checks every value is finite and within its range; the error names the option as a
    /// command-line flag (`--batch-size`), or the TOML key for one without a flag.
    pub fn validate(&self) -> Result<()> {
        self.check().map_err(|bad| Error::Invalid {
            op: bad.key.flag().unwrap_or("training args"),
            detail: format!("{} {}", bad.key.name(), bad.detail),
        })
    }

    /// The first value out of its range: which key, and what is wrong.
    fn check(&self) -> std::result::Result<(), Bad> {
        use Key::*;
        let bad = |key, detail: String| Err(Bad { key, detail });
        let count = |key, v: usize, max: usize| {
            if v == 0 || v > max {
                bad(key, format!("must be between 1 and {max}, got {v}"))
            } else {
                Ok(())
            }
        };
        count(BatchSize, self.batch_size, MAX_BATCH_SIZE)?;
        count(EvalBatchSize, self.eval_batch_size, MAX_BATCH_SIZE)?;
        count(
            GradAccum,
            self.gradient_accumulation_steps,
            MAX_GRADIENT_ACCUMULATION_STEPS,
        )?;
        // 0 steps is allowed: a run that only evaluates and saves (a continued adapter as it is).
        if let Some(s) = self.max_steps.filter(|&s| s > MAX_STEPS) {
            return bad(MaxSteps, format!("must be at most {MAX_STEPS}, got {s}"));
        }
        count(EvalSteps, self.eval_steps, MAX_STEPS)?;
        count(SaveSteps, self.save_steps, MAX_STEPS)?;
        count(LoggingSteps, self.logging_steps, MAX_STEPS)?;
        if self.warmup_steps > MAX_STEPS {
            return bad(
                WarmupSteps,
                format!("must be at most {MAX_STEPS}, got {}", self.warmup_steps),
            );
        }
        if let Some(p) = self.early_stopping_patience {
            count(Patience, p, MAX_STEPS)?;
        }
        if let Some(m) = self.max_len {
            count(MaxLen, m, MAX_LEN)?;
        }
        if !(self.epochs.is_finite() && self.epochs > 0.0 && self.epochs <= MAX_EPOCHS) {
            return bad(
                Epochs,
                format!(
                    "must be a number above 0 and at most {MAX_EPOCHS}, got {}",
                    self.epochs
                ),
            );
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return bad(
                LearningRate,
                format!(
                    "must be a finite number above 0, got {}",
                    self.learning_rate
                ),
            );
        }
        if let Some(lr) = self.head_learning_rate {
            if !(lr.is_finite() && lr > 0.0) {
                return bad(
                    HeadLearningRate,
                    format!("must be a finite number above 0, got {lr}"),
                );
            }
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(
                WeightDecay,
                format!(
                    "must be a finite number, 0 or more, got {}",
                    self.weight_decay
                ),
            );
        }
        if let Some(a) = self.neftune_noise_alpha {
            if !(a.is_finite() && a >= 0.0) {
                return bad(
                    Neftune,
                    format!("must be a finite number, 0 or more, got {a}"),
                );
            }
        }
        if !(self.max_grad_norm.is_finite() && self.max_grad_norm >= 0.0) {
            return bad(
                MaxGradNorm,
                format!(
                    "must be a finite number, 0 (no clipping) or more, got {}",
                    self.max_grad_norm
                ),
            );
        }
        if !METRIC_NAMES.contains(&self.metric_for_best_model.as_str()) {
            return bad(
                MetricForBest,
                format!(
                    "{:?} is not a metric tunelab reports (expected one of {})",
                    self.metric_for_best_model,
                    METRIC_NAMES.join(", ")
                ),
            );
        }
        if self.load_best_model_at_end && self.eval_strategy == Strategy::No {
            return bad(
                LoadBest,
                "needs an eval_strategy (steps or epoch) to find the best model".into(),
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

    /// The number of optimizer steps for a training set of `n` examples (saturating: see
    /// [`TrainingArgs::checked_total_steps`] for the budget check).
    pub fn total_steps(&self, n: usize) -> usize {
        let per_epoch = self.steps_per_epoch(n);
        self.max_steps
            .unwrap_or_else(|| ((per_epoch as f64) * self.epochs).ceil() as usize)
    }

    /// [`TrainingArgs::total_steps`], or an error naming `--epochs` when it exceeds
    /// [`MAX_STEPS`] (a run that would not end).
    pub fn checked_total_steps(&self, n: usize) -> Result<usize> {
        let total = self.total_steps(n);
        if total > MAX_STEPS {
            return invalid(
                "--epochs",
                format!(
                    "epochs {} over {n} examples is {total} optimizer steps, more than the most a \
                     run may take ({MAX_STEPS}); lower --epochs or set --max-steps",
                    self.epochs
                ),
            );
        }
        Ok(total)
    }

    /// Optimizer steps per epoch for `n` training examples.
    pub fn steps_per_epoch(&self, n: usize) -> usize {
        n.div_ceil(
            self.batch_size
                .saturating_mul(self.gradient_accumulation_steps),
        )
        .max(1)
    }
}
