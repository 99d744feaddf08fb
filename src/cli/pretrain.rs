//! `tunelab pretrain`: a base model from scratch on the synthetic world's corpus.

use super::args::SpeedArgs;
use super::progress::TrainBar;
use super::Outcome;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use tunelab::train::pretrain::{self, Base, PretrainArgs};

#[derive(Args, Debug)]
pub struct PretrainCmd {
    /// The shipped base to reproduce.
    #[arg(long, value_enum)]
    pub preset: Base,
    /// Output directory [default: runs/pretrain-<preset>; never the shipped models/<preset>
    /// unless given]. An existing directory is refused unless --force.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace an existing --out directory (its old contents are deleted once the new model is
    /// written).
    #[arg(long)]
    pub force: bool,
    /// Optimizer steps (default 1500; 4000 for bert-tiny, whose masked LM needs longer to leave
    /// its early plateau).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Sequences per batch (default 16).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate of the warmup + cosine schedule (default 1e-3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Documents of pre-training text to generate (default 20000).
    #[arg(long)]
    pub docs: Option<usize>,
    /// Tokens per sequence, also the model's max_len (default 128).
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Model width C (default 128).
    #[arg(long)]
    pub d_model: Option<usize>,
    /// Blocks L (default 4).
    #[arg(long)]
    pub layers: Option<usize>,
    /// Warmup steps of the schedule (default 100).
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Share of tokens the masked LM predicts, bert-tiny only (default 0.4).
    #[arg(long)]
    pub mask_prob: Option<f64>,
    /// Evaluate the validation loss every N steps (default 250).
    #[arg(long)]
    pub eval_every: Option<usize>,
    #[command(flatten)]
    pub speed: SpeedArgs,
}

/// Pre-trains and writes the model directory.
pub fn run(a: PretrainCmd) -> Outcome {
    a.speed.apply()?;
    let base = a.preset;
    let mut args = PretrainArgs::new(base);
    args.steps = a.steps.unwrap_or(args.steps);
    args.batch_size = a.batch_size.unwrap_or(args.batch_size);
    args.lr = a.lr.unwrap_or(args.lr);
    args.docs = a.docs.unwrap_or(args.docs);
    args.seq_len = a.seq_len.unwrap_or(args.seq_len);
    args.d_model = a.d_model.unwrap_or(args.d_model);
    args.n_layers = a.layers.unwrap_or(args.n_layers);
    args.warmup = a.warmup.unwrap_or(args.warmup);
    args.mask_prob = a.mask_prob.unwrap_or(args.mask_prob);
    args.eval_every = a.eval_every.unwrap_or(args.eval_every);
    let out = a
        .out
        .unwrap_or_else(|| PathBuf::from("runs").join(format!("pretrain-{}", base.name())));
    // Before training, not after it: an existing model is never replaced unasked.
    if tunelab::io::is_nonempty_dir(&out) && !a.force {
        return Err(tunelab::Error::Invalid {
            op: "pretrain",
            detail: format!(
                "--out {} already exists: pass --force to replace it, or another --out",
                out.display()
            ),
        });
    }
    let r = pretrain::pretrain(&args, &out, &mut TrainBar::new())?;
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
    Ok(ExitCode::SUCCESS)
}
