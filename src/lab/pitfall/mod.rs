//! `tunelab pitfall <name>`: the notes' common pitfalls (section 6), each reproduced on the
//! shipped model and then fixed, with every number measured in the run; then the known failures
//! of preference tuning and RL (β too small, likelihood displacement, GRPO's collapse, length
//! bias), which share their setups in [`align`].

pub mod align;
pub mod checkpoint;
pub mod displacement;
pub mod dpo_beta;
pub mod explode;
pub mod grpo_collapse;
pub mod length;
pub mod lr;
pub mod overfit;
pub mod padding;

use super::evidence::{over_seeds, Judged, Judgement, Mode};
use crate::error::{Error, Result};
use crate::train::progress::Progress;

/// One pitfall: its name on the command line and what it shows.
#[derive(Debug, Clone, Copy)]
pub struct Pitfall {
    pub name: &'static str,
    pub summary: &'static str,
}

/// Every pitfall: the notes' in their order, then preference tuning's and RL's.
pub const PITFALLS: &[Pitfall] = &[
    Pitfall {
        name: "overfit",
        summary: "a tiny dataset: training loss falls while validation loss rises; then early stopping, weight decay, dropout, LoRA",
    },
    Pitfall {
        name: "lr",
        summary: "a too-high learning rate wrecks the model and forgets pre-training (measured); a sane one does not",
    },
    Pitfall {
        name: "padding",
        summary: "a missing attention mask or the wrong pad side changes outputs; the fix makes padded equal unpadded",
    },
    Pitfall {
        name: "checkpoint",
        summary: "training killed midway: resumed from a checkpoint versus restarted from nothing",
    },
    Pitfall {
        name: "explode",
        summary: "a deep post-LN model without clipping versus with clipping or pre-LN; gradient norms per layer",
    },
    Pitfall {
        name: "dpo-beta",
        summary: "DPO with β too small drifts from the reference and forgets for no better preference accuracy; a larger β",
    },
    Pitfall {
        name: "displacement",
        summary: "DPO's margin rises while the chosen and the rejected log-probabilities both fall; an NLL term on the chosen",
    },
    Pitfall {
        name: "grpo-collapse",
        summary: "GRPO without a KL term at a too-high lr collapses (reward, length, accuracy, drift); a KL term and a sane lr",
    },
    Pitfall {
        name: "length",
        summary: "GRPO's per-sequence normalisation lets wrong completions grow long; Dr. GRPO's constant normaliser",
    },
];

/// The pitfall names, comma-separated, for error messages.
pub fn names() -> String {
    PITFALLS
        .iter()
        .map(|p| p.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Runs the pitfall `name`: on `seeds` seeds when it trains (side by side where cores allow),
/// once when nothing in it depends on a seed (padding).
pub fn run(
    name: &str,
    mode: Mode,
    seeds: usize,
    progress: &mut (dyn Progress + Send),
) -> Result<Box<dyn Judgement>> {
    let p = progress;
    Ok(match name {
        "overfit" => Box::new(over_seeds(seeds, true, p, |s, p| overfit::run(mode, s, p))?),
        "lr" => Box::new(over_seeds(seeds, true, p, |s, p| lr::run(mode, s, p))?),
        "padding" => Box::new(Judged::once(padding::run(mode)?)),
        "checkpoint" => Box::new(over_seeds(seeds, true, p, |s, p| {
            checkpoint::run(mode, s, p)
        })?),
        "explode" => Box::new(over_seeds(seeds, true, p, |s, p| explode::run(mode, s, p))?),
        "dpo-beta" => Box::new(over_seeds(seeds, true, p, |s, p| {
            dpo_beta::run(mode, s, p)
        })?),
        "displacement" => Box::new(over_seeds(seeds, true, p, |s, p| {
            displacement::run(mode, s, p)
        })?),
        "grpo-collapse" => Box::new(over_seeds(seeds, true, p, |s, p| {
            grpo_collapse::run(mode, s, p)
        })?),
        "length" => Box::new(over_seeds(seeds, true, p, |s, p| length::run(mode, s, p))?),
        other => {
            return Err(Error::Invalid {
                op: "pitfall",
                detail: format!("unknown pitfall {other:?}; choose one of {}", names()),
            })
        }
    })
}
