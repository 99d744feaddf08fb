//! # A TIES merge
//!
//! Model merging combines fine-tunes of one base without training: each fine-tune is a *task
//! vector* τ_i = θ_i − θ_base, and the merge adds a combination of them to the base. Plain
//! averaging lets the task vectors interfere: small redundant entries dilute the important ones,
//! and an entry that one task pushes up and another down cancels. TIES (Yadav et al., 2023;
//! PEFT's `ties`, `majority_sign_method="total"`) fixes both in three steps:
//!
//! 1. **Trim**: keep the k = ⌊density·n⌋ entries of each τ_i with the largest magnitude, zero
//!    the rest.
//! 2. **Elect a sign** per entry: the sign of Σ_i τ̂_ij (the trimmed values, unweighted), + when
//!    the sum is 0.
//! 3. **Disjoint mean**: per entry, the sum of w_i·τ̂_ij over the inputs whose sign agrees with
//!    the elected one (a 0 never agrees), divided by how many agree (at least 1).
//!
//! For example:
//!
//!     τ₁ [1, −2, 0.1, 3], τ₂ [2, 0.5, −0.2, −1], weights [1, 1], density 0.5
//!       → trimmed [0, −2, 0, 3], [2, 0, 0, −1]; signs [+, −, +, +]; merged [2, −2, 0, 3]
//!
//! Graded against `tunelab::lab::merge::ties` (which follows PEFT's `merge_utils`) on random
//! task vectors.

/// The TIES merge of task vectors (all of one length) with one weight each.
pub fn ties(task_vectors: &[Vec<f64>], weights: &[f64], density: f64) -> Vec<f64> {
    // TODO: trim each vector (sort indices by |τ| descending, keep the first k); elect a sign
    // TODO: per entry; sum w·τ̂ over the agreeing inputs and divide by their count.
    todo!()
}
