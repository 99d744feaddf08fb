//! # Causal scaled dot-product attention
//!
//! One head of attention, for queries q (T, HS) and keys and values k, v (S, HS):
//!
//!     scores = q kᵀ / √HS          (T, S): how well query t matches key j
//!     A      = softmax(mask(scores)) per row
//!     y      = A v                 (T, HS): a weighted average of the values
//!
//! Dividing by √HS keeps the scores' variance near 1 whatever the head size, so softmax does not
//! saturate. The **causal mask** sets the score of every future key to −∞ (weight exactly 0), so
//! a decoder cannot look at the token it must predict.
//!
//! With prefix tuning there are more keys than queries: S = P + T, the first P keys being the
//! learned prefix. Query t then sees keys 0 ..= t + (S − T): the whole prefix, and the tokens up
//! to itself. With S = T that is the plain causal mask.
//!
//! Graded against tunelab's fused attention op (`Tape::attention` with a causal mask), with and
//! without extra prefix keys.

use ndarray::Array2;

/// Causal attention of one head: q (T, HS), k and v (S, HS) with S ≥ T; returns (T, HS).
///
///     T = S = 2, query 0 can only see key 0, so y[0] = v[0] exactly.
pub fn causal_attention(q: &Array2<f64>, k: &Array2<f64>, v: &Array2<f64>) -> Array2<f64> {
    // TODO: scores = q·kᵀ/√HS; in row t set columns j > t + (S − T) to −∞;
    // TODO: softmax each row (stably); return scores·v.
    todo!()
}
