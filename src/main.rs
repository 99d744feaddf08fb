//! The `tunelab` command line: a thin layer over the library.

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::tasks::Task;
use tunelab::lab::finetune::{self, FinetuneOptions};
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::prompt::PromptInit;
use tunelab::peft::MethodSpec;
use tunelab::train::args::{ScheduleKind, Strategy};
use tunelab::train::pretrain::{self, Base, PretrainArgs};
use tunelab::train::progress::{LogEntry, Metrics, Progress};
use tunelab::train::TrainingArgs;

#[derive(Parser)]
#[command(
    name = "tunelab",
    version,
    about = "A fine-tuning lab: a from-scratch transformer, every fine-tuning method, measured"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The graded exercises: progress (which pass), `verify` (grade all, print a score), `hint N`.
    ///
    /// The exercises are the files exercises/NN_topic/name.rs; each is graded against tunelab's
    /// own implementation on random inputs (compiled and run with cargo).
    Exercises {
        #[command(subcommand)]
        action: Option<ExercisesAction>,
        /// Grade the reference solutions (solutions/) instead of the exercises.
        #[arg(long, global = true)]
        solutions: bool,
        /// Print the progress as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check every op's hand-written backward against finite differences in f64.
    ///
    /// Prints one row per case: the op, the input shapes, the largest relative and absolute
    /// error between the tape's gradient and central differences, and whether it is below 1e-6.
    Gradcheck {
        /// Only the cases of this op (matmul, attention, layer_norm, ...).
        #[arg(long)]
        op: Option<String>,
    },
    /// Fine-tune a base model on a task with one method, then evaluate it on the test split.
    ///
    /// Methods: full, bitfit, houlsby, pfeiffer, lora, dora, ia3, prefix, prompt.
    /// Tasks: sentiment, ner, qa, summarization, dialogue, codegen (built-in data from the
    /// synthetic world, or your own file in the task's shape with --data).
    Finetune {
        /// sentiment, ner, qa, summarization, dialogue or codegen.
        #[arg(long, default_value = "sentiment")]
        task: String,
        /// A shipped base (gpt-tiny, bert-tiny) or a model directory.
        #[arg(long, default_value = "gpt-tiny")]
        base: String,
        /// A JSONL or CSV file in the task's shape, instead of the built-in data.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Use only the first N training examples.
        #[arg(long)]
        train_limit: Option<usize>,
        #[command(flatten)]
        method: Box<MethodArgs>,
        #[command(flatten)]
        train: Box<TrainArgs>,
        #[command(flatten)]
        speed: SpeedArgs,
    },
    /// Evaluate a base model, or a base plus an adapter saved by `finetune`, on a task's test split.
    Eval {
        /// A shipped base (gpt-tiny, bert-tiny) or a model directory.
        #[arg(long, default_value = "gpt-tiny")]
        model: String,
        /// An adapter directory written by `finetune` (adapter_config.json + adapter_model.safetensors).
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long, default_value = "sentiment")]
        task: String,
        /// Evaluate on at most this many examples (0 = all).
        #[arg(long, default_value_t = 0)]
        max_eval_examples: usize,
        /// The seed the adapter was trained with (it fixes the task head's initial values).
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Continue a prompt with a decoder model (and optionally an adapter).
    Generate {
        #[arg(long, default_value = "gpt-tiny")]
        model: String,
        #[arg(long)]
        adapter: Option<PathBuf>,
        #[arg(long)]
        prompt: String,
        #[arg(long, default_value_t = 40)]
        max_new_tokens: usize,
        /// 0 = greedy.
        #[arg(long, default_value_t = 0.0)]
        temperature: f64,
        #[arg(long)]
        top_k: Option<usize>,
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Fine-tune the shipped base with every method on one task — same data, steps and seed — and
    /// print what each costs and scores.
    Compare {
        #[arg(long, default_value = "sentiment")]
        task: String,
        #[arg(long, default_value = "gpt-tiny")]
        base: String,
        /// A demo-sized run (a tenth of the budget, small evaluation): seconds, not minutes.
        #[arg(long)]
        quick: bool,
        /// Optimizer steps per method (default 120; 15 with --quick).
        #[arg(long)]
        steps: Option<usize>,
        /// Sequences per batch (default 16; 8 with --quick).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Use only the first N training examples for the main columns.
        #[arg(long)]
        train_limit: Option<usize>,
        /// Examples of the low-data column (default 64; 16 with --quick; 0 skips it).
        #[arg(long)]
        low_data: Option<usize>,
        /// Optimizer steps of each low-data run (default 40; 10 with --quick).
        #[arg(long)]
        low_data_steps: Option<usize>,
        /// Evaluate on at most this many examples per split (default 200; 48 with --quick).
        #[arg(long)]
        max_eval_examples: Option<usize>,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Only these methods (comma-separated names: full, lora, prompt, ...).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Print the rows as a JSON array.
        #[arg(long)]
        json: bool,
        /// Also write the rows as JSON into this file (the table still prints).
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// Also write loss curves and score versus trainable parameters as SVG into this
        /// directory.
        #[arg(long)]
        plot: Option<PathBuf>,
        #[command(flatten)]
        speed: SpeedArgs,
    },
    /// Memory and FLOPs of fine-tuning a real model size with each method (full fp32 and mixed
    /// precision with Adam, LoRA, QLoRA, prefix and prompt tuning), with the assumptions stated.
    Estimate {
        /// A named size (125M, 350M, 1.3B, 7B, 13B, 65B, 70B, 175B) or a parameter count (2.7B).
        size: String,
        /// Batch size B for the activation memory.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Sequence length T for the activation memory.
        #[arg(long, default_value_t = 512)]
        seq: usize,
        /// LoRA rank for the LoRA row.
        #[arg(long, default_value_t = 8)]
        r: usize,
        /// LoRA targets for the LoRA row (q,v / attn / all).
        #[arg(long, default_value = "q,v")]
        targets: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sentence embeddings of each TEXT with an encoder (a Hugging Face BERT directory such as
    /// all-MiniLM-L6-v2, or a shipped model), printed as a JSON array of arrays in input order.
    Embed {
        /// A model directory (config.json, model.safetensors, tokenizer.json or vocab.txt) or a
        /// shipped model name.
        #[arg(long)]
        model: String,
        /// An adapter directory (tunelab's or PEFT's LoRA) applied to the model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// mean (over real tokens, as sentence-transformers) or cls (the [CLS] hidden state).
        #[arg(long, default_value = "mean")]
        pooling: String,
        /// Scale each embedding to unit length.
        #[arg(long)]
        normalize: bool,
        /// The texts to embed.
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// The vocabulary logits at the last position of a sequence of token ids, as a JSON array
    /// (the LM head for GPT-2, the masked-LM head for BERT).
    Logits {
        #[arg(long)]
        model: String,
        /// An adapter directory (tunelab's or PEFT's LoRA) applied to the model.
        #[arg(long)]
        adapter: Option<PathBuf>,
        /// Comma-separated token ids, e.g. 464,2068,7586.
        #[arg(long, value_delimiter = ',', required = true)]
        ids: Vec<usize>,
    },
    /// Write a LoRA adapter saved by `finetune` as a PEFT adapter directory
    /// (adapter_config.json + adapter_model.safetensors under PEFT's key names), loadable with
    /// `PeftModel.from_pretrained`.
    ExportPeft {
        /// The adapter directory written by `finetune`.
        #[arg(long)]
        adapter: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
        /// The base model the adapter was trained on (default: the one its config records).
        #[arg(long)]
        base: Option<String>,
    },
    /// Interview questions on fine-tuning, each answered and backed by an experiment run now.
    ///
    /// Without N, lists the questions. With N, prints the answer, runs the experiment behind it
    /// and prints the measured evidence; each claim is marked as holding or not in this run.
    Interview {
        /// The question's number (omit to list them).
        n: Option<usize>,
        /// Small budgets (seconds instead of about a minute), as the tests use.
        #[arg(long)]
        quick: bool,
    },
    /// Run one of the notes' common pitfalls, then its fix, and print what was measured.
    ///
    /// Without a name, lists them: overfit, lr, padding, checkpoint, explode. Every number
    /// printed is measured in this run; each claim is marked as holding or not.
    Pitfall {
        /// The pitfall to run (omit to list them).
        name: Option<String>,
        /// Small budgets (seconds instead of about a minute), as the tests use.
        #[arg(long)]
        quick: bool,
    },
    /// Pre-train a base model from scratch on the synthetic world's corpus.
    ///
    /// gpt-tiny is a decoder trained as a causal LM; bert-tiny an encoder trained with masked LM.
    /// Writes config.json, model.safetensors, tokenizer.json and pretrain.json (the measured
    /// losses and time) into --out. The defaults reproduce the models shipped in models/.
    Pretrain {
        /// gpt-tiny or bert-tiny.
        #[arg(long)]
        preset: String,
        /// Output directory (default: models/<preset>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Optimizer steps (default 1500; 4000 for bert-tiny, whose masked LM leaves its plateau after about 1000).
        #[arg(long)]
        steps: Option<usize>,
        /// Sequences per batch (default 16).
        #[arg(long)]
        batch_size: Option<usize>,
        /// Peak learning rate of the warmup + cosine schedule (default 1e-3).
        #[arg(long)]
        lr: Option<f64>,
        /// Documents of pre-training text to generate (default 20000).
        #[arg(long)]
        docs: Option<usize>,
        /// Tokens per sequence, also the model's max_len (default 128).
        #[arg(long)]
        seq_len: Option<usize>,
        /// Model width C (default 128).
        #[arg(long)]
        d_model: Option<usize>,
        /// Blocks L (default 4).
        #[arg(long)]
        layers: Option<usize>,
        /// Warmup steps of the schedule (default 100).
        #[arg(long)]
        warmup: Option<usize>,
        /// Share of tokens the masked LM predicts, bert-tiny only (default 0.4).
        #[arg(long)]
        mask_prob: Option<f64>,
        /// Evaluate the validation loss every N steps (default 250).
        #[arg(long)]
        eval_every: Option<usize>,
        #[command(flatten)]
        speed: SpeedArgs,
    },
}

/// The method and its options (`--method` picks one; the rest apply to the methods that use them).
#[derive(Args, Debug, Clone)]
struct MethodArgs {
    /// full, bitfit, houlsby, pfeiffer, lora, dora, ia3, prefix, prompt.
    #[arg(long, default_value = "lora")]
    method: String,
    /// full: train only the last k blocks (and the head).
    #[arg(long)]
    last_k: Option<usize>,
    /// lora/dora: rank r.
    #[arg(long, default_value_t = 8)]
    r: usize,
    /// lora/dora: alpha (the update is scaled by alpha / r).
    #[arg(long, default_value_t = 16.0)]
    alpha: f64,
    /// lora/dora: dropout on the low-rank path's input.
    #[arg(long, default_value_t = 0.0)]
    lora_dropout: f64,
    /// lora/dora: target modules, from q, k, v, o, fc, proj (qkv: GPT-2's whole c_attn).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    targets: Vec<String>,
    /// lora/dora: scale by alpha / sqrt(r) (rsLoRA).
    #[arg(long)]
    rslora: bool,
    /// lora/dora: LoRA+ learning-rate ratio of B to A.
    #[arg(long, default_value_t = 1.0)]
    lora_plus_ratio: f64,
    /// houlsby/pfeiffer: bottleneck width.
    #[arg(long, default_value_t = 16)]
    bottleneck: usize,
    /// prefix/prompt: number of virtual tokens.
    #[arg(long, default_value_t = 10)]
    n_virtual: usize,
    /// prefix: hidden width of the reparameterization MLP.
    #[arg(long, default_value_t = 128)]
    prefix_hidden: usize,
    /// prefix: train the prefixes directly, without the reparameterization MLP.
    #[arg(long)]
    no_reparam: bool,
    /// prompt: initialise the soft prompt from these words' embeddings (else randomly).
    #[arg(long)]
    prompt_init_text: Option<String>,
}

impl MethodArgs {
    fn spec(
        &self,
        tok: Option<&tunelab::data::tokenizer::Tokenizer>,
    ) -> tunelab::Result<MethodSpec> {
        let lora = LoraConfig {
            r: self.r,
            alpha: self.alpha,
            dropout: self.lora_dropout,
            targets: self.targets.clone(),
            rslora: self.rslora,
            lr_ratio_b: self.lora_plus_ratio,
        };
        Ok(match self.method.as_str() {
            "full" => MethodSpec::Full {
                last_k: self.last_k,
            },
            "bitfit" => MethodSpec::Bitfit,
            "lora" => MethodSpec::Lora(lora),
            "dora" => MethodSpec::Dora(lora),
            "houlsby" => MethodSpec::Houlsby {
                bottleneck: self.bottleneck,
            },
            "pfeiffer" => MethodSpec::Pfeiffer {
                bottleneck: self.bottleneck,
            },
            "ia3" => MethodSpec::Ia3,
            "prefix" => MethodSpec::Prefix {
                n_virtual: self.n_virtual,
                reparameterize: !self.no_reparam,
                hidden: self.prefix_hidden,
            },
            "prompt" => {
                let init = match (&self.prompt_init_text, tok) {
                    (Some(text), Some(tok)) => PromptInit::Vocab(
                        tok.encode(text, false)?
                            .into_iter()
                            .map(|i| i as usize)
                            .collect(),
                    ),
                    _ => PromptInit::Random,
                };
                MethodSpec::Prompt {
                    n_virtual: self.n_virtual,
                    init,
                }
            }
            other => {
                return Err(tunelab::Error::Invalid {
                    op: "--method",
                    detail: format!(
                        "unknown method {other:?}; choose one of {}",
                        MethodSpec::NAMES.join(", ")
                    ),
                })
            }
        })
    }
}

#[derive(Subcommand)]
enum ExercisesAction {
    /// Grade every exercise, show each failing check, and print the score.
    Verify,
    /// Print the hint of exercise N (its number or its name).
    Hint { n: String },
}

/// Speed options of the training commands.
#[derive(Args, Debug, Clone)]
struct SpeedArgs {
    /// Threads for the kernels (default: TUNELAB_THREADS, else all cores). Results do not
    /// depend on it.
    #[arg(long)]
    threads: Option<usize>,
    /// Keep subnormal floats while training (by default they are flushed to zero, which is
    /// much faster on x86-64 and changes nothing at f32 precision).
    #[arg(long)]
    no_flush_denormals: bool,
}

impl SpeedArgs {
    fn apply(&self) {
        if let Some(n) = self.threads {
            tunelab::kernels::set_threads(n);
        }
        tunelab::kernels::denormal::set_flush_while_training(!self.no_flush_denormals);
    }
}

/// Training options; each overrides the value from `--config`.
#[derive(Args, Debug, Clone)]
struct TrainArgs {
    /// A TOML file with training arguments (output_dir, epochs, batch_size, learning_rate, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    output_dir: Option<PathBuf>,
    #[arg(long)]
    epochs: Option<f64>,
    #[arg(long)]
    max_steps: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    #[arg(long)]
    grad_accum: Option<usize>,
    #[arg(long)]
    lr: Option<f64>,
    /// constant, linear or cosine (after warmup).
    #[arg(long)]
    schedule: Option<String>,
    #[arg(long)]
    warmup_steps: Option<usize>,
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Clip the global gradient norm (0: off).
    #[arg(long)]
    max_grad_norm: Option<f64>,
    /// no, steps or epoch.
    #[arg(long)]
    eval_strategy: Option<String>,
    #[arg(long)]
    eval_steps: Option<usize>,
    /// no, steps or epoch.
    #[arg(long)]
    save_strategy: Option<String>,
    #[arg(long)]
    save_steps: Option<usize>,
    /// Stop after this many evaluations without improvement.
    #[arg(long)]
    early_stopping_patience: Option<usize>,
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate on at most this many examples.
    #[arg(long)]
    max_eval_examples: Option<usize>,
    /// Continue from the newest checkpoint in the output directory.
    #[arg(long)]
    resume: bool,
}

fn strategy(s: &str) -> tunelab::Result<Strategy> {
    match s {
        "no" => Ok(Strategy::No),
        "steps" => Ok(Strategy::Steps),
        "epoch" => Ok(Strategy::Epoch),
        o => Err(tunelab::Error::Invalid {
            op: "strategy",
            detail: format!("{o:?} is not no, steps or epoch"),
        }),
    }
}

impl TrainArgs {
    fn build(&self) -> tunelab::Result<TrainingArgs> {
        let mut a = match &self.config {
            Some(p) => TrainingArgs::from_toml_file(p)?,
            None => TrainingArgs::default(),
        };
        macro_rules! set {
            ($($f:ident => $t:ident),*) => { $(if let Some(v) = self.$f.clone() { a.$t = v; })* };
        }
        set!(output_dir => output_dir, epochs => epochs, batch_size => batch_size, grad_accum => gradient_accumulation_steps,
             lr => learning_rate, warmup_steps => warmup_steps, weight_decay => weight_decay, max_grad_norm => max_grad_norm,
             eval_steps => eval_steps, save_steps => save_steps, seed => seed, max_eval_examples => max_eval_examples);
        if self.max_steps.is_some() {
            a.max_steps = self.max_steps;
        }
        if self.early_stopping_patience.is_some() {
            a.early_stopping_patience = self.early_stopping_patience;
        }
        if let Some(s) = &self.schedule {
            a.schedule = match s.as_str() {
                "constant" => ScheduleKind::Constant,
                "linear" => ScheduleKind::Linear,
                "cosine" => ScheduleKind::Cosine,
                o => {
                    return Err(tunelab::Error::Invalid {
                        op: "--schedule",
                        detail: format!("{o:?} is not constant, linear or cosine"),
                    })
                }
            };
        }
        if let Some(s) = &self.eval_strategy {
            a.eval_strategy = strategy(s)?;
        }
        if let Some(s) = &self.save_strategy {
            a.save_strategy = strategy(s)?;
        }
        a.validate()?;
        Ok(a)
    }
}

fn fmt_metrics(m: &Metrics) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A terminal progress bar for fine-tuning.
struct TrainBar {
    bar: ProgressBar,
}

impl Progress for TrainBar {
    fn start(&mut self, total: usize, from: usize) {
        self.bar = ProgressBar::new(total as u64);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        self.bar.set_position(from as u64);
    }
    fn step(&mut self, _run: &str, e: &LogEntry) {
        self.bar.set_message(format!(
            "loss {:.4} lr {:.1e} grad-norm {:.2} {:.0} tok/s",
            e.loss.unwrap_or(f64::NAN),
            e.learning_rate.unwrap_or(0.0),
            e.grad_norm.unwrap_or(0.0),
            e.tokens_per_sec.unwrap_or(0.0)
        ));
        self.bar.set_position(e.step as u64);
    }
    fn eval(&mut self, step: usize, m: &Metrics) {
        let line = format!("step {step}: validation {}", fmt_metrics(m));
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A terminal progress bar for long runs.
struct Bar {
    bar: ProgressBar,
    val: Option<f64>,
}

impl Bar {
    fn new() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            val: None,
        }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: usize, _done: usize) {
        self.bar = ProgressBar::new(total as u64);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
    }
    fn step(&mut self, _run: &str, e: &LogEntry) {
        let (loss, lr) = (e.loss.unwrap_or(f64::NAN), e.learning_rate.unwrap_or(0.0));
        let tokens_per_sec = e.tokens_per_sec.unwrap_or(0.0);
        let val = self.val.map(|v| format!(" val {v:.3}")).unwrap_or_default();
        self.bar.set_message(format!(
            "loss {loss:.3}{val} lr {lr:.1e} {tokens_per_sec:.0} tok/s"
        ));
        self.bar.set_position(e.step as u64);
    }
    fn eval(&mut self, step: usize, m: &Metrics) {
        let val_loss = m.get("loss").copied().unwrap_or(f64::NAN);
        self.val = Some(val_loss);
        self.bar
            .println(format!("step {step:>5}: validation loss {val_loss:.4}"));
    }
    fn line(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// Progress lines of the interview and pitfall experiments, with the time since the start.
struct LabLines(std::time::Instant);

impl Progress for LabLines {
    fn line(&mut self, text: &str) {
        eprintln!("[{:>6.1} s] {text}", self.0.elapsed().as_secs_f64());
    }
}

fn run_interview(n: Option<usize>, quick: bool) -> tunelab::Result<()> {
    use tunelab::lab::evidence::{report, Mode};
    use tunelab::lab::interview;
    let Some(n) = n else {
        println!("interview questions (answer one with `tunelab interview N`, add --quick for small budgets):");
        for q in interview::QUESTIONS {
            println!("  {:>2}. {}", q.number, q.question);
        }
        return Ok(());
    };
    let q = interview::question(n)?;
    let mode = if quick { Mode::Quick } else { Mode::Full };
    println!("{}. {}\n", q.number, q.question);
    println!("{}\n", q.answer);
    println!("evidence: {}\n", q.experiment);
    let started = std::time::Instant::now();
    let evidence = interview::run(n, mode, &mut LabLines(started))?;
    print!("{}", report(evidence.as_ref()));
    println!(
        "\n({} mode, {:.1} s)",
        mode.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn run_pitfall(name: Option<&str>, quick: bool) -> tunelab::Result<()> {
    use tunelab::lab::evidence::{report, Mode};
    use tunelab::lab::pitfall;
    let Some(name) = name else {
        println!(
            "pitfalls (run one with `tunelab pitfall <name>`, add --quick for small budgets):"
        );
        for p in pitfall::PITFALLS {
            println!("  {:<11} {}", p.name, p.summary);
        }
        return Ok(());
    };
    let mode = if quick { Mode::Quick } else { Mode::Full };
    let started = std::time::Instant::now();
    let evidence = pitfall::run(name, mode, &mut LabLines(started))?;
    let p = pitfall::PITFALLS
        .iter()
        .find(|p| p.name == name)
        .expect("run accepted the name");
    println!("pitfall {name}: {}\n", p.summary);
    print!("{}", report(evidence.as_ref()));
    println!(
        "\n({} mode, {:.1} s)",
        mode.name(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn fail(e: tunelab::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

fn run_exercises(
    action: Option<ExercisesAction>,
    solutions: bool,
    json: bool,
) -> tunelab::Result<ExitCode> {
    use tunelab::lab::exercises;
    let root = exercises::find_root()?;
    if let Some(ExercisesAction::Hint { n }) = action {
        let list = exercises::load(&root)?;
        let (i, e) = exercises::find(&list, &n)?;
        println!(
            "{i}. {} (exercises/{}): {}
{}",
            e.name,
            e.path,
            e.topic,
            e.hint.trim()
        );
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("grading (cargo test -p tunelab-exercises) ...");
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

fn run_finetune(
    task: &str,
    base: &str,
    data: Option<PathBuf>,
    train_limit: Option<usize>,
    method: &MethodArgs,
    train: &TrainArgs,
) -> tunelab::Result<()> {
    let task = Task::from_name(task)?;
    let args = train.build()?;
    let loaded = finetune::load_base(base).ok();
    if let Some(n) = loaded.as_ref().and_then(|b| b.notes.as_ref()) {
        eprintln!("note: {n}");
    }
    let tok = loaded.map(|b| b.tok);
    let spec = method.spec(tok.as_ref())?;
    tunelab::train::trainer::install_ctrl_c();
    let opts = FinetuneOptions {
        base: base.to_string(),
        task,
        data,
        spec,
        args,
        train_limit,
        resume: train.resume,
    };
    let mut bar = TrainBar {
        bar: ProgressBar::hidden(),
    };
    let r = finetune::finetune(&opts, &mut bar)?;
    bar.finish();
    println!("{}", r.summary);
    if r.report.interrupted {
        println!(
            "interrupted at step {}: checkpoint saved in {}",
            r.report.state.step,
            opts.args.output_dir.display()
        );
    }
    if r.report.stopped_early {
        println!(
            "stopped early at step {} (best {} at step {:?})",
            r.report.state.step, opts.args.metric_for_best, r.report.state.best_step
        );
    }
    println!(
        "trained {} steps in {:.1} s (median step {:.1} ms)",
        r.report.state.step,
        r.report.seconds,
        r.report.median_step_seconds * 1e3
    );
    println!("test: {}", fmt_metrics(&r.test));
    println!("adapter: {}", r.adapter_dir.display());
    Ok(())
}

/// One bar over every optimizer step of the whole comparison; a line per finished method.
struct CompareBar {
    bar: ProgressBar,
}

impl CompareBar {
    fn new(
        opts: &tunelab::lab::compare::CompareOptions,
        entries: &[tunelab::lab::compare::Entry],
    ) -> Self {
        let per_method = opts.steps + opts.low_data.map_or(0, |_| opts.low_data_steps);
        let methods = tunelab::lab::compare::selected(opts, entries).len();
        let bar = ProgressBar::new((methods * per_method) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} steps [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
        Self { bar }
    }
}

impl Progress for CompareBar {
    fn step(&mut self, label: &str, e: &LogEntry) {
        self.bar.inc(1);
        self.bar
            .set_message(format!("{label} loss {:.4}", e.loss.unwrap_or(f64::NAN)));
    }
    /// A method's row is complete ([`tunelab::lab::compare::Row::progress_line`]).
    fn line(&mut self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
        }
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// A base with an optional adapter (or no method), for inference commands.
fn load_with_adapter(
    model: &str,
    adapter: Option<&std::path::Path>,
) -> tunelab::Result<(finetune::Base, Box<dyn tunelab::peft::Method<f32>>)> {
    let mut b = finetune::load_base(model)?;
    if let Some(n) = &b.notes {
        eprintln!("note: {n}");
    }
    let method: Box<dyn tunelab::peft::Method<f32>> = match adapter {
        Some(dir) => tunelab::peft::store::load_adapter(dir, &b.model, &mut b.store, 0)?.1,
        None => Box::new(tunelab::peft::full::Full { last_k: None }),
    };
    Ok((b, method))
}

fn run_embed(
    model: &str,
    adapter: Option<&std::path::Path>,
    pooling: &str,
    normalize: bool,
    texts: &[String],
) -> tunelab::Result<String> {
    use tunelab::lab::embed;
    let pooling = embed::EmbedPooling::from_name(pooling)?;
    let (b, method) = load_with_adapter(model, adapter)?;
    let out = embed::embed(
        &b.model,
        &b.store,
        method.as_ref(),
        &b.tok,
        texts,
        pooling,
        normalize,
    )?;
    Ok(serde_json::to_string(&out).expect("floats serialise"))
}

fn run_logits(
    model: &str,
    adapter: Option<&std::path::Path>,
    ids: &[usize],
) -> tunelab::Result<String> {
    // No tokenizer needed: the model directory alone.
    let dir = finetune::resolve_base(model)?;
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
    let method: Box<dyn tunelab::peft::Method<f32>> = match adapter {
        Some(a) => tunelab::peft::store::load_adapter(a, &b.model, &mut b.store, 0)?.1,
        None => Box::new(tunelab::peft::full::Full { last_k: None }),
    };
    let out = tunelab::lab::embed::last_logits(&b.model, &b.store, method.as_ref(), ids)?;
    Ok(serde_json::to_string(&out).expect("floats serialise"))
}

fn run_export_peft(
    adapter: &std::path::Path,
    out: &std::path::Path,
    base: Option<&str>,
) -> tunelab::Result<()> {
    let (_, meta) = tunelab::peft::store::load_adapter_config(adapter)?;
    let base = match base {
        Some(b) => b.to_string(),
        None => meta
            .get("base")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| tunelab::Error::Invalid {
                op: "export-peft",
                detail: format!(
                    "{} records no base model; pass --base DIR",
                    adapter.display()
                ),
            })?,
    };
    let dir = finetune::resolve_base(&base)?;
    let (config, _) = tunelab::io::hf::load_config(&dir)?;
    tunelab::io::peft::export(adapter, &config, &base, out)?;
    println!("PEFT adapter written to {}", out.display());
    Ok(())
}

fn main() -> ExitCode {
    tunelab::kernels::keep_freed_memory();
    let cli = Cli::parse();
    match cli.command {
        Command::Embed {
            model,
            adapter,
            pooling,
            normalize,
            texts,
        } => match run_embed(&model, adapter.as_deref(), &pooling, normalize, &texts) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::Logits {
            model,
            adapter,
            ids,
        } => match run_logits(&model, adapter.as_deref(), &ids) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(e),
        },
        Command::ExportPeft { adapter, out, base } => {
            match run_export_peft(&adapter, &out, base.as_deref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Estimate {
            size,
            batch,
            seq,
            r,
            targets,
            json,
        } => {
            use tunelab::lab::estimate;
            let run = || -> tunelab::Result<String> {
                let mut args = estimate::EstimateArgs::new(size.clone());
                args.batch = batch;
                args.seq = seq;
                args.lora.r = r;
                args.lora.targets = estimate::Module::parse_list(&targets)?;
                let report = estimate::estimate(&args)?;
                Ok(if json {
                    serde_json::to_string_pretty(&estimate::to_json(&report)).expect("json")
                } else {
                    estimate::render(&report)
                })
            };
            match run() {
                Ok(text) => {
                    println!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Eval {
            model,
            adapter,
            task,
            max_eval_examples,
            seed,
        } => {
            let run = || -> tunelab::Result<Metrics> {
                finetune::evaluate(
                    &model,
                    adapter.as_deref(),
                    Task::from_name(&task)?,
                    max_eval_examples,
                    seed,
                )
            };
            match run() {
                Ok(m) => {
                    println!("test: {}", fmt_metrics(&m));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Generate {
            model,
            adapter,
            prompt,
            max_new_tokens,
            temperature,
            top_k,
            seed,
        } => {
            let opts = tunelab::nn::generate::GenerateOptions {
                max_new_tokens,
                temperature,
                top_k,
                seed,
                ..Default::default()
            };
            match finetune::generate_text(&model, adapter.as_deref(), &prompt, &opts, seed) {
                Ok(text) => {
                    println!("{prompt}{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Compare {
            task,
            base,
            quick,
            steps,
            batch_size,
            train_limit,
            low_data,
            low_data_steps,
            max_eval_examples,
            seed,
            only,
            json,
            json_out,
            plot,
            speed,
        } => {
            speed.apply();
            let run = || -> tunelab::Result<()> {
                use tunelab::lab::compare;
                let task = Task::from_name(&task)?;
                let b = finetune::load_base(&base)?;
                let init: Vec<usize> = b
                    .tok
                    .encode("the review is good or bad", false)?
                    .into_iter()
                    .map(|i| i as usize)
                    .collect();
                let mut opts = compare::CompareOptions::new(&base, task);
                if quick {
                    opts = opts.quick();
                }
                opts.steps = steps.unwrap_or(opts.steps);
                opts.batch_size = batch_size.unwrap_or(opts.batch_size);
                opts.train_limit = train_limit;
                opts.low_data = low_data
                    .map(|n| Some(n).filter(|&n| n > 0))
                    .unwrap_or(opts.low_data);
                opts.low_data_steps = low_data_steps.unwrap_or(opts.low_data_steps);
                opts.max_eval_examples = max_eval_examples.unwrap_or(opts.max_eval_examples);
                opts.seed = seed;
                opts.only = only;
                let started = std::time::Instant::now();
                let entries = compare::default_entries(init);
                let mut bar = CompareBar::new(&opts, &entries);
                let rows = compare::compare(&opts, &entries, &mut bar)?;
                bar.finish();
                if let Some(path) = &json_out {
                    let text = serde_json::to_string_pretty(&rows).expect("rows serialise");
                    tunelab::io::atomic_write(path, text.as_bytes())?;
                }
                if let Some(dir) = &plot {
                    for path in tunelab::lab::plot::compare_charts(dir, &opts, &rows)? {
                        eprintln!("wrote {}", path.display());
                    }
                }
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&rows).expect("rows serialise")
                    );
                } else {
                    print!("{}", compare::table(&opts, &rows));
                    println!("total wall time {:.1} s", started.elapsed().as_secs_f64());
                }
                Ok(())
            };
            match run() {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Finetune {
            task,
            base,
            data,
            train_limit,
            method,
            train,
            speed,
        } => {
            speed.apply();
            match run_finetune(&task, &base, data, train_limit, &method, &train) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(e),
            }
        }
        Command::Pretrain {
            preset,
            out,
            steps,
            batch_size,
            lr,
            docs,
            seq_len,
            d_model,
            layers,
            warmup,
            mask_prob,
            eval_every,
            speed,
        } => {
            speed.apply();
            let base = match Base::from_name(&preset) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let mut args = PretrainArgs::new(base);
            args.steps = steps.unwrap_or(args.steps);
            args.batch_size = batch_size.unwrap_or(args.batch_size);
            args.lr = lr.unwrap_or(args.lr);
            args.docs = docs.unwrap_or(args.docs);
            args.seq_len = seq_len.unwrap_or(args.seq_len);
            args.d_model = d_model.unwrap_or(args.d_model);
            args.n_layers = layers.unwrap_or(args.n_layers);
            args.warmup = warmup.unwrap_or(args.warmup);
            args.mask_prob = mask_prob.unwrap_or(args.mask_prob);
            args.eval_every = eval_every.unwrap_or(args.eval_every);
            let out = out.unwrap_or_else(|| PathBuf::from("models").join(base.name()));
            match pretrain::pretrain(&args, &out, &mut Bar::new()) {
                Ok(r) => {
                    println!(
                        "{}: {} parameters, validation loss {:.4} (perplexity {:.2}), {:.0} s, {} tokens seen; written to {}",
                        base.name(),
                        r.params,
                        r.val_loss,
                        r.val_perplexity,
                        r.seconds,
                        r.tokens_seen,
                        out.display()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Exercises {
            action,
            solutions,
            json,
        } => match run_exercises(action, solutions, json) {
            Ok(code) => code,
            Err(e) => fail(e),
        },
        Command::Interview { n, quick } => match run_interview(n, quick) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Pitfall { name, quick } => match run_pitfall(name.as_deref(), quick) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        },
        Command::Gradcheck { op } => match tunelab::lab::gradcheck::run(op.as_deref()) {
            Ok(results) if results.is_empty() => {
                eprintln!(
                    "error: no gradient check for op {:?}",
                    op.unwrap_or_default()
                );
                ExitCode::FAILURE
            }
            Ok(results) => {
                print!("{}", tunelab::lab::gradcheck::table(&results));
                if results.iter().all(|r| r.passed) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
