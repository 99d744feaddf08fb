//! The lab's teaching commands: `interview`, `pitfall`, `exercises`, `gradcheck`, `estimate`.

use super::progress::LabLines;
use super::Outcome;
use clap::{Args, Subcommand};
use std::process::ExitCode;
use tunelab::lab::evidence::{report, Judgement, Mode, DEFAULT_SEEDS};
use tunelab::lab::interview::Lang;

/// The measured evidence with each claim's verdict over the seeds, then the mode and the time.
fn print_evidence(evidence: &dyn Judgement, mode: Mode, started: std::time::Instant) {
    print!("{}", report(evidence));
    println!(
        "\n({} mode, {:.1} s)",
        mode.name(),
        started.elapsed().as_secs_f64()
    );
}

#[derive(Args, Debug)]
pub struct InterviewArgs {
    /// The question's number (omit to list them).
    pub n: Option<usize>,
    /// Small budgets (seconds instead of about a minute), as the tests use.
    #[arg(long)]
    pub quick: bool,
    /// Seeds to judge each claim on (42, 43, ...): at least 3 to tell a result from one run's
    /// luck. Experiments that train nothing run once whatever this says.
    #[arg(long, default_value_t = DEFAULT_SEEDS, value_parser = seeds_at_least_one)]
    pub seeds: usize,
    /// The language of the question and the answer: en (English) or vi (Vietnamese, tiếng
    /// Việt). Only they are translated: the experiment's tables and claims stay English.
    #[arg(long, default_value = "en", value_parser = language)]
    pub lang: Lang,
    /// Print only the question and its answer, without running the experiment.
    #[arg(long, requires = "n")]
    pub answer_only: bool,
}

/// `--lang en|vi`.
fn language(s: &str) -> Result<Lang, String> {
    Lang::parse(s).map_err(|_| format!("choose {} (got {s:?})", Lang::CHOICES))
}

/// `--seeds N` with N ≥ 1.
fn seeds_at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!(
            "--seeds takes a whole number of seeds, 1 or more (got {s:?})"
        )),
    }
}

/// Lists the questions, or answers one and runs its experiment.
pub fn interview(a: InterviewArgs) -> Outcome {
    use tunelab::lab::interview;
    let Some(n) = a.n else {
        match a.lang {
            Lang::En => println!("interview questions (answer one with `tunelab interview N`, add --quick for small budgets):"),
            Lang::Vi => println!("câu hỏi phỏng vấn (trả lời một câu bằng `tunelab interview N --lang vi`, thêm --quick để chạy với ngân sách nhỏ):"),
        }
        for q in interview::QUESTIONS {
            let (question, _) = interview::text(q.number, a.lang)?;
            println!("  {:>2}. {}", q.number, question);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let q = interview::question(n)?;
    let (question, answer) = interview::text(n, a.lang)?;
    println!("{}. {}\n", q.number, question);
    println!("{answer}");
    if a.answer_only {
        return Ok(ExitCode::SUCCESS);
    }
    println!();
    if a.lang == Lang::Vi {
        println!("(thí nghiệm bên dưới: bảng và kết luận in bằng tiếng Anh)\n");
    }
    let mode = if a.quick { Mode::Quick } else { Mode::Full };
    println!("evidence: {}\n", q.experiment);
    let started = std::time::Instant::now();
    let evidence = interview::run(n, mode, a.seeds, &mut LabLines(started))?;
    print_evidence(evidence.as_ref(), mode, started);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct PitfallArgs {
    /// The pitfall to run (omit to list them).
    pub name: Option<String>,
    /// Small budgets (seconds instead of about a minute), as the tests use.
    #[arg(long)]
    pub quick: bool,
    /// Seeds to judge each claim on (42, 43, ...): at least 3 to tell a result from one run's
    /// luck. The padding pitfall trains nothing and runs once.
    #[arg(long, default_value_t = DEFAULT_SEEDS, value_parser = seeds_at_least_one)]
    pub seeds: usize,
}

/// Lists the pitfalls, or runs one and its fix.
pub fn pitfall(a: PitfallArgs) -> Outcome {
    use tunelab::lab::pitfall;
    let Some(name) = a.name.as_deref() else {
        println!(
            "pitfalls (run one with `tunelab pitfall <name>`, add --quick for small budgets):"
        );
        for p in pitfall::PITFALLS {
            println!("  {:<14} {}", p.name, p.summary);
        }
        return Ok(ExitCode::SUCCESS);
    };
    let mode = if a.quick { Mode::Quick } else { Mode::Full };
    let started = std::time::Instant::now();
    let evidence = pitfall::run(name, mode, a.seeds, &mut LabLines(started))?;
    let p = pitfall::PITFALLS
        .iter()
        .find(|p| p.name == name)
        .expect("run accepted the name");
    println!("pitfall {name}: {}\n", p.summary);
    print_evidence(evidence.as_ref(), mode, started);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExercisesArgs {
    #[command(subcommand)]
    pub action: Option<ExercisesAction>,
    /// Grade the reference solutions (solutions/) instead of the exercises.
    #[arg(long, global = true)]
    pub solutions: bool,
    /// Print the progress as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum ExercisesAction {
    /// Grade every exercise, show each failing check, and print the score.
    Verify,
    /// Print a hint of exercise N (its number or its name): the first of three tiers (a nudge,
    /// the idea, the formula) unless --tier or --all says otherwise.
    Hint {
        n: String,
        /// Which tier, 1 to 3.
        #[arg(long, default_value_t = 1)]
        tier: usize,
        /// All three tiers.
        #[arg(long)]
        all: bool,
    },
}

/// Shows the progress, grades everything (`verify`), or prints a hint.
pub fn exercises(a: ExercisesArgs) -> Outcome {
    use tunelab::lab::exercises;
    let (action, solutions, json) = (a.action, a.solutions, a.json);
    let root = exercises::find_root()?;
    if let Some(ExercisesAction::Hint { n, tier, all }) = action {
        let list = exercises::load(&root)?;
        let (i, e) = exercises::find(&list, &n)?;
        print!("{}", exercises::hint(i, e, (!all).then_some(tier))?);
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("grading (cargo test on exercises/Cargo.toml) ...");
    let grades = exercises::grade(&root, solutions)?;
    let all = grades.iter().all(|g| g.passed);
    match action {
        Some(ExercisesAction::Verify) => print!("{}", exercises::report(&grades)),
        _ if json => println!(
            "{}",
            serde_json::to_string_pretty(&grades).expect("grades serialise")
        ),
        _ => print!("{}", exercises::progress(&grades)),
    }
    Ok(if all || action.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Args, Debug)]
pub struct GradcheckArgs {
    /// Only the cases of this op (matmul, attention, layer_norm, ...).
    #[arg(long)]
    pub op: Option<String>,
}

/// Prints one row per case; fails when a case is above tolerance or the op has none.
pub fn gradcheck(a: GradcheckArgs) -> Outcome {
    use tunelab::lab::gradcheck;
    let results = gradcheck::run(a.op.as_deref())?;
    if results.is_empty() {
        return Err(tunelab::Error::Invalid {
            op: "gradcheck",
            detail: format!("no gradient check for op {:?}", a.op.unwrap_or_default()),
        });
    }
    print!("{}", gradcheck::table(&results));
    Ok(if results.iter().all(|r| r.passed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(Args, Debug)]
pub struct EstimateArgs {
    /// A named size (125M, 350M, 1.3B, 7B, 13B, 65B, 70B, 175B) or a parameter count (2.7B).
    pub size: String,
    /// Batch size B for the activation memory.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Sequence length T for the activation memory.
    #[arg(long, default_value_t = 512)]
    pub seq: usize,
    /// LoRA rank for the LoRA row.
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// LoRA targets for the LoRA row (q,v / attn / all).
    #[arg(long, default_value = "q,v")]
    pub targets: String,
    /// Data-parallel GPUs: with --zero-stage, adds each method's model states per GPU.
    #[arg(long, value_name = "N")]
    pub gpus: Option<usize>,
    /// ZeRO stage (Rajbhandari et al. 2020): 0 data parallel, 1 shards the optimizer states,
    /// 2 the gradients too, 3 the parameters too (FSDP full shard). Default with --gpus: 0.
    #[arg(long, value_name = "S")]
    pub zero_stage: Option<u8>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Prints the estimate as a table or JSON.
pub fn estimate(a: EstimateArgs) -> Outcome {
    use tunelab::lab::estimate;
    super::args::in_range("--batch", a.batch, 1, 1 << 20)?;
    super::args::in_range("--seq", a.seq, 1, 1 << 24)?;
    super::args::in_range("--r", a.r, 1, 1 << 20)?;
    let mut args = estimate::EstimateArgs::new(a.size);
    args.batch = a.batch;
    args.seq = a.seq;
    args.lora.r = a.r;
    args.lora.targets = estimate::Module::parse_list(&a.targets)?;
    if a.gpus.is_some() || a.zero_stage.is_some() {
        args.zero = Some(estimate::Zero::new(
            a.gpus.unwrap_or(1),
            a.zero_stage.unwrap_or(0),
        )?);
    }
    let report = estimate::estimate(&args)?;
    if a.json {
        let json = serde_json::to_string_pretty(&estimate::to_json(&report)).expect("json");
        println!("{json}");
    } else {
        println!("{}", estimate::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}
