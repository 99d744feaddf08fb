//! Argument groups shared by several commands: speed options and training options.

use clap::Args;
use std::path::PathBuf;
use tunelab::train::args::{ScheduleKind, Strategy};
use tunelab::train::TrainingArgs;

/// Speed options of the training commands.
#[derive(Args, Debug, Clone)]
pub struct SpeedArgs {
    /// Threads for the kernels (default: TUNELAB_THREADS, else all cores). Results do not
    /// depend on it.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep subnormal floats while training (by default they are flushed to zero, which is
    /// much faster on x86-64 and changes nothing at f32 precision).
    #[arg(long)]
    pub no_flush_denormals: bool,
}

/// The most kernel threads `--threads` may ask for.
pub const MAX_THREADS: usize = 1024;

impl SpeedArgs {
    /// Sets the thread count and the float mode; `--threads` must be between 1 and
    /// [`MAX_THREADS`].
    pub fn apply(&self) -> tunelab::Result<()> {
        if let Some(n) = self.threads {
            if n == 0 || n > MAX_THREADS {
                return Err(tunelab::Error::Invalid {
                    op: "--threads",
                    detail: format!("must be between 1 and {MAX_THREADS}, got {n}"),
                });
            }
            tunelab::kernels::set_threads(n);
        }
        tunelab::kernels::denormal::set_flush_while_training(!self.no_flush_denormals);
        Ok(())
    }
}

/// An invalid-option error naming `flag`.
pub fn bad_option<T>(flag: &'static str, detail: impl Into<String>) -> tunelab::Result<T> {
    Err(tunelab::Error::Invalid {
        op: flag,
        detail: detail.into(),
    })
}

/// `v` is between `lo` and `hi`, or an error naming `flag`.
pub fn in_range(flag: &'static str, v: usize, lo: usize, hi: usize) -> tunelab::Result<()> {
    if v < lo || v > hi {
        let range = if hi == usize::MAX {
            format!("at least {lo}")
        } else {
            format!("between {lo} and {hi}")
        };
        return bad_option(flag, format!("must be {range}, got {v}"));
    }
    Ok(())
}

/// Checks before any work that the directory `dir` given by `flag` can be written: it is
/// created if missing, and a file is created in it and removed. A run that would fail to write
/// its results only after training fails here instead.
pub fn check_writable_dir(flag: &'static str, dir: &std::path::Path) -> tunelab::Result<()> {
    let fail = |e: std::io::Error| {
        bad_option(
            flag,
            format!("{} is not a writable directory: {e}", dir.display()),
        )
    };
    if dir.exists() && !dir.is_dir() {
        return bad_option(
            flag,
            format!("{} exists and is not a directory", dir.display()),
        );
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        return fail(e);
    }
    let probe = dir.join(format!(".tunelab-write-check-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => fail(e),
    }
}

/// Checks before any work that the file `path` given by `flag` can be written (it is written
/// atomically, beside itself, so its directory must be writable): not a directory, and its
/// directory writable.
pub fn check_writable_file(flag: &'static str, path: &std::path::Path) -> tunelab::Result<()> {
    if path.is_dir() {
        return bad_option(
            flag,
            format!("{} is a directory, not a file", path.display()),
        );
    }
    if path.exists() && std::fs::OpenOptions::new().append(true).open(path).is_err() {
        return bad_option(
            flag,
            format!("{} exists and cannot be written", path.display()),
        );
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    check_writable_dir(flag, parent)
}

/// Training options, Hugging Face's `TrainingArguments` by name; each overrides the value from
/// `--config`, whose defaults are those of `TrainingArgs`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// A TOML file with training arguments (output_dir, epochs, batch_size, learning_rate, ...).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where checkpoints, the JSONL log and the final adapter go [default: runs/latest].
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Passes over the training data [default: 1].
    #[arg(long)]
    pub epochs: Option<f64>,
    /// Stop after this many optimizer steps (overrides --epochs).
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Sequences per micro-batch [default: 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Micro-batches per optimizer step (gradient accumulation) [default: 1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Peak learning rate [default: 1e-3].
    #[arg(long)]
    pub lr: Option<f64>,
    /// The learning-rate schedule after warmup [default: linear].
    #[arg(long, value_enum)]
    pub schedule: Option<ScheduleKind>,
    /// Optimizer steps of linear warmup from 0 to the peak rate [default: 0].
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// AdamW's decoupled weight decay (biases and LayerNorms excluded) [default: 0].
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Clip the global gradient norm to this (0: off) [default: 1].
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// When to evaluate on the validation split [default: epoch].
    #[arg(long, value_enum)]
    pub eval_strategy: Option<Strategy>,
    /// Evaluate every N optimizer steps, with --eval-strategy steps [default: 100].
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// When to write a checkpoint into the output directory [default: no].
    #[arg(long, value_enum)]
    pub save_strategy: Option<Strategy>,
    /// Save every N optimizer steps, with --save-strategy steps [default: 100].
    #[arg(long)]
    pub save_steps: Option<usize>,
    /// Stop after this many evaluations without improvement.
    #[arg(long)]
    pub early_stopping_patience: Option<usize>,
    /// Seed of the built-in data, the head's and the method's initialisation, and the data
    /// order [default: 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Evaluate on at most this many examples per split (0: all) [default: 0].
    #[arg(long)]
    pub max_eval_examples: Option<usize>,
    /// Continue from the newest checkpoint in the output directory; one written by a run with
    /// other arguments (seed, method, task, data, base) is refused, naming what differs.
    #[arg(long, conflicts_with = "overwrite_output_dir")]
    pub resume: bool,
    /// Delete the checkpoints an earlier run left in --output-dir and start afresh (without it,
    /// or --resume, a directory holding checkpoints is refused).
    #[arg(long)]
    pub overwrite_output_dir: bool,
    /// Keep only each block's input and recompute the block in backward (Hugging Face's
    /// `gradient_checkpointing`): activation memory falls to about one block's, a step costs
    /// about one more forward.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// A learning rate of its own for the task's new head (classification, tagging or span),
    /// instead of --lr; e.g. 10 times --lr for a fresh head on a LoRA model.
    #[arg(long, value_name = "LR")]
    pub head_learning_rate: Option<f64>,
    /// NEFTune (Hugging Face's `neftune_noise_alpha`): while training, add uniform noise in
    /// ±alpha/√(L·d) to the token embeddings (L the batch's sequence length, d the hidden size);
    /// evaluation and generation see none. Works with every method; the paper uses 5 to 15.
    #[arg(long, value_name = "ALPHA")]
    pub neftune_noise_alpha: Option<f64>,
}

impl TrainArgs {
    /// The training arguments: `--config` (or the defaults), then each option given here.
    pub fn build(&self) -> tunelab::Result<TrainingArgs> {
        let mut a = match &self.config {
            Some(p) => TrainingArgs::from_toml_file(p)?,
            None => TrainingArgs::default(),
        };
        macro_rules! set {
            ($($f:ident => $t:ident),*) => { $(if let Some(v) = self.$f.clone() { a.$t = v; })* };
        }
        set!(output_dir => output_dir, epochs => epochs, batch_size => batch_size, grad_accum => gradient_accumulation_steps,
             lr => learning_rate, schedule => schedule, warmup_steps => warmup_steps, weight_decay => weight_decay,
             max_grad_norm => max_grad_norm, eval_strategy => eval_strategy, eval_steps => eval_steps,
             save_strategy => save_strategy, save_steps => save_steps, seed => seed, max_eval_examples => max_eval_examples);
        if self.max_steps.is_some() {
            a.max_steps = self.max_steps;
        }
        if self.gradient_checkpointing {
            a.gradient_checkpointing = true;
        }
        if self.overwrite_output_dir {
            a.overwrite_output_dir = true;
        }
        if self.early_stopping_patience.is_some() {
            a.early_stopping_patience = self.early_stopping_patience;
        }
        if self.neftune_noise_alpha.is_some() {
            a.neftune_noise_alpha = self.neftune_noise_alpha;
        }
        if self.head_learning_rate.is_some() {
            a.head_learning_rate = self.head_learning_rate;
        }
        a.validate()?;
        Ok(a)
    }
}

/// How the frozen base is stored: `--base-dtype` and `--double-quant`, on every command that
/// loads a base.
#[derive(Args, Debug, Clone, Default)]
pub struct BaseDtypeArgs {
    /// Store the base's block Linears (attention and MLP projections) in f32, bf16 or nf4
    /// (QLoRA's 4-bit NormalFloat, blocks of 64, bitsandbytes' layout); embeddings, LayerNorms,
    /// biases and heads stay f32. A quantised weight is dequantised a tile at a time inside its
    /// matmul and never trains: LoRA on an nf4 base is QLoRA; full fine-tuning is refused
    /// [default: f32].
    #[arg(long, value_enum)]
    pub base_dtype: Option<DtypeArg>,
    /// With --base-dtype nf4: quantise the block constants themselves to 8 bits in blocks of
    /// 256 (QLoRA's double quantisation, bitsandbytes' compress_statistics): about 4.127 bits
    /// per value instead of 4.5.
    #[arg(long)]
    pub double_quant: bool,
}

/// `--base-dtype`'s values.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtypeArg {
    F32,
    Bf16,
    Nf4,
}

impl BaseDtypeArgs {
    /// The dtype; `--double-quant` without nf4 is refused.
    pub fn dtype(&self) -> tunelab::Result<tunelab::nn::BaseDtype> {
        use tunelab::nn::BaseDtype;
        Ok(match (self.base_dtype, self.double_quant) {
            (Some(DtypeArg::Nf4), double_quant) => BaseDtype::Nf4 { double_quant },
            (_, true) => {
                return bad_option(
                    "--double-quant",
                    "quantises NF4's block constants: use it with --base-dtype nf4",
                )
            }
            (Some(DtypeArg::Bf16), false) => BaseDtype::Bf16,
            (None | Some(DtypeArg::F32), false) => BaseDtype::F32,
        })
    }
}
