//! The Trainer: Hugging Face's `Trainer` loop, and the one loop every training in tunelab goes
//! through — fine-tuning any task with any method, pre-training the base models, the pitfall
//! experiments.
//!
//! What varies is given to it, never copied into another loop: the task computes its own loss on
//! each micro-batch ([`TrainTask`]), the optimizer is any [`Optimizer`] (AdamW set up from the
//! arguments unless another is given), progress goes to a [`Progress`]. [`train`] takes them in
//! one [`Training`].
//!
//! Each optimizer step sums `gradient_accumulation_steps` micro-batches, clips the global norm,
//! steps the optimizer under the schedule, and logs. The method's training hooks run inside the
//! step ([`crate::nn::Hooks`]: a regulariser added to each micro-batch's loss, a projection of the
//! clipped gradients before the optimizer, a callback after it). Evaluation and checkpoints follow their
//! strategies; early stopping watches `metric_for_best_model`, and with `load_best_model_at_end`
//! the best evaluation's weights are restored when training ends. Everything is deterministic
//! from the seed: the batch order of epoch e is a permutation seeded by (seed, e) and dropout is
//! seeded by the micro-batch, so a run resumed from a checkpoint computes exactly the losses of
//! an uninterrupted one.
//!
//! ## Gradient accumulation, token-weighted
//!
//! k micro-batches give exactly the loss and the gradients of one batch of all their examples,
//! as Hugging Face's Trainer does with `num_items_in_batch`: each task's loss is a mean over its
//! *loss terms* (target tokens of a language model or a tagger, examples of a classifier or a span
//! head), and [`TrainTask::loss`] says how many terms its mean had. The Trainer back-propagates
//! each micro-batch's mean times its terms, `mean_k · n_k` (its summed loss), and after the k
//! micro-batches scales the gradients by `1 / Σ n_k`; the logged loss is `Σ mean_k · n_k / Σ n_k`.
//! Scaling each mean by `1/k` instead (what tunelab did before, and Hugging Face before 4.46)
//! weights a token of a short micro-batch more than one of a long micro-batch. With one
//! micro-batch per step nothing is scaled: the mean is back-propagated as it is.
//!
//! A checkpoint (`checkpoint-<step>/`, its format in [`crate::io::checkpoint`]) holds the
//! trainable parameters, the optimizer's state and [`TrainerState`]. With
//! `load_best_model_at_end`, `checkpoint-best/` holds the trainable parameters of the best
//! evaluation so far (written when it improves if there is a save strategy, else beside a
//! checkpoint taken on Ctrl-C), so a resumed run can still restore them. A NaN or infinite loss
//! stops training with an error naming the step ([`is_divergence`]), and so do non-finite
//! weights or optimizer state when a checkpoint is due or training ends: a checkpoint is never
//! written with a non-finite value, and the error names the last good checkpoint.
//!
//! ## One output directory, one run
//!
//! Every checkpoint records the run that wrote it ([`TrainerState::run`]: the seed and what the
//! caller identifies the run by, [`Training::identity`]: method, task, data, base). A new run
//! refuses an output directory that holds checkpoints unless it resumes them
//! ([`Training::resume`]) or `overwrite_output_dir` deletes them first; a resume refuses a
//! checkpoint of another run, naming what differs; pruning (`save_total_limit`) only ever
//! deletes this run's checkpoints. A resumed run rewrites `log.jsonl` to the checkpoint's step
//! before appending, so no step is logged twice; a new run starts a new log. Checkpoints written
//! before runs were recorded resume unchecked.
//!
//! ## Signals
//!
//! [`install_ctrl_c`] makes SIGINT and SIGTERM stop training at the next step boundary with a
//! checkpoint ([`TrainReport::interrupted`]; [`interrupt_exit_code`] is the shell's code for the
//! signal, 130 or 143). Outside the loop (loading data, the final evaluation), or on a second
//! signal, the process exits at once with that code.

pub use super::args::default_greater_is_better;
use super::args::{ScheduleKind, Strategy, TrainingArgs};
use super::progress::Progress;
pub use super::progress::{LogEntry, Metrics};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Error, Result};
use crate::io::{checkpoint, safetensors};
use crate::nn::{BlockRecompute, Hooks, NoHooks, Transformer};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, Optimizer, Schedule};
use crate::tensor::Float;
use crate::Grads;
use ndarray::{ArrayD, ArrayViewD};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Instant;

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Validation,
    Test,
}

/// One micro-batch, as the Trainer asks a task for its loss.
#[derive(Debug, Clone, Copy)]
pub struct MicroBatch<'a> {
    /// The optimizer step it belongs to, from 0.
    pub step: usize,
    /// Its number over the whole run (`step * gradient_accumulation_steps + k`), from 0.
    pub micro: usize,
    /// The training examples the Trainer drew for it: a slice of this epoch's permutation. A
    /// task that draws its own data (pre-training samples windows at random) ignores them.
    pub indices: &'a [usize],
}

impl<'a> MicroBatch<'a> {
    /// The examples `indices` as the first micro-batch of a run (for computing one loss outside
    /// training).
    pub fn of(indices: &'a [usize]) -> Self {
        Self {
            step: 0,
            micro: 0,
            indices,
        }
    }
}

/// What the Trainer needs from a task: its training set size, the loss of a micro-batch, and an
/// evaluation. The task computes its own loss, so any objective (a labelled task, language
/// modelling, preference pairs) trains through the same loop.
pub trait TrainTask<F: Float> {
    /// Training examples: epochs and batch indices count over `0..train_len()`.
    fn train_len(&self) -> usize;
    /// The mean loss of micro-batch `batch`, and the number of loss terms that mean is over
    /// (Hugging Face's `num_items_in_batch`): counted target tokens for a language model or a
    /// tagger, examples for a classifier or a span head. Gradient accumulation weights each
    /// micro-batch by its terms (see the module's doc). The Trainer has seeded the tape's dropout
    /// for this micro-batch before calling.
    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)>;
    /// The input tokens of `batch` (padding excluded), for the throughput column
    /// (`tokens_per_sec`); asked after [`TrainTask::loss`] of the same micro-batch. `None`, the
    /// default, counts its loss terms instead.
    fn tokens(&self, _batch: &MicroBatch<'_>) -> Option<usize> {
        None
    }
    /// The transformer the loss runs, for gradient checkpointing (which runs its blocks again in
    /// backward). `None`, the default: the task cannot be checkpointed.
    fn model(&self) -> Option<&Transformer> {
        None
    }
    /// The parameters of the task's new head, which `head_learning_rate` trains at a rate of
    /// their own ([`head_lr_multipliers`]). Empty, the default: no new head.
    fn head_params(&self) -> Vec<ParamId> {
        Vec::new()
    }
    /// The names of the metrics [`TrainTask::evaluate`] reports, so that a
    /// `metric_for_best_model` it never reports is refused before the first step. `None`, the
    /// default: not known in advance (not checked).
    fn metric_names(&self) -> Option<Vec<&'static str>> {
        None
    }
    /// Bytes the task holds beyond the policy's store to compute a reference policy (a frozen
    /// copy of the weights, precomputed log-probabilities), for the memory ledger's `reference`
    /// line. 0, the default: no reference, or the base run without the method's hooks.
    fn reference_bytes(&self) -> usize {
        0
    }
    /// Loss and task metrics on a split, in evaluation mode (at most `limit` examples, 0 = all).
    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics>;
}

/// The examples [`TrainTask::evaluate`] scores of a split: the first `limit`, or all of them when
/// `limit` is 0 or at least the split's size.
pub fn eval_subset<T>(items: &[T], limit: usize) -> &[T] {
    match limit {
        0 => items,
        n => &items[..n.min(items.len())],
    }
}

/// The state that makes a run resumable.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub best_metric: Option<f64>,
    pub best_step: Option<usize>,
    pub evals_without_improvement: usize,
    /// The metrics of the evaluation at `best_step`.
    #[serde(default)]
    pub best_metrics: Option<Metrics>,
    /// Every training loss so far, one per optimizer step.
    pub losses: Vec<f64>,
    pub log: Vec<LogEntry>,
    /// What identifies the run (seed, method, task, data, base): a resume must match it.
    /// `None` in checkpoints written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<serde_json::Value>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub state: TrainerState,
    /// Metrics of the last evaluation (validation), if any; with `load_best_model_at_end`, of
    /// the best evaluation, whose weights the run ended with.
    pub final_eval: Option<Metrics>,
    /// With `load_best_model_at_end`: the step whose weights were restored at the end, and its
    /// validation metrics (`None` when nothing was evaluated).
    pub restored_best: Option<BestModel>,
    pub stopped_early: bool,
    pub interrupted: bool,
    /// The step this process started from: the resumed checkpoint's, else 0. `state.step -
    /// start_step` steps were trained by this process.
    pub start_step: usize,
    pub seconds: f64,
    /// Median seconds per optimizer step.
    pub median_step_seconds: f64,
    /// The memory ledger at the peak step.
    pub memory: Memory,
}

/// The evaluation whose weights `load_best_model_at_end` restored.
#[derive(Debug, Clone, PartialEq)]
pub struct BestModel {
    /// The optimizer step (counted from 1) after which it was evaluated.
    pub step: usize,
    pub metrics: Metrics,
}

/// Bytes held at the peak step, by kind: what full fine-tuning and PEFT spend differently.
/// Weights are every parameter (frozen ones too); gradients exist only for trainable ones;
/// the optimizer keeps state only for trainable ones; activations are what the step's tape
/// held for the backward pass; the reference is what a preference or RL task holds beyond the
/// policy to compute the reference policy's log-probabilities ([`TrainTask::reference_bytes`]:
/// 0 when the reference is the base run without the method's hooks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub weights: usize,
    pub gradients: usize,
    pub optimizer: usize,
    pub activations: usize,
    #[serde(default)]
    pub reference: usize,
}

impl Memory {
    pub fn total(&self) -> usize {
        self.weights + self.gradients + self.optimizer + self.activations + self.reference
    }
}

/// Set by SIGINT or SIGTERM; the loop saves a checkpoint and stops at the next step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The signal that set [`INTERRUPTED`] (0: none).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Whether a training loop is running (a signal then stops it at a step boundary; otherwise the
/// process exits at once).
static TRAINING: AtomicBool = AtomicBool::new(false);

/// Marks the training loop as running while it lives.
struct TrainingPhase;

impl TrainingPhase {
    fn enter() -> Self {
        TRAINING.store(true, Ordering::SeqCst);
        TrainingPhase
    }
}

impl Drop for TrainingPhase {
    fn drop(&mut self) {
        TRAINING.store(false, Ordering::SeqCst);
    }
}

/// What a signal does: stop the running loop at its next step, or exit now (no loop running, or
/// the second signal) with the shell's code for it, 128 + the signal. Only atomics and `_exit`:
/// safe in a signal handler.
fn on_signal(sig: i32) {
    SIGNAL.store(sig, Ordering::SeqCst);
    if !TRAINING.load(Ordering::SeqCst) || INTERRUPTED.swap(true, Ordering::SeqCst) {
        exit_now(128 + sig);
    }
}

#[cfg(unix)]
fn exit_now(code: i32) {
    // SAFETY: `_exit` is async-signal-safe; nothing is unwound or flushed, as after a kill.
    unsafe { libc::_exit(code) }
}

#[cfg(not(unix))]
fn exit_now(code: i32) {
    std::process::exit(code)
}

/// Installs the handler of SIGINT (Ctrl-C) and SIGTERM (once per process): while [`train`] runs
/// they stop it at the next step boundary with a checkpoint; at any other time, or on a second
/// signal, the process exits at once with code 130 (SIGINT) or 143 (SIGTERM).
pub fn install_ctrl_c() {
    #[cfg(unix)]
    {
        extern "C" fn handler(sig: libc::c_int) {
            on_signal(sig);
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: `handler` only touches atomics and calls `_exit` (async-signal-safe); the
            // sigaction struct is zeroed, then filled.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = handler as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    }
    #[cfg(not(unix))]
    {
        // Elsewhere ctrlc tells no signal from another: every one counts as Ctrl-C.
        let _ = ctrlc::set_handler(|| on_signal(2));
    }
}

/// The exit code for an interrupted run: 128 + the signal that stopped it (130 for SIGINT, 143
/// for SIGTERM), 130 when it was stopped otherwise.
pub fn interrupt_exit_code() -> u8 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 130,
        s => (128 + s).clamp(0, 255) as u8,
    }
}

// ANCHOR: early_stopping
/// Whether `new` beats the best value so far of `metric`, which is maximised or minimised as
/// [`default_greater_is_better`] says. The first value always wins.
pub fn better(metric: &str, new: f64, old: Option<f64>) -> bool {
    better_as(default_greater_is_better(metric), new, old)
}

/// Whether `new` beats `old`: greater when `greater_is_better`, else smaller. The first value
/// always wins.
pub fn better_as(greater_is_better: bool, new: f64, old: Option<f64>) -> bool {
    match old {
        None => true,
        Some(o) if greater_is_better => new > o,
        Some(o) => new < o,
    }
}

impl TrainerState {
    /// Records one evaluation of the metric that decides "best" at the current step: a new best
    /// is remembered and resets the count of evaluations without improvement, anything else adds
    /// one to it. Returns whether the value improved.
    pub fn record_eval(&mut self, metric: &str, value: f64) -> bool {
        self.record_eval_as(default_greater_is_better(metric), value)
    }

    /// [`TrainerState::record_eval`] with the direction given (`greater_is_better`).
    pub fn record_eval_as(&mut self, greater_is_better: bool, value: f64) -> bool {
        let improved = better_as(greater_is_better, value, self.best_metric);
        if improved {
            self.best_metric = Some(value);
            self.best_step = Some(self.step);
            self.evals_without_improvement = 0;
        } else {
            self.evals_without_improvement += 1;
        }
        improved
    }

    /// Early stopping: `patience` evaluations in a row have not improved on the best.
    pub fn should_stop_early(&self, patience: usize) -> bool {
        self.evals_without_improvement >= patience
    }
}
// ANCHOR_END: early_stopping

/// The batch of micro-step `micro` (counted over the whole run), from the epoch's permutation.
fn batch_indices(n: usize, args: &TrainingArgs, micro: usize) -> Vec<usize> {
    let per_epoch = args.steps_per_epoch(n) * args.gradient_accumulation_steps;
    let epoch = micro / per_epoch;
    let within = micro % per_epoch;
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(
        args.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
    ));
    let start = (within * args.batch_size) % n.max(1);
    (start..(start + args.batch_size).min(n))
        .map(|i| order[i])
        .collect()
}

/// AdamW as the Trainer sets it up when no optimizer is given: PyTorch's betas and eps, the
/// arguments' weight decay, biases and normalisation weights excluded from decay, and each
/// `(parameter, multiplier)` of `lr_multipliers` applied (LoRA+).
pub fn adamw<F: Float>(
    args: &TrainingArgs,
    store: &ParamStore<F>,
    lr_multipliers: &[(ParamId, f64)],
) -> Result<AdamW<F>> {
    args.validate()?;
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: args.weight_decay,
        ..AdamWConfig::default()
    })?;
    opt.exclude_from_decay_by_name(store);
    for &(id, m) in lr_multipliers {
        opt.set_lr_multiplier(id, m)?;
    }
    Ok(opt)
}

/// `(head parameter, head_learning_rate / learning_rate)` for each of `head`, for [`adamw`]'s
/// multipliers: the head then steps at `head_learning_rate` under the same schedule. Empty
/// without a `head_learning_rate`.
pub fn head_lr_multipliers(args: &TrainingArgs, head: &[ParamId]) -> Vec<(ParamId, f64)> {
    match args.head_learning_rate {
        Some(h) => head
            .iter()
            .map(|&id| (id, h / args.learning_rate))
            .collect(),
        None => Vec::new(),
    }
}

/// Everything one training run needs, for [`train`]. [`Training::new`] takes what every run has
/// (arguments, task, parameters); the rest has defaults that the builder methods replace.
///
/// In outline (the compiled uses are `lab::finetune::train_method` and the tests):
///
/// ```text
/// let report = train(
///     Training::new(&args, &task, &mut store)
///         .hooks(method.as_ref())
///         .optimizer(Box::new(Sgd::new(SgdConfig::default())?))
///         .progress(&mut bar),
/// )?;
/// ```
pub struct Training<'a, F: Float> {
    args: &'a TrainingArgs,
    task: &'a dyn TrainTask<F>,
    store: &'a mut ParamStore<F>,
    hooks: &'a dyn Hooks<F>,
    optimizer: Option<Box<dyn Optimizer<F> + 'a>>,
    resume: bool,
    identity: serde_json::Value,
    log_file: bool,
    flush_denormals: Option<bool>,
    progress: Option<&'a mut dyn Progress>,
}

impl<'a, F: Float> Training<'a, F> {
    /// Trains the trainable parameters of `store` on `task` under `args`: the plain model (no
    /// hooks), [`adamw`] without multipliers, from the start, logged to `log.jsonl`, silent.
    pub fn new(
        args: &'a TrainingArgs,
        task: &'a dyn TrainTask<F>,
        store: &'a mut ParamStore<F>,
    ) -> Self {
        Self {
            args,
            task,
            store,
            hooks: &NoHooks,
            optimizer: None,
            resume: false,
            identity: serde_json::Value::Null,
            log_file: true,
            flush_denormals: None,
            progress: None,
        }
    }

    /// The fine-tuning method's hooks the model runs through.
    pub fn hooks(mut self, hooks: &'a dyn Hooks<F>) -> Self {
        self.hooks = hooks;
        self
    }

    /// The optimizer (instead of [`adamw`]). Its state is saved in checkpoints and restored on
    /// resume through [`Optimizer::state`] and [`Optimizer::load_state`].
    pub fn optimizer(mut self, optimizer: Box<dyn Optimizer<F> + 'a>) -> Self {
        self.optimizer = Some(optimizer);
        self
    }

    /// With `true`, continues from the newest checkpoint in `args.output_dir` (if there is one).
    pub fn resume(mut self, resume: bool) -> Self {
        self.resume = resume;
        self
    }

    /// What identifies the run beyond its seed (a JSON object: method, task, data, base...),
    /// recorded in each checkpoint: a resume from a checkpoint recording another identity is
    /// refused, naming the keys that differ, and pruning only deletes checkpoints of this one.
    pub fn identity(mut self, identity: serde_json::Value) -> Self {
        self.identity = identity;
        self
    }

    /// With `false`, logged steps are kept in [`TrainerState::log`] only, and nothing is written
    /// to `output_dir/log.jsonl` (pre-training keeps its history in `pretrain.json` instead).
    pub fn log_file(mut self, on: bool) -> Self {
        self.log_file = on;
        self
    }

    /// Flush subnormal floats to zero during this run (`true`) or keep them (`false`), instead of
    /// the process-wide setting ([`crate::kernels::denormal::set_flush_while_training`]).
    pub fn flush_denormals(mut self, on: bool) -> Self {
        self.flush_denormals = Some(on);
        self
    }

    /// Where progress goes (the default is silent).
    pub fn progress(mut self, progress: &'a mut dyn Progress) -> Self {
        self.progress = Some(progress);
        self
    }
}

/// Whether `e` is the Trainer's stop on a NaN or infinite loss (rather than a failure of the
/// run's setup): experiments that provoke divergence keep what was measured before it.
pub fn is_divergence(e: &Error) -> bool {
    matches!(e, Error::Invalid { op: "train", detail }
        if detail.contains("the loss became") || detail.contains("the weights became non-finite"))
}

/// The run's identity as checkpoints record it: the seed, then each key of `identity`.
fn run_identity(args: &TrainingArgs, identity: &serde_json::Value) -> serde_json::Value {
    let mut run = serde_json::Map::new();
    run.insert("seed".into(), args.seed.into());
    match identity {
        serde_json::Value::Object(m) => run.extend(m.clone()),
        serde_json::Value::Null => {}
        other => {
            run.insert("identity".into(), other.clone());
        }
    }
    serde_json::Value::Object(run)
}

/// Refuses to resume from `dir`, which records the run `saved`, a run identified as `run`;
/// names every key that differs.
fn check_same_run(dir: &Path, saved: &serde_json::Value, run: &serde_json::Value) -> Result<()> {
    let null = serde_json::Value::Null;
    let keys: std::collections::BTreeSet<&String> = [saved, run]
        .iter()
        .filter_map(|v| v.as_object())
        .flat_map(|m| m.keys())
        .collect();
    let differs: Vec<String> = keys
        .into_iter()
        .filter_map(|k| {
            let (a, b) = (saved.get(k).unwrap_or(&null), run.get(k).unwrap_or(&null));
            (a != b).then(|| format!("{k} {a} (this run: {b})"))
        })
        .collect();
    if differs.is_empty() {
        return Ok(());
    }
    invalid(
        "resume",
        format!(
            "{} was written by a run with other arguments: {}; resume with the same arguments, or start afresh with --overwrite-output-dir",
            dir.display(),
            differs.join("; ")
        ),
    )
}

/// The end of a divergence message: where training can restart from.
fn last_good(dir: &Option<std::path::PathBuf>) -> String {
    match dir {
        Some(d) => format!("the last good checkpoint is {}", d.display()),
        None => "no checkpoint was saved".to_string(),
    }
}

/// Writes `log.jsonl` anew with `entries` (a resumed run's log up to its checkpoint's step; none
/// for a new run) and opens it for appending.
fn open_log(path: &Path, entries: &[LogEntry]) -> Result<std::fs::File> {
    let mut text = String::new();
    for e in entries {
        text.push_str(&serde_json::to_string(e).expect("entry serialises"));
        text.push('\n');
    }
    crate::io::atomic_write(path, text.as_bytes())?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

/// The learning-rate schedule the arguments name, over `total` optimizer steps.
fn schedule(args: &TrainingArgs, total: usize) -> Schedule {
    match args.schedule {
        ScheduleKind::Constant => Schedule::ConstantWithWarmup {
            warmup_steps: args.warmup_steps,
        },
        ScheduleKind::Linear => Schedule::Linear {
            warmup_steps: args.warmup_steps,
            total_steps: total,
        },
        ScheduleKind::Cosine => Schedule::Cosine {
            warmup_steps: args.warmup_steps,
            total_steps: total,
        },
    }
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The directory under `output_dir` holding the best evaluation's trainable parameters.
pub const BEST_DIR: &str = "checkpoint-best";
/// The file in [`BEST_DIR`] naming the step the parameters are from.
const BEST_STATE: &str = "best.json";

/// The values of the trainable parameters of `store`.
fn trainable_values<F: Float>(store: &ParamStore<F>) -> Vec<(ParamId, ArrayD<F>)> {
    store
        .iter()
        .filter(|(_, p)| p.trainable)
        .map(|(id, p)| (id, p.value.clone()))
        .collect()
}

/// Writes the best evaluation's trainable parameters `kept` into `dir` (replaced whole), with
/// the step and metrics they are from.
fn save_best<F: Float>(
    dir: &Path,
    store: &ParamStore<F>,
    kept: &[(ParamId, ArrayD<F>)],
    state: &TrainerState,
) -> Result<()> {
    let tmp = crate::io::temp_dir_for(dir)?;
    let views: Vec<(&str, ArrayViewD<'_, F>)> = kept
        .iter()
        .map(|(id, v)| (store.name(*id), v.view()))
        .collect();
    safetensors::save(&tmp.join(checkpoint::TRAINABLE), &views, &[])?;
    let json = serde_json::json!({ "step": state.best_step, "metrics": state.best_metrics });
    crate::io::atomic_write(&tmp.join(BEST_STATE), json.to_string().as_bytes())?;
    crate::io::replace_dir(&tmp, dir)
}

/// Reads the parameters [`save_best`] wrote, checking they are the resumed state's best step
/// and hold every trainable parameter of `store` in its shape.
fn load_best<F: Float>(
    dir: &Path,
    store: &ParamStore<F>,
    state: &TrainerState,
) -> Result<Vec<(ParamId, ArrayD<F>)>> {
    let spath = dir.join(BEST_STATE);
    let saved: serde_json::Value =
        serde_json::from_slice(&crate::io::read(&spath)?).map_err(|e| Error::Data {
            path: spath.display().to_string(),
            line: e.line(),
            detail: e.to_string(),
        })?;
    if saved.get("step").and_then(|s| s.as_u64()) != state.best_step.map(|s| s as u64) {
        return invalid(
            "resume",
            format!(
                "{}: holds the weights of step {}, the checkpoint's best step is {:?}",
                dir.display(),
                saved.get("step").unwrap_or(&serde_json::Value::Null),
                state.best_step
            ),
        );
    }
    let wpath = dir.join(checkpoint::TRAINABLE);
    let mut by_name: std::collections::HashMap<String, ArrayD<F>> = safetensors::load::<F>(&wpath)?
        .tensors
        .into_iter()
        .collect();
    let mut out = Vec::new();
    for (id, p) in store.iter().filter(|(_, p)| p.trainable) {
        match by_name.remove(&p.name) {
            Some(v) if v.shape() == p.value.shape() => out.push((id, v)),
            _ => {
                return Err(Error::Data {
                    path: wpath.display().to_string(),
                    line: 0,
                    detail: format!("tensor {} is missing or misshaped", p.name),
                })
            }
        }
    }
    Ok(out)
}

/// Runs `training`: trains until the step budget, early stopping, a stop request or Ctrl-C, and
/// reports what was measured.
pub fn train<F: Float>(training: Training<'_, F>) -> Result<TrainReport> {
    let Training {
        args,
        task,
        store,
        hooks,
        optimizer,
        resume,
        identity,
        log_file,
        flush_denormals,
        progress,
    } = training;
    let _phase = TrainingPhase::enter();
    // NEFTune wraps the method's hooks: noise on the token embeddings while training.
    let neftune =
        args.neftune_noise_alpha
            .filter(|&a| a > 0.0)
            .map(|alpha| super::neftune::Neftune {
                inner: hooks,
                alpha,
            });
    let hooks: &dyn Hooks<F> = match &neftune {
        Some(n) => n,
        None => hooks,
    };
    let mut silent = ();
    let progress: &mut dyn Progress = match progress {
        Some(p) => p,
        None => &mut silent,
    };
    args.validate()?;
    // Subnormal gradients and Adam moments are slow on x86-64: flush them while training
    // (unless `--no-flush-denormals` or the run says otherwise); the caller's mode is restored on
    // return.
    let _float_mode = match flush_denormals {
        Some(on) => crate::kernels::FlushDenormals::new(on),
        None => crate::kernels::FlushDenormals::for_training(),
    };
    let n = task.train_len();
    if n == 0 {
        return invalid("train", "the training set is empty");
    }
    if let Some(names) = task.metric_names() {
        if !names.contains(&args.metric_for_best_model.as_str()) {
            return invalid(
                "--metric-for-best-model",
                format!(
                    "this task does not report {:?}; its metrics are {}",
                    args.metric_for_best_model,
                    names.join(", ")
                ),
            );
        }
    }
    let started = Instant::now();
    let total = args.checked_total_steps(n)?;
    let per_epoch = args.steps_per_epoch(n);
    let mut opt = match optimizer {
        Some(o) => o,
        None => Box::new(adamw(
            args,
            store,
            &head_lr_multipliers(args, &task.head_params()),
        )?),
    };
    let schedule = schedule(args, total);
    let run = run_identity(args, &identity);
    let mut state = TrainerState::default();
    let best_dir = args.output_dir.join(BEST_DIR);
    let checkpoints = checkpoint::training_checkpoints(&args.output_dir);
    // The newest checkpoint this run may restart from after a divergence.
    let mut last_saved: Option<std::path::PathBuf> = None;
    if resume && args.overwrite_output_dir {
        return invalid(
            "train",
            "--resume continues the checkpoints that --overwrite-output-dir deletes: pass one of them",
        );
    }
    if resume {
        if let Some((_, dir)) = checkpoints.last() {
            let saved: TrainerState = checkpoint::read_trainer_state(dir)?;
            if let Some(saved_run) = &saved.run {
                check_same_run(dir, saved_run, &run)?;
            }
            state = checkpoint::load_training(dir, store, opt.as_mut())?;
            last_saved = Some(dir.clone());
        }
    } else if !checkpoints.is_empty() || best_dir.exists() {
        if args.overwrite_output_dir {
            checkpoint::clear_training(&args.output_dir)?;
        } else {
            let names: Vec<String> = checkpoints
                .iter()
                .map(|(s, _)| checkpoint::training_dir_name(*s))
                .chain(best_dir.exists().then(|| BEST_DIR.to_string()))
                .collect();
            return invalid(
                "train",
                format!(
                    "the output directory {} holds the checkpoints of an earlier run ({}): pass --resume to continue it, or --overwrite-output-dir to delete them and start afresh",
                    args.output_dir.display(),
                    names.join(", ")
                ),
            );
        }
    }
    let start_step = state.step;
    state.run = Some(run.clone());
    let log_path = args.output_dir.join("log.jsonl");
    let mut log = if log_file {
        std::fs::create_dir_all(&args.output_dir).map_err(io_err(&args.output_dir))?;
        // Resumed: the log up to the checkpoint's step and nothing after it; new: a new log.
        Some(open_log(&log_path, &state.log)?)
    } else {
        None
    };
    let mut grads = Grads::new(store);
    let mut step_times = Vec::new();
    let (mut final_eval, mut stopped_early, mut interrupted) = (None, false, false);
    let greater_is_better = args.resolved_greater_is_better();
    // The trainable parameters at the best evaluation so far (`load_best_model_at_end`).
    let mut best: Option<Vec<(ParamId, ArrayD<F>)>> = None;
    if args.load_best_model_at_end && state.best_step.is_some() && best_dir.exists() {
        best = Some(load_best(&best_dir, store, &state)?);
    }
    // The ledger of the step that held the most: its activations, gradients and optimizer state
    // were all alive at once, between its backward pass and its parameter update.
    let mut peak = Memory::default();
    let accum = args.gradient_accumulation_steps;
    // Gradient checkpointing runs the task's blocks again in backward: it needs its transformer.
    let recompute = match (args.gradient_checkpointing, task.model()) {
        (false, _) => None,
        (true, Some(model)) => Some(BlockRecompute { model, hooks }),
        (true, None) => {
            return invalid(
                "train",
                "gradient_checkpointing: this task does not expose its transformer",
            )
        }
    };
    progress.start(total, state.step);
    while state.step < total {
        let step = state.step;
        let t0 = Instant::now();
        // Σ mean_k · n_k and Σ n_k over the micro-batches (n_k: loss terms), and input tokens.
        let (mut loss_sum, mut items, mut tokens) = (0.0, 0usize, 0usize);
        for k in 0..accum {
            let micro = step * accum + k;
            let idx = batch_indices(n, args, micro);
            let mut tape = Tape::new(store);
            tape.seed(args.seed ^ (micro as u64).wrapping_mul(0x9E37_79B9));
            tape.set_checkpointing(args.gradient_checkpointing);
            let batch = MicroBatch {
                step,
                micro,
                indices: &idx,
            };
            let (loss, terms) = task.loss(&mut tape, hooks, &batch)?;
            // A method's regulariser (AdaLoRA's) joins each micro-batch's mean loss.
            let loss = match hooks.regularizer(&mut tape)? {
                Some(r) => tape.add(loss, r)?,
                None => loss,
            };
            // The forward is done: from here on the tape holds only what backward reads.
            tape.release_unsaved(0, &[loss]);
            let value = tape.scalar(loss)?.as_f64();
            if !value.is_finite() {
                return invalid(
                    "train",
                    format!(
                        "the loss became {value} at step {} ; stopping ({})",
                        step + 1,
                        last_good(&last_saved)
                    ),
                );
            }
            // One micro-batch: its mean as it is. Several: each one's summed loss, divided by
            // the step's terms once they are all counted (below).
            let weight = if accum == 1 { 1.0 } else { terms as f64 };
            let scaled = tape.scale(loss, weight)?;
            match &recompute {
                None => tape.backward(scaled, &mut grads)?,
                Some(r) => tape.backward_recomputing(scaled, &mut grads, r)?,
            }
            let held = Memory {
                weights: store.bytes(),
                gradients: grads.bytes(),
                optimizer: opt.state_bytes(),
                activations: tape.activation_bytes(),
                reference: task.reference_bytes(),
            };
            if held.total() > peak.total() {
                peak = held;
            }
            loss_sum += value * weight;
            items += terms;
            tokens += task.tokens(&batch).unwrap_or(terms);
        }
        if accum > 1 && items > 0 {
            grads.scale(F::of(1.0 / items as f64));
            loss_sum /= items as f64;
        }
        let grad_norm = if args.max_grad_norm > 0.0 {
            clip_grad_norm(&mut grads, args.max_grad_norm)?
        } else {
            crate::optim::grad_norm(&grads)
        };
        hooks.project_grads(store, &mut grads)?;
        let lr = schedule.lr(args.learning_rate, step);
        opt.step(store, &grads, lr);
        hooks.after_step(store, &grads, step, total)?;
        grads.zero();
        state.step += 1;
        state.losses.push(loss_sum);
        let dt = t0.elapsed().as_secs_f64();
        step_times.push(dt);
        let epoch = state.step as f64 / per_epoch as f64;
        let mut entry = LogEntry {
            step: state.step,
            epoch,
            loss: Some(loss_sum),
            learning_rate: Some(lr),
            grad_norm: Some(grad_norm),
            tokens_per_sec: Some(tokens as f64 / dt),
            eval: None,
        };
        let end_of_epoch = state.step % per_epoch == 0;
        let last = state.step == total;
        let do_eval = match args.eval_strategy {
            Strategy::No => false,
            Strategy::Steps => state.step % args.eval_steps.max(1) == 0 || last,
            Strategy::Epoch => end_of_epoch || last,
        };
        if do_eval {
            let m = task.evaluate(
                store,
                hooks,
                Split::Validation,
                args.max_eval_examples,
                args.eval_batch_size,
            )?;
            // A NaN validation metric is not a result: stop, naming it and the step.
            if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_finite()) {
                return invalid("train", format!("the validation {k} became {v} at step {}; stopping (the model's outputs are not finite)", state.step));
            }
            progress.eval(state.step, &m);
            if let Some(&v) = m.get(&args.metric_for_best_model) {
                if state.record_eval_as(greater_is_better, v) {
                    state.best_metrics = Some(m.clone());
                    if args.load_best_model_at_end {
                        let kept = trainable_values(store);
                        if args.save_strategy != Strategy::No {
                            save_best(&best_dir, store, &kept, &state)?;
                        }
                        best = Some(kept);
                    }
                }
            }
            entry.eval = Some(m.clone());
            final_eval = Some(m);
        }
        if state.step % args.logging_steps.max(1) == 0 || do_eval || last {
            if let Some(log) = log.as_mut() {
                // One write per line, so a kill never leaves half an entry before a whole one.
                let mut line = serde_json::to_string(&entry).expect("entry serialises");
                line.push('\n');
                log.write_all(line.as_bytes()).map_err(io_err(&log_path))?;
            }
            state.log.push(entry.clone());
        }
        progress.step("", &entry);
        if let Some(p) = args.early_stopping_patience {
            if do_eval && state.should_stop_early(p) {
                stopped_early = true;
            }
        }
        interrupted = INTERRUPTED.load(Ordering::SeqCst) || progress.should_stop(state.step);
        let do_save = match args.save_strategy {
            Strategy::No => false,
            Strategy::Steps => state.step % args.save_steps.max(1) == 0,
            Strategy::Epoch => end_of_epoch,
        };
        if do_save || interrupted || (stopped_early && args.save_strategy != Strategy::No) {
            // Never a checkpoint that cannot be resumed: stop on non-finite weights or state.
            if let Some(bad) = checkpoint::non_finite_training(store, opt.as_ref()) {
                return invalid(
                    "train",
                    format!(
                        "the weights became non-finite at step {} ({bad}); stopping without saving checkpoint-{} ({})",
                        state.step,
                        state.step,
                        last_good(&last_saved)
                    ),
                );
            }
            let dir = args
                .output_dir
                .join(checkpoint::training_dir_name(state.step));
            checkpoint::save_training(&dir, store, opt.as_ref(), &state)?;
            last_saved = Some(dir);
            checkpoint::prune_training(&args.output_dir, args.save_total_limit, &run);
            // Without a save strategy the best weights were kept in memory only; a checkpoint
            // written on Ctrl-C gets them beside it, so the resumed run can still restore them.
            if args.save_strategy == Strategy::No {
                if let Some(kept) = &best {
                    save_best(&best_dir, store, kept, &state)?;
                }
            }
        }
        if stopped_early || interrupted {
            break;
        }
    }
    // What the run hands back (and the caller saves as its adapter or model) is finite.
    let trainable = store
        .iter()
        .filter(|(_, p)| p.trainable)
        .map(|(_, p)| (p.name.as_str(), p.value.view()));
    if let Some(bad) = checkpoint::first_non_finite(trainable) {
        return invalid(
            "train",
            format!(
                "the weights became non-finite at step {} (parameter {bad}); stopping ({})",
                state.step,
                last_good(&last_saved)
            ),
        );
    }
    // Hugging Face's `load_best_model_at_end`: the run ends with the best evaluation's weights,
    // and reports that evaluation. An interrupted run keeps its last weights (it will resume).
    let mut restored_best = None;
    if args.load_best_model_at_end && !interrupted {
        if let (Some(kept), Some(step), Some(metrics)) =
            (best, state.best_step, state.best_metrics.clone())
        {
            for (id, value) in kept {
                store.set_value(id, value)?;
            }
            final_eval = Some(metrics.clone());
            restored_best = Some(BestModel { step, metrics });
        }
    }
    progress.finish();
    step_times.sort_by(f64::total_cmp);
    let median = step_times.get(step_times.len() / 2).copied().unwrap_or(0.0);
    Ok(TrainReport {
        memory: peak,
        state,
        final_eval,
        restored_best,
        stopped_early,
        interrupted,
        start_step,
        seconds: started.elapsed().as_secs_f64(),
        median_step_seconds: median,
    })
}
