//! The commands that use a trained model: `eval`, `generate`, `embed`, `logits`, `export-peft`.

use super::args::BaseDtypeArgs;
use super::{fmt_metrics, Outcome};
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tunelab::data::tasks::Task;
use tunelab::lab::{embed, finetune};
use tunelab::peft::Method;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A shipped base name (gpt-tiny, bert-tiny: always the model shipped with tunelab) or the
    /// path of a model directory (anything else; ./gpt-tiny for a directory of that name).
    #[arg(long, default_value = "gpt-tiny")]
    pub model: String,
    #[command(flatten)]
    pub dtype: BaseDtypeArgs,
    /// An adapter directory written by `finetune` (adapter_config.json + adapter_model.safetensors).
    /// One that records another task or base than this run's is refused (adapters from before
    /// the record was kept load unchecked).
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The task whose test split is scored.
    #[arg(long, value_enum, ignore_case = true, default_value = "sentiment")]
    pub task: Task,
    /// Evaluate on at most this many examples (0 = all).
    #[arg(long, default_value_t = 0)]
    pub max_eval_examples: usize,
    /// The seed the adapter was trained with (it fixes the task head's initial values).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// Scores the model (and adapter) on the task's test split.
pub fn eval(a: EvalArgs) -> Outcome {
    let task = a.task;
    let m = finetune::evaluate(
        &a.model,
        a.adapter.as_deref(),
        task,
        a.max_eval_examples,
        a.seed,
        a.dtype.dtype()?,
    )?;
    println!("test: {}", fmt_metrics(&m));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A shipped decoder name (gpt-tiny: always the shipped model) or the path of a GPT-2 model
    /// directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub model: String,
    #[command(flatten)]
    pub dtype: BaseDtypeArgs,
    /// An adapter directory applied to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Tokens to generate at most (generation also stops at the end-of-text token).
    #[arg(long, default_value_t = 40)]
    pub max_new_tokens: usize,
    /// Softmax temperature of sampling; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Prints the prompt and its continuation.
pub fn generate(a: GenerateArgs) -> Outcome {
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return super::args::bad_option(
            "--temperature",
            format!(
                "must be a finite number, 0 (greedy) or more, got {}",
                a.temperature
            ),
        );
    }
    if let Some(k) = a.top_k {
        super::args::in_range("--top-k", k, 1, usize::MAX)?;
    }
    super::args::in_range("--max-new-tokens", a.max_new_tokens, 1, 1 << 16)?;
    let opts = tunelab::nn::generate::GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_k: a.top_k,
        seed: a.seed,
        ..Default::default()
    };
    let text = finetune::generate_text(
        &a.model,
        a.adapter.as_deref(),
        &a.prompt,
        &opts,
        a.seed,
        a.dtype.dtype()?,
    )?;
    println!("{}{text}", a.prompt);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct EmbedArgs {
    /// A model directory (config.json, model.safetensors, tokenizer.json or vocab.txt) or a
    /// shipped model name.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub dtype: BaseDtypeArgs,
    /// An adapter directory (tunelab's, or PEFT's LoRA, LoHa, LoKr or VeRA) applied to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// How a text's hidden states become one vector.
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: embed::EmbedPooling,
    /// Scale each embedding to unit length.
    #[arg(long)]
    pub normalize: bool,
    /// The texts to embed.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

/// A base with an optional adapter (or no method), for inference commands.
fn load_with_adapter(
    model: &str,
    adapter: Option<&Path>,
    dtype: tunelab::nn::BaseDtype,
) -> tunelab::Result<(finetune::Base, Box<dyn Method<f32>>)> {
    let mut b = finetune::load_base(model)?;
    b.quantize(dtype)?;
    if let Some(n) = &b.notes {
        eprintln!("note: {n}");
    }
    if let Some(dir) = adapter {
        finetune::check_adapter(dir, None, &b, model, "--task")?;
    }
    let method = adapter_or_none(adapter, &b.model, &mut b.store)?;
    Ok((b, method))
}

/// The adapter in `dir` applied to the model, or no method at all.
fn adapter_or_none(
    dir: Option<&Path>,
    model: &tunelab::nn::Transformer,
    store: &mut tunelab::ParamStore<f32>,
) -> tunelab::Result<Box<dyn Method<f32>>> {
    Ok(match dir {
        Some(dir) => tunelab::peft::store::load_adapter(dir, model, store, 0)?.1,
        None => Box::new(tunelab::peft::full::Full { last_k: None }),
    })
}

/// Prints the embeddings as a JSON array of arrays.
pub fn embed(a: EmbedArgs) -> Outcome {
    let (b, method) = load_with_adapter(&a.model, a.adapter.as_deref(), a.dtype.dtype()?)?;
    let out = embed::embed(
        &b.model,
        &b.store,
        method.as_ref(),
        &b.tok,
        &a.texts,
        a.pooling,
        a.normalize,
    )?;
    println!("{}", serde_json::to_string(&out).expect("floats serialise"));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct LogitsArgs {
    /// A model directory (config.json and model.safetensors) or a shipped model name.
    #[arg(long)]
    pub model: String,
    #[command(flatten)]
    pub dtype: BaseDtypeArgs,
    /// An adapter directory (tunelab's, or PEFT's LoRA, LoHa, LoKr or VeRA) applied to the model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Comma-separated token ids, e.g. 464,2068,7586.
    #[arg(long, value_delimiter = ',', required = true)]
    pub ids: Vec<usize>,
}

/// Prints the last position's vocabulary logits as a JSON array.
pub fn logits(a: LogitsArgs) -> Outcome {
    // No tokenizer needed: the model directory alone.
    let dir = finetune::resolve_base(&a.model)?;
    let mut b = tunelab::io::hf::load::<f32>(&dir)?;
    // A BERT checkpoint without its masked-LM head has no meaningful logits.
    if let Some(name) = b.initialised.iter().find(|n| n.starts_with("cls.")) {
        return Err(tunelab::Error::Invalid {
            op: "logits",
            detail: format!(
                "{}: the checkpoint has no masked-LM head (tensor {name} is missing)",
                dir.display()
            ),
        });
    }
    if let Some(dir) = &a.adapter {
        let (_, meta) = tunelab::io::adapter::read_config(dir)?;
        tunelab::io::adapter::check_base(dir, &meta, &b.model.config, &a.model)?;
    }
    tunelab::nn::quantize::quantize_base(&b.model, &mut b.store, a.dtype.dtype()?)?;
    let method = adapter_or_none(a.adapter.as_deref(), &b.model, &mut b.store)?;
    let out = embed::last_logits(&b.model, &b.store, method.as_ref(), &a.ids)?;
    println!("{}", serde_json::to_string(&out).expect("floats serialise"));
    Ok(ExitCode::SUCCESS)
}

#[derive(Args, Debug)]
pub struct ExportPeftArgs {
    /// The adapter directory written by `finetune`.
    #[arg(long)]
    pub adapter: PathBuf,
    /// The output directory. An existing one is refused unless --force; it may never be
    /// --adapter, inside it or around it.
    #[arg(long)]
    pub out: PathBuf,
    /// The base model the adapter was trained on (default: the one its config records); one of
    /// another architecture than the adapter records is refused.
    #[arg(long)]
    pub base: Option<String>,
    /// Replace an existing --out directory as a whole.
    #[arg(long)]
    pub force: bool,
}

/// Writes the adapter in PEFT's format.
pub fn export_peft(a: ExportPeftArgs) -> Outcome {
    if tunelab::io::is_nonempty_dir(&a.out) && !a.force {
        return Err(tunelab::Error::Invalid {
            op: "export-peft",
            detail: format!(
                "--out {} already exists: pass --force to replace it, or another --out",
                a.out.display()
            ),
        });
    }
    let (_, meta) = tunelab::io::adapter::read_config(&a.adapter)?;
    let base = match a.base {
        Some(b) => b,
        None => meta
            .get("base")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| tunelab::Error::Invalid {
                op: "export-peft",
                detail: format!(
                    "{} records no base model; pass --base DIR",
                    a.adapter.display()
                ),
            })?,
    };
    let dir = finetune::resolve_base(&base)?;
    let (config, _) = tunelab::io::hf::load_config(&dir)?;
    tunelab::io::adapter::export_peft(&a.adapter, &config, &base, &a.out)?;
    println!("PEFT adapter written to {}", a.out.display());
    Ok(ExitCode::SUCCESS)
}
