//! What the preference-tuning and RL pitfalls (`dpo-beta`, `displacement`, `grpo-collapse`,
//! `length`) share: preference pairs drawn from the world, one DPO-family run with LoRA on the
//! shipped decoder and what it measures on held-out pairs, and GRPO on the code task after a
//! supervised warm-up, with its reward, KL and completion lengths.
//!
//! ## Preference runs
//!
//! Every preference run starts from the shipped gpt-tiny with LoRA (r 8, α 32 on q and v,
//! `compare`'s), so the reference policy is the base without LoRA's hooks: no copy, and the
//! policy starts *exactly* at the reference (B = 0), so every change measured is the run's. On
//! the held-out validation pairs it reports, from [`PreferenceTask::pair_rows`], the means the
//! task's evaluation reports (preference accuracy, reward margin, the change of log π of the
//! chosen and of the rejected responses) and the *drift*: the mean |log π − log π_ref| over both
//! responses of every pair, how far the policy moved whatever the sign (the task's `kl` is the
//! signed mean over the chosen responses, in which a fall on one pair and a rise on another
//! cancel); and forgetting, the LM loss on held-out pre-training text
//! ([`crate::lab::forgetting`]).
//!
//! A run may add an SFT term on the chosen responses, as TRL's `DPOConfig(loss_type=["sigmoid",
//! "sft"], loss_weights=[1.0, α])` (RPO, Pang et al. 2024; TRL 0.x called α `rpo_alpha`):
//! [`WithSft`] adds α times the mean NLL of the chosen responses' tokens to the objective of the
//! same micro-batch, so the preference loss itself is the registry's, unchanged.
//!
//! ## GRPO runs
//!
//! A raw base never writes a program that executes, so GRPO starts from a supervised warm-up
//! ([`warm_up`]: full fine-tuning on the code task), then trains LoRA on the warmed-up weights,
//! every run of a seed from the same warm-up. Every run is measured the same way whatever its β:
//! a *probe* ([`GrpoTask`] with β > 0, built before training, whose reference is the warmed-up
//! model: the base without LoRA's hooks) evaluates greedy execution accuracy on held-out prompts
//! and, on sampled completions, the reward, the per-token KL (k3) to the warmed-up model and the
//! completion length, so a run without a KL term (β = 0, no reference, nothing logged in TRL) is
//! still measured for drift. [`completion_lengths`] splits sampled completions into right and
//! wrong ones.

use crate::data::lm::WORLD_SEED;
use crate::data::preference::{build_tagged, PreferencePair};
use crate::data::tasks::{same_answer, Example, Sizes, Task, DATA_SEED};
use crate::data::world::World;
use crate::error::{invalid, Result};
use crate::lab::finetune::{load_base, prepare, task_data, Base};
use crate::lab::forgetting::{Forgetting, HeldOut};
use crate::lab::runs::{temp_dir, Recorder, BASE};
use crate::loss::preference::PreferenceOptions;
use crate::nn::generate::{generate, GenerateOptions};
use crate::nn::{Hooks, Transformer};
use crate::peft::{self, Method, MethodSpec};
use crate::train::args::{ScheduleKind, Strategy};
use crate::train::grpo::{ExecutionReward, GrpoOptions, GrpoTask, RolloutStats};
use crate::train::preference::{PreferenceData, PreferenceTask, PreferenceTrainOptions};
use crate::train::progress::{Metrics, Progress};
use crate::train::task::{GenMetric, Item, TaskData, TaskModel};
use crate::train::trainer::{self, MicroBatch, Split, TrainTask, Training};
use crate::train::TrainingArgs;
use crate::{ParamStore, Tape, Var};
use serde::Serialize;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Preference tuning

/// Validation pairs are scored in batches of this many.
const EVAL_BATCH: usize = 32;

/// `train` and `validation` pairs of the given kinds ([`crate::data::preference::KINDS`]) drawn
/// from the world as every preference task draws them: validation from held-out entities.
pub fn pairs(kinds: &[&str], train: usize, validation: usize) -> Result<PreferenceData> {
    if kinds.is_empty() {
        return invalid("pairs", "no kind of pair asked for");
    }
    let world = World::generate(WORLD_SEED);
    // Pair i of a split is of kind KINDS[i % 4]: 4 · ⌈n / k⌉ pairs hold at least n of k kinds.
    let drawn = |n: usize| 4 * n.div_ceil(kinds.len());
    let (s, k) = build_tagged(
        &world,
        DATA_SEED,
        Sizes {
            train: drawn(train),
            validation: drawn(validation),
            test: 0,
        },
    );
    let keep = |ps: Vec<PreferencePair>, ks: &[&str], n: usize| -> Vec<PreferencePair> {
        ps.into_iter()
            .zip(ks)
            .filter(|(_, k)| kinds.contains(k))
            .map(|(p, _)| p)
            .take(n)
            .collect()
    };
    Ok(PreferenceData {
        train: keep(s.train, &k.train, train),
        validation: keep(s.validation, &k.validation, validation),
        ..PreferenceData::default()
    })
}

/// One preference run.
#[derive(Debug, Clone)]
pub struct PreferenceRun {
    pub label: String,
    /// TRL's `loss_type`, `beta` and the rest.
    pub objective: PreferenceOptions,
    /// α of an SFT term on the chosen responses ([`WithSft`]); 0: none.
    pub sft_weight: f64,
    pub lr: f64,
    pub steps: usize,
    pub batch: usize,
}

/// What a preference run measured on the held-out pairs after training.
#[derive(Debug, Clone, Serialize)]
pub struct PreferenceRow {
    pub label: String,
    pub loss_type: String,
    pub beta: f64,
    pub sft_weight: f64,
    /// Fraction of pairs whose implicit reward ranks the chosen response first.
    pub accuracy: f64,
    /// Mean reward margin (the objective's own rewards).
    pub margin: f64,
    /// Mean log π(y_c) − log π_ref(y_c) over the pairs (nats, summed over the response).
    pub chosen_change: f64,
    /// The same for the rejected responses.
    pub rejected_change: f64,
    /// Mean |log π − log π_ref| over both responses of every pair.
    pub drift: f64,
    /// The objective's mean training loss over the first and the last five steps.
    pub first_loss: f64,
    pub final_loss: f64,
    pub forgetting: Forgetting,
    pub steps: usize,
    pub seconds: f64,
}

impl PreferenceRow {
    /// Both log-probabilities fell: likelihood displacement.
    pub fn displaced(&self) -> bool {
        self.chosen_change < 0.0 && self.rejected_change < 0.0
    }
}

fn tail_mean(xs: &[f64], n: usize) -> f64 {
    let t = &xs[xs.len().saturating_sub(n)..];
    t.iter().sum::<f64>() / t.len().max(1) as f64
}

fn head_mean(xs: &[f64], n: usize) -> f64 {
    let t = &xs[..n.min(xs.len())];
    t.iter().sum::<f64>() / t.len().max(1) as f64
}

/// A copy of a loaded base, to train one run on while the original stays pristine.
pub fn copy_base(base: &Base) -> Base {
    Base {
        dir: base.dir.clone(),
        model: base.model.clone(),
        store: base.store.clone(),
        tok: base.tok.clone(),
        notes: None,
        initialised: Vec::new(),
        quant: base.quant.clone(),
    }
}

/// TRL's `loss_type = ["sigmoid", "sft"]`: the preference task's objective plus `weight` times
/// the mean NLL of the chosen responses' tokens of the same micro-batch (TRL's `"sft"` loss, a
/// cross-entropy over the chosen completion tokens). `sft.train[i]` is pair i's prompt and chosen
/// response as a generation example, encoded as the preference task encodes it. Evaluation is
/// the preference task's.
pub struct WithSft<'a> {
    pub pref: &'a PreferenceTask<f32>,
    pub sft: &'a TaskModel,
    pub weight: f64,
}

impl TrainTask<f32> for WithSft<'_> {
    fn train_len(&self) -> usize {
        self.pref.train_len()
    }

    /// The sum of two means, weighed as one loss over the micro-batch's pairs.
    fn loss(
        &self,
        tape: &mut Tape<'_, f32>,
        hooks: &dyn Hooks<f32>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        let (pref, pairs) = self.pref.loss(tape, hooks, batch)?;
        let items: Vec<&Item> = batch.indices.iter().map(|&i| &self.sft.train[i]).collect();
        let (nll, _) = self.sft.batch_loss(tape, hooks, &items)?;
        let nll = tape.scale(nll, self.weight)?;
        Ok((tape.add(pref, nll)?, pairs))
    }

    fn tokens(&self, batch: &MicroBatch<'_>) -> Option<usize> {
        self.pref.tokens(batch)
    }

    fn model(&self) -> Option<&Transformer> {
        self.pref.model()
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        self.pref.metric_names()
    }

    fn reference_bytes(&self) -> usize {
        self.pref.reference_bytes()
    }

    fn evaluate(
        &self,
        store: &ParamStore<f32>,
        hooks: &dyn Hooks<f32>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        self.pref.evaluate(store, hooks, split, limit, batch_size)
    }
}

/// The chosen responses of `pairs` as generation examples: the SFT data of [`WithSft`].
fn chosen_task(base: &mut Base, pairs: &[PreferencePair], seed: u64) -> Result<TaskModel> {
    let train = pairs.iter().map(PreferencePair::chosen_example).collect();
    TaskModel::new(
        "chosen responses",
        base.model.clone(),
        &mut base.store,
        base.tok.clone(),
        TaskData {
            train,
            ..TaskData::default()
        },
        Vec::new(),
        GenMetric::RougeL,
        World::generate(WORLD_SEED),
        seed,
    )
}

/// Trains `run` with LoRA on a copy of `base` (the pristine shipped model) and measures it on
/// the validation pairs of `data` and on `held`'s pre-training text.
pub fn train_preference(
    base: &Base,
    held: &HeldOut,
    data: &PreferenceData,
    run: &PreferenceRun,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<PreferenceRow> {
    progress.line(&format!(
        "training {}: {} steps of {} pairs at lr {:.0e}",
        run.label, run.steps, run.batch, run.lr
    ));
    let started = Instant::now();
    let mut b = copy_base(base);
    let spec = MethodSpec::Lora(peft::lora::compare_config());
    let method = peft::apply(&spec, &b.model, &mut b.store, seed)?;
    let options = PreferenceTrainOptions {
        objective: run.objective.clone(),
        ..PreferenceTrainOptions::default()
    };
    let task = PreferenceTask::new(
        b.model.clone(),
        &b.store,
        method.params(),
        b.tok.clone(),
        data.clone(),
        options,
    )?;
    let sft = if run.sft_weight > 0.0 {
        if task.objective.unpaired() {
            return invalid(
                "train_preference",
                "an SFT term pairs each training pair with its chosen response; KTO trains on unpaired examples",
            );
        }
        Some(chosen_task(&mut b, &data.train, seed)?)
    } else {
        None
    };
    let mixed = sft.as_ref().map(|sft| WithSft {
        pref: &task,
        sft,
        weight: run.sft_weight,
    });
    let train_task: &dyn TrainTask<f32> = match &mixed {
        Some(m) => m,
        None => &task,
    };
    let args = TrainingArgs {
        output_dir: temp_dir("align"),
        max_steps: Some(run.steps),
        batch_size: run.batch,
        learning_rate: run.lr,
        schedule: ScheduleKind::Constant,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed,
        ..TrainingArgs::default()
    };
    let mut record = Recorder::default();
    let result = trainer::train(
        Training::new(&args, train_task, &mut b.store)
            .hooks(method.as_ref())
            .progress(&mut record)
            .log_file(false),
    );
    let _ = std::fs::remove_dir_all(&args.output_dir);
    let report = result?;
    // One pass over the validation pairs: every number below is a mean over its rows (the
    // task's `evaluate` reports the same means, and no per-pair drift).
    let rows = task.pair_rows(&b.store, method.as_ref(), Split::Validation, EVAL_BATCH)?;
    let n = rows.len().max(1) as f64;
    let mean = |f: &dyn Fn(&[f64; 5]) -> f64| rows.iter().map(f).sum::<f64>() / n;
    let forgetting = held.forgetting(&b, method.as_ref())?;
    Ok(PreferenceRow {
        label: run.label.clone(),
        loss_type: task.objective.name().to_string(),
        beta: task.objective.beta(),
        sft_weight: run.sft_weight,
        accuracy: mean(&|r| f64::from(u8::from(r[0] > 0.0))),
        margin: mean(&|r| r[0]),
        chosen_change: mean(&|r| r[1] - r[3]),
        rejected_change: mean(&|r| r[2] - r[4]),
        drift: mean(&|r| 0.5 * ((r[1] - r[3]).abs() + (r[2] - r[4]).abs())),
        first_loss: head_mean(&record.losses, 5),
        final_loss: tail_mean(&record.losses, 5),
        forgetting,
        steps: report.state.step,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The pristine shipped decoder and its held-out text (`batches` batches of 16 windows).
pub fn pristine(batches: usize) -> Result<(Base, HeldOut)> {
    let base = load_base(BASE)?;
    let held = HeldOut::of(&base, batches)?;
    Ok((base, held))
}

// ---------------------------------------------------------------------------------------------
// GRPO

/// The KL weight of the probe that measures every GRPO run's drift (its value changes nothing
/// measured but the probe's loss; TRL's pre-1.0 default).
pub const PROBE_BETA: f64 = 0.04;

/// The supervised warm-up every GRPO run of a seed starts from.
#[derive(Debug, Clone, Copy)]
pub struct WarmUp {
    /// Code-task training examples the warm-up trains on.
    pub examples: usize,
    pub steps: usize,
    pub lr: f64,
    pub batch: usize,
    /// GRPO's prompts: the first `prompts` of those examples.
    pub prompts: usize,
}

/// The warmed-up model, the code task bound to it (its train split cut to GRPO's prompts), and
/// what the warm-up took.
pub struct Warm {
    pub base: Base,
    pub tm: TaskModel,
    pub setup: WarmUp,
    pub seconds: f64,
}

/// Full fine-tuning of the shipped decoder on the code task: what makes some sampled programs
/// execute, so that GRPO's groups have a spread of rewards to learn from.
pub fn warm_up(setup: WarmUp, seed: u64, progress: &mut dyn Progress) -> Result<Warm> {
    progress.line(&format!(
        "supervised warm-up on the code task: {} steps of {} at lr {:.0e}",
        setup.steps, setup.batch, setup.lr
    ));
    let started = Instant::now();
    let mut base = load_base(BASE)?;
    let (data, world) = task_data(Task::Codegen, None, Some(setup.examples))?;
    let full = MethodSpec::Full { last_k: None };
    let (mut tm, method) = prepare(&mut base, Task::Codegen, data, world, &full, seed)?;
    let args = TrainingArgs {
        output_dir: temp_dir("warm-up"),
        max_steps: Some(setup.steps),
        batch_size: setup.batch,
        learning_rate: setup.lr,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed,
        ..TrainingArgs::default()
    };
    let result = trainer::train(
        Training::new(&args, &tm, &mut base.store)
            .hooks(method.as_ref())
            .log_file(false),
    );
    let _ = std::fs::remove_dir_all(&args.output_dir);
    result?;
    tm.train.truncate(setup.prompts);
    Ok(Warm {
        base,
        tm,
        setup,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One GRPO run from the warm-up.
#[derive(Debug, Clone)]
pub struct GrpoRun {
    pub label: String,
    pub options: GrpoOptions,
    pub lr: f64,
    pub steps: usize,
}

/// How the probe measures a run: on the first `examples` validation prompts, every `every`
/// steps (0: at the end only), and the completion lengths on `length_samples` samples of each
/// training prompt (0: not measured).
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub examples: usize,
    pub every: usize,
    pub length_samples: usize,
}

/// The lengths of sampled completions, split by their reward.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Lengths {
    pub right: usize,
    /// Mean tokens of a right completion (the end token counted), NaN for none.
    pub right_len: f64,
    pub wrong: usize,
    pub wrong_len: f64,
    /// Fraction of completions cut at `max_completion_length` (they never produced the end token).
    pub at_limit: f64,
}

/// What a GRPO run measured.
#[derive(Debug, Clone, Serialize)]
pub struct GrpoRow {
    pub label: String,
    pub beta: f64,
    pub lr: f64,
    pub loss_type: String,
    /// Every optimizer step's rollout, as the task logged it (TRL's `reward`, `kl`, lengths).
    pub curve: Vec<RolloutStats>,
    /// The probe's evaluations: (step, metrics), the last one after the last step.
    pub evals: Vec<(usize, Metrics)>,
    /// Lengths of completions sampled on the training prompts after training.
    pub lengths: Option<Lengths>,
    /// The greedy completion of the first validation prompt after training.
    pub sample: String,
    /// The Trainer's message when the loss became NaN or infinite (then nothing after the last
    /// finite step is measured).
    pub diverged: Option<String>,
    pub seconds: f64,
}

impl GrpoRow {
    /// The probe's metric `k` after the last step.
    pub fn last(&self, k: &str) -> f64 {
        self.evals
            .last()
            .and_then(|(_, m)| m.get(k).copied())
            .unwrap_or(f64::NAN)
    }

    /// Mean training reward of the first and of the last `n` steps.
    pub fn reward_first(&self, n: usize) -> f64 {
        head_mean(&self.rewards(), n)
    }
    pub fn reward_last(&self, n: usize) -> f64 {
        tail_mean(&self.rewards(), n)
    }
    /// The highest training reward of any step.
    pub fn reward_peak(&self) -> f64 {
        self.rewards().into_iter().fold(f64::NEG_INFINITY, f64::max)
    }

    fn rewards(&self) -> Vec<f64> {
        self.curve.iter().map(|s| s.reward_mean).collect()
    }
}

/// Delegates training to one GRPO task and evaluation to another (the probe): the Trainer's
/// periodic evaluations then measure every run the same way.
struct Probed<'a, 'b> {
    train: &'a GrpoTask<'b, f32>,
    probe: &'a GrpoTask<'b, f32>,
}

impl TrainTask<f32> for Probed<'_, '_> {
    fn train_len(&self) -> usize {
        self.train.train_len()
    }
    fn loss(
        &self,
        tape: &mut Tape<'_, f32>,
        hooks: &dyn Hooks<f32>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        self.train.loss(tape, hooks, batch)
    }
    fn tokens(&self, batch: &MicroBatch<'_>) -> Option<usize> {
        self.train.tokens(batch)
    }
    fn model(&self) -> Option<&Transformer> {
        self.train.model()
    }
    fn metric_names(&self) -> Option<Vec<&'static str>> {
        self.probe.metric_names()
    }
    fn reference_bytes(&self) -> usize {
        self.train.reference_bytes()
    }
    fn evaluate(
        &self,
        store: &ParamStore<f32>,
        hooks: &dyn Hooks<f32>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        self.probe.evaluate(store, hooks, split, limit, batch_size)
    }
}

/// The probe's options for a run's: the same sampling, with a KL weight so it has a reference.
fn probe_options(o: &GrpoOptions) -> GrpoOptions {
    GrpoOptions {
        beta: PROBE_BETA,
        ..o.clone()
    }
}

/// The probe's evaluation of the warmed-up model itself (the start of every run), with `o`'s
/// sampling.
pub fn evaluate_warm(warm: &Warm, o: &GrpoOptions, probe: Probe, seed: u64) -> Result<Metrics> {
    let mut store = warm.base.store.clone();
    let lora = peft::apply(
        &MethodSpec::Lora(Default::default()),
        &warm.base.model,
        &mut store,
        seed,
    )?;
    let reward = Box::new(ExecutionReward {
        world: &warm.tm.world,
    });
    let task = GrpoTask::new(
        &warm.tm,
        &store,
        lora.as_ref(),
        reward,
        probe_options(o),
        seed,
    )?;
    task.evaluate(
        &store,
        lora.as_ref(),
        Split::Validation,
        probe.examples,
        probe.examples,
    )
}

/// Samples `g` completions of each of `items`' prompts at `o`'s temperature and splits them into
/// right and wrong ones by the execution reward.
pub fn completion_lengths(
    tm: &TaskModel,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    items: &[Item],
    g: usize,
    o: &GrpoOptions,
    seed: u64,
) -> Result<Lengths> {
    let tok = &tm.tok;
    let prompts: Vec<Vec<usize>> = items
        .iter()
        .flat_map(|it| {
            let p: Vec<usize> = it.encoded.ids[..it.encoded.prompt_len]
                .iter()
                .map(|&x| x as usize)
                .collect();
            std::iter::repeat_n(p, g)
        })
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: o.max_completion_length,
        temperature: o.temperature,
        top_k: None,
        seed,
        eos: tok.eos_id().map(|e| e as usize),
        pad: tok.pad_id().unwrap_or(0) as usize,
        max_length: Some(tm.model.config.max_len),
    };
    let out = generate(&tm.model, store, hooks, &prompts, &opts)?;
    let (mut right, mut wrong) = (Vec::new(), Vec::new());
    let mut at_limit = 0usize;
    for (row, (prompt, new)) in prompts.iter().zip(&out).enumerate() {
        let Example::Generation { response, .. } = &items[row / g].example else {
            return invalid(
                "completion_lengths",
                "the code task's examples generate text",
            );
        };
        // As GRPO counts a completion: the end token belongs to it when it was produced.
        let stopped = new.len() < o.max_completion_length
            && prompt.len() + new.len() < tm.model.config.max_len;
        at_limit += usize::from(!stopped);
        let len = (new.len() + usize::from(stopped)) as f64;
        let ids: Vec<u32> = new.iter().map(|&x| x as u32).collect();
        let text = tok.decode(&ids, true)?;
        if same_answer(response, text.trim(), &tm.world) {
            right.push(len);
        } else {
            wrong.push(len);
        }
    }
    let mean = |v: &[f64]| {
        if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Ok(Lengths {
        right: right.len(),
        right_len: mean(&right),
        wrong: wrong.len(),
        wrong_len: mean(&wrong),
        at_limit: at_limit as f64 / out.len().max(1) as f64,
    })
}

/// The greedy completion of the first validation prompt.
pub fn greedy_sample(
    tm: &TaskModel,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    o: &GrpoOptions,
) -> Result<String> {
    let Some(item) = tm.validation.first() else {
        return Ok(String::new());
    };
    let tok = &tm.tok;
    let prompt: Vec<usize> = item.encoded.ids[..item.encoded.prompt_len]
        .iter()
        .map(|&x| x as usize)
        .collect();
    let opts = GenerateOptions {
        max_new_tokens: o.max_completion_length,
        temperature: 0.0,
        eos: tok.eos_id().map(|e| e as usize),
        pad: tok.pad_id().unwrap_or(0) as usize,
        max_length: Some(tm.model.config.max_len),
        ..GenerateOptions::default()
    };
    let out = generate(&tm.model, store, hooks, &[prompt], &opts)?;
    let ids: Vec<u32> = out[0].iter().map(|&x| x as u32).collect();
    Ok(tok.decode(&ids, true)?.trim().to_string())
}

/// Trains `run` with LoRA on a copy of the warmed-up weights, measured by the probe.
pub fn train_grpo(
    warm: &Warm,
    run: &GrpoRun,
    probe: Probe,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<GrpoRow> {
    progress.line(&format!(
        "training {}: {} GRPO steps of {} prompts × {} completions at lr {:.0e}, β {}",
        run.label,
        run.steps,
        warm.tm.train.len(),
        run.options.num_generations,
        run.lr,
        run.options.beta
    ));
    let started = Instant::now();
    let tm = &warm.tm;
    let mut store = warm.base.store.clone();
    let lora: Box<dyn Method<f32>> = peft::apply(
        &MethodSpec::Lora(Default::default()),
        &warm.base.model,
        &mut store,
        seed,
    )?;
    let reward = || Box::new(ExecutionReward { world: &tm.world });
    let task = GrpoTask::new(
        tm,
        &store,
        lora.as_ref(),
        reward(),
        run.options.clone(),
        seed,
    )?;
    let probe_task = GrpoTask::new(
        tm,
        &store,
        lora.as_ref(),
        reward(),
        probe_options(&run.options),
        seed,
    )?;
    let probed = Probed {
        train: &task,
        probe: &probe_task,
    };
    let mut args = TrainingArgs {
        output_dir: temp_dir("grpo"),
        max_steps: Some(run.steps),
        batch_size: tm.train.len(),
        learning_rate: run.lr,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        eval_batch_size: probe.examples.max(1),
        max_eval_examples: probe.examples,
        seed,
        ..TrainingArgs::default()
    };
    if probe.every > 0 {
        args.eval_strategy = Strategy::Steps;
        args.eval_steps = probe.every;
    }
    let mut record = Recorder::default();
    let result = trainer::train(
        Training::new(&args, &probed, &mut store)
            .hooks(lora.as_ref())
            .progress(&mut record)
            .log_file(false),
    );
    let _ = std::fs::remove_dir_all(&args.output_dir);
    let diverged = match result {
        Ok(_) => None,
        Err(e) if trainer::is_divergence(&e) => Some(e.to_string()),
        Err(e) => return Err(e),
    };
    let mut evals = record.evals;
    if diverged.is_some() {
        return Ok(GrpoRow {
            label: run.label.clone(),
            beta: run.options.beta,
            lr: run.lr,
            loss_type: run.options.loss_type.name().to_string(),
            curve: task.steps(),
            evals,
            lengths: None,
            sample: String::new(),
            diverged,
            seconds: started.elapsed().as_secs_f64(),
        });
    }
    if evals.last().map(|(s, _)| *s) != Some(run.steps) {
        let m = probe_task.evaluate(
            &store,
            lora.as_ref(),
            Split::Validation,
            probe.examples,
            probe.examples.max(1),
        )?;
        evals.push((run.steps, m));
    }
    let lengths = if probe.length_samples > 0 {
        Some(completion_lengths(
            tm,
            &store,
            lora.as_ref(),
            &tm.train,
            probe.length_samples,
            &run.options,
            seed ^ LENGTH_SALT,
        )?)
    } else {
        None
    };
    let sample = greedy_sample(tm, &store, lora.as_ref(), &run.options)?;
    Ok(GrpoRow {
        label: run.label.clone(),
        beta: run.options.beta,
        lr: run.lr,
        loss_type: run.options.loss_type.name().to_string(),
        curve: task.steps(),
        evals,
        lengths,
        sample,
        diverged: None,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Keeps the length measurement's samples apart from training's and the probe's.
pub const LENGTH_SALT: u64 = 0x1E46_7A11;
