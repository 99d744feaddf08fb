//! Preference objectives: DPO and its family, each a loss over the sequence log-probabilities of
//! a chosen and a rejected response, one file per objective.
//!
//! ## The shared derivation
//!
//! RLHF fine-tunes a policy π to maximise a reward r(x, y) while staying close to the reference
//! policy π_ref it started from (the SFT model):
//!
//! ```text
//! max_π  E_{x, y∼π(·|x)} [ r(x, y) ]  −  β · KL( π(·|x) ‖ π_ref(·|x) )
//! ```
//!
//! For each prompt x this is maximised over distributions on y, and the maximiser has a closed
//! form. Writing the objective as −β · KL(π ‖ π_ref·exp(r/β) / Z(x)) + β log Z(x), with the
//! partition function Z(x) = Σ_y π_ref(y|x) exp(r(x, y)/β), it is largest when the KL is 0:
//!
//! ```text
//! π*(y|x) = π_ref(y|x) · exp(r(x, y) / β) / Z(x)
//! ```
//!
//! Solved for r, every reward is the log-ratio of its optimal policy to the reference, up to a
//! term that depends on the prompt only:
//!
//! ```text
//! r(x, y) = β log( π*(y|x) / π_ref(y|x) ) + β log Z(x)
//! ```
//!
//! Z(x) sums over every response and cannot be computed, but a preference compares two
//! responses to the *same* prompt, so it cancels: under the Bradley–Terry model
//! P(y_c ≻ y_r | x) = σ(r(x, y_c) − r(x, y_r)), and the difference of two rewards is
//! β log(π/π_ref)(y_c) − β log(π/π_ref)(y_r), with no Z. Fitting π to the preferences by
//! maximum likelihood *is* fitting the reward model whose optimal policy π is: DPO's loss is the
//! Bradley–Terry negative log-likelihood with the implicit reward β log(π/π_ref) ([`dpo`]). The
//! others change the link (IPO's square, [`ipo`]), drop the reference (SimPO's length-normalised
//! log-probability, [`simpo`]; ORPO's odds, [`orpo`]) or the pairing (KTO, [`kto`]).
//!
//! β is the KL constraint's weight: small β lets π move far from π_ref (the implicit rewards are
//! small for a given log-ratio, so the loss asks for large log-ratios); large β keeps it close.
//!
//! ## Inputs
//!
//! [`PairInputs`]: the policy's sequence log-probabilities log π(y | x) of the chosen and of the
//! rejected responses, as tape [`Var`]s (B,), *summed* over each response's tokens
//! ([`crate::loss::sequence_logps`] with `average = false`: prompt and padding masked); each
//! row's token count, for the objectives that length-normalise (they divide by it themselves);
//! the reference log-probabilities as constants (`Option<&[f64]>`, `None` for the
//! reference-free objectives: the reference is never differentiated); and the mean NLL of the
//! chosen responses, for ORPO (and SimPO with `cpo_alpha`). KTO is unpaired: [`KtoInputs`].
//!
//! ## Outputs
//!
//! Each objective returns the mean loss over the batch (a 0-d `Var`) and [`PreferenceStats`] as
//! plain f64: the implicit rewards of each row, β (log π − log π_ref) (β · log π for the
//! reference-free ones, as TRL logs them), from which the margins and the preference accuracy
//! (reward_chosen > reward_rejected) follow.
//!
//! ## The registry
//!
//! [`OBJECTIVES`] lists every objective with its name (TRL's `loss_type`), a help line, its
//! default hyperparameters and whether it needs a reference, so the CLI and `compare` can list
//! them. Adding one is a file here with its `ENTRY`, one line in [`OBJECTIVES`], and a variant of
//! [`Objective`] (the test `every_objective_is_in_the_registry` fails without the line).

pub mod common;
pub mod dpo;
pub mod ipo;
pub mod kto;
pub mod orpo;
pub mod simpo;

pub use common::{
    mean, KtoInputs, Objective, ObjectiveEntry, PairInputs, PreferenceLoss, PreferenceOptions,
    PreferenceStats,
};

use crate::autodiff::Tape;
use crate::error::{invalid, Result};
use crate::tensor::Float;

impl Objective {
    /// Its line in the registry.
    pub fn entry(&self) -> &'static ObjectiveEntry {
        match self {
            Objective::Dpo { .. } => &dpo::ENTRY,
            Objective::Ipo { .. } => &ipo::ENTRY,
            Objective::Simpo { .. } => &simpo::ENTRY,
            Objective::Orpo { .. } => &orpo::ENTRY,
            Objective::Kto { .. } => &kto::ENTRY,
        }
    }

    pub fn name(&self) -> &'static str {
        self.entry().name
    }

    /// Whether it compares against a reference policy.
    pub fn needs_reference(&self) -> bool {
        self.entry().needs_reference
    }

    /// The loss of a batch of pairs. KTO refuses: it needs [`Objective::unpaired_loss`].
    pub fn pair_loss<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        inputs: &PairInputs<'_>,
    ) -> Result<PreferenceLoss> {
        match *self {
            Objective::Dpo {
                beta,
                label_smoothing,
            } => dpo::dpo_loss(tape, inputs, beta, label_smoothing),
            Objective::Ipo { beta } => ipo::ipo_loss(tape, inputs, beta),
            Objective::Simpo {
                beta,
                gamma,
                cpo_alpha,
                label_smoothing,
            } => simpo::simpo_loss(tape, inputs, beta, gamma, cpo_alpha, label_smoothing),
            Objective::Orpo { lambda } => orpo::orpo_loss(tape, inputs, lambda),
            Objective::Kto { .. } => invalid(
                "--loss-type",
                "kto trains on unpaired examples: use the unpaired loss",
            ),
        }
    }

    /// The loss of a batch of unpaired examples (KTO only).
    pub fn unpaired_loss<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        inputs: &KtoInputs<'_>,
    ) -> Result<PreferenceLoss> {
        match *self {
            Objective::Kto {
                beta,
                desirable_weight,
                undesirable_weight,
            } => kto::kto_loss(tape, inputs, beta, desirable_weight, undesirable_weight),
            other => invalid(
                "--loss-type",
                format!("{} trains on pairs, not on unpaired examples", other.name()),
            ),
        }
    }
}

/// Every objective, in the order `compare` runs them.
pub const OBJECTIVES: &[&ObjectiveEntry] = &[
    &dpo::ENTRY,
    &ipo::ENTRY,
    &simpo::ENTRY,
    &orpo::ENTRY,
    &kto::ENTRY,
];

/// The objective named `name` (its `loss_type` or an alias).
pub fn find(name: &str) -> Option<&'static ObjectiveEntry> {
    OBJECTIVES
        .iter()
        .copied()
        .find(|e| e.name == name || e.aliases.contains(&name))
}

/// A table of the objectives for `--help`.
pub fn help_table() -> String {
    let mut out = String::new();
    for e in OBJECTIVES {
        let defaults: Vec<String> = e.defaults.iter().map(|(n, v)| format!("{n} {v}")).collect();
        out.push_str(&format!(
            "  {:<8} {:<6} {} ({}; {})\n",
            e.name,
            e.title,
            e.help,
            if e.needs_reference {
                "reference"
            } else {
                "no reference"
            },
            defaults.join(", ")
        ));
    }
    out
}

impl PreferenceOptions {
    /// The objective these options name, with every hyperparameter checked: an error names the
    /// option.
    pub fn objective(&self) -> Result<Objective> {
        let Some(entry) = find(&self.loss_type) else {
            let names: Vec<&str> = OBJECTIVES.iter().map(|e| e.name).collect();
            return invalid(
                "--loss-type",
                format!(
                    "unknown loss type {:?}; one of {}",
                    self.loss_type,
                    names.join(", ")
                ),
            );
        };
        (entry.build)(self)
    }
}
