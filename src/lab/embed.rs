//! Inference with a loaded model: sentence embeddings (`tunelab embed`) and next-token logits
//! (`tunelab logits`).
//!
//! Embeddings follow sentence-transformers: every text becomes `[CLS] text [SEP]`, a batch is
//! right-padded with a key-padding mask, and the last hidden states (B, T, C) are pooled to
//! (B, C) by the mean over real tokens (`mean`) or by the [CLS] row as it is, without BERT's
//! pooler (`cls`); `normalize` scales each vector to unit length.

use crate::autodiff::{ParamStore, Tape};
use crate::data::tokenizer::Tokenizer;
use crate::error::{invalid, Result};
use crate::nn::{Hooks, Input, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, Ix3};

/// How the hidden states of one text become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbedPooling {
    /// Mean over real (non-pad) tokens, special tokens included (sentence-transformers).
    Mean,
    /// The first token's hidden state ([CLS]), without BERT's pooler.
    Cls,
}

/// Texts per forward pass.
pub const BATCH: usize = 64;

/// Token ids of each text, special tokens added (`[CLS] … [SEP]` for BERT).
pub fn encode_texts(tok: &Tokenizer, texts: &[impl AsRef<str>]) -> Result<Vec<Vec<usize>>> {
    texts
        .iter()
        .map(|t| {
            Ok(tok
                .encode(t.as_ref(), true)?
                .into_iter()
                .map(|i| i as usize)
                .collect())
        })
        .collect()
}

/// One embedding per id sequence, in order, computed in batches of [`BATCH`].
pub fn embed_ids<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    seqs: &[Vec<usize>],
    pad: usize,
    pooling: EmbedPooling,
    normalize: bool,
) -> Result<Vec<Vec<F>>> {
    let mut out = Vec::with_capacity(seqs.len());
    for (k, chunk) in seqs.chunks(BATCH).enumerate() {
        let t = chunk.iter().map(Vec::len).max().unwrap_or(0);
        if let Some(i) = chunk.iter().position(Vec::is_empty) {
            return invalid("embed", format!("text {} has no tokens", k * BATCH + i));
        }
        let b = chunk.len();
        // (B, T) ids and mask, right-padded.
        let ids = Array2::from_shape_fn((b, t), |(i, j)| chunk[i].get(j).copied().unwrap_or(pad));
        let mask = Array2::from_shape_fn((b, t), |(i, j)| j < chunk[i].len());
        let mut tape = Tape::inference(store);
        let input = Input::new(ids.view()).with_mask(mask.view());
        let hidden = model.forward(&mut tape, hooks, &input)?;
        let h = tape
            .value(hidden)
            .into_dimensionality::<Ix3>()
            .expect("hidden states are (B, T, C)");
        for (i, seq) in chunk.iter().enumerate() {
            let mut v: Vec<F> = match pooling {
                EmbedPooling::Cls => h.slice(ndarray::s![i, 0, ..]).to_vec(),
                EmbedPooling::Mean => {
                    let n = F::of(seq.len() as f64);
                    let rows = h.slice(ndarray::s![i, ..seq.len(), ..]);
                    rows.sum_axis(ndarray::Axis(0)).mapv(|x| x / n).to_vec()
                }
            };
            if normalize {
                let norm = v
                    .iter()
                    .map(|&x| x * x)
                    .fold(F::zero(), |a, x| a + x)
                    .sqrt();
                // sentence-transformers divides by max(norm, 1e-12).
                let norm = if norm > F::of(1e-12) {
                    norm
                } else {
                    F::of(1e-12)
                };
                v.iter_mut().for_each(|x| *x /= norm);
            }
            out.push(v);
        }
    }
    Ok(out)
}

/// Embeds texts: tokenise, then [`embed_ids`].
pub fn embed<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    tok: &Tokenizer,
    texts: &[impl AsRef<str>],
    pooling: EmbedPooling,
    normalize: bool,
) -> Result<Vec<Vec<F>>> {
    let seqs = encode_texts(tok, texts)?;
    let pad = tok.pad_id().unwrap_or(0) as usize;
    embed_ids(model, store, hooks, &seqs, pad, pooling, normalize)
}

/// The vocabulary logits (V) at the last position of `ids`: the LM head for GPT, the masked-LM
/// head for BERT.
pub fn last_logits<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    ids: &[usize],
) -> Result<Vec<F>> {
    if ids.is_empty() {
        return invalid("logits", "no token ids");
    }
    let v = model.config.vocab_size;
    if let Some(&bad) = ids.iter().find(|&&i| i >= v) {
        return invalid(
            "logits",
            format!("token id {bad} is outside the vocabulary (size {v})"),
        );
    }
    let ids = Array2::from_shape_vec((1, ids.len()), ids.to_vec()).expect("(1, T)");
    let mut tape = Tape::inference(store);
    let hidden = model.forward(&mut tape, hooks, &Input::new(ids.view()))?;
    let t = ids.ncols();
    let last = tape.slice(hidden, 1, t - 1, t)?;
    let logits = model.lm_logits(&mut tape, hooks, last)?;
    Ok(tape.value(logits).iter().copied().collect())
}
