//! The reward model's loss: Bradley–Terry on preference pairs, as TRL's `RewardTrainer`.
//!
//! # From pairwise preferences to a loss
//!
//! A reward model gives every (prompt, response) a scalar r(x, y) (the
//! [`RewardHead`](crate::nn::heads::RewardHead) on the last token). The Bradley–Terry model reads
//! rewards as log-strengths: a person shown two responses prefers y_c to y_r with probability
//!
//! ```text
//! P(y_c ≻ y_r | x) = exp r(x, y_c) / (exp r(x, y_c) + exp r(x, y_r)) = σ(r_c − r_r)
//! ```
//!
//! (divide through by exp r_c; σ(z) = 1 / (1 + e^−z)). Training maximises the likelihood of the
//! observed preferences, so the loss over N pairs (chosen r_c,i, rejected r_r,i) is the negative
//! mean log-likelihood
//!
//! ```text
//! L = −(1/N) Σᵢ log σ(dᵢ),   dᵢ = r_c,i − r_r,i − mᵢ
//! ```
//!
//! with an optional margin mᵢ (Llama 2's: a pair rated "much better" must be ranked by more;
//! TRL's `margin` column; 0 by default). It is logistic regression on reward differences: the
//! pair is a binary example "chosen first", its logit dᵢ.
//!
//! Only differences enter σ, so a constant added to every reward changes nothing: the scale's
//! origin is free, and rewards can drift. TRL's `center_rewards_coefficient` η (Eisenstein et
//! al. 2023, arXiv 2312.09244, Eq. 2) adds the penalty
//!
//! ```text
//! L_center = η · (1/N) Σᵢ (r_c,i + r_r,i)²
//! ```
//!
//! which pulls the mean reward to zero without touching the ranking (recommended η = 0.01).
//!
//! # Gradient
//!
//! d/dd log σ(d) = 1 − σ(d) = σ(−d), so
//!
//! ```text
//! ∂L/∂r_c,i = −σ(−dᵢ)/N + 2η(r_c,i + r_r,i)/N
//! ∂L/∂r_r,i = +σ(−dᵢ)/N + 2η(r_c,i + r_r,i)/N
//! ```
//!
//! A pair ranked the wrong way (dᵢ ≪ 0) pushes with the full 1/N, chosen up and rejected down;
//! a pair already ranked by a wide margin (dᵢ ≫ 0) hardly at all, so the loss stops widening
//! margins it has (unlike a hinge on r_c − r_r, it never reaches exactly zero). At dᵢ = 0 the
//! loss is ln 2 and the push ∓1/(2N). With the centering term, equal and opposite pushes on a
//! pair leave r_c + r_r to the penalty alone.
//!
//! The loss is built from tape ops (`sub`, the stable `log_sigmoid`, log σ(d) = min(d, 0) −
//! log(1 + e^−|d|), which neither overflows nor loses the tail, `mean_all`, `square`, `scale`),
//! so its backward is theirs: `tests/suite/reward.rs` checks it against central differences in
//! f64, against the hand-worked case below, and against TRL's own `compute_loss` on fixed
//! rewards (`tools/trl_reward_golden.py`).
//!
//! Hand-worked: rewards r_c = (2, 0), r_r = (0, 0): d = (2, 0), L = (log(1 + e⁻²) + ln 2) / 2 =
//! (0.126928 + 0.693147) / 2 = 0.410038; ∂L/∂r_c = (−σ(−2)/2, −1/4) = (−0.059601, −0.25).

use crate::autodiff::{Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, IxDyn};

/// The reward model's loss with TRL's options. The default is the plain Bradley–Terry loss.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RewardLoss {
    /// η ≥ 0 of the centering penalty η · mean((r_c + r_r)²); `None` (TRL's default): none.
    pub center_rewards_coefficient: Option<f64>,
}

impl RewardLoss {
    /// The loss of rewards `chosen` and `rejected` (both (N,), pair i in row i), with an
    /// optional margin per pair.
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        chosen: Var,
        rejected: Var,
        margin: Option<&[f64]>,
    ) -> Result<Var> {
        const OP: &str = "reward_loss";
        let (sc, sr) = (tape.shape(chosen).to_vec(), tape.shape(rejected).to_vec());
        if sc.len() != 1 || sc != sr || sc[0] == 0 {
            return shape_err(
                OP,
                format!(
                    "chosen and rejected rewards must both be (N,) with N ≥ 1, got {} and {}",
                    fmt_shape(&sc),
                    fmt_shape(&sr)
                ),
            );
        }
        let n = sc[0];
        if let Some(eta) = self.center_rewards_coefficient {
            if !(eta.is_finite() && eta >= 0.0) {
                return invalid(
                    "center_rewards_coefficient",
                    format!("{eta} is not a finite non-negative number"),
                );
            }
        }
        // ANCHOR: bradley_terry
        let mut d = tape.sub(chosen, rejected)?;
        if let Some(m) = margin {
            if m.len() != n || m.iter().any(|x| !x.is_finite()) {
                return invalid(
                    OP,
                    format!(
                        "{} margins for {n} pairs, or a margin that is not finite",
                        m.len()
                    ),
                );
            }
            let m = ArrayD::from_shape_vec(IxDyn(&[n]), m.iter().map(|&x| F::of(x)).collect())
                .expect("n margins");
            let m = tape.constant(m);
            d = tape.sub(d, m)?;
        }
        let log_p = tape.log_sigmoid(d)?;
        let mean = tape.mean_all(log_p)?;
        let mut loss = tape.scale(mean, -1.0)?;
        // ANCHOR_END: bradley_terry
        if let Some(eta) = self.center_rewards_coefficient {
            let sum = tape.add(chosen, rejected)?;
            let sq = tape.square(sum)?;
            let center = tape.mean_all(sq)?;
            let center = tape.scale(center, eta)?;
            loss = tape.add(loss, center)?;
        }
        Ok(loss)
    }
}

/// The plain Bradley–Terry loss −mean log σ(r_c − r_r).
pub fn reward_loss<F: Float>(tape: &mut Tape<'_, F>, chosen: Var, rejected: Var) -> Result<Var> {
    RewardLoss::default().forward(tape, chosen, rejected, None)
}
