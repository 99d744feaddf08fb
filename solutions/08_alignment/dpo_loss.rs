//! # DPO: preference tuning without a reward model
//!
//! RLHF maximises reward minus β·KL(π ‖ π_ref): stay close to the reference model π_ref (the
//! model after supervised fine-tuning) while earning reward. Rafailov et al. (2023, "Direct
//! Preference Optimization") solve that objective in closed form and invert it: the reward the
//! optimal policy implies is r̂(x, y) = β log(π(y|x) / π_ref(y|x)) (plus a term of x alone that
//! cancels in a pair). Put that implicit reward into the Bradley–Terry loss of the previous
//! exercise and the reward model disappears: the policy is trained on the pairs directly.
//!
//! For a pair, with sequence log-probabilities (summed over the response's tokens) of the policy
//! and of the frozen reference, the margin is
//!
//!     h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))
//!
//! and the loss is −log σ(β·h), averaged over the pairs: TRL's `DPOTrainer` with
//! `loss_type="sigmoid"`. β sets how far the policy may drift: a small β needs a large log-ratio
//! for the same loss.
//!
//! The gradient with respect to the policy's log-probabilities follows from
//! d/dz log σ(z) = σ(−z), and the chain rule through β·h: chosen and rejected get equal and
//! opposite pushes, weighted by how wrong the implicit reward still ranks the pair. Note what
//! the gradient sees: only h. Both log-probabilities may fall together, so long as the
//! rejected one falls faster (DPO's likelihood displacement).
//!
//! As with Bradley–Terry, β·h can be large (sequence log-probabilities are sums over many
//! tokens): the loss must stay finite when β·h is ±1000.
//!
//! Graded against tunelab's DPO loss (`dpo_loss`, src/loss/preference/dpo.rs), values and
//! gradients, on random pairs, on margins of ±1000, and by a gradient check of your own loss.

use ndarray::Array1;

/// A batch of N preference pairs: sequence log-probabilities, each (N,), pair i in row i.
/// TRL's names.
#[derive(Debug, Clone)]
pub struct PairLogps {
    /// log π(y_c | x) of the policy being trained.
    pub chosen_logps: Array1<f64>,
    /// log π(y_r | x) of the policy being trained.
    pub rejected_logps: Array1<f64>,
    /// log π_ref(y_c | x) of the frozen reference.
    pub ref_chosen_logps: Array1<f64>,
    /// log π_ref(y_r | x) of the frozen reference.
    pub ref_rejected_logps: Array1<f64>,
}

/// The mean DPO loss of the pairs with temperature `beta`.
///
///     chosen [−1], rejected [−2], ref_chosen [−1], ref_rejected [−1], β 1
///         → h = 1, −log σ(1) = 0.313262
///     chosen [−5, −9], rejected [−7, −7], ref_chosen [−6, −8], ref_rejected [−6, −8], β 0.1
///         → h = (2, −2): (0.598139 + 0.798139) / 2 = 0.698139
pub fn dpo_loss(x: &PairLogps, beta: f64) -> f64 {
    let n = x.chosen_logps.len() as f64;
    margins(x)
        .iter()
        .map(|&h| -log_sigmoid(beta * h))
        .sum::<f64>()
        / n
}

/// (∂L/∂chosen_logps, ∂L/∂rejected_logps) of [`dpo_loss`], each (N,).
///
///     chosen [−1], rejected [−2], ref_chosen [−1], ref_rejected [−1], β 1
///         → ([−0.268941], [0.268941])
///     chosen [−5, −9], rejected [−7, −7], ref_chosen [−6, −8], ref_rejected [−6, −8], β 0.1
///         → ([−0.022508, −0.027492], [0.022508, 0.027492])
pub fn dpo_loss_grad(x: &PairLogps, beta: f64) -> (Array1<f64>, Array1<f64>) {
    let n = x.chosen_logps.len() as f64;
    // ∂ℓ/∂h = −β σ(−β h): the weight of the wrong order, scaled by β.
    let d_chosen = margins(x).mapv(|h| -beta * sigmoid(-beta * h) / n);
    let d_rejected = -&d_chosen;
    (d_chosen, d_rejected)
}

/// h per pair: the policy's log-ratio to the reference on the chosen response minus that on the
/// rejected one.
fn margins(x: &PairLogps) -> Array1<f64> {
    (&x.chosen_logps - &x.ref_chosen_logps) - (&x.rejected_logps - &x.ref_rejected_logps)
}

/// log σ(z) = min(z, 0) − log(1 + e^−|z|): no positive exponent, so no overflow.
fn log_sigmoid(z: f64) -> f64 {
    z.min(0.0) - (-z.abs()).exp().ln_1p()
}

/// σ(z), with a non-positive exponent either side of 0.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}
