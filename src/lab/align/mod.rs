//! After supervised fine-tuning: preference tuning (DPO and its family), a reward model, and
//! reinforcement learning with verifiable rewards (GRPO), end to end — what `tunelab align`
//! runs. Each stage is a task of the one Trainer ([`crate::train::preference`],
//! [`crate::train::reward`], [`crate::train::grpo`]); this module loads the base, applies the
//! method, binds the data, trains, measures and saves, as [`super::finetune`] does for the
//! supervised tasks.
//!
//! | stage | data | trains | saves |
//! |---|---|---|---|
//! | [`train_preference`] | pairs `{prompt, chosen, rejected}` (KTO: or `{prompt, completion, label}`) | the method, on the objective's loss | the adapter |
//! | [`train_reward`] | pairs | the method and a scalar head, on the Bradley–Terry loss | the adapter with the head ([`load_reward_model`] reads it back) |
//! | [`grpo::train_grpo`] | the code task's prompts | the method, on GRPO's clipped objective with a KL penalty | the adapter |
//!
//! [`compare`] runs the line-up: SFT on the chosen responses and every preference objective,
//! with LoRA and with full fine-tuning, over seeds; and GRPO against SFT at equal compute.

pub mod compare;
pub mod grpo;

use super::finetune::{load_base, Base};
use super::forgetting::{Forgetting, HeldOut};
use crate::data::lm::WORLD_SEED;
use crate::data::loaders::{load_kto, load_preference};
use crate::data::preference::{build_tagged, KtoExample, PairKinds, PreferenceSplits};
use crate::data::tasks::{self, same_answer, Sizes};
use crate::data::world::World;
use crate::error::{invalid, Result};
use crate::metrics::rouge_l;
use crate::nn::generate::{generate, GenerateOptions};
use crate::nn::Hooks;
use crate::peft::{self, Method, MethodSpec};
use crate::train::preference::{
    PreferenceData, PreferenceTask, PreferenceTrainOptions, ReferenceKind,
};
use crate::train::progress::Progress;
use crate::train::reward::{self, RewardOptions, RewardTask};
use crate::train::trainer::{self, Metrics, Split, TrainReport, TrainTask, Training};
use crate::train::TrainingArgs;
use crate::ParamStore;
use std::path::{Path, PathBuf};

/// Where preference pairs come from.
#[derive(Debug, Clone, PartialEq)]
pub enum PairSource {
    /// Pairs drawn from the synthetic world ([`build_tagged`]), `sizes` per split: train from
    /// seen entities, validation and test from held-out ones, each pair tagged with its kind.
    World(Sizes),
    /// The user's files in TRL's `{prompt, chosen, rejected}` shape (JSONL or CSV): every pair of
    /// `train` trains, `validation` is evaluated during training, `test` once at the end.
    Files {
        train: PathBuf,
        validation: PathBuf,
        test: Option<PathBuf>,
    },
}

impl Default for PairSource {
    /// The world's pairs: 1,000 to train on, 200 each for validation and test.
    fn default() -> Self {
        PairSource::World(Sizes {
            train: 1000,
            validation: 200,
            test: 200,
        })
    }
}

/// Preference data, ready for any stage: the pairs, their kinds when known (the world's), and
/// KTO's unpaired training examples when the user gave them.
#[derive(Debug, Clone, Default)]
pub struct PairData {
    pub splits: PreferenceSplits,
    pub kinds: Option<PairKinds>,
    pub train_unpaired: Vec<KtoExample>,
}

impl PairData {
    /// The data as the preference task takes it.
    pub fn preference(&self) -> PreferenceData {
        PreferenceData {
            train: self.splits.train.clone(),
            train_unpaired: self.train_unpaired.clone(),
            validation: self.splits.validation.clone(),
            test: self.splits.test.clone(),
        }
    }
}

/// Reads or draws the pairs of `source`; `kto_train`, when given, is a `{prompt, completion,
/// label}` file that KTO trains on instead of the pairs unpaired. Errors name the file and line.
pub fn pair_data(source: &PairSource, kto_train: Option<&Path>) -> Result<PairData> {
    let mut d = match source {
        PairSource::World(sizes) => {
            let world = World::generate(WORLD_SEED);
            let (splits, kinds) = build_tagged(&world, tasks::DATA_SEED, *sizes);
            PairData {
                splits,
                kinds: Some(kinds),
                train_unpaired: Vec::new(),
            }
        }
        PairSource::Files {
            train,
            validation,
            test,
        } => PairData {
            splits: PreferenceSplits {
                train: load_preference(train)?,
                validation: load_preference(validation)?,
                test: match test {
                    Some(t) => load_preference(t)?,
                    None => Vec::new(),
                },
            },
            kinds: None,
            train_unpaired: Vec::new(),
        },
    };
    if let Some(path) = kto_train {
        d.train_unpaired = load_kto(path)?;
    }
    if d.splits.train.is_empty() && d.train_unpaired.is_empty() {
        return invalid("align", "no training pairs");
    }
    Ok(d)
}

/// What every stage needs: the base, the method, the Trainer's arguments, and whether to resume
/// from the newest checkpoint in `args.output_dir`.
#[derive(Debug, Clone)]
pub struct AlignRun {
    pub base: String,
    pub spec: MethodSpec,
    pub args: TrainingArgs,
    pub resume: bool,
}

/// Saves a stage's adapter into `dir` (`extra`: base parameters it also holds, such as the
/// reward head); the config records the stage, the base (as given, resolved, and its
/// architecture, for `check_base`) and the stage's own `fields`.
pub(crate) fn save_stage(
    dir: &Path,
    stage: &str,
    run: &AlignRun,
    base: &mut Base,
    method: &mut dyn Method<f32>,
    extra: &[crate::autodiff::ParamId],
    fields: serde_json::Value,
) -> Result<()> {
    let mut meta = serde_json::json!({
        "stage": stage,
        "base": base.dir.display().to_string(),
        "base_name": run.base,
        "base_config": crate::io::adapter::base_record(&base.model.config),
    });
    if let (Some(m), serde_json::Value::Object(f)) = (meta.as_object_mut(), fields) {
        m.extend(f);
    }
    peft::store::save_adapter(dir, &run.spec, method, &mut base.store, extra, meta)
}

/// What a preference-tuning run measured.
pub struct PreferenceResult {
    pub report: TrainReport,
    /// The test metrics of the model before training (the policy is then the reference, unless
    /// the method changes the output at initialisation) and after.
    pub before: Metrics,
    pub test: Metrics,
    pub reference: ReferenceKind,
    /// Bytes the reference holds beyond the policy (0 for the base without hooks).
    pub reference_bytes: usize,
    pub forgetting: Forgetting,
    pub summary: String,
    pub adapter_dir: PathBuf,
}

/// Held-out pre-training batches forgetting is measured on (16 windows each).
pub const HELDOUT_BATCHES: usize = 4;

/// The identity a resumed run must match: the stage, the method, the base and the stage's
/// options.
fn identity(stage: &str, run: &AlignRun, options: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "stage": stage,
        "method": serde_json::to_value(&run.spec).unwrap_or(serde_json::Value::Null),
        "base": run.base,
        "options": options,
    })
}

/// Loads the base and applies the method, seeded by the run's seed.
fn load_with_method(run: &AlignRun) -> Result<(Base, Box<dyn Method<f32>>)> {
    let mut base = load_base(&run.base)?;
    if !base.model.config.causal {
        return invalid(
            "--base",
            format!(
                "{} is an encoder; preference tuning, reward models and GRPO score or generate responses with a decoder (a causal model such as gpt-tiny)",
                run.base
            ),
        );
    }
    let method = peft::apply(&run.spec, &base.model, &mut base.store, run.args.seed)?;
    Ok((base, method))
}

/// Trains `task` on `store` with the method's hooks through the Trainer, with AdamW and the
/// method's learning-rate multipliers.
fn train_task(
    run: &AlignRun,
    task: &dyn TrainTask<f32>,
    store: &mut ParamStore<f32>,
    method: &dyn Method<f32>,
    identity: serde_json::Value,
    progress: &mut dyn Progress,
) -> Result<TrainReport> {
    let opt = trainer::adamw(&run.args, store, &method.lr_multipliers())?;
    trainer::train(
        Training::new(&run.args, task, store)
            .hooks(method)
            .optimizer(Box::new(opt))
            .resume(run.resume)
            .identity(identity)
            .progress(progress),
    )
}

/// Preference tuning: the method on `data` with the objective of `options`, then the test
/// metrics before and after, forgetting, and the adapter saved under `output_dir/adapter`
/// (its config records the stage and the objective). An interrupted run returns at its
/// checkpoint with nothing scored or saved (`report.interrupted`).
pub fn train_preference(
    run: &AlignRun,
    data: &PairData,
    options: &PreferenceTrainOptions,
    progress: &mut dyn Progress,
) -> Result<PreferenceResult> {
    let (mut base, mut method) = load_with_method(run)?;
    let summary = base.store.trainable_summary();
    let task = PreferenceTask::new(
        base.model.clone(),
        &base.store,
        method.params(),
        base.tok.clone(),
        data.preference(),
        options.clone(),
    )?;
    let reference = task.reference_kind().unwrap_or(ReferenceKind::FrozenCopy);
    let (limit, bs) = (run.args.max_eval_examples, run.args.eval_batch_size);
    let before = task.evaluate(&base.store, method.as_ref(), Split::Test, limit, bs)?;
    let held = HeldOut::of(&base, HELDOUT_BATCHES)?;
    let report = train_task(
        run,
        &task,
        &mut base.store,
        method.as_ref(),
        identity("preference", run, objective_record(options)),
        progress,
    )?;
    let adapter_dir = run.args.output_dir.join("adapter");
    let (test, forgetting) = if report.interrupted {
        (Metrics::new(), Forgetting::default())
    } else {
        (
            task.evaluate(&base.store, method.as_ref(), Split::Test, limit, bs)?,
            held.forgetting(&base, method.as_ref())?,
        )
    };
    if !report.interrupted {
        save_stage(
            &adapter_dir,
            "preference",
            run,
            &mut base,
            method.as_mut(),
            &[],
            serde_json::json!({ "objective": objective_record(options), "test": test }),
        )?;
    }
    Ok(PreferenceResult {
        reference_bytes: task.reference_bytes(),
        report,
        before,
        test,
        reference,
        forgetting,
        summary,
        adapter_dir,
    })
}

/// The objective's options as recorded in a checkpoint's identity and an adapter's config.
fn objective_record(o: &PreferenceTrainOptions) -> serde_json::Value {
    let p = &o.objective;
    serde_json::json!({
        "loss_type": p.loss_type,
        "beta": p.beta,
        "label_smoothing": p.label_smoothing,
        "simpo_gamma": p.simpo_gamma,
        "cpo_alpha": p.cpo_alpha,
        "desirable_weight": p.desirable_weight,
        "undesirable_weight": p.undesirable_weight,
        "reference": o.reference.map(|k| k.name()),
        "max_length": o.max_length,
    })
}

/// What a reward-model run measured.
pub struct RewardResult {
    pub report: TrainReport,
    /// Test metrics (accuracy, margin, rewards, and per kind for the world's pairs) before and
    /// after training.
    pub before: Metrics,
    pub test: Metrics,
    pub summary: String,
    /// Where the reward model was saved: the method's adapter with the head (`score.weight`).
    pub model_dir: PathBuf,
}

/// Trains a reward model: the method and a scalar head on the last token, with the Bradley–Terry
/// loss, then test metrics before and after; saves it under `output_dir/reward-model`.
pub fn train_reward(
    run: &AlignRun,
    data: &PairData,
    options: RewardOptions,
    progress: &mut dyn Progress,
) -> Result<RewardResult> {
    let mut base = load_base(&run.base)?;
    let (task, mut method) = reward::prepare(
        &base.model,
        &mut base.store,
        &base.tok,
        &data.splits,
        data.kinds.as_ref(),
        &run.spec,
        options,
        run.args.seed,
    )?;
    let summary = base.store.trainable_summary();
    let (limit, bs) = (run.args.max_eval_examples, run.args.eval_batch_size);
    let before = task.evaluate(&base.store, method.as_ref(), Split::Test, limit, bs)?;
    let report = train_task(
        run,
        &task,
        &mut base.store,
        method.as_ref(),
        identity(
            "reward",
            run,
            serde_json::json!({
                "center_rewards_coefficient": options.center_rewards_coefficient,
                "max_len": options.max_len,
            }),
        ),
        progress,
    )?;
    let model_dir = run.args.output_dir.join("reward-model");
    let test = if report.interrupted {
        Metrics::new()
    } else {
        let test = task.evaluate(&base.store, method.as_ref(), Split::Test, limit, bs)?;
        save_stage(
            &model_dir,
            "reward",
            run,
            &mut base,
            method.as_mut(),
            &task.head.params(),
            serde_json::json!({ "test": test }),
        )?;
        test
    };
    Ok(RewardResult {
        report,
        before,
        test,
        summary,
        model_dir,
    })
}

/// A reward model read back from disk: its base with the method applied, and the head.
pub struct RewardModel {
    pub base: Base,
    pub method: Box<dyn Method<f32>>,
    pub task: RewardTask,
}

impl RewardModel {
    /// The reward of each `(prompt, response)`.
    pub fn score(&self, items: &[(&str, &str)]) -> Result<Vec<f64>> {
        self.task
            .reward(&self.base.store, self.method.as_ref(), items, 32)
    }
}

/// Loads the reward model `train_reward` saved in `dir` onto the base `base` (the one it was
/// trained on: a different base is refused, naming both).
pub fn load_reward_model(dir: &Path, base: &str) -> Result<RewardModel> {
    let mut b = load_base(base)?;
    if !dir.join(crate::io::adapter::CONFIG).is_file() {
        return invalid(
            "--reward-model",
            format!(
                "{} holds no adapter_config.json: pass the reward-model directory `tunelab align reward` wrote (OUTPUT_DIR/reward-model)",
                dir.display()
            ),
        );
    }
    let (_, meta) = crate::io::adapter::read_config(dir)?;
    if meta.get("stage").and_then(|s| s.as_str()) != Some("reward") {
        return invalid(
            "--reward-model",
            format!(
                "{} is not a reward model saved by `tunelab align reward` (its adapter_config.json records no stage \"reward\")",
                dir.display()
            ),
        );
    }
    crate::io::adapter::check_base(dir, &meta, &b.model.config, base)?;
    let task = RewardTask::scorer(&b.model, &mut b.store, &b.tok, 0)?;
    let (_, method, _) = peft::store::load_adapter(dir, &b.model, &mut b.store, 0)?;
    Ok(RewardModel {
        base: b,
        method,
        task,
    })
}

/// Generated answers scored against each pair's two responses: greedy continuations of test
/// prompts.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct GenerationScore {
    /// The share of prompts whose answer sides with the chosen response: for a code pair, the
    /// program computes the chosen program's value; for any other, the answer is closer to the
    /// chosen response than to the rejected one by ROUGE-L F1 (a tie counts as wrong). At this
    /// scale no model writes a whole answer sentence exactly, so exact match alone reads 0 for
    /// every run; this asks which of the two responses the model's own answer resembles.
    pub accuracy: f64,
    /// Mean ROUGE-L F1 of the answers to the chosen responses.
    pub rouge_l: f64,
    /// Prompts scored.
    pub n: usize,
}

/// Greedy answers of the first `limit` test pairs' prompts (0: all), at most `max_new_tokens`
/// each, scored against the chosen and rejected responses ([`GenerationScore`]); a pair's kind
/// (`code`) comes from `data.kinds` when known.
#[allow(clippy::too_many_arguments)]
pub fn generation_accuracy(
    base: &Base,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    data: &PairData,
    world: &World,
    limit: usize,
    max_new_tokens: usize,
    batch_size: usize,
) -> Result<GenerationScore> {
    let pairs = trainer::eval_subset(&data.splits.test, limit);
    let kinds = data.kinds.as_ref().map(|k| &k.test[..]);
    let tok = &base.tok;
    let opts = GenerateOptions {
        max_new_tokens,
        temperature: 0.0,
        eos: tok.eos_id().map(|e| e as usize),
        pad: tok.pad_id().unwrap_or(0) as usize,
        max_length: Some(base.model.config.max_len),
        ..GenerateOptions::default()
    };
    let (mut right, mut rouge) = (0usize, 0.0);
    let batch_size = batch_size.max(1);
    for (c, chunk) in pairs.chunks(batch_size).enumerate() {
        let prompts: Vec<Vec<usize>> = chunk
            .iter()
            .map(|p| {
                tok.encode(&p.prompt, false)
                    .map(|ids| ids.into_iter().map(|i| i as usize).collect())
            })
            .collect::<Result<_>>()?;
        let out = generate(&base.model, store, hooks, &prompts, &opts)?;
        for (k, (p, ids)) in chunk.iter().zip(&out).enumerate() {
            let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
            let answer = tok.decode(&ids, true)?;
            let answer = answer.trim();
            let to_chosen = rouge_l(answer, &p.chosen);
            rouge += to_chosen;
            let ok = match kinds.and_then(|ks| ks.get(c * batch_size + k)) {
                Some(&"code") => same_answer(&p.chosen, answer, world),
                _ => to_chosen > rouge_l(answer, &p.rejected),
            };
            right += usize::from(ok);
        }
    }
    let n = pairs.len().max(1) as f64;
    Ok(GenerationScore {
        accuracy: right as f64 / n,
        rouge_l: rouge / n,
        n: pairs.len(),
    })
}
