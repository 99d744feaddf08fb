//! Task heads on top of the hidden states (B, T, C), named as Hugging Face names them:
//! sequence classification (`score` for GPT-2, `classifier` for BERT), token classification
//! (`classifier`), extractive QA (`qa_outputs`) and the reward model's scalar score (`score`).

use super::config::Arch;
use super::hooks::{Hooks, Role};
use super::layers::{Layout, Linear, LinearSpec};
use super::transformer::Transformer;
use crate::autodiff::{ParamStore, Tape, Var};
use crate::error::{shape_err, Result};
use crate::tensor::Float;
use ndarray::{Array3, ArrayView2};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// How a sequence becomes one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The last real (non-pad) token: what a causal decoder has read everything by.
    LastToken,
    /// The first token ([CLS]) through BERT's pooler (dense + tanh).
    Cls,
    /// The mean over real tokens.
    Mean,
}

impl Pooling {
    /// The usual pooling for a model: last token for decoders, [CLS] for encoders.
    pub fn default_for(model: &Transformer) -> Self {
        if model.config.causal {
            Pooling::LastToken
        } else {
            Pooling::Cls
        }
    }
}

fn head_linear<F: Float>(
    store: &mut ParamStore<F>,
    model: &Transformer,
    module: &str,
    d_out: usize,
    seed: u64,
) -> Result<Linear> {
    let gpt = model.config.arch == Arch::Gpt;
    let spec = LinearSpec {
        module,
        d_in: model.config.d_model,
        d_out,
        // GPT2ForSequenceClassification's `score` has no bias; BERT heads do.
        bias: !(gpt && module == "score"),
        layout: Layout::OutIn,
        role: Role::Other,
        layer: None,
        std: 0.02,
    };
    Linear::new(store, spec, &mut StdRng::seed_from_u64(seed))
}

/// Pools (B, T, C) hidden states to (B, C).
pub fn pool<F: Float>(
    tape: &mut Tape<'_, F>,
    hooks: &dyn Hooks<F>,
    model: &Transformer,
    pooling: Pooling,
    hidden: Var,
    mask: Option<ArrayView2<'_, bool>>,
) -> Result<Var> {
    let s = tape.shape(hidden).to_vec();
    let (b, t, c) = (s[0], s[1], s[2]);
    if let Some(m) = mask {
        if m.dim() != (b, t) {
            return shape_err(
                "pool",
                format!("mask is {:?}, hidden states are ({b}, {t}, {c})", m.dim()),
            );
        }
    }
    let real = |i: usize, j: usize| mask.is_none_or(|m| m[[i, j]]);
    match pooling {
        Pooling::LastToken | Pooling::Cls => {
            let rows: Vec<usize> = (0..b)
                .map(|i| {
                    let j = if pooling == Pooling::Cls {
                        0
                    } else {
                        (0..t).rev().find(|&j| real(i, j)).unwrap_or(t - 1)
                    };
                    i * t + j
                })
                .collect();
            let flat = tape.reshape(hidden, &[b * t, c])?;
            let pooled = tape.index_select(flat, 0, &rows)?;
            match (pooling, &model.pooler) {
                (Pooling::Cls, Some(pooler)) => {
                    let h = pooler.forward(tape, hooks, pooled)?;
                    tape.tanh(h)
                }
                _ => Ok(pooled),
            }
        }
        Pooling::Mean => {
            let weights = Array3::from_shape_fn((b, t, 1), |(i, j, _)| {
                let n = (0..t).filter(|&k| real(i, k)).count().max(1);
                if real(i, j) {
                    F::one() / F::of(n as f64)
                } else {
                    F::zero()
                }
            });
            let w = tape.constant(weights.into_dyn());
            let weighted = tape.mul(hidden, w)?;
            tape.sum(weighted, &[1], false)
        }
    }
}

/// Sequence classification: pooled hidden state → n_labels logits.
#[derive(Debug, Clone)]
pub struct SequenceHead {
    pub pooling: Pooling,
    pub out: Linear,
}

impl SequenceHead {
    pub fn new<F: Float>(
        store: &mut ParamStore<F>,
        model: &Transformer,
        n_labels: usize,
        pooling: Pooling,
        seed: u64,
    ) -> Result<Self> {
        let name = if model.config.arch == Arch::Gpt {
            "score"
        } else {
            "classifier"
        };
        Ok(Self {
            pooling,
            out: head_linear(store, model, name, n_labels, seed)?,
        })
    }

    /// (B, T, C) → (B, n_labels).
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        model: &Transformer,
        hidden: Var,
        mask: Option<ArrayView2<'_, bool>>,
    ) -> Result<Var> {
        let pooled = pool(tape, hooks, model, self.pooling, hidden, mask)?;
        self.out.forward(tape, hooks, pooled)
    }
}

/// Token classification (NER): every position → n_tags logits.
#[derive(Debug, Clone)]
pub struct TokenHead {
    pub out: Linear,
}

impl TokenHead {
    pub fn new<F: Float>(
        store: &mut ParamStore<F>,
        model: &Transformer,
        n_tags: usize,
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            out: head_linear(store, model, "classifier", n_tags, seed)?,
        })
    }

    /// (B, T, C) → (B, T, n_tags).
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        hidden: Var,
    ) -> Result<Var> {
        self.out.forward(tape, hooks, hidden)
    }
}

/// Extractive QA: every position → a start logit and an end logit.
#[derive(Debug, Clone)]
pub struct SpanHead {
    pub out: Linear,
}

impl SpanHead {
    pub fn new<F: Float>(
        store: &mut ParamStore<F>,
        model: &Transformer,
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            out: head_linear(store, model, "qa_outputs", 2, seed)?,
        })
    }

    /// (B, T, C) → start logits (B, T) and end logits (B, T).
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        hidden: Var,
    ) -> Result<(Var, Var)> {
        let logits = self.out.forward(tape, hooks, hidden)?;
        let s = tape.shape(logits).to_vec();
        let start = tape.slice(logits, 2, 0, 1)?;
        let end = tape.slice(logits, 2, 1, 2)?;
        Ok((tape.reshape(start, &s[..2])?, tape.reshape(end, &s[..2])?))
    }
}

/// The reward model's head: a Bradley–Terry scalar score r(x, y) of a whole sequence, read
/// from the hidden state of its last real (non-pad) token through a Linear C → 1, as Hugging
/// Face's `AutoModelForSequenceClassification` with `num_labels=1` (what TRL's `RewardTrainer`
/// trains) scores a decoder's sequence: GPT-2's `score`, without a bias. A causal decoder's
/// last token has attended to the whole prompt and response, so its state can judge both.
#[derive(Debug, Clone)]
pub struct RewardHead {
    pub out: Linear,
}

impl RewardHead {
    pub fn new<F: Float>(
        store: &mut ParamStore<F>,
        model: &Transformer,
        seed: u64,
    ) -> Result<Self> {
        Ok(Self {
            out: head_linear(store, model, "score", 1, seed)?,
        })
    }

    /// The head's own parameters (trained with every method).
    pub fn params(&self) -> Vec<crate::autodiff::ParamId> {
        std::iter::once(self.out.weight)
            .chain(self.out.bias)
            .collect()
    }

    /// (B, T, C) hidden states and the (B, T) padding mask → rewards (B,): one scalar per
    /// sequence, from its last real token.
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        model: &Transformer,
        hidden: Var,
        mask: Option<ArrayView2<'_, bool>>,
    ) -> Result<Var> {
        // ANCHOR: reward_head
        let pooled = pool(tape, hooks, model, Pooling::LastToken, hidden, mask)?;
        let score = self.out.forward(tape, hooks, pooled)?; // (B, 1)
        let b = tape.shape(score)[0];
        tape.reshape(score, &[b])
        // ANCHOR_END: reward_head
    }
}
