//! `tunelab merge` (merging adapters, folding one into its base, the merge comparison),
//! `tunelab serve-bench` (serving many adapters) and `tunelab neftune` (LoRA with and without
//! NEFTune over seeds).

use super::args::in_range;
use super::Outcome;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunelab::data::tasks::Task;
use tunelab::lab::merge::{self, Combination, Input, MajoritySign, MergeOptions};
use tunelab::lab::{finetune, merge_compare, neftune, serving};
use tunelab::Error;

pub const MERGE_ABOUT: &str =
    "Merge adapters trained on one base into one, as PEFT's add_weighted_adapter does.

Three modes:
  tunelab merge --adapter A --adapter B [--combination ties_svd --density 0.5 ...] --output DIR
      merges LoRA adapters (or full fine-tunes, as deltas from the base) into DIR. Task heads
      (classification, NER, QA) are not merged: DIR holds the merged weights only, and
      DIR/<task>/ holds them with that task's own head, for `tunelab eval --task <task>`.
  tunelab merge --into-base --adapter A --output DIR
      folds one LoRA, DoRA, IA3, full or BitFit adapter into the base weights and writes a
      Hugging Face model directory, usable as --base DIR.
  tunelab merge --compare [--tasks sentiment,ner,qa --seeds 3]
      trains one LoRA per task and scores every task with its own adapter, through an
      AdapterSet, and with merged adapters (task arithmetic, TIES, DARE-TIES ...).";

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// An adapter directory (tunelab's or PEFT's LoRA); repeat for each adapter to merge.
    #[arg(long = "adapter", value_name = "DIR")]
    pub adapters: Vec<PathBuf>,
    /// One weight per adapter, comma-separated (may be negative) [default: 1 each].
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    pub weights: Vec<f64>,
    /// PEFT's combination_type: linear, ties, dare_linear, dare_ties and magnitude_prune merge
    /// the A's and the B's separately (equal ranks); cat stacks them (exact, rank Σ r); svd and
    /// the *_svd types merge the full updates s·B·A and re-factor them to --svd-rank. Full
    /// fine-tunes take linear (task arithmetic), ties, dare_linear, dare_ties, magnitude_prune.
    #[arg(long, value_enum, default_value = "svd")]
    pub combination: Combination,
    /// Fraction of entries kept by ties, dare_* and magnitude_prune, in (0, 1].
    #[arg(long)]
    pub density: Option<f64>,
    /// How TIES and DARE-TIES elect each entry's sign: total (the sign of the sum) or
    /// frequency (the sign most adapters have).
    #[arg(long, value_enum, default_value = "total")]
    pub majority_sign_method: MajoritySign,
    /// The merged rank of the *_svd types [default: the largest input rank].
    #[arg(long)]
    pub svd_rank: Option<usize>,
    /// Clamp the SVD factors' entries at this quantile of their values (PEFT's svd_clamp).
    #[arg(long)]
    pub svd_clamp: Option<f64>,
    /// Seed of DARE's random drop [default: 0]; with --compare, the first training seed
    /// [default: 42] (each run's merges then drop with that run's seed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// The output directory (merged adapter, or with --into-base a model directory).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// The base model (a shipped name or a model directory) [default: the one the adapters
    /// record; gpt-tiny with --compare]. Needed to merge full fine-tunes and by --into-base.
    #[arg(long)]
    pub base: Option<String>,
    /// Replace an existing --output directory as a whole.
    #[arg(long)]
    pub force: bool,
    /// Fold the one --adapter into the base weights and write a Hugging Face model directory
    /// (config.json, model.safetensors, tokenizer) to --output, loadable as --base.
    #[arg(long, conflicts_with = "compare")]
    pub into_base: bool,
    /// Train one LoRA per task and compare each task's test score with its own adapter,
    /// switched in an AdapterSet, and with merged adapters, over seeds.
    #[arg(long)]
    pub compare: bool,
    /// With --compare: the tasks, comma-separated (their heads must have different names on
    /// the base: on gpt-tiny sentiment, ner and qa do) [default: sentiment,ner,qa].
    #[arg(long, value_enum, value_delimiter = ',', ignore_case = true)]
    pub tasks: Vec<Task>,
    /// With --compare: runs per task, each with its own seed [default: 3].
    #[arg(long)]
    pub seeds: Option<usize>,
    /// With --compare: optimizer steps of each LoRA [default: 150].
    #[arg(long)]
    pub steps: Option<usize>,
    /// With --compare: sequences per batch [default: 16].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// With --compare: test examples scored per task (0: all) [default: 150].
    #[arg(long)]
    pub max_eval_examples: Option<usize>,
    /// With --compare: print everything measured as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn bad(op: &'static str, detail: impl Into<String>) -> Error {
    Error::Invalid {
        op,
        detail: detail.into(),
    }
}

/// Refuses to replace a non-empty `out` without --force.
fn check_output(out: &Path, force: bool) -> tunelab::Result<()> {
    if tunelab::io::is_nonempty_dir(out) && !force {
        return Err(bad(
            "--output",
            format!(
                "{} already exists: pass --force to replace it, or another --output",
                out.display()
            ),
        ));
    }
    Ok(())
}

/// The base the first adapter that records one was trained on.
fn recorded_base(adapters: &[PathBuf]) -> Option<String> {
    adapters.iter().find_map(|d| {
        let (_, meta) = tunelab::io::adapter::read_config(d).ok()?;
        meta.get("base_name")
            .or_else(|| meta.get("base"))
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    })
}

pub fn run(a: MergeArgs) -> Outcome {
    if a.compare {
        return compare(a);
    }
    let out = a
        .output
        .clone()
        .ok_or_else(|| bad("--output", "where to write the result: pass --output DIR"))?;
    check_output(&out, a.force)?;
    if a.into_base {
        let [adapter] = a.adapters.as_slice() else {
            return Err(bad(
                "--adapter",
                format!(
                    "--into-base folds exactly one adapter, {} given",
                    a.adapters.len()
                ),
            ));
        };
        let base = a
            .base
            .clone()
            .or_else(|| recorded_base(&a.adapters))
            .ok_or_else(|| {
                bad(
                    "--base",
                    format!("{} records no base: pass --base", adapter.display()),
                )
            })?;
        let done = merge::into_base(&base, adapter, &out)?;
        println!(
            "folded the {} adapter {} into {base}: {} tensors written to {} (use it as --base {})",
            done.method,
            adapter.display(),
            done.tensors,
            out.display(),
            out.display()
        );
        if !done.dropped_heads.is_empty() {
            println!(
                "note: the adapter's task head ({}) is not part of a base model and was left out; the adapter directory keeps it",
                done.dropped_heads.join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.adapters.is_empty() {
        return Err(bad(
            "--adapter",
            "no adapters to merge: repeat --adapter DIR",
        ));
    }
    let inputs: Vec<Input> = a
        .adapters
        .iter()
        .map(|d| {
            Ok(Input {
                label: d.display().to_string(),
                files: tunelab::io::adapter::read::<f32>(d)?,
            })
        })
        .collect::<tunelab::Result<_>>()?;
    let opts = MergeOptions {
        combination: a.combination,
        weights: if a.weights.is_empty() {
            vec![1.0; inputs.len()]
        } else {
            a.weights.clone()
        },
        density: a.density,
        majority_sign_method: a.majority_sign_method,
        svd_rank: a.svd_rank,
        svd_clamp: a.svd_clamp,
        seed: a.seed.unwrap_or(0),
    };
    let base_name = a.base.clone().or_else(|| recorded_base(&a.adapters));
    let base = match (&inputs[0].files.spec, &base_name) {
        (tunelab::peft::MethodSpec::Full { .. }, Some(b)) => Some(finetune::load_base(b)?),
        (tunelab::peft::MethodSpec::Full { .. }, None) => {
            return Err(bad(
                "--base",
                "full fine-tunes merge as deltas from their base: pass --base",
            ))
        }
        _ => None,
    };
    let merged = merge::merge(&inputs, &opts, base.as_ref().map(|b| &b.store))?;
    let first = &inputs[0].files.meta;
    let mut meta = serde_json::json!({
        "merged_from": a.adapters.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
        "tasks": inputs.iter().map(|i| i.task()).collect::<Vec<_>>(),
        "merge": opts,
    });
    for key in ["base", "base_name", "base_config"] {
        if let Some(v) = first.get(key) {
            meta[key] = v.clone();
        }
    }
    let views = |t: &[(String, ndarray::ArrayD<f32>)]| -> Vec<(String, ndarray::ArrayD<f32>)> {
        t.to_vec()
    };
    write(&out, &merged.spec, meta.clone(), &views(&merged.tensors))?;
    println!(
        "merged {} {} adapters with {} into {} ({})",
        inputs.len(),
        inputs[0].files.spec.name(),
        merged.combination.name(),
        out.display(),
        describe(&merged.spec)
    );
    let mut used = std::collections::HashSet::new();
    for h in &merged.heads {
        let mut name = h
            .task
            .clone()
            .unwrap_or_else(|| format!("input-{}", h.input));
        if !used.insert(name.clone()) {
            name = format!("{name}-{}", h.input);
            used.insert(name.clone());
        }
        let dir = out.join(&name);
        let mut m = meta.clone();
        if let Some(t) = &h.task {
            m["task"] = t.clone().into();
        }
        m["head_from"] = a.adapters[h.input].display().to_string().into();
        write(&dir, &merged.spec, m, &merged.with_head(Some(h)))?;
        println!(
            "  with the head of {} ({}): {}",
            a.adapters[h.input].display(),
            h.task.as_deref().unwrap_or("no task recorded"),
            dir.display()
        );
    }
    for n in &merged.notes {
        println!("note: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(spec: &tunelab::peft::MethodSpec) -> String {
    match spec {
        tunelab::peft::MethodSpec::Lora(c) => {
            format!(
                "LoRA r={} alpha={} on {}",
                c.r,
                c.alpha,
                c.targets.join(",")
            )
        }
        other => format!("{} weights", other.name()),
    }
}

fn write(
    dir: &Path,
    spec: &tunelab::peft::MethodSpec,
    meta: serde_json::Value,
    tensors: &[(String, ndarray::ArrayD<f32>)],
) -> tunelab::Result<()> {
    let views: Vec<(&str, ndarray::ArrayViewD<'_, f32>)> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.view()))
        .collect();
    tunelab::io::adapter::write(dir, spec, false, meta, &views)
}

fn compare(a: MergeArgs) -> Outcome {
    let mut opts = merge_compare::MergeCompareOptions::new(a.base.as_deref().unwrap_or("gpt-tiny"));
    if !a.tasks.is_empty() {
        opts.tasks = a.tasks.clone();
    }
    opts.seeds = a.seeds.unwrap_or(opts.seeds);
    opts.steps = a.steps.unwrap_or(opts.steps);
    opts.batch_size = a.batch_size.unwrap_or(opts.batch_size);
    opts.max_eval_examples = a.max_eval_examples.unwrap_or(opts.max_eval_examples);
    opts.seed = a.seed.unwrap_or(opts.seed);
    in_range("--seeds", opts.seeds, 1, 1000)?;
    in_range("--steps", opts.steps, 1, tunelab::train::args::MAX_STEPS)?;
    in_range(
        "--batch-size",
        opts.batch_size,
        1,
        tunelab::train::args::MAX_BATCH_SIZE,
    )?;
    let density = a.density.unwrap_or(0.5);
    merge::check_density(Some(density), "--compare")?;
    opts.merges = merge_compare::default_merges(opts.tasks.len(), opts.lora.r, density);
    let report = merge_compare::run(&opts, &mut |line| eprintln!("{line}"))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON serialises")
        );
    } else {
        print!("{}", merge_compare::table(&opts, &report));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ServeBenchArgs {
    /// A shipped decoder (gpt-tiny) or a GPT-2 model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    /// The numbers of adapters to serve, comma-separated: one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub adapters: Vec<usize>,
    /// Requests per row, each for a random adapter, served one at a time.
    #[arg(long, default_value_t = 64)]
    pub requests: usize,
    /// Tokens per request.
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// The adapters' LoRA rank.
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// The adapters' LoRA targets (q, k, v, o, fc, proj, attn, mlp, all).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub targets: Vec<String>,
    /// Seed of the random adapters and of the requests.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the rows as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Measures and prints serving N adapters both ways.
pub fn serve_bench(a: ServeBenchArgs) -> Outcome {
    for &n in &a.adapters {
        in_range("--adapters", n, 1, 1024)?;
    }
    in_range("--requests", a.requests, 1, 1 << 20)?;
    in_range("--r", a.r, 1, 4096)?;
    let mut lora = tunelab::peft::lora::compare_config();
    lora.r = a.r;
    lora.alpha = 4.0 * a.r as f64;
    lora.targets = tunelab::peft::lora::parse_targets(&a.targets.join(","))?
        .iter()
        .map(|t| t.name().to_string())
        .collect();
    let opts = serving::ServingOptions {
        base: a.base,
        counts: a.adapters,
        requests: a.requests,
        tokens: a.tokens,
        lora,
        seed: a.seed,
    };
    let rows = serving::serve(&opts, &mut |line| eprintln!("{line}"))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("JSON serialises")
        );
    } else {
        print!("{}", serving::table(&opts, &rows));
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct NeftuneArgs {
    /// A shipped base or a model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    /// The task (NEFTune is meant for instruction and dialogue tuning).
    #[arg(long, value_enum, ignore_case = true, default_value = "dialogue")]
    pub task: Task,
    /// NEFTune's alpha (Hugging Face's neftune_noise_alpha).
    #[arg(long, default_value_t = 5.0)]
    pub alpha: f64,
    /// Optimizer steps of each run.
    #[arg(long, default_value_t = 150)]
    pub steps: usize,
    /// Sequences per batch.
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Learning rate of the LoRA runs.
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// The first seed; run k uses seed + k in both arms.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Runs per arm.
    #[arg(long, default_value_t = 3)]
    pub seeds: usize,
    /// Test examples scored (0: all).
    #[arg(long, default_value_t = 150)]
    pub max_eval_examples: usize,
    /// Print everything measured as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// LoRA with and without NEFTune over seeds.
pub fn neftune(a: NeftuneArgs) -> Outcome {
    in_range("--seeds", a.seeds, 1, 1000)?;
    in_range("--steps", a.steps, 1, tunelab::train::args::MAX_STEPS)?;
    in_range(
        "--batch-size",
        a.batch_size,
        1,
        tunelab::train::args::MAX_BATCH_SIZE,
    )?;
    if !(a.alpha.is_finite() && a.alpha > 0.0) {
        return super::args::bad_option(
            "--alpha",
            format!("must be a finite number above 0, got {}", a.alpha),
        );
    }
    if !(a.lr.is_finite() && a.lr > 0.0) {
        return super::args::bad_option(
            "--lr",
            format!("must be a finite number above 0, got {}", a.lr),
        );
    }
    let opts = neftune::NeftuneOptions {
        base: a.base,
        task: a.task,
        alpha: a.alpha,
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        seeds: a.seeds,
        max_eval_examples: a.max_eval_examples,
        ..Default::default()
    };
    let report = neftune::run(&opts, &mut |line| eprintln!("{line}"))?;
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("JSON serialises")
        );
    } else {
        print!("{}", neftune::table(&opts, &report));
    }
    Ok(ExitCode::SUCCESS)
}
