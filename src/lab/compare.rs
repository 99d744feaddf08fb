//! `tunelab compare`: every method on the same task, data, step budget and seed, measured.
//!
//! Each row comes from fine-tuning runs in this process: trainable parameters; the memory ledger
//! of the peak step (weights, gradients, optimizer state, activations); the median optimizer-step
//! time; validation and test scores; the test score of the same method trained on a few examples
//! (low data); forgetting (the change in LM loss on held-out pre-training text); the size of the
//! saved adapter; and the wall time.

use super::finetune::{load_base, train_method, FinetuneOptions, Trained};
use super::forgetting::{Forgetting, HeldOut};
use super::sweep::Settings;
use crate::data::tasks::Task;
use crate::data::tokenizer::Tokenizer;
use crate::error::Result;
use crate::peft::method::ExampleContext;
use crate::peft::{registry, MethodSpec};
use crate::train::args::Strategy;
use crate::train::progress::{LogEntry, Progress};
use crate::train::trainer::{self, Memory, Split, TrainTask};
use crate::train::TrainingArgs;
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One method with the learning rate it is compared at. PEFT methods train few parameters from
/// a neutral start and take larger steps than full fine-tuning, and the best rate differs by
/// task, so each task's rate comes from a `tunelab sweep` of that entry on that task's
/// validation split, kept in `configs/compare.toml` ([`crate::lab::sweep::Settings`]); an entry
/// the file lacks for a task uses the registry's rate ([`registry::compare_examples`]), and
/// `lr_source` says which.
#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub spec: MethodSpec,
    pub lr: f64,
    /// Where `lr` came from.
    pub lr_source: LrSource,
}

/// Where an entry's learning rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSource {
    /// A sweep on the task's validation split (`configs/compare.toml`).
    Sweep,
    /// The registry's rate: no sweep of this entry on this task is in the settings file.
    Registry,
}

/// The words whose token ids prompt tuning's soft prompt starts from in compare's line-up.
pub const PROMPT_INIT_TEXT: &str = "the review is good or bad";

/// The token ids of [`PROMPT_INIT_TEXT`] under `tok`, for [`default_entries`].
pub fn prompt_init(tok: &Tokenizer) -> Result<Vec<usize>> {
    Ok(tok
        .encode(PROMPT_INIT_TEXT, false)?
        .into_iter()
        .map(|i| i as usize)
        .collect())
}

/// The default line-up on `task`: every method's compare rows from the registry
/// ([`crate::peft::registry::compare_examples`]), in its order, each at the learning rate a sweep
/// chose for `task` in the settings compiled into the binary ([`Settings::compiled`]), else at
/// the registry's rate. `prompt_init` are token ids that prompt tuning starts from (empty:
/// random init).
pub fn default_entries(task: Task, prompt_init: Vec<usize>) -> Result<Vec<Entry>> {
    Ok(entries_with(task, prompt_init, &Settings::compiled()?))
}

/// [`default_entries`] with the learning rates of `settings`.
pub fn entries_with(task: Task, prompt_init: Vec<usize>, settings: &Settings) -> Vec<Entry> {
    let ctx = ExampleContext {
        vocab_init: prompt_init,
    };
    registry::compare_examples(&ctx)
        .into_iter()
        .map(|c| {
            let swept = settings.get(task, c.label).map(|s| s.lr);
            Entry {
                label: c.label.to_string(),
                spec: c.spec,
                lr: swept.unwrap_or(c.lr),
                lr_source: if swept.is_some() {
                    LrSource::Sweep
                } else {
                    LrSource::Registry
                },
            }
        })
        .collect()
}

/// The run's settings.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub base: String,
    pub task: Task,
    pub steps: usize,
    pub batch_size: usize,
    pub train_limit: Option<usize>,
    /// Also train every method on only this many examples (the low-data column).
    pub low_data: Option<usize>,
    /// Optimizer steps of the low-data runs (a few examples need fewer steps: 40 steps of 16
    /// are 10 epochs of 64 examples).
    pub low_data_steps: usize,
    /// Batches of 16 held-out windows that forgetting is measured on (at most 4, the 64 windows
    /// `pretrain` validates on).
    pub heldout_batches: usize,
    pub max_eval_examples: usize,
    pub seed: u64,
    pub only: Vec<String>,
    /// Where runs and adapters are written (`runs/compare/<label>`, e.g. `runs/compare/lora-r-8-q-v`).
    pub out_dir: PathBuf,
}

impl CompareOptions {
    /// The default run: 120 steps of batch 16, a 64-example low-data column trained for 40
    /// steps, 200 evaluation examples per split, forgetting on 64 held-out windows. It fits in
    /// under three minutes on two cores.
    pub fn new(base: &str, task: Task) -> Self {
        Self {
            base: base.to_string(),
            task,
            steps: 120,
            batch_size: 16,
            train_limit: None,
            low_data: Some(64),
            low_data_steps: 40,
            heldout_batches: 4,
            max_eval_examples: 200,
            seed: 42,
            only: vec![],
            out_dir: PathBuf::from("runs").join("compare"),
        }
    }

    /// A demo-sized run (`--quick`): every method still runs, on a tenth of the budget.
    pub fn quick(mut self) -> Self {
        self.steps = 15;
        self.batch_size = 8;
        self.low_data = Some(16);
        self.low_data_steps = 10;
        self.heldout_batches = 1;
        self.max_eval_examples = 48;
        self
    }
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    pub trainable_params: usize,
    pub total_params: usize,
    pub trainable_pct: f64,
    pub lr: f64,
    /// Whether `lr` was chosen by a sweep on validation or is the registry's fallback.
    pub lr_source: LrSource,
    pub steps: usize,
    /// The Trainer's ledger at the peak step (bytes).
    pub memory: Memory,
    pub median_step_ms: f64,
    pub validation_score: f64,
    pub test_score: f64,
    pub metric: String,
    /// Test score after training on only `low_data` examples.
    pub low_data_test_score: Option<f64>,
    /// Language-modelling loss on held-out pre-training text, before and after.
    pub forgetting: Forgetting,
    /// Bytes of the saved adapter's weights file (for full fine-tuning, the whole model).
    pub adapter_bytes: u64,
    /// The training loss at every step.
    pub train_losses: Vec<f64>,
    pub wall_seconds: f64,
}

impl Row {
    /// The line reported when the row is complete: the method, its scores and its time.
    pub fn progress_line(&self) -> String {
        let low = self
            .low_data_test_score
            .map(|v| format!(", low data {v:.3}"))
            .unwrap_or_default();
        format!(
            "{:<15} test {:.3}{low} in {:.1} s",
            self.method, self.test_score, self.wall_seconds
        )
    }
}

/// The reporter of a whole comparison, shared by the runs training side by side.
type Shared<'a, 'p> = &'a Mutex<&'p mut (dyn Progress + Send)>;

/// The Trainer's progress for one training run: each step goes to the shared reporter, labelled.
/// The run's own start and finish are not forwarded: the shared reporter spans every run.
struct Lane<'a, 'p> {
    shared: Shared<'a, 'p>,
    label: String,
}

impl Progress for Lane<'_, '_> {
    fn step(&mut self, _run: &str, entry: &LogEntry) {
        if let Ok(mut p) = self.shared.lock() {
            p.step(&self.label, entry);
        }
    }
}

/// How many methods train side by side: one per kernel thread (each then runs its kernels on
/// one thread, which on small models scales better than splitting every product in two).
pub fn lanes(methods: usize) -> usize {
    crate::kernels::threads().min(methods).max(1)
}

/// The entries `opts.only` keeps (all when empty). A name picks the entry with that label
/// (`full`), or failing that every entry of that method (`lora`).
pub fn selected<'e>(opts: &CompareOptions, entries: &'e [Entry]) -> Vec<&'e Entry> {
    let picks = |e: &Entry, o: &String| {
        if entries.iter().any(|x| &x.label == o) {
            &e.label == o
        } else {
            e.spec.name() == o
        }
    };
    entries
        .iter()
        .filter(|e| opts.only.is_empty() || opts.only.iter().any(|o| picks(e, o)))
        .collect()
}

/// One training run of `entry`.
fn run(
    opts: &CompareOptions,
    entry: &Entry,
    (train_limit, steps): (Option<usize>, usize),
    dir: PathBuf,
    progress: &mut dyn Progress,
) -> Result<Trained> {
    let args = TrainingArgs {
        output_dir: dir,
        max_steps: Some(steps),
        batch_size: opts.batch_size,
        learning_rate: entry.lr,
        warmup_steps: steps / 10,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed: opts.seed,
        max_eval_examples: opts.max_eval_examples,
        ..TrainingArgs::default()
    };
    let run = FinetuneOptions {
        base: opts.base.clone(),
        task: opts.task,
        data: None,
        spec: entry.spec.clone(),
        args,
        train_limit,
        resume: false,
    };
    train_method(&run, progress)
}

fn evaluate(t: &Trained, split: Split, opts: &CompareOptions) -> Result<trainer::Metrics> {
    TrainTask::<f32>::evaluate(
        &t.tm,
        &t.base.store,
        t.method.as_ref(),
        split,
        opts.max_eval_examples,
        32,
    )
}

/// Runs every selected entry (and its low-data twin) and returns the rows in order. Methods
/// train side by side ([`lanes`]); every number is the same as in a one-at-a-time run, since
/// results do not depend on the thread count.
///
/// `progress` hears from several threads, one at a time: each optimizer step as
/// [`Progress::step`] with the run's label (a method, or its low-data twin), and each completed
/// row as a [`Progress::line`] ([`Row::progress_line`]).
pub fn compare(
    opts: &CompareOptions,
    entries: &[Entry],
    progress: &mut (dyn Progress + Send),
) -> Result<Vec<Row>> {
    let entries = selected(opts, entries);
    // The held-out text and the pre-trained model's loss on it, once for every method.
    let held = HeldOut::of(&load_base(&opts.base)?, opts.heldout_batches)?;
    let lanes = lanes(entries.len());
    let next = AtomicUsize::new(0);
    let shared = Mutex::new(progress);
    let results: Mutex<Vec<Option<Result<Row>>>> =
        Mutex::new((0..entries.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..lanes {
            scope.spawn(|| {
                let work = || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(entry) = entries.get(i) else { break };
                    let row = measure(opts, entry, &held, &shared);
                    let failed = row.is_err();
                    if let Ok(mut r) = results.lock() {
                        r[i] = Some(row);
                    }
                    if failed {
                        next.store(entries.len(), Ordering::SeqCst); // start nothing new
                    }
                };
                if lanes > 1 {
                    crate::kernels::threads::single_threaded(work)
                } else {
                    work()
                }
            });
        }
    });
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    // Rows in order; the first failure (in entry order) is the error.
    results.into_iter().flatten().collect()
}

/// Trains, scores and saves one entry (and its low-data twin): one row.
fn measure(
    opts: &CompareOptions,
    entry: &Entry,
    held: &HeldOut,
    shared: Shared<'_, '_>,
) -> Result<Row> {
    let started = Instant::now();
    // One directory per entry (two entries may share a method, and run at the same time).
    let slug: String = entry
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let dir = opts.out_dir.join(slug);
    let _ = std::fs::remove_dir_all(&dir); // a fresh log for this run
    let mut lane = Lane {
        shared,
        label: entry.label.clone(),
    };
    let mut t = run(
        opts,
        entry,
        (opts.train_limit, opts.steps),
        dir.clone(),
        &mut lane,
    )?;
    let val = evaluate(&t, Split::Validation, opts)?;
    let test = evaluate(&t, Split::Test, opts)?;
    let forgetting = held.forgetting(&t.base, t.method.as_ref())?;
    let adapter = dir.join("adapter");
    crate::peft::store::save_adapter(
        &adapter,
        &entry.spec,
        t.method.as_mut(),
        &mut t.base.store,
        &t.tm.head.params(),
        serde_json::json!({ "task": opts.task.name(), "test": test }),
    )?;
    let low_data_test_score = match opts.low_data {
        Some(n) => {
            lane.label = format!("{} (low data)", entry.label);
            let low = run(
                opts,
                entry,
                (Some(n), opts.low_data_steps),
                dir.join("low-data"),
                &mut lane,
            )?;
            Some(score(&evaluate(&low, Split::Test, opts)?))
        }
        None => None,
    };
    let row = Row {
        method: entry.label.clone(),
        trainable_params: t.trainable,
        total_params: t.total,
        trainable_pct: 100.0 * t.trainable as f64 / t.total as f64,
        lr: entry.lr,
        lr_source: entry.lr_source,
        steps: t.report.state.step,
        memory: t.report.memory,
        median_step_ms: t.report.median_step_seconds * 1e3,
        validation_score: score(&val),
        test_score: score(&test),
        metric: metric_name(&test),
        low_data_test_score,
        forgetting,
        adapter_bytes: crate::io::adapter::file_size(&adapter)?,
        train_losses: t.report.state.losses.clone(),
        wall_seconds: started.elapsed().as_secs_f64(),
    };
    if let Ok(mut p) = shared.lock() {
        p.line(&row.progress_line());
    }
    Ok(row)
}

fn score(m: &trainer::Metrics) -> f64 {
    m.get("score").copied().unwrap_or(f64::NAN)
}

fn metric_name(m: &trainer::Metrics) -> String {
    let score = m.get("score").copied();
    m.iter()
        .find(|(k, &v)| k.as_str() != "score" && Some(v) == score)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "score".into())
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// The table `tunelab compare` prints.
pub fn table(opts: &CompareOptions, rows: &[Row]) -> String {
    let mut s = String::new();
    let metric = rows.first().map(|r| r.metric.as_str()).unwrap_or("score");
    let low = opts
        .low_data
        .map(|n| format!("test@{n}"))
        .unwrap_or_else(|| "-".into());
    let low_note = opts
        .low_data
        .map(|n| {
            format!(
                "; test@{n}: trained on {n} examples for {} steps",
                opts.low_data_steps
            )
        })
        .unwrap_or_default();
    let side_by_side = match lanes(rows.len()) {
        1 => String::new(),
        n => format!("; {n} methods train side by side, one thread each"),
    };
    let _ = writeln!(
        s,
        "task {} on {}, {} steps of batch {}, seed {} (score: {metric}; memory in MB at the peak step{low_note}{side_by_side})",
        opts.task.name(),
        opts.base,
        opts.steps,
        opts.batch_size,
        opts.seed
    );
    let _ = writeln!(
        s,
        "{:<15} {:>9} {:>7} {:>7} {:>6} {:>6} {:>6} {:>8} {:>6} {:>6} {:>7} {:>7} {:>8} {:>6}",
        "method",
        "trainable",
        "%",
        "weights",
        "grads",
        "optim",
        "activ",
        "step ms",
        "val",
        "test",
        low,
        "forget",
        "adapter",
        "wall s"
    );
    let _ = writeln!(s, "{}", "-".repeat(124));
    for r in rows {
        let low = r
            .low_data_test_score
            .map(|v| format!("{v:.3}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "{:<15} {:>9} {:>7.3} {:>7.2} {:>6.2} {:>6.2} {:>6.1} {:>8.1} {:>6.3} {:>6.3} {:>7} {:>+7.3} {:>8} {:>6.1}",
            r.method,
            r.trainable_params,
            r.trainable_pct,
            mb(r.memory.weights),
            mb(r.memory.gradients),
            mb(r.memory.optimizer),
            mb(r.memory.activations),
            r.median_step_ms,
            r.validation_score,
            r.test_score,
            low,
            r.forgetting.delta(),
            human_bytes(r.adapter_bytes),
            r.wall_seconds
        );
    }
    let fallback: Vec<&str> = rows
        .iter()
        .filter(|r| r.lr_source == LrSource::Registry)
        .map(|r| r.method.as_str())
        .collect();
    let task = opts.task.name();
    let path = super::sweep::SETTINGS_PATH;
    let lr_note = if fallback.is_empty() {
        format!("lr: each chosen by `tunelab sweep` on {task}'s validation split ({path})")
    } else if fallback.len() == rows.len() {
        format!("lr: the registry's rates (no sweep on {task} in {path})")
    } else {
        format!(
            "lr: chosen by `tunelab sweep` on {task}'s validation split ({path}), except the registry's rate for {} (not swept on {task})",
            fallback.join(", ")
        )
    };
    let _ = writeln!(s, "{lr_note}");
    let _ = writeln!(
        s,
        "forget: change in LM loss on held-out pre-training text (before {:.3}); adapter: weights file on disk",
        rows.first().map(|r| r.forgetting.before).unwrap_or(f64::NAN)
    );
    s
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KB", b as f64 / 1024.0)
    }
}
