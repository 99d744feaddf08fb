//! Language-modelling batches: the world's text cut into token windows, then batched for the
//! causal LM (inputs and next-token targets) or the masked LM (BERT's masking recipe).
//!
//! Pre-training trains on these, and the held-out validation text ([`validation_batches`]) is
//! rebuilt from a tokenizer alone with fixed seeds, so the loss of a shipped model can be
//! measured again at any time and forgetting is scored on the same text.

use crate::autodiff::IGNORE_INDEX;
use crate::data::tokenizer::{Preset, Tokenizer};
use crate::data::world::World;
use crate::error::{invalid, Error, Result};
use ndarray::Array2;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

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

/// The validation batches of a causal (decoder) or masked (encoder) LM: fixed text, fixed
/// masking, rebuilt from the tokenizer alone.
pub fn validation_batches(tok: &Tokenizer, causal: bool, seq_len: usize) -> Result<Vec<LmBatch>> {
    let world = World::generate(WORLD_SEED);
    let docs = world.corpus(VALIDATION_DOCS, VALIDATION_SEED);
    let w = windows(tok, &docs, causal, seq_len)?;
    if w.is_empty() {
        return invalid("pretrain", "validation text is shorter than one window");
    }
    let w: Vec<&Vec<u32>> = w.iter().take(VALIDATION_WINDOWS).collect();
    let mut rng = StdRng::seed_from_u64(VALIDATION_SEED);
    w.chunks(16)
        .map(|c| {
            if causal {
                Ok(causal_batch(c))
            } else {
                masked_batch(tok, c, VALIDATION_MASK_PROB, &mut rng)
            }
        })
        .collect()
}
