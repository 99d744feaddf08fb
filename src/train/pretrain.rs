//! Pre-training the shipped base models on the synthetic world's corpus: causal LM for the
//! GPT-style decoder, masked LM for the BERT-style encoder.
//!
//! Everything is deterministic from fixed seeds: the world, the corpus, the validation text, the
//! tokenizer, the initialisation and the batches. The validation set can therefore be rebuilt
//! at any time from a checkpoint's tokenizer ([`validation_loss`]), which is how the tests check
//! that a shipped model still reaches the loss recorded for it.

use crate::autodiff::{ParamStore, Tape, IGNORE_INDEX};
use crate::data::tokenizer::{Preset, Tokenizer};
use crate::data::world::World;
use crate::error::{invalid, Error, Result};
use crate::io::checkpoint;
use crate::nn::{Config, Hooks, Input, NoHooks, Transformer};
use crate::optim::{clip_grad_norm, AdamW, AdamWConfig, Optimizer, Schedule};
use crate::tensor::Float;
use crate::Grads;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The world every shipped model and task is generated from.
pub const WORLD_SEED: u64 = 0;
/// Seed of the pre-training corpus.
pub const CORPUS_SEED: u64 = 1;
/// Seed of the held-out validation text (same world, different documents).
pub const VALIDATION_SEED: u64 = 2;
/// Documents in the validation text, and windows of it used to measure the loss.
const VALIDATION_DOCS: usize = 400;
const VALIDATION_WINDOWS: usize = 64;
/// The validation text is always masked as BERT masks (whatever share training masks), so
/// validation losses stay comparable.
const VALIDATION_MASK_PROB: f64 = 0.15;

/// The two shipped base models.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Base {
    /// Decoder, causal LM pre-training: `models/gpt-tiny`.
    GptTiny,
    /// Encoder, masked LM pre-training: `models/bert-tiny`.
    BertTiny,
}

impl Base {
    pub fn name(self) -> &'static str {
        match self {
            Base::GptTiny => "gpt-tiny",
            Base::BertTiny => "bert-tiny",
        }
    }

    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "gpt-tiny" => Ok(Base::GptTiny),
            "bert-tiny" => Ok(Base::BertTiny),
            other => invalid(
                "pretrain",
                format!("unknown preset {other:?} (gpt-tiny or bert-tiny)"),
            ),
        }
    }

    pub fn tokenizer_preset(self) -> Preset {
        match self {
            Base::GptTiny => Preset::Gpt,
            Base::BertTiny => Preset::Bert,
        }
    }

    fn causal(self) -> bool {
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

/// Token windows and their targets for one batch: ids (B, T) and targets (B·T).
pub struct LmBatch {
    pub ids: Array2<usize>,
    pub targets: Vec<i64>,
}

/// Joins documents into one token stream (GPT: end token between documents) and cuts it into
/// windows: T + 1 tokens for the decoder (inputs and shifted targets), T − 2 for the encoder
/// (wrapped in [CLS] … [SEP] later).
pub fn windows(
    tok: &Tokenizer,
    docs: &[String],
    causal: bool,
    seq_len: usize,
) -> Result<Vec<Vec<u32>>> {
    let sep = if causal { tok.eos_id() } else { tok.sep_id() };
    let sep = sep.ok_or_else(|| Error::Invalid {
        op: "pretrain",
        detail: "tokenizer has no end/[SEP] token".into(),
    })?;
    let mut stream = Vec::new();
    for d in docs {
        stream.extend(tok.encode(d, false)?);
        if causal {
            stream.push(sep);
        }
    }
    let len = if causal { seq_len + 1 } else { seq_len - 2 };
    Ok(stream.chunks_exact(len).map(<[u32]>::to_vec).collect())
}

/// A causal LM batch: inputs are the first T tokens, targets the next T.
pub fn causal_batch(windows: &[&Vec<u32>]) -> LmBatch {
    let t = windows[0].len() - 1;
    let ids = Array2::from_shape_fn((windows.len(), t), |(i, j)| windows[i][j] as usize);
    let targets = windows
        .iter()
        .flat_map(|w| w[1..].iter().map(|&x| x as i64))
        .collect();
    LmBatch { ids, targets }
}

/// A masked LM batch, BERT's recipe: [CLS] w [SEP], a share `mask_prob` of the text tokens
/// chosen (BERT: 15%); of those 80% become [MASK], 10% a random token, 10% stay. Targets are the
/// originals at chosen positions and the ignore index elsewhere.
pub fn masked_batch(
    tok: &Tokenizer,
    windows: &[&Vec<u32>],
    mask_prob: f64,
    rng: &mut StdRng,
) -> Result<LmBatch> {
    let missing = || Error::Invalid {
        op: "pretrain",
        detail: "tokenizer lacks [CLS], [SEP] or [MASK]".into(),
    };
    let (cls, sep, mask) = (
        tok.cls_id().ok_or_else(missing)?,
        tok.sep_id().ok_or_else(missing)?,
        tok.mask_id().ok_or_else(missing)?,
    );
    let n_special = Preset::Bert.special_tokens().len() as u32;
    let v = tok.vocab_size() as u32;
    let t = windows[0].len() + 2;
    let mut ids = Array2::zeros((windows.len(), t));
    let mut targets = vec![IGNORE_INDEX; windows.len() * t];
    for (i, w) in windows.iter().enumerate() {
        ids[[i, 0]] = cls as usize;
        ids[[i, t - 1]] = sep as usize;
        for (j, &x) in w.iter().enumerate() {
            let mut id = x;
            if rng.random::<f64>() < mask_prob {
                targets[i * t + j + 1] = x as i64;
                let r = rng.random::<f64>();
                if r < 0.8 {
                    id = mask;
                } else if r < 0.9 {
                    id = rng.random_range(n_special..v);
                }
            }
            ids[[i, j + 1]] = id as usize;
        }
    }
    Ok(LmBatch { ids, targets })
}

/// Mean cross-entropy of the LM head on a batch, and the number of counted targets. `hooks` is a
/// fine-tuning method's (or [`NoHooks`] for the plain model).
pub fn lm_loss<F: Float>(
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

/// The validation batches: fixed text, fixed masking, rebuilt from the tokenizer alone.
pub fn validation_batches(base: Base, tok: &Tokenizer, seq_len: usize) -> Result<Vec<LmBatch>> {
    let world = World::generate(WORLD_SEED);
    let docs = world.corpus(VALIDATION_DOCS, VALIDATION_SEED);
    let w = windows(tok, &docs, base.causal(), seq_len)?;
    if w.is_empty() {
        return invalid("pretrain", "validation text is shorter than one window");
    }
    let w: Vec<&Vec<u32>> = w.iter().take(VALIDATION_WINDOWS).collect();
    let mut rng = StdRng::seed_from_u64(VALIDATION_SEED);
    w.chunks(16)
        .map(|c| {
            if base.causal() {
                Ok(causal_batch(c))
            } else {
                masked_batch(tok, c, VALIDATION_MASK_PROB, &mut rng)
            }
        })
        .collect()
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
        let (loss, n) = lm_loss(model, &mut tape, hooks, b)?;
        sum += tape.scalar(loss)?.as_f64() * n as f64;
        count += n;
    }
    Ok(sum / count.max(1) as f64)
}

/// Progress reporting, so the library does not print: the CLI draws a bar from these calls.
pub trait Progress {
    fn start(&mut self, _total_steps: usize) {}
    fn step(&mut self, _step: usize, _loss: f64, _lr: f64, _tokens_per_sec: f64) {}
    fn eval(&mut self, _step: usize, _val_loss: f64) {}
    fn message(&mut self, _text: &str) {}
}

/// Silent progress.
impl Progress for () {}

/// Trains a base model from scratch and writes its checkpoint (config.json, model.safetensors,
/// tokenizer.json, pretrain.json) into `out`.
pub fn pretrain(
    args: &PretrainArgs,
    out: &Path,
    progress: &mut dyn Progress,
) -> Result<PretrainReport> {
    // Flush subnormal floats while training, as the Trainer does (see kernels::denormal).
    let _float_mode = crate::kernels::FlushDenormals::for_training();
    let started = Instant::now();
    progress.message("generating the world and its corpus");
    let world = World::generate(WORLD_SEED);
    let corpus = world.corpus(args.docs, CORPUS_SEED);
    progress.message("training the BPE tokenizer");
    let tok = Tokenizer::train_bpe(&corpus, args.vocab_size, args.base.tokenizer_preset())?;
    let causal = args.base.causal();
    let train = windows(&tok, &corpus, causal, args.seq_len)?;
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
    let val = validation_batches(args.base, &tok, args.seq_len)?;

    let config = args.config(tok.vocab_size());
    let mut store = ParamStore::<f32>::new();
    let model = Transformer::new(config.clone(), &mut store, args.seed)?;
    let mut opt = AdamW::new(AdamWConfig {
        weight_decay: args.weight_decay,
        ..AdamWConfig::default()
    })?;
    opt.exclude_from_decay_by_name(&store);
    let schedule = Schedule::Cosine {
        warmup_steps: args.warmup,
        total_steps: args.steps,
    };
    let mut grads = Grads::new(&store);
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(1));
    let mut history = Vec::new();
    let mut tokens_seen = 0;
    progress.start(args.steps);
    for step in 0..args.steps {
        let t0 = Instant::now();
        let picked: Vec<&Vec<u32>> = (0..args.batch_size)
            .map(|_| &train[rng.random_range(0..train.len())])
            .collect();
        let batch = if causal {
            causal_batch(&picked)
        } else {
            masked_batch(&tok, &picked, args.mask_prob, &mut rng)?
        };
        let loss = {
            let mut tape = Tape::new(&store);
            tape.seed(args.seed ^ (step as u64) << 20);
            let (loss, _) = lm_loss(&model, &mut tape, &NoHooks, &batch)?;
            let value = tape.scalar(loss)?.as_f64();
            if !value.is_finite() {
                return invalid("pretrain", format!("loss became {value} at step {step}"));
            }
            tape.backward(loss, &mut grads)?;
            value
        };
        clip_grad_norm(&mut grads, 1.0)?;
        let lr = schedule.lr(args.lr, step);
        opt.step(&mut store, &grads, lr);
        grads.zero();
        tokens_seen += batch.ids.len();
        progress.step(
            step,
            loss,
            lr,
            batch.ids.len() as f64 / t0.elapsed().as_secs_f64(),
        );
        let last = step + 1 == args.steps;
        let val_loss = if (step + 1) % args.eval_every.max(1) == 0 || last {
            let v = validation_loss(&model, &store, &NoHooks, &val)?;
            progress.eval(step, v);
            Some(v)
        } else {
            None
        };
        if step % 10 == 0 || val_loss.is_some() {
            history.push(LogPoint {
                step,
                train_loss: loss,
                val_loss,
            });
        }
    }
    let val_loss = validation_loss(&model, &store, &NoHooks, &val)?;
    let report = PretrainReport {
        args: args.clone(),
        params: store.num_params(),
        corpus_tokens,
        tokens_seen,
        seconds: started.elapsed().as_secs_f64(),
        val_loss,
        val_perplexity: val_loss.exp(),
        history,
    };
    checkpoint::save(out, &config, &store)?;
    tok.save(out.join(checkpoint::TOKENIZER))?;
    let json = serde_json::to_string_pretty(&report).expect("report serialises");
    crate::io::atomic_write(&out.join("pretrain.json"), json.as_bytes())?;
    Ok(report)
}
