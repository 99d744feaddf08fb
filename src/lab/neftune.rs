//! Does NEFTune help? LoRA on an instruction/dialogue task with and without noisy embeddings,
//! over seeds (`tunelab neftune`).
//!
//! Both arms train the same LoRA (same seed, data order, initialisation, budget); the only
//! difference is `neftune_noise_alpha` ([`crate::train::neftune`]). The test score (ROUGE-L of
//! the generated reply for dialogue) is reported per arm with a Student-t 95% interval over
//! seeds, and the paired difference (NEFTune − plain, seed by seed) with its interval and
//! verdict. Jain et al. report gains on 7B models judged by AlpacaEval; whether it helps a
//! 128-wide model on a synthetic task is what this measures.

use super::finetune::{finetune, FinetuneOptions};
use super::stats::{self, Estimate, IntervalKind, Paired};
use crate::data::tasks::Task;
use crate::error::{Error, Result};
use crate::peft::spec::{LoraConfig, MethodSpec};
use crate::train::args::Strategy;
use crate::train::TrainingArgs;

/// What to run.
#[derive(Debug, Clone)]
pub struct NeftuneOptions {
    pub base: String,
    pub task: Task,
    pub lora: LoraConfig,
    pub alpha: f64,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub seed: u64,
    pub seeds: usize,
    /// Test examples scored (0: all).
    pub max_eval_examples: usize,
}

impl Default for NeftuneOptions {
    /// Dialogue on gpt-tiny, LoRA r = 8 on q and v, α = 5, 150 steps of 16 at 3e-3, 3 seeds,
    /// 150 test examples.
    fn default() -> Self {
        Self {
            base: super::runs::BASE.into(),
            task: Task::Dialogue,
            lora: crate::peft::lora::compare_config(),
            alpha: 5.0,
            steps: 150,
            batch_size: 16,
            lr: 3e-3,
            seed: 42,
            seeds: 3,
            max_eval_examples: 150,
        }
    }
}

/// One arm's test scores.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Arm {
    pub label: String,
    pub alpha: Option<f64>,
    /// Per seed: every test metric's value.
    pub metrics: Vec<crate::train::trainer::Metrics>,
    pub score: Estimate,
    /// The final training loss per seed.
    pub final_loss: Vec<f64>,
}

/// Both arms and their paired difference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub seeds: Vec<u64>,
    pub plain: Arm,
    pub neftune: Arm,
    pub paired: Paired,
}

/// Trains both arms on every seed; `progress` gets a line per run.
pub fn run(opts: &NeftuneOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    if opts.seeds == 0 {
        return Err(Error::Invalid {
            op: "--seeds",
            detail: "at least 1".into(),
        });
    }
    let seeds: Vec<u64> = (0..opts.seeds as u64).map(|k| opts.seed + k).collect();
    let work = super::runs::temp_dir("neftune");
    let mut arms = Vec::new();
    for (label, alpha) in [
        ("lora".to_string(), None),
        (format!("lora + NEFTune α={}", opts.alpha), Some(opts.alpha)),
    ] {
        let (mut metrics, mut scores, mut losses) = (Vec::new(), Vec::new(), Vec::new());
        for &seed in &seeds {
            progress(&format!("{label}, seed {seed}"));
            let args = TrainingArgs {
                output_dir: work.join(format!("{}-{seed}", alpha.is_some())),
                max_steps: Some(opts.steps),
                batch_size: opts.batch_size,
                learning_rate: opts.lr,
                warmup_steps: opts.steps / 10,
                eval_strategy: Strategy::No,
                save_strategy: Strategy::No,
                seed,
                max_eval_examples: opts.max_eval_examples,
                overwrite_output_dir: true,
                neftune_noise_alpha: alpha,
                ..TrainingArgs::default()
            };
            let r = finetune(
                &FinetuneOptions {
                    base: opts.base.clone(),
                    task: opts.task,
                    data: None,
                    spec: MethodSpec::Lora(opts.lora.clone()),
                    args,
                    train_limit: None,
                    resume: false,
                    base_dtype: Default::default(),
                },
                &mut (),
            )?;
            scores.push(r.test.get("score").copied().unwrap_or(f64::NAN));
            losses.push(r.report.state.losses.last().copied().unwrap_or(f64::NAN));
            metrics.push(r.test);
        }
        arms.push(Arm {
            label,
            alpha,
            score: stats::t_interval(&scores, IntervalKind::TOverSeeds),
            metrics,
            final_loss: losses,
        });
    }
    let _ = std::fs::remove_dir_all(&work);
    let neftune = arms.pop().expect("two arms");
    let plain = arms.pop().expect("two arms");
    let score = |a: &Arm| -> Vec<f64> {
        a.metrics
            .iter()
            .map(|m| m.get("score").copied().unwrap_or(f64::NAN))
            .collect()
    };
    let paired = stats::paired_t(&plain.label, &score(&neftune), &score(&plain));
    Ok(Report {
        seeds,
        plain,
        neftune,
        paired,
    })
}

/// The report as a table with its verdict.
pub fn table(opts: &NeftuneOptions, r: &Report) -> String {
    let mut out = format!(
        "{} on {}: LoRA r={} alpha={} on {}, {} steps of {} at lr {}, seeds {}; test score on {} examples\n",
        opts.task.name(),
        opts.base,
        opts.lora.r,
        opts.lora.alpha,
        opts.lora.targets.join(","),
        opts.steps,
        opts.batch_size,
        opts.lr,
        r.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
        if opts.max_eval_examples == 0 { "all".to_string() } else { opts.max_eval_examples.to_string() },
    );
    out.push_str(&format!(
        "{:24}  {:>14}  {:>30}  {:>24}\n",
        "run", "test score", "per seed", "final train loss"
    ));
    out.push_str(&"-".repeat(98));
    out.push('\n');
    for a in [&r.plain, &r.neftune] {
        let per: Vec<String> = a
            .metrics
            .iter()
            .map(|m| format!("{:.3}", m.get("score").copied().unwrap_or(f64::NAN)))
            .collect();
        let loss: Vec<String> = a.final_loss.iter().map(|l| format!("{l:.3}")).collect();
        out.push_str(&format!(
            "{:24}  {:>14}  {:>30}  {:>24}\n",
            a.label,
            a.score.short(3),
            per.join(" "),
            loss.join(" ")
        ));
    }
    let d = &r.paired.difference;
    out.push_str(&format!(
        "NEFTune − plain, paired by seed: {:+.3} [{:+.3}, {:+.3}]: {}\n",
        d.mean,
        d.lo.unwrap_or(f64::NAN),
        d.hi.unwrap_or(f64::NAN),
        r.paired.verdict.name()
    ));
    out.push_str(
        "score: the task's test score (ROUGE-L of the generated reply for dialogue); mean±half-width of the 95% Student-t interval over seeds\n\
         the train loss with NEFTune is measured on noisy embeddings, so it is not comparable with the plain run's\n",
    );
    out
}
