//! One fine-tuning run as the interview and pitfall experiments need it: the shipped base (or
//! the same architecture from scratch, or with another dropout, or stored in fewer bits), a task, a method, the Trainer,
//! and everything measured on the way (every step's loss and gradient norm, every evaluation),
//! kept even when the loss blows up.

use super::finetune::{prepare, task_data, Base};
use super::forgetting::{self, Forgetting};
use crate::data::lm::LmBatch;
use crate::data::tasks::Task;
use crate::error::Result;
use crate::nn::quantize::BaseDtype;
use crate::nn::Transformer;
use crate::peft::{Method, MethodSpec};
use crate::train::args::Strategy;
use crate::train::progress::{LogEntry, Metrics, Progress};
use crate::train::task::TaskModel;
use crate::train::trainer::{self, Split, TrainReport, TrainTask, Training};
use crate::train::TrainingArgs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The shipped decoder every experiment starts from unless it says otherwise.
pub const BASE: &str = "gpt-tiny";

/// A fresh directory name under the system temp dir, unique in this process.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let d = std::env::temp_dir().join(format!("tunelab-lab-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// What to train.
#[derive(Debug, Clone)]
pub struct Run {
    pub base: String,
    pub task: Task,
    pub spec: MethodSpec,
    /// `output_dir` is replaced by a temporary directory, removed after the run.
    pub args: TrainingArgs,
    pub train_limit: Option<usize>,
    /// Overrides the base's dropout (the shipped models use 0.1).
    pub dropout: Option<f64>,
    /// The same architecture with fresh random weights instead of the pre-trained ones.
    pub from_scratch: bool,
    /// How the base's block Linears are stored (`--base-dtype`; nf4 with LoRA is QLoRA).
    pub base_dtype: BaseDtype,
}

impl Run {
    /// `steps` steps of batch `batch` at learning rate `lr` on the shipped decoder: constant
    /// schedule, no warmup, no evaluation, no checkpoints, seed 42 ([`Run::seed`] to change it),
    /// clipping at 1.0.
    pub fn new(task: Task, spec: MethodSpec, lr: f64, steps: usize, batch: usize) -> Self {
        Self {
            base: BASE.into(),
            task,
            spec,
            args: TrainingArgs {
                max_steps: Some(steps),
                batch_size: batch,
                learning_rate: lr,
                schedule: crate::train::args::ScheduleKind::Constant,
                eval_strategy: Strategy::No,
                save_strategy: Strategy::No,
                ..TrainingArgs::default()
            },
            train_limit: None,
            dropout: None,
            from_scratch: false,
            base_dtype: BaseDtype::F32,
        }
    }

    /// Seeds the run: head and adapter initialisation, data order and dropout (and the weights
    /// of a from-scratch model). The examples are the same for every seed.
    pub fn seed(mut self, seed: u64) -> Self {
        self.args.seed = seed;
        self
    }

    /// Evaluates on the first `examples` validation examples every `every` steps.
    pub fn eval_every(mut self, every: usize, examples: usize) -> Self {
        self.args.eval_strategy = Strategy::Steps;
        self.args.eval_steps = every;
        self.args.max_eval_examples = examples;
        self
    }
}

/// Records every step and evaluation, so a run that blows up still has its curve.
#[derive(Default)]
pub struct Recorder {
    pub losses: Vec<f64>,
    pub grad_norms: Vec<f64>,
    pub evals: Vec<(usize, Metrics)>,
}

impl Progress for Recorder {
    fn step(&mut self, _run: &str, e: &LogEntry) {
        self.losses.push(e.loss.unwrap_or(f64::NAN));
        self.grad_norms.push(e.grad_norm.unwrap_or(f64::NAN));
    }
    fn eval(&mut self, step: usize, m: &Metrics) {
        self.evals.push((step, m.clone()));
    }
}

/// A finished run: the trained model and what was measured.
pub struct Outcome {
    pub base: Base,
    pub tm: TaskModel,
    pub method: Box<dyn Method<f32>>,
    pub trainable: usize,
    pub total: usize,
    pub record: Recorder,
    /// `None` when training stopped on a non-finite loss.
    pub report: Option<TrainReport>,
    /// The Trainer's message when the loss became NaN or infinite.
    pub diverged: Option<String>,
}

impl Outcome {
    /// Loss and metrics on the first `limit` examples of a split.
    pub fn evaluate(&self, split: Split, limit: usize) -> Result<Metrics> {
        TrainTask::<f32>::evaluate(
            &self.tm,
            &self.base.store,
            self.method.as_ref(),
            split,
            limit,
            32,
        )
    }

    /// The LM loss on held-out pre-training text before and after this run.
    pub fn forgetting(&self, batches: &[LmBatch]) -> Result<Forgetting> {
        forgetting::measure(&self.base, self.method.as_ref(), batches)
    }

    /// Validation losses of the evaluations, as (step, loss).
    pub fn val_losses(&self) -> Vec<(usize, f64)> {
        self.record
            .evals
            .iter()
            .filter_map(|(s, m)| Some((*s, *m.get("loss")?)))
            .collect()
    }

    /// Steps actually trained.
    pub fn steps(&self) -> usize {
        self.record.losses.len()
    }
}

/// Loads the base (pre-trained or fresh), binds the task and applies the method.
pub fn prepare_run(run: &Run) -> Result<(Base, TaskModel, Box<dyn Method<f32>>)> {
    let mut base = super::finetune::load_base(&run.base)?;
    if let Some(p) = run.dropout {
        base.model.config.dropout = p;
    }
    if run.from_scratch {
        let mut fresh = crate::ParamStore::new();
        // Fresh weights drawn from the run's seed, apart from the head's and the adapter's.
        let seed = run.args.seed.wrapping_add(7);
        base.model = Transformer::new(base.model.config.clone(), &mut fresh, seed)?;
        base.store = fresh;
    }
    base.quantize(run.base_dtype)?;
    let (data, world) = task_data(run.task, None, run.train_limit)?;
    let (tm, method) = prepare(&mut base, run.task, data, world, &run.spec, run.args.seed)?;
    Ok((base, tm, method))
}

/// Trains `run`, printing one progress line first.
pub fn train_run(run: &Run, label: &str, progress: &mut dyn Progress) -> Result<Outcome> {
    progress.line(&format!(
        "training {label}: {} steps of batch {} at lr {:.0e}",
        run.args.max_steps.unwrap_or(0),
        run.args.batch_size,
        run.args.learning_rate
    ));
    let (mut base, tm, method) = prepare_run(run)?;
    let (trainable, total) = (base.store.num_trainable(), base.store.num_params());
    let mut mults = method.lr_multipliers();
    mults.extend(trainer::head_lr_multipliers(&run.args, &tm.head.params()));
    let mut args = run.args.clone();
    args.output_dir = temp_dir("run");
    let mut record = Recorder::default();
    let result = trainer::adamw(&args, &base.store, &mults).and_then(|opt| {
        trainer::train(
            Training::new(&args, &tm, &mut base.store)
                .hooks(method.as_ref())
                .optimizer(Box::new(opt))
                .progress(&mut record),
        )
    });
    let _ = std::fs::remove_dir_all(&args.output_dir);
    let (report, diverged) = match result {
        Ok(r) => (Some(r), None),
        Err(e) if trainer::is_divergence(&e) => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    Ok(Outcome {
        base,
        tm,
        method,
        trainable,
        total,
        record,
        report,
        diverged,
    })
}
