//! A task bound to a model: the head it needs, its encoded data, its loss and its metrics.
//!
//! | task shape | head | loss | metrics (`score` is the first) |
//! |---|---|---|---|
//! | classification | pooled sequence head | cross-entropy, mean over the batch | accuracy, macro-F1 |
//! | tagging (NER) | token head | token cross-entropy, pads and continuations ignored | entity F1 |
//! | span (QA) | start/end head | (CE start + CE end) / 2 | exact match, token F1 |
//! | generation | LM head | causal LM loss on the response | ROUGE-L, exact match or execution accuracy |

use super::trainer::{eval_subset, Metrics, MicroBatch, Split, TrainTask};
use crate::autodiff::{ParamId, ParamStore, Tape, Var, IGNORE_INDEX};
use crate::data::batch::{pad, pad_with_labels, Batch, PadSide};
use crate::data::encode::{encode_memo, Encoded, Target};
use crate::data::loaders::{Source, SplitSources};
use crate::data::tasks::{Example, Task};
use crate::data::tokenizer::Tokenizer;
use crate::data::world::World;
use crate::error::{invalid, Error, Result};
use crate::loss;
use crate::metrics;
use crate::nn::generate::{generate, GenerateOptions};
use crate::nn::heads::{Pooling, SequenceHead, SpanHead, TokenHead};
use crate::nn::{Hooks, Input, Transformer};
use crate::tensor::Float;
use ndarray::Axis;

/// What a head computed for a batch, on the tape.
enum HeadOut {
    /// Class logits (B, classes).
    Class(Var),
    /// Tag logits (B, T, tags).
    Tags(Var),
    /// Start and end logits (B, T) of an extractive answer.
    Span(Var, Var),
    /// Vocabulary logits (B, T, V).
    Lm,
}

/// The head a task puts on the transformer.
#[derive(Debug, Clone)]
pub enum Head {
    Lm,
    Sequence(SequenceHead),
    Token(TokenHead),
    Span(SpanHead),
}

impl Head {
    /// The head's own parameters (trained with every method).
    pub fn params(&self) -> Vec<ParamId> {
        let lin = match self {
            Head::Lm => return vec![],
            Head::Sequence(h) => &h.out,
            Head::Token(h) => &h.out,
            Head::Span(h) => &h.out,
        };
        std::iter::once(lin.weight).chain(lin.bias).collect()
    }
}

/// How generated text is scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GenMetric {
    RougeL,
    ExactMatch,
    Execution,
}

/// An example together with its encoding.
#[derive(Debug, Clone)]
pub struct Item {
    pub example: Example,
    pub encoded: Encoded,
}

/// Everything needed to train and evaluate one task on one model.
pub struct TaskModel {
    pub name: String,
    pub model: Transformer,
    pub head: Head,
    pub tok: Tokenizer,
    /// Label or tag names (classification, tagging).
    pub labels: Vec<String>,
    pub gen_metric: GenMetric,
    pub train: Vec<Item>,
    pub validation: Vec<Item>,
    pub test: Vec<Item>,
    pub world: World,
    pub max_len: usize,
    /// ε of a classification head's cross-entropy (PyTorch's `label_smoothing`, Hugging Face's
    /// `label_smoothing_factor`): the target becomes (1 − ε)·onehot + ε/K. 0 by default.
    pub label_smoothing: f64,
}

/// The examples of a task's splits.
#[derive(Clone, Default)]
pub struct TaskData {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    /// The file and line of each example (a user's data), so that an example that cannot be
    /// encoded is reported at its line; empty for built-in data.
    pub sources: SplitSources,
    /// Tokens per sequence at most (`TrainingArgs::max_len`); `None`: the model's max_len.
    pub max_len: Option<usize>,
}

/// A generation task on an encoder is refused: it needs a decoder (a causal model).
fn needs_decoder(task: &str, model: &Transformer, base: &str) -> Result<()> {
    if model.config.causal {
        return Ok(());
    }
    invalid(
        "task",
        format!(
            "the {task} task generates text, which needs a decoder (a causal model such as \
             gpt-tiny); {base} is an encoder (a bidirectional model)"
        ),
    )
}

/// Whether `task` can be trained on `model` (named `base` in the error), checked before any
/// data is loaded: a generation task needs a decoder.
pub fn check_fits(task: Task, model: &Transformer, base: &str) -> Result<()> {
    match task.shape() {
        crate::data::tasks::TaskShape::Generation => needs_decoder(task.name(), model, base),
        _ => Ok(()),
    }
}

/// Encodes every example of one split (`split` names it in errors, with the example's file and
/// line when `source` has them).
fn encode_all(
    tok: &Tokenizer,
    examples: &[Example],
    labels: &[&str],
    max_len: usize,
    split: &str,
    source: Option<&Source>,
) -> Result<Vec<Item>> {
    examples
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let encoded = encode_memo(tok, e, labels, max_len).and_then(|enc| {
                if enc.ids.is_empty() {
                    return invalid("encode", "the text encodes to no tokens");
                }
                Ok(enc)
            });
            let encoded = encoded.map_err(|err| {
                let detail = match err {
                    Error::Invalid { detail, .. } | Error::Shape { detail, .. } => detail,
                    other => other.to_string(),
                };
                match source.and_then(|s| Some((s, *s.lines.get(i)?))) {
                    Some((s, line)) => Error::Data {
                        path: s.path.display().to_string(),
                        line,
                        detail,
                    },
                    None => Error::Invalid {
                        op: "encode",
                        detail: format!("{split} example {} (1-based): {detail}", i + 1),
                    },
                }
            })?;
            Ok(Item {
                example: e.clone(),
                encoded,
            })
        })
        .collect()
}

impl TaskModel {
    /// Binds `task` to `model`: creates the head in `store` (seeded) and encodes the data.
    #[allow(clippy::too_many_arguments)]
    pub fn new<F: Float>(
        name: &str,
        model: Transformer,
        store: &mut ParamStore<F>,
        tok: Tokenizer,
        data: TaskData,
        labels: Vec<String>,
        gen_metric: GenMetric,
        world: World,
        seed: u64,
    ) -> Result<Self> {
        let Some(first) = data.train.first() else {
            return invalid("task", "no training examples");
        };
        if matches!(first, Example::Generation { .. }) {
            needs_decoder(name, &model, "this base")?;
        }
        let max_len = match data.max_len {
            None => model.config.max_len,
            Some(m) if m <= model.config.max_len && m > 0 => m,
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
        let head = match first {
            Example::Classification { .. } => Head::Sequence(SequenceHead::new(
                store,
                &model,
                labels.len(),
                Pooling::default_for(&model),
                seed,
            )?),
            Example::Tagging { .. } => {
                Head::Token(TokenHead::new(store, &model, labels.len(), seed)?)
            }
            Example::Span { .. } => Head::Span(SpanHead::new(store, &model, seed)?),
            Example::Generation { .. } => Head::Lm,
        };
        let names: Vec<&str> = labels.iter().map(String::as_str).collect();
        Ok(Self {
            name: name.to_string(),
            train: encode_all(
                &tok,
                &data.train,
                &names,
                max_len,
                "train",
                data.sources.train.as_ref(),
            )?,
            validation: encode_all(
                &tok,
                &data.validation,
                &names,
                max_len,
                "validation",
                data.sources.validation.as_ref(),
            )?,
            test: encode_all(
                &tok,
                &data.test,
                &names,
                max_len,
                "test",
                data.sources.test.as_ref(),
            )?,
            model,
            head,
            tok,
            labels,
            gen_metric,
            world,
            max_len,
            label_smoothing: 0.0,
        })
    }

    /// A built-in task of the synthetic world.
    pub fn builtin<F: Float>(
        task: Task,
        model: Transformer,
        store: &mut ParamStore<F>,
        tok: Tokenizer,
        world: World,
        data: TaskData,
        seed: u64,
    ) -> Result<Self> {
        // Dialogue is scored by ROUGE-L, not exact match: a reply that recalls the fact but
        // words the sentence differently is partly right, and at compare's budget (120 steps
        // of 16) no method writes a whole reply exactly, so exact match is 0.000 for every
        // row (it is still reported).
        let gen_metric = match task {
            Task::Codegen => GenMetric::Execution,
            _ => GenMetric::RougeL,
        };
        let labels = task.labels().iter().map(|s| s.to_string()).collect();
        Self::new(
            task.name(),
            model,
            store,
            tok,
            data,
            labels,
            gen_metric,
            world,
            seed,
        )
    }

    fn pad_id(&self) -> u32 {
        self.tok.pad_id().unwrap_or(0)
    }

    /// The names of the metrics an evaluation of this task reports (see [`TaskModel::evaluate_items`]).
    pub fn metric_names(&self) -> Vec<&'static str> {
        let mut names = vec!["loss", "score"];
        names.extend(match &self.head {
            Head::Sequence(_) => &["accuracy", "macro_f1"][..],
            Head::Token(_) => &["entity_f1"][..],
            Head::Span(_) => &["exact_match", "f1"][..],
            Head::Lm => &["perplexity", "exact_match", "rouge_l"][..],
        });
        if matches!(self.head, Head::Lm) && self.gen_metric == GenMetric::Execution {
            names.push("execution_accuracy");
        }
        names
    }

    /// Pads items into one right-padded batch (labels for token-level targets).
    pub fn batch(&self, items: &[&Item]) -> Result<Batch> {
        let seqs: Vec<Vec<u32>> = items.iter().map(|i| i.encoded.ids.clone()).collect();
        match &items[0].encoded.target {
            Target::Tags(_) | Target::Lm(_) => {
                let labels: Vec<Vec<i64>> = items
                    .iter()
                    .map(|i| match &i.encoded.target {
                        Target::Tags(l) | Target::Lm(l) => l.clone(),
                        _ => vec![IGNORE_INDEX; i.encoded.ids.len()],
                    })
                    .collect();
                pad_with_labels(
                    &seqs,
                    &labels,
                    self.pad_id(),
                    PadSide::Right,
                    Some(self.max_len),
                )
            }
            _ => pad(&seqs, self.pad_id(), PadSide::Right, Some(self.max_len)),
        }
    }

    /// The loss on a batch of items, a mean over its loss terms, and how many terms it has
    /// (Hugging Face's `num_items_in_batch`): examples for a classification or span head, counted
    /// target tokens (after the shift) for a language model, counted tags for a tagger.
    pub fn batch_loss<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        items: &[&Item],
    ) -> Result<(Var, usize)> {
        let (loss, terms, _) = self.batch_forward(tape, hooks, items)?;
        Ok((loss, terms))
    }

    /// The real (unpadded) tokens of a batch of items, as [`TaskModel::batch`] truncates them.
    pub fn batch_tokens(&self, items: &[&Item]) -> usize {
        items
            .iter()
            .map(|i| i.encoded.ids.len().min(self.max_len))
            .sum()
    }

    /// The forward pass of a batch: its loss, its loss terms (see [`TaskModel::batch_loss`]) and
    /// the head's outputs (which evaluation reads its predictions from, so that it runs the model
    /// once per batch).
    fn batch_forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        items: &[&Item],
    ) -> Result<(Var, usize, HeadOut)> {
        let b = self.batch(items)?;
        let counted = |labels: ndarray::ArrayView2<'_, i64>, skip: usize| {
            labels
                .rows()
                .into_iter()
                .map(|r| r.iter().skip(skip).filter(|&&l| l != IGNORE_INDEX).count())
                .sum::<usize>()
        };
        let input = Input::new(b.ids.view())
            .with_mask(b.attention_mask.view())
            .with_positions(b.positions.view());
        let h = self.model.forward(tape, hooks, &input)?;
        let (loss, terms, out) = match &self.head {
            Head::Sequence(head) => {
                let logits =
                    head.forward(tape, hooks, &self.model, h, Some(b.attention_mask.view()))?;
                let labels: Vec<usize> = items
                    .iter()
                    .map(|i| {
                        if let Target::Class(c) = i.encoded.target {
                            c
                        } else {
                            0
                        }
                    })
                    .collect();
                let loss = loss::ClassificationLoss {
                    label_smoothing: self.label_smoothing,
                    class_weights: None,
                }
                .forward(tape, logits, &labels)?;
                (loss, items.len(), HeadOut::Class(logits))
            }
            Head::Token(head) => {
                let logits = head.forward(tape, hooks, h)?;
                let labels = b.labels.as_ref().expect("tag labels").view();
                let loss = loss::token_classification_loss(tape, logits, labels)?;
                (loss, counted(labels, 0), HeadOut::Tags(logits))
            }
            Head::Span(head) => {
                let (start, end) = head.forward(tape, hooks, h)?;
                let (starts, ends): (Vec<usize>, Vec<usize>) = items
                    .iter()
                    .map(|i| {
                        if let Target::Span { start, end } = i.encoded.target {
                            (start, end)
                        } else {
                            (0, 0)
                        }
                    })
                    .unzip();
                let loss = loss::span_loss(
                    tape,
                    start,
                    end,
                    &starts,
                    &ends,
                    Some(b.attention_mask.view()),
                )?;
                (loss, items.len(), HeadOut::Span(start, end))
            }
            Head::Lm => {
                let logits = self.model.lm_logits(tape, hooks, h)?;
                let labels = b.labels.as_ref().expect("lm labels").view();
                let loss = loss::causal_lm_loss(tape, logits, labels)?;
                // Position t is scored on label t + 1: the first label of a row is never a target.
                (loss, counted(labels, 1), HeadOut::Lm)
            }
        };
        Ok((loss, terms, out))
    }

    fn split(&self, split: Split) -> &[Item] {
        match split {
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        }
    }

    /// Loss and metrics on a split: the first `limit` items (0 = all), in batches.
    pub fn evaluate_items<F: Float>(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        items: &[Item],
        batch_size: usize,
    ) -> Result<Metrics> {
        Ok(self.evaluate_items_each(store, hooks, items, batch_size)?.0)
    }

    /// [`TaskModel::evaluate_items`], and each item's own score (the `score` metric computed on
    /// that item alone) from the same batched predictions: what per-example intervals need,
    /// without predicting again.
    pub fn evaluate_items_each<F: Float>(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        items: &[Item],
        batch_size: usize,
    ) -> Result<(Metrics, Vec<f64>)> {
        if items.is_empty() {
            return Ok((Metrics::new(), Vec::new()));
        }
        let (mut loss_sum, mut n) = (0.0, 0.0);
        let mut p = Predictions::default();
        let Predictions {
            pred_cls,
            gold_cls,
            pred_tags,
            gold_tags,
            pred_text,
            gold_text,
        } = &mut p;
        for chunk in items.chunks(batch_size.max(1)) {
            let refs: Vec<&Item> = chunk.iter().collect();
            let mut t = Tape::inference(store);
            let (loss, _, out) = self.batch_forward(&mut t, hooks, &refs)?;
            loss_sum += t.scalar(loss)?.as_f64() * chunk.len() as f64;
            n += chunk.len() as f64;
            match out {
                HeadOut::Class(logits) => {
                    let lv = t.value(logits);
                    for (row, item) in lv.axis_iter(Axis(0)).zip(chunk) {
                        pred_cls.push(argmax(row.iter().map(|v| v.as_f64())));
                        if let Target::Class(c) = item.encoded.target {
                            gold_cls.push(c);
                        }
                    }
                }
                HeadOut::Tags(logits) => {
                    let lv = t.value(logits);
                    for (r, item) in chunk.iter().enumerate() {
                        let Target::Tags(labels) = &item.encoded.target else {
                            continue;
                        };
                        let (mut p, mut g) = (Vec::new(), Vec::new());
                        for (j, &l) in labels.iter().enumerate() {
                            if l == IGNORE_INDEX {
                                continue;
                            }
                            let k = argmax((0..self.labels.len()).map(|c| lv[[r, j, c]].as_f64()));
                            p.push(self.labels[k].clone());
                            g.push(self.labels[l as usize].clone());
                        }
                        pred_tags.push(p);
                        gold_tags.push(g);
                    }
                }
                HeadOut::Span(s, e) => {
                    let (sv, ev) = (t.value(s), t.value(e));
                    for (r, item) in chunk.iter().enumerate() {
                        let len = item.encoded.ids.len();
                        let (mut best, mut span) = (f64::NEG_INFINITY, (0, 0));
                        for i in 0..len {
                            for j in i..len.min(i + 30) {
                                let score = sv[[r, i]].as_f64() + ev[[r, j]].as_f64();
                                if score > best {
                                    best = score;
                                    span = (i, j);
                                }
                            }
                        }
                        pred_text.push(
                            self.tok
                                .decode(&item.encoded.ids[span.0..=span.1], true)?
                                .trim()
                                .to_string(),
                        );
                        if let Example::Span { answer, .. } = &item.example {
                            gold_text.push(answer.clone());
                        }
                    }
                }
                HeadOut::Lm => {
                    let prompts: Vec<Vec<usize>> = chunk
                        .iter()
                        .map(|i| {
                            i.encoded.ids[..i.encoded.prompt_len]
                                .iter()
                                .map(|&x| x as usize)
                                .collect()
                        })
                        .collect();
                    // Answers stop at the model's max_len, as every training sequence did
                    // (so the key/value cache never has to slide).
                    let opts = GenerateOptions {
                        max_new_tokens: 40,
                        eos: self.tok.eos_id().map(|e| e as usize),
                        pad: self.pad_id() as usize,
                        max_length: Some(self.model.config.max_len),
                        ..Default::default()
                    };
                    let out = generate(&self.model, store, hooks, &prompts, &opts)?;
                    for (ids, item) in out.iter().zip(chunk) {
                        let ids: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
                        pred_text.push(self.tok.decode(&ids, true)?.trim().to_string());
                        if let Example::Generation { response, .. } = &item.example {
                            gold_text.push(response.trim().to_string());
                        }
                    }
                }
            }
        }
        let loss = loss_sum / n;
        let whole = self.metrics_of(loss, &p)?;
        let each = (0..items.len())
            .map(|i| Ok(self.metrics_of(loss, &p.one(i))?["score"]))
            .collect::<Result<Vec<f64>>>()?;
        Ok((whole, each))
    }

    /// The metrics of a set of predictions, with `loss` their mean loss.
    fn metrics_of(&self, loss: f64, p: &Predictions) -> Result<Metrics> {
        let Predictions {
            pred_cls,
            gold_cls,
            pred_tags,
            gold_tags,
            pred_text,
            gold_text,
        } = p;
        let mut m = Metrics::new();
        m.insert("loss".into(), loss);
        match &self.head {
            Head::Sequence(_) => {
                m.insert("accuracy".into(), metrics::accuracy(pred_cls, gold_cls)?);
                m.insert("macro_f1".into(), metrics::macro_f1(pred_cls, gold_cls)?);
                m.insert("score".into(), m["accuracy"]);
            }
            Head::Token(_) => {
                let s = metrics::entity_f1(pred_tags, gold_tags)?;
                m.insert("entity_f1".into(), s.f1);
                m.insert("score".into(), s.f1);
            }
            Head::Span(_) => {
                let s = metrics::squad(pred_text, gold_text)?;
                m.insert("exact_match".into(), s.exact_match);
                m.insert("f1".into(), s.f1);
                m.insert("score".into(), s.f1);
            }
            Head::Lm => {
                m.insert("perplexity".into(), metrics::perplexity(loss));
                let em = pred_text
                    .iter()
                    .zip(gold_text)
                    .filter(|(p, g)| metrics::exact_match(p, g))
                    .count() as f64
                    / gold_text.len().max(1) as f64;
                m.insert("exact_match".into(), em);
                let rouge = metrics::mean_rouge_l(pred_text, gold_text)?;
                m.insert("rouge_l".into(), rouge);
                let score = match self.gen_metric {
                    GenMetric::RougeL => rouge,
                    GenMetric::ExactMatch => em,
                    GenMetric::Execution => {
                        let acc = metrics::execution_accuracy(pred_text, gold_text, &self.world)?;
                        m.insert("execution_accuracy".into(), acc);
                        acc
                    }
                };
                m.insert("score".into(), score);
            }
        }
        Ok(m)
    }
}

/// What a head predicted for each evaluated item, beside the gold answer: only the pair of its
/// head's kind is filled.
#[derive(Debug, Default)]
struct Predictions {
    pred_cls: Vec<usize>,
    gold_cls: Vec<usize>,
    pred_tags: Vec<Vec<String>>,
    gold_tags: Vec<Vec<String>>,
    pred_text: Vec<String>,
    gold_text: Vec<String>,
}

impl Predictions {
    /// Item `i` alone.
    fn one(&self, i: usize) -> Predictions {
        fn pick<T: Clone>(v: &[T], i: usize) -> Vec<T> {
            v.get(i).cloned().into_iter().collect()
        }
        Predictions {
            pred_cls: pick(&self.pred_cls, i),
            gold_cls: pick(&self.gold_cls, i),
            pred_tags: pick(&self.pred_tags, i),
            gold_tags: pick(&self.gold_tags, i),
            pred_text: pick(&self.pred_text, i),
            gold_text: pick(&self.gold_text, i),
        }
    }
}

fn argmax(values: impl Iterator<Item = f64>) -> usize {
    values
        .enumerate()
        .fold(
            (0, f64::NEG_INFINITY),
            |b, (i, v)| if v > b.1 { (i, v) } else { b },
        )
        .0
}

impl<F: Float> TrainTask<F> for TaskModel {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn head_params(&self) -> Vec<ParamId> {
        self.head.params()
    }
    fn model(&self) -> Option<&Transformer> {
        Some(&self.model)
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        Some(TaskModel::metric_names(self))
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        let items: Vec<&Item> = batch.indices.iter().map(|&i| &self.train[i]).collect();
        self.batch_loss(tape, hooks, &items)
    }

    fn tokens(&self, batch: &MicroBatch<'_>) -> Option<usize> {
        let items: Vec<&Item> = batch.indices.iter().map(|&i| &self.train[i]).collect();
        Some(self.batch_tokens(&items))
    }

    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        let items = eval_subset(self.split(split), limit);
        let m = self.evaluate_items(store, hooks, items, batch_size)?;
        // A NaN score is not a result. (During training the Trainer checks the validation
        // split itself, naming the step.)
        if split == Split::Test {
            if let Some((k, v)) = m.iter().find(|(_, v)| !v.is_finite()) {
                return invalid(
                    "evaluate",
                    format!(
                        "the test {k} is {v}: the model's outputs are not finite (a diverged \
                         run, or a model or adapter whose weights overflow)"
                    ),
                );
            }
        }
        Ok(m)
    }
}
