//! Pitfall: exploding (and vanishing) gradients in a deep model. A deep decoder in the original
//! post-LN wiring (LayerNorm after each residual add, as BERT and the 2017 Transformer) is
//! trained with plain SGD with momentum — whose step is proportional to the gradient, so a
//! gradient spike becomes a weight spike — without clipping, with the global gradient norm
//! clipped, and in the pre-LN wiring (LayerNorm before each sublayer, as GPT-2). The gradient
//! norm of every block at the first step shows where gradients are large and where they fade.
//!
//! Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture") show that at
//! initialisation post-LN gradients grow toward the output layers while pre-LN ones stay level.
//!
//! The runs train through the Trainer (SGD as its optimizer, the LM loss on fixed batches as its
//! task); a loss that becomes NaN or infinite ends a run as divergence, not as an error.

use crate::data::lm::{causal_batch, windows, LmBatch, WORLD_SEED};
use crate::data::world::World;
use crate::error::{invalid, Result};
use crate::lab::evidence::{nan_as_inf, num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::load_base;
use crate::lab::runs::{Recorder, BASE};
use crate::nn::{Config, Hooks, NoHooks, Transformer};
use crate::optim::{grad_norms, Sgd, SgdConfig};
use crate::peft::full::block_index;
use crate::train::args::{ScheduleKind, Strategy};
use crate::train::pretrain::{lm_batch_loss, validation_loss};
use crate::train::progress::{Metrics, Progress};
use crate::train::trainer::{self, MicroBatch, Split, TrainTask, Training};
use crate::train::TrainingArgs;
use crate::{Float, Grads, ParamStore, Tape, Var};
use serde::Serialize;
use std::cell::RefCell;

/// One training run of the deep model.
#[derive(Debug, Clone, Serialize)]
pub struct ExplodeRun {
    pub label: String,
    pub pre_ln: bool,
    pub clip: Option<f64>,
    /// Training loss per step (stops at the first non-finite one).
    pub losses: Vec<f64>,
    /// Global gradient norm per step, before clipping.
    pub grad_norms: Vec<f64>,
    /// Gradient norm of each block's parameters at the first step, block 0 first.
    pub layer_norms: Vec<f64>,
    /// The step whose loss was NaN or infinite, if any.
    pub diverged_at: Option<usize>,
}

impl ExplodeRun {
    pub fn first_loss(&self) -> f64 {
        self.losses.first().copied().unwrap_or(f64::NAN)
    }
    /// Mean loss of the last five steps, NaN if the run diverged.
    pub fn final_loss(&self) -> f64 {
        if self.diverged_at.is_some() {
            return f64::NAN;
        }
        let t = &self.losses[self.losses.len().saturating_sub(5)..];
        t.iter().sum::<f64>() / t.len().max(1) as f64
    }
    /// The run ended no better than it started (or diverged).
    pub fn blew_up(&self) -> bool {
        nan_as_inf(self.final_loss()) >= self.first_loss()
    }
    pub fn max_grad_norm(&self) -> f64 {
        self.grad_norms.iter().copied().fold(0.0, f64::max)
    }
    /// The largest block gradient norm over the smallest, at step 1: 1 when every block gets
    /// the same share, large when some blocks' gradients have faded.
    pub fn layer_spread(&self) -> f64 {
        let max = self.layer_norms.iter().copied().fold(0.0, f64::max);
        let min = self
            .layer_norms
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min);
        max / min
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Explode {
    pub layers: usize,
    pub d_model: usize,
    pub steps: usize,
    pub lr: f64,
    pub clip: f64,
    /// post-LN without and with clipping, then pre-LN without and with clipping.
    pub runs: Vec<ExplodeRun>,
}

/// Plain SGD with momentum 0.9, at a learning rate where unclipped gradients can blow up (at 0.1
/// neither wiring blew up in a quick run here).
pub const LR: f64 = 0.5;
pub const CLIP: f64 = 1.0;

/// Language modelling on fixed batches taken in turn, one per optimizer step. Records every loss
/// it computes, so a run that diverges keeps the loss that did.
struct CycledBatches<'a> {
    model: &'a Transformer,
    batches: &'a [LmBatch],
    losses: RefCell<Vec<f64>>,
}

impl TrainTask<f32> for CycledBatches<'_> {
    fn train_len(&self) -> usize {
        self.batches.iter().map(|b| b.ids.nrows()).sum()
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, f32>,
        hooks: &dyn Hooks<f32>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        let (loss, targets) = lm_batch_loss(
            self.model,
            tape,
            hooks,
            &self.batches[batch.step % self.batches.len()],
        )?;
        self.losses.borrow_mut().push(tape.scalar(loss)?.as_f64());
        Ok((loss, targets))
    }

    fn evaluate(
        &self,
        store: &ParamStore<f32>,
        hooks: &dyn Hooks<f32>,
        _split: Split,
        _limit: usize,
        _batch_size: usize,
    ) -> Result<Metrics> {
        let loss = validation_loss(self.model, store, hooks, self.batches)?;
        Ok(Metrics::from([("loss".to_string(), loss)]))
    }
}

/// The gradient norm of each block's parameters for the loss of `batch`, at the weights of
/// `store` (all zero when the loss is not finite). A single backward pass, outside any training:
/// the Trainer's first step computes these same gradients, and this reads them per block.
fn block_grad_norms(
    model: &Transformer,
    store: &ParamStore<f32>,
    batch: &LmBatch,
) -> Result<Vec<f64>> {
    let mut norms = vec![0.0; model.config.n_layers];
    let mut grads = Grads::new(store);
    let mut tape = Tape::new(store);
    let (loss, _) = lm_batch_loss(model, &mut tape, &NoHooks, batch)?;
    if !tape.scalar(loss)?.as_f64().is_finite() {
        return Ok(norms);
    }
    tape.backward(loss, &mut grads)?;
    for (name, n) in grad_norms(store, &grads) {
        if let Some(i) = block_index(&name) {
            norms[i] = (norms[i].powi(2) + n * n).sqrt();
        }
    }
    Ok(norms)
}

fn train(
    label: &str,
    seed: u64,
    config: &Config,
    batches: &[LmBatch],
    steps: usize,
    clip: Option<f64>,
    progress: &mut dyn Progress,
) -> Result<ExplodeRun> {
    progress.line(&format!("training {label} for {steps} steps"));
    let Some(first) = batches.first() else {
        return invalid("explode", "no batch of text to train on");
    };
    let mut store = ParamStore::<f32>::new();
    let model = Transformer::new(config.clone(), &mut store, seed)?;
    let layer_norms = block_grad_norms(&model, &store, first)?;
    let args = TrainingArgs {
        max_steps: Some(steps),
        batch_size: first.ids.nrows(),
        learning_rate: LR,
        schedule: ScheduleKind::Constant,
        warmup_steps: 0,
        weight_decay: 0.0,
        max_grad_norm: clip.unwrap_or(0.0), // 0: no clipping
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        ..TrainingArgs::default()
    };
    let task = CycledBatches {
        model: &model,
        batches,
        losses: RefCell::new(Vec::new()),
    };
    let sgd = Sgd::new(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    })?;
    let mut record = Recorder::default();
    // Subnormals are kept (IEEE arithmetic), as this experiment has always measured: a model
    // on its way to blowing up makes them (softmax tails), and flushing them changes its losses.
    let result = trainer::train(
        Training::new(&args, &task, &mut store)
            .optimizer(Box::new(sgd))
            .flush_denormals(false)
            .log_file(false)
            .progress(&mut record),
    );
    let diverged_at = match result {
        Ok(_) => None,
        Err(e) if trainer::is_divergence(&e) => Some(task.losses.borrow().len()),
        Err(e) => return Err(e),
    };
    Ok(ExplodeRun {
        label: label.into(),
        pre_ln: config.pre_ln,
        clip,
        losses: task.losses.into_inner(),
        grad_norms: record.grad_norms,
        layer_norms,
        diverged_at,
    })
}

pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Explode> {
    let layers = mode.pick(8, 16);
    let d_model = 64;
    let steps = mode.pick(30, 150);
    let seq = 32;
    let base = load_base(BASE)?;
    let docs = World::generate(WORLD_SEED).corpus(mode.pick(60, 300), 11);
    let w = windows(&base.tok, &docs, true, seq)?;
    let batches: Vec<LmBatch> = w
        .chunks_exact(8)
        .map(|c| causal_batch(&c.iter().collect::<Vec<_>>()))
        .collect();
    let mut config = Config::gpt(base.tok.vocab_size(), d_model, 4, layers, seq);
    config.dropout = 0.0;
    let mut post = config.clone();
    post.pre_ln = false;
    let runs = vec![
        train(
            "post-LN, no clipping",
            seed,
            &post,
            &batches,
            steps,
            None,
            progress,
        )?,
        train(
            "post-LN, clipping at 1.0",
            seed,
            &post,
            &batches,
            steps,
            Some(CLIP),
            progress,
        )?,
        train(
            "pre-LN, no clipping",
            seed,
            &config,
            &batches,
            steps,
            None,
            progress,
        )?,
        train(
            "pre-LN, clipping at 1.0",
            seed,
            &config,
            &batches,
            steps,
            Some(CLIP),
            progress,
        )?,
    ];
    Ok(Explode {
        layers,
        d_model,
        steps,
        lr: LR,
        clip: CLIP,
        runs,
    })
}

impl Explode {
    pub fn post(&self) -> &ExplodeRun {
        &self.runs[0]
    }
    pub fn clipped(&self) -> &ExplodeRun {
        &self.runs[1]
    }
    pub fn pre(&self) -> &ExplodeRun {
        &self.runs[2]
    }
    pub fn pre_clipped(&self) -> &ExplodeRun {
        &self.runs[3]
    }
}

impl Evidence for Explode {
    fn render(&self) -> String {
        let mut s = format!(
            "a {}-block decoder (C = {}) trained from scratch on world text, SGD with momentum 0.9 at lr {}, {} steps\n\n",
            self.layers, self.d_model, self.lr, self.steps
        );
        s.push_str("gradient norm of each block at the first step:\n");
        let rows: Vec<Vec<String>> = (0..self.layers)
            .map(|i| {
                vec![
                    format!("block {i}"),
                    format!("{:.3e}", self.post().layer_norms[i]),
                    format!("{:.3e}", self.pre().layer_norms[i]),
                ]
            })
            .collect();
        s.push_str(&table(&["", "post-LN", "pre-LN"], &rows));
        s.push('\n');
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    num(r.first_loss(), 3),
                    num(r.final_loss(), 3),
                    format!("{:.2e}", r.max_grad_norm()),
                    r.diverged_at
                        .map_or("no".into(), |s| format!("at step {s}")),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "run",
                "first loss",
                "last-5 loss",
                "max grad norm",
                "diverged",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (post, clipped, pre, pre_clipped) =
            (self.post(), self.clipped(), self.pre(), self.pre_clipped());
        let blew_up = ExplodeRun::blew_up;
        // How far the loss fell: positive when the run trained, -inf when it diverged.
        let fell = |r: &ExplodeRun| r.first_loss() - nan_as_inf(r.final_loss());
        vec![
            Claim::new(
                "post-LN spreads gradients over the blocks more unevenly than pre-LN at initialisation",
                post.layer_spread() > pre.layer_spread(),
            )
            .measured(
                "largest/smallest block gradient norm, post-LN over pre-LN",
                post.layer_spread() / pre.layer_spread(),
                Fmt::Times(1),
            ),
            Claim::new("without clipping the post-LN run blows up", blew_up(post)).measured(
                "post-LN unclipped: first − last-5 loss",
                fell(post),
                Fmt::Signed(3),
            ),
            Claim::new(
                format!("clipping the gradient norm at {} keeps it training", self.clip),
                !blew_up(clipped),
            )
            .measured(
                "post-LN clipped: first − last-5 loss",
                fell(clipped),
                Fmt::Signed(3),
            ),
            Claim::new(
                "pre-LN alone keeps it training at this learning rate",
                !blew_up(pre),
            )
            .measured(
                "pre-LN unclipped: first − last-5 loss",
                fell(pre),
                Fmt::Signed(3),
            ),
            Claim::new("pre-LN with clipping trains", !blew_up(pre_clipped)).measured(
                "pre-LN clipped: first − last-5 loss",
                fell(pre_clipped),
                Fmt::Signed(3),
            ),
        ]
    }
}
