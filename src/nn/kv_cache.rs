//! A key/value cache for generation (Hugging Face's `past_key_values`).
//!
//! A causal model's keys and values at a position depend only on the tokens up to it, so once a
//! prompt has run they never change. Generation without a cache re-runs the whole sequence for
//! every new token, T rows through every matmul for one token of output; with the cache only the
//! new token runs:
//!
//! - **prefill**: the prompt (B, T) runs once, as in [`Transformer::forward`], and every block
//!   keeps its keys and values (B, NH, S, HS) as they enter attention, that is after the
//!   [`Hooks::key_value`] hook: prefix tuning's P learned keys are in them (S = P + T), IA3's
//!   rescaling too, and prompt tuning's virtual tokens (the [`Hooks::embeddings`] hook prepends
//!   them to the prompt) are P more cached positions. Beside them, the key mask (B, S): `true`
//!   for the prefix, the virtual tokens and real tokens, `false` for left padding.
//! - **decode**: the new tokens (B, T') (one per row in generation) are embedded at their
//!   positions; the embeddings hook runs and its prepended tokens are dropped again (they are
//!   cached); in every block the new queries, keys and values are computed, the key/value hook
//!   runs and its prepended keys are dropped (cached), the new keys and values are appended to the
//!   cache, and the T' queries attend to all S + T' keys. Attention's causal mask already lets
//!   query t see keys up to t + (S' − T') ([`crate::autodiff::AttnMask`]), so the new queries see
//!   every cached key and none of the later new ones. The MLP, the final LayerNorm and the LM head
//!   are per position and run on the T' new rows only.
//!
//! Decode thus costs O(L·C²) per token for the projections and O(L·S·C) for attention, where
//! the uncached step costs O(L·S·C²) + O(L·S²·C). The results are the same: every other hook
//! ([`Hooks::linear`]: LoRA, DoRA, IA3's k/v scales, adapters; [`Hooks::mlp_hidden`]: IA3) acts
//! on each position alone, and the keys a method prepends (prefix, prompt) do not depend on the
//! input, which is what the cache assumes of a method.
//!
//! The cache holds constants between tapes, so it is for inference: [`Transformer::forward_cached`]
//! refuses a tape in training mode. Rows that are finished can be fed a padding token with its
//! mask `false`: it is cached as a padding key that no query attends to. A forward that fails
//! clears the cache (its layers could disagree), so the next one is a prefill.

use super::hooks::Hooks;
pub use super::layer_cache::{key_padding, LayerCache};
use super::transformer::{Input, Transformer};
use crate::autodiff::{Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::Float;
use ndarray::Array2;

/// The cache of a whole model: one [`LayerCache`] per block, the number of virtual tokens the
/// embeddings hook prepends, and each row's next position id.
#[derive(Debug, Clone)]
pub struct KvCache<F: Float> {
    pub layers: Vec<LayerCache<F>>,
    /// P: the virtual tokens [`Hooks::embeddings`] prepended at prefill (prompt tuning).
    virtual_tokens: usize,
    /// Per row, one past the largest position id of its real tokens so far (0 for none).
    next_positions: Vec<usize>,
}

impl<F: Float> KvCache<F> {
    /// An empty cache for `model`.
    pub fn new(model: &Transformer) -> Self {
        Self {
            layers: vec![LayerCache::default(); model.blocks.len()],
            virtual_tokens: 0,
            next_positions: Vec::new(),
        }
    }

    /// Whether nothing is cached yet (the next [`Transformer::forward_cached`] is a prefill).
    pub fn is_empty(&self) -> bool {
        self.layers.iter().all(LayerCache::is_empty)
    }

    /// Cached key positions S (prefix, virtual tokens, padding and tokens).
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, LayerCache::len)
    }

    /// The batch size B of the cached rows (0 when empty).
    pub fn rows(&self) -> usize {
        self.next_positions.len()
    }

    /// Each row's next position id: where its next token goes.
    pub fn next_positions(&self) -> &[usize] {
        &self.next_positions
    }

    /// Forgets everything (the next forward is a prefill again).
    pub fn clear(&mut self) {
        for l in &mut self.layers {
            *l = LayerCache::default();
        }
        self.virtual_tokens = 0;
        self.next_positions.clear();
    }
}

impl Transformer {
    /// [`Transformer::forward`] through a [`KvCache`]: the hidden states (B, T, C) of the tokens
    /// of `input`, which come after the cached ones. On an empty cache this is the prefill (the
    /// same computation as `forward`, filling the cache); on a filled one a decode step, where
    /// `input` holds only the new tokens. Positions default to each row's next ones
    /// ([`KvCache::next_positions`]) in a decode step and to 0..T in a prefill. Inference only.
    pub fn forward_cached<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        input: &Input<'_>,
        cache: &mut KvCache<F>,
    ) -> Result<Var> {
        if tape.is_train() {
            return invalid(
                "kv cache",
                "the key/value cache is for inference; use Tape::inference (dropout off)",
            );
        }
        if input.documents.is_some() {
            return invalid(
                "kv cache",
                "packed rows (document ids) are for training; generate one document per row",
            );
        }
        if cache.layers.len() != self.blocks.len() {
            return invalid(
                "kv cache",
                format!(
                    "the cache has {} layers, the model {} blocks",
                    cache.layers.len(),
                    self.blocks.len()
                ),
            );
        }
        let (b, t) = input.ids.dim();
        let prefill = cache.is_empty();
        if let Some(m) = input.mask {
            if m.dim() != (b, t) {
                return shape_err(
                    "kv cache",
                    format!("mask is {:?}, ids are ({b}, {t})", m.dim()),
                );
            }
        }
        if !prefill && b != cache.rows() {
            return shape_err(
                "kv cache",
                format!(
                    "{b} rows of new tokens for a cache of {} rows",
                    cache.rows()
                ),
            );
        }
        let positions: Array2<usize> = match input.positions {
            Some(p) if p.dim() != (b, t) => {
                return shape_err(
                    "kv cache",
                    format!("positions are {:?}, ids are ({b}, {t})", p.dim()),
                )
            }
            Some(p) => p.to_owned(),
            None if prefill => Array2::from_shape_fn((b, t), |(_, j)| j),
            None => Array2::from_shape_fn((b, t), |(r, j)| cache.next_positions[r] + j),
        };
        let real = |r: usize, j: usize| input.mask.is_none_or(|m| m[[r, j]]);
        if let Some(((r, j), &p)) = positions
            .indexed_iter()
            .find(|&((r, j), &p)| real(r, j) && p >= self.config.max_len)
        {
            return invalid(
                "kv cache",
                format!(
                    "token {j} of row {r} is at position {p}, past max_len {}",
                    self.config.max_len
                ),
            );
        }
        let embedded = Input {
            positions: Some(positions.view()),
            ..*input
        };
        let x = self.embed_with(tape, hooks, &embedded)?;
        let x = hooks.embeddings(tape, x)?;
        let total = tape.shape(x)[1];
        let virtual_tokens = total.checked_sub(t).ok_or_else(|| crate::Error::Shape {
            op: "kv cache",
            detail: "the embeddings hook shortened the sequence".into(),
        })?;
        if !prefill && virtual_tokens != cache.virtual_tokens {
            return shape_err(
                "kv cache",
                format!(
                    "the embeddings hook prepended {virtual_tokens} tokens, {} at prefill",
                    cache.virtual_tokens
                ),
            );
        }
        let x = if !prefill && virtual_tokens > 0 {
            // Already cached at prefill.
            tape.slice(x, 1, virtual_tokens, total)?
        } else {
            x
        };
        let skip = if prefill { virtual_tokens } else { 0 };
        let mask = Array2::from_shape_fn((b, skip + t), |(r, j)| j < skip || real(r, j - skip));
        let blocks = |cache: &mut KvCache<F>, tape: &mut Tape<'_, F>| {
            let mut x = x;
            for (i, layer) in cache.layers.iter_mut().enumerate() {
                x = self.block_cached(tape, hooks, i, x, &mask, Some(layer))?;
            }
            Ok(x)
        };
        let mut x = match blocks(cache, tape) {
            Ok(x) => x,
            Err(e) => {
                // Some layers may have appended and others not: start again from a prefill.
                cache.clear();
                return Err(e);
            }
        };
        if let Some(ln) = &self.ln_f {
            x = ln.forward(tape, x)?;
        }
        if skip > 0 {
            x = tape.slice(x, 1, skip, skip + t)?;
        }
        if prefill {
            cache.virtual_tokens = virtual_tokens;
            cache.next_positions = vec![0; b];
        }
        for (r, next) in cache.next_positions.iter_mut().enumerate() {
            for j in 0..t {
                if real(r, j) {
                    *next = (*next).max(positions[[r, j]] + 1);
                }
            }
        }
        Ok(x)
    }
}
