//! What every preference objective shares: the inputs it reads, the rewards it returns, the
//! checked hyperparameters ([`Objective`]), the options they come from, the registry line's
//! shape, and the checks and small tape helpers. The objectives' files import from here only
//! (the registry in `mod.rs` imports them, so they never import it back).

use crate::autodiff::{Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::Float;
use ndarray::{ArrayD, IxDyn};

/// A batch of preference pairs, as the paired objectives read it. Row i of every field is pair i.
#[derive(Debug, Clone, Copy)]
pub struct PairInputs<'a> {
    /// log π(y_c | x), summed over the chosen response's tokens: (B,).
    pub chosen: Var,
    /// log π(y_r | x), summed over the rejected response's tokens: (B,).
    pub rejected: Var,
    /// Counted tokens of each chosen response (B).
    pub chosen_tokens: &'a [usize],
    /// Counted tokens of each rejected response (B).
    pub rejected_tokens: &'a [usize],
    /// log π_ref(y_c | x), summed (B); `None` for reference-free objectives.
    pub ref_chosen: Option<&'a [f64]>,
    /// log π_ref(y_r | x), summed (B).
    pub ref_rejected: Option<&'a [f64]>,
    /// The mean negative log-likelihood of the chosen responses' tokens (0-d), for ORPO and for
    /// SimPO's `cpo_alpha`.
    pub chosen_nll: Option<Var>,
}

/// A batch of unpaired examples, as KTO reads it. Row i of every field is example i.
#[derive(Debug, Clone, Copy)]
pub struct KtoInputs<'a> {
    /// log π(y | x), summed over the completion's tokens: (B,).
    pub logps: Var,
    /// Whether each completion is desirable (B).
    pub labels: &'a [bool],
    /// log π_ref(y | x), summed (B).
    pub ref_logps: &'a [f64],
    /// The policy's log-probabilities of mismatched pairs (prompt i with another example's
    /// completion), without gradient (B'): KTO's reference point is estimated from them.
    pub kl_logps: &'a [f64],
    /// The reference's log-probabilities of the same mismatched pairs (B').
    pub ref_kl_logps: &'a [f64],
}

/// The implicit rewards of a batch, as plain numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PreferenceStats {
    /// β (log π − log π_ref) of each chosen response (β · log π, length-normalised, for the
    /// reference-free objectives). For KTO: the desirable rows.
    pub rewards_chosen: Vec<f64>,
    /// The same of each rejected response. For KTO: the undesirable rows.
    pub rewards_rejected: Vec<f64>,
    /// KTO's reference point z0 (the clamped KL estimate); 0 for the paired objectives.
    pub kl: f64,
}

impl PreferenceStats {
    /// reward_chosen − reward_rejected of each pair (paired objectives).
    pub fn margins(&self) -> Vec<f64> {
        self.rewards_chosen
            .iter()
            .zip(&self.rewards_rejected)
            .map(|(c, r)| c - r)
            .collect()
    }

    /// The mean margin; 0 for no pair. For KTO, mean chosen reward − mean rejected reward (as TRL
    /// logs `rewards/margins`).
    pub fn mean_margin(&self) -> f64 {
        if self.rewards_chosen.len() == self.rewards_rejected.len() {
            mean(&self.margins())
        } else {
            mean(&self.rewards_chosen) - mean(&self.rewards_rejected)
        }
    }

    /// The fraction of pairs whose chosen reward is above the rejected one (TRL's
    /// `rewards/accuracies`); 0 for no pair.
    pub fn accuracy(&self) -> f64 {
        let m = self.margins();
        if m.is_empty() {
            return 0.0;
        }
        m.iter().filter(|&&d| d > 0.0).count() as f64 / m.len() as f64
    }
}

/// A mean, 0 for an empty slice.
pub fn mean(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        0.0
    } else {
        xs.iter().sum::<f64>() / xs.len() as f64
    }
}

/// What an objective computes: the mean loss (0-d) and the batch's rewards.
#[derive(Debug, Clone)]
pub struct PreferenceLoss {
    pub loss: Var,
    pub stats: PreferenceStats,
}

/// One objective with its hyperparameters resolved and checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    /// DPO (`loss_type = "sigmoid"`); conservative DPO when `label_smoothing > 0`.
    Dpo { beta: f64, label_smoothing: f64 },
    /// IPO (`loss_type = "ipo"`): β is the paper's τ.
    Ipo { beta: f64 },
    /// SimPO (`loss_type = "simpo"` of TRL's CPO trainer).
    Simpo {
        beta: f64,
        gamma: f64,
        cpo_alpha: f64,
        label_smoothing: f64,
    },
    /// ORPO: λ is TRL's `beta`.
    Orpo { lambda: f64 },
    /// KTO (`loss_type = "kto"`).
    Kto {
        beta: f64,
        desirable_weight: f64,
        undesirable_weight: f64,
    },
}

impl Objective {
    /// Whether it trains on unpaired examples (KTO) rather than pairs.
    pub fn unpaired(&self) -> bool {
        matches!(self, Objective::Kto { .. })
    }

    /// Whether it reads [`PairInputs::chosen_nll`].
    pub fn needs_nll(&self) -> bool {
        match self {
            Objective::Orpo { .. } => true,
            Objective::Simpo { cpo_alpha, .. } => *cpo_alpha != 0.0,
            _ => false,
        }
    }

    /// The β the implicit rewards are scaled by (ORPO's λ, which TRL also calls `beta`).
    pub fn beta(&self) -> f64 {
        match *self {
            Objective::Dpo { beta, .. }
            | Objective::Ipo { beta }
            | Objective::Simpo { beta, .. }
            | Objective::Kto { beta, .. } => beta,
            Objective::Orpo { lambda } => lambda,
        }
    }
}

/// One objective's line in the registry.
#[derive(Debug)]
pub struct ObjectiveEntry {
    /// TRL's `loss_type` value, as `--loss-type` takes it.
    pub name: &'static str,
    /// Other names `--loss-type` accepts.
    pub aliases: &'static [&'static str],
    /// The objective's usual name (DPO, IPO, ...).
    pub title: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Its hyperparameters and their defaults, by their TRL names.
    pub defaults: &'static [(&'static str, f64)],
    /// Whether it needs the reference policy's log-probabilities.
    pub needs_reference: bool,
    /// The objective from the options (their defaults filled in), checked.
    pub build: fn(&PreferenceOptions) -> Result<Objective>,
}

impl ObjectiveEntry {
    /// The default of hyperparameter `name` (None: the objective does not have it).
    pub fn default_value(&self, name: &str) -> Option<f64> {
        self.defaults
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, v)| v)
    }
}

/// The preference objective's options, by TRL's names (`DPOConfig`, `CPOConfig`, `ORPOConfig`,
/// `KTOConfig`). A hyperparameter left `None` takes the objective's default from the registry.
#[derive(Debug, Clone, PartialEq)]
pub struct PreferenceOptions {
    /// `sigmoid` (DPO), `ipo`, `simpo`, `orpo`, `kto` (aliases: `dpo`).
    pub loss_type: String,
    /// The KL weight β (IPO's τ; ORPO's λ, which TRL's ORPOConfig calls `beta`).
    pub beta: Option<f64>,
    /// Conservative DPO's (and SimPO's) ε, the probability that a label is flipped, in [0, 0.5).
    pub label_smoothing: f64,
    /// SimPO's target margin γ.
    pub simpo_gamma: Option<f64>,
    /// SimPO's weight of the NLL of the chosen responses (TRL's CPO `cpo_alpha`; 0 is pure SimPO).
    pub cpo_alpha: Option<f64>,
    /// KTO's weight of the desirable examples' losses.
    pub desirable_weight: f64,
    /// KTO's weight of the undesirable examples' losses.
    pub undesirable_weight: f64,
}

impl Default for PreferenceOptions {
    fn default() -> Self {
        Self {
            loss_type: "sigmoid".into(),
            beta: None,
            label_smoothing: 0.0,
            simpo_gamma: None,
            cpo_alpha: None,
            desirable_weight: 1.0,
            undesirable_weight: 1.0,
        }
    }
}

impl PreferenceOptions {
    pub(crate) fn beta_for(&self, entry: &ObjectiveEntry) -> Result<f64> {
        let beta = self.beta.or(entry.default_value("beta")).unwrap_or(0.1);
        positive("--beta", beta)
    }
}

/// `v` if finite and > 0, else an error naming `flag`.
pub(crate) fn positive(flag: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        invalid(flag, format!("must be a finite number > 0, got {v}"))
    }
}

/// `v` if finite and ≥ 0, else an error naming `flag`.
pub(crate) fn non_negative(flag: &'static str, v: f64) -> Result<f64> {
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        invalid(flag, format!("must be a finite number ≥ 0, got {v}"))
    }
}

/// ε checked: in [0, 0.5) (at 0.5 the labels carry no information; above, they are reversed).
pub(crate) fn smoothing(v: f64) -> Result<f64> {
    if v.is_finite() && (0.0..0.5).contains(&v) {
        Ok(v)
    } else {
        invalid("--label-smoothing", format!("must be in [0, 0.5), got {v}"))
    }
}

/// Checks a pair batch: `chosen` and `rejected` are (B,) with B > 0, the counts and (when
/// `reference`) the reference log-probabilities have B finite entries, counts > 0 when the
/// objective length-normalises. Returns B.
pub(crate) fn check_pairs<F: Float>(
    op: &'static str,
    tape: &Tape<'_, F>,
    x: &PairInputs<'_>,
    reference: bool,
    counts: bool,
) -> Result<usize> {
    let sc = tape.shape(x.chosen).to_vec();
    let sr = tape.shape(x.rejected).to_vec();
    if sc.len() != 1 || sc != sr {
        return shape_err(
            op,
            format!(
                "chosen and rejected log-probabilities must both be (B,), got {sc:?} and {sr:?}"
            ),
        );
    }
    let b = sc[0];
    if b == 0 {
        return invalid(op, "an empty batch has no loss");
    }
    for (what, n) in [
        ("chosen token counts", x.chosen_tokens.len()),
        ("rejected token counts", x.rejected_tokens.len()),
    ] {
        if n != b {
            return shape_err(op, format!("{n} {what} for {b} pairs"));
        }
    }
    if counts {
        if let Some(i) = x
            .chosen_tokens
            .iter()
            .chain(x.rejected_tokens)
            .position(|&n| n == 0)
        {
            return invalid(
                op,
                format!(
                    "row {} has no response token: its length-normalised log-probability is undefined",
                    i % b
                ),
            );
        }
    }
    if reference {
        let (Some(rc), Some(rr)) = (x.ref_chosen, x.ref_rejected) else {
            return invalid(
                op,
                "needs the reference log-probabilities of both responses",
            );
        };
        for (what, r) in [("chosen", rc), ("rejected", rr)] {
            if r.len() != b {
                return shape_err(
                    op,
                    format!(
                        "{} reference {what} log-probabilities for {b} pairs",
                        r.len()
                    ),
                );
            }
            if let Some(i) = r.iter().position(|v| !v.is_finite()) {
                return invalid(
                    op,
                    format!("reference {what} log-probability of row {i} is {}", r[i]),
                );
            }
        }
    }
    Ok(b)
}

/// A (B,) constant on the tape.
pub(crate) fn column<F: Float>(tape: &mut Tape<'_, F>, xs: &[f64]) -> Var {
    let v: Vec<F> = xs.iter().map(|&x| F::of(x)).collect();
    tape.constant(ArrayD::from_shape_vec(IxDyn(&[xs.len()]), v).expect("(B,)"))
}

/// A (B,) variable's values as f64.
pub(crate) fn values<F: Float>(tape: &Tape<'_, F>, v: Var) -> Vec<f64> {
    tape.value(v).iter().map(|x| x.as_f64()).collect()
}

/// 1 / n of each count, as f64.
pub(crate) fn inverse(counts: &[usize]) -> Vec<f64> {
    counts.iter().map(|&n| 1.0 / n as f64).collect()
}

/// −(1 − ε) log σ(z) − ε log σ(−z), elementwise: the Bradley–Terry negative log-likelihood of a
/// preference whose label is flipped with probability ε (just −log σ(z) for ε = 0, computed
/// without the second term so that it is TRL's sigmoid loss to the last bit).
// ANCHOR: smoothed_nll
pub(crate) fn smoothed_nll_sigmoid<F: Float>(
    tape: &mut Tape<'_, F>,
    z: Var,
    eps: f64,
) -> Result<Var> {
    let ls = tape.log_sigmoid(z)?;
    let clean = tape.scale(ls, -(1.0 - eps))?;
    if eps == 0.0 {
        return Ok(clean);
    }
    let neg = tape.scale(z, -1.0)?;
    let ls_neg = tape.log_sigmoid(neg)?;
    let flipped = tape.scale(ls_neg, -eps)?;
    tape.add(clean, flipped)
}
// ANCHOR_END: smoothed_nll
