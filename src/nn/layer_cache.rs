//! One layer's slice of the key/value cache ([`super::kv_cache::KvCache`]): the keys and values
//! a block has seen, after its [`Hooks::key_value`](super::hooks::Hooks::key_value) hook, and
//! their key mask, in buffers with room to grow (a decode step copies only its own keys). The
//! block extends it and attends to it in place ([`super::transformer::Transformer::block_cached`]); this file knows nothing
//! of the model, so the block can use it without a cycle.

use crate::autodiff::ops::attention::view4;
use crate::autodiff::{AttnMask, Tape, Var};
use crate::error::{shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{concatenate, s, Array2, Array4, ArrayView4, Axis};

/// The key mask (B, S) for keys (B, NH, S, HS) of which the last T are the tokens of `mask`
/// (B, T): the S − T keys a [`Hooks::key_value`] hook prepended come first and are always real.
pub fn key_padding(mask: &Array2<bool>, s: usize) -> Array2<bool> {
    let (b, t) = mask.dim();
    if s <= t {
        return mask.clone();
    }
    let extra = s - t;
    Array2::from_shape_fn((b, s), |(r, j)| j < extra || mask[[r, j - extra]])
}

/// What one block has cached.
#[derive(Debug, Clone)]
struct Entry<F: Float> {
    /// (B, NH, capacity, HS), after the key/value hook: the first `len` positions are filled,
    /// the rest is room to grow, so a decode step writes its own keys and copies nothing else.
    keys: Array4<F>,
    values: Array4<F>,
    len: usize,
    /// (B, len): `true` for keys that may be attended to.
    mask: Array2<bool>,
    /// How many keys the key/value hook prepends (prefix tuning's P), cached once.
    prepended: usize,
}

impl<F: Float> Entry<F> {
    /// Writes keys and values (B, NH, T, HS) after the filled ones, growing the buffers (to
    /// twice their size at least) when they are full.
    fn push(&mut self, k: ArrayView4<'_, F>, v: ArrayView4<'_, F>) {
        let (b, nh, t, hs) = k.dim();
        let capacity = self.keys.dim().2;
        if self.len + t > capacity {
            let grown = (self.len + t).max(2 * capacity);
            for buf in [&mut self.keys, &mut self.values] {
                let mut bigger = Array4::zeros((b, nh, grown, hs));
                bigger
                    .slice_mut(s![.., .., ..self.len, ..])
                    .assign(&buf.slice(s![.., .., ..self.len, ..]));
                *buf = bigger;
            }
        }
        let new = s![.., .., self.len..self.len + t, ..];
        self.keys.slice_mut(new).assign(&k);
        self.values.slice_mut(new).assign(&v);
        self.len += t;
    }
}

/// One block's cached keys and values; empty until a prefill.
#[derive(Debug, Clone)]
pub struct LayerCache<F: Float> {
    entry: Option<Entry<F>>,
}

impl<F: Float> Default for LayerCache<F> {
    fn default() -> Self {
        Self { entry: None }
    }
}

impl<F: Float> LayerCache<F> {
    /// Cached key positions S (prepended keys included); 0 when empty.
    pub fn len(&self) -> usize {
        self.entry.as_ref().map_or(0, |e| e.len)
    }

    pub fn is_empty(&self) -> bool {
        self.entry.is_none()
    }

    /// The cached keys and values (B, NH, S, HS), if any.
    pub fn keys_values(&self) -> Option<(ArrayView4<'_, F>, ArrayView4<'_, F>)> {
        self.entry.as_ref().map(|e| {
            let filled = s![.., .., ..e.len, ..];
            (e.keys.slice(filled), e.values.slice(filled))
        })
    }

    /// The key mask (B, S), if any.
    pub fn key_mask(&self) -> Option<&Array2<bool>> {
        self.entry.as_ref().map(|e| &e.mask)
    }

    /// Takes the keys and values (B, NH, S', HS) that the key/value hook returned for the new
    /// tokens of `mask` (B, T) and caches them: on an empty cache (prefill) all of them, S' − T
    /// of them prepended; on a filled one (decode) the new tokens' own T, after the cached ones
    /// (the prepended ones are dropped: already cached). Then q (B, NH, T, HS) attends to every
    /// cached key, read in place ([`Tape::attention_over`]); `causal` as the model is.
    pub fn append_attend(
        &mut self,
        tape: &mut Tape<'_, F>,
        (q, k, v): (Var, Var, Var),
        mask: &Array2<bool>,
        causal: bool,
    ) -> Result<Var> {
        let (b, t) = mask.dim();
        let ks = tape.shape(k).to_vec();
        if ks.len() != 4 || ks[0] != b || ks[2] < t || tape.shape(v) != ks.as_slice() {
            return shape_err(
                "kv cache",
                format!(
                    "keys {} and values {} do not fit the new tokens' mask ({b}, {t})",
                    fmt_shape(&ks),
                    fmt_shape(tape.shape(v))
                ),
            );
        }
        let prepended = ks[2] - t;
        let (kv, vv) = (view4(tape.value(k)), view4(tape.value(v)));
        match &mut self.entry {
            None => {
                let mut entry = Entry {
                    keys: Array4::zeros(kv.dim()),
                    values: Array4::zeros(vv.dim()),
                    len: 0,
                    mask: key_padding(mask, ks[2]),
                    prepended,
                };
                entry.push(kv, vv);
                self.entry = Some(entry);
            }
            Some(entry) => {
                let cs = entry.keys.shape();
                if cs[0] != b || cs[1] != ks[1] || cs[3] != ks[3] || prepended != entry.prepended {
                    return shape_err(
                        "kv cache",
                        format!(
                            "new keys {} (with {prepended} prepended) do not continue the \
                             cached ({}, {}, {}, {}) (with {} prepended)",
                            fmt_shape(&ks),
                            cs[0],
                            cs[1],
                            entry.len,
                            cs[3],
                            entry.prepended
                        ),
                    );
                }
                let own = s![.., .., prepended.., ..];
                entry.push(kv.slice(own), vv.slice(own));
                entry.mask =
                    concatenate(Axis(1), &[entry.mask.view(), mask.view()]).expect("rows checked");
            }
        }
        let entry = self.entry.as_ref().expect("filled above");
        let attn_mask = AttnMask {
            causal,
            key_padding: Some(entry.mask.clone()),
            documents: None,
        };
        let (keys, values) = self.keys_values().expect("filled above");
        tape.attention_over(q, keys, values, &attn_mask)
    }
}
