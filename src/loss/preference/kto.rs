//! KTO, Kahneman–Tversky Optimization (Ethayarajh et al. 2024): TRL's `KTOTrainer` with
//! `loss_type = "kto"`.
//!
//! KTO needs no pairs: each example is one completion labelled desirable or undesirable. Its
//! value function is prospect theory's: the implicit reward r̂ = β log(π/π_ref) (as in DPO) is
//! compared with a *reference point* z0, the KL divergence of the policy from the reference,
//! which plays the role of the Bradley–Terry partner: a desirable completion should beat it, an
//! undesirable one fall below it.
//!
//! ```text
//! z0 = max(0, mean_j [log π(y'_j | x_j) − log π_ref(y'_j | x_j)])    (detached)
//! ℓ_i = w_D (1 − σ(β (log π(y_i) − log π_ref(y_i) − z0)))   if y_i is desirable
//! ℓ_i = w_U (1 − σ(β (z0 − log π(y_i) + log π_ref(y_i))))   if y_i is undesirable
//! L  = (1/B) Σ_i ℓ_i
//! ```
//!
//! z0 is estimated, as in TRL, on *mismatched* pairs y'_j: prompt j with another example's
//! completion (TRL rotates the completions within each batch of the dataset by one), whose
//! log-ratio measures how far the policy moved on text it was not trained to prefer, a
//! one-sample estimate of KL(π ‖ π_ref). It is computed without gradient and clamped at 0 (a KL
//! is never negative; the estimate can be). The desirable and undesirable weights w_D, w_U
//! balance unequal numbers of each (the paper suggests w_D n_D / (w_U n_U) in [1, 4/3]).
//!
//! ## Gradient
//!
//! With s_i = +1 for desirable and −1 for undesirable rows, ℓ_i = w_i σ(−β s_i (lr_i − z0)) and
//!
//! ```text
//! ∂L/∂ log π(y_i) = −(w_i β s_i / B) σ(β s_i (lr_i − z0)) σ(−β s_i (lr_i − z0))
//! ```
//!
//! A sigmoid's slope, not its log: the gradient vanishes for examples far on either side of the
//! reference point, which makes KTO robust to noisy labels (and slower than DPO on clean ones).
//!
//! ## By hand
//!
//! β = 1, w = 1, two rows: desirable with log-ratio 1, undesirable with log-ratio 0, and KL
//! samples whose log-ratios average −0.5 (z0 = max(0, −0.5) = 0): ℓ = (1 − σ(1)) and
//! (1 − σ(0)) = 0.5, L = (0.26894… + 0.5) / 2 = 0.38447…

use super::common::{
    column, mean, non_negative, values, KtoInputs, Objective, ObjectiveEntry, PreferenceLoss,
    PreferenceOptions, PreferenceStats,
};
use crate::autodiff::Tape;
use crate::error::{invalid, shape_err, Result};
use crate::tensor::Float;

pub const ENTRY: ObjectiveEntry = ObjectiveEntry {
    name: "kto",
    aliases: &[],
    title: "KTO",
    help: "unpaired: 1 − σ(±β·(log-ratio − z0)) against the KL reference point z0",
    defaults: &[
        ("beta", 0.1),
        ("desirable_weight", 1.0),
        ("undesirable_weight", 1.0),
    ],
    needs_reference: true,
    build,
};

fn build(o: &PreferenceOptions) -> Result<Objective> {
    let desirable_weight = non_negative("--desirable-weight", o.desirable_weight)?;
    let undesirable_weight = non_negative("--undesirable-weight", o.undesirable_weight)?;
    if desirable_weight == 0.0 && undesirable_weight == 0.0 {
        return invalid(
            "--desirable-weight",
            "desirable and undesirable weights are both 0: nothing would be learned",
        );
    }
    Ok(Objective::Kto {
        beta: o.beta_for(&ENTRY)?,
        desirable_weight,
        undesirable_weight,
    })
}

/// The KL reference point z0: the mean of `kl_logps − ref_kl_logps`, clamped at 0 (0 for none).
// ANCHOR: reference_point
pub fn reference_point(kl_logps: &[f64], ref_kl_logps: &[f64]) -> f64 {
    if kl_logps.is_empty() {
        return 0.0;
    }
    let diffs: Vec<f64> = kl_logps
        .iter()
        .zip(ref_kl_logps)
        .map(|(p, r)| p - r)
        .collect();
    mean(&diffs).max(0.0)
}
// ANCHOR_END: reference_point

/// The KTO loss of a batch of unpaired examples; the rewards β (log π − log π_ref) of its
/// desirable rows (`rewards_chosen`) and undesirable rows (`rewards_rejected`), and z0.
pub fn kto_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    x: &KtoInputs<'_>,
    beta: f64,
    desirable_weight: f64,
    undesirable_weight: f64,
) -> Result<PreferenceLoss> {
    const OP: &str = "kto_loss";
    let s = tape.shape(x.logps).to_vec();
    if s.len() != 1 {
        return shape_err(OP, format!("log-probabilities must be (B,), got {s:?}"));
    }
    let b = s[0];
    if b == 0 {
        return invalid(OP, "an empty batch has no loss");
    }
    if x.labels.len() != b || x.ref_logps.len() != b {
        return shape_err(
            OP,
            format!(
                "{} labels and {} reference log-probabilities for {b} examples",
                x.labels.len(),
                x.ref_logps.len()
            ),
        );
    }
    if x.kl_logps.len() != x.ref_kl_logps.len() {
        return shape_err(
            OP,
            format!(
                "{} KL log-probabilities of the policy, {} of the reference",
                x.kl_logps.len(),
                x.ref_kl_logps.len()
            ),
        );
    }
    let mut all = x.ref_logps.iter().chain(x.kl_logps).chain(x.ref_kl_logps);
    if let Some(v) = all.find(|v| !v.is_finite()) {
        return invalid(OP, format!("a reference or KL log-probability is {v}"));
    }
    // ANCHOR: kto
    let z0 = reference_point(x.kl_logps, x.ref_kl_logps);
    let ref_v = column(tape, x.ref_logps);
    let lr = tape.sub(x.logps, ref_v)?;
    let z = column(tape, &vec![z0; b]);
    let centred = tape.sub(lr, z)?;
    // ℓ_i = w_i σ(−β s_i (lr_i − z0)) = w_i (1 − σ(β s_i (lr_i − z0))).
    let k: Vec<f64> = x
        .labels
        .iter()
        .map(|&d| if d { -beta } else { beta })
        .collect();
    let w: Vec<f64> = x
        .labels
        .iter()
        .map(|&d| {
            if d {
                desirable_weight
            } else {
                undesirable_weight
            }
        })
        .collect();
    let kv = column(tape, &k);
    let arg = tape.mul(centred, kv)?;
    let sig = tape.sigmoid(arg)?;
    let wv = column(tape, &w);
    let per = tape.mul(sig, wv)?;
    let loss = tape.mean_all(per)?;
    // ANCHOR_END: kto
    let lrv = values(tape, lr);
    let (mut rc, mut rr) = (Vec::new(), Vec::new());
    for (&d, v) in x.labels.iter().zip(lrv) {
        if d {
            rc.push(beta * v);
        } else {
            rr.push(beta * v);
        }
    }
    Ok(PreferenceLoss {
        loss,
        stats: PreferenceStats {
            rewards_chosen: rc,
            rewards_rejected: rr,
            kl: z0,
        },
    })
}
