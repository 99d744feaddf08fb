//! The reward model as a Trainer task: a decoder base, a fine-tuning method and a
//! [`RewardHead`], trained on preference pairs with the Bradley–Terry loss ([`RewardLoss`]), as
//! TRL's `RewardTrainer` trains `AutoModelForSequenceClassification(num_labels=1)`.
//!
//! Each pair is read as two sequences, `prompt + " " + chosen` and `prompt + " " + rejected`,
//! each ended by the end token (TRL appends the EOS token to both responses), encoded as
//! generation examples are ([`crate::data::encode`]). A micro-batch of N pairs runs the model
//! once on 2N rows, the chosen ones first (TRL's collator concatenates them the same way), the
//! head scores each row on its last real token, and the loss compares row i with row N + i. The
//! loss terms are the pairs, so gradient accumulation weights micro-batches by their pairs.
//!
//! A pair longer than `max_len` tokens is refused, naming it (TRL drops such pairs): truncated,
//! the chosen and rejected rows would be scored on cut-off text.
//!
//! Evaluation reports the loss, pairwise accuracy (the share of pairs with r_c > r_r; a tie
//! counts as wrong), the mean margin r_c − r_r, the mean chosen and rejected rewards, and for
//! data that knows each pair's kind ([`crate::data::preference::build_tagged`]) the accuracy
//! per kind. [`RewardTask::reward`] scores any (prompt, response) with the trained model: a
//! reward for RL.
//!
//! [`prepare`] binds the task and applies a method from the registry ([`crate::peft::apply`]),
//! as `lab::finetune::prepare` does for the other tasks: LoRA and the other frozen-base methods
//! train their parameters and the head, full fine-tuning trains everything.

use super::trainer::{eval_subset, Metrics, MicroBatch, Split, TrainTask};
use crate::autodiff::{ParamStore, Tape, Var};
use crate::data::batch::{pad, PadSide};
use crate::data::encode::encode_memo;
use crate::data::preference::{PairKinds, PreferencePair, PreferenceSplits, KINDS};
use crate::data::tasks::Example;
use crate::data::tokenizer::Tokenizer;
use crate::error::{invalid, Error, Result};
use crate::loss::RewardLoss;
use crate::nn::heads::RewardHead;
use crate::nn::{Hooks, Input, Transformer};
use crate::peft::{self, Method, MethodSpec};
use crate::tensor::Float;

/// The accuracy metric of each of [`KINDS`], index for index: `accuracy_<kind>`.
pub const KIND_ACCURACY: [&str; 4] = [
    "accuracy_fact",
    "accuracy_evasion",
    "accuracy_style",
    "accuracy_code",
];

/// The metrics every evaluation reports (the per-kind accuracies come on top when the data has
/// kinds).
pub const METRICS: [&str; 6] = [
    "loss",
    "score",
    "accuracy",
    "margin",
    "reward_chosen",
    "reward_rejected",
];

/// TRL's `RewardConfig` options that tunelab has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RewardOptions {
    /// η of the centering penalty η · mean((r_c + r_r)²) ([`RewardLoss`]); `None`: none.
    pub center_rewards_coefficient: Option<f64>,
    /// Train without dropout (TRL's default, `disable_dropout=True`): with dropout the two rows
    /// of a pair would be scored by two different sub-networks.
    pub disable_dropout: bool,
    /// Tokens per sequence at most; `None`: the model's `max_len`.
    pub max_len: Option<usize>,
}

impl Default for RewardOptions {
    fn default() -> Self {
        Self {
            center_rewards_coefficient: None,
            disable_dropout: true,
            max_len: None,
        }
    }
}

/// A pair as the model reads it: the token ids of both sequences, and its kind if known.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodedPair {
    pub chosen: Vec<u32>,
    pub rejected: Vec<u32>,
    pub kind: Option<&'static str>,
}

/// The rewards a model gave a list of pairs, and its mean loss on them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairScores {
    pub chosen: Vec<f64>,
    pub rejected: Vec<f64>,
    pub loss: f64,
}

/// A reward model bound to its data: the base (its copy of the transformer), the head, the
/// loss, and the encoded pairs of each split.
pub struct RewardTask {
    pub model: Transformer,
    pub head: RewardHead,
    pub tok: Tokenizer,
    pub loss: RewardLoss,
    pub max_len: usize,
    pub train: Vec<EncodedPair>,
    pub validation: Vec<EncodedPair>,
    pub test: Vec<EncodedPair>,
}

/// Binds a reward model to `model` (a decoder) and applies the method `spec`: the head is
/// created in `store` (seeded), the method's parameters and the head train, the rest is frozen
/// as the method says. `kinds`, when given, tags every pair of `splits` (index for index).
#[allow(clippy::too_many_arguments)]
pub fn prepare<F: Float>(
    model: &Transformer,
    store: &mut ParamStore<F>,
    tok: &Tokenizer,
    splits: &PreferenceSplits,
    kinds: Option<&PairKinds>,
    spec: &MethodSpec,
    options: RewardOptions,
    seed: u64,
) -> Result<(RewardTask, Box<dyn Method<F>>)> {
    let task = RewardTask::new(model, store, tok, splits, kinds, options, seed)?;
    let method = peft::apply(spec, model, store, seed)?;
    for id in task.head.params() {
        store.set_trainable(id, true);
    }
    Ok((task, method))
}

impl RewardTask {
    /// The task without a method (every parameter keeps its trainable flag; the head's is
    /// trainable): see [`prepare`] for the usual way in.
    pub fn new<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        tok: &Tokenizer,
        splits: &PreferenceSplits,
        kinds: Option<&PairKinds>,
        options: RewardOptions,
        seed: u64,
    ) -> Result<Self> {
        if !model.config.causal {
            return invalid(
                "reward",
                "a reward model scores a sequence on its last token, which needs a decoder (a causal model such as gpt-tiny), not an encoder",
            );
        }
        if splits.train.is_empty() {
            return invalid("reward", "no training pairs");
        }
        let max_len = match options.max_len {
            None => model.config.max_len,
            Some(m) if m > 0 && m <= model.config.max_len => m,
            Some(m) => {
                return invalid(
                    "max_len",
                    format!(
                        "{m} tokens asked for, the model takes at most {} (its config's max_len) and at least 1",
                        model.config.max_len
                    ),
                )
            }
        };
        let mut model = model.clone();
        if options.disable_dropout {
            model.config.dropout = 0.0;
        }
        let no_kinds = PairKinds::default();
        let k = kinds.unwrap_or(&no_kinds);
        let encode = |pairs: &[PreferencePair], kinds: &[&'static str], split: &str| {
            if !kinds.is_empty() && kinds.len() != pairs.len() {
                return invalid(
                    "reward",
                    format!("{} kinds for {} {split} pairs", kinds.len(), pairs.len()),
                );
            }
            pairs
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let seq = |response: &str, field: &str| {
                        encode_response(tok, &p.prompt, response, max_len).map_err(|detail| {
                            Error::Invalid {
                                op: "encode",
                                detail: format!(
                                    "{split} pair {} (1-based), field {field:?}: {detail}",
                                    i + 1
                                ),
                            }
                        })
                    };
                    Ok(EncodedPair {
                        chosen: seq(&p.chosen, "chosen")?,
                        rejected: seq(&p.rejected, "rejected")?,
                        kind: kinds.get(i).copied(),
                    })
                })
                .collect::<Result<Vec<_>>>()
        };
        let train = encode(&splits.train, &k.train, "train")?;
        let validation = encode(&splits.validation, &k.validation, "validation")?;
        let test = encode(&splits.test, &k.test, "test")?;
        let head = RewardHead::new(store, &model, seed)?;
        Ok(Self {
            model,
            head,
            tok: tok.clone(),
            loss: RewardLoss {
                center_rewards_coefficient: options.center_rewards_coefficient,
            },
            max_len,
            train,
            validation,
            test,
        })
    }

    /// A reward model without data, for scoring ([`RewardTask::reward`]): the head is created in
    /// `store` (seeded) for a saved reward model's weights to fill
    /// ([`crate::lab::align::load_reward_model`]). Dropout is off, as in training.
    pub fn scorer<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        tok: &Tokenizer,
        seed: u64,
    ) -> Result<Self> {
        if !model.config.causal {
            return invalid(
                "reward",
                "a reward model scores a sequence on its last token, which needs a decoder",
            );
        }
        let mut model = model.clone();
        model.config.dropout = 0.0;
        let head = RewardHead::new(store, &model, seed)?;
        Ok(Self {
            max_len: model.config.max_len,
            model,
            head,
            tok: tok.clone(),
            loss: RewardLoss {
                center_rewards_coefficient: None,
            },
            train: Vec::new(),
            validation: Vec::new(),
            test: Vec::new(),
        })
    }

    fn pad_id(&self) -> u32 {
        self.tok.pad_id().unwrap_or(0)
    }

    /// The rewards (B,) of token sequences, on the tape.
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        seqs: &[Vec<u32>],
    ) -> Result<Var> {
        if let Some((i, s)) = seqs
            .iter()
            .enumerate()
            .find(|(_, s)| s.len() > self.max_len)
        {
            return invalid(
                "reward",
                format!(
                    "sequence {i} has {} tokens, more than max_len {}",
                    s.len(),
                    self.max_len
                ),
            );
        }
        let b = pad(seqs, self.pad_id(), PadSide::Right, Some(self.max_len))?;
        let input = Input::new(b.ids.view())
            .with_mask(b.attention_mask.view())
            .with_positions(b.positions.view());
        let h = self.model.forward(tape, hooks, &input)?;
        self.head
            .forward(tape, hooks, &self.model, h, Some(b.attention_mask.view()))
    }

    /// The loss of a batch of pairs and the chosen and rejected rewards (N,) each.
    pub fn pair_forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        pairs: &[&EncodedPair],
    ) -> Result<(Var, Var, Var)> {
        let n = pairs.len();
        if n == 0 {
            return invalid("reward", "no pairs in the batch");
        }
        let seqs: Vec<Vec<u32>> = pairs
            .iter()
            .map(|p| p.chosen.clone())
            .chain(pairs.iter().map(|p| p.rejected.clone()))
            .collect();
        let r = self.forward(tape, hooks, &seqs)?;
        let chosen = tape.slice(r, 0, 0, n)?;
        let rejected = tape.slice(r, 0, n, 2 * n)?;
        let loss = self.loss.forward(tape, chosen, rejected, None)?;
        Ok((loss, chosen, rejected))
    }

    /// The rewards of every pair of `pairs` and the mean loss, in evaluation mode, in batches of
    /// `batch_size` pairs.
    pub fn score_pairs<F: Float>(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        pairs: &[EncodedPair],
        batch_size: usize,
    ) -> Result<PairScores> {
        let mut out = PairScores::default();
        let mut loss_sum = 0.0;
        for chunk in pairs.chunks(batch_size.max(1)) {
            let refs: Vec<&EncodedPair> = chunk.iter().collect();
            let mut tape = Tape::inference(store);
            let (loss, c, r) = self.pair_forward(&mut tape, hooks, &refs)?;
            loss_sum += tape.scalar(loss)?.as_f64() * chunk.len() as f64;
            out.chosen.extend(tape.value(c).iter().map(|v| v.as_f64()));
            out.rejected
                .extend(tape.value(r).iter().map(|v| v.as_f64()));
        }
        out.loss = loss_sum / pairs.len().max(1) as f64;
        Ok(out)
    }

    /// The metrics of `scores` of `pairs` (see the module's doc).
    pub fn metrics(pairs: &[EncodedPair], scores: &PairScores) -> Metrics {
        let n = scores.chosen.len().max(1) as f64;
        let right = |i: usize| scores.chosen[i] > scores.rejected[i];
        let mut m = Metrics::new();
        let accuracy = (0..scores.chosen.len()).filter(|&i| right(i)).count() as f64 / n;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
        m.insert("loss".into(), scores.loss);
        m.insert("accuracy".into(), accuracy);
        m.insert("score".into(), accuracy);
        m.insert(
            "margin".into(),
            mean(&scores.chosen) - mean(&scores.rejected),
        );
        m.insert("reward_chosen".into(), mean(&scores.chosen));
        m.insert("reward_rejected".into(), mean(&scores.rejected));
        for (kind, name) in KINDS.iter().zip(KIND_ACCURACY) {
            let of_kind: Vec<usize> = (0..scores.chosen.len())
                .filter(|&i| pairs.get(i).and_then(|p| p.kind) == Some(*kind))
                .collect();
            if !of_kind.is_empty() {
                let k = of_kind.iter().filter(|&&i| right(i)).count();
                m.insert(name.into(), k as f64 / of_kind.len() as f64);
            }
        }
        m
    }

    /// Rewards r(x, y) of `(prompt, response)` pairs under the model with `hooks`, each read as
    /// in training (`prompt + " " + response` and the end token), in batches of `batch_size`.
    pub fn reward<F: Float>(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        items: &[(&str, &str)],
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        let seqs = items
            .iter()
            .enumerate()
            .map(|(i, (prompt, response))| {
                encode_response(&self.tok, prompt, response, self.max_len).map_err(|detail| {
                    Error::Invalid {
                        op: "reward",
                        detail: format!("item {i}: {detail}"),
                    }
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.reward_ids(store, hooks, &seqs, batch_size)
    }

    /// Rewards of token sequences as the model reads them (prompt, response, end token), for
    /// callers that hold ids already (a sampler's rollouts).
    pub fn reward_ids<F: Float>(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        seqs: &[Vec<u32>],
        batch_size: usize,
    ) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(batch_size.max(1)) {
            let mut tape = Tape::inference(store);
            let r = self.forward(&mut tape, hooks, chunk)?;
            out.extend(tape.value(r).iter().map(|v| v.as_f64()));
        }
        Ok(out)
    }

    fn split(&self, split: Split) -> &[EncodedPair] {
        match split {
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }
}

/// The ids of `prompt + " " + response` and the end token, as a generation example encodes;
/// an error (without the pair's name) if it does not fit in `max_len` tokens.
fn encode_response(
    tok: &Tokenizer,
    prompt: &str,
    response: &str,
    max_len: usize,
) -> std::result::Result<Vec<u32>, String> {
    let example = Example::Generation {
        prompt: prompt.to_string(),
        response: response.to_string(),
    };
    let eos = tok.eos_id();
    let enc = encode_memo(tok, &example, &[], max_len).map_err(|e| match e {
        Error::Invalid { detail, .. } | Error::Shape { detail, .. } => detail,
        other => other.to_string(),
    })?;
    // Encoding truncates to max_len: the end token is then gone.
    if enc.ids.last().copied() != eos {
        return Err(format!(
            "prompt and response take more than max_len {max_len} tokens (TRL's RewardTrainer drops such pairs: shorten them or raise max_len)"
        ));
    }
    Ok(enc.ids)
}

impl<F: Float> TrainTask<F> for RewardTask {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn model(&self) -> Option<&Transformer> {
        Some(&self.model)
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        let mut names = METRICS.to_vec();
        for (kind, name) in KINDS.iter().zip(KIND_ACCURACY) {
            if self.validation.iter().any(|p| p.kind == Some(*kind)) {
                names.push(name);
            }
        }
        Some(names)
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        let pairs: Vec<&EncodedPair> = batch.indices.iter().map(|&i| &self.train[i]).collect();
        let (loss, _, _) = self.pair_forward(tape, hooks, &pairs)?;
        Ok((loss, pairs.len()))
    }

    fn tokens(&self, batch: &MicroBatch<'_>) -> Option<usize> {
        Some(
            batch
                .indices
                .iter()
                .map(|&i| self.train[i].chosen.len() + self.train[i].rejected.len())
                .sum(),
        )
    }

    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        let pairs = eval_subset(self.split(split), limit);
        if pairs.is_empty() {
            return Ok(Metrics::new());
        }
        let scores = self.score_pairs(store, hooks, pairs, batch_size)?;
        let m = Self::metrics(pairs, &scores);
        if split == Split::Test {
            if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_finite()) {
                return invalid(
                    "evaluate",
                    format!("the test {k} is {v}: the reward model's outputs are not finite"),
                );
            }
        }
        Ok(m)
    }
}
