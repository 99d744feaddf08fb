//! Text generation with a causal model: greedy, temperature and top-k sampling, seeded, stopping
//! at the end token. Batched prompts are left-padded, so every row's next token sits at the last
//! position and the position ids of real tokens start at 0.
//!
//! [`generate`] runs each prompt once (the prefill) and then only the newest token of each row,
//! reading the keys and values of everything before it from a [`KvCache`]: per token, L blocks on
//! one row instead of the whole sequence. [`generate_uncached`] re-runs the model on the whole
//! sequence at every step; it is the reference, and both give the same tokens. A row that grows
//! past max_len keeps its most recent max_len tokens, which moves every position, so from then on
//! the cached path re-runs the windows too (a prefill per step, the uncached cost).

use super::hooks::Hooks;
use super::kv_cache::KvCache;
use super::transformer::{Input, Transformer};
use crate::autodiff::{ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::tensor::Float;
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// How to pick each next token.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f64,
    /// Sample only among the k most likely tokens.
    pub top_k: Option<usize>,
    pub seed: u64,
    /// Generation of a row stops when it produces this token (not included in the output).
    pub eos: Option<usize>,
    /// The id used for left padding (masked out, so its value does not matter).
    pub pad: usize,
    /// A row also stops once prompt and output hold this many tokens (Hugging Face's
    /// `max_length`). `None`: a row may grow past the model's max_len, keeping its most recent
    /// max_len tokens (a sliding window, which the cache cannot follow: see the module docs).
    pub max_length: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: None,
            seed: 0,
            eos: None,
            pad: 0,
            max_length: None,
        }
    }
}

/// Left-pads `seqs` into ids, mask and position arrays (B, T).
pub fn left_pad(seqs: &[Vec<usize>], pad: usize) -> (Array2<usize>, Array2<bool>, Array2<usize>) {
    let t = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let mut ids = Array2::from_elem((seqs.len(), t), pad);
    let mut mask = Array2::from_elem((seqs.len(), t), false);
    let mut pos = Array2::zeros((seqs.len(), t));
    for (i, seq) in seqs.iter().enumerate() {
        let off = t - seq.len();
        for (j, &id) in seq.iter().enumerate() {
            ids[[i, off + j]] = id;
            mask[[i, off + j]] = true;
            pos[[i, off + j]] = j;
        }
    }
    (ids, mask, pos)
}

/// Picks a token from one row of logits.
fn pick<F: Float>(
    logits: ndarray::ArrayView1<'_, F>,
    opts: &GenerateOptions,
    rng: &mut StdRng,
) -> usize {
    let argmax = |l: &[(usize, f64)]| {
        l.iter()
            .fold(
                (0, f64::NEG_INFINITY),
                |b, &(i, v)| if v > b.1 { (i, v) } else { b },
            )
            .0
    };
    let mut l: Vec<(usize, f64)> = logits.iter().map(|v| v.as_f64()).enumerate().collect();
    if opts.temperature <= 0.0 {
        return argmax(&l);
    }
    if let Some(k) = opts.top_k {
        l.sort_by(|a, b| b.1.total_cmp(&a.1));
        l.truncate(k.max(1));
    }
    let max = l.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = l
        .iter()
        .map(|x| ((x.1 - max) / opts.temperature).exp())
        .collect();
    let mut r = rng.random::<f64>() * weights.iter().sum::<f64>();
    for (w, &(i, _)) in weights.iter().zip(&l) {
        r -= w;
        if r <= 0.0 {
            return i;
        }
    }
    l.last().map(|x| x.0).unwrap_or(0)
}

/// Continues each prompt; returns the new tokens of each row (without the end token). Runs each
/// prompt once and then only the new tokens, through a [`KvCache`]; the same tokens as
/// [`generate_uncached`].
pub fn generate<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    prompts: &[Vec<usize>],
    opts: &GenerateOptions,
) -> Result<Vec<Vec<usize>>> {
    check(model, prompts)?;
    let max_len = model.config.max_len;
    let mut cache = KvCache::new(model);
    sample(prompts, opts, |seqs, done| {
        let mut tape = Tape::inference(store);
        // A row longer than max_len slides its window, which moves every position: run the
        // windows again from scratch, as the uncached path does at every step.
        let slid = seqs.iter().zip(done).any(|(s, &d)| !d && s.len() > max_len);
        if cache.is_empty() || slid {
            cache.clear();
            return window_logits(model, &mut tape, hooks, seqs, opts, |tape, input| {
                model.forward_cached(tape, hooks, input, &mut cache)
            });
        }
        // Every unfinished row feeds the token it produced last, at the next position; a
        // finished row feeds padding (masked, never attended to).
        let b = seqs.len();
        let ids = Array2::from_shape_fn((b, 1), |(i, _)| match done[i] {
            true => opts.pad,
            false => *seqs[i].last().expect("prompts are not empty"),
        });
        let mask = Array2::from_shape_fn((b, 1), |(i, _)| !done[i]);
        let pos = Array2::from_shape_fn((b, 1), |(i, _)| match done[i] {
            true => 0,
            false => seqs[i].len() - 1,
        });
        let input = Input::new(ids.view())
            .with_mask(mask.view())
            .with_positions(pos.view());
        let hidden = model.forward_cached(&mut tape, hooks, &input, &mut cache)?;
        last_logits(model, &mut tape, hooks, hidden)
    })
}

/// [`generate`] without a cache: every step re-runs the model on the whole sequence (the most
/// recent max_len tokens of each row). The reference the cached path is tested against.
pub fn generate_uncached<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    prompts: &[Vec<usize>],
    opts: &GenerateOptions,
) -> Result<Vec<Vec<usize>>> {
    check(model, prompts)?;
    sample(prompts, opts, |seqs, _| {
        let mut tape = Tape::inference(store);
        window_logits(model, &mut tape, hooks, seqs, opts, |tape, input| {
            model.forward(tape, hooks, input)
        })
    })
}

/// Next-token logits (B, V) from a whole-sequence run of `forward` (plain or filling a cache)
/// on the most recent max_len tokens of each row, left-padded.
fn window_logits<'p, F: Float>(
    model: &Transformer,
    tape: &mut Tape<'p, F>,
    hooks: &dyn Hooks<F>,
    seqs: &[Vec<usize>],
    opts: &GenerateOptions,
    forward: impl FnOnce(&mut Tape<'p, F>, &Input<'_>) -> Result<Var>,
) -> Result<Array2<F>> {
    let (ids, mask, pos) = left_pad(&windows(seqs, model.config.max_len), opts.pad);
    let input = Input::new(ids.view())
        .with_mask(mask.view())
        .with_positions(pos.view());
    let hidden = forward(tape, &input)?;
    let t = ids.ncols();
    let last = tape.slice(hidden, 1, t - 1, t)?;
    last_logits(model, tape, hooks, last)
}

fn check(model: &Transformer, prompts: &[Vec<usize>]) -> Result<()> {
    if !model.config.causal {
        return invalid("generate", "generation needs a causal (decoder) model");
    }
    if prompts.iter().any(Vec::is_empty) {
        return invalid("generate", "every prompt needs at least one token");
    }
    Ok(())
}

/// The most recent `max_len` tokens of each row.
fn windows(seqs: &[Vec<usize>], max_len: usize) -> Vec<Vec<usize>> {
    seqs.iter()
        .map(|s| s[s.len().saturating_sub(max_len)..].to_vec())
        .collect()
}

/// The LM head on the hidden states (B, 1, C) of each row's last token: logits (B, V).
fn last_logits<F: Float>(
    model: &Transformer,
    tape: &mut Tape<'_, F>,
    hooks: &dyn Hooks<F>,
    last: Var,
) -> Result<Array2<F>> {
    let logits = model.lm_logits(tape, hooks, last)?;
    let lv = tape.value(logits);
    let (b, v) = (lv.shape()[0], lv.shape()[lv.ndim() - 1]);
    Ok(lv
        .to_shape((b, v))
        .map_err(|e| crate::Error::Shape {
            op: "generate",
            detail: e.to_string(),
        })?
        .to_owned())
}

/// The sampling loop both paths share: `next(seqs, done)` gives every row's next-token logits
/// (B, V) for the sequences so far (prompt and tokens produced), `done` marking the rows that
/// have produced the end token.
fn sample<F: Float>(
    prompts: &[Vec<usize>],
    opts: &GenerateOptions,
    mut next: impl FnMut(&[Vec<usize>], &[bool]) -> Result<Array2<F>>,
) -> Result<Vec<Vec<usize>>> {
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut seqs: Vec<Vec<usize>> = prompts.to_vec();
    let mut out = vec![Vec::new(); prompts.len()];
    let full = |s: &Vec<usize>| opts.max_length.is_some_and(|m| s.len() >= m);
    let mut done: Vec<bool> = seqs.iter().map(full).collect();
    for _ in 0..opts.max_new_tokens {
        if done.iter().all(|&d| d) {
            break;
        }
        let logits = next(&seqs, &done)?;
        for i in 0..seqs.len() {
            if done[i] {
                continue;
            }
            let next = pick(logits.row(i), opts, &mut rng);
            if Some(next) == opts.eos {
                done[i] = true;
                continue;
            }
            seqs[i].push(next);
            out[i].push(next);
            done[i] = full(&seqs[i]);
        }
    }
    Ok(out)
}
