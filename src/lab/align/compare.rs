//! `tunelab align compare`: the preference-tuning line-up and GRPO against SFT, measured over
//! seeds.
//!
//! **The line-up.** SFT on the chosen responses, then every objective of
//! [`crate::loss::preference::OBJECTIVES`] (DPO, IPO, SimPO, ORPO, KTO), each with every method
//! of the line-up (LoRA and full fine-tuning), from the same base, on the same pairs, for the
//! same steps, each step on as many sequences (B pairs are 2B sequences; SFT and KTO take 2B
//! sequences of their own). Every row is scored by **one evaluator** so the rows compare: DPO's
//! implicit reward β·log π/π_ref with β = 0.1 against the base as it was loaded (its
//! log-probabilities precomputed once), on the held-out test pairs — preference accuracy (the
//! share of pairs whose chosen response gains more log-probability than the rejected one), the
//! mean reward margin, the KL estimate from the reference on the chosen responses (k1: the mean
//! change of log π(chosen)), and the mean log-probabilities of the chosen and rejected responses
//! before and after (both falling is DPO's likelihood displacement). Then greedy answers to test
//! prompts scored against the chosen responses ([`super::generation_accuracy`]), forgetting
//! (the change in LM loss on held-out pre-training text), the memory ledger of the peak step
//! with the reference's line, and the median step time. Each score is a mean with its 95%
//! Student-t interval over the seeds ([`crate::lab::stats`]).
//!
//! **GRPO against SFT** ([`super::grpo::grpo_vs_sft`]): from the same supervised warm-up, GRPO
//! with the execution reward and SFT on the programs, the same method and steps; the reward and
//! KL curves of GRPO, and held-out execution accuracy before and after each, over seeds.

use super::grpo::{grpo_vs_sft, GrpoVsSft, GrpoVsSftOptions, Warmup};
use super::{generation_accuracy, pair_data, PairData, PairSource, HELDOUT_BATCHES};
use crate::data::lm::WORLD_SEED;
use crate::data::tasks::{Example, Sizes};
use crate::data::world::World;
use crate::error::Result;
use crate::lab::compare::Lane;
use crate::lab::evidence::{seed_list, table};
use crate::lab::finetune::{load_base, Base};
use crate::lab::forgetting::HeldOut;
use crate::lab::lanes::{lanes, side_by_side};
use crate::lab::stats::{t_interval, Estimate, IntervalKind};
use crate::loss::preference::{PreferenceOptions, OBJECTIVES};
use crate::nn::Hooks;
use crate::peft::spec::LoraConfig;
use crate::peft::{self, MethodSpec};
use crate::train::args::Strategy;
use crate::train::grpo::GrpoOptions;
use crate::train::preference::{PreferenceTask, PreferenceTrainOptions, ReferenceKind};
use crate::train::progress::Progress;
use crate::train::task::{GenMetric, TaskData, TaskModel};
use crate::train::trainer::{self, Memory, Split, TrainTask, Training};
use crate::train::TrainingArgs;
use serde::Serialize;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

/// The row that trains on the chosen responses with the causal LM loss.
pub const SFT: &str = "sft";

/// One method of the line-up and the learning rate it trains at.
#[derive(Debug, Clone)]
pub struct AlignMethod {
    pub label: String,
    pub spec: MethodSpec,
    pub lr: f64,
}

/// The line-up's methods: LoRA r 8 on q, v at 5e-3 and full fine-tuning at 1e-4, the rates the
/// suite's DPO runs train at (not swept for this line-up).
pub fn default_methods() -> Vec<AlignMethod> {
    vec![
        AlignMethod {
            label: "lora".into(),
            spec: MethodSpec::Lora(LoraConfig::default()),
            lr: 5e-3,
        },
        AlignMethod {
            label: "full".into(),
            spec: MethodSpec::Full { last_k: None },
            lr: 1e-4,
        },
    ]
}

/// Everything `align compare` needs.
#[derive(Debug, Clone)]
pub struct AlignCompareOptions {
    pub base: String,
    pub pairs: Sizes,
    /// `sft` and objective names (`--loss-type` values), in order.
    pub objectives: Vec<String>,
    pub methods: Vec<AlignMethod>,
    pub steps: usize,
    /// Pairs per step (SFT and KTO: twice as many sequences of their own).
    pub batch_pairs: usize,
    pub seeds: usize,
    /// Test pairs scored (0: all), and test prompts answered.
    pub eval_examples: usize,
    pub gen_examples: usize,
    pub max_new_tokens: usize,
    /// GRPO against SFT; `None`: skipped.
    pub grpo: Option<GrpoVsSftOptions>,
    /// Skip the preference line-up (only GRPO against SFT).
    pub skip_preference: bool,
}

impl AlignCompareOptions {
    /// The default run (`quick`: a demo-sized one).
    pub fn new(quick: bool) -> Self {
        let pick = |q, f| if quick { q } else { f };
        let mut objectives = vec![SFT.to_string()];
        objectives.extend(OBJECTIVES.iter().map(|e| e.name.to_string()));
        Self {
            base: "gpt-tiny".into(),
            pairs: Sizes {
                train: 1000,
                validation: 200,
                test: 200,
            },
            objectives,
            methods: default_methods(),
            steps: pick(10, 60),
            batch_pairs: 8,
            seeds: 3,
            eval_examples: pick(48, 200),
            gen_examples: pick(24, 100),
            max_new_tokens: 32,
            grpo: Some(GrpoVsSftOptions {
                base: "gpt-tiny".into(),
                spec: MethodSpec::Lora(LoraConfig::default()),
                options: GrpoOptions {
                    num_generations: 8,
                    max_completion_length: 16,
                    beta: 0.1,
                    ..GrpoOptions::default()
                },
                warmup: Warmup {
                    steps: pick(10, 30),
                    ..Warmup::default()
                },
                prompts: Some(pick(16, 64)),
                steps: pick(4, 24),
                batch_prompts: 4,
                grpo_lr: 5e-3,
                sft_lr: 5e-3,
                eval_examples: pick(24, 100),
            }),
            skip_preference: false,
        }
    }

    /// Optimizer steps of the whole comparison, for a progress bar.
    pub fn total_steps(&self) -> usize {
        let pref = if self.skip_preference {
            0
        } else {
            self.objectives.len() * self.methods.len() * self.seeds * self.steps
        };
        pref + self.grpo.as_ref().map_or(0, |g| 2 * g.steps * self.seeds)
    }
}

/// One (objective, method, seed) run's measurements.
#[derive(Debug, Clone, Serialize)]
pub struct PrefRun {
    pub objective: String,
    pub method: String,
    pub seed: u64,
    pub trainable: usize,
    pub accuracy: f64,
    pub margin: f64,
    pub kl: f64,
    pub logps_chosen: f64,
    pub logps_rejected: f64,
    pub generation: f64,
    pub generation_rouge_l: f64,
    pub forgetting: f64,
    pub memory: Memory,
    pub reference: &'static str,
    pub step_ms: f64,
    pub seconds: f64,
}

/// A row: one (objective, method) over the seeds.
#[derive(Debug, Clone, Serialize)]
pub struct PrefRow {
    pub objective: String,
    pub method: String,
    pub trainable: usize,
    pub accuracy: Estimate,
    pub margin: Estimate,
    pub kl: Estimate,
    pub logps_chosen: Estimate,
    pub logps_rejected: Estimate,
    pub generation: Estimate,
    pub generation_rouge_l: Estimate,
    pub forgetting: Estimate,
    pub memory: Memory,
    pub reference: &'static str,
    pub step_ms: f64,
    pub runs: Vec<PrefRun>,
}

/// What the whole comparison measured.
#[derive(Debug, Clone, Serialize)]
pub struct AlignComparison {
    /// Before any training (the base): the evaluator's mean log-probabilities of the test pairs'
    /// chosen and rejected responses, and its generation accuracy.
    pub before_logps_chosen: f64,
    pub before_logps_rejected: f64,
    pub before_generation: f64,
    pub before_generation_rouge_l: f64,
    pub forgetting_before: f64,
    pub rows: Vec<PrefRow>,
    pub grpo: Vec<GrpoVsSft>,
    pub seconds: f64,
    #[serde(skip)]
    pub options_text: String,
}

/// The evaluator every row is scored by (see the module's doc): DPO with β 0.1 against the base
/// as loaded, its log-probabilities precomputed (it needs no second copy of the weights while
/// the runs train). It trains on nothing: one pair stands in for its train split.
fn evaluator(base: &Base, data: &PairData) -> Result<PreferenceTask<f32>> {
    let mut d = data.preference();
    d.train.truncate(1);
    d.train_unpaired.clear();
    PreferenceTask::new(
        base.model.clone(),
        &base.store,
        &[],
        base.tok.clone(),
        d,
        PreferenceTrainOptions {
            reference: Some(ReferenceKind::Precomputed),
            ..PreferenceTrainOptions::default()
        },
    )
}

/// SFT's task: the chosen responses as generation examples.
fn sft_data(data: &PairData) -> TaskData {
    let gen = |pairs: &[crate::data::preference::PreferencePair]| -> Vec<Example> {
        pairs.iter().map(|p| p.chosen_example()).collect()
    };
    TaskData {
        train: gen(&data.splits.train),
        validation: gen(&data.splits.validation),
        test: gen(&data.splits.test),
        ..TaskData::default()
    }
}

/// Shared, read-only state of the runs.
struct Shared<'a> {
    opts: &'a AlignCompareOptions,
    data: &'a PairData,
    eval: &'a PreferenceTask<f32>,
    held: &'a HeldOut,
    world: &'a World,
}

/// Trains one (objective, method, seed) and measures it.
fn measure(
    s: &Shared<'_>,
    objective: &str,
    m: &AlignMethod,
    seed: u64,
    progress: &mut dyn Progress,
) -> Result<PrefRun> {
    let started = Instant::now();
    let o = s.opts;
    let mut base = load_base(&o.base)?;
    let method = peft::apply(&m.spec, &base.model, &mut base.store, seed)?;
    let args = |batch: usize| TrainingArgs {
        output_dir: crate::lab::runs::temp_dir(&format!("align-{objective}-{}-{seed}", m.label)),
        max_steps: Some(o.steps),
        batch_size: batch,
        learning_rate: m.lr,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed,
        ..TrainingArgs::default()
    };
    let train = |task: &dyn TrainTask<f32>,
                 store: &mut crate::ParamStore<f32>,
                 a: &TrainingArgs,
                 p: &mut dyn Progress| {
        let opt = trainer::adamw(a, store, &method.lr_multipliers())?;
        let r = trainer::train(
            Training::new(a, task, store)
                .hooks(method.as_ref())
                .optimizer(Box::new(opt))
                .log_file(false)
                .progress(p),
        );
        let _ = std::fs::remove_dir_all(&a.output_dir);
        r
    };
    let (report, reference) = if objective == SFT {
        let tm = TaskModel::new(
            SFT,
            base.model.clone(),
            &mut base.store,
            base.tok.clone(),
            sft_data(s.data),
            Vec::new(),
            GenMetric::ExactMatch,
            s.world.clone(),
            seed,
        )?;
        let a = args(2 * o.batch_pairs);
        (train(&tm, &mut base.store, &a, progress)?, "none")
    } else {
        let task = PreferenceTask::new(
            base.model.clone(),
            &base.store,
            method.params(),
            base.tok.clone(),
            s.data.preference(),
            PreferenceTrainOptions {
                objective: PreferenceOptions {
                    loss_type: objective.to_string(),
                    ..PreferenceOptions::default()
                },
                ..PreferenceTrainOptions::default()
            },
        )?;
        let batch = if task.objective.unpaired() {
            2 * o.batch_pairs
        } else {
            o.batch_pairs
        };
        let kind = task.reference_kind().map_or("none", |k| k.name());
        (train(&task, &mut base.store, &args(batch), progress)?, kind)
    };
    let hooks: &dyn Hooks<f32> = method.as_ref();
    let e = s
        .eval
        .evaluate(&base.store, hooks, Split::Test, o.eval_examples, 32)?;
    let gen = generation_accuracy(
        &base,
        &base.store,
        hooks,
        s.data,
        s.world,
        o.gen_examples,
        o.max_new_tokens,
        32,
    )?;
    let forgetting = s.held.forgetting(&base, hooks)?;
    let get = |k: &str| e.get(k).copied().unwrap_or(f64::NAN);
    Ok(PrefRun {
        objective: objective.to_string(),
        method: m.label.clone(),
        seed,
        trainable: base.store.num_trainable(),
        accuracy: get("accuracy"),
        margin: get("margin"),
        kl: get("kl"),
        logps_chosen: get("logps_chosen"),
        logps_rejected: get("logps_rejected"),
        generation: gen.accuracy,
        generation_rouge_l: gen.rouge_l,
        forgetting: forgetting.delta(),
        memory: report.memory,
        reference,
        step_ms: report.median_step_seconds * 1e3,
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn interval(runs: &[PrefRun], f: impl Fn(&PrefRun) -> f64) -> Estimate {
    let xs: Vec<f64> = runs.iter().map(f).collect();
    t_interval(&xs, IntervalKind::TOverSeeds)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}

fn row(runs: Vec<PrefRun>) -> PrefRow {
    let first = &runs[0];
    PrefRow {
        objective: first.objective.clone(),
        method: first.method.clone(),
        trainable: first.trainable,
        accuracy: interval(&runs, |r| r.accuracy),
        margin: interval(&runs, |r| r.margin),
        kl: interval(&runs, |r| r.kl),
        logps_chosen: interval(&runs, |r| r.logps_chosen),
        logps_rejected: interval(&runs, |r| r.logps_rejected),
        generation: interval(&runs, |r| r.generation),
        generation_rouge_l: interval(&runs, |r| r.generation_rouge_l),
        forgetting: interval(&runs, |r| r.forgetting),
        memory: runs
            .iter()
            .map(|r| r.memory)
            .max_by_key(|m| m.total())
            .unwrap_or_default(),
        reference: first.reference,
        step_ms: median(runs.iter().map(|r| r.step_ms).collect()),
        runs,
    }
}

/// Runs the comparison: the line-up's runs side by side (one per core), then GRPO against SFT
/// seed by seed side by side. `progress` gets every optimizer step, labelled, and a line per
/// finished run.
pub fn run(
    opts: &AlignCompareOptions,
    progress: &mut (dyn Progress + Send),
) -> Result<AlignComparison> {
    let started = Instant::now();
    let seeds = seed_list(opts.seeds.max(1));
    let world = World::generate(WORLD_SEED);
    let data = pair_data(&PairSource::World(opts.pairs), None)?;
    for o in &opts.objectives {
        if o != SFT {
            PreferenceOptions {
                loss_type: o.clone(),
                ..PreferenceOptions::default()
            }
            .objective()?;
        }
    }
    let shared = Mutex::new(progress);
    let mut out = AlignComparison {
        before_logps_chosen: f64::NAN,
        before_logps_rejected: f64::NAN,
        before_generation: f64::NAN,
        before_generation_rouge_l: f64::NAN,
        forgetting_before: f64::NAN,
        rows: Vec::new(),
        grpo: Vec::new(),
        seconds: 0.0,
        options_text: describe(opts),
    };
    if !opts.skip_preference {
        let base = load_base(&opts.base)?;
        let eval = evaluator(&base, &data)?;
        let held = HeldOut::of(&base, HELDOUT_BATCHES)?;
        let none = peft::full::Full { last_k: None };
        let b = eval.evaluate(&base.store, &none, Split::Test, opts.eval_examples, 32)?;
        out.before_logps_chosen = b["ref_logps_chosen"];
        out.before_logps_rejected = b["ref_logps_rejected"];
        let gen = generation_accuracy(
            &base,
            &base.store,
            &none,
            &data,
            &world,
            opts.gen_examples,
            opts.max_new_tokens,
            32,
        )?;
        out.before_generation = gen.accuracy;
        out.before_generation_rouge_l = gen.rouge_l;
        out.forgetting_before = held.before;
        let s = Shared {
            opts,
            data: &data,
            eval: &eval,
            held: &held,
            world: &world,
        };
        let work: Vec<(usize, usize, u64)> = (0..opts.objectives.len())
            .flat_map(|i| {
                let seeds = &seeds;
                (0..opts.methods.len()).flat_map(move |j| seeds.iter().map(move |&sd| (i, j, sd)))
            })
            .collect();
        let runs = side_by_side(work.len(), lanes(work.len()), |k| {
            let (i, j, seed) = work[k];
            let (obj, m) = (&opts.objectives[i], &opts.methods[j]);
            let label = format!("{obj} {}", m.label);
            let mut lane = Lane {
                shared: &shared,
                label: label.clone(),
            };
            let r = measure(&s, obj, m, seed, &mut lane)?;
            if let Ok(mut p) = shared.lock() {
                p.line(&format!(
                    "{label} seed {seed}: accuracy {:.3}, margin {:+.3}, kl {:+.3}, generation {:.3} ({:.1} s)",
                    r.accuracy, r.margin, r.kl, r.generation, r.seconds
                ));
            }
            Ok(r)
        })?;
        let per = seeds.len();
        let mut it = runs.into_iter();
        for _ in 0..opts.objectives.len() * opts.methods.len() {
            out.rows.push(row(it.by_ref().take(per).collect()));
        }
    }
    if let Some(g) = &opts.grpo {
        out.grpo = side_by_side(seeds.len(), lanes(seeds.len()), |k| {
            let mut lane = Lane {
                shared: &shared,
                label: format!("grpo-vs-sft seed {}", seeds[k]),
            };
            let r = grpo_vs_sft(g, seeds[k], &mut lane)?;
            if let Ok(mut p) = shared.lock() {
                p.line(&format!(
                    "grpo vs sft seed {}: execution accuracy {:.3} → GRPO {:.3}, SFT {:.3} ({:.1} s + {:.1} s)",
                    r.seed, r.before, r.grpo_after, r.sft_after, r.grpo_seconds, r.sft_seconds
                ));
            }
            Ok(r)
        })?;
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

/// The run's settings in one line.
fn describe(o: &AlignCompareOptions) -> String {
    let methods: Vec<String> = o
        .methods
        .iter()
        .map(|m| format!("{} lr {:e}", m.label, m.lr))
        .collect();
    format!(
        "preference pairs of the world on {}: {} steps of {} pairs ({} sequences), seeds {}..{}, {} test pairs scored, {} test prompts answered; {} (rates not swept for this line-up)",
        o.base,
        o.steps,
        o.batch_pairs,
        2 * o.batch_pairs,
        crate::lab::evidence::FIRST_SEED,
        crate::lab::evidence::FIRST_SEED + o.seeds.max(1) as u64 - 1,
        o.eval_examples,
        o.gen_examples,
        methods.join(", ")
    )
}

const MB: f64 = 1024.0 * 1024.0;

impl AlignComparison {
    /// The tables as text.
    pub fn render(&self) -> String {
        let mut s = String::new();
        if !self.rows.is_empty() {
            let _ = writeln!(s, "{}", self.options_text);
            let _ = writeln!(
                s,
                "before training (the base): log π(chosen) {:.2}, log π(rejected) {:.2} (mean over test pairs), generation accuracy {:.3} (ROUGE-L to chosen {:.3}), held-out LM loss {:.3}",
                self.before_logps_chosen,
                self.before_logps_rejected,
                self.before_generation,
                self.before_generation_rouge_l,
                self.forgetting_before
            );
            let e = |x: &Estimate, d: usize| x.short(d);
            let rows: Vec<Vec<String>> = self
                .rows
                .iter()
                .map(|r| {
                    vec![
                        format!("{} {}", r.objective, r.method),
                        e(&r.accuracy, 3),
                        e(&r.margin, 3),
                        e(&r.kl, 2),
                        e(&r.logps_chosen, 2),
                        e(&r.logps_rejected, 2),
                        e(&r.generation, 3),
                        e(&r.generation_rouge_l, 3),
                        e(&r.forgetting, 3),
                    ]
                })
                .collect();
            s.push_str(&table(
                &[
                    "objective method",
                    "pref acc",
                    "margin",
                    "kl",
                    "logp chosen",
                    "logp rejected",
                    "gen acc",
                    "gen rouge",
                    "forget",
                ],
                &rows,
            ));
            let _ = writeln!(
                s,
                "mean±half-width of the 95% Student-t interval over {} seeds; every row scored by one evaluator: DPO's implicit reward (β 0.1) against the base, on the test pairs",
                self.rows[0].runs.len()
            );
            let _ = writeln!(
                s,
                "kl: mean change of log π(chosen) from the base (k1 on the chosen responses); logp: mean summed log-probability of the response after training; gen acc: greedy answers closer to the chosen than to the rejected response by ROUGE-L (code: computes the chosen program's value); gen rouge: their ROUGE-L F1 to the chosen response\n"
            );
            let rows: Vec<Vec<String>> = self
                .rows
                .iter()
                .map(|r| {
                    let m = &r.memory;
                    vec![
                        format!("{} {}", r.objective, r.method),
                        r.trainable.to_string(),
                        format!("{:.2}", m.weights as f64 / MB),
                        format!("{:.2}", m.gradients as f64 / MB),
                        format!("{:.2}", m.optimizer as f64 / MB),
                        format!("{:.2}", m.activations as f64 / MB),
                        format!("{:.2}", m.reference as f64 / MB),
                        r.reference.to_string(),
                        format!("{:.1}", r.step_ms),
                        format!(
                            "{:.1}",
                            r.runs.iter().map(|x| x.seconds).sum::<f64>() / r.runs.len() as f64
                        ),
                    ]
                })
                .collect();
            s.push_str(&table(
                &[
                    "objective method",
                    "trainable",
                    "weights",
                    "grads",
                    "optim",
                    "activ",
                    "ref",
                    "reference",
                    "step ms",
                    "run s",
                ],
                &rows,
            ));
            let _ = writeln!(
                s,
                "memory in MB at the peak step; ref: what the reference holds beyond the policy; step ms: median step, runs two side by side on one thread each; run s: one run's wall time with its evaluation\n"
            );
        }
        if !self.grpo.is_empty() {
            s.push_str(&self.render_grpo());
        }
        let _ = writeln!(s, "total wall time {:.1} s", self.seconds);
        s
    }

    fn render_grpo(&self) -> String {
        let mut s = String::new();
        let g = &self.grpo;
        let est = |f: &dyn Fn(&GrpoVsSft) -> f64| {
            t_interval(
                &g.iter().map(f).collect::<Vec<_>>(),
                IntervalKind::TOverSeeds,
            )
        };
        let _ = writeln!(
            s,
            "GRPO against SFT at equal training compute, from the same warm-up, {} seeds:",
            g.len()
        );
        let rows = vec![
            vec![
                "before (warm-up)".to_string(),
                est(&|r| r.before).short(3),
                String::new(),
            ],
            vec![
                "GRPO".to_string(),
                est(&|r| r.grpo_after).short(3),
                est(&|r| r.grpo_seconds).short(1),
            ],
            vec![
                "SFT".to_string(),
                est(&|r| r.sft_after).short(3),
                est(&|r| r.sft_seconds).short(1),
            ],
        ];
        s.push_str(&table(&["arm", "exec acc (test)", "wall s"], &rows));
        // The curves: per step, mean over seeds.
        let steps = g.iter().map(|r| r.steps.len()).min().unwrap_or(0);
        let mut rows = Vec::new();
        for k in 0..steps {
            let at = |f: &dyn Fn(&crate::train::grpo::RolloutStats) -> f64| {
                g.iter().map(|r| f(&r.steps[k])).sum::<f64>() / g.len() as f64
            };
            rows.push(vec![
                (k + 1).to_string(),
                format!("{:.3}", at(&|x| x.reward_mean)),
                format!("{:.4}", at(&|x| x.kl.unwrap_or(f64::NAN))),
                format!("{:.1}", at(&|x| x.completion_length)),
                format!("{:.2}", at(&|x| x.frac_reward_zero_std)),
            ]);
        }
        s.push_str(&table(
            &["step", "reward", "kl", "length", "zero-std groups"],
            &rows,
        ));
        let _ = writeln!(
            s,
            "GRPO's curves, mean over seeds: reward of the step's samples, per-token k3 KL to the warm-up model, completion length in tokens, share of groups whose rewards are all equal\n"
        );
        s
    }
}
