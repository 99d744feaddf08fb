//! # GRPO's clipped objective and its two normalisations
//!
//! GRPO (Shao et al. 2024) keeps PPO's clipped surrogate (Schulman et al. 2017). The completions
//! were sampled by the policy as it was, π_old; after a few updates the policy π has moved, and
//! the ratio of their probabilities of a sampled token, ρ = π / π_old = exp(log π − log π_old),
//! reweights the old samples for the new policy. With A the completion's advantage (previous
//! exercise), the objective of one token is
//!
//!     min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A)
//!
//! The min makes it pessimistic: once ρ has left [1 − ε, 1 + ε] in the direction the advantage
//! pushes (ρ > 1 + ε with A > 0, ρ < 1 − ε with A < 0), the clipped term is the smaller one and
//! it is flat in ρ, so the token stops pushing. Moving the other way is never clipped: a step
//! that made a good token less likely is always corrected. TRL's `epsilon` is ε (0.2).
//!
//! The loss is minus the objective, averaged over the completion tokens (the mask, (B, T), is
//! true on them, false on prompt tokens and padding), in one of two ways (TRL's
//! `loss_type`):
//!
//! - [`LossType::Grpo`], the paper's: each completion's mean over its own tokens, then the mean
//!   over the B completions. Every completion weighs the same, so a token of a long completion
//!   weighs less than one of a short completion (the length bias Dr. GRPO points out).
//! - [`LossType::Dapo`], DAPO's (Yu et al. 2025, TRL's default; `bnpo` is the same on one
//!   batch): one mean over all the completion tokens of the batch. Every token weighs the same.
//!
//! A completion with no token counts as having one (its mean is 0, not NaN), and a batch with no
//! token likewise.
//!
//! The gradient with respect to log π: ∂ρ/∂ log π = ρ, so a token that is not clipped gets
//! −A·ρ times its weight in the mean, and a clipped one 0. With one update per rollout (TRL's
//! default) π_old = π, ρ = 1 everywhere and this is REINFORCE with the group baseline.
//!
//! Graded against tunelab's `grpo_loss` (src/loss/grpo.rs) with no KL term (β = 0) and
//! ε_high = ε, values and gradients, for both normalisations.

use ndarray::Array2;

/// How the per-token losses are averaged: TRL's `loss_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossType {
    /// Mean over each completion's tokens, then over completions (the GRPO paper).
    Grpo,
    /// Mean over all completion tokens of the batch (DAPO).
    Dapo,
}

/// A batch of B sampled completions, T token positions each.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// log π_old of each sampled token (B, T): the policy that sampled them.
    pub old_logps: Array2<f64>,
    /// One advantage per completion (B).
    pub advantages: Vec<f64>,
    /// True on the completion tokens that count (B, T).
    pub mask: Array2<bool>,
}

/// The clipped objective min(ρ·A, clip(ρ, 1 − ε, 1 + ε)·A) of every token, (B, T), mask aside.
///
///     logps [[ln 1.5, ln 0.5, 0]], old 0, advantages [2], ε 0.2
///         → ρ = (1.5, 0.5, 1): [[2.4, 1.0, 2.0]]
///     the same with advantages [−2]
///         → [[−3.0, −1.6, −2.0]]
pub fn clipped_objective(logps: &Array2<f64>, rollout: &Rollout, epsilon: f64) -> Array2<f64> {
    let mut out = logps - &rollout.old_logps;
    for (mut row, &a) in out.rows_mut().into_iter().zip(&rollout.advantages) {
        row.mapv_inplace(|log_ratio| {
            let rho = log_ratio.exp();
            (rho * a).min(rho.clamp(1.0 - epsilon, 1.0 + epsilon) * a)
        });
    }
    out
}

/// The loss: minus the clipped objective, averaged over the masked tokens as `loss_type` says.
///
///     logps [[ln 1.5, ln 0.5, 0], [0, 0, 0]], old 0, advantages [2, −1],
///     mask [[T, T, T], [T, F, F]], ε 0.2
///         Grpo → ((−2.4 − 1.0 − 2.0) / 3 + 1.0 / 1) / 2 = −0.4
///         Dapo → (−2.4 − 1.0 − 2.0 + 1.0) / 4 = −1.1
pub fn grpo_loss(logps: &Array2<f64>, rollout: &Rollout, epsilon: f64, loss_type: LossType) -> f64 {
    let objective = clipped_objective(logps, rollout, epsilon);
    let weights = token_weights(&rollout.mask, loss_type);
    -(&objective * &weights).sum()
}

/// ∂L/∂logps of [`grpo_loss`], (B, T): −A·ρ times the token's weight where the token is not
/// clipped, 0 where it is (and off the mask).
///
///     the Grpo case above → [[0, −2·0.5/6, −2/6], [1/2, 0, 0]]
///                         = [[0, −0.166667, −0.333333], [0.5, 0, 0]]
///     the Dapo case above → [[0, −0.25, −0.5], [0.25, 0, 0]]
pub fn grpo_loss_grad(
    logps: &Array2<f64>,
    rollout: &Rollout,
    epsilon: f64,
    loss_type: LossType,
) -> Array2<f64> {
    let mut grad = token_weights(&rollout.mask, loss_type);
    for (i, mut row) in grad.rows_mut().into_iter().enumerate() {
        let a = rollout.advantages[i];
        for (t, w) in row.iter_mut().enumerate() {
            let rho = (logps[[i, t]] - rollout.old_logps[[i, t]]).exp();
            // min takes the flat, clipped branch past the bound the advantage pushes towards.
            let clipped = (a > 0.0 && rho > 1.0 + epsilon) || (a < 0.0 && rho < 1.0 - epsilon);
            *w = if clipped { 0.0 } else { -a * rho * *w };
        }
    }
    grad
}

/// Each token's weight in the loss's mean, (B, T): 0 off the mask; on it, 1 / (B · |o_i|) for
/// `Grpo` and 1 / Σ mask for `Dapo` (counts of 0 taken as 1).
fn token_weights(mask: &Array2<bool>, loss_type: LossType) -> Array2<f64> {
    let b = mask.nrows() as f64;
    let total = mask.iter().filter(|&&m| m).count().max(1) as f64;
    let mut weights = Array2::zeros(mask.raw_dim());
    for (m, mut w) in mask.rows().into_iter().zip(weights.rows_mut()) {
        let len = m.iter().filter(|&&x| x).count().max(1) as f64;
        let each = match loss_type {
            LossType::Grpo => 1.0 / (b * len),
            LossType::Dapo => 1.0 / total,
        };
        w.zip_mut_with(&m, |w, &on| *w = if on { each } else { 0.0 });
    }
    weights
}
