//! One layer's slice of the key/value cache ([`super::kv_cache::KvCache`]): the keys and values
//! a block has seen, after its [`Hooks::key_value`](super::hooks::Hooks::key_value) hook, and their key mask. The block reads
//! and extends it ([`super::transformer::Transformer::block_cached`]); this file knows nothing
//! of the model, so the block can use it without a cycle.

use crate::autodiff::{Tape, Var};
use crate::error::{shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{concatenate, Array2, ArrayD, ArrayViewD, Axis};

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
    /// (B, NH, S, HS), after the key/value hook.
    keys: ArrayD<F>,
    values: ArrayD<F>,
    /// (B, S): `true` for keys that may be attended to.
    mask: Array2<bool>,
    /// How many keys the key/value hook prepends (prefix tuning's P), cached once.
    prepended: usize,
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
        self.entry.as_ref().map_or(0, |e| e.mask.ncols())
    }

    pub fn is_empty(&self) -> bool {
        self.entry.is_none()
    }

    /// The cached keys and values (B, NH, S, HS), if any.
    pub fn keys_values(&self) -> Option<(ArrayViewD<'_, F>, ArrayViewD<'_, F>)> {
        self.entry
            .as_ref()
            .map(|e| (e.keys.view(), e.values.view()))
    }

    /// The key mask (B, S), if any.
    pub fn key_mask(&self) -> Option<&Array2<bool>> {
        self.entry.as_ref().map(|e| &e.mask)
    }

    /// Takes the keys and values (B, NH, S', HS) that the key/value hook returned for the new
    /// tokens of `mask` (B, T), caches them and returns the keys, values and key mask attention
    /// is to use: on an empty cache (prefill) those same ones, S' − T of them prepended; on a
    /// filled one (decode) the cache's followed by the new tokens' own T, the prepended ones
    /// dropped (already cached).
    pub fn append(
        &mut self,
        tape: &mut Tape<'_, F>,
        k: Var,
        v: Var,
        mask: &Array2<bool>,
    ) -> Result<(Var, Var, Array2<bool>)> {
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
        let Some(entry) = self.entry.take() else {
            let key_mask = key_padding(mask, ks[2]);
            self.entry = Some(Entry {
                keys: tape.value(k).to_owned(),
                values: tape.value(v).to_owned(),
                mask: key_mask.clone(),
                prepended,
            });
            return Ok((k, v, key_mask));
        };
        let cs = entry.keys.shape();
        if cs[0] != b || cs[1] != ks[1] || cs[3] != ks[3] || prepended != entry.prepended {
            return shape_err(
                "kv cache",
                format!(
                    "new keys {} (with {prepended} prepended) do not continue the cached {} \
                     (with {} prepended)",
                    fmt_shape(&ks),
                    fmt_shape(cs),
                    entry.prepended
                ),
            );
        }
        let (k, v) = if prepended > 0 {
            (
                tape.slice(k, 2, prepended, ks[2])?,
                tape.slice(v, 2, prepended, ks[2])?,
            )
        } else {
            (k, v)
        };
        let past_k = tape.constant(entry.keys);
        let past_v = tape.constant(entry.values);
        let k = tape.concat(&[past_k, k], 2)?;
        let v = tape.concat(&[past_v, v], 2)?;
        let key_mask =
            concatenate(Axis(1), &[entry.mask.view(), mask.view()]).expect("rows checked");
        self.entry = Some(Entry {
            keys: tape.value(k).to_owned(),
            values: tape.value(v).to_owned(),
            mask: key_mask.clone(),
            prepended,
        });
        Ok((k, v, key_mask))
    }
}
