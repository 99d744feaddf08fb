//! `tunelab finetune`: one method on one task, then the test score; saves the adapter.

use super::args::{SpeedArgs, TrainArgs};
use super::progress::TrainBar;
use super::{fmt_metrics, Outcome};
use clap::Args;
use indicatif::ProgressBar;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::data::tasks::Task;
use tunelab::lab::finetune::{self, FinetuneOptions};
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::prompt::PromptInit;
use tunelab::peft::MethodSpec;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The task (built-in data from the synthetic world unless --data is given).
    #[arg(long, value_enum, ignore_case = true, default_value = "sentiment")]
    pub task: Task,
    /// A shipped base (gpt-tiny, bert-tiny) or a model directory.
    #[arg(long, default_value = "gpt-tiny")]
    pub base: String,
    /// A JSONL or CSV file in the task's shape, instead of the built-in data.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub train_limit: Option<usize>,
    #[command(flatten)]
    pub method: Box<MethodArgs>,
    #[command(flatten)]
    pub train: Box<TrainArgs>,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

/// The method and its options (`--method` picks one; the rest apply to the methods that use them).
#[derive(Args, Debug, Clone)]
pub struct MethodArgs {
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
    pub fn spec(
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

/// Fine-tunes, prints the run's summary and test score, and says where the adapter is.
pub fn run(a: FinetuneArgs) -> Outcome {
    a.speed.apply();
    let task = a.task;
    let args = a.train.build()?;
    let loaded = finetune::load_base(&a.base).ok();
    if let Some(n) = loaded.as_ref().and_then(|b| b.notes.as_ref()) {
        eprintln!("note: {n}");
    }
    let tok = loaded.map(|b| b.tok);
    let spec = a.method.spec(tok.as_ref())?;
    tunelab::train::trainer::install_ctrl_c();
    let opts = FinetuneOptions {
        base: a.base,
        task,
        data: a.data,
        spec,
        args,
        train_limit: a.train_limit,
        resume: a.train.resume,
    };
    let mut bar = TrainBar {
        bar: ProgressBar::hidden(),
    };
    let r = finetune::finetune(&opts, &mut bar)?;
    bar.bar.finish_and_clear();
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
    Ok(ExitCode::SUCCESS)
}
