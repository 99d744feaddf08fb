//! GRPO end to end on the code task: a supervised warm-up (a raw base never writes a program
//! that runs, so every group's rewards would be equal and every advantage 0), then GRPO with the
//! method's hooks, and the held-out execution accuracy before and after ([`train_grpo`]); and
//! GRPO against supervised fine-tuning at equal compute from the same warm-up
//! ([`grpo_vs_sft`]).
//!
//! **Equal compute** here means equal training compute: both arms take the same optimizer steps
//! with the same method, and each SFT step runs forward and backward on as many sequences as a
//! GRPO step does (B prompts × G completions). GRPO pays for sampling those completions on top
//! (through the KV cache); the wall time of each arm says what that costs. SFT learns from the
//! reference programs; GRPO sees only the prompts and the execution reward.

use super::{load_reward_model, AlignRun, RewardModel};
use crate::data::tasks::Task;
use crate::error::{invalid, Result};
use crate::lab::finetune::{load_base, prepare, task_data, Base};
use crate::peft::{self, Method, MethodSpec};
use crate::train::args::Strategy;
use crate::train::grpo::{ExecutionReward, GrpoOptions, GrpoTask, Reward, RolloutStats};
use crate::train::progress::Progress;
use crate::train::task::TaskModel;
use crate::train::trainer::{self, Metrics, Split, TrainReport, TrainTask, Training};
use crate::train::TrainingArgs;
use std::path::PathBuf;
use std::time::Instant;

/// What GRPO is rewarded by.
#[derive(Debug, Clone, PartialEq)]
pub enum RewardSource {
    /// The code task's verifiable reward: 1 when the completion computes the reference's value.
    Execution,
    /// A reward model saved by `tunelab align reward` (trained on the same base).
    Model(PathBuf),
}

impl Reward for RewardModel {
    fn name(&self) -> &str {
        "reward-model"
    }

    fn score(&self, prompt: &str, completion: &str, _reference: &str) -> Result<f64> {
        Ok(RewardModel::score(self, &[(prompt, completion)])?[0])
    }
}

/// The supervised warm-up before GRPO: full fine-tuning on the code task's programs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Warmup {
    /// Optimizer steps (0: none, GRPO starts from the base).
    pub steps: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
}

impl Default for Warmup {
    /// 30 steps of 16 programs at 1e-3 (full fine-tuning): the model then writes programs, some
    /// of which compute the right value, so a group's samples differ in reward and GRPO has a
    /// signal.
    fn default() -> Self {
        Self {
            steps: 30,
            batch_size: 16,
            learning_rate: 1e-3,
        }
    }
}

/// Everything a GRPO run needs. `run.args.batch_size` counts prompts per micro-batch (each
/// sampled `options.num_generations` times).
#[derive(Debug, Clone)]
pub struct GrpoRun {
    pub run: AlignRun,
    pub options: GrpoOptions,
    pub warmup: Warmup,
    /// Train on the first N prompts of the code task's train split (None: all).
    pub prompts: Option<usize>,
    pub reward: RewardSource,
}

/// What a GRPO run measured.
pub struct GrpoResult {
    pub report: TrainReport,
    /// Per optimizer step: mean reward, its std, KL, clip ratio, completion length.
    pub steps: Vec<RolloutStats>,
    /// Test metrics after the warm-up, before GRPO, and after GRPO: greedy execution accuracy
    /// (`score`), and on sampled completions the reward, KL and length.
    pub before: Metrics,
    pub after: Metrics,
    pub warmup_seconds: f64,
    pub reference_bytes: usize,
    pub summary: String,
    pub adapter_dir: PathBuf,
}

/// Loads the base, binds the code task and runs the warm-up on its whole train split, then keeps
/// the first `prompts` train examples as GRPO's prompts; the base is left with every weight
/// frozen, ready for a method.
fn warm_base(
    base_name: &str,
    prompts: Option<usize>,
    warmup: &Warmup,
    seed: u64,
    output_dir: &std::path::Path,
) -> Result<(Base, TaskModel, f64)> {
    let started = Instant::now();
    let mut base = load_base(base_name)?;
    if !base.model.config.causal {
        return invalid(
            "--base",
            format!("{base_name} is an encoder; GRPO samples completions from a decoder"),
        );
    }
    let (data, world) = task_data(Task::Codegen, None, None)?;
    let full = MethodSpec::Full { last_k: None };
    let (mut tm, method) = prepare(&mut base, Task::Codegen, data, world, &full, seed)?;
    if warmup.steps > 0 {
        let args = TrainingArgs {
            output_dir: output_dir.join("warmup"),
            max_steps: Some(warmup.steps),
            batch_size: warmup.batch_size,
            learning_rate: warmup.learning_rate,
            eval_strategy: Strategy::No,
            save_strategy: Strategy::No,
            seed,
            ..TrainingArgs::default()
        };
        trainer::train(
            Training::new(&args, &tm, &mut base.store)
                .hooks(method.as_ref())
                .log_file(false),
        )?;
    }
    for id in base.store.ids().collect::<Vec<_>>() {
        base.store.set_trainable(id, false);
    }
    if let Some(n) = prompts {
        if n == 0 {
            return invalid("--prompts", "0: GRPO needs at least one prompt");
        }
        tm.train.truncate(n);
    }
    Ok((base, tm, started.elapsed().as_secs_f64()))
}

/// GRPO on the code task: the warm-up, the method, GRPO with `reward`, test metrics before and
/// after (at most `run.args.max_eval_examples` prompts), and the adapter saved under
/// `output_dir/adapter`. Checkpoints and resume are the Trainer's (sampling is seeded by the
/// micro-batch's number, so a resumed run draws what the uninterrupted one would have; the
/// per-step rollout records start again at the resumed step).
pub fn train_grpo(g: &GrpoRun, progress: &mut dyn Progress) -> Result<GrpoResult> {
    let run = &g.run;
    g.options.validate()?;
    let seed = run.args.seed;
    // A reward model is read before anything trains: a wrong directory fails at once.
    let model_reward = match &g.reward {
        RewardSource::Execution => None,
        RewardSource::Model(dir) => Some(load_reward_model(dir, &run.base)?),
    };
    let (mut base, tm, warmup_seconds) =
        warm_base(&run.base, g.prompts, &g.warmup, seed, &run.args.output_dir)?;
    let mut method = peft::apply(&run.spec, &base.model, &mut base.store, seed)?;
    let summary = base.store.trainable_summary();
    let reward: Box<dyn Reward + '_> = match model_reward {
        None => Box::new(ExecutionReward { world: &tm.world }),
        Some(m) => Box::new(m),
    };
    let task = GrpoTask::new(
        &tm,
        &base.store,
        method.as_ref(),
        reward,
        g.options.clone(),
        seed,
    )?;
    let (limit, bs) = (run.args.max_eval_examples, run.args.eval_batch_size);
    let before = task.evaluate(&base.store, method.as_ref(), Split::Test, limit, bs)?;
    let identity = serde_json::json!({
        "stage": "grpo",
        "method": serde_json::to_value(&run.spec).unwrap_or(serde_json::Value::Null),
        "base": run.base,
        "options": g.options,
        "warmup": [g.warmup.steps, g.warmup.batch_size],
        "prompts": g.prompts,
        "reward": match &g.reward {
            RewardSource::Execution => "execution".to_string(),
            RewardSource::Model(d) => d.display().to_string(),
        },
    });
    let opt = trainer::adamw(&run.args, &base.store, &method.lr_multipliers())?;
    let report = trainer::train(
        Training::new(&run.args, &task, &mut base.store)
            .hooks(method.as_ref())
            .optimizer(Box::new(opt))
            .resume(run.resume)
            .identity(identity)
            .progress(progress),
    )?;
    let adapter_dir = run.args.output_dir.join("adapter");
    let after = if report.interrupted {
        Metrics::new()
    } else {
        task.evaluate(&base.store, method.as_ref(), Split::Test, limit, bs)?
    };
    let steps = task.steps();
    let reference_bytes = task.reference_bytes();
    drop(task);
    if !report.interrupted {
        // The warm-up changed every base weight: the adapter alone does not reproduce the
        // policy, which the config says (`warmup_steps`).
        super::save_stage(
            &adapter_dir,
            "grpo",
            run,
            &mut base,
            method.as_mut(),
            &[],
            serde_json::json!({
                "task": Task::Codegen.name(),
                "warmup_steps": g.warmup.steps,
                "test": after,
            }),
        )?;
    }
    Ok(GrpoResult {
        report,
        steps,
        before,
        after,
        warmup_seconds,
        reference_bytes,
        summary,
        adapter_dir,
    })
}

/// One seed of GRPO against SFT from the same warm-up.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GrpoVsSft {
    pub seed: u64,
    /// Greedy execution accuracy on the test prompts after the warm-up (both arms start there).
    pub before: f64,
    pub grpo_after: f64,
    pub sft_after: f64,
    /// GRPO's per-step records.
    pub steps: Vec<RolloutStats>,
    pub grpo_seconds: f64,
    pub sft_seconds: f64,
    pub warmup_seconds: f64,
}

/// The settings of [`grpo_vs_sft`].
#[derive(Debug, Clone)]
pub struct GrpoVsSftOptions {
    pub base: String,
    /// The method both arms train (LoRA by default).
    pub spec: MethodSpec,
    pub options: GrpoOptions,
    pub warmup: Warmup,
    pub prompts: Option<usize>,
    /// Optimizer steps of each arm, prompts per GRPO step, and each arm's learning rate.
    pub steps: usize,
    pub batch_prompts: usize,
    pub grpo_lr: f64,
    pub sft_lr: f64,
    /// Test prompts execution accuracy is measured on.
    pub eval_examples: usize,
}

/// Scratch space for a run's (unsaved) Trainer files.
fn scratch(tag: &str, seed: u64) -> PathBuf {
    crate::lab::runs::temp_dir(&format!("align-{tag}-{seed}"))
}

/// Greedy execution accuracy of the code task's test prompts (its `score`).
fn execution(tm: &TaskModel, base: &Base, hooks: &dyn Method<f32>, limit: usize) -> Result<f64> {
    let m = TrainTask::<f32>::evaluate(tm, &base.store, hooks, Split::Test, limit, 32)?;
    Ok(m.get("score").copied().unwrap_or(f64::NAN))
}

/// GRPO and SFT from the same warm-up, with the same method and steps, each SFT step on B·G
/// programs (see the module's doc); `progress` gets each arm's steps labelled `grpo` and `sft`.
pub fn grpo_vs_sft(
    o: &GrpoVsSftOptions,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<GrpoVsSft> {
    o.options.validate()?;
    let dir = scratch("warmup", seed);
    let (mut base, tm, warmup_seconds) = warm_base(&o.base, o.prompts, &o.warmup, seed, &dir)?;
    let warm = base.store.clone();
    let none = peft::full::Full { last_k: None };
    let before = execution(&tm, &base, &none, o.eval_examples)?;
    let args = |tag: &str, batch: usize, lr: f64| TrainingArgs {
        output_dir: scratch(tag, seed),
        max_steps: Some(o.steps),
        batch_size: batch,
        learning_rate: lr,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed,
        ..TrainingArgs::default()
    };

    // GRPO.
    let started = Instant::now();
    let method = peft::apply(&o.spec, &base.model, &mut base.store, seed)?;
    let reward = Box::new(ExecutionReward { world: &tm.world });
    let task = GrpoTask::new(
        &tm,
        &base.store,
        method.as_ref(),
        reward,
        o.options.clone(),
        seed,
    )?;
    let a = args("grpo", o.batch_prompts, o.grpo_lr);
    let opt = trainer::adamw(&a, &base.store, &method.lr_multipliers())?;
    let mut lane = Labelled {
        inner: progress,
        label: "grpo",
    };
    trainer::train(
        Training::new(&a, &task, &mut base.store)
            .hooks(method.as_ref())
            .optimizer(Box::new(opt))
            .log_file(false)
            .progress(&mut lane),
    )?;
    let steps = task.steps();
    drop(task);
    let grpo_after = execution(&tm, &base, method.as_ref(), o.eval_examples)?;
    let grpo_seconds = started.elapsed().as_secs_f64();

    // SFT from the same warm-up, the same method, as many sequences per step.
    let started = Instant::now();
    base.store = warm;
    let method = peft::apply(&o.spec, &base.model, &mut base.store, seed)?;
    let a = args("sft", o.batch_prompts * o.options.num_generations, o.sft_lr);
    let opt = trainer::adamw(&a, &base.store, &method.lr_multipliers())?;
    let mut lane = Labelled {
        inner: lane.inner,
        label: "sft",
    };
    trainer::train(
        Training::new(&a, &tm, &mut base.store)
            .hooks(method.as_ref())
            .optimizer(Box::new(opt))
            .log_file(false)
            .progress(&mut lane),
    )?;
    let sft_after = execution(&tm, &base, method.as_ref(), o.eval_examples)?;
    let sft_seconds = started.elapsed().as_secs_f64();
    for tag in ["warmup", "grpo", "sft"] {
        let _ = std::fs::remove_dir_all(scratch(tag, seed));
    }
    Ok(GrpoVsSft {
        seed,
        before,
        grpo_after,
        sft_after,
        steps,
        grpo_seconds,
        sft_seconds,
        warmup_seconds,
    })
}

/// Forwards a run's steps to another reporter under a label (its start and finish are not
/// forwarded: the outer reporter spans every run).
struct Labelled<'a> {
    inner: &'a mut dyn Progress,
    label: &'static str,
}

impl Progress for Labelled<'_> {
    fn step(&mut self, _run: &str, entry: &crate::train::progress::LogEntry) {
        self.inner.step(self.label, entry);
    }

    fn should_stop(&mut self, step: usize) -> bool {
        self.inner.should_stop(step)
    }
}
