//! `tunelab finetune`: one method on one task, then the test score; saves the adapter.

use super::args::{SpeedArgs, TrainArgs};
use super::progress::TrainBar;
use super::{fmt_metrics, Outcome};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
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
    /// A shipped base (gpt-tiny, bert-tiny) or a model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    /// A JSONL or CSV file in the task's shape, instead of the built-in data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[command(flatten)]
    pub method: Box<MethodArgs>,
    #[command(flatten)]
    pub train: Box<TrainArgs>,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

/// Fine-tunes, prints the run's summary and test score, and says where the adapter is.
pub fn run(a: FinetuneArgs) -> Outcome {
    a.speed.apply();
    let task = a.task;
    let args = a.train.build()?;
    let loaded = finetune::load_base(&a.base).ok();
    if let Some(n) = loaded.as_ref().and_then(|b| b.notes.as_ref()) {
        eprintln!("note: {n}");
    }
    let tok = loaded.map(|b| b.tok);
    let spec = a.method.spec(tok.as_ref())?;
    tunelab::train::trainer::install_ctrl_c();
    let opts = FinetuneOptions {
        base: a.base,
        task,
        data: a.data,
        spec,
        args,
        train_limit: a.train_limit,
        resume: a.train.resume,
    };
    let r = finetune::finetune(&opts, &mut TrainBar::new())?;
    println!("{}", r.summary);
    if r.report.interrupted {
        println!(
            "interrupted at step {}: checkpoint saved in {}",
            r.report.state.step,
            opts.args.output_dir.display()
        );
    }
    if r.report.stopped_early {
        println!(
            "stopped early at step {} (best {} at step {:?})",
            r.report.state.step, opts.args.metric_for_best_model, r.report.state.best_step
        );
    }
    println!(
        "trained {} steps in {:.1} s (median step {:.1} ms)",
        r.report.state.step,
        r.report.seconds,
        r.report.median_step_seconds * 1e3
    );
    println!("test: {}", fmt_metrics(&r.test));
    println!("adapter: {}", r.adapter_dir.display());
    Ok(ExitCode::SUCCESS)
}
