//! GRPO (Group Relative Policy Optimization, Shao et al. 2024, DeepSeekMath): PPO's clipped
//! objective without a value model, its baseline taken from a group of samples of the same
//! prompt; with TRL's names and TRL's choices (`GRPOTrainer._compute_loss`).
//!
//! # From PPO to GRPO
//!
//! A language model is a policy: the state is the prompt q and the tokens so far o_<t, the action
//! the next token o_t. PPO maximises, per token,
//!
//! ```text
//! J = E[ min(ρ_t·Â_t, clip(ρ_t, 1 − ε, 1 + ε)·Â_t) ],    ρ_t = π_θ(o_t | q, o_<t) / π_old(o_t | q, o_<t)
//! ```
//!
//! where π_old sampled the data and Â_t is an advantage estimated with a learned value model
//! V(q, o_<t) (GAE). With a verifiable reward (the program computes the right answer, or not)
//! there is one reward per completion, at its end. GRPO drops the value model: it samples G
//! completions o_1 … o_G of the same prompt, scores them r_1 … r_G, and gives every token of o_i
//! the same advantage
//!
//! ```text
//! A_i = (r_i − mean(r_1..G)) / (std(r_1..G) + ε_A)
//! ```
//!
//! The group mean is a Monte-Carlo estimate of V(q): a baseline that does not depend on the
//! sampled completion leaves the policy gradient E[A·∇log π] unbiased (E[∇log π] = 0) and lowers
//! its variance. Dividing by the group's standard deviation puts every prompt on the same scale;
//! Dr. GRPO (Liu et al. 2025) shows it weights prompts that are almost always or almost never
//! solved (small std) more, and drops it: [`ScaleRewards::None`]. [`ScaleRewards::Batch`] divides
//! by the batch's std instead (PPO-Lite). As in TRL the std has Bessel's correction (G − 1
//! degrees of freedom, `trl.trainer.utils.nanstd`), ε_A = 1e-4 ([`ADVANTAGE_EPS`]), and the mean
//! is always the group's.
//!
//! The KL penalty moves from PPO's reward into the loss, to a frozen reference π_ref (the model
//! before RL), estimated per sampled token with Schulman's k3:
//!
//! ```text
//! k3_t = π_ref/π_θ − log(π_ref/π_θ) − 1 = exp(ref_t − logπ_t) − (ref_t − logπ_t) − 1  ≥ 0
//! ```
//!
//! unbiased for KL(π_θ ‖ π_ref) on tokens sampled from π_θ and never negative. The per-token loss
//! is then
//!
//! ```text
//! ℓ_i,t = −min(ρ_i,t·A_i, clip(ρ_i,t, 1 − ε_low, 1 + ε_high)·A_i) + β·k3_i,t
//! ```
//!
//! with DAPO's clip-higher: ε_high (TRL's `epsilon_high`, DAPO uses 0.28) may exceed ε_low (TRL's
//! `epsilon`, 0.2), leaving more room to raise unlikely tokens, against entropy collapse. β = 0
//! (TRL's default) needs no reference at all.
//!
//! k3's *value* is unbiased, its *gradient* is not the reverse KL's: ∂k3/∂logπ = 1 − π_ref/π_θ has
//! expectation 0 under π_θ. DeepSeek-V3.2 multiplies k3 by the ratio ρ, 1 in value on-policy but
//! with ∂ρ/∂logπ = ρ, so that the per-token gradient becomes β·(1 − r + r − log r − 1) = β·(logπ −
//! logπ_ref) at ρ = 1 (r = π_ref/π_θ): the score-function gradient of KL(π_θ ‖ π_ref). That is
//! TRL's `use_bias_correction_kl` ([`GrpoLossConfig::use_bias_correction_kl`]), on by default in
//! TRL 1.16 (the version the golden file was written with; off in earlier versions); the logged
//! KL is then the corrected k3·ρ.
//!
//! # Gradients, and why ρ = 1 still has one
//!
//! With one optimisation step per rollout (TRL's default `num_iterations = 1`) π_old is the policy
//! itself: TRL takes `old = logπ.detach()`, so ρ = exp(logπ − old) = 1 in value while
//! ∂ρ/∂logπ = ρ = 1. The clip is inactive (1 lies inside the interval), and
//!
//! ```text
//! ∂ℓ_i,t/∂logπ_i,t = −A_i·ρ_i,t·[branch not clipped] + β·(1 − exp(ref_i,t − logπ_i,t))
//!                                  (with the correction: + β·(logπ_i,t − ref_i,t) instead)
//! ```
//!
//! is REINFORCE with the group baseline plus the KL's pull toward π_ref. With more iterations per
//! rollout ρ moves, and a token stops being pushed once ρ leaves [1 − ε_low, 1 + ε_high] in the
//! direction its advantage pushes (ρ > 1 + ε_high with A > 0, ρ < 1 − ε_low with A < 0: min takes
//! the flat, clipped branch). [`GrpoLoss::clip_ratio`] counts those tokens, as TRL logs them.
//!
//! The objective is built from tape ops (`exp`, [`Tape::clamp`](crate::Tape::clamp),
//! [`Tape::minimum`](crate::Tape::minimum), products with constants, sums), so its backward is
//! theirs; `tests/suite/grpo.rs` checks it against central differences and against TRL's own code.
//!
//! # Normalisations (TRL's `loss_type`)
//!
//! Over a batch of B completions with masks m_i,t (completion tokens only) and |o_i| = Σ_t m_i,t:
//!
//! | `loss_type` | loss | note |
//! |---|---|---|
//! | `grpo` | (1/B) Σ_i (1/max(|o_i|, 1)) Σ_t m·ℓ | the paper: every sequence weighs the same, so a token of a long completion weighs less (length bias) |
//! | `bnpo` | Σ m·ℓ / max(Σ m, 1) | per token over the micro-batch |
//! | `dapo` | Σ m·ℓ / max(Σ m, 1) | per token over the whole accumulated batch (DAPO) |
//! | `dr_grpo` | Σ m·ℓ / (B · max_completion_length) | a constant: no length term (Dr. GRPO) |
//!
//! `bnpo` and `dapo` differ only under gradient accumulation: TRL averages `bnpo`'s micro-batch
//! means, and divides `dapo`'s sums by the token count of the whole accumulated batch. In the
//! Trainer that is a question of the loss terms a micro-batch reports ([`LossType::terms`]):
//! `dapo` reports its tokens, so the token-weighted accumulation gives the global per-token mean;
//! the others report their completions (equal in every micro-batch), so micro-batches weigh the
//! same, as in TRL.

use crate::autodiff::{Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use serde::{Deserialize, Serialize};

/// ε_A of A = (r − mean) / (std + ε_A): TRL's constant.
pub const ADVANTAGE_EPS: f64 = 1e-4;

/// How rewards become advantages: TRL's `scale_rewards`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleRewards {
    /// Divide by the group's std (the GRPO paper; TRL's default).
    Group,
    /// Divide by the batch's std (PPO-Lite).
    Batch,
    /// Do not divide (Dr. GRPO).
    None,
}

impl ScaleRewards {
    pub const ALL: [ScaleRewards; 3] =
        [ScaleRewards::Group, ScaleRewards::Batch, ScaleRewards::None];

    /// TRL's name.
    pub fn name(self) -> &'static str {
        match self {
            ScaleRewards::Group => "group",
            ScaleRewards::Batch => "batch",
            ScaleRewards::None => "none",
        }
    }

    /// From TRL's name; an error names `--scale-rewards`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s).map_or_else(
            || {
                invalid(
                    "--scale-rewards",
                    format!("{s:?} is not one of group, batch, none"),
                )
            },
            Ok,
        )
    }
}

/// How the per-token losses are reduced: TRL's `loss_type` (see the module's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    Grpo,
    Bnpo,
    Dapo,
    DrGrpo,
}

impl LossType {
    pub const ALL: [LossType; 4] = [
        LossType::Grpo,
        LossType::Bnpo,
        LossType::Dapo,
        LossType::DrGrpo,
    ];

    /// TRL's name.
    pub fn name(self) -> &'static str {
        match self {
            LossType::Grpo => "grpo",
            LossType::Bnpo => "bnpo",
            LossType::Dapo => "dapo",
            LossType::DrGrpo => "dr_grpo",
        }
    }

    /// From TRL's name; an error names `--loss-type`.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s).map_or_else(
            || {
                invalid(
                    "--loss-type",
                    format!("{s:?} is not one of grpo, bnpo, dapo, dr_grpo"),
                )
            },
            Ok,
        )
    }

    /// The loss terms a micro-batch of `completions` holding `tokens` completion tokens reports
    /// to the Trainer's gradient accumulation: tokens for `dapo` (one per-token mean over the
    /// accumulated batch), completions for the others (micro-batches weigh the same).
    pub fn terms(self, tokens: usize, completions: usize) -> usize {
        match self {
            LossType::Dapo => tokens,
            _ => completions,
        }
    }
}

/// Group-normalised advantages (B,) of rewards laid out group by group (`num_generations`
/// consecutive completions of each prompt), as TRL computes them: r − the group's mean, divided
/// by (std + [`ADVANTAGE_EPS`]) of the group or the batch unless `scale` is `None`. The std has
/// Bessel's correction; a batch std over one reward is 0, as in TRL.
// ANCHOR: advantages
pub fn group_advantages(
    rewards: &[f64],
    num_generations: usize,
    scale: ScaleRewards,
) -> Result<Vec<f64>> {
    const OP: &str = "group_advantages";
    let g = num_generations;
    if g == 0 || !rewards.len().is_multiple_of(g) {
        return invalid(
            OP,
            format!(
                "{} rewards do not split into groups of num_generations = {g}",
                rewards.len()
            ),
        );
    }
    if let Some(i) = rewards.iter().position(|r| !r.is_finite()) {
        return invalid(OP, format!("reward {i} is {}", rewards[i]));
    }
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    // Bessel-corrected std, 0 for fewer than two values (TRL: zeros, never NaN, in training).
    let std = |x: &[f64]| {
        if x.len() < 2 {
            return 0.0;
        }
        let m = mean(x);
        (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
    };
    let batch_std = std(rewards);
    let mut out = Vec::with_capacity(rewards.len());
    for group in rewards.chunks(g) {
        let m = mean(group);
        let s = match scale {
            ScaleRewards::Group => Some(std(group)),
            ScaleRewards::Batch => Some(batch_std),
            ScaleRewards::None => None,
        };
        out.extend(group.iter().map(|r| match s {
            Some(s) => (r - m) / (s + ADVANTAGE_EPS),
            None => r - m,
        }));
    }
    Ok(out)
}
// ANCHOR_END: advantages

/// The objective's settings, TRL's names.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GrpoLossConfig {
    pub loss_type: LossType,
    /// KL weight β (0: no KL term and no reference).
    pub beta: f64,
    /// ε_low: TRL's `epsilon`.
    pub epsilon: f64,
    /// ε_high: TRL's `epsilon_high` (equal to `epsilon` unless DAPO's clip-higher).
    pub epsilon_high: f64,
    /// `dr_grpo`'s constant: the completion budget L (TRL's `max_completion_length`).
    pub max_completion_length: usize,
    /// Multiply k3 by the ratio ρ (DeepSeek-V3.2; TRL's `use_bias_correction_kl`, default true
    /// since TRL 1.x): the same value on-policy, the reverse KL's own gradient.
    pub use_bias_correction_kl: bool,
}

impl Default for GrpoLossConfig {
    /// TRL's defaults (its `max_completion_length`, 512, is a budget for real models; the
    /// trainer's options set it).
    fn default() -> Self {
        Self {
            loss_type: LossType::Dapo,
            beta: 0.0,
            epsilon: 0.2,
            epsilon_high: 0.2,
            max_completion_length: 512,
            use_bias_correction_kl: true,
        }
    }
}

/// What the loss is computed from besides the policy's log-probabilities, all (B, T) but the
/// advantages (B,).
#[derive(Debug, Clone, Copy)]
pub struct GrpoInputs<'a, F: Float> {
    /// log π_old per token; `None`: the policy's own values, detached (one step per rollout).
    pub old_logps: Option<ArrayView2<'a, F>>,
    /// log π_ref per token; needed when β ≠ 0.
    pub ref_logps: Option<ArrayView2<'a, F>>,
    /// One advantage per completion.
    pub advantages: &'a [f64],
    /// The completion tokens: true where a token is scored.
    pub mask: ArrayView2<'a, bool>,
}

/// Fractions of the scored tokens whose ratio was clipped, as TRL logs them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ClipRatio {
    /// ρ < 1 − ε_low with A < 0.
    pub low: f64,
    /// ρ > 1 + ε_high with A > 0.
    pub high: f64,
    /// Either (TRL's `clip_ratio/region_mean`).
    pub region: f64,
}

/// The loss and what TRL logs beside it.
#[derive(Debug, Clone, Copy)]
pub struct GrpoLoss {
    /// The 0-d loss on the tape.
    pub loss: Var,
    /// The mean k3 over scored tokens (`None` when β = 0: no reference).
    pub mean_kl: Option<f64>,
    pub clip_ratio: ClipRatio,
    /// Scored tokens Σ m.
    pub tokens: usize,
}

/// The GRPO loss of the policy's per-token log-probabilities `logps` (B, T) on the tape (see the
/// module's docs): the clipped ratio objective with advantages, the k3 penalty weighted by β,
/// reduced as `config.loss_type` says. Only `logps` carries a gradient; old and reference
/// log-probabilities and the advantages are constants, as in TRL.
pub fn grpo_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    logps: Var,
    inputs: &GrpoInputs<'_, F>,
    config: &GrpoLossConfig,
) -> Result<GrpoLoss> {
    const OP: &str = "grpo_loss";
    let s = tape.shape(logps).to_vec();
    if s.len() != 2 {
        return shape_err(
            OP,
            format!("log-probabilities must be (B, T), got {}", fmt_shape(&s)),
        );
    }
    let (b, t) = (s[0], s[1]);
    if b == 0 {
        return invalid(OP, "no completions (B = 0)");
    }
    let same = |what: &str, d: (usize, usize)| -> Result<()> {
        if d != (b, t) {
            return shape_err(
                OP,
                format!("{what} is {d:?}, the log-probabilities ({b}, {t})"),
            );
        }
        Ok(())
    };
    same("the mask", inputs.mask.dim())?;
    if let Some(o) = inputs.old_logps {
        same("old_logps", o.dim())?;
    }
    if let Some(r) = inputs.ref_logps {
        same("ref_logps", r.dim())?;
    }
    if inputs.advantages.len() != b {
        return shape_err(
            OP,
            format!("{} advantages for {b} completions", inputs.advantages.len()),
        );
    }
    let GrpoLossConfig {
        loss_type,
        beta,
        epsilon,
        epsilon_high,
        max_completion_length,
        use_bias_correction_kl,
    } = *config;
    if !(beta.is_finite() && beta >= 0.0) {
        return invalid("--beta", format!("{beta}: must be finite and ≥ 0"));
    }
    if !(epsilon.is_finite() && epsilon >= 0.0) {
        return invalid("--epsilon", format!("{epsilon}: must be finite and ≥ 0"));
    }
    if !(epsilon_high.is_finite() && epsilon_high >= 0.0) {
        return invalid(
            "--epsilon-high",
            format!("{epsilon_high}: must be finite and ≥ 0"),
        );
    }
    if loss_type == LossType::DrGrpo && max_completion_length == 0 {
        return invalid(
            "--max-completion-length",
            "dr_grpo divides by it: must be ≥ 1",
        );
    }
    if beta != 0.0 && inputs.ref_logps.is_none() {
        return invalid(
            OP,
            format!("beta = {beta} needs the reference's log-probabilities"),
        );
    }
    if let Some(i) = inputs.advantages.iter().position(|a| !a.is_finite()) {
        return invalid(OP, format!("advantage {i} is {}", inputs.advantages[i]));
    }
    let mask_f: Array2<F> = inputs.mask.mapv(|m| if m { F::one() } else { F::zero() });
    let tokens = inputs.mask.iter().filter(|&&m| m).count();

    // ANCHOR: clipped
    // ρ = exp(logπ − logπ_old), old a constant (the policy's own values when not given).
    let old = match inputs.old_logps {
        Some(o) => o.to_owned().into_dyn(),
        None => tape.value(logps).to_owned(),
    };
    let old = tape.constant(old);
    let log_ratio = tape.sub(logps, old)?;
    let coef_1 = tape.exp(log_ratio)?;
    let coef_2 = tape.clamp(coef_1, 1.0 - epsilon, 1.0 + epsilon_high)?;
    let adv: Vec<F> = inputs.advantages.iter().map(|&a| F::of(a)).collect();
    let adv = tape.constant(ArrayD::from_shape_vec(IxDyn(&[b, 1]), adv).expect("(B, 1)"));
    let loss_1 = tape.mul(coef_1, adv)?;
    let loss_2 = tape.mul(coef_2, adv)?;
    let taken = tape.minimum(loss_1, loss_2)?;
    let mut per_token = tape.scale(taken, -1.0)?;
    // ANCHOR_END: clipped

    // The clipped fractions, from the ratio's values (TRL's logging).
    let clip_ratio = {
        let rho = tape.value(coef_1);
        let (mut low, mut high, mut region) = (0usize, 0usize, 0usize);
        for ((i, j), &m) in inputs.mask.indexed_iter() {
            if !m {
                continue;
            }
            let (r, a) = (rho[[i, j]].as_f64(), inputs.advantages[i]);
            let l = r < 1.0 - epsilon && a < 0.0;
            let h = r > 1.0 + epsilon_high && a > 0.0;
            low += l as usize;
            high += h as usize;
            region += (l || h) as usize;
        }
        let n = tokens.max(1) as f64;
        ClipRatio {
            low: low as f64 / n,
            high: high as f64 / n,
            region: region as f64 / n,
        }
    };

    // β·k3 with k3 = exp(ref − logπ) − (ref − logπ) − 1.
    let mut mean_kl = None;
    if beta != 0.0 {
        // ANCHOR: k3
        let r = inputs.ref_logps.expect("checked above").to_owned();
        let r = tape.constant(r.into_dyn());
        let d = tape.sub(r, logps)?;
        let e = tape.exp(d)?;
        let one = tape.constant(ArrayD::from_elem(IxDyn(&[1]), F::one()));
        let k3 = tape.sub(e, d)?;
        let mut k3 = tape.sub(k3, one)?;
        if use_bias_correction_kl {
            k3 = tape.mul(k3, coef_1)?;
        }
        // ANCHOR_END: k3
        let kv = tape.value(k3);
        let sum: f64 = inputs
            .mask
            .indexed_iter()
            .filter(|&(_, &m)| m)
            .map(|((i, j), _)| kv[[i, j]].as_f64())
            .sum();
        mean_kl = Some(sum / tokens.max(1) as f64);
        let weighted = tape.scale(k3, beta)?;
        per_token = tape.add(per_token, weighted)?;
    }

    let m = tape.constant(mask_f.into_dyn());
    let masked = tape.mul(per_token, m)?;
    // ANCHOR: normalisation
    let loss = match loss_type {
        LossType::Grpo => {
            // Each row's mean over its own tokens (a row with none counts 1), then the mean.
            let rows = tape.sum(masked, &[1], false)?;
            let inv: Vec<F> = inputs
                .mask
                .rows()
                .into_iter()
                .map(|r| F::of(1.0 / r.iter().filter(|&&x| x).count().max(1) as f64))
                .collect();
            let inv = tape.constant(ArrayD::from_shape_vec(IxDyn(&[b]), inv).expect("(B,)"));
            let per_seq = tape.mul(rows, inv)?;
            tape.mean_all(per_seq)?
        }
        LossType::Bnpo | LossType::Dapo => {
            let total = tape.sum_all(masked)?;
            tape.scale(total, 1.0 / tokens.max(1) as f64)?
        }
        LossType::DrGrpo => {
            let total = tape.sum_all(masked)?;
            tape.scale(total, 1.0 / (b * max_completion_length) as f64)?
        }
    };
    // ANCHOR_END: normalisation
    Ok(GrpoLoss {
        loss,
        mean_kl,
        clip_ratio,
        tokens,
    })
}
