//! `tunelab align`: the stage after supervised fine-tuning — preference tuning, a reward model,
//! GRPO, and their comparison. Each subcommand trains through the one Trainer with the same
//! training options, checkpoints and resume as `finetune`.

use super::args::{check_writable_dir, check_writable_file, in_range, SpeedArgs, TrainArgs};
use super::progress::{CompareBar, TrainBar};
use super::{fmt_metrics, Outcome};
use clap::{Args, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::lab::align::compare::{self as acompare, AlignCompareOptions, SFT};
use tunelab::lab::align::grpo::{self as agrpo, GrpoRun, RewardSource, Warmup};
use tunelab::lab::align::{self, AlignRun, PairData, PairSource};
use tunelab::loss::grpo::{LossType, ScaleRewards};
use tunelab::loss::preference::PreferenceOptions;
use tunelab::peft::MethodArgs;
use tunelab::train::grpo::GrpoOptions;
use tunelab::train::preference::{PreferenceTrainOptions, ReferenceKind};
use tunelab::train::progress::Progress;
use tunelab::train::reward::RewardOptions;
use tunelab::train::trainer::{interrupt_exit_code, TrainReport};

#[derive(Args, Debug)]
pub struct AlignArgs {
    #[command(subcommand)]
    pub command: AlignCommand,
}

#[derive(Subcommand, Debug)]
pub enum AlignCommand {
    /// Preference tuning on pairs: DPO, IPO, conservative DPO, SimPO, ORPO or KTO (TRL's
    /// `loss_type`), with any fine-tuning method; prints the test metrics before and after and
    /// saves the adapter.
    #[command(long_about = preference_about())]
    Preference(Box<PreferenceArgs>),
    /// Train a reward model: the method and a scalar head on the last token, with the
    /// Bradley–Terry loss on preference pairs; prints held-out pairwise accuracy (per kind for
    /// the world's pairs) and saves it for `align grpo --reward-model`.
    Reward(Box<RewardArgs>),
    /// GRPO on the code task: a supervised warm-up, then G sampled completions per prompt
    /// rewarded by execution (or a reward model), group-normalised advantages, the clipped
    /// objective and a KL penalty to the warm-up model; prints the reward and KL per step and
    /// execution accuracy before and after.
    Grpo(Box<GrpoArgs>),
    /// The line-up: SFT on the chosen responses and every preference objective, with LoRA and
    /// with full fine-tuning, over seeds; then GRPO against SFT at equal training compute.
    Compare(AlignCompareArgs),
}

fn preference_about() -> String {
    format!(
        "Preference tuning on pairs ({{prompt, chosen, rejected}}), through the Trainer, with any \
         fine-tuning method. The reference policy is the base run without the method's hooks \
         when the method leaves the base frozen (no second copy of the weights), else a frozen \
         copy (or precomputed log-probabilities with --reference precomputed). Without data \
         files, pairs are drawn from the synthetic world (held-out entities for validation and \
         test).\n\nObjectives (--loss-type):\n{}",
        tunelab::loss::preference::help_table()
    )
}

/// Pairs: the world's, or the user's files.
#[derive(Args, Debug, Clone)]
pub struct PairArgs {
    /// Training pairs, TRL's `{prompt, chosen, rejected}` as JSONL or CSV (with
    /// --validation-file; without them, the world's pairs).
    #[arg(long, requires = "validation_file")]
    pub train_file: Option<PathBuf>,
    /// Validation pairs: evaluation during training.
    #[arg(long, requires = "train_file")]
    pub validation_file: Option<PathBuf>,
    /// Test pairs, scored before and after training.
    #[arg(long, requires = "train_file")]
    pub test_file: Option<PathBuf>,
    /// Pairs drawn from the world for training (without --train-file) [default: 1000].
    #[arg(long, default_value_t = 1000)]
    pub train_pairs: usize,
    /// Pairs drawn from the world for validation and for test each [default: 200].
    #[arg(long, default_value_t = 200)]
    pub eval_pairs: usize,
}

impl PairArgs {
    fn source(&self) -> tunelab::Result<PairSource> {
        Ok(match (&self.train_file, &self.validation_file) {
            (Some(t), Some(v)) => PairSource::Files {
                train: t.clone(),
                validation: v.clone(),
                test: self.test_file.clone(),
            },
            _ => {
                in_range("--train-pairs", self.train_pairs, 1, 1_000_000)?;
                in_range("--eval-pairs", self.eval_pairs, 1, 1_000_000)?;
                PairSource::World(tunelab::data::tasks::Sizes {
                    train: self.train_pairs,
                    validation: self.eval_pairs,
                    test: self.eval_pairs,
                })
            }
        })
    }
}

/// What every training subcommand shares: the base, the method, the Trainer's options.
#[derive(Args, Debug)]
pub struct Common {
    /// A shipped base name (gpt-tiny) or the path of a decoder model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    #[command(flatten)]
    pub method: Box<MethodArgs>,
    #[command(flatten)]
    pub train: Box<TrainArgs>,
    /// The validation metric that decides the best model and early stopping (loss, accuracy,
    /// margin, kl, reward, ...) [default: loss].
    #[arg(long)]
    pub metric_for_best_model: Option<String>,
    /// Restore the weights of the best evaluation at the end (needs --eval-strategy steps or
    /// epoch).
    #[arg(long)]
    pub load_best_model_at_end: bool,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

impl Common {
    fn run(&self) -> tunelab::Result<AlignRun> {
        tunelab::train::trainer::install_ctrl_c();
        self.speed.apply()?;
        let mut args = self.train.build()?;
        if let Some(m) = &self.metric_for_best_model {
            args.metric_for_best_model = m.clone();
        }
        args.load_best_model_at_end = self.load_best_model_at_end;
        args.validate()?;
        check_writable_dir("--output-dir", &args.output_dir)?;
        let tok = tunelab::lab::finetune::load_base(&self.base)
            .ok()
            .map(|b| b.tok);
        Ok(AlignRun {
            base: self.base.clone(),
            spec: self.method.spec(tok.as_ref())?,
            args,
            resume: self.train.resume,
        })
    }
}

#[derive(Args, Debug)]
pub struct PreferenceArgs {
    /// The objective, TRL's `loss_type`: sigmoid (DPO; alias dpo), ipo, simpo, orpo, kto.
    #[arg(long, default_value = "sigmoid")]
    pub loss_type: String,
    /// β: the KL weight (IPO's τ, ORPO's λ) [default: the objective's, see above].
    #[arg(long)]
    pub beta: Option<f64>,
    /// Conservative DPO's ε, the probability that a label is flipped, in [0, 0.5).
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// SimPO's target margin γ.
    #[arg(long)]
    pub simpo_gamma: Option<f64>,
    /// SimPO's weight of the chosen responses' NLL (TRL's CPO `cpo_alpha`).
    #[arg(long)]
    pub cpo_alpha: Option<f64>,
    /// KTO's weight of desirable examples.
    #[arg(long, default_value_t = 1.0)]
    pub desirable_weight: f64,
    /// KTO's weight of undesirable examples.
    #[arg(long, default_value_t = 1.0)]
    pub undesirable_weight: f64,
    /// Where the reference's log-probabilities come from: base-without-hooks, frozen-copy or
    /// precomputed [default: base-without-hooks for a frozen-base method, else frozen-copy].
    #[arg(long)]
    pub reference: Option<String>,
    /// Tokens per sequence at most (TRL's `max_length`) [default: the model's].
    #[arg(long)]
    pub max_length: Option<usize>,
    /// KTO only: train on this `{prompt, completion, label}` file instead of the pairs
    /// unpaired.
    #[arg(long)]
    pub kto_file: Option<PathBuf>,
    #[command(flatten)]
    pub pairs: PairArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct RewardArgs {
    /// η of TRL's centering penalty η·mean((r_c + r_r)²) (none by default).
    #[arg(long)]
    pub center_rewards_coefficient: Option<f64>,
    #[command(flatten)]
    pub pairs: PairArgs,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct GrpoArgs {
    /// The reward: execution (the code task's verifiable reward) or reward-model (with
    /// --reward-model).
    #[arg(long, default_value = "execution")]
    pub reward: String,
    /// A reward model saved by `tunelab align reward` on the same base.
    #[arg(long)]
    pub reward_model: Option<PathBuf>,
    /// G, completions sampled per prompt (at least 2).
    #[arg(long, default_value_t = 8)]
    pub num_generations: usize,
    /// Sampling temperature (> 0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Tokens per completion at most, the end token included.
    #[arg(long, default_value_t = 16)]
    pub max_completion_length: usize,
    /// The KL penalty's weight β (0: no reference, as TRL's default).
    #[arg(long, default_value_t = 0.1)]
    pub beta: f64,
    /// ε of the clip: the ratio is clipped to [1 − ε, 1 + ε_high].
    #[arg(long, default_value_t = 0.2)]
    pub epsilon: f64,
    /// ε_high (DAPO's clip-higher uses 0.28) [default: --epsilon].
    #[arg(long)]
    pub epsilon_high: Option<f64>,
    /// The loss normalisation: grpo (per sequence, the paper), bnpo, dapo (per token over the
    /// batch), dr_grpo (a constant, Dr. GRPO).
    #[arg(long, default_value = "dapo")]
    pub loss_type: String,
    /// How rewards become advantages: group (the paper's), batch, none (Dr. GRPO).
    #[arg(long, default_value = "group")]
    pub scale_rewards: String,
    /// Supervised warm-up steps (full fine-tuning on the code task's programs) before GRPO: a
    /// raw base never writes a program that runs (0: none).
    #[arg(long, default_value_t = 30)]
    pub warmup_sft_steps: usize,
    /// Train on the first N prompts of the code task (all by default).
    #[arg(long)]
    pub prompts: Option<usize>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Debug)]
pub struct AlignCompareArgs {
    /// A demo-sized run (10 steps, 48 test pairs, 24 answered prompts; GRPO 4 steps): a few
    /// minutes instead of a quarter of an hour.
    #[arg(long)]
    pub quick: bool,
    /// Optimizer steps of every preference run (default 60; 10 with --quick).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Pairs per step (default 8: 16 sequences).
    #[arg(long)]
    pub batch_pairs: Option<usize>,
    /// Runs per row, each with its own seed (42, 43, ...) [default: 3].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// Only these rows' objectives (comma-separated: sft, sigmoid, ipo, simpo, orpo, kto).
    #[arg(long, value_delimiter = ',')]
    pub objectives: Vec<String>,
    /// Only these methods of the line-up (comma-separated: lora, full).
    #[arg(long, value_delimiter = ',')]
    pub methods: Vec<String>,
    /// Skip GRPO against SFT.
    #[arg(long, conflicts_with = "only_grpo")]
    pub no_grpo: bool,
    /// Only GRPO against SFT.
    #[arg(long)]
    pub only_grpo: bool,
    /// GRPO's optimizer steps (and SFT's) in the second part (default 24; 4 with --quick).
    #[arg(long)]
    pub grpo_steps: Option<usize>,
    /// Print everything measured as JSON (per-seed runs included).
    #[arg(long)]
    pub json: bool,
    /// Also write that JSON into this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

pub fn run(a: AlignArgs) -> Outcome {
    match a.command {
        AlignCommand::Preference(p) => preference(*p),
        AlignCommand::Reward(r) => reward(*r),
        AlignCommand::Grpo(g) => grpo(*g),
        AlignCommand::Compare(c) => compare(c),
    }
}

/// Prints how an interrupted run ended and returns the shell's code for the signal.
fn interrupted(report: &TrainReport, output_dir: &std::path::Path) -> Outcome {
    println!(
        "interrupted at step {}: checkpoint saved in {}; continue with --resume",
        report.state.step,
        output_dir
            .join(tunelab::io::checkpoint::training_dir_name(
                report.state.step
            ))
            .display()
    );
    Ok(ExitCode::from(interrupt_exit_code()))
}

fn trained(report: &TrainReport) -> String {
    format!(
        "trained {} steps in {:.1} s (median step {:.1} ms); peak memory {:.2} MB (reference {:.2} MB)",
        report.state.step - report.start_step,
        report.seconds,
        report.median_step_seconds * 1e3,
        report.memory.total() as f64 / (1024.0 * 1024.0),
        report.memory.reference as f64 / (1024.0 * 1024.0),
    )
}

fn preference(a: PreferenceArgs) -> Outcome {
    let run = a.common.run()?;
    let options = PreferenceTrainOptions {
        objective: PreferenceOptions {
            loss_type: a.loss_type.clone(),
            beta: a.beta,
            label_smoothing: a.label_smoothing,
            simpo_gamma: a.simpo_gamma,
            cpo_alpha: a.cpo_alpha,
            desirable_weight: a.desirable_weight,
            undesirable_weight: a.undesirable_weight,
        },
        reference: a
            .reference
            .as_deref()
            .map(ReferenceKind::parse)
            .transpose()?,
        max_length: a.max_length,
        ..PreferenceTrainOptions::default()
    };
    options.objective.objective()?;
    let data = align::pair_data(&a.pairs.source()?, a.kto_file.as_deref())?;
    let r = align::train_preference(&run, &data, &options, &mut TrainBar::new())?;
    println!("{}", r.summary);
    if r.report.interrupted {
        return interrupted(&r.report, &run.args.output_dir);
    }
    println!(
        "reference: {} ({} bytes beyond the policy)",
        r.reference.name(),
        r.reference_bytes
    );
    println!("{}", trained(&r.report));
    println!("test before: {}", fmt_metrics(&r.before));
    println!("test after:  {}", fmt_metrics(&r.test));
    println!(
        "forgetting: held-out LM loss {:.4} → {:.4} ({:+.4})",
        r.forgetting.before,
        r.forgetting.after,
        r.forgetting.delta()
    );
    println!("adapter: {}", r.adapter_dir.display());
    Ok(ExitCode::SUCCESS)
}

fn reward(a: RewardArgs) -> Outcome {
    let run = a.common.run()?;
    let data: PairData = align::pair_data(&a.pairs.source()?, None)?;
    let options = RewardOptions {
        center_rewards_coefficient: a.center_rewards_coefficient,
        ..RewardOptions::default()
    };
    let r = align::train_reward(&run, &data, options, &mut TrainBar::new())?;
    println!("{}", r.summary);
    if r.report.interrupted {
        return interrupted(&r.report, &run.args.output_dir);
    }
    println!("{}", trained(&r.report));
    println!("test before: {}", fmt_metrics(&r.before));
    println!("test after:  {}", fmt_metrics(&r.test));
    println!("reward model: {}", r.model_dir.display());
    Ok(ExitCode::SUCCESS)
}

fn grpo(a: GrpoArgs) -> Outcome {
    let run = a.common.run()?;
    let reward = match (a.reward.as_str(), &a.reward_model) {
        ("execution", None) => RewardSource::Execution,
        ("reward-model", Some(dir)) => RewardSource::Model(dir.clone()),
        ("reward-model", None) => {
            return super::args::bad_option("--reward", "reward-model needs --reward-model DIR")
        }
        ("execution", Some(_)) => {
            return super::args::bad_option(
                "--reward-model",
                "given with --reward execution: pass --reward reward-model to use it",
            )
        }
        (other, _) => {
            return super::args::bad_option(
                "--reward",
                format!("unknown reward {other:?}; one of execution, reward-model"),
            )
        }
    };
    let g = GrpoRun {
        options: GrpoOptions {
            num_generations: a.num_generations,
            temperature: a.temperature,
            max_completion_length: a.max_completion_length,
            beta: a.beta,
            epsilon: a.epsilon,
            epsilon_high: a.epsilon_high,
            loss_type: LossType::parse(&a.loss_type)?,
            scale_rewards: ScaleRewards::parse(&a.scale_rewards)?,
            ..GrpoOptions::default()
        },
        warmup: Warmup {
            steps: a.warmup_sft_steps,
            ..Warmup::default()
        },
        prompts: a.prompts,
        reward,
        run,
    };
    g.options.validate()?;
    let r = agrpo::train_grpo(&g, &mut TrainBar::new())?;
    println!("{}", r.summary);
    if r.report.interrupted {
        return interrupted(&r.report, &g.run.args.output_dir);
    }
    println!(
        "warm-up: {} steps of supervised fine-tuning in {:.1} s",
        g.warmup.steps, r.warmup_seconds
    );
    println!("{}", trained(&r.report));
    println!("step  reward  std    kl       clip   length  zero-std groups");
    for s in &r.steps {
        println!(
            "{:>4}  {:.3}   {:.3}  {}  {:.3}  {:>5.1}   {:.2}",
            s.step + 1,
            s.reward_mean,
            s.reward_std,
            s.kl.map_or("   -   ".to_string(), |k| format!("{k:.5}")),
            s.clip_ratio,
            s.completion_length,
            s.frac_reward_zero_std
        );
    }
    println!("test before: {}", fmt_metrics(&r.before));
    println!("test after:  {}", fmt_metrics(&r.after));
    println!(
        "reference: {} bytes beyond the policy; adapter: {} (on the warmed-up base)",
        r.reference_bytes,
        r.adapter_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn compare(a: AlignCompareArgs) -> Outcome {
    a.speed.apply()?;
    let mut o = AlignCompareOptions::new(a.quick);
    o.steps = a.steps.unwrap_or(o.steps);
    o.batch_pairs = a.batch_pairs.unwrap_or(o.batch_pairs);
    o.seeds = a.seeds.unwrap_or(o.seeds);
    use tunelab::train::args::MAX_STEPS;
    in_range("--steps", o.steps, 1, MAX_STEPS)?;
    in_range("--batch-pairs", o.batch_pairs, 1, 4096)?;
    in_range("--seeds", o.seeds, 1, 1000)?;
    if !a.objectives.is_empty() {
        for name in &a.objectives {
            if name != SFT {
                PreferenceOptions {
                    loss_type: name.clone(),
                    ..PreferenceOptions::default()
                }
                .objective()?;
            }
        }
        o.objectives = a.objectives.clone();
    }
    if !a.methods.is_empty() {
        let all = o.methods.clone();
        o.methods = all
            .iter()
            .filter(|m| a.methods.contains(&m.label))
            .cloned()
            .collect();
        if o.methods.is_empty() {
            return super::args::bad_option(
                "--methods",
                format!(
                    "{:?} names no method of the line-up (lora, full)",
                    a.methods
                ),
            );
        }
    }
    if a.no_grpo {
        o.grpo = None;
    }
    o.skip_preference = a.only_grpo;
    if let (Some(g), Some(n)) = (o.grpo.as_mut(), a.grpo_steps) {
        in_range("--grpo-steps", n, 1, MAX_STEPS)?;
        g.steps = n;
    }
    if let Some(path) = &a.json_out {
        check_writable_file("--json-out", path)?;
    }
    let mut bar = CompareBar::steps(o.total_steps());
    let result = acompare::run(&o, &mut bar)?;
    bar.finish();
    let json = || serde_json::to_string_pretty(&result).expect("results serialise");
    if let Some(path) = &a.json_out {
        tunelab::io::atomic_write(path, json().as_bytes())?;
    }
    if a.json {
        println!("{}", json());
    } else {
        print!("{}", result.render());
    }
    Ok(ExitCode::SUCCESS)
}
