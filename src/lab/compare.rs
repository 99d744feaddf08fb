//! `tunelab compare`: every method on the same task, data, step budget and seeds, measured.
//!
//! Each row comes from fine-tuning runs in this process, repeated with `--seeds N` seeds
//! (different head and adapter initialisation, data order and dropout; the same examples):
//! trainable parameters; the memory ledger of the peak step (weights, gradients, optimizer state,
//! activations); the median optimizer-step time, from a timing pass where each method trains
//! alone; validation and test scores; the test score of the same method trained on a few
//! examples (low data); forgetting (the change in LM loss on held-out pre-training text); the
//! size of the saved adapter; and the wall time. Every score column is a mean with its 95%
//! interval ([`super::stats`]), and each method's test score is paired against a baseline's on
//! the same seeds (`--baseline`, default full fine-tuning): better, worse or indistinguishable.

use super::finetune::{load_base, train_method, FinetuneOptions, Trained};
use super::forgetting::{Forgetting, HeldOut};
use super::lanes::side_by_side;
use super::settings::Settings;
use super::stats::{self, Estimate, IntervalKind, Paired, Verdict};
use crate::data::tasks::Task;
use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::peft::method::ExampleContext;
use crate::peft::{registry, MethodSpec};
use crate::train::args::Strategy;
use crate::train::progress::{LogEntry, Progress};
use crate::train::task::Item;
use crate::train::trainer::{self, Memory, Split};
use crate::train::TrainingArgs;
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

/// One method with the learning rate it is compared at. PEFT methods train few parameters from
/// a neutral start and take larger steps than full fine-tuning, and the best rate differs by
/// task, so each task's rate comes from a `tunelab sweep` of that entry on that task's
/// validation split, kept in `configs/compare.toml` ([`crate::lab::settings::Settings`]); an entry
/// the file lacks for a task uses the registry's rate ([`registry::compare_examples`]), and
/// `lr_source` says which.
#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub spec: MethodSpec,
    pub lr: f64,
    /// Where `lr` came from.
    pub lr_source: LrSource,
    /// How the base is stored for this entry (nf4 for QLoRA).
    pub base_dtype: crate::nn::BaseDtype,
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
                base_dtype: c.base_dtype,
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
    /// The first seed; run k of every method uses `seed + k`.
    pub seed: u64,
    /// Runs per method (and per low-data twin), with seeds `seed, seed + 1, ...`: the intervals
    /// are Student-t over these runs ([`super::stats`]).
    pub seeds: usize,
    /// The entry every method is paired against (a label such as `full`, or a method name):
    /// per-seed differences of test scores, their interval and a verdict.
    pub baseline: String,
    /// Optimizer steps of each method's timing pass: after the scored runs, every method trains
    /// this many steps alone, on every kernel thread, and the step-time column is their median.
    /// 0 skips the pass; the column then comes from the scored runs, which share the cores.
    pub timing_steps: usize,
    /// Train every method with gradient checkpointing (each block recomputed in backward): the
    /// activation column then shows what that saves and the step-time column what it costs.
    pub gradient_checkpointing: bool,
    pub only: Vec<String>,
    /// Where runs and adapters are written (`runs/compare/<label>`, e.g. `runs/compare/lora-r-8-q-v`;
    /// seeds after the first in `<label>/seed-<seed>`).
    pub out_dir: PathBuf,
}

impl CompareOptions {
    /// The default run: 3 seeds of 50 steps of batch 16 per method, a 64-example low-data
    /// column trained for 15 steps, 150 evaluation examples per split, forgetting on 64
    /// held-out windows, and an 8-step timing pass per method. Three seeds are the fewest that
    /// give a usable t-interval (t = 4.30; two seeds give 12.7); the budget is what lets three
    /// seeds of every method fit in under three minutes on two cores. Measured: 3 seeds of 60 +
    /// 20 steps with 200 evaluation examples took 340 CPU-seconds (about 11.3 per run: 94 ms a
    /// step on one thread, plus about 3.8 s of loading, evaluation and saving), about 183 s on
    /// two lanes; 50 + 15 steps and 150 examples cut that to about 9.3 per run, about 150 s.
    pub fn new(base: &str, task: Task) -> Self {
        Self {
            base: base.to_string(),
            task,
            steps: 50,
            batch_size: 16,
            train_limit: None,
            low_data: Some(64),
            low_data_steps: 15,
            heldout_batches: 4,
            max_eval_examples: 150,
            seed: 42,
            seeds: 3,
            baseline: "full".into(),
            timing_steps: 8,
            gradient_checkpointing: false,
            only: vec![],
            out_dir: PathBuf::from("runs").join("compare"),
        }
    }

    /// A demo-sized run (`--quick`): every method still runs, on a tenth of the budget, with one
    /// seed (intervals over test examples) and a 4-step timing pass.
    pub fn quick(mut self) -> Self {
        self.steps = 15;
        self.batch_size = 8;
        self.low_data = Some(16);
        self.low_data_steps = 10;
        self.heldout_batches = 1;
        self.max_eval_examples = 48;
        self.seeds = 1;
        self.timing_steps = 4;
        self
    }

    /// The seeds of the runs, in order.
    pub fn seed_list(&self) -> Vec<u64> {
        (0..self.seeds as u64).map(|k| self.seed + k).collect()
    }
}

/// How the step-time column was measured.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    /// Median milliseconds per optimizer step.
    pub median_ms: f64,
    /// Steps the median is over.
    pub steps: usize,
    pub batch_size: usize,
    /// Kernel threads of those steps.
    pub threads: usize,
    /// Whether the steps ran with nothing else training.
    pub alone: bool,
    /// True: a timing pass after the scored runs. False: the scored runs themselves (with
    /// `--timing-steps 0`), alone only when one run trained at a time.
    pub pass: bool,
    /// Wall seconds of this method's timing pass (loading the base and the task included; 0
    /// without a pass).
    pub seconds: f64,
}

impl StepTiming {
    /// The table's note on the step-time column.
    pub fn describe(&self) -> String {
        let threads = format!(
            "{} kernel thread{}",
            self.threads,
            if self.threads == 1 { "" } else { "s" }
        );
        match (self.pass, self.alone) {
            (true, _) => format!(
                "step ms: median of {} steps of batch {} per method, trained alone after the scored runs on {threads}",
                self.steps, self.batch_size
            ),
            (false, true) => format!(
                "step ms: median of the scored runs' median step times (batch {}), one run at a time on {threads}",
                self.batch_size
            ),
            (false, false) => format!(
                "step ms: median of the scored runs' median step times (batch {}), which trained side by side and shared the cores",
                self.batch_size
            ),
        }
    }
}

/// One seed's run of a method (and of its low-data twin).
#[derive(Debug, Clone, Serialize)]
pub struct SeedRun {
    pub seed: u64,
    pub validation_score: f64,
    pub test_score: f64,
    pub low_data_test_score: Option<f64>,
    pub forgetting: Forgetting,
    /// The training loss at every step.
    pub train_losses: Vec<f64>,
    /// Median step time of this scored run, which shared the cores with the other lanes (not
    /// the table's column: see [`StepTiming`]).
    pub shared_step_ms: f64,
    pub wall_seconds: f64,
    /// Of `wall_seconds`, the time in the Trainer (main and low-data runs); the rest is loading,
    /// evaluation, forgetting and saving.
    pub train_seconds: f64,
    /// Per-example scores (validation, test, low-data test), measured only with one seed and
    /// only when the metric is a mean over examples: they give the one-seed intervals.
    #[serde(skip)]
    pub per_example: PerExample,
}

/// Per-example scores of one run's evaluations (empty when not measured).
#[derive(Debug, Clone, Default)]
pub struct PerExample {
    pub validation: Option<Vec<f64>>,
    pub test: Option<Vec<f64>>,
    pub low_data_test: Option<Vec<f64>>,
}

impl SeedRun {
    /// The line reported when the run is complete: the method, the seed, its scores and time.
    pub fn progress_line(&self, label: &str) -> String {
        let low = self
            .low_data_test_score
            .map(|v| format!(", low data {v:.3}"))
            .unwrap_or_default();
        format!(
            "{label:<15} seed {} test {:.3}{low} in {:.1} s",
            self.seed, self.test_score, self.wall_seconds
        )
    }
}

/// One measured row: a method over every seed.
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
    /// The Trainer's ledger at the peak step (bytes; the same for every seed).
    pub memory: Memory,
    /// From [`StepTiming`]: the method trained alone, unless the timing pass was skipped.
    pub median_step_ms: f64,
    pub step_timing: StepTiming,
    /// Means over seeds.
    pub validation_score: f64,
    pub test_score: f64,
    pub metric: String,
    /// Test score after training on only `low_data` examples.
    pub low_data_test_score: Option<f64>,
    /// The examples of the low-data runs (`None` without the column).
    pub low_data_examples: Option<usize>,
    /// Language-modelling loss on held-out pre-training text, before and after (mean over
    /// seeds).
    pub forgetting: Forgetting,
    /// The means above with their 95% intervals.
    pub validation: Estimate,
    pub test: Estimate,
    pub low_data_test: Option<Estimate>,
    /// `forgetting.after − forgetting.before`, over seeds.
    pub forgetting_delta: Estimate,
    /// Test score minus the baseline's on the same seeds (`None` when the baseline is not in
    /// the run).
    pub paired: Option<Paired>,
    /// Bytes of the first seed's adapter weights file (for full fine-tuning, the whole model).
    pub adapter_bytes: u64,
    /// The training loss at every step, mean over seeds.
    pub train_losses: Vec<f64>,
    /// Wall time of one seed's runs (main and low data, evaluations, saving), mean over seeds.
    pub wall_seconds: f64,
    /// Every seed's run, in seed order.
    pub seeds: Vec<SeedRun>,
}

impl Row {
    /// The line reported when the row is complete: the method, its scores and its time.
    pub fn progress_line(&self) -> String {
        let low = self
            .low_data_test
            .map(|v| format!(", low data {}", v.short(3)))
            .unwrap_or_default();
        format!(
            "{:<15} test {}{low} in {:.1} s",
            self.method,
            self.test.short(3),
            self.wall_seconds
        )
    }
}

/// The reporter of a whole comparison, shared by the runs training side by side.
pub(crate) type Shared<'a, 'p> = &'a Mutex<&'p mut (dyn Progress + Send)>;

/// The Trainer's progress for one training run: each step goes to the shared reporter, labelled.
/// The run's own start and finish are not forwarded: the shared reporter spans every run.
pub(crate) struct Lane<'a, 'p> {
    pub(crate) shared: Shared<'a, 'p>,
    pub(crate) label: String,
}

impl Progress for Lane<'_, '_> {
    fn step(&mut self, _run: &str, entry: &LogEntry) {
        if let Ok(mut p) = self.shared.lock() {
            p.step(&self.label, entry);
        }
    }
}

pub use super::lanes::lanes;

/// Optimizer steps of a whole comparison of `entries` (for a progress bar): every seed's main
/// and low-data runs, then the timing pass.
pub fn total_steps(opts: &CompareOptions, entries: &[Entry]) -> usize {
    let per_run = opts.steps + opts.low_data.map_or(0, |_| opts.low_data_steps);
    selected(opts, entries).len() * (opts.seeds * per_run + opts.timing_steps)
}

/// Whether a name given by the user (`--only`, `--baseline`) picks `e`: the entry with that
/// label (`full`), or failing that every entry of that method (`lora`).
fn picks(entries: &[&Entry], e: &Entry, name: &str) -> bool {
    if entries.iter().any(|x| x.label == name) {
        e.label == name
    } else {
        e.spec.name() == name
    }
}

/// The entries `opts.only` keeps (all when empty). A name picks the entry with that label
/// (`full`), or failing that every entry of that method (`lora`).
pub fn selected<'e>(opts: &CompareOptions, entries: &'e [Entry]) -> Vec<&'e Entry> {
    let all: Vec<&Entry> = entries.iter().collect();
    entries
        .iter()
        .filter(|e| opts.only.is_empty() || opts.only.iter().any(|o| picks(&all, e, o)))
        .collect()
}

/// The label of the entry `opts.baseline` names among `entries` (the first it picks), if any.
pub fn baseline_label(opts: &CompareOptions, entries: &[&Entry]) -> Option<String> {
    entries
        .iter()
        .find(|e| picks(entries, e, &opts.baseline))
        .map(|e| e.label.clone())
}

/// The directory of an entry's runs: `out_dir/<label with non-alphanumerics as '-'>`.
fn entry_dir(opts: &CompareOptions, entry: &Entry) -> PathBuf {
    let slug: String = entry
        .label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    opts.out_dir.join(slug)
}

/// One training run of `entry`.
fn run(
    opts: &CompareOptions,
    entry: &Entry,
    (train_limit, steps, seed): (Option<usize>, usize, u64),
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
        seed,
        max_eval_examples: opts.max_eval_examples,
        gradient_checkpointing: opts.gradient_checkpointing,
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
        base_dtype: entry.base_dtype,
    };
    train_method(&run, progress)
}

/// The first `max_eval_examples` items of a split, as the Trainer's evaluation takes them.
fn split_items<'t>(t: &'t Trained, split: Split, opts: &CompareOptions) -> &'t [Item] {
    let items = match split {
        Split::Validation => &t.tm.validation,
        Split::Test => &t.tm.test,
    };
    match opts.max_eval_examples {
        0 => items,
        n => &items[..n.min(items.len())],
    }
}

/// A split's metrics, and with `each` every example's score from the same batched evaluation
/// when the metric is a mean over examples (so one example's score is its share of the whole):
/// the observations of a one-seed interval. `None` for the other metrics (micro entity F1,
/// macro-F1), or without `each`.
fn evaluate(
    t: &Trained,
    split: Split,
    opts: &CompareOptions,
    each: bool,
) -> Result<(trainer::Metrics, Option<Vec<f64>>)> {
    let (whole, scores) = t.tm.evaluate_items_each(
        &t.base.store,
        t.method.as_ref(),
        split_items(t, split, opts),
        TrainingArgs::default().eval_batch_size,
    )?;
    let each = each && MEAN_METRICS.contains(&metric_name(&whole).as_str());
    // They are the parts of the whole score only if it is their mean.
    let agrees = each && !scores.is_empty() && (stats::mean(&scores) - score(&whole)).abs() < 1e-9;
    Ok((whole, agrees.then_some(scores)))
}

/// The metrics that are a mean over examples (so one example's score is that example's share):
/// accuracy, exact match, SQuAD token F1, ROUGE-L, execution accuracy. Micro entity F1 and
/// macro-F1 are not.
const MEAN_METRICS: &[&str] = &[
    "accuracy",
    "exact_match",
    "f1",
    "rouge_l",
    "execution_accuracy",
];

/// A (method, seed) run with what every seed shares (the same for each: parameters, memory,
/// steps) and the adapter's size.
struct Measured {
    run: SeedRun,
    metric: String,
    trainable: usize,
    total: usize,
    memory: Memory,
    steps: usize,
    adapter_bytes: u64,
}

/// Runs every selected entry with every seed (and each run's low-data twin), then times each
/// entry alone, and returns the rows in order. Runs train side by side ([`lanes`]), as
/// (entry, seed) pairs; every score is the same as in a one-at-a-time run, since results do not
/// depend on the thread count. Step times come from the timing pass, which runs alone.
///
/// `progress` hears from several threads, one at a time: each optimizer step as
/// [`Progress::step`] with the run's label (a method, its low-data twin, or its timing pass),
/// and each completed seed run as a [`Progress::line`] ([`SeedRun::progress_line`]).
pub fn compare(
    opts: &CompareOptions,
    entries: &[Entry],
    progress: &mut (dyn Progress + Send),
) -> Result<Vec<Row>> {
    if opts.seeds == 0 {
        return Err(Error::Invalid {
            op: "compare",
            detail: "--seeds must be at least 1".into(),
        });
    }
    let entries = selected(opts, entries);
    let seeds = opts.seed_list();
    // The held-out text and the pre-trained model's loss on it, once for every run.
    let held = HeldOut::of(&load_base(&opts.base)?, opts.heldout_batches)?;
    for e in &entries {
        let _ = std::fs::remove_dir_all(entry_dir(opts, e)); // fresh logs for this comparison
    }
    let work: Vec<(usize, u64)> = (0..entries.len())
        .flat_map(|i| seeds.iter().map(move |&s| (i, s)))
        .collect();
    let lanes = lanes(work.len());
    let shared = Mutex::new(progress);
    // Runs in order; the first failure (in work order) is the error.
    let measured: Vec<Measured> = side_by_side(work.len(), lanes, |k| {
        let (i, seed) = work[k];
        measure(opts, entries[i], seed, &held, &shared)
    })?;
    let mut rows = Vec::with_capacity(entries.len());
    for (entry, runs) in entries.iter().zip(measured.chunks(seeds.len())) {
        let timing = match opts.timing_steps {
            0 => StepTiming {
                median_ms: median(runs.iter().map(|m| m.run.shared_step_ms).collect()),
                steps: runs.iter().map(|m| m.steps).sum(),
                batch_size: opts.batch_size,
                threads: if lanes == 1 {
                    crate::kernels::threads()
                } else {
                    1
                },
                alone: lanes == 1,
                pass: false,
                seconds: 0.0,
            },
            n => time_alone(opts, entry, n, &shared)?,
        };
        rows.push(aggregate(opts, entry, runs, timing));
    }
    pair(opts, &entries, &mut rows);
    Ok(rows)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The timing pass of one entry: `steps` optimizer steps with nothing else training, on every
/// kernel thread; the median step time. Nothing is saved.
fn time_alone(
    opts: &CompareOptions,
    entry: &Entry,
    steps: usize,
    shared: Shared<'_, '_>,
) -> Result<StepTiming> {
    let mut lane = Lane {
        shared,
        label: format!("{} (timing)", entry.label),
    };
    let dir = entry_dir(opts, entry).join("timing");
    let started = Instant::now();
    let t = run(
        opts,
        entry,
        (opts.train_limit, steps, opts.seed),
        dir.clone(),
        &mut lane,
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(StepTiming {
        median_ms: t?.report.median_step_seconds * 1e3,
        steps,
        batch_size: opts.batch_size,
        threads: crate::kernels::threads(),
        alone: true,
        pass: true,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Trains, scores and saves one entry with one seed (and its low-data twin).
fn measure(
    opts: &CompareOptions,
    entry: &Entry,
    seed: u64,
    held: &HeldOut,
    shared: Shared<'_, '_>,
) -> Result<Measured> {
    let started = Instant::now();
    // One directory per run: two entries may share a method, and seeds run at the same time.
    let dir = match seed - opts.seed {
        0 => entry_dir(opts, entry),
        _ => entry_dir(opts, entry).join(format!("seed-{seed}")),
    };
    let mut lane = Lane {
        shared,
        label: match opts.seeds {
            1 => entry.label.clone(),
            _ => format!("{} seed {seed}", entry.label),
        },
    };
    let mut t = run(
        opts,
        entry,
        (opts.train_limit, opts.steps, seed),
        dir.clone(),
        &mut lane,
    )?;
    // With one seed, the intervals are over test examples: score each one.
    let one_seed = opts.seeds == 1;
    let mut per = PerExample::default();
    let (val, test);
    (val, per.validation) = evaluate(&t, Split::Validation, opts, one_seed)?;
    (test, per.test) = evaluate(&t, Split::Test, opts, one_seed)?;
    let forgetting = held.forgetting(&t.base, t.method.as_ref())?;
    let adapter = dir.join("adapter");
    crate::peft::store::save_adapter(
        &adapter,
        &entry.spec,
        t.method.as_mut(),
        &mut t.base.store,
        &t.tm.head.params(),
        serde_json::json!({
            "task": opts.task.name(),
            "base": t.base.dir.display().to_string(),
            "base_name": opts.base,
            "base_config": crate::io::adapter::base_record(&t.base.model.config),
            "seed": seed,
            "test": test,
        }),
    )?;
    let mut train_seconds = t.report.seconds;
    let low_data_test_score = match opts.low_data {
        Some(n) => {
            lane.label = format!("{} (low data)", lane.label);
            let low = run(
                opts,
                entry,
                (Some(n), opts.low_data_steps, seed),
                dir.join("low-data"),
                &mut lane,
            )?;
            train_seconds += low.report.seconds;
            let m;
            (m, per.low_data_test) = evaluate(&low, Split::Test, opts, one_seed)?;
            Some(score(&m))
        }
        None => None,
    };
    let run = SeedRun {
        seed,
        validation_score: score(&val),
        test_score: score(&test),
        low_data_test_score,
        forgetting,
        train_losses: t.report.state.losses.clone(),
        shared_step_ms: t.report.median_step_seconds * 1e3,
        wall_seconds: started.elapsed().as_secs_f64(),
        train_seconds,
        per_example: per,
    };
    if let Ok(mut p) = shared.lock() {
        p.line(&run.progress_line(&entry.label));
    }
    Ok(Measured {
        metric: metric_name(&test),
        trainable: t.trainable,
        total: t.total,
        memory: t.report.memory,
        steps: t.report.state.step,
        adapter_bytes: crate::io::adapter::file_size(&adapter)?,
        run,
    })
}

/// The 95% interval of one column: Student-t over seeds, or with one seed over its test
/// examples when they were scored one by one, else the value alone.
fn column(values: &[f64], examples: Option<&Vec<f64>>) -> Estimate {
    match (values.len(), examples) {
        (1, Some(xs)) => {
            let mut e = stats::t_interval(xs, IntervalKind::TOverExamples);
            e.mean = values[0];
            e
        }
        _ => stats::t_interval(values, IntervalKind::TOverSeeds),
    }
}

/// One entry's row from its seed runs.
fn aggregate(opts: &CompareOptions, entry: &Entry, runs: &[Measured], timing: StepTiming) -> Row {
    let first = &runs[0];
    let seeds: Vec<SeedRun> = runs.iter().map(|m| m.run.clone()).collect();
    let per = &first.run.per_example;
    let of = |f: fn(&SeedRun) -> f64| seeds.iter().map(f).collect::<Vec<f64>>();
    let validation = column(&of(|s| s.validation_score), per.validation.as_ref());
    let test = column(&of(|s| s.test_score), per.test.as_ref());
    let low_data_test = opts.low_data.map(|_| {
        column(
            &of(|s| s.low_data_test_score.unwrap_or(f64::NAN)),
            per.low_data_test.as_ref(),
        )
    });
    let forgetting_delta =
        stats::t_interval(&of(|s| s.forgetting.delta()), IntervalKind::TOverSeeds);
    let steps = seeds
        .iter()
        .map(|s| s.train_losses.len())
        .min()
        .unwrap_or(0);
    let train_losses = (0..steps)
        .map(|i| stats::mean(&seeds.iter().map(|s| s.train_losses[i]).collect::<Vec<_>>()))
        .collect();
    Row {
        method: entry.label.clone(),
        trainable_params: first.trainable,
        total_params: first.total,
        trainable_pct: 100.0 * first.trainable as f64 / first.total as f64,
        lr: entry.lr,
        lr_source: entry.lr_source,
        steps: first.steps,
        memory: first.memory,
        median_step_ms: timing.median_ms,
        step_timing: timing,
        validation_score: validation.mean,
        test_score: test.mean,
        metric: first.metric.clone(),
        low_data_test_score: low_data_test.map(|e| e.mean),
        low_data_examples: opts.low_data,
        forgetting: Forgetting {
            before: first.run.forgetting.before,
            after: stats::mean(&of(|s| s.forgetting.after)),
        },
        validation,
        test,
        low_data_test,
        forgetting_delta,
        paired: None,
        adapter_bytes: first.adapter_bytes,
        train_losses,
        wall_seconds: stats::mean(&of(|s| s.wall_seconds)),
        seeds,
    }
}

/// Fills every row's paired comparison against the baseline: per-seed differences of test
/// scores with their t-interval, or with one seed a paired bootstrap over test examples.
fn pair(opts: &CompareOptions, entries: &[&Entry], rows: &mut [Row]) {
    let Some(label) = baseline_label(opts, entries) else {
        return;
    };
    let Some(b) = rows.iter().position(|r| r.method == label) else {
        return;
    };
    let base: Vec<f64> = rows[b].seeds.iter().map(|s| s.test_score).collect();
    let base_examples = rows[b].seeds[0].per_example.test.clone();
    for r in rows.iter_mut() {
        let mine: Vec<f64> = r.seeds.iter().map(|s| s.test_score).collect();
        r.paired = Some(
            match (mine.len(), &r.seeds[0].per_example.test, &base_examples) {
                (2.., _, _) => stats::paired_t(&label, &mine, &base),
                (_, Some(m), Some(bx)) => stats::paired_bootstrap(&label, m, bx, opts.seed),
                _ => {
                    let d = mine[0] - base[0];
                    Paired {
                        baseline: label.clone(),
                        differences: vec![d],
                        difference: Estimate::point(d),
                        verdict: Verdict::Undecided,
                    }
                }
            },
        );
    }
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

/// Everything a comparison measured, as `--json` prints it: the settings, how intervals and
/// step times were measured, and the rows (each with its per-seed runs and paired result).
#[derive(Debug, Clone, Serialize)]
pub struct Summary<'a> {
    pub task: String,
    pub base: String,
    pub steps: usize,
    pub batch_size: usize,
    pub low_data: Option<usize>,
    pub low_data_steps: usize,
    pub max_eval_examples: usize,
    pub seeds: Vec<u64>,
    pub baseline: String,
    pub gradient_checkpointing: bool,
    pub level: f64,
    pub intervals: String,
    pub step_timing: String,
    pub rows: &'a [Row],
}

/// The [`Summary`] of a comparison.
pub fn summary<'a>(opts: &CompareOptions, rows: &'a [Row]) -> Summary<'a> {
    Summary {
        task: opts.task.name().to_string(),
        base: opts.base.clone(),
        steps: opts.steps,
        batch_size: opts.batch_size,
        low_data: opts.low_data,
        low_data_steps: opts.low_data_steps,
        max_eval_examples: opts.max_eval_examples,
        seeds: opts.seed_list(),
        baseline: rows
            .iter()
            .find_map(|r| r.paired.as_ref().map(|p| p.baseline.clone()))
            .unwrap_or_else(|| opts.baseline.clone()),
        gradient_checkpointing: opts.gradient_checkpointing,
        level: stats::LEVEL,
        intervals: interval_note(rows),
        step_timing: rows
            .first()
            .map(|r| r.step_timing.describe())
            .unwrap_or_default(),
        rows,
    }
}

/// How the rows' intervals were computed, for the table's notes: each kind that occurs with
/// the columns it occurs in (`val, test, test@64: Student-t over 3 seeds`).
pub fn interval_note(rows: &[Row]) -> String {
    let mut kinds: Vec<(IntervalKind, Vec<String>)> = Vec::new();
    for r in rows {
        let low = r
            .low_data_test
            .map(|e| (format!("test@{}", r.low_data_examples.unwrap_or(0)), e));
        let columns = [
            Some(("val".to_string(), r.validation)),
            Some(("test".to_string(), r.test)),
            low,
            Some(("forget".to_string(), r.forgetting_delta)),
        ];
        for (name, e) in columns.into_iter().flatten() {
            match kinds.iter_mut().find(|(k, _)| *k == e.kind) {
                Some((_, names)) if !names.contains(&name) => names.push(name),
                Some(_) => {}
                None => kinds.push((e.kind, vec![name])),
            }
        }
    }
    let seeds = rows.first().map_or(0, |r| r.seeds.len());
    let words: Vec<String> = kinds
        .iter()
        .map(|(k, names)| {
            let how = match k {
                IntervalKind::TOverSeeds => format!("Student-t over {seeds} seeds"),
                IntervalKind::TOverExamples => {
                    let n = rows.first().map_or(0, |r| r.test.n);
                    format!("Student-t over the {n} evaluation examples of one seed")
                }
                k => k.describe().to_string(),
            };
            format!("{}: {how}", names.join(", "))
        })
        .collect();
    format!("mean±half-width of the 95% interval; {}", words.join("; "))
}

/// The table `tunelab compare` prints: one row per method with 95% intervals, the notes on
/// how each column was measured, and the paired comparison against the baseline.
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
    let runs = rows.len() * opts.seeds;
    let side_by_side = match lanes(runs) {
        1 => String::new(),
        n => format!("; {n} runs train side by side, one thread each"),
    };
    let seeds = opts.seed_list();
    let seed_words = match seeds.as_slice() {
        [one] => format!("seed {one}"),
        [first, .., last] => format!("seeds {first}..{last}"),
        [] => "no seeds".into(),
    };
    let checkpointing = if opts.gradient_checkpointing {
        "; gradient checkpointing on"
    } else {
        ""
    };
    let _ = writeln!(
        s,
        "task {} on {}, {} steps of batch {}, {seed_words} (score: {metric}; memory in MB at the peak step{checkpointing}{low_note}{side_by_side})",
        opts.task.name(),
        opts.base,
        opts.steps,
        opts.batch_size,
    );
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.validation.short(3),
                r.test.short(3),
                r.low_data_test
                    .map(|e| e.short(3))
                    .unwrap_or_else(|| "-".into()),
                signed(&r.forgetting_delta),
                human_bytes(r.adapter_bytes),
            ]
        })
        .collect();
    let w = |k: usize, header: &str| {
        cells
            .iter()
            .map(|c| c[k].chars().count())
            .chain([header.len()])
            .max()
            .unwrap_or(0)
    };
    let (wv, wt, wl, wf) = (w(0, "val"), w(1, "test"), w(2, &low), w(3, "forget"));
    let header = format!(
        "{:<15} {:>9} {:>7} {:>7} {:>6} {:>6} {:>6} {:>8} {:>wv$} {:>wt$} {:>wl$} {:>wf$} {:>8} {:>6}",
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
    let _ = writeln!(s, "{header}");
    let _ = writeln!(s, "{}", "-".repeat(header.chars().count()));
    for (r, c) in rows.iter().zip(&cells) {
        let _ = writeln!(
            s,
            "{:<15} {:>9} {:>7.3} {:>7.2} {:>6.2} {:>6.2} {:>6.1} {:>8.1} {:>wv$} {:>wt$} {:>wl$} {:>wf$} {:>8} {:>6.1}",
            r.method,
            r.trainable_params,
            r.trainable_pct,
            mb(r.memory.weights),
            mb(r.memory.gradients),
            mb(r.memory.optimizer),
            mb(r.memory.activations),
            r.median_step_ms,
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            r.wall_seconds
        );
    }
    let _ = writeln!(s, "{}", interval_note(rows));
    let fallback: Vec<&str> = rows
        .iter()
        .filter(|r| r.lr_source == LrSource::Registry)
        .map(|r| r.method.as_str())
        .collect();
    let task = opts.task.name();
    let path = super::settings::SETTINGS_PATH;
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
    let _ = writeln!(s, "{lr_note}{}", sweep_budget_note(opts, rows));
    let _ = writeln!(
        s,
        "forget: change in LM loss on held-out pre-training text (before {:.3}); adapter: weights file on disk; wall s: one seed's runs",
        rows.first().map(|r| r.forgetting.before).unwrap_or(f64::NAN)
    );
    if let Some(r) = rows.first() {
        let pass: f64 = rows.iter().map(|r| r.step_timing.seconds).sum();
        let took = if r.step_timing.pass {
            format!(" (the timing pass took {pass:.1} s)")
        } else {
            String::new()
        };
        let _ = writeln!(s, "{}{took}", r.step_timing.describe());
    }
    s.push_str(&paired_table(opts, rows));
    s
}

/// The paired section: each method's test score minus the baseline's on the same seeds.
pub fn paired_table(opts: &CompareOptions, rows: &[Row]) -> String {
    let mut s = String::new();
    let Some(p) = rows.iter().find_map(|r| r.paired.as_ref()) else {
        let _ = writeln!(
            s,
            "\nno paired comparison: the baseline {:?} is not among the methods run",
            opts.baseline
        );
        return s;
    };
    let how = paired_note(p);
    let _ = writeln!(
        s,
        "\npaired against {}: test score minus {}'s on the same seed ({how})",
        p.baseline, p.baseline
    );
    let _ = writeln!(
        s,
        "{:<15} {:>10} {:>20}  verdict",
        "method", "difference", "95% interval"
    );
    let _ = writeln!(s, "{}", "-".repeat(66));
    for r in rows {
        let Some(p) = &r.paired else { continue };
        let e = &p.difference;
        let interval = match (e.lo, e.hi) {
            (Some(lo), Some(hi)) => format!("[{:+.3}, {:+.3}]", tidy(lo), tidy(hi)),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "{:<15} {:>+10.3} {:>20}  {}",
            r.method,
            tidy(e.mean),
            interval,
            p.verdict.name()
        );
    }
    s
}

/// How a paired interval was computed, in words.
pub fn paired_note(p: &Paired) -> String {
    match p.difference.kind {
        IntervalKind::TOverSeeds => format!(
            "mean of the per-seed differences over {} seeds, Student-t 95% interval",
            p.difference.n
        ),
        IntervalKind::BootstrapOverExamples => format!(
            "one seed: paired bootstrap over the {} test examples ({} resamples), 95% interval",
            p.difference.n,
            stats::BOOTSTRAP_RESAMPLES
        ),
        _ => "one seed and no per-example scores: no interval".into(),
    }
}

/// `x`, with float dust around 0 (a sum of differences such as 1/48 − 1/48) printed as 0
/// rather than -0.000.
pub fn tidy(x: f64) -> f64 {
    if x.abs() < 1e-12 {
        0.0
    } else {
        x
    }
}

/// A forgetting estimate with its sign: `+0.980±0.050`.
fn signed(e: &Estimate) -> String {
    let s = e.short(3);
    if e.mean >= 0.0 {
        format!("+{s}")
    } else {
        s
    }
}

/// Where the swept rates were chosen at another budget than this run's (a `--quick` run, or
/// `--steps`): the budgets, since a rate that suits 50 steps need not suit 15.
fn sweep_budget_note(opts: &CompareOptions, rows: &[Row]) -> String {
    let Ok(settings) = super::settings::Settings::compiled() else {
        return String::new();
    };
    let mut budgets: Vec<(usize, usize)> = rows
        .iter()
        .filter(|r| r.lr_source == LrSource::Sweep)
        .filter_map(|r| settings.get(opts.task, &r.method))
        .map(|s| (s.steps, s.batch_size))
        .filter(|&b| b != (opts.steps, opts.batch_size))
        .collect();
    budgets.sort_unstable();
    budgets.dedup();
    if budgets.is_empty() {
        return String::new();
    }
    let at: Vec<String> = budgets
        .iter()
        .map(|(s, b)| format!("{s} steps of batch {b}"))
        .collect();
    format!(
        "; swept at {}, this run trains {} steps of batch {}",
        at.join(" and "),
        opts.steps,
        opts.batch_size
    )
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KB", b as f64 / 1024.0)
    }
}
