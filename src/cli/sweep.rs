//! `tunelab sweep`: one method over a grid of learning rates and options, with seeds, scored on
//! validation only; optionally writes compare's settings file.

use super::args::{check_writable_dir, check_writable_file, in_range, SpeedArgs};
use super::finetune::DataArgs;
use super::Outcome;

/// An invalid-option error of `sweep`.
fn invalid<T>(op: &'static str, detail: &str) -> tunelab::Result<T> {
    Err(tunelab::Error::Invalid {
        op,
        detail: detail.to_string(),
    })
}
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::tasks::Task;
use tunelab::data::tokenizer::Tokenizer;
use tunelab::lab::compare::{self, Entry};
use tunelab::lab::finetune;
use tunelab::lab::sweep::{self, Axis, Point, Settings, SweepOptions, SweepReport};
use tunelab::train::progress::{LogEntry, Progress};

/// `sweep --help`'s description.
pub const ABOUT: &str = "\
Train one method over a grid of learning rates and method options, with several seeds, score \
every run on the validation split (never on test), and pick the point with the best mean \
validation score.

Every comma list is one grid axis and the grid is every combination: `--lr 1e-3,3e-3,1e-2 \
--r 4,8,16 --seeds 2` is 9 points and 18 training runs. Options mean what they mean for \
`tunelab finetune` (the same parser builds each point's method). Runs train side by side, one \
per core, at compare's budget unless --steps/--batch-size say otherwise.

With --compare-entry LABEL (or --all), the sweep is of one of compare's rows (its method and \
options as `tunelab compare` runs them) over the learning rate only, by default the registry's \
rate divided by 3, itself and times 3; --write-settings records the chosen rate, with the whole \
grid's scores, the budget, the seeds and the command, in compare's settings file \
(configs/compare.toml), which `tunelab compare` reads once the binary is rebuilt.

Examples:
  tunelab sweep --task sentiment --method lora --lr 1e-3,3e-3,1e-2 --r 4,8,16 --seeds 2
  tunelab sweep --task sentiment --method lora --lr 9e-3 --targets 'q,v;q,k,v,o;all' --plot t.svg
  tunelab sweep --task dialogue --compare-entry 'lora r=8 q,v' --write-settings configs/compare.toml
  tunelab sweep --task ner --all --write-settings configs/compare.toml";

#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The task (its built-in data unless --data or --train-file is given).
    #[arg(long, value_enum, ignore_case = true, default_value = "sentiment")]
    pub task: Task,
    /// A shipped base (gpt-tiny, bert-tiny) or a model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    /// The method to sweep (as finetune's --method); ignored with --compare-entry or --all.
    #[arg(long, default_value = "lora")]
    pub method: String,
    /// Sweep this row of `tunelab compare` (its label, e.g. 'lora r=8 q,v'; repeat the flag
    /// for several) over the learning rate, with its method and options as compare runs it.
    #[arg(long)]
    pub compare_entry: Vec<String>,
    /// Sweep every row of `tunelab compare`, one after another, over the learning rate.
    #[arg(long, conflicts_with = "compare_entry")]
    pub all: bool,
    /// Peak learning rates, comma-separated [default: the registry's compare rate of the method
    /// (or entry) / 3, x 1 and x 3].
    #[arg(long, value_delimiter = ',')]
    pub lr: Vec<f64>,
    /// lora/dora: ranks r to try, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub r: Vec<String>,
    /// lora/dora: alphas to try.
    #[arg(long, value_delimiter = ',')]
    pub alpha: Vec<String>,
    /// lora/dora: dropouts on the low-rank path to try.
    #[arg(long, value_delimiter = ',')]
    pub lora_dropout: Vec<String>,
    /// lora/dora: LoRA+ ratios of B's learning rate to A's to try.
    #[arg(long, value_delimiter = ',')]
    pub lora_plus_ratio: Vec<String>,
    /// houlsby/pfeiffer: bottleneck widths to try.
    #[arg(long, value_delimiter = ',')]
    pub bottleneck: Vec<String>,
    /// prefix/prompt: numbers of virtual tokens to try.
    #[arg(long, value_delimiter = ',')]
    pub n_virtual: Vec<String>,
    /// prefix: hidden widths of the reparameterization MLP to try.
    #[arg(long, value_delimiter = ',')]
    pub prefix_hidden: Vec<String>,
    /// full: numbers of trained last blocks to try.
    #[arg(long, value_delimiter = ',')]
    pub last_k: Vec<String>,
    /// lora/dora: target Linears as finetune's --targets; several sets separated by `;` are a
    /// grid axis (`--targets 'q,v;q,k,v,o;all'`).
    #[arg(long, value_delimiter = ';')]
    pub targets: Vec<String>,
    /// lora/dora: rsLoRA scaling at every point.
    #[arg(long)]
    pub rslora: bool,
    /// prefix: no reparameterization MLP at every point.
    #[arg(long)]
    pub no_reparam: bool,
    /// prompt: initialise the soft prompt from these words at every point.
    #[arg(long)]
    pub prompt_init_text: Option<String>,
    /// Runs per grid point, with seeds --seed, --seed + 1, ...
    #[arg(long, default_value_t = 2)]
    pub seeds: usize,
    /// The first seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Optimizer steps per run [default: compare's, 120].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Sequences per batch [default: compare's, 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Score on at most this many validation examples [default: compare's, 200].
    #[arg(long)]
    pub max_eval_examples: Option<usize>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where each run writes its log (<dir>/<point>-seed<seed>).
    #[arg(long, default_value = "runs/sweep")]
    pub out_dir: PathBuf,
    /// Record each swept compare entry's chosen rate in this settings file (compare's is
    /// configs/compare.toml), updating that entry in place. Needs --compare-entry or --all.
    #[arg(long)]
    pub write_settings: Option<PathBuf>,
    /// Also write the sweeps (every point's scores per seed, the best) as JSON into this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
    /// Draw the sweep as an SVG chart into this file: validation score against the swept
    /// option with the most values (the learning rate if none varies more), the mean over seeds
    /// with its 95% interval, one line per value of the other options. One sweep only.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

/// One bar over the runs, with the running one's step and loss; a line per finished run.
struct SweepBar {
    bar: ProgressBar,
}

impl SweepBar {
    fn new(runs: usize) -> Self {
        let bar = ProgressBar::new(runs as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} runs [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        Self { bar }
    }
}

impl Progress for SweepBar {
    fn step(&mut self, label: &str, e: &LogEntry) {
        self.bar.set_message(format!(
            "{label} step {} loss {:.4}",
            e.step,
            e.loss.unwrap_or(f64::NAN)
        ));
    }
    fn line(&mut self, text: &str) {
        self.bar.inc(1);
        if self.bar.is_hidden() {
            eprintln!("{text}");
        } else {
            self.bar.println(text);
        }
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Quotes `s` for a POSIX shell when it needs it.
fn sh(s: &str) -> String {
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=,+".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

impl SweepArgs {
    fn axes(&self) -> Vec<Axis> {
        [
            ("r", &self.r),
            ("alpha", &self.alpha),
            ("lora-dropout", &self.lora_dropout),
            ("lora-plus-ratio", &self.lora_plus_ratio),
            ("bottleneck", &self.bottleneck),
            ("n-virtual", &self.n_virtual),
            ("prefix-hidden", &self.prefix_hidden),
            ("last-k", &self.last_k),
            ("targets", &self.targets),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(flag, v)| Axis {
            flag: flag.to_string(),
            values: v.clone(),
        })
        .collect()
    }

    /// The options fixed over the grid, as finetune's arguments.
    fn fixed(&self) -> Vec<String> {
        let mut f = Vec::new();
        if self.rslora {
            f.push("--rslora".into());
        }
        if self.no_reparam {
            f.push("--no-reparam".into());
        }
        if let Some(t) = &self.prompt_init_text {
            f.extend(["--prompt-init-text".to_string(), t.clone()]);
        }
        f
    }

    fn options(&self) -> tunelab::Result<SweepOptions> {
        let mut o = SweepOptions::new(&self.base, self.task);
        o.data = self.data.files();
        o.steps = self.steps.unwrap_or(o.steps);
        o.batch_size = self.batch_size.unwrap_or(o.batch_size);
        o.max_eval_examples = self.max_eval_examples.unwrap_or(o.max_eval_examples);
        o.train_limit = self.train_limit;
        use tunelab::train::args::{MAX_BATCH_SIZE, MAX_STEPS};
        in_range("--seeds", self.seeds, 1, 1000)?;
        in_range("--steps", o.steps, 1, MAX_STEPS)?;
        in_range("--batch-size", o.batch_size, 1, MAX_BATCH_SIZE)?;
        if let Some(n) = o.train_limit {
            in_range("--train-limit", n, 1, usize::MAX)?;
        }
        if let Some(lr) = self.lr.iter().find(|l| !(l.is_finite() && **l > 0.0)) {
            return invalid(
                "--lr",
                &format!("every learning rate must be a finite number above 0, got {lr}"),
            );
        }
        o.seeds = (0..self.seeds as u64).map(|i| self.seed + i).collect();
        o.out_dir = self.out_dir.clone();
        Ok(o)
    }

    /// The command that reruns the sweep of compare entry `label` with these rates.
    fn entry_command(&self, o: &SweepOptions, label: &str, lrs: &[f64], path: &str) -> String {
        let lrs: Vec<String> = lrs.iter().map(|l| format!("{l:e}")).collect();
        let mut c = format!(
            "tunelab sweep --task {} --base {} --compare-entry {} --lr {} --seeds {} --seed {} --steps {} --batch-size {} --max-eval-examples {}",
            self.task.name(),
            sh(&self.base),
            sh(label),
            lrs.join(","),
            o.seeds.len(),
            self.seed,
            o.steps,
            o.batch_size,
            o.max_eval_examples
        );
        if let Some(n) = o.train_limit {
            c.push_str(&format!(" --train-limit {n}"));
        }
        c.push_str(&format!(" --write-settings {}", sh(path)));
        c
    }
}

/// The sweeps asked for: (label, points) each.
fn plan(
    a: &SweepArgs,
    registry: &[Entry],
    tok: Option<&Tokenizer>,
) -> tunelab::Result<Vec<(String, Vec<Point>)>> {
    let entry_mode = a.all || !a.compare_entry.is_empty();
    if !entry_mode {
        if a.write_settings.is_some() {
            return invalid(
                "sweep",
                "--write-settings records compare entries: pass --compare-entry LABEL or --all",
            );
        }
        let lrs = if a.lr.is_empty() {
            let lr = registry
                .iter()
                .find(|e| e.spec.name() == a.method)
                .map_or(1e-3, |e| e.lr);
            sweep::lrs_around(lr)
        } else {
            a.lr.clone()
        };
        let points = sweep::grid(&a.method, &lrs, &a.axes(), &a.fixed(), tok)?;
        return Ok(vec![(a.method.clone(), points)]);
    }
    if !a.axes().is_empty() || !a.fixed().is_empty() {
        return invalid(
            "sweep",
            "--compare-entry and --all sweep the learning rate of compare's rows as compare runs \
             them; sweep other options with --method",
        );
    }
    if a.write_settings.is_some() && a.data.files().is_some() {
        return invalid(
            "sweep",
            "--write-settings records compare's built-in tasks; it cannot be used with --data or \
             --train-file",
        );
    }
    let chosen: Vec<&Entry> = if a.all {
        registry.iter().collect()
    } else {
        a.compare_entry
            .iter()
            .map(|label| {
                registry
                    .iter()
                    .find(|e| &e.label == label)
                    .ok_or_else(|| tunelab::Error::Invalid {
                        op: "--compare-entry",
                        detail: format!(
                            "no compare row is labelled {label:?}; the rows are: {}",
                            registry
                                .iter()
                                .map(|e| format!("{:?}", e.label))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    })
            })
            .collect::<tunelab::Result<_>>()?
    };
    Ok(chosen
        .into_iter()
        .map(|e| {
            let lrs = if a.lr.is_empty() {
                sweep::lrs_around(e.lr)
            } else {
                a.lr.clone()
            };
            let points = lrs
                .into_iter()
                .map(|lr| Point {
                    lr,
                    options: Default::default(),
                    spec: e.spec.clone(),
                    base_dtype: e.base_dtype,
                })
                .collect();
            (e.label.clone(), points)
        })
        .collect())
}

/// Runs the sweeps, prints a table per sweep and writes the files asked for.
pub fn run(a: SweepArgs) -> Outcome {
    a.speed.apply()?;
    let opts = a.options()?;
    // Where the results go is checked before anything trains.
    check_writable_dir("--out-dir", &opts.out_dir)?;
    if let Some(path) = &a.json_out {
        check_writable_file("--json-out", path)?;
    }
    if let Some(path) = &a.write_settings {
        check_writable_file("--write-settings", path)?;
    }
    if let Some(path) = &a.plot {
        check_writable_file("--plot", path)?;
    }
    for w in opts.data.as_ref().map(|f| f.warnings()).unwrap_or_default() {
        eprintln!("warning: {w}");
    }
    // compare's rows at the registry's rates: a sweep's grid is centred on them, not on an
    // earlier sweep's choice, so rerunning the recorded command gives the same grid.
    // A base that does not load is reported by the first run, with its path.
    let tok = finetune::load_base(&a.base).ok().map(|b| b.tok);
    let init = match &tok {
        Some(t) => compare::prompt_init(t)?,
        None => vec![],
    };
    let registry = compare::entries_with(a.task, init, &Settings::default());
    let sweeps = plan(&a, &registry, tok.as_ref())?;
    if a.plot.is_some() && sweeps.len() > 1 {
        return invalid(
            "--plot",
            &format!(
                "draws one sweep, and this command runs {} (one per compare entry); pass one \
                 --compare-entry or --method",
                sweeps.len()
            ),
        );
    }
    let runs: usize = sweeps.iter().map(|(_, p)| p.len() * opts.seeds.len()).sum();
    let mut bar = SweepBar::new(runs);
    let mut reports: Vec<SweepReport> = Vec::new();
    for (label, points) in &sweeps {
        let mut o = opts.clone();
        let slug: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        o.out_dir = opts.out_dir.join(opts.task.name()).join(slug);
        let report = sweep::sweep(&o, label, points, &mut bar)?;
        bar.bar.suspend(|| print!("{}", sweep::table(&report)));
        if let Some(path) = &a.write_settings {
            // Read, update one entry, write: the file may have changed since the last sweep.
            let mut settings = Settings::read(path)?;
            let lrs: Vec<f64> = points.iter().map(|p| p.lr).collect();
            let command = a.entry_command(&opts, label, &lrs, &path.display().to_string());
            settings.record(&report, label, &command);
            settings.write(path)?;
            bar.bar.suspend(|| {
                println!(
                    "wrote {} [{}.{:?}]: lr {:e}",
                    path.display(),
                    report.task,
                    label,
                    report.best().point.lr
                )
            });
        }
        if let Some(path) = &a.plot {
            tunelab::io::atomic_write(path, tunelab::lab::plot::sweep_chart(&report).as_bytes())?;
            bar.bar.suspend(|| println!("wrote {}", path.display()));
        }
        reports.push(report);
        if let Some(path) = &a.json_out {
            let json = serde_json::to_string_pretty(&reports).expect("reports serialise");
            tunelab::io::atomic_write(path, json.as_bytes())?;
        }
    }
    bar.finish();
    Ok(ExitCode::SUCCESS)
}
