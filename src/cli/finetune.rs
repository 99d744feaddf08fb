//! `tunelab finetune`: one method on one task, then the test score; saves the adapter.

use super::args::{BaseDtypeArgs, SpeedArgs, TrainArgs};
use super::progress::TrainBar;
use super::{fmt_metrics, Outcome};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::loaders::DataFiles;
use tunelab::data::tasks::Task;
use tunelab::lab::finetune::{self, FinetuneOptions};
use tunelab::peft::MethodArgs;

/// `finetune --help`'s description: the methods from the registry.
pub fn about() -> String {
    format!(
        "Fine-tune a base model on a task with one method, then evaluate it on the test split.\n\n{}",
        tunelab::peft::registry::help_table()
    )
}

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The task (built-in data from the synthetic world unless --data is given).
    #[arg(long, value_enum, ignore_case = true, default_value = "sentiment")]
    pub task: Task,
    /// A shipped base name (gpt-tiny, bert-tiny: always the model shipped with tunelab, whatever
    /// the current directory holds) or the path of a model directory (anything else; write
    /// ./gpt-tiny for a directory of that name).
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    #[command(flatten)]
    pub dtype: BaseDtypeArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    // Hugging Face Trainer options, and continuing an adapter (the trainer helper's block).
    /// Train this adapter further: a tunelab adapter directory or a PEFT LoRA one (PEFT's
    /// `is_trainable=True`). The method and its options come from its config; what trains is what
    /// it holds (plus the task head if it saved one).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Restore the weights of the best evaluation at the end (needs --eval-strategy steps or
    /// epoch): the test score and the saved adapter are then the best model's.
    #[arg(long)]
    pub load_best_model_at_end: bool,
    /// The validation metric that decides the best model and early stopping [default: loss].
    #[arg(long)]
    pub metric_for_best_model: Option<String>,
    /// Whether a greater --metric-for-best-model is better [default: false for names ending in
    /// loss or perplexity, else true].
    #[arg(long, action = clap::ArgAction::Set)]
    pub greater_is_better: Option<bool>,
    // End of the trainer helper's block.
    #[command(flatten)]
    pub method: Box<MethodArgs>,
    #[command(flatten)]
    pub train: Box<TrainArgs>,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

/// Fine-tunes, prints the run's summary and test score, and says where the adapter is.
pub fn run(a: FinetuneArgs) -> Outcome {
    // First: a signal while the base and the data load exits at once (130 / 143).
    tunelab::train::trainer::install_ctrl_c();
    a.speed.apply()?;
    let task = a.task;
    let mut args = a.train.build()?;
    args.load_best_model_at_end = a.load_best_model_at_end;
    if let Some(m) = &a.metric_for_best_model {
        args.metric_for_best_model = m.clone();
    }
    if a.greater_is_better.is_some() {
        args.greater_is_better = a.greater_is_better;
    }
    args.validate()?;
    if a.train_limit == Some(0) {
        return super::args::bad_option("--train-limit", "must be at least 1, got 0");
    }
    super::args::check_writable_dir("--output-dir", &args.output_dir)?;
    let loaded = finetune::load_base(&a.base).ok();
    if let Some(b) = &loaded {
        tunelab::train::task::check_fits(task, &b.model, &a.base).map_err(|e| match e {
            tunelab::Error::Invalid { detail, .. } => tunelab::Error::Invalid {
                op: "--task",
                detail,
            },
            e => e,
        })?;
    }
    if let Some(n) = loaded.as_ref().and_then(|b| b.notes.as_ref()) {
        eprintln!("note: {n}");
    }
    let tok = loaded.map(|b| b.tok);
    // Continuing an adapter: its own method, unless --method was given (then they must agree,
    // which `finetune_from` checks and reports naming both).
    let spec = match &a.adapter {
        Some(dir) if !flag_given("--method") => tunelab::io::adapter::read_config(dir)?.0,
        _ => a.method.spec(tok.as_ref())?,
    };
    for w in a.data.files().map(|f| f.warnings()).unwrap_or_default() {
        eprintln!("warning: {w}");
    }
    let opts = FinetuneOptions {
        base: a.base,
        task,
        data: a.data.files(),
        spec,
        args,
        train_limit: a.train_limit,
        resume: a.train.resume,
        base_dtype: a.dtype.dtype()?,
    };
    let r = finetune::finetune_from(&opts, a.adapter.as_deref(), &mut TrainBar::new())?;
    let steps = trained_steps(&r.report);
    if r.report.interrupted {
        // A run cut short is not a success: its checkpoint is saved, nothing else is written.
        println!("{}", r.summary);
        println!(
            "interrupted at step {}: checkpoint saved in {}; {steps}; continue with --resume",
            r.report.state.step,
            opts.args
                .output_dir
                .join(tunelab::io::checkpoint::training_dir_name(
                    r.report.state.step
                ))
                .display()
        );
        return Ok(ExitCode::from(
            tunelab::train::trainer::interrupt_exit_code(),
        ));
    }
    if let Some(dir) = &a.adapter {
        println!(
            "continued the {} adapter {}",
            opts.spec.name(),
            dir.display()
        );
    }
    println!("{}", r.summary);
    if let Some(q) = &r.quant {
        println!("{}", q.summary());
    }
    let m = &r.report.memory;
    println!(
        "memory at the peak step: weights {:.2} MB, gradients {:.2} MB, optimizer {:.2} MB, activations {:.2} MB",
        m.weights as f64 / 1e6,
        m.gradients as f64 / 1e6,
        m.optimizer as f64 / 1e6,
        m.activations as f64 / 1e6
    );
    if r.report.stopped_early {
        println!(
            "stopped early at step {} (best {} at step {:?})",
            r.report.state.step, opts.args.metric_for_best_model, r.report.state.best_step
        );
    }
    if let Some(best) = &r.report.restored_best {
        println!(
            "restored the best model: step {} ({} {:.4}); validation: {}",
            best.step,
            opts.args.metric_for_best_model,
            best.metrics
                .get(&opts.args.metric_for_best_model)
                .copied()
                .unwrap_or(f64::NAN),
            fmt_metrics(&best.metrics)
        );
    }
    println!(
        "{steps} in {:.1} s (median step {:.1} ms)",
        r.report.seconds,
        r.report.median_step_seconds * 1e3
    );
    if r.test.is_empty() {
        println!("test: no test split (pass --test-file to score one)");
    } else {
        println!("test: {}", fmt_metrics(&r.test));
    }
    println!("adapter: {}", r.adapter_dir.display());
    Ok(ExitCode::SUCCESS)
}

/// "trained N steps", and for a resumed run how many steps there are in all.
fn trained_steps(r: &tunelab::train::trainer::TrainReport) -> String {
    let here = r.state.step - r.start_step;
    if r.start_step == 0 {
        format!("trained {here} steps")
    } else {
        format!(
            "trained {here} steps (resumed at step {}; {} steps in all)",
            r.start_step, r.state.step
        )
    }
}

/// Whether `flag` was given on the command line (as `flag VALUE` or `flag=VALUE`), which clap's
/// derive cannot tell from a default value: `--method` has one, and with `--adapter` only an
/// explicit `--method` is checked against the adapter's.
fn flag_given(flag: &str) -> bool {
    std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}=")))
}

/// A user's data instead of the built-in splits: one file that is split three ways, or the
/// splits themselves under the names of Hugging Face's example scripts (`run_glue.py`'s
/// `--train_file`, `--validation_file`, `--test_file`).
#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// A JSONL or CSV file in the task's shape, instead of the built-in data: split in file
    /// order, the first 80% train, the next 10% validation, the last 10% test (a tenth is at
    /// least one example; the file needs 3).
    #[arg(long, conflicts_with_all = ["train_file", "validation_file", "test_file"])]
    pub data: Option<PathBuf>,
    /// Your own training split (JSONL or CSV): every example trains. Needs --validation-file.
    #[arg(long, requires = "validation_file")]
    pub train_file: Option<PathBuf>,
    /// Your own validation split: evaluation during training (early stopping, best model) and
    /// `sweep` score it.
    #[arg(long, requires = "train_file")]
    pub validation_file: Option<PathBuf>,
    /// Your own test split, scored once at the end (without it there is no test score).
    #[arg(long, requires = "train_file")]
    pub test_file: Option<PathBuf>,
}

impl DataArgs {
    /// The files given, or `None` for the built-in data.
    pub fn files(&self) -> Option<DataFiles> {
        if let Some(p) = &self.data {
            return Some(DataFiles::One(p.clone()));
        }
        Some(DataFiles::Splits {
            train: self.train_file.clone()?,
            validation: self.validation_file.clone()?,
            test: self.test_file.clone(),
        })
    }
}
