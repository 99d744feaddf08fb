//! ORPO, Odds Ratio Preference Optimization (Hong et al. 2024): TRL's
//! `ORPOTrainer.odds_ratio_loss`, no reference model and no separate SFT stage.
//!
//! ORPO adds to the SFT loss on the chosen responses a term that raises the *odds* of the chosen
//! response against those of the rejected one. With the length-averaged log-probability
//! a = (1/n) log π(y|x) (so P = e^a is the geometric-mean token probability) the odds are
//! P / (1 − P), and
//!
//! ```text
//! log odds(y) = a − log(1 − e^a)
//! t  = log odds(y_c) − log odds(y_r)
//! L  = NLL(y_c)  +  λ · (1/B) Σ_i −log σ(t_i)
//! ```
//!
//! λ is what TRL's `ORPOConfig` calls `beta` (default 0.1); the loss TRL returns is
//! `nll − mean(beta · log σ(t))`, this one written the other way round. TRL's ORPO trainer
//! computes the NLL over the chosen prompt *and* response; tunelab's training task passes the
//! NLL of the response tokens only (the paper's L_SFT, and tunelab's supervised loss), which is
//! an input here either way. TRL logs the rewards λ · a.
//!
//! ## log(1 − e^a), stably
//!
//! 1 − e^a cancels as a → 0 (a confident model), so TRL computes it as log1p(−e^a) below
//! a = −ln 2 and log(−expm1(a)) above. The tape has no such op; [`log1m_exp`] puts it on the tape
//! as its tangent line at the current a: the constant f(a₀) − f′(a₀) a₀ plus the constant f′(a₀)
//! times a. At a = a₀ that has f's value and f's derivative, which is all a reverse pass reads,
//! so forward and backward are exact (f computed as TRL does, f′(a) = −1 / expm1(−a)).
//!
//! ## Gradient
//!
//! ```text
//! d log odds / da = 1 + e^a / (1 − e^a) = 1 / (1 − e^a)
//! ∂L/∂ log π(y_c,i) = −(λ / (B n_c,i)) σ(−t_i) / (1 − P_c,i),
//! ∂L/∂ log π(y_r,i) = +(λ / (B n_r,i)) σ(−t_i) / (1 − P_r,i),     ∂L/∂ NLL = 1
//! ```
//!
//! The 1/(1 − P) factor makes the odds term push hardest on responses the model is already
//! sure of, which is why ORPO can train without a reference: it strongly penalises the rejected
//! response's likelihood once it becomes large.
//!
//! ## By hand
//!
//! λ = 1, one pair of one token each with P_c = 1/2, P_r = 1/3: log odds = log 1 = 0 and
//! log(1/2) = −ln 2, t = ln 2, −log σ(ln 2) = log(1 + 1/2) = log 1.5; with NLL 0.25 the loss is
//! 0.25 + log 1.5 = 0.65546…; ∂/∂ log π(y_c) = −σ(−ln 2) / (1 − 1/2) = −(1/3) · 2 = −2/3.

use super::common::{
    check_pairs, column, inverse, values, Objective, ObjectiveEntry, PairInputs, PreferenceLoss,
    PreferenceOptions, PreferenceStats,
};
use crate::autodiff::{Tape, Var};
use crate::error::{invalid, Result};
use crate::tensor::Float;
use ndarray::{ArrayD, IxDyn};

pub const ENTRY: ObjectiveEntry = ObjectiveEntry {
    name: "orpo",
    aliases: &[],
    title: "ORPO",
    help: "NLL of the chosen + λ·(−log σ(log odds_c − log odds_r)), no reference (λ is --beta)",
    defaults: &[("beta", 0.1)],
    needs_reference: false,
    build,
};

fn build(o: &PreferenceOptions) -> Result<Objective> {
    Ok(Objective::Orpo {
        lambda: o.beta_for(&ENTRY)?,
    })
}

/// log(1 − e^x) for x < 0, as TRL's `log1mexp`: branching at −ln 2 to avoid cancellation.
pub fn log1m_exp_f64(x: f64) -> f64 {
    if x < -std::f64::consts::LN_2 {
        (-x.exp()).ln_1p()
    } else {
        (-x.exp_m1()).ln()
    }
}

/// log(1 − e^x) elementwise on the tape, for x < 0: as its tangent line at the current x (see the
/// module doc), so value and gradient are exact. Refuses x ≥ 0 (a probability of 1 has infinite
/// odds).
pub fn log1m_exp<F: Float>(tape: &mut Tape<'_, F>, x: Var) -> Result<Var> {
    let xs: Vec<f64> = tape.value(x).iter().map(|v| v.as_f64()).collect();
    if let Some(i) = xs.iter().position(|&v| v >= 0.0 || !v.is_finite()) {
        return invalid(
            "orpo_loss",
            format!(
                "mean log-probability {} in row {i}: ORPO's odds need a probability below 1",
                xs[i]
            ),
        );
    }
    let slope: Vec<f64> = xs.iter().map(|&v| -1.0 / (-v).exp_m1()).collect();
    let offset: Vec<f64> = xs
        .iter()
        .zip(&slope)
        .map(|(&v, &s)| log1m_exp_f64(v) - s * v)
        .collect();
    let shape = tape.shape(x).to_vec();
    let to = |v: &[f64]| {
        ArrayD::from_shape_vec(IxDyn(&shape), v.iter().map(|&y| F::of(y)).collect())
            .expect("same shape")
    };
    let slope = tape.constant(to(&slope));
    let offset = tape.constant(to(&offset));
    let linear = tape.mul(x, slope)?;
    tape.add(linear, offset)
}

/// The ORPO loss of a batch of pairs: [`PairInputs::chosen_nll`] plus λ times the mean odds-ratio
/// loss; the rewards λ · (mean token log-probability).
pub fn orpo_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    x: &PairInputs<'_>,
    lambda: f64,
) -> Result<PreferenceLoss> {
    check_pairs("orpo_loss", tape, x, false, true)?;
    let Some(nll) = x.chosen_nll else {
        return invalid("orpo_loss", "ORPO needs the NLL of the chosen responses");
    };
    // ANCHOR: orpo
    let inv_c = column(tape, &inverse(x.chosen_tokens));
    let inv_r = column(tape, &inverse(x.rejected_tokens));
    let avg_c = tape.mul(x.chosen, inv_c)?;
    let avg_r = tape.mul(x.rejected, inv_r)?;
    // TRL's grouping: (a_c − a_r) − (log1mexp(a_c) − log1mexp(a_r)).
    let d = tape.sub(avg_c, avg_r)?;
    let l_c = log1m_exp(tape, avg_c)?;
    let l_r = log1m_exp(tape, avg_r)?;
    let dl = tape.sub(l_c, l_r)?;
    let log_odds = tape.sub(d, dl)?;
    let ratio = tape.log_sigmoid(log_odds)?;
    let mean_ratio = tape.mean_all(ratio)?;
    let or_term = tape.scale(mean_ratio, -lambda)?;
    let loss = tape.add(nll, or_term)?;
    // ANCHOR_END: orpo
    let stats = PreferenceStats {
        rewards_chosen: values(tape, avg_c).iter().map(|v| lambda * v).collect(),
        rewards_rejected: values(tape, avg_r).iter().map(|v| lambda * v).collect(),
        kl: 0.0,
    };
    Ok(PreferenceLoss { loss, stats })
}
