//! DPO, Direct Preference Optimization (Rafailov et al. 2023), and conservative DPO (label
//! smoothing): TRL's `loss_type = "sigmoid"`.
//!
//! With the implicit reward r̂(x, y) = β log(π(y|x) / π_ref(y|x)) (the module above derives it
//! from the KL-constrained RLHF objective) and the Bradley–Terry model, the negative
//! log-likelihood of a preference y_c ≻ y_r is
//!
//! ```text
//! h = (log π(y_c) − log π_ref(y_c)) − (log π(y_r) − log π_ref(y_r))
//! ℓ = −log σ(β h)
//! L = (1/B) Σ_i ℓ_i
//! ```
//!
//! Conservative DPO (cDPO, Mitchell 2023) assumes each label is flipped with probability ε and
//! takes the expected loss under that noise:
//!
//! ```text
//! ℓ_ε = −(1 − ε) log σ(β h) − ε log σ(−β h)
//! ```
//!
//! so the loss no longer rewards an infinitely large margin: its minimum is at
//! β h = log((1 − ε)/ε). (TRL 0.x's `DPOTrainer.dpo_loss` applied `label_smoothing` this way to
//! `loss_type = "sigmoid"`; in TRL 1.16, which the golden file records, the DPO trainer's
//! `label_smoothing` feeds only its robust, EXO and AOT losses, and the cDPO formula lives on in
//! `CPOTrainer.cpo_loss`'s sigmoid loss, which the golden file calls with the log-ratios as its
//! inputs.)
//!
//! ## Gradient
//!
//! With d/dz log σ(z) = σ(−z) and z = β h:
//!
//! ```text
//! ∂ℓ_ε/∂h = −β [ (1 − ε) σ(−β h) − ε σ(β h) ]
//! ∂L/∂ log π(y_c,i) = (1/B) ∂ℓ_ε/∂h_i,     ∂L/∂ log π(y_r,i) = −(1/B) ∂ℓ_ε/∂h_i
//! ```
//!
//! For ε = 0 the weight σ(−β h) is the probability the implicit reward model gives to the
//! *wrong* order: pairs it already ranks right by a wide margin get almost no gradient, pairs it
//! ranks wrong get up to β. The gradient only ever sees the difference h: nothing stops both
//! log-probabilities from falling together as long as the rejected one falls faster (DPO's
//! likelihood displacement).
//!
//! ## By hand
//!
//! β = 1, log π = (−1, −2) for (chosen, rejected), log π_ref = (−1, −1): h = 0 − (−1) = 1,
//! ℓ = −log σ(1) = log(1 + e^(−1)) = 0.31326…, ∂ℓ/∂ log π(y_c) = −σ(−1) = −0.26894…, rewards
//! (0, −1), margin 1, accuracy 1. `tests/suite/preference.rs` checks this case, a
//! finite-difference gradient check in f64 and TRL's own values.

use super::common::{
    check_pairs, column, smoothed_nll_sigmoid, smoothing, values, Objective, ObjectiveEntry,
    PairInputs, PreferenceLoss, PreferenceOptions, PreferenceStats,
};
use crate::autodiff::Tape;
use crate::error::Result;
use crate::tensor::Float;

pub const ENTRY: ObjectiveEntry = ObjectiveEntry {
    name: "sigmoid",
    aliases: &["dpo"],
    title: "DPO",
    help: "−log σ(β·h) on the log-ratio difference h; conservative DPO with label_smoothing",
    defaults: &[("beta", 0.1), ("label_smoothing", 0.0)],
    needs_reference: true,
    build,
};

fn build(o: &PreferenceOptions) -> Result<Objective> {
    Ok(Objective::Dpo {
        beta: o.beta_for(&ENTRY)?,
        label_smoothing: smoothing(o.label_smoothing)?,
    })
}

/// The DPO loss of a batch of pairs (conservative DPO for `label_smoothing` > 0), and the
/// implicit rewards β (log π − log π_ref).
pub fn dpo_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    x: &PairInputs<'_>,
    beta: f64,
    label_smoothing: f64,
) -> Result<PreferenceLoss> {
    check_pairs("dpo_loss", tape, x, true, false)?;
    let (rc, rr) = (
        x.ref_chosen.expect("checked"),
        x.ref_rejected.expect("checked"),
    );
    // ANCHOR: dpo
    // h = (log π_c − log π_ref,c) − (log π_r − log π_ref,r), in TRL's order of operations.
    let ref_c = column(tape, rc);
    let ref_r = column(tape, rr);
    let lr_c = tape.sub(x.chosen, ref_c)?;
    let lr_r = tape.sub(x.rejected, ref_r)?;
    let h = tape.sub(lr_c, lr_r)?;
    let z = tape.scale(h, beta)?;
    let per_pair = smoothed_nll_sigmoid(tape, z, label_smoothing)?;
    let loss = tape.mean_all(per_pair)?;
    // ANCHOR_END: dpo
    let stats = PreferenceStats {
        rewards_chosen: values(tape, lr_c).iter().map(|v| beta * v).collect(),
        rewards_rejected: values(tape, lr_r).iter().map(|v| beta * v).collect(),
        kl: 0.0,
    };
    Ok(PreferenceLoss { loss, stats })
}
