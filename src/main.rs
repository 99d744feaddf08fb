//! The `tunelab` command line: parses the arguments and dispatches to one function per command
//! in `src/cli/`, which call the library.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

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
    /// Fine-tune the shipped base with every method on one task — same data, steps and seed — and
    /// print what each costs and scores.
    Compare(cli::compare::CompareArgs),
    /// Train one method over a grid of learning rates and options with seeds, scored on
    /// validation only; records compare's chosen rates.
    #[command(long_about = cli::sweep::ABOUT)]
    Sweep(Box<cli::sweep::SweepArgs>),
    /// Fine-tune a base model on a task with one method, then evaluate it on the test split.
    #[command(long_about = cli::finetune::about())]
    Finetune(cli::finetune::FinetuneArgs),
    /// After supervised fine-tuning: preference tuning (DPO, IPO, SimPO, ORPO, KTO), a reward
    /// model, GRPO with verifiable rewards, and their comparison over seeds.
    Align(cli::align::AlignArgs),
    /// Evaluate a base model, or a base plus an adapter saved by `finetune`, on a task's test split.
    Eval(cli::infer::EvalArgs),
    /// Continue a prompt with a decoder model (and optionally an adapter).
    Generate(cli::infer::GenerateArgs),
    /// Pre-train a base model from scratch on the synthetic world's corpus.
    ///
    /// gpt-tiny is a decoder trained as a causal LM; bert-tiny an encoder trained with masked LM.
    /// Writes config.json, model.safetensors, tokenizer.json and pretrain.json (the measured
    /// losses and time) into --out (runs/pretrain-<preset> by default; an existing directory
    /// only with --force). The defaults reproduce the models shipped in models/.
    Pretrain(cli::pretrain::PretrainCmd),
    /// Memory and FLOPs of fine-tuning a real model size with each method (full fp32 and mixed
    /// precision with Adam, LoRA, QLoRA, prefix and prompt tuning), with the assumptions stated.
    Estimate(cli::lab::EstimateArgs),
    /// Interview questions on fine-tuning, each answered and backed by an experiment run now.
    ///
    /// Without N, lists the questions. With N, prints the answer, runs the experiment behind it
    /// and prints the measured evidence; each claim is marked as holding or not in this run.
    /// `--lang vi` prints the questions and answers in Vietnamese (the evidence stays English);
    /// `--answer-only` prints the question and answer without running anything.
    Interview(cli::lab::InterviewArgs),
    /// Run one of the notes' common pitfalls, then its fix, and print what was measured.
    ///
    /// Without a name, lists them: overfit, lr, padding, checkpoint, explode, and preference
    /// tuning's and RL's dpo-beta, displacement, grpo-collapse, length. Every number printed is
    /// measured in this run; each claim is marked as holding or not.
    Pitfall(cli::lab::PitfallArgs),
    /// The graded exercises: progress (which pass), `verify` (grade all, print a score), `hint N`.
    ///
    /// The exercises are the files exercises/NN_topic/name.rs; each is graded against tunelab's
    /// own implementation on random inputs (compiled and run with cargo).
    Exercises(cli::lab::ExercisesArgs),
    /// Check every op's hand-written backward against finite differences in f64.
    ///
    /// Prints one row per case: the op, the input shapes, the largest relative and absolute
    /// error between the tape's gradient and central differences, and whether it is below 1e-6.
    Gradcheck(cli::lab::GradcheckArgs),
    /// Sentence embeddings of each TEXT with an encoder (a Hugging Face BERT directory such as
    /// all-MiniLM-L6-v2, or a shipped model), printed as a JSON array of arrays in input order.
    Embed(cli::infer::EmbedArgs),
    /// The vocabulary logits at the last position of a sequence of token ids, as a JSON array
    /// (the LM head for GPT-2, the masked-LM head for BERT).
    Logits(cli::infer::LogitsArgs),
    /// Write an adapter saved by `finetune` (LoRA, LoRA-FA, AdaLoRA, LoHa, LoKr or VeRA; PiSSA
    /// and OLoRA are saved as LoRA) as a PEFT adapter directory
    /// (adapter_config.json + adapter_model.safetensors under PEFT's key names), loadable with
    /// `PeftModel.from_pretrained`.
    ExportPeft(cli::infer::ExportPeftArgs),
    /// Merge adapters into one (task arithmetic, TIES, DARE, as PEFT's add_weighted_adapter),
    /// fold one into its base (--into-base), or compare merged with separate adapters (--compare).
    #[command(long_about = cli::merge::MERGE_ABOUT)]
    Merge(Box<cli::merge::MergeArgs>),
    /// Serving N LoRA adapters: one base plus an AdapterSet switched per request against N merged
    /// copies of the model; memory held and requests per second, measured now.
    ServeBench(cli::merge::ServeBenchArgs),
    /// LoRA with and without NEFTune (noisy token embeddings while training) on one task over
    /// seeds: test scores with intervals and the paired difference.
    Neftune(cli::merge::NeftuneArgs),
}

fn main() -> ExitCode {
    tunelab::kernels::keep_freed_memory();
    let outcome = match Cli::parse().command {
        Command::Compare(a) => cli::compare::run(a),
        Command::Sweep(a) => cli::sweep::run(*a),
        Command::Finetune(a) => cli::finetune::run(a),
        Command::Align(a) => cli::align::run(a),
        Command::Eval(a) => cli::infer::eval(a),
        Command::Generate(a) => cli::infer::generate(a),
        Command::Pretrain(a) => cli::pretrain::run(a),
        Command::Estimate(a) => cli::lab::estimate(a),
        Command::Interview(a) => cli::lab::interview(a),
        Command::Pitfall(a) => cli::lab::pitfall(a),
        Command::Exercises(a) => cli::lab::exercises(a),
        Command::Gradcheck(a) => cli::lab::gradcheck(a),
        Command::Embed(a) => cli::infer::embed(a),
        Command::Logits(a) => cli::infer::logits(a),
        Command::ExportPeft(a) => cli::infer::export_peft(a),
        Command::Merge(a) => cli::merge::run(*a),
        Command::ServeBench(a) => cli::merge::serve_bench(a),
        Command::Neftune(a) => cli::merge::neftune(a),
    };
    outcome.unwrap_or_else(cli::fail)
}
