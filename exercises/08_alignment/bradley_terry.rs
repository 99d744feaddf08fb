//! # The reward model's loss: Bradley–Terry on preference pairs
//!
//! RLHF (Ouyang et al. 2022, InstructGPT) starts by training a reward model: a network that gives
//! every (prompt, response) a scalar r. Its data are pairs: for a prompt, a person preferred the
//! chosen response y_c to the rejected y_r. The Bradley–Terry model (1952) reads rewards as
//! log-strengths, so the probability of that preference is
//!
//!     P(y_c ≻ y_r) = exp r_c / (exp r_c + exp r_r) = σ(r_c − r_r),     σ(z) = 1 / (1 + e^−z)
//!
//! (divide through by exp r_c). Training maximises the likelihood of the observed preferences,
//! so over N pairs the loss is the mean negative log-likelihood
//!
//!     L = −(1/N) Σ_i log σ(d_i),     d_i = r_c,i − r_r,i
//!
//! logistic regression on reward differences: TRL's `RewardTrainer` computes
//! `-logsigmoid(rewards_chosen - rewards_rejected).mean()`.
//!
//! Only differences enter σ: add a constant to every reward and nothing changes, so rewards can
//! drift. TRL's `center_rewards_coefficient` η (Eisenstein et al. 2023) adds a penalty
//! η·(1/N) Σ_i (r_c,i + r_r,i)² that pulls the mean reward to zero without touching the ranking.
//!
//! Two things to get right:
//!
//! - **Stability.** A trained reward model ranks pairs by margins of tens or hundreds, and early
//!   on ranks some wrong by as much. Written literally, log(1 / (1 + e^−d)) overflows for d ≪ 0
//!   (e^1000 is infinite in f64) and the loss becomes infinite; find a way to write log σ(d) that
//!   never exponentiates a large positive number.
//! - **The gradient.** d/dz log σ(z) = 1 − σ(z) = σ(−z): a pair pushes chosen up and rejected
//!   down with the probability the model still gives to the wrong order, divided by N.
//!
//! Graded against tunelab's reward loss (`RewardLoss`, src/loss/reward.rs), values and gradients,
//! on random rewards, on margins of ±1000, and by a gradient check of your own loss.

use ndarray::Array1;

/// −(1/N) Σ log σ(r_c − r_r) + η·(1/N) Σ (r_c + r_r)² for rewards `chosen` and `rejected` (N,),
/// pair i in row i; η = `center_rewards_coefficient` (0: the plain Bradley–Terry loss).
///
///     chosen [2, 0], rejected [0, 0], η 0    → (log(1 + e^−2) + ln 2) / 2 = 0.410038
///     chosen [2, 0], rejected [0, 0], η 0.01 → 0.410038 + 0.01 · (4 + 0) / 2 = 0.430038
///     chosen [0], rejected [1000], η 0       → 1000 (not inf)
pub fn bradley_terry_loss(
    chosen: &Array1<f64>,
    rejected: &Array1<f64>,
    center_rewards_coefficient: f64,
) -> f64 {
    // TODO: the mean of −log σ(r_c − r_r) over the pairs, written so that it stays finite when
    // r_c − r_r is ±1000; then add η times the mean of (r_c + r_r)².
    todo!()
}

/// (∂L/∂chosen, ∂L/∂rejected) of [`bradley_terry_loss`], each (N,).
///
///     chosen [2, 0], rejected [0, 0], η 0    → ([−0.059601, −0.25], [0.059601, 0.25])
///     chosen [2, 0], rejected [0, 0], η 0.01 → ([−0.039601, −0.25], [0.079601, 0.25])
pub fn bradley_terry_grad(
    chosen: &Array1<f64>,
    rejected: &Array1<f64>,
    center_rewards_coefficient: f64,
) -> (Array1<f64>, Array1<f64>) {
    // TODO: for each pair, σ(−(r_c − r_r)) is the weight of the wrong order: chosen gets minus it,
    // rejected plus it; both get the centering term's derivative; divide everything by N.
    todo!()
}
