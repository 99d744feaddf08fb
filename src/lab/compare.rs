//! `tunelab compare`: every method on the same task, data, step budget and seed, measured.
//!
//! Each row comes from one fine-tuning run in this process: trainable parameters, the median
//! optimizer-step time, the validation and test score, and the wall time of the run.

use super::finetune::{train_method, FinetuneOptions, Trained};
use crate::data::tasks::Task;
use crate::error::Result;
use crate::peft::lora::LoraConfig;
use crate::peft::prompt::PromptInit;
use crate::peft::MethodSpec;
use crate::train::args::Strategy;
use crate::train::trainer::{self, Split, TrainProgress, TrainTask};
use crate::train::TrainingArgs;
use serde::Serialize;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

/// One method with the learning rate it is compared at (PEFT methods train few parameters
/// from a neutral start and take larger steps than full fine-tuning). Prefix and prompt tuning
/// learn slowly: on sentiment they stay near chance at the default 150 steps and are only a little
/// above it at 600 (`--steps 600`), while LoRA and full fine-tuning are above 0.9 there.
#[derive(Debug, Clone)]
pub struct Entry {
    pub label: String,
    pub spec: MethodSpec,
    pub lr: f64,
}

/// The default line-up: every method with its usual options.
pub fn default_entries(prompt_init: Vec<usize>) -> Vec<Entry> {
    let lora = LoraConfig {
        r: 8,
        alpha: 16.0,
        targets: vec!["q".into(), "v".into()],
        ..Default::default()
    };
    let e = |label: &str, spec, lr| Entry {
        label: label.to_string(),
        spec,
        lr,
    };
    vec![
        e("full", MethodSpec::Full { last_k: None }, 5e-4),
        e("last-2 blocks", MethodSpec::Full { last_k: Some(2) }, 1e-3),
        e("bitfit", MethodSpec::Bitfit, 5e-3),
        e("houlsby", MethodSpec::Houlsby { bottleneck: 16 }, 3e-3),
        e("pfeiffer", MethodSpec::Pfeiffer { bottleneck: 16 }, 3e-3),
        e("lora r=8 q,v", MethodSpec::Lora(lora.clone()), 3e-3),
        e("dora r=8 q,v", MethodSpec::Dora(lora), 3e-3),
        e("ia3", MethodSpec::Ia3, 1e-2),
        e(
            "prefix P=10",
            MethodSpec::Prefix {
                n_virtual: 10,
                reparameterize: false,
                hidden: 128,
            },
            1e-2,
        ),
        e(
            "prompt P=10",
            MethodSpec::Prompt {
                n_virtual: 10,
                init: if prompt_init.is_empty() {
                    PromptInit::Random
                } else {
                    PromptInit::Vocab(prompt_init)
                },
            },
            1e-2,
        ),
    ]
}

/// The run's settings.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    pub base: String,
    pub task: Task,
    pub steps: usize,
    pub batch_size: usize,
    pub train_limit: Option<usize>,
    pub max_eval_examples: usize,
    pub seed: u64,
    pub only: Vec<String>,
}

/// One measured row.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub method: String,
    pub trainable_params: usize,
    pub total_params: usize,
    pub trainable_pct: f64,
    pub lr: f64,
    pub steps: usize,
    pub median_step_ms: f64,
    pub validation_score: f64,
    pub test_score: f64,
    pub metric: String,
    pub wall_seconds: f64,
}

/// Reports each finished row (the CLI prints a progress line).
pub trait CompareProgress: TrainProgress {
    fn begin(&mut self, _label: &str, _index: usize, _total: usize) {}
    fn done(&mut self, _row: &Row) {}
}

impl CompareProgress for () {}

/// Runs every entry and returns the rows in order.
pub fn compare(
    opts: &CompareOptions,
    entries: &[Entry],
    progress: &mut dyn CompareProgress,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let entries: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            opts.only.is_empty()
                || opts
                    .only
                    .iter()
                    .any(|o| e.spec.name() == o || &e.label == o)
        })
        .collect();
    for (i, entry) in entries.iter().enumerate() {
        progress.begin(&entry.label, i, entries.len());
        let started = Instant::now();
        let args = TrainingArgs {
            output_dir: PathBuf::from("runs")
                .join("compare")
                .join(entry.spec.name()),
            max_steps: Some(opts.steps),
            batch_size: opts.batch_size,
            learning_rate: entry.lr,
            warmup_steps: opts.steps / 10,
            eval_strategy: Strategy::No,
            save_strategy: Strategy::No,
            seed: opts.seed,
            max_eval_examples: opts.max_eval_examples,
            ..TrainingArgs::default()
        };
        let run = FinetuneOptions {
            base: opts.base.clone(),
            task: opts.task,
            data: None,
            spec: entry.spec.clone(),
            args,
            train_limit: opts.train_limit,
            resume: false,
        };
        let Trained {
            base,
            tm,
            method,
            report,
            trainable,
            total,
            ..
        } = train_method(&run, progress)?;
        let val = TrainTask::<f32>::evaluate(
            &tm,
            &base.store,
            method.as_ref(),
            Split::Validation,
            opts.max_eval_examples,
            32,
        )?;
        let test = TrainTask::<f32>::evaluate(
            &tm,
            &base.store,
            method.as_ref(),
            Split::Test,
            opts.max_eval_examples,
            32,
        )?;
        let metric = metric_name(&test);
        let row = Row {
            method: entry.label.clone(),
            trainable_params: trainable,
            total_params: total,
            trainable_pct: 100.0 * trainable as f64 / total as f64,
            lr: entry.lr,
            steps: report.state.step,
            median_step_ms: report.median_step_seconds * 1e3,
            validation_score: val.get("score").copied().unwrap_or(f64::NAN),
            test_score: test.get("score").copied().unwrap_or(f64::NAN),
            metric,
            wall_seconds: started.elapsed().as_secs_f64(),
        };
        progress.done(&row);
        rows.push(row);
    }
    Ok(rows)
}

fn metric_name(m: &trainer::Metrics) -> String {
    let score = m.get("score").copied();
    m.iter()
        .find(|(k, &v)| k.as_str() != "score" && Some(v) == score)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "score".into())
}

/// The table `tunelab compare` prints.
pub fn table(opts: &CompareOptions, rows: &[Row]) -> String {
    let mut s = String::new();
    let metric = rows.first().map(|r| r.metric.as_str()).unwrap_or("score");
    let _ = writeln!(
        s,
        "task {} on {}, {} steps of batch {}, seed {} (score: {metric})",
        opts.task.name(),
        opts.base,
        opts.steps,
        opts.batch_size,
        opts.seed
    );
    let _ = writeln!(
        s,
        "{:<15} {:>10} {:>9} {:>8} {:>10} {:>8} {:>8} {:>7}",
        "method", "trainable", "%", "lr", "step (ms)", "val", "test", "wall s"
    );
    let _ = writeln!(s, "{}", "-".repeat(82));
    for r in rows {
        let _ = writeln!(
            s,
            "{:<15} {:>10} {:>9.3} {:>8.0e} {:>10.1} {:>8.3} {:>8.3} {:>7.1}",
            r.method,
            r.trainable_params,
            r.trainable_pct,
            r.lr,
            r.median_step_ms,
            r.validation_score,
            r.test_score,
            r.wall_seconds
        );
    }
    s
}
