//! # GRPO's advantages: a baseline from the group, no value model
//!
//! PPO scores each sampled token by an advantage, how much better it did than expected, and
//! "expected" comes from a learned value model as large as the policy. GRPO (Shao et al. 2024,
//! DeepSeekMath) drops the value model: it samples G completions of the same prompt, scores each
//! (a verifiable reward: the answer is right or not), and compares each completion with its own
//! group. The advantage of completion i of a group is its reward minus the group's mean reward,
//! divided by the group's standard deviation plus a small ε (1e-4), so that every prompt, easy or
//! hard, contributes on the same scale; every token of completion i gets that advantage.
//!
//! Why a baseline is allowed: E[∇ log π] = 0 under the policy, so subtracting anything that does
//! not depend on the sampled completion leaves the policy gradient unbiased and lowers its
//! variance. The group mean is a Monte-Carlo estimate of the prompt's value.
//!
//! TRL's details (`GRPOTrainer`, `scale_rewards="group"`, its default):
//!
//! - rewards arrive laid out group by group: `num_generations` = G consecutive completions of
//!   the first prompt, then G of the second, …;
//! - the std is torch's default, the *unbiased* one: divide the squared deviations by G − 1;
//! - a group whose rewards are all equal (all right, all wrong) has std 0, so its advantages
//!   are 0 / (0 + ε) = 0: nothing to learn from that prompt.
//!
//! (Dr. GRPO, Liu et al. 2025, drops the division by the std: dividing by a small std weights
//! the prompts that are almost always or almost never solved *more*, a bias by difficulty;
//! tunelab has it as `ScaleRewards::None`.)
//!
//! Graded against tunelab's `group_advantages` (src/loss/grpo.rs) on random rewards, 0/1
//! rewards and all-equal groups.

/// ε of (r − mean) / (std + ε): TRL's constant.
pub const ADVANTAGE_EPS: f64 = 1e-4;

/// The advantage of each of the B·G `rewards`, laid out in groups of `num_generations` = G ≥ 2.
///
///     rewards [1, 0, 0, 1,  1, 1, 1, 1], G 4
///         → [0.865875, −0.865875, −0.865875, 0.865875,  0, 0, 0, 0]
///     (group 1: mean 0.5, std √(4 · 0.25 / 3) = 0.577350)
pub fn group_advantages(rewards: &[f64], num_generations: usize) -> Vec<f64> {
    // TODO: for each chunk of `num_generations` rewards: its mean, its unbiased std (divide by
    // G − 1), then (r − mean) / (std + ADVANTAGE_EPS) for each reward, in order.
    todo!()
}
