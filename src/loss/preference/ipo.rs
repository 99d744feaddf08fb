//! IPO, Identity Preference Optimisation (Azar et al. 2023, "A General Theoretical Paradigm to
//! Understand Learning from Human Preferences"): TRL's `loss_type = "ipo"`.
//!
//! DPO's −log σ keeps pushing a pair it already ranks right (the loss only reaches 0 at an
//! infinite margin), so with deterministic preferences the policy can drift arbitrarily far from
//! the reference whatever β is. IPO replaces the Bradley–Terry likelihood by a squared error that
//! regresses the log-ratio difference onto a finite target, 1/(2τ) (Eq. 17 of the paper, τ being
//! β here):
//!
//! ```text
//! δ = (log π(y_c) − log π_ref(y_c)) / n_c − (log π(y_r) − log π_ref(y_r)) / n_r
//! ℓ = (δ − 1/(2β))²,      L = (1/B) Σ_i ℓ_i
//! ```
//!
//! TRL normalises each log-ratio by its response's token count n (the completion mask's sum,
//! clamped at 1), "to make β comparable across lengths", confirmed with the IPO authors
//! (`DPOTrainer._compute_loss`, TRL 1.16; TRL 0.x averaged the policy and reference
//! log-probabilities in the forward pass, the same quantity). The rewards TRL logs stay the
//! *summed* β (log π − log π_ref), and so do these.
//!
//! ## Gradient
//!
//! ```text
//! ∂L/∂ log π(y_c,i) = (2/B) (δ_i − 1/(2β)) / n_c,i,   ∂L/∂ log π(y_r,i) = −(2/B) (δ_i − 1/(2β)) / n_r,i
//! ```
//!
//! linear in the distance to the target: a pair past the target is pushed *back*, which is the
//! regularisation DPO lacks.
//!
//! ## By hand
//!
//! β = 0.5 (target 1), one pair of one token each, log π = (−1, −3), log π_ref = (−2, −2):
//! δ = 1 − (−1) = 2, ℓ = (2 − 1)² = 1, ∂ℓ/∂ log π(y_c) = 2, ∂ℓ/∂ log π(y_r) = −2.

use super::common::{
    check_pairs, column, inverse, values, Objective, ObjectiveEntry, PairInputs, PreferenceLoss,
    PreferenceOptions, PreferenceStats,
};
use crate::autodiff::Tape;
use crate::error::Result;
use crate::tensor::Float;

pub const ENTRY: ObjectiveEntry = ObjectiveEntry {
    name: "ipo",
    aliases: &[],
    title: "IPO",
    help: "(δ − 1/(2β))² on the length-averaged log-ratio difference δ",
    defaults: &[("beta", 0.1)],
    needs_reference: true,
    build,
};

fn build(o: &PreferenceOptions) -> Result<Objective> {
    Ok(Objective::Ipo {
        beta: o.beta_for(&ENTRY)?,
    })
}

/// The IPO loss of a batch of pairs, and the (summed) implicit rewards.
pub fn ipo_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    x: &PairInputs<'_>,
    beta: f64,
) -> Result<PreferenceLoss> {
    check_pairs("ipo_loss", tape, x, true, true)?;
    let (rc, rr) = (
        x.ref_chosen.expect("checked"),
        x.ref_rejected.expect("checked"),
    );
    // ANCHOR: ipo
    let ref_c = column(tape, rc);
    let ref_r = column(tape, rr);
    let lr_c = tape.sub(x.chosen, ref_c)?;
    let lr_r = tape.sub(x.rejected, ref_r)?;
    let inv_c = column(tape, &inverse(x.chosen_tokens));
    let inv_r = column(tape, &inverse(x.rejected_tokens));
    let avg_c = tape.mul(lr_c, inv_c)?;
    let avg_r = tape.mul(lr_r, inv_r)?;
    let delta = tape.sub(avg_c, avg_r)?;
    let b = tape.shape(delta)[0];
    let target = column(tape, &vec![1.0 / (2.0 * beta); b]);
    let off = tape.sub(delta, target)?;
    let per_pair = tape.square(off)?;
    let loss = tape.mean_all(per_pair)?;
    // ANCHOR_END: ipo
    let stats = PreferenceStats {
        rewards_chosen: values(tape, lr_c).iter().map(|v| beta * v).collect(),
        rewards_rejected: values(tape, lr_r).iter().map(|v| beta * v).collect(),
        kl: 0.0,
    };
    Ok(PreferenceLoss { loss, stats })
}
