//! # Prefix tuning: learned keys and values
//!
//! Prefix tuning (Li & Liang, 2021) keeps the whole model frozen and learns, for every layer, P
//! key vectors and P value vectors that are *prepended* to that layer's keys and values. Every
//! query attends to them as if they were P earlier tokens, which steers the layer without
//! changing a weight. The prefix positions have no output of their own, so nothing after the
//! attention changes shape.
//!
//! All prefixes live in one table (P, 2·L·C), laid out as PEFT lays out `past_key_values`:
//!
//! - column block 2l (C columns) holds layer l's keys, block 2l + 1 its values;
//! - inside a block, head h owns columns h·HS .. (h+1)·HS.
//!
//! So layer l's prefix keys for head h, position i, are table[i, 2l·C + h·HS + j], and the keys
//! after the hook are (B, NH, P + T, HS): the P prefix keys (the same for every row of the
//! batch), then the T real ones.
//!
//! Graded against the `key_value` hook of `tunelab::peft::prefix` (trained directly, without the
//! reparameterization MLP) on a two-layer model.

use ndarray::{Array2, Array4};

/// Layer `layer`'s keys and values with its prefix prepended: table (P, 2·L·C), k and v
/// (B, NH, T, HS); returns (B, NH, P + T, HS) twice.
pub fn prefix_keys_values(
    table: &Array2<f64>,
    layer: usize,
    k: &Array4<f64>,
    v: &Array4<f64>,
) -> (Array4<f64>, Array4<f64>) {
    let (b, nh, t, hs) = k.dim();
    let p = table.nrows();
    let c = nh * hs;
    let keys_at = 2 * layer * c;
    let prepend = |x: &Array4<f64>, block: usize| {
        let mut out = Array4::zeros((b, nh, p + t, hs));
        for ((bi, h, i, j), o) in out.indexed_iter_mut() {
            *o = if i < p {
                table[[i, block + h * hs + j]]
            } else {
                x[[bi, h, i - p, j]]
            };
        }
        out
    };
    (prepend(k, keys_at), prepend(v, keys_at + c))
}
