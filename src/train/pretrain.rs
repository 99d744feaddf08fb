//! Pre-training the shipped base models on the synthetic world's corpus: causal LM for the
//! GPT-style decoder, masked LM for the BERT-style encoder.
//!
//! Everything is deterministic from fixed seeds: the world, the corpus, the validation text, the
//! tokenizer, the initialisation and the batches. The validation set can therefore be rebuilt
//! at any time from a checkpoint's tokenizer ([`validation_loss`]), which is how the tests check
//! that a shipped model still reaches the loss recorded for it.
//!
//! The training itself is the Trainer's loop with pre-training as its task (windows drawn at
//! random, the LM loss); the windows and batches come from [`crate::data::lm`].

use super::args::{ScheduleKind, Strategy};
use super::progress::Progress;
use super::trainer::{self, Metrics, MicroBatch, Split, TrainTask, Training};
use super::TrainingArgs;
use crate::autodiff::{ParamStore, Tape, IGNORE_INDEX};
use crate::data::lm::{
    causal_batch, masked_batch, validation_batches, windows, LmBatch, CORPUS_SEED, WORLD_SEED,
};
use crate::data::tokenizer::{Preset, Tokenizer};
use crate::data::world::World;
use crate::error::{invalid, Result};
use crate::io::checkpoint;
use crate::nn::{Config, Hooks, Input, NoHooks, Transformer};
use crate::tensor::Float;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

/// The two shipped base models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum Base {
    /// Decoder, causal LM pre-training: `models/gpt-tiny`.
    GptTiny,
    /// Encoder, masked LM pre-training: `models/bert-tiny`.
    BertTiny,
}

impl Base {
    /// Every shipped base.
    pub const ALL: [Base; 2] = [Base::GptTiny, Base::BertTiny];

    pub fn name(self) -> &'static str {
        match self {
            Base::GptTiny => "gpt-tiny",
            Base::BertTiny => "bert-tiny",
        }
    }

    pub fn tokenizer_preset(self) -> Preset {
        match self {
            Base::GptTiny => Preset::Gpt,
            Base::BertTiny => Preset::Bert,
        }
    }

    /// Whether the base is a decoder trained as a causal LM (else an encoder, masked LM).
    pub fn causal(self) -> bool {
        self == Base::GptTiny
    }
}

/// Pre-training options, with the defaults that produced the shipped models.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainArgs {
    pub base: Base,
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_layers: usize,
    pub seq_len: usize,
    pub docs: usize,
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub warmup: usize,
    /// Share of text tokens the masked LM predicts (BERT: 0.15; bert-tiny: 0.4, which Wettig et
    /// al. 2022 found better, and which here gives 2.7 times the targets per step).
    #[serde(default = "default_mask_prob")]
    pub mask_prob: f64,
    pub weight_decay: f64,
    pub eval_every: usize,
    pub seed: u64,
}

impl PretrainArgs {
    pub fn new(base: Base) -> Self {
        Self {
            base,
            vocab_size: 1024,
            d_model: 128,
            n_heads: 4,
            n_layers: 4,
            seq_len: 128,
            docs: 20_000,
            steps: match base {
                Base::GptTiny => 1500,
                Base::BertTiny => 4000,
            },
            batch_size: 16,
            lr: 1e-3,
            warmup: 100,
            mask_prob: match base {
                Base::GptTiny => 0.15,
                Base::BertTiny => 0.4,
            },
            weight_decay: 0.01,
            eval_every: 250,
            seed: 0,
        }
    }

    /// Checks every option is within its range, before anything is generated or allocated; the
    /// error names the `tunelab pretrain` flag.
    pub fn validate(&self) -> Result<()> {
        use super::args::{MAX_BATCH_SIZE, MAX_STEPS};
        let count = |flag: &'static str, v: usize, lo: usize, hi: usize| {
            if v < lo || v > hi {
                invalid(flag, format!("must be between {lo} and {hi}, got {v}"))
            } else {
                Ok(())
            }
        };
        count("--steps", self.steps, 1, MAX_STEPS)?;
        count("--batch-size", self.batch_size, 1, MAX_BATCH_SIZE)?;
        count("--docs", self.docs, 1, 10_000_000)?;
        count("--seq-len", self.seq_len, 2, 1 << 16)?;
        count("--d-model", self.d_model, 1, 1 << 14)?;
        count("--layers", self.n_layers, 1, 1024)?;
        count("--warmup", self.warmup, 0, MAX_STEPS)?;
        count("--eval-every", self.eval_every, 1, MAX_STEPS)?;
        count("vocab_size", self.vocab_size, 1, 1 << 20)?;
        count("n_heads", self.n_heads, 1, 1 << 10)?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return invalid(
                "--d-model",
                format!(
                    "{} is not a multiple of the {} attention heads",
                    self.d_model, self.n_heads
                ),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return invalid(
                "--lr",
                format!("must be a finite number above 0, got {}", self.lr),
            );
        }
        if !(self.mask_prob > 0.0 && self.mask_prob < 1.0) {
            return invalid(
                "--mask-prob",
                format!(
                    "must be a share of the tokens, above 0 and below 1, got {}",
                    self.mask_prob
                ),
            );
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return invalid(
                "weight_decay",
                format!(
                    "must be a finite number, 0 or more, got {}",
                    self.weight_decay
                ),
            );
        }
        Ok(())
    }

    /// The model configuration these options describe (dropout 0.1, max_len = seq_len).
    pub fn config(&self, vocab_size: usize) -> Config {
        let (v, c, nh, l, t) = (
            vocab_size,
            self.d_model,
            self.n_heads,
            self.n_layers,
            self.seq_len,
        );
        match self.base {
            Base::GptTiny => Config::gpt(v, c, nh, l, t),
            Base::BertTiny => Config::bert(v, c, nh, l, t),
        }
    }
}

fn default_mask_prob() -> f64 {
    0.15
}

/// One logged point of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPoint {
    pub step: usize,
    pub train_loss: f64,
    pub val_loss: Option<f64>,
}

/// What a run measured; written beside the checkpoint as `pretrain.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PretrainReport {
    pub args: PretrainArgs,
    pub params: usize,
    pub corpus_tokens: usize,
    pub tokens_seen: usize,
    pub seconds: f64,
    pub val_loss: f64,
    pub val_perplexity: f64,
    pub history: Vec<LogPoint>,
}

/// Mean cross-entropy of the LM head on a batch, and the number of counted targets. `hooks` is a
/// fine-tuning method's (or [`NoHooks`] for the plain model).
pub fn lm_batch_loss<F: Float>(
    model: &Transformer,
    tape: &mut Tape<'_, F>,
    hooks: &dyn Hooks<F>,
    batch: &LmBatch,
) -> Result<(crate::Var, usize)> {
    let h = model.forward(tape, hooks, &Input::new(batch.ids.view()))?;
    let logits = model.lm_logits(tape, hooks, h)?;
    let loss = tape.cross_entropy(logits, &batch.targets, IGNORE_INDEX)?;
    Ok((
        loss,
        batch.targets.iter().filter(|&&t| t != IGNORE_INDEX).count(),
    ))
}

/// Token-weighted mean loss over the validation batches, in evaluation mode, through `hooks`.
pub fn validation_loss<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    batches: &[LmBatch],
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for b in batches {
        let mut tape = Tape::inference(store);
        let (loss, n) = lm_batch_loss(model, &mut tape, hooks, b)?;
        sum += tape.scalar(loss)?.as_f64() * n as f64;
        count += n;
    }
    Ok(sum / count.max(1) as f64)
}

/// Pre-training as a task of the Trainer. Each micro-batch is `batch_size` windows drawn at random
/// (with replacement) from the corpus, then masked for the encoder, all from one random stream;
/// evaluation is the loss on the validation batches.
struct Pretraining<'a> {
    model: &'a Transformer,
    tok: &'a Tokenizer,
    train: &'a [Vec<u32>],
    validation: &'a [LmBatch],
    args: &'a PretrainArgs,
    /// Draws the windows and the masks, in micro-batch order.
    rng: RefCell<StdRng>,
    /// The next micro-batch the stream is positioned for (batches cannot be drawn out of order).
    next_micro: Cell<usize>,
    /// Input tokens of every batch drawn so far.
    tokens_seen: Cell<usize>,
    /// Input tokens of the last batch drawn.
    last_tokens: Cell<usize>,
}

impl<F: Float> TrainTask<F> for Pretraining<'_> {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn model(&self) -> Option<&Transformer> {
        Some(self.model)
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(crate::Var, usize)> {
        if batch.micro != self.next_micro.get() {
            return invalid(
                "pretrain",
                format!(
                    "micro-batch {} asked for, the random stream is at {} (pre-training cannot resume)",
                    batch.micro,
                    self.next_micro.get()
                ),
            );
        }
        self.next_micro.set(batch.micro + 1);
        // Dropout seeded per micro-batch the way the shipped models were trained (not the
        // Trainer's default), so they can be reproduced.
        tape.seed(self.args.seed ^ ((batch.micro as u64) << 20));
        let rng = &mut *self.rng.borrow_mut();
        let picked: Vec<&Vec<u32>> = (0..self.args.batch_size)
            .map(|_| &self.train[rng.random_range(0..self.train.len())])
            .collect();
        let lm = if self.args.base.causal() {
            causal_batch(&picked)
        } else {
            masked_batch(self.tok, &picked, self.args.mask_prob, rng)?
        };
        // The mean over the counted targets (every next token of a causal window, the masked
        // positions of the encoder's), and their count: what accumulation weights by.
        let (loss, targets) = lm_batch_loss(self.model, tape, hooks, &lm)?;
        let tokens = lm.ids.len();
        self.tokens_seen.set(self.tokens_seen.get() + tokens);
        self.last_tokens.set(tokens);
        Ok((loss, targets))
    }

    fn tokens(&self, _batch: &MicroBatch<'_>) -> Option<usize> {
        Some(self.last_tokens.get())
    }

    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        _limit: usize,
        _batch_size: usize,
    ) -> Result<Metrics> {
        if split != Split::Validation {
            return invalid("pretrain", "pre-training has a validation text only");
        }
        let loss = validation_loss(self.model, store, hooks, self.validation)?;
        Ok(BTreeMap::from([("loss".to_string(), loss)]))
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        Some(vec!["loss"])
    }
}

/// Trains a base model from scratch and writes its checkpoint (config.json, model.safetensors,
/// tokenizer.json, pretrain.json) as the directory `out`, replacing any directory there as a
/// whole (whether one may be replaced is the caller's decision: `tunelab pretrain --force`). The loop is the Trainer's: AdamW with its
/// weight-decay exclusions, warmup then cosine decay, the gradient norm clipped at 1.
pub fn pretrain(
    args: &PretrainArgs,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<PretrainReport> {
    // Flush subnormal floats for the whole run, the final validation included, as the Trainer
    // does while it trains (see kernels::denormal).
    args.validate()?;
    let _float_mode = crate::kernels::FlushDenormals::for_training();
    let started = Instant::now();
    progress.line("generating the world and its corpus");
    let world = World::generate(WORLD_SEED);
    let corpus = world.corpus(args.docs, CORPUS_SEED);
    progress.line("training the BPE tokenizer");
    let tok = Tokenizer::train_bpe(&corpus, args.vocab_size, args.base.tokenizer_preset())?;
    let train = windows(&tok, &corpus, args.base.causal(), args.seq_len)?;
    if train.len() < args.batch_size {
        return invalid(
            "pretrain",
            format!(
                "only {} windows of text for a batch of {}",
                train.len(),
                args.batch_size
            ),
        );
    }
    let corpus_tokens = train.iter().map(Vec::len).sum();
    let val = validation_batches(&tok, args.base.causal(), args.seq_len)?;

    let config = args.config(tok.vocab_size());
    let mut store = ParamStore::<f32>::new();
    let model = Transformer::new(config.clone(), &mut store, args.seed)?;
    let task = Pretraining {
        model: &model,
        tok: &tok,
        train: &train,
        validation: &val,
        args,
        rng: RefCell::new(StdRng::seed_from_u64(args.seed.wrapping_add(1))),
        next_micro: Cell::new(0),
        tokens_seen: Cell::new(0),
        last_tokens: Cell::new(0),
    };
    let targs = TrainingArgs {
        output_dir: out.to_path_buf(),
        max_steps: Some(args.steps),
        batch_size: args.batch_size,
        learning_rate: args.lr,
        schedule: ScheduleKind::Cosine,
        warmup_steps: args.warmup,
        weight_decay: args.weight_decay,
        max_grad_norm: 1.0,
        eval_strategy: Strategy::Steps,
        eval_steps: args.eval_every.max(1),
        save_strategy: Strategy::No,
        metric_for_best_model: "loss".into(),
        seed: args.seed,
        ..TrainingArgs::default()
    };
    let report = trainer::train(
        Training::new(&targs, &task, &mut store)
            .log_file(false)
            .progress(progress),
    )?;
    // The history: the training loss every 10 steps (from 0) and at every evaluation.
    let evals: BTreeMap<usize, f64> = report
        .state
        .log
        .iter()
        .filter_map(|e| Some((e.step - 1, *e.eval.as_ref()?.get("loss")?)))
        .collect();
    let history = report
        .state
        .losses
        .iter()
        .enumerate()
        .filter_map(|(step, &train_loss)| {
            let val_loss = evals.get(&step).copied();
            (step % 10 == 0 || val_loss.is_some()).then_some(LogPoint {
                step,
                train_loss,
                val_loss,
            })
        })
        .collect();
    let val_loss = validation_loss(&model, &store, &NoHooks, &val)?;
    let report = PretrainReport {
        args: args.clone(),
        params: store.num_params(),
        corpus_tokens,
        tokens_seen: task.tokens_seen.get(),
        seconds: started.elapsed().as_secs_f64(),
        val_loss,
        val_perplexity: val_loss.exp(),
        history,
    };
    // The model directory is written whole, then renamed into place (replacing any directory
    // there): its config, weights and tokenizer always belong together.
    let tmp = crate::io::temp_dir_for(out)?;
    checkpoint::save(&tmp, &config, &store)?;
    tok.save(tmp.join(checkpoint::TOKENIZER))?;
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    crate::io::atomic_write(&tmp.join("pretrain.json"), json.as_bytes())?;
    crate::io::replace_dir(&tmp, out)?;
    Ok(report)
}
