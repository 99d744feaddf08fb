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
    let trimmed: Vec<Vec<f64>> = task_vectors.iter().map(|t| trim(t, density)).collect();
    let n = task_vectors.first().map_or(0, Vec::len);
    (0..n)
        .map(|j| {
            let total: f64 = trimmed.iter().map(|t| t[j]).sum();
            let elected = if total >= 0.0 { 1.0 } else { -1.0 };
            let (mut sum, mut count) = (0.0, 0usize);
            for (t, &w) in trimmed.iter().zip(weights) {
                if t[j] != 0.0 && t[j].signum() == elected {
                    sum += w * t[j];
                    count += 1;
                }
            }
            sum / count.max(1) as f64
        })
        .collect()
}

/// The k = ⌊density·n⌋ entries of largest magnitude, the others zeroed (all of them kept at
/// density ≥ 1).
fn trim(t: &[f64], density: f64) -> Vec<f64> {
    if density >= 1.0 {
        return t.to_vec();
    }
    let k = (density * t.len() as f64) as usize;
    let mut order: Vec<usize> = (0..t.len()).collect();
    order.sort_by(|&i, &j| t[j].abs().total_cmp(&t[i].abs()));
    let mut out = vec![0.0; t.len()];
    for &i in &order[..k] {
        out[i] = t[i];
    }
    out
}
