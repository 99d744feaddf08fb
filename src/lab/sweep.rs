//! `tunelab sweep`: one method trained over a grid of its options and learning rates, with
//! several seeds, each run scored on the **validation** split only; the grid point with the best
//! mean validation score wins. Test is never evaluated here, so a setting chosen by a sweep has
//! not seen the test set that `compare` and `finetune` report.
//!
//! A grid point is a learning rate plus a value for each swept method option (`--r 4,8,16`,
//! `--bottleneck 8,16`, `--n-virtual 5,10`, ...); its spec is built by the same `clap` parser
//! `tunelab finetune` uses ([`crate::peft::MethodArgs`]), so an option means the same in both.
//!
//! The chosen learning rates of `compare`'s line-up live in one settings file,
//! `configs/compare.toml` ([`Settings`]), written by `sweep --write-settings` with the whole
//! grid's scores, the budget, the seeds and the command, so anyone can rerun it; `compare` reads
//! the copy compiled into the binary ([`Settings::compiled`]).

use super::finetune::{train_method, FinetuneOptions};
use super::lanes::{lanes, side_by_side};
pub use super::settings::{GridScore, Setting, Settings, SETTINGS_PATH};
use crate::data::loaders::DataFiles;
use crate::data::tasks::Task;
use crate::data::tokenizer::Tokenizer;
use crate::error::{invalid, Error, Result};
use crate::peft::{MethodArgs, MethodSpec};
use crate::train::args::Strategy;
use crate::train::progress::{LogEntry, Progress};
use crate::train::trainer::{Split, TrainTask};
use crate::train::TrainingArgs;
use clap::Parser;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::Mutex;

/// The method options a sweep can take a comma list of (one grid axis each), by their
/// `tunelab finetune` flag without the dashes.
pub const AXES: &[&str] = &[
    "r",
    "alpha",
    "lora-dropout",
    "lora-plus-ratio",
    "bottleneck",
    "n-virtual",
    "prefix-hidden",
    "last-k",
    "targets",
];

/// One swept option and its values, e.g. `r` and `["4", "8", "16"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub flag: String,
    pub values: Vec<String>,
}

/// One grid point: a learning rate, the swept options' values and the spec they give.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub lr: f64,
    /// The swept options' values by flag (empty when only the learning rate is swept).
    pub options: BTreeMap<String, String>,
    #[serde(skip)]
    pub spec: MethodSpec,
    /// How the base is stored (a compare row's: nf4 for QLoRA's).
    #[serde(skip)]
    pub base_dtype: crate::nn::BaseDtype,
}

impl Point {
    /// `lr 3e-3, r 8`: the point in words.
    pub fn describe(&self) -> String {
        std::iter::once(format!("lr {:e}", self.lr))
            .chain(self.options.iter().map(|(k, v)| format!("{k} {v}")))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `finetune`'s method arguments, parsed from an argument list the way its command line is.
#[derive(Parser)]
struct MethodCli {
    #[command(flatten)]
    method: MethodArgs,
}

/// The grid of `method` over `lrs` and `axes` (every combination, the learning rate varying
/// slowest), with `fixed` (more `--flag value` arguments of `finetune`, such as `--targets q,v`)
/// at every point. Each point's spec is parsed as `tunelab finetune --method M --flag v ...`.
pub fn grid(
    method: &str,
    lrs: &[f64],
    axes: &[Axis],
    fixed: &[String],
    tok: Option<&Tokenizer>,
) -> Result<Vec<Point>> {
    if lrs.is_empty() {
        return invalid("sweep", "--lr needs at least one learning rate");
    }
    if let Some(lr) = lrs.iter().find(|&&lr| !(lr > 0.0 && lr.is_finite())) {
        return invalid(
            "sweep",
            format!("--lr {lr}: a learning rate must be positive"),
        );
    }
    for a in axes {
        if !AXES.contains(&a.flag.as_str()) {
            return invalid(
                "sweep",
                format!(
                    "--{} is not an option a sweep can vary; these are: {}",
                    a.flag,
                    AXES.join(", ")
                ),
            );
        }
        if a.values.is_empty() {
            return invalid("sweep", format!("--{} needs at least one value", a.flag));
        }
    }
    // Every combination of the axes' values, the first axis varying slowest.
    let mut combos: Vec<Vec<(String, String)>> = vec![vec![]];
    for a in axes {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                a.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((a.flag.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let mut points = Vec::new();
    for &lr in lrs {
        for combo in &combos {
            let mut argv = vec!["sweep".to_string(), "--method".into(), method.to_string()];
            argv.extend(fixed.iter().cloned());
            for (flag, value) in combo {
                argv.push(format!("--{flag}"));
                argv.push(value.clone());
            }
            let cli = MethodCli::try_parse_from(&argv).map_err(|e| Error::Invalid {
                op: "sweep",
                detail: format!("{}: {}", argv[1..].join(" "), e.kind()),
            })?;
            points.push(Point {
                lr,
                options: combo.iter().cloned().collect(),
                spec: cli.method.spec(tok)?,
                base_dtype: Default::default(),
            });
        }
    }
    Ok(points)
}

/// The three learning rates a compare entry's sweep tries by default: its current rate divided
/// by 3, itself, and times 3, each to two significant digits (5e-4 gives 1.7e-4, 5e-4, 1.5e-3).
pub fn lrs_around(lr: f64) -> Vec<f64> {
    let round = |v: f64| format!("{v:.1e}").parse().unwrap_or(v);
    vec![round(lr / 3.0), round(lr), round(lr * 3.0)]
}

/// A sweep's budget and data: every run trains `steps` optimizer steps of `batch_size`, with
/// warmup over the first tenth (as `compare` trains), and is scored on at most
/// `max_eval_examples` validation examples.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub base: String,
    pub task: Task,
    pub data: Option<DataFiles>,
    pub steps: usize,
    pub batch_size: usize,
    pub train_limit: Option<usize>,
    pub max_eval_examples: usize,
    /// One run per grid point and seed; the seed varies the head's and the method's
    /// initialisation, the data order and dropout (the examples are fixed).
    pub seeds: Vec<u64>,
    /// Runs write their logs under `out_dir/<point>-seed<seed>`.
    pub out_dir: PathBuf,
}

impl SweepOptions {
    /// `compare`'s default budget ([`super::compare::CompareOptions::new`]: its steps, batch
    /// size and evaluation examples) with 2 seeds, 42 and 43.
    pub fn new(base: &str, task: Task) -> Self {
        let c = super::compare::CompareOptions::new(base, task);
        Self {
            base: base.to_string(),
            task,
            data: None,
            steps: c.steps,
            batch_size: c.batch_size,
            train_limit: c.train_limit,
            max_eval_examples: c.max_eval_examples,
            seeds: vec![42, 43],
            out_dir: PathBuf::from("runs").join("sweep"),
        }
    }
}

/// One grid point's validation scores.
#[derive(Debug, Clone, Serialize)]
pub struct PointScores {
    #[serde(flatten)]
    pub point: Point,
    /// The validation score of each seed's run, in [`SweepOptions::seeds`] order.
    pub scores: Vec<f64>,
    pub mean: f64,
    /// The sample standard deviation over seeds (0 with one seed).
    pub std: f64,
    /// The validation loss of each seed's run.
    pub losses: Vec<f64>,
}

/// What a sweep measured: every point's scores and the one with the best mean.
#[derive(Debug, Clone, Serialize)]
pub struct SweepReport {
    pub task: String,
    pub method: String,
    /// The validation metric the score is (`accuracy`, `entity_f1`, `rouge_l`, ...).
    pub metric: String,
    pub split: &'static str,
    pub steps: usize,
    pub batch_size: usize,
    pub max_eval_examples: usize,
    pub seeds: Vec<u64>,
    pub points: Vec<PointScores>,
    /// Index into `points` of the best mean validation score (the first of equals).
    pub best: usize,
    pub wall_seconds: f64,
}

impl SweepReport {
    pub fn best(&self) -> &PointScores {
        &self.points[self.best]
    }
}

/// The run's progress, forwarded to the shared reporter under the run's label.
struct Lane<'a, 'p> {
    shared: &'a Mutex<&'p mut (dyn Progress + Send)>,
    label: String,
}

impl Progress for Lane<'_, '_> {
    fn step(&mut self, _run: &str, entry: &LogEntry) {
        if let Ok(mut p) = self.shared.lock() {
            p.step(&self.label, entry);
        }
    }
}

/// One run's outcome: validation score, loss and metric name.
struct RunScore {
    score: f64,
    loss: f64,
    metric: String,
}

/// Trains every point with every seed (runs side by side, one kernel thread each, as `compare`
/// does) and scores each on the validation split. `progress` hears every optimizer step (with
/// the run's label) and a [`Progress::line`] per finished run.
pub fn sweep(
    opts: &SweepOptions,
    label: &str,
    points: &[Point],
    progress: &mut (dyn Progress + Send),
) -> Result<SweepReport> {
    if points.is_empty() {
        return invalid("sweep", "the grid is empty");
    }
    if opts.seeds.is_empty() {
        return invalid("sweep", "--seeds must be at least 1");
    }
    let started = std::time::Instant::now();
    let runs: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|p| opts.seeds.iter().map(move |&s| (p, s)))
        .collect();
    let shared = Mutex::new(progress);
    let scores: Vec<RunScore> = side_by_side(runs.len(), lanes(runs.len()), |i| {
        let (p, seed) = runs[i];
        let run_label = format!("{label} {} seed {seed}", points[p].describe());
        let mut lane = Lane {
            shared: &shared,
            label: run_label.clone(),
        };
        let dir = opts.out_dir.join(format!("{p}-seed{seed}"));
        let r = run(opts, &points[p], seed, dir, &mut lane);
        if let (Ok(s), Ok(mut sh)) = (&r, shared.lock()) {
            sh.line(&format!(
                "{run_label}: validation {} {:.4}",
                s.metric, s.score
            ));
        }
        r
    })?;
    let metric = scores.first().map(|s| s.metric.clone()).unwrap_or_default();
    let per = opts.seeds.len();
    let points: Vec<PointScores> = points
        .iter()
        .zip(scores.chunks(per))
        .map(|(point, runs)| {
            let s: Vec<f64> = runs.iter().map(|r| r.score).collect();
            let (mean, std) = mean_std(&s);
            PointScores {
                point: point.clone(),
                scores: s,
                mean,
                std,
                losses: runs.iter().map(|r| r.loss).collect(),
            }
        })
        .collect();
    let best = best_index(&points.iter().map(|p| p.mean).collect::<Vec<_>>());
    Ok(SweepReport {
        task: opts.task.name().to_string(),
        method: label.to_string(),
        metric,
        split: "validation",
        steps: opts.steps,
        batch_size: opts.batch_size,
        max_eval_examples: opts.max_eval_examples,
        seeds: opts.seeds.clone(),
        points,
        best,
        wall_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The index of the largest value (the first of equals; NaN never wins unless all are NaN).
pub fn best_index(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() && !v.is_nan() {
            best = i;
        }
    }
    best
}

/// Mean and sample standard deviation (n - 1; 0 for one value).
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let sd = if v.len() < 2 {
        0.0
    } else {
        super::stats::sample_sd(v)
    };
    (super::stats::mean(v), sd)
}

/// One training run of a point with a seed, scored on validation.
fn run(
    opts: &SweepOptions,
    point: &Point,
    seed: u64,
    dir: PathBuf,
    progress: &mut dyn Progress,
) -> Result<RunScore> {
    let _ = std::fs::remove_dir_all(&dir); // a fresh log for this run
    let args = TrainingArgs {
        output_dir: dir,
        max_steps: Some(opts.steps),
        batch_size: opts.batch_size,
        learning_rate: point.lr,
        warmup_steps: opts.steps / 10,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed,
        max_eval_examples: opts.max_eval_examples,
        ..TrainingArgs::default()
    };
    let run = FinetuneOptions {
        base: opts.base.clone(),
        task: opts.task,
        data: opts.data.clone(),
        spec: point.spec.clone(),
        args,
        train_limit: opts.train_limit,
        resume: false,
        base_dtype: point.base_dtype,
    };
    let t = train_method(&run, progress)?;
    let m = TrainTask::<f32>::evaluate(
        &t.tm,
        &t.base.store,
        t.method.as_ref(),
        Split::Validation,
        opts.max_eval_examples,
        32,
    )?;
    let score = m.get("score").copied().unwrap_or(f64::NAN);
    let metric = m
        .iter()
        .find(|(k, &v)| k.as_str() != "score" && v == score)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "score".into());
    Ok(RunScore {
        score,
        loss: m.get("loss").copied().unwrap_or(f64::NAN),
        metric,
    })
}

/// The table `tunelab sweep` prints: a row per point, mean and spread over seeds, the winner
/// marked.
pub fn table(r: &SweepReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sweep of {} on {}: {} steps of batch {}, seeds {:?}, scored on at most {} validation examples ({}; test is not evaluated)",
        r.method, r.task, r.steps, r.batch_size, r.seeds, r.max_eval_examples, r.metric
    );
    let _ = writeln!(
        s,
        "  {:<36} {:>8} {:>8} {:>8}  per seed",
        "point", "mean", "std", "val loss"
    );
    for (i, p) in r.points.iter().enumerate() {
        let mark = if i == r.best { "*" } else { " " };
        let seeds: Vec<String> = p.scores.iter().map(|v| format!("{v:.4}")).collect();
        let (loss, _) = mean_std(&p.losses);
        let _ = writeln!(
            s,
            "{mark} {:<36} {:>8.4} {:>8.4} {:>8.4}  {}",
            p.point.describe(),
            p.mean,
            p.std,
            loss,
            seeds.join(" ")
        );
    }
    let _ = writeln!(
        s,
        "best by mean validation {}: {}",
        r.metric,
        r.best().point.describe()
    );
    s
}

impl Settings {
    /// Records a sweep of compare entry `label` (a learning-rate sweep: the points differ only
    /// in their rate).
    pub fn record(&mut self, report: &SweepReport, label: &str, command: &str) {
        let grid = report
            .points
            .iter()
            .map(|p| GridScore {
                lr: p.point.lr,
                mean: p.mean,
                std: p.std,
                scores: p.scores.clone(),
            })
            .collect();
        let setting = Setting {
            lr: report.best().point.lr,
            metric: report.metric.clone(),
            steps: report.steps,
            batch_size: report.batch_size,
            max_eval_examples: report.max_eval_examples,
            seeds: report.seeds.clone(),
            command: command.to_string(),
            grid,
        };
        self.tasks
            .entry(report.task.clone())
            .or_default()
            .insert(label.to_string(), setting);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_is_every_combination_parsed_as_finetune_parses_it() {
        let axes = [
            Axis {
                flag: "r".into(),
                values: vec!["4".into(), "8".into()],
            },
            Axis {
                flag: "alpha".into(),
                values: vec!["8".into(), "32".into()],
            },
        ];
        let fixed = ["--targets".to_string(), "q,k,v".to_string()];
        let g = grid("lora", &[1e-3, 1e-2], &axes, &fixed, None).unwrap();
        assert_eq!(g.len(), 8);
        assert_eq!(g[0].lr, 1e-3);
        assert_eq!(g[7].lr, 1e-2);
        let MethodSpec::Lora(c) = &g[1].spec else {
            panic!("lora")
        };
        assert_eq!((c.r, c.alpha), (4, 32.0));
        assert_eq!(c.targets, ["q", "k", "v"]);
        assert_eq!(g[1].describe(), "lr 1e-3, alpha 32, r 4");
        // Target sets are an axis too: each value is one comma list.
        let targets = Axis {
            flag: "targets".into(),
            values: vec!["q,v".into(), "all".into()],
        };
        let g = grid("lora", &[1e-3], &[targets], &[], None).unwrap();
        let t: Vec<Vec<String>> = g
            .iter()
            .map(|p| match &p.spec {
                MethodSpec::Lora(c) => c.targets.clone(),
                _ => vec![],
            })
            .collect();
        assert_eq!(t[0], ["q", "v"]);
        for name in ["q", "k", "v", "o", "fc", "proj"] {
            assert!(
                t[1].iter().any(|x| x == name),
                "all includes {name}: {:?}",
                t[1]
            );
        }
        assert_eq!(g[0].describe(), "lr 1e-3, targets q,v");
    }

    #[test]
    fn a_bad_grid_names_the_option() {
        let bad = |axes: &[Axis], lrs: &[f64]| {
            grid("houlsby", lrs, axes, &[], None)
                .unwrap_err()
                .to_string()
        };
        let axis = |f: &str, v: &str| Axis {
            flag: f.into(),
            values: vec![v.into()],
        };
        assert!(bad(&[axis("bottleneck", "wide")], &[1e-3]).contains("--bottleneck"));
        assert!(bad(&[axis("init-r", "4")], &[1e-3]).contains("--init-r is not"));
        assert!(bad(&[], &[]).contains("--lr"));
        assert!(bad(&[], &[-1.0]).contains("positive"));
    }

    #[test]
    fn the_default_rates_are_a_third_and_three_times_rounded() {
        assert_eq!(lrs_around(5e-4), [1.7e-4, 5e-4, 1.5e-3]);
        assert_eq!(lrs_around(3e-3), [1e-3, 3e-3, 9e-3]);
    }

    #[test]
    fn the_best_point_is_the_first_largest_mean() {
        assert_eq!(best_index(&[0.5, 0.7, 0.7, 0.1]), 1);
        assert_eq!(best_index(&[f64::NAN, 0.2]), 1);
        let (m, s) = mean_std(&[1.0, 3.0]);
        assert_eq!(m, 2.0);
        assert!((s - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(mean_std(&[0.4]), (0.4, 0.0));
    }

    #[test]
    fn settings_read_back_what_was_written() {
        let mut s = Settings::default();
        let setting = Setting {
            lr: 1.0 / 3.0 * 1e-3,
            metric: "rouge_l".into(),
            steps: 120,
            batch_size: 16,
            max_eval_examples: 200,
            seeds: vec![42, 43],
            command: r#"tunelab sweep --compare-entry "lora r=8 q,v" \ x"#.into(),
            grid: vec![GridScore {
                lr: 1e-3,
                mean: 0.5,
                std: f64::NAN,
                scores: vec![0.25, 0.75],
            }],
        };
        s.tasks
            .entry("dialogue".into())
            .or_default()
            .insert("lora r=8 q,v".into(), setting.clone());
        let back = Settings::parse(&s.to_toml(), "test").unwrap();
        let got = back.get(Task::Dialogue, "lora r=8 q,v").unwrap();
        assert_eq!(got.lr, setting.lr);
        assert_eq!(got.command, setting.command);
        assert!(got.grid[0].std.is_nan());
        assert_eq!(got.grid[0].scores, [0.25, 0.75]);
        let misnamed = s.to_toml().replace("\"dialogue\"", "\"nosuchtask\"");
        assert!(Settings::parse(&misnamed, "f.toml")
            .unwrap_err()
            .to_string()
            .contains("f.toml: [nosuchtask] is not a task"));
    }

    #[test]
    fn the_compiled_settings_parse() {
        Settings::compiled().unwrap();
    }
}
