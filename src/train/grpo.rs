//! GRPO with verifiable rewards as a [`TrainTask`]: each micro-batch samples completions of its
//! prompts, scores them, and returns the GRPO loss of [`crate::loss::grpo`]; the Trainer does the
//! rest (accumulation, clipping, AdamW, checkpoints), as for every other task.
//!
//! One micro-batch, in order (TRL's `GRPOTrainer`, with `num_iterations = 1`):
//!
//! 1. **Rollout.** Each of its B prompts is repeated G = `num_generations` times and continued by
//!    the policy (the base with the method's hooks) at `temperature`, through the KV cache
//!    ([`generate`]), at most `max_completion_length` tokens, stopping at the end token, which
//!    belongs to the completion (the policy learns when to stop). Sampling is seeded from the
//!    micro-batch's number, so a run, and a resumed run, draws the same completions.
//! 2. **Reward.** A [`Reward`] scores every completion: [`ExecutionReward`], the code-generation
//!    task's verifiable reward (1 when the generated program computes the reference's value,
//!    [`same_answer`]), or any function of prompt and completion ([`FnReward`]; a reward model
//!    plugs in there).
//! 3. **Advantages**, group by group ([`group_advantages`]).
//! 4. **Log-probabilities.** The policy's per-token log-probabilities of the completion tokens, on
//!    the tape with their gradient (the prompt is masked); the logits are divided by the sampling
//!    temperature first, as TRL does, so the ratio and the KL are those of the distribution that
//!    sampled. The old policy is the policy itself, detached (one optimisation step per rollout,
//!    so ρ = 1 with a live gradient); the reference's log-probabilities come from a second,
//!    unrecorded forward, only when β ≠ 0.
//! 5. **Loss** ([`grpo_loss`]), and its loss terms for gradient accumulation
//!    ([`LossType::terms`]).
//!
//! # The reference without a second copy
//!
//! With a method that trains none of the base's weights (LoRA and every adapter, IA3, prefix and
//! prompt tuning) the reference is the same store run without the method's hooks ([`NoHooks`]):
//! no weights are copied. A method that changes base weights (full or last-k fine-tuning, BitFit)
//! gets a frozen copy of the store as it was when the task was made
//! ([`GrpoTask::reference_bytes`] says what it costs). With β = 0 there is no reference at all.
//!
//! # What is recorded
//!
//! Every micro-batch appends a [`RolloutStats`] (TRL's logged `reward`, `reward_std`, `kl`,
//! `clip_ratio/region_mean`, `completions/mean_length`, `frac_reward_zero_std`);
//! [`GrpoTask::steps`] averages them per optimizer step. With one optimisation step per rollout
//! the ratio is 1 and the clip fraction is 0 by construction: it is recorded anyway. `evaluate`
//! reports greedy execution accuracy on the split's prompts (`score`, `execution_accuracy`) and,
//! on G sampled completions of each with a fixed seed, the mean reward, its std, the KL to the
//! reference (β ≠ 0), the completion length and the GRPO loss (`loss`).

use super::task::{Head, Item, TaskModel};
use super::trainer::{eval_subset, Metrics, MicroBatch, Split, TrainTask};
use crate::autodiff::{ParamId, ParamStore, Tape, Var, IGNORE_INDEX};
use crate::data::batch::{pad_with_labels, Batch, PadSide};
use crate::data::tasks::{same_answer, Example};
use crate::data::world::World;
use crate::error::{invalid, Error, Result};
use crate::loss::grpo::{
    group_advantages, grpo_loss, GrpoInputs, GrpoLoss, GrpoLossConfig, LossType, ScaleRewards,
};
use crate::loss::{completion_mask, token_logps};
use crate::metrics;
use crate::nn::generate::{generate, GenerateOptions};
use crate::nn::{Hooks, Input, NoHooks};
use crate::peft::Method;
use crate::tensor::Float;
use ndarray::{Array2, ArrayViewD};
use serde::{Deserialize, Serialize};
use std::cell::{Cell, RefCell};

/// Scores one completion.
pub trait Reward {
    /// A short name, for errors and logs.
    fn name(&self) -> &str;
    /// The reward of `completion` (decoded, trimmed, without the end token) for `prompt`;
    /// `reference` is the dataset's answer (a reward that needs none ignores it).
    fn score(&self, prompt: &str, completion: &str, reference: &str) -> Result<f64>;
}

/// The code-generation task's verifiable reward: 1 when the completion, run as a program against
/// the world, computes the reference's value ([`same_answer`]), else 0 (a program that does not
/// parse or names what the world lacks included).
pub struct ExecutionReward<'w> {
    pub world: &'w World,
}

impl Reward for ExecutionReward<'_> {
    fn name(&self) -> &str {
        "execution"
    }

    fn score(&self, _prompt: &str, completion: &str, reference: &str) -> Result<f64> {
        Ok(f64::from(u8::from(same_answer(
            reference,
            completion.trim(),
            self.world,
        ))))
    }
}

/// Any function of (prompt, completion) as a reward: a reward model, a length penalty, a format
/// check.
pub struct FnReward<R: Fn(&str, &str) -> f64> {
    pub name: String,
    pub f: R,
}

impl<R: Fn(&str, &str) -> f64> Reward for FnReward<R> {
    fn name(&self) -> &str {
        &self.name
    }

    fn score(&self, prompt: &str, completion: &str, _reference: &str) -> Result<f64> {
        Ok((self.f)(prompt, completion))
    }
}

/// GRPO's options, TRL's `GRPOConfig` names. `batch_size` in the training arguments counts
/// prompts; each micro-batch holds `batch_size × num_generations` completions (TRL's
/// `per_device_train_batch_size` counts completions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoOptions {
    /// G, completions per prompt (TRL's default 8; at least 2, or no group has a spread).
    pub num_generations: usize,
    /// Sampling temperature (TRL's default 1.0); the log-probabilities are taken at it too.
    pub temperature: f64,
    /// Tokens per completion at most, the end token included (TRL's default is 512, for real
    /// models; the code task's programs take under 20 tokens).
    pub max_completion_length: usize,
    /// The KL weight β (TRL's default 0.0: no reference).
    pub beta: f64,
    /// ε_low of the clip (TRL's default 0.2).
    pub epsilon: f64,
    /// ε_high of the clip; `None`: `epsilon` (DAPO's clip-higher uses 0.28).
    pub epsilon_high: Option<f64>,
    /// The loss normalisation (TRL's default `dapo`).
    pub loss_type: LossType,
    /// How rewards are scaled into advantages (TRL's default `group`).
    pub scale_rewards: ScaleRewards,
    /// Run the policy's loss forward without dropout, as the sampler and the reference run (TRL
    /// has the option, default off; on here, so that log π is the log-probability of the
    /// distribution that sampled and the KL starts at 0).
    pub disable_dropout: bool,
    /// Multiply the KL estimate by the ratio (TRL's default since 1.16: true; see
    /// [`crate::loss::grpo`]).
    pub use_bias_correction_kl: bool,
}

impl Default for GrpoOptions {
    fn default() -> Self {
        Self {
            num_generations: 8,
            temperature: 1.0,
            max_completion_length: 24,
            beta: 0.0,
            epsilon: 0.2,
            epsilon_high: None,
            loss_type: LossType::Dapo,
            scale_rewards: ScaleRewards::Group,
            disable_dropout: true,
            use_bias_correction_kl: true,
        }
    }
}

impl GrpoOptions {
    /// Checks every option; an error names it.
    pub fn validate(&self) -> Result<()> {
        if self.num_generations < 2 {
            return invalid(
                "--num-generations",
                format!(
                    "{}: GRPO needs at least 2 completions per prompt (its baseline is their mean)",
                    self.num_generations
                ),
            );
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return invalid(
                "--temperature",
                format!(
                    "{}: must be finite and > 0 (greedy samples of a prompt are all the same, so every advantage is 0)",
                    self.temperature
                ),
            );
        }
        if self.max_completion_length == 0 {
            return invalid("--max-completion-length", "0: must be at least 1 token");
        }
        if !(self.beta.is_finite() && self.beta >= 0.0) {
            return invalid("--beta", format!("{}: must be finite and ≥ 0", self.beta));
        }
        if !(self.epsilon.is_finite() && (0.0..1.0).contains(&self.epsilon)) {
            return invalid(
                "--epsilon",
                format!(
                    "{}: must be in [0, 1) (the clip's lower end is 1 − ε)",
                    self.epsilon
                ),
            );
        }
        if let Some(e) = self.epsilon_high {
            if !(e.is_finite() && e >= 0.0) {
                return invalid("--epsilon-high", format!("{e}: must be finite and ≥ 0"));
            }
        }
        Ok(())
    }

    /// The objective's settings.
    pub fn loss_config(&self) -> GrpoLossConfig {
        GrpoLossConfig {
            loss_type: self.loss_type,
            beta: self.beta,
            epsilon: self.epsilon,
            epsilon_high: self.epsilon_high.unwrap_or(self.epsilon),
            max_completion_length: self.max_completion_length,
            use_bias_correction_kl: self.use_bias_correction_kl,
        }
    }
}

/// What one micro-batch's rollout measured (TRL's logged names in the docs of each field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutStats {
    /// The optimizer step (from 0) and the micro-batch's number.
    pub step: usize,
    pub micro: usize,
    /// Mean reward (`reward`).
    pub reward_mean: f64,
    /// Std of the rewards over the micro-batch, Bessel-corrected (`reward_std`).
    pub reward_std: f64,
    /// Mean k3 over completion tokens (`kl`); `None` with β = 0.
    pub kl: Option<f64>,
    /// Fraction of completion tokens whose ratio was clipped (`clip_ratio/region_mean`).
    pub clip_ratio: f64,
    /// Mean completion length in tokens, the end token included (`completions/mean_length`).
    pub completion_length: f64,
    /// Fraction of groups whose rewards are all equal: no signal (`frac_reward_zero_std`).
    pub frac_reward_zero_std: f64,
}

/// Where the reference's log-probabilities come from.
enum Reference<F: Float> {
    /// β = 0: none.
    None,
    /// The live store without the method's hooks (a frozen-base method).
    Base,
    /// A frozen copy of the store (a method that changes base weights).
    Frozen(Box<ParamStore<F>>),
}

/// One micro-batch's sampled completions and what was computed from them.
struct Rollout {
    batch: Batch,
    labels: Array2<i64>,
    rewards: Vec<f64>,
    advantages: Vec<f64>,
    /// Completion tokens of each row (end token included).
    lengths: Vec<usize>,
}

/// GRPO on a generation task bound to a causal model ([`TaskModel`]), with a reward.
pub struct GrpoTask<'a, F: Float> {
    tm: &'a TaskModel,
    reward: Box<dyn Reward + 'a>,
    options: GrpoOptions,
    reference: Reference<F>,
    seed: u64,
    history: RefCell<Vec<RolloutStats>>,
    last_tokens: Cell<usize>,
}

/// A salt that keeps evaluation's samples apart from training's.
const EVAL_SALT: u64 = 0x5EED_E7A1;

impl<'a, F: Float> GrpoTask<'a, F> {
    /// GRPO on `tm`'s prompts (its train split; evaluation on validation or test), with `method`
    /// applied to `store`: the reference is chosen here (see the module's docs), so call it
    /// after any warm-up and before training. `seed` seeds the sampling.
    pub fn new(
        tm: &'a TaskModel,
        store: &ParamStore<F>,
        method: &dyn Method<F>,
        reward: Box<dyn Reward + 'a>,
        options: GrpoOptions,
        seed: u64,
    ) -> Result<Self> {
        options.validate()?;
        if !matches!(tm.head, Head::Lm) || !tm.model.config.causal {
            return invalid(
                "grpo",
                format!(
                    "the {} task does not generate text with a causal model: GRPO samples completions",
                    tm.name
                ),
            );
        }
        let reference = if options.beta == 0.0 {
            Reference::None
        } else if changes_base(store, method.params()) {
            Reference::Frozen(Box::new(store.clone()))
        } else {
            Reference::Base
        };
        Ok(Self {
            tm,
            reward,
            options,
            reference,
            seed,
            history: RefCell::new(Vec::new()),
            last_tokens: Cell::new(0),
        })
    }

    pub fn options(&self) -> &GrpoOptions {
        &self.options
    }

    /// Bytes the reference holds beyond the policy's weights: 0 without one or for a
    /// frozen-base method, the whole store for a method that changes base weights.
    pub fn reference_bytes(&self) -> usize {
        match &self.reference {
            Reference::Frozen(s) => s.bytes(),
            Reference::None | Reference::Base => 0,
        }
    }

    /// Whether the reference is the base run without the method's hooks (no copy).
    pub fn reference_is_base(&self) -> bool {
        matches!(self.reference, Reference::Base)
    }

    /// Every micro-batch's rollout so far, in order.
    pub fn history(&self) -> Vec<RolloutStats> {
        self.history.borrow().clone()
    }

    /// [`GrpoTask::history`] averaged per optimizer step (micro-batches weigh the same).
    pub fn steps(&self) -> Vec<RolloutStats> {
        let h = self.history.borrow();
        let mut out: Vec<RolloutStats> = Vec::new();
        let mut counts: Vec<usize> = Vec::new();
        for s in h.iter() {
            match out.last_mut() {
                Some(last) if last.step == s.step => {
                    let n = counts.last_mut().expect("a count per step");
                    let k = *n as f64;
                    let avg = |a: f64, b: f64| (a * k + b) / (k + 1.0);
                    last.reward_mean = avg(last.reward_mean, s.reward_mean);
                    last.reward_std = avg(last.reward_std, s.reward_std);
                    last.kl = match (last.kl, s.kl) {
                        (Some(a), Some(b)) => Some(avg(a, b)),
                        _ => None,
                    };
                    last.clip_ratio = avg(last.clip_ratio, s.clip_ratio);
                    last.completion_length = avg(last.completion_length, s.completion_length);
                    last.frac_reward_zero_std =
                        avg(last.frac_reward_zero_std, s.frac_reward_zero_std);
                    *n += 1;
                }
                _ => {
                    out.push(s.clone());
                    counts.push(1);
                }
            }
        }
        out
    }

    fn sample_seed(&self, micro: usize) -> u64 {
        self.seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(micro as u64)
    }

    fn prompt_ids(item: &Item) -> Vec<usize> {
        item.encoded.ids[..item.encoded.prompt_len]
            .iter()
            .map(|&x| x as usize)
            .collect()
    }

    fn texts(item: &Item) -> (&str, &str) {
        match &item.example {
            Example::Generation { prompt, response } => (prompt, response),
            _ => ("", ""),
        }
    }

    /// Samples G completions of each item's prompt with `store` and `hooks`, scores them and
    /// computes their advantages; the batch of prompt + completion with the completion labelled.
    fn rollout(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        items: &[&Item],
        seed: u64,
    ) -> Result<Rollout> {
        let o = &self.options;
        let g = o.num_generations;
        let tok = &self.tm.tok;
        let eos = tok.eos_id().map(|e| e as usize);
        let pad = tok.pad_id().unwrap_or(0) as usize;
        let max_len = self.tm.model.config.max_len;
        // ANCHOR: rollout
        let prompts: Vec<Vec<usize>> = items
            .iter()
            .flat_map(|it| std::iter::repeat_n(Self::prompt_ids(it), g))
            .collect();
        let opts = GenerateOptions {
            max_new_tokens: o.max_completion_length,
            temperature: o.temperature,
            top_k: None,
            seed,
            eos,
            pad,
            max_length: Some(max_len),
        };
        let out = generate(&self.tm.model, store, hooks, &prompts, &opts)?;
        // ANCHOR_END: rollout
        let (mut seqs, mut labels, mut rewards, mut lengths) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (row, (prompt, new)) in prompts.iter().zip(&out).enumerate() {
            let item = items[row / g];
            // `generate` leaves the end token out. A row stops only at the end token, at
            // max_length, or after max_new_tokens: short of both limits, it produced the end
            // token, which belongs to the completion.
            let stopped = new.len() < o.max_completion_length && prompt.len() + new.len() < max_len;
            let mut completion = new.clone();
            if let (true, Some(e)) = (stopped, eos) {
                completion.push(e);
            }
            let text = tok.decode(&new.iter().map(|&x| x as u32).collect::<Vec<_>>(), true)?;
            let (prompt_text, reference) = Self::texts(item);
            let r = self.reward.score(prompt_text, text.trim(), reference)?;
            if !r.is_finite() {
                return invalid(
                    "reward",
                    format!(
                        "the {} reward gave {r} for the completion {:?}",
                        self.reward.name(),
                        text.trim()
                    ),
                );
            }
            rewards.push(r);
            lengths.push(completion.len());
            let mut ids: Vec<u32> = prompt.iter().map(|&x| x as u32).collect();
            let mut lab = vec![IGNORE_INDEX; ids.len()];
            ids.extend(completion.iter().map(|&x| x as u32));
            lab.extend(completion.iter().map(|&x| x as i64));
            seqs.push(ids);
            labels.push(lab);
        }
        let advantages = group_advantages(&rewards, g, o.scale_rewards)?;
        let batch = pad_with_labels(&seqs, &labels, pad as u32, PadSide::Right, None)?;
        let labels = batch.labels.clone().ok_or_else(|| Error::Invalid {
            op: "grpo",
            detail: "the batch has no labels".into(),
        })?;
        Ok(Rollout {
            batch,
            labels,
            rewards,
            advantages,
            lengths,
        })
    }

    /// Per-token log-probabilities (B, T − 1) of the batch's labelled tokens on `tape`, with the
    /// logits divided by the temperature.
    fn logps(&self, tape: &mut Tape<'_, F>, hooks: &dyn Hooks<F>, r: &Rollout) -> Result<Var> {
        let b = &r.batch;
        let input = Input::new(b.ids.view())
            .with_mask(b.attention_mask.view())
            .with_positions(b.positions.view());
        let h = self.tm.model.forward(tape, hooks, &input)?;
        let mut logits = self.tm.model.lm_logits(tape, hooks, h)?;
        if self.options.temperature != 1.0 {
            logits = tape.scale(logits, 1.0 / self.options.temperature)?;
        }
        token_logps(tape, logits, r.labels.view())
    }

    /// The reference's per-token log-probabilities, unrecorded; `None` without a reference.
    fn reference_logps(&self, live: &ParamStore<F>, r: &Rollout) -> Result<Option<Array2<F>>> {
        let store = match &self.reference {
            Reference::None => return Ok(None),
            Reference::Base => live,
            Reference::Frozen(s) => s.as_ref(),
        };
        let mut tape = Tape::inference(store);
        let v = self.logps(&mut tape, &NoHooks, r)?;
        Ok(Some(to2(tape.value(v))?))
    }

    /// The GRPO loss of a rollout on `tape` (the policy's log-probabilities recorded when the
    /// tape records), and its loss terms.
    fn rollout_loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        r: &Rollout,
    ) -> Result<(GrpoLoss, usize)> {
        let reference = self.reference_logps(tape.store(), r)?;
        // Without dropout for the rest of the tape: a gradient-checkpointed block recomputed in
        // backward must run as its forward did.
        if self.options.disable_dropout {
            tape.set_train(false);
        }
        let logps = self.logps(tape, hooks, r)?;
        let mask = completion_mask(r.labels.view());
        let out = grpo_loss(
            tape,
            logps,
            &GrpoInputs {
                old_logps: None,
                ref_logps: reference.as_ref().map(|a| a.view()),
                advantages: &r.advantages,
                mask: mask.view(),
            },
            &self.options.loss_config(),
        )?;
        let terms = self.options.loss_type.terms(out.tokens, r.rewards.len());
        Ok((out, terms))
    }

    fn stats(&self, step: usize, micro: usize, r: &Rollout, out: &GrpoLoss) -> RolloutStats {
        let g = self.options.num_generations;
        let groups = r.rewards.len() / g;
        let zero_std = r
            .rewards
            .chunks(g)
            .filter(|c| {
                c.iter()
                    .all(|&x| (x - c[0]).abs() <= 1e-8 * (1.0 + c[0].abs()))
            })
            .count();
        RolloutStats {
            step,
            micro,
            reward_mean: mean(&r.rewards),
            reward_std: bessel_std(&r.rewards),
            kl: out.mean_kl,
            clip_ratio: out.clip_ratio.region,
            completion_length: mean(&r.lengths.iter().map(|&n| n as f64).collect::<Vec<_>>()),
            frac_reward_zero_std: zero_std as f64 / groups.max(1) as f64,
        }
    }

    fn split(&self, split: Split) -> &[Item] {
        match split {
            Split::Validation => &self.tm.validation,
            Split::Test => &self.tm.test,
        }
    }
}

/// Whether any parameter outside the method's own is trainable: the method changes base weights.
fn changes_base<F: Float>(store: &ParamStore<F>, own: &[ParamId]) -> bool {
    store
        .iter()
        .any(|(id, p)| p.trainable && !own.contains(&id))
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

/// Bessel-corrected std (0 for fewer than two values).
fn bessel_std(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

fn to2<F: Float>(v: ArrayViewD<'_, F>) -> Result<Array2<F>> {
    let s = v.shape().to_vec();
    v.to_shape((s[0], s.get(1).copied().unwrap_or(1)))
        .map(|a| a.to_owned())
        .map_err(|e| Error::Shape {
            op: "grpo",
            detail: e.to_string(),
        })
}

impl<F: Float> TrainTask<F> for GrpoTask<'_, F> {
    fn train_len(&self) -> usize {
        self.tm.train.len()
    }

    fn model(&self) -> Option<&crate::nn::Transformer> {
        Some(&self.tm.model)
    }

    fn reference_bytes(&self) -> usize {
        GrpoTask::reference_bytes(self)
    }

    fn metric_names(&self) -> Option<Vec<&'static str>> {
        let mut names = vec![
            "loss",
            "score",
            "execution_accuracy",
            "reward",
            "reward_std",
            "completion_length",
        ];
        if self.options.beta != 0.0 {
            names.push("kl");
        }
        Some(names)
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, F>,
        hooks: &dyn Hooks<F>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        let items: Vec<&Item> = batch
            .indices
            .iter()
            .map(|&i| {
                self.tm.train.get(i).ok_or_else(|| Error::Invalid {
                    op: "grpo",
                    detail: format!("example {i} is outside the {} prompts", self.tm.train.len()),
                })
            })
            .collect::<Result<_>>()?;
        let store = tape.store();
        let r = self.rollout(store, hooks, &items, self.sample_seed(batch.micro))?;
        let (out, terms) = self.rollout_loss(tape, hooks, &r)?;
        let stats = self.stats(batch.step, batch.micro, &r, &out);
        self.history.borrow_mut().push(stats);
        self.last_tokens
            .set(r.batch.attention_mask.iter().filter(|&&m| m).count());
        Ok((out.loss, terms))
    }

    fn tokens(&self, _batch: &MicroBatch<'_>) -> Option<usize> {
        Some(self.last_tokens.get())
    }

    fn evaluate(
        &self,
        store: &ParamStore<F>,
        hooks: &dyn Hooks<F>,
        split: Split,
        limit: usize,
        batch_size: usize,
    ) -> Result<Metrics> {
        let items = eval_subset(self.split(split), limit);
        let mut m = Metrics::new();
        if items.is_empty() {
            return Ok(m);
        }
        let tok = &self.tm.tok;
        let (mut preds, mut golds) = (Vec::new(), Vec::new());
        let (mut rewards, mut lengths) = (Vec::new(), Vec::new());
        let (mut loss_sum, mut terms_sum) = (0.0, 0usize);
        let (mut kl_sum, mut kl_tokens) = (0.0, 0usize);
        for (c, chunk) in items.chunks(batch_size.max(1)).enumerate() {
            let refs: Vec<&Item> = chunk.iter().collect();
            // Greedy answers: execution accuracy.
            let prompts: Vec<Vec<usize>> = refs.iter().map(|it| Self::prompt_ids(it)).collect();
            let opts = GenerateOptions {
                max_new_tokens: self.options.max_completion_length,
                temperature: 0.0,
                eos: tok.eos_id().map(|e| e as usize),
                pad: tok.pad_id().unwrap_or(0) as usize,
                max_length: Some(self.tm.model.config.max_len),
                ..Default::default()
            };
            for (ids, it) in generate(&self.tm.model, store, hooks, &prompts, &opts)?
                .iter()
                .zip(&refs)
            {
                let ids: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
                preds.push(tok.decode(&ids, true)?.trim().to_string());
                golds.push(Self::texts(it).1.trim().to_string());
            }
            // Sampled completions: reward, KL and loss as in training, with a fixed seed.
            let seed = self.seed ^ EVAL_SALT ^ (c as u64).wrapping_mul(0x9E37_79B9);
            let r = self.rollout(store, hooks, &refs, seed)?;
            let mut tape = Tape::inference(store);
            let (out, terms) = self.rollout_loss(&mut tape, hooks, &r)?;
            loss_sum += tape.scalar(out.loss)?.as_f64() * terms as f64;
            terms_sum += terms;
            if let Some(kl) = out.mean_kl {
                kl_sum += kl * out.tokens as f64;
                kl_tokens += out.tokens;
            }
            rewards.extend(&r.rewards);
            lengths.extend(r.lengths.iter().map(|&n| n as f64));
        }
        let acc = metrics::execution_accuracy(&preds, &golds, &self.tm.world)?;
        m.insert("loss".into(), loss_sum / terms_sum.max(1) as f64);
        m.insert("score".into(), acc);
        m.insert("execution_accuracy".into(), acc);
        m.insert("reward".into(), mean(&rewards));
        m.insert("reward_std".into(), bessel_std(&rewards));
        m.insert("completion_length".into(), mean(&lengths));
        if self.options.beta != 0.0 {
            m.insert("kl".into(), kl_sum / kl_tokens.max(1) as f64);
        }
        Ok(m)
    }
}
