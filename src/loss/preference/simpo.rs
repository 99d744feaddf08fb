//! SimPO, Simple Preference Optimization (Meng et al. 2024): TRL's `CPOTrainer` with
//! `loss_type = "simpo"`.
//!
//! SimPO drops the reference model. Its implicit reward is the policy's *length-normalised*
//! log-probability, β · (1/n) log π(y|x), the quantity generation actually ranks responses by
//! (beam search and sampling compare per-token likelihoods), and it asks the chosen reward to
//! beat the rejected one by a target margin γ:
//!
//! ```text
//! a_c = log π(y_c) / n_c,   a_r = log π(y_r) / n_r
//! u   = β (a_c − a_r − γ/β)                     (TRL's order: logits − γ/β, times β)
//! ℓ   = −(1 − ε) log σ(u) − ε log σ(−u)
//! L   = (1/B) Σ_i ℓ_i  +  cpo_alpha · NLL(y_c)
//! ```
//!
//! The normalisation is what keeps SimPO from *length exploitation*: with a summed log-probability
//! (no reference to cancel the length), a longer rejected response is automatically less likely,
//! and the model can raise the margin by preferring short answers. TRL's CPO trainer adds
//! cpo_alpha times the mean NLL of the chosen responses' tokens (CPO's behaviour-cloning term,
//! `cpo_alpha = 1` by default there); pure SimPO is `cpo_alpha = 0`, this registry's default.
//! TRL also applies `label_smoothing` to SimPO, and so does this.
//!
//! ## Gradient
//!
//! ```text
//! ∂ℓ/∂u = −[(1 − ε) σ(−u) − ε σ(u)]
//! ∂L/∂ log π(y_c,i) = (β / (B n_c,i)) ∂ℓ/∂u_i,   ∂L/∂ log π(y_r,i) = −(β / (B n_r,i)) ∂ℓ/∂u_i
//! ∂L/∂ NLL = cpo_alpha
//! ```
//!
//! ## By hand
//!
//! β = 2, γ = 1, one pair, log π(y_c) = −2 over 2 tokens, log π(y_r) = −6 over 3: a_c = −1,
//! a_r = −2, u = 2 (1 − 0.5) = 1, ℓ = log(1 + e^(−1)) = 0.31326…, ∂ℓ/∂ log π(y_c) =
//! −σ(−1) · 2 / 2 = −0.26894…, rewards (β a_c, β a_r) = (−2, −4).

use super::common::{
    check_pairs, column, inverse, non_negative, smoothed_nll_sigmoid, smoothing, values, Objective,
    ObjectiveEntry, PairInputs, PreferenceLoss, PreferenceOptions, PreferenceStats,
};
use crate::autodiff::Tape;
use crate::error::{invalid, Result};
use crate::tensor::Float;

pub const ENTRY: ObjectiveEntry = ObjectiveEntry {
    name: "simpo",
    aliases: &[],
    title: "SimPO",
    help: "−log σ(β·(mean log π_c − mean log π_r) − γ), no reference",
    // The SimPO paper's ranges are β 2–2.5 and γ/β 0.3–0.8 (β 2, γ 1 here); TRL's CPOConfig
    // defaults are β 0.1, simpo_gamma 0.5, cpo_alpha 1.
    defaults: &[
        ("beta", 2.0),
        ("simpo_gamma", 1.0),
        ("cpo_alpha", 0.0),
        ("label_smoothing", 0.0),
    ],
    needs_reference: false,
    build,
};

fn build(o: &PreferenceOptions) -> Result<Objective> {
    Ok(Objective::Simpo {
        beta: o.beta_for(&ENTRY)?,
        gamma: non_negative(
            "--simpo-gamma",
            o.simpo_gamma
                .or(ENTRY.default_value("simpo_gamma"))
                .unwrap_or(1.0),
        )?,
        cpo_alpha: non_negative(
            "--cpo-alpha",
            o.cpo_alpha
                .or(ENTRY.default_value("cpo_alpha"))
                .unwrap_or(0.0),
        )?,
        label_smoothing: smoothing(o.label_smoothing)?,
    })
}

/// The SimPO loss of a batch of pairs (plus `cpo_alpha` times [`PairInputs::chosen_nll`]), and
/// the rewards β · (mean token log-probability).
pub fn simpo_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    x: &PairInputs<'_>,
    beta: f64,
    gamma: f64,
    cpo_alpha: f64,
    label_smoothing: f64,
) -> Result<PreferenceLoss> {
    let b = check_pairs("simpo_loss", tape, x, false, true)?;
    // ANCHOR: simpo
    let inv_c = column(tape, &inverse(x.chosen_tokens));
    let inv_r = column(tape, &inverse(x.rejected_tokens));
    let avg_c = tape.mul(x.chosen, inv_c)?;
    let avg_r = tape.mul(x.rejected, inv_r)?;
    let d = tape.sub(avg_c, avg_r)?;
    let g = column(tape, &vec![gamma / beta; b]);
    let logits = tape.sub(d, g)?;
    let u = tape.scale(logits, beta)?;
    let per_pair = smoothed_nll_sigmoid(tape, u, label_smoothing)?;
    let mut loss = tape.mean_all(per_pair)?;
    // ANCHOR_END: simpo
    if cpo_alpha != 0.0 {
        let Some(nll) = x.chosen_nll else {
            return invalid(
                "simpo_loss",
                "cpo_alpha > 0 needs the NLL of the chosen responses",
            );
        };
        let bc = tape.scale(nll, cpo_alpha)?;
        loss = tape.add(loss, bc)?;
    }
    let stats = PreferenceStats {
        rewards_chosen: values(tape, avg_c).iter().map(|v| beta * v).collect(),
        rewards_rejected: values(tape, avg_r).iter().map(|v| beta * v).collect(),
        kl: 0.0,
    };
    Ok(PreferenceLoss { loss, stats })
}
