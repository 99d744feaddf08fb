//! The Trainer: Hugging Face's `Trainer` loop for any task and any method.
//!
//! Each optimizer step sums `gradient_accumulation_steps` micro-batches, clips the global norm,
//! steps AdamW under the schedule, and logs. Evaluation and checkpoints follow their strategies;
//! early stopping watches `metric_for_best`. Everything is deterministic from the seed: the
//! batch order of epoch e is a permutation seeded by (seed, e) and dropout is seeded by the step,
//! so a run resumed from a checkpoint computes exactly the losses of an uninterrupted one.
//!
//! A checkpoint (`checkpoint-<step>/`) holds the trainable parameters (`trainable.safetensors`),
//! the optimizer state (`optimizer.safetensors`) and `trainer_state.json`; it is written into a
//! temporary directory and renamed, so an interruption never leaves half a checkpoint. A NaN or
//! infinite loss stops training with an error naming the step; the last good checkpoint stays.

use super::args::{ScheduleKind, Strategy, TrainingArgs};
use crate::autodiff::{ParamStore, Tape, Var};
use crate::error::{invalid, Error, Result};
use crate::io::safetensors;
use crate::nn::Hooks;
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, Optimizer, Schedule};
use crate::tensor::Float;
use crate::Grads;
use ndarray::ArrayViewD;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Metric name → value (`loss` always, plus the task's metrics).
pub type Metrics = BTreeMap<String, f64>;

/// Which split to evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Validation,
    Test,
}

/// What the Trainer needs from a task: its training set size, a loss on chosen examples, and an
/// evaluation.
pub trait TrainTask<F: Float> {
    fn train_len(&self) -> usize;
    /// The mean loss over the training examples `indices`, and the number of tokens they hold.
    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        indices: &[usize],
    ) -> Result<(Var, usize)>;
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

/// One line of the JSONL log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub step: usize,
    pub epoch: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<Metrics>,
}

/// The state that makes a run resumable.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct TrainerState {
    /// Optimizer steps completed.
    pub step: usize,
    pub best_metric: Option<f64>,
    pub best_step: Option<usize>,
    pub evals_without_improvement: usize,
    /// Every training loss so far, one per optimizer step.
    pub losses: Vec<f64>,
    pub log: Vec<LogEntry>,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct TrainReport {
    pub state: TrainerState,
    /// Metrics of the last evaluation (validation), if any.
    pub final_eval: Option<Metrics>,
    pub stopped_early: bool,
    pub interrupted: bool,
    pub seconds: f64,
    /// Median seconds per optimizer step.
    pub median_step_seconds: f64,
    /// The memory ledger at the peak step.
    pub memory: Memory,
}

/// Bytes held at the peak step, by kind: what full fine-tuning and PEFT spend differently.
/// Weights are every parameter (frozen ones too); gradients exist only for trainable ones;
/// the optimizer keeps state only for trainable ones; activations are what the step's tape
/// held for the backward pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    pub weights: usize,
    pub gradients: usize,
    pub optimizer: usize,
    pub activations: usize,
}

impl Memory {
    pub fn total(&self) -> usize {
        self.weights + self.gradients + self.optimizer + self.activations
    }
}

/// Progress callbacks (the CLI draws a bar; tests stay silent with `()`).
pub trait TrainProgress {
    fn start(&mut self, _total_steps: usize, _from_step: usize) {}
    fn step(&mut self, _entry: &LogEntry) {}
    fn eval(&mut self, _step: usize, _metrics: &Metrics) {}
    /// Asked after every step: `true` stops training as Ctrl-C does (a checkpoint is saved).
    fn should_stop(&mut self, _step: usize) -> bool {
        false
    }
}

impl TrainProgress for () {}

/// Set by Ctrl-C; the loop saves a checkpoint and stops at the next step.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once per process).
pub fn install_ctrl_c() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}

// ANCHOR: early_stopping
/// Whether `new` beats the best value so far of `metric`: `loss` and perplexities are
/// minimised, every other metric (accuracy, F1, ...) is maximised. The first value always wins.
pub fn better(metric: &str, new: f64, old: Option<f64>) -> bool {
    match old {
        None => true,
        Some(o) if metric == "loss" || metric.ends_with("perplexity") => new < o,
        Some(o) => new > o,
    }
}

impl TrainerState {
    /// Records one evaluation of the metric that decides "best" at the current step: a new best
    /// is remembered and resets the count of evaluations without improvement, anything else adds
    /// one to it. Returns whether the value improved.
    pub fn record_eval(&mut self, metric: &str, value: f64) -> bool {
        let improved = better(metric, value, self.best_metric);
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

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes a checkpoint of the trainable parameters, optimizer and trainer state.
pub fn save_checkpoint<F: Float>(
    dir: &Path,
    store: &ParamStore<F>,
    opt: &AdamW<F>,
    state: &TrainerState,
) -> Result<()> {
    let tmp = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let params: Vec<(&str, ArrayViewD<F>)> = store
        .iter()
        .filter(|(_, p)| p.trainable)
        .map(|(_, p)| (p.name.as_str(), p.value.view()))
        .collect();
    safetensors::save(&tmp.join("trainable.safetensors"), &params, &[])?;
    let opt_state = opt.state();
    let views: Vec<(&str, ArrayViewD<F>)> = opt_state
        .iter()
        .map(|(n, a)| (n.as_str(), a.view()))
        .collect();
    safetensors::save(&tmp.join("optimizer.safetensors"), &views, &[])?;
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    crate::io::atomic_write(&tmp.join("trainer_state.json"), json.as_bytes())?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::rename(&tmp, dir).map_err(io_err(dir))
}

/// The newest `checkpoint-<step>` directory in `output_dir`.
pub fn latest_checkpoint(output_dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(output_dir).ok()?;
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let step: usize = name.strip_prefix("checkpoint-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .max_by_key(|(s, _)| *s)
        .map(|(_, p)| p)
}

/// Restores parameters, optimizer and trainer state from a checkpoint directory.
pub fn load_checkpoint<F: Float>(
    dir: &Path,
    store: &mut ParamStore<F>,
    opt: &mut AdamW<F>,
) -> Result<TrainerState> {
    let missing =
        crate::io::checkpoint::load_into(store, &dir.join("trainable.safetensors"), |n| {
            n.to_string()
        })?;
    let expected_missing = missing
        .iter()
        .filter(|n| {
            store
                .id(n)
                .map(|id| store.is_trainable(id))
                .unwrap_or(false)
        })
        .count();
    if expected_missing > 0 {
        return invalid("resume", format!("{}: {expected_missing} trainable parameters are missing (was it saved with another method?)", dir.display()));
    }
    let st = safetensors::load::<F>(&dir.join("optimizer.safetensors"))?;
    opt.load_state(store, st.tensors)?;
    let path = dir.join("trainer_state.json");
    let bytes = crate::io::read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Data {
        path: path.display().to_string(),
        line: e.line(),
        detail: e.to_string(),
    })
}

/// Trains the trainable parameters of `store` on `task`. With `resume`, continues from the newest
/// checkpoint in `args.output_dir`.
pub fn train<F: Float>(
    args: &TrainingArgs,
    task: &dyn TrainTask<F>,
    store: &mut ParamStore<F>,
    hooks: &dyn Hooks<F>,
    lr_multipliers: &[(crate::ParamId, f64)],
    resume: bool,
    progress: &mut dyn TrainProgress,
) -> Result<TrainReport> {
    args.validate()?;
    // Subnormal gradients and Adam moments are slow on x86-64: flush them while training
    // (unless `--no-flush-denormals`); the caller's mode is restored on return.
    let _float_mode = crate::kernels::FlushDenormals::for_training();
    let n = task.train_len();
    if n == 0 {
        return invalid("train", "the training set is empty");
    }
    let started = Instant::now();
    let total = args.total_steps(n);
    let per_epoch = args.steps_per_epoch(n);
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: args.weight_decay,
        ..AdamWConfig::default()
    })?;
    opt.exclude_from_decay_by_name(store);
    for &(id, m) in lr_multipliers {
        opt.set_lr_multiplier(id, m)?;
    }
    let schedule = match args.schedule {
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
    };
    let mut state = TrainerState::default();
    if resume {
        if let Some(dir) = latest_checkpoint(&args.output_dir) {
            state = load_checkpoint(&dir, store, &mut opt)?;
        }
    }
    std::fs::create_dir_all(&args.output_dir).map_err(io_err(&args.output_dir))?;
    let log_path = args.output_dir.join("log.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(io_err(&log_path))?;
    let mut grads = Grads::new(store);
    let mut step_times = Vec::new();
    let (mut final_eval, mut stopped_early, mut interrupted) = (None, false, false);
    // The ledger of the step that held the most: its activations, gradients and optimizer state
    // were all alive at once, between its backward pass and its parameter update.
    let mut peak = Memory::default();
    progress.start(total, state.step);
    while state.step < total {
        let step = state.step;
        let t0 = Instant::now();
        let (mut loss_sum, mut tokens) = (0.0, 0usize);
        for k in 0..args.gradient_accumulation_steps {
            let idx = batch_indices(n, args, step * args.gradient_accumulation_steps + k);
            let mut tape = Tape::new(store);
            tape.seed(
                args.seed
                    ^ ((step * args.gradient_accumulation_steps + k) as u64)
                        .wrapping_mul(0x9E37_79B9),
            );
            let (loss, t) = task.loss(&mut tape, hooks, &idx)?;
            let value = tape.scalar(loss)?.as_f64();
            if !value.is_finite() {
                return invalid("train", format!("the loss became {value} at step {} ; stopping (the last good checkpoint is kept)", step + 1));
            }
            let scaled = tape.scale(loss, 1.0 / args.gradient_accumulation_steps as f64)?;
            tape.backward(scaled, &mut grads)?;
            let held = Memory {
                weights: store.bytes(),
                gradients: grads.bytes(),
                optimizer: opt.state_bytes(),
                activations: tape.activation_bytes(),
            };
            if held.total() > peak.total() {
                peak = held;
            }
            loss_sum += value / args.gradient_accumulation_steps as f64;
            tokens += t;
        }
        let grad_norm = if args.max_grad_norm > 0.0 {
            clip_grad_norm(&mut grads, args.max_grad_norm)?
        } else {
            crate::optim::grad_norm(&grads)
        };
        let lr = schedule.lr(args.learning_rate, step);
        opt.step(store, &grads, lr);
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
            progress.eval(state.step, &m);
            if let Some(&v) = m.get(&args.metric_for_best) {
                state.record_eval(&args.metric_for_best, v);
            }
            entry.eval = Some(m.clone());
            final_eval = Some(m);
        }
        if state.step % args.logging_steps.max(1) == 0 || do_eval || last {
            writeln!(
                log,
                "{}",
                serde_json::to_string(&entry).expect("entry serialises")
            )
            .map_err(io_err(&log_path))?;
            state.log.push(entry.clone());
        }
        progress.step(&entry);
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
            save_checkpoint(
                &args.output_dir.join(format!("checkpoint-{}", state.step)),
                store,
                &opt,
                &state,
            )?;
            prune_checkpoints(&args.output_dir, args.save_total_limit);
        }
        if stopped_early || interrupted {
            break;
        }
    }
    step_times.sort_by(f64::total_cmp);
    let median = step_times.get(step_times.len() / 2).copied().unwrap_or(0.0);
    Ok(TrainReport {
        memory: peak,
        state,
        final_eval,
        stopped_early,
        interrupted,
        seconds: started.elapsed().as_secs_f64(),
        median_step_seconds: median,
    })
}

/// Deletes all but the newest `keep` checkpoints (0 keeps all).
fn prune_checkpoints(dir: &Path, keep: usize) {
    if keep == 0 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut cps: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            Some((
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix("checkpoint-")?
                    .parse()
                    .ok()?,
                e.path(),
            ))
        })
        .collect();
    cps.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (_, p) in cps.into_iter().skip(keep) {
        let _ = std::fs::remove_dir_all(p);
    }
}
