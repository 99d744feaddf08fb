//! `tunelab compare`: every method on one task, same data, budget and seeds, measured.

use super::args::{check_writable_dir, check_writable_file, in_range, BaseDtypeArgs, SpeedArgs};
use super::progress::CompareBar;
use super::Outcome;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::tasks::Task;
use tunelab::lab::{compare, finetune};
use tunelab::train::progress::Progress;

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The task, with its built-in data from the synthetic world.
    #[arg(long, value_enum, ignore_case = true, default_value = "sentiment")]
    pub task: Task,
    /// A shipped base (gpt-tiny, bert-tiny) or a model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    /// A demo-sized run (a tenth of the budget, small evaluation, one seed): seconds, not
    /// minutes.
    #[arg(long)]
    pub quick: bool,
    /// Optimizer steps per method (default 50; 15 with --quick).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Sequences per batch (default 16; 8 with --quick).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Use only the first N training examples for the main columns.
    #[arg(long)]
    pub train_limit: Option<usize>,
    /// Examples of the low-data column (default 64; 16 with --quick; 0 skips it).
    #[arg(long)]
    pub low_data: Option<usize>,
    /// Optimizer steps of each low-data run (default 15; 10 with --quick).
    #[arg(long)]
    pub low_data_steps: Option<usize>,
    /// Evaluate on at most this many examples per split (default 150; 48 with --quick).
    #[arg(long)]
    pub max_eval_examples: Option<usize>,
    /// The first seed; run k of every method uses seed + k (heads, methods, data order,
    /// dropout; the examples are the same for every seed).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Runs per method, each with its own seed; the score columns report the mean and a
    /// Student-t 95% interval over them (default 3; 1 with --quick, whose intervals are over
    /// test examples).
    #[arg(long)]
    pub seeds: Option<usize>,
    /// The method every other is paired against, by label or method name (default: full).
    #[arg(long)]
    pub baseline: Option<String>,
    /// Steps each method trains alone, after the scored runs, for the step-time column
    /// (default 8; 4 with --quick; 0 takes the times of the scored runs, which share cores).
    #[arg(long)]
    pub timing_steps: Option<usize>,
    /// Train with gradient checkpointing (Hugging Face's `gradient_checkpointing`): each block
    /// is recomputed in backward, so the activ column falls and the step time rises.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Only these methods (comma-separated names: full, lora, prompt, ...; a method name picks
    /// all its entries, so `lora` runs the LoRA, PiSSA and OLoRA rows).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Print everything measured as JSON (settings, rows, per-seed runs, intervals, paired
    /// comparisons, how step times were measured).
    #[arg(long)]
    pub json: bool,
    /// Also write that JSON into this file (the table still prints).
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Also write loss curves and score versus trainable parameters as SVG into this
    /// directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Also write a self-contained HTML report (table, charts with error bars) into this
    /// directory as compare.html.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// With --base-dtype bf16 or nf4, every row whose method leaves the base frozen runs on
    /// that base (LoRA on nf4 is QLoRA); the full fine-tuning rows, which train the base, are
    /// left out. Without it each row runs on the base its line-up entry names (f32, nf4 for
    /// the qlora row).
    #[command(flatten)]
    pub dtype: BaseDtypeArgs,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

impl CompareArgs {
    /// compare's options: the defaults (or --quick's), then each option given.
    fn options(&self) -> tunelab::Result<compare::CompareOptions> {
        let mut opts = compare::CompareOptions::new(&self.base, self.task);
        if self.quick {
            opts = opts.quick();
        }
        opts.steps = self.steps.unwrap_or(opts.steps);
        opts.batch_size = self.batch_size.unwrap_or(opts.batch_size);
        opts.train_limit = self.train_limit;
        opts.low_data = self
            .low_data
            .map(|n| Some(n).filter(|&n| n > 0))
            .unwrap_or(opts.low_data);
        opts.low_data_steps = self.low_data_steps.unwrap_or(opts.low_data_steps);
        opts.max_eval_examples = self.max_eval_examples.unwrap_or(opts.max_eval_examples);
        opts.seed = self.seed;
        opts.seeds = self.seeds.unwrap_or(opts.seeds);
        if opts.seeds == 0 {
            return Err(tunelab::Error::Invalid {
                op: "--seeds",
                detail: "at least 1 run per method is needed".into(),
            });
        }
        opts.baseline = self.baseline.clone().unwrap_or(opts.baseline);
        opts.timing_steps = self.timing_steps.unwrap_or(opts.timing_steps);
        use tunelab::train::args::{MAX_BATCH_SIZE, MAX_STEPS};
        in_range("--steps", opts.steps, 1, MAX_STEPS)?;
        in_range("--batch-size", opts.batch_size, 1, MAX_BATCH_SIZE)?;
        in_range("--low-data-steps", opts.low_data_steps, 1, MAX_STEPS)?;
        in_range("--seeds", opts.seeds, 1, 1000)?;
        in_range("--timing-steps", opts.timing_steps, 0, MAX_STEPS)?;
        if let Some(n) = opts.train_limit {
            in_range("--train-limit", n, 1, usize::MAX)?;
        }
        opts.only = self.only.clone();
        opts.gradient_checkpointing = self.gradient_checkpointing;
        Ok(opts)
    }
}

/// Runs the comparison and prints the table (or JSON), plus the files asked for.
pub fn run(a: CompareArgs) -> Outcome {
    a.speed.apply()?;
    let opts = a.options()?;
    // Where the results go is checked before anything trains.
    if let Some(path) = &a.json_out {
        check_writable_file("--json-out", path)?;
    }
    if let Some(dir) = &a.plot {
        check_writable_dir("--plot", dir)?;
    }
    if let Some(dir) = &a.report {
        check_writable_dir("--report", dir)?;
    }
    let b = finetune::load_base(&a.base)?;
    let init = compare::prompt_init(&b.tok)?;
    let started = std::time::Instant::now();
    let mut entries = compare::default_entries(opts.task, init)?;
    let dtype = a.dtype.dtype()?;
    if dtype != tunelab::nn::BaseDtype::F32 {
        let before = entries.len();
        entries.retain(|e| !matches!(e.spec, tunelab::peft::MethodSpec::Full { .. }));
        for e in &mut entries {
            e.base_dtype = dtype;
        }
        eprintln!(
            "note: --base-dtype {}: every row on that base; {} full fine-tuning row(s) left out (they train the base)",
            dtype.name(),
            before - entries.len()
        );
    }
    let selected = compare::selected(&opts, &entries);
    if selected.is_empty() {
        return Err(tunelab::Error::Invalid {
            op: "--only",
            detail: format!(
                "{:?} names no method of the line-up ({})",
                opts.only,
                entries
                    .iter()
                    .map(|e| e.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    // An explicit baseline must be in the run; the default one is skipped when it is not.
    if let Some(name) = &a.baseline {
        if compare::baseline_label(&opts, &selected).is_none() {
            return Err(tunelab::Error::Invalid {
                op: "--baseline",
                detail: format!(
                    "{name:?} is not among this run's methods ({})",
                    selected
                        .iter()
                        .map(|e| e.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    let mut bar = CompareBar::new(&opts, &entries);
    let rows = compare::compare(&opts, &entries, &mut bar)?;
    bar.finish();
    let json =
        || serde_json::to_string_pretty(&compare::summary(&opts, &rows)).expect("rows serialise");
    if let Some(path) = &a.json_out {
        tunelab::io::atomic_write(path, json().as_bytes())?;
    }
    if let Some(dir) = &a.plot {
        for path in tunelab::lab::plot::compare_charts(dir, &opts, &rows)? {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(dir) = &a.report {
        let path = tunelab::lab::report::write(dir, &opts, &rows)?;
        eprintln!("wrote {}", path.display());
    }
    if a.json {
        println!("{}", json());
    } else {
        print!("{}", compare::table(&opts, &rows));
        println!("total wall time {:.1} s", started.elapsed().as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}
