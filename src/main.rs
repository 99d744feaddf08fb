//! The `tunelab` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::train::pretrain::{self, Base, PretrainArgs, Progress};

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
    /// Check every op's hand-written backward against finite differences in f64.
    ///
    /// Prints one row per case: the op, the input shapes, the largest relative and absolute
    /// error between the tape's gradient and central differences, and whether it is below 1e-6.
    Gradcheck {
        /// Only the cases of this op (matmul, attention, layer_norm, ...).
        #[arg(long)]
        op: Option<String>,
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
        /// Optimizer steps (default 1500).
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
        /// Evaluate the validation loss every N steps (default 250).
        #[arg(long)]
        eval_every: Option<usize>,
    },
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
    fn start(&mut self, total: usize) {
        self.bar = ProgressBar::new(total as u64);
        self.bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} [{elapsed_precise} < {eta_precise}] {msg}",
            )
            .expect("valid template"),
        );
    }
    fn step(&mut self, step: usize, loss: f64, lr: f64, tokens_per_sec: f64) {
        let val = self.val.map(|v| format!(" val {v:.3}")).unwrap_or_default();
        self.bar.set_message(format!(
            "loss {loss:.3}{val} lr {lr:.1e} {tokens_per_sec:.0} tok/s"
        ));
        self.bar.set_position(step as u64 + 1);
    }
    fn eval(&mut self, step: usize, val_loss: f64) {
        self.val = Some(val_loss);
        self.bar.println(format!(
            "step {:>5}: validation loss {val_loss:.4}",
            step + 1
        ));
    }
    fn message(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
            eval_every,
        } => {
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
