//! One LoRA adapter per task, then one merged adapter for all of them: how much does each task
//! lose? (`tunelab merge --compare`.)
//!
//! For every seed, one LoRA adapter is trained per task (same targets, rank and budget), and
//! each task's test score is measured
//!
//! - with its own adapter (as `finetune` scores it),
//! - through an [`AdapterSet`] that holds all the adapters on one base and activates the
//!   task's adapter for its requests (the same weights as its own adapter, so the same score:
//!   the row checks that switching changes nothing),
//! - with one merged adapter per combination ([`super::merge`]: task arithmetic exactly by
//!   `cat` and truncated to the input rank by `svd`, TIES and DARE-TIES on the full updates
//!   re-factored by SVD, and PEFT's A/B-wise `linear`, `ties`, `dare_ties`).
//!
//! Task heads are not merged: each task keeps the head it was trained with, on top of the
//! shared merged LoRA weights (see [`super::merge`]). Scores are means over seeds with
//! Student-t 95% intervals ([`super::stats`]).

use super::finetune::{finetune, load_base, task_data, FinetuneOptions};
use super::merge::{self, Combination, Input, MergeOptions};
use super::stats::{self, Estimate, IntervalKind};
use crate::data::tasks::Task;
use crate::error::{Error, Result};
use crate::io::adapter::AdapterFiles;
use crate::peft::spec::{LoraConfig, MethodSpec};
use crate::peft::store::AdapterSet;
use crate::train::args::Strategy;
use crate::train::trainer::{Split, TrainTask};
use crate::train::TrainingArgs;
use std::path::{Path, PathBuf};

/// What to run.
#[derive(Debug, Clone)]
pub struct MergeCompareOptions {
    pub base: String,
    pub tasks: Vec<Task>,
    pub lora: LoraConfig,
    pub steps: usize,
    pub batch_size: usize,
    /// Learning rate per task; `None`: compare's chosen rate for LoRA on that task
    /// (configs/compare.toml), else 3e-3.
    pub lr: Option<f64>,
    pub seed: u64,
    pub seeds: usize,
    /// Test examples scored per task (0: all).
    pub max_eval_examples: usize,
    /// The merges compared, by label.
    pub merges: Vec<(String, MergeOptions)>,
}

impl MergeCompareOptions {
    /// sentiment, NER and QA on gpt-tiny (three heads of different names: `score`,
    /// `classifier`, `qa_outputs`), LoRA r = 8 on q and v, 150 steps of 16, 3 seeds, and the
    /// default merges with weight 1 per task and density 0.5 ([`default_merges`]).
    pub fn new(base: &str) -> Self {
        let tasks = vec![Task::Sentiment, Task::Ner, Task::Qa];
        let lora = crate::peft::lora::compare_config();
        let merges = default_merges(tasks.len(), lora.r, 0.5);
        Self {
            base: base.into(),
            tasks,
            lora,
            steps: 150,
            batch_size: 16,
            lr: None,
            seed: 42,
            seeds: 3,
            max_eval_examples: 150,
            merges,
        }
    }
}

/// The merges compared: task arithmetic exact (`cat`, rank n·r) and truncated to rank r (`svd`),
/// TIES and DARE-TIES on the full updates (rank r), and PEFT's A/B-wise `ties`, `dare_ties` and
/// `linear`; weight 1 per task, `density` for the pruning ones.
pub fn default_merges(n: usize, r: usize, density: f64) -> Vec<(String, MergeOptions)> {
    let with = |c: Combination| {
        let mut o = MergeOptions::new(c, n);
        if c.needs_density() {
            o.density = Some(density);
        }
        o
    };
    vec![
        (
            format!("task arithmetic (cat, r={})", n * r),
            with(Combination::Cat),
        ),
        (
            format!("task arithmetic (svd, r={r})"),
            with(Combination::Svd),
        ),
        ("ties_svd".into(), with(Combination::TiesSvd)),
        ("dare_ties_svd".into(), with(Combination::DareTiesSvd)),
        ("ties (A, B apart)".into(), with(Combination::Ties)),
        ("dare_ties (A, B apart)".into(), with(Combination::DareTies)),
        ("linear (A, B apart)".into(), with(Combination::Linear)),
    ]
}

/// One row: a way of serving the tasks, its score per task and seed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub label: String,
    /// [task][seed]
    pub scores: Vec<Vec<f64>>,
    pub per_task: Vec<Estimate>,
    /// The mean over tasks, per seed, and its interval.
    pub mean: Estimate,
}

/// What the experiment measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub tasks: Vec<String>,
    pub metrics: Vec<String>,
    pub seeds: Vec<u64>,
    pub lrs: Vec<f64>,
    pub rows: Vec<Row>,
    /// What the merges said (one adapter means linear, ...), once.
    pub notes: Vec<String>,
    /// The task heads kept apart, per task (empty for a generation task).
    pub heads: Vec<Vec<String>>,
}

fn lr_for(opts: &MergeCompareOptions, task: Task) -> f64 {
    opts.lr.unwrap_or_else(|| {
        super::settings::Settings::compiled()
            .ok()
            .and_then(|s| s.get(task, "lora r=8 q,v").map(|x| x.lr))
            .unwrap_or(3e-3)
    })
}

/// A task's test score with `files` loaded onto a fresh base (its head bound from `seed`, then
/// replaced by the file's).
fn score_with(
    opts: &MergeCompareOptions,
    task: Task,
    label: &Path,
    files: AdapterFiles<f32>,
    seed: u64,
) -> Result<f64> {
    let mut b = load_base(&opts.base)?;
    let (data, world) = task_data(task, None, None)?;
    let tm = b.task_model(task, world, data, seed)?;
    let (_, method, _) =
        crate::peft::store::load_adapter_files(label, files, &b.model, &mut b.store, seed)?;
    let m = TrainTask::<f32>::evaluate(
        &tm,
        &b.store,
        method.as_ref(),
        Split::Test,
        opts.max_eval_examples,
        32,
    )?;
    score_of(&m)
}

fn score_of(m: &crate::train::trainer::Metrics) -> Result<f64> {
    m.get("score").copied().ok_or_else(|| Error::Invalid {
        op: "merge compare",
        detail: "the evaluation reported no score".into(),
    })
}

/// Every task's test score through one [`AdapterSet`] holding all the adapters: the task's
/// adapter activated for its examples.
fn score_switching(
    opts: &MergeCompareOptions,
    adapters: &[PathBuf],
    seed: u64,
) -> Result<Vec<f64>> {
    let mut b = load_base(&opts.base)?;
    let mut tms = Vec::new();
    for &task in &opts.tasks {
        let (data, world) = task_data(task, None, None)?;
        // Each task's head goes into the one base store: their names must differ.
        let tm = b.task_model(task, world, data, seed)
            .map_err(|e| Error::Invalid {
                op: "merge compare",
                detail: format!(
                    "the heads of {} cannot share one base store ({e}): choose tasks whose heads differ",
                    opts.tasks.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
                ),
            })?;
        tms.push(tm);
    }
    let mut set = AdapterSet::new(b.model.clone(), b.store);
    for (task, dir) in opts.tasks.iter().zip(adapters) {
        set.load(task.name(), dir, seed)?;
    }
    let mut out = Vec::new();
    for (task, tm) in opts.tasks.iter().zip(&tms) {
        set.activate(task.name())?;
        let m = TrainTask::<f32>::evaluate(
            tm,
            set.store(),
            set.hooks(),
            Split::Test,
            opts.max_eval_examples,
            32,
        )?;
        out.push(score_of(&m)?);
    }
    Ok(out)
}

/// Runs the experiment; `progress` gets a line per stage.
pub fn run(opts: &MergeCompareOptions, progress: &mut dyn FnMut(&str)) -> Result<Report> {
    if opts.tasks.len() < 2 {
        return Err(Error::Invalid {
            op: "--tasks",
            detail: "merging needs at least two tasks".into(),
        });
    }
    if opts.seeds == 0 {
        return Err(Error::Invalid {
            op: "--seeds",
            detail: "at least 1".into(),
        });
    }
    let seeds: Vec<u64> = (0..opts.seeds as u64).map(|k| opts.seed + k).collect();
    let lrs: Vec<f64> = opts.tasks.iter().map(|&t| lr_for(opts, t)).collect();
    let n_rows = 2 + opts.merges.len();
    // [row][task][seed]
    let mut scores = vec![vec![Vec::new(); opts.tasks.len()]; n_rows];
    let mut notes: Vec<String> = Vec::new();
    let mut heads: Vec<Vec<String>> = vec![Vec::new(); opts.tasks.len()];
    let work = super::runs::temp_dir("merge-compare");
    for &seed in &seeds {
        let mut adapters = Vec::new();
        for (i, &task) in opts.tasks.iter().enumerate() {
            progress(&format!("seed {seed}: training LoRA on {}", task.name()));
            let out = work.join(format!("{}-{seed}", task.name()));
            let args = TrainingArgs {
                output_dir: out,
                max_steps: Some(opts.steps),
                batch_size: opts.batch_size,
                learning_rate: lrs[i],
                warmup_steps: opts.steps / 10,
                eval_strategy: Strategy::No,
                save_strategy: Strategy::No,
                seed,
                max_eval_examples: opts.max_eval_examples,
                overwrite_output_dir: true,
                ..TrainingArgs::default()
            };
            let r = finetune(
                &FinetuneOptions {
                    base: opts.base.clone(),
                    task,
                    data: None,
                    spec: MethodSpec::Lora(opts.lora.clone()),
                    args,
                    train_limit: None,
                    resume: false,
                    base_dtype: Default::default(),
                },
                &mut (),
            )?;
            scores[0][i].push(score_of(&r.test)?);
            adapters.push(r.adapter_dir);
        }
        progress(&format!(
            "seed {seed}: switching adapters in one AdapterSet"
        ));
        for (i, s) in score_switching(opts, &adapters, seed)?
            .into_iter()
            .enumerate()
        {
            scores[1][i].push(s);
        }
        let inputs: Vec<Input> = adapters
            .iter()
            .map(|d| {
                Ok(Input {
                    label: d.display().to_string(),
                    files: crate::io::adapter::read::<f32>(d)?,
                })
            })
            .collect::<Result<_>>()?;
        for (row, (label, mopts)) in opts.merges.iter().enumerate() {
            progress(&format!("seed {seed}: merging with {label}"));
            let mopts = MergeOptions {
                seed,
                ..mopts.clone()
            };
            let merged = merge::merge(&inputs, &mopts, None)?;
            for n in &merged.notes {
                if !notes.contains(n) && !n.starts_with("task heads") {
                    notes.push(n.clone());
                }
            }
            for (i, &task) in opts.tasks.iter().enumerate() {
                let head = merged.heads.iter().find(|h| h.input == i);
                heads[i] = head
                    .map(|h| h.tensors.iter().map(|(n, _)| n.clone()).collect())
                    .unwrap_or_default();
                let files = AdapterFiles {
                    spec: merged.spec.clone(),
                    meta: serde_json::Value::Null,
                    tensors: merged.with_head(head),
                };
                let label = work.join(format!("merged-{row}-{}", task.name()));
                scores[2 + row][i].push(score_with(opts, task, &label, files, seed)?);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let labels: Vec<String> = [
        "own adapter".to_string(),
        "switching (AdapterSet)".to_string(),
    ]
    .into_iter()
    .chain(opts.merges.iter().map(|(l, _)| l.clone()))
    .collect();
    let kind = IntervalKind::TOverSeeds;
    let rows = labels
        .into_iter()
        .zip(scores)
        .map(|(label, s)| {
            let per_task = s.iter().map(|xs| stats::t_interval(xs, kind)).collect();
            let per_seed: Vec<f64> = (0..seeds.len())
                .map(|k| stats::mean(&s.iter().map(|xs| xs[k]).collect::<Vec<_>>()))
                .collect();
            Row {
                label,
                mean: stats::t_interval(&per_seed, kind),
                per_task,
                scores: s,
            }
        })
        .collect();
    let metrics = opts
        .tasks
        .iter()
        .map(|t| match t.name() {
            "ner" => "entity_f1",
            "qa" => "f1",
            "sentiment" => "accuracy",
            _ => "score",
        })
        .map(str::to_string)
        .collect();
    Ok(Report {
        tasks: opts.tasks.iter().map(|t| t.name().to_string()).collect(),
        metrics,
        seeds,
        lrs,
        rows,
        notes,
        heads,
    })
}

/// The report as a table.
pub fn table(opts: &MergeCompareOptions, r: &Report) -> String {
    let mut out = format!(
        "LoRA r={} alpha={} on {} per task on {}, {} steps of {}, seeds {}; test score on {} examples per task\n",
        opts.lora.r,
        opts.lora.alpha,
        opts.lora.targets.join(","),
        opts.base,
        opts.steps,
        opts.batch_size,
        r.seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
        if opts.max_eval_examples == 0 { "all".to_string() } else { opts.max_eval_examples.to_string() },
    );
    let w = r
        .rows
        .iter()
        .map(|x| x.label.len())
        .max()
        .unwrap_or(10)
        .max(10);
    out.push_str(&format!("{:w$}", "served with"));
    for (t, m) in r.tasks.iter().zip(&r.metrics) {
        out.push_str(&format!("  {:>16}", format!("{t} ({m})")));
    }
    out.push_str(&format!("  {:>14}\n", "mean of tasks"));
    out.push_str(&"-".repeat(w + 18 * r.tasks.len() + 16));
    out.push('\n');
    for row in &r.rows {
        out.push_str(&format!("{:w$}", row.label));
        for e in &row.per_task {
            out.push_str(&format!("  {:>16}", e.short(3)));
        }
        out.push_str(&format!("  {:>14}\n", row.mean.short(3)));
    }
    out.push_str(&format!(
        "mean±half-width of the 95% interval, Student-t over {} seeds; learning rates {} (compare's sweep for LoRA, configs/compare.toml)\n",
        r.seeds.len(),
        r.tasks
            .iter()
            .zip(&r.lrs)
            .map(|(t, l)| format!("{t} {l}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let heads: Vec<String> = r
        .tasks
        .iter()
        .zip(&r.heads)
        .map(|(t, h)| match h.is_empty() {
            true => format!("{t}: the tied LM head"),
            false => format!("{t}: {}", h.join(", ")),
        })
        .collect();
    out.push_str(&format!(
        "heads: each task keeps its own head, trained with its adapter ({}); only the LoRA weights are merged and shared (a head maps features to one task's labels: heads are not mergeable, PEFT refuses to merge modules_to_save)\n",
        heads.join("; ")
    ));
    out.push_str(
        "own adapter: the score finetune reports; switching: the same adapters in one AdapterSet, activated per task (same weights, so the same scores)\n\
         merges (weight 1 per task, density 0.5 where pruned): cat = Σ ΔW_i exactly; svd = Σ ΔW_i truncated by SVD to the input rank; *_svd = TIES / DARE-TIES on the full updates ΔW_i, re-factored by SVD; (A, B apart) = PEFT's merge of the A's and of the B's separately (cross terms B_i A_j)\n",
    );
    for n in &r.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out
}
