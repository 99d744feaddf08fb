//! Preference tuning and RL questions: DPO derived from the KL-constrained RLHF objective (18),
//! the reference model and β (19), DPO against PPO against GRPO (20), reward hacking (21), and
//! the Bradley–Terry reward model (22).
//!
//! Question 18 trains nothing: it solves the RLHF objective numerically on a small discrete
//! problem (one prompt, K responses), in f64 on the tape, and checks the closed form and DPO's
//! gradient. The others train gpt-tiny: DPO through [`PreferenceTask`], the reward model through
//! [`RewardTask`], GRPO through [`GrpoTask`], all in the one Trainer, on the world's preference
//! pairs ([`crate::data::preference`]) and the code-generation task.

use crate::data::batch::{pad_with_labels, PadSide};
use crate::data::encode::{encode_memo, Target};
use crate::data::lm::WORLD_SEED;
use crate::data::preference::{build_tagged, PairKinds, PreferencePair, PreferenceSplits, KINDS};
use crate::data::tasks::{same_answer, Example, Sizes, Task, DATA_SEED};
use crate::data::world::World;
use crate::error::{invalid, Result};
use crate::lab::estimate;
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::{load_base, prepare, task_data, Base};
use crate::lab::runs::{temp_dir, Recorder, BASE};
use crate::loss::preference::dpo::dpo_loss;
use crate::loss::preference::{PairInputs, PreferenceOptions};
use crate::loss::sequence_logps;
use crate::nn::generate::{generate, GenerateOptions};
use crate::nn::heads::RewardHead;
use crate::nn::{Hooks, Input, NoHooks};
use crate::peft::{self, Method, MethodSpec};
use crate::train::args::{ScheduleKind, Strategy};
use crate::train::grpo::{GrpoOptions, GrpoTask, Reward};
use crate::train::preference::{PreferenceData, PreferenceTask, PreferenceTrainOptions};
use crate::train::progress::Progress;
use crate::train::reward::{self as reward_task, RewardOptions, RewardTask, KIND_ACCURACY};
use crate::train::task::TaskModel;
use crate::train::trainer::{self, Split, TrainReport, TrainTask, Training};
use crate::train::TrainingArgs;
use crate::{Float, Grads, ParamId, ParamStore, Tape, Var};
use ndarray::{ArrayD, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::cell::RefCell;
use std::time::Instant;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() {
        return f64::NAN;
    }
    x.iter().sum::<f64>() / x.len() as f64
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// A Trainer run's arguments for these experiments: constant learning rate, no evaluation, no
/// checkpoints, in a temporary directory the caller removes.
fn args(steps: usize, batch: usize, lr: f64, seed: u64, tag: &str) -> TrainingArgs {
    TrainingArgs {
        output_dir: temp_dir(tag),
        max_steps: Some(steps),
        batch_size: batch,
        learning_rate: lr,
        schedule: ScheduleKind::Constant,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        seed,
        ..TrainingArgs::default()
    }
}

/// Trains `task` with the Trainer, recording every step into `record`.
fn run_trainer<T: TrainTask<f32>>(
    args: &TrainingArgs,
    task: &T,
    store: &mut ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    record: &mut Recorder,
) -> Result<TrainReport> {
    let out = trainer::train(
        Training::new(args, task, store)
            .hooks(hooks)
            .progress(record)
            .log_file(false),
    );
    let _ = std::fs::remove_dir_all(&args.output_dir);
    out
}

/// The world's preference pairs and their kinds (test and validation from held-out entities).
fn world_pairs(train: usize, validation: usize, test: usize) -> (PreferenceSplits, PairKinds) {
    let world = World::generate(WORLD_SEED);
    build_tagged(
        &world,
        DATA_SEED,
        Sizes {
            train,
            validation,
            test,
        },
    )
}

// ---------------------------------------------------------------------------------------------
// 18. DPO from the KL-constrained RLHF objective

/// The discrete problem: the reference's logits over K responses of one prompt, and the reward of
/// each. Inputs of the demonstration, not results.
const REF_LOGITS: [f64; 6] = [0.6, 0.1, 0.0, -0.4, 0.3, -0.8];
const REWARDS: [f64; 6] = [1.0, 0.3, -0.5, 0.8, 0.0, -1.0];
/// β values solved for.
const BETAS_18: [f64; 3] = [0.5, 1.0, 4.0];
/// A cap on the gradient-ascent steps of question 18 (the smallest β needs about 45,000).
const MAX_STEPS_18: usize = 200_000;

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = z.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// One β of the discrete problem, solved by gradient ascent and in closed form.
#[derive(Debug, Clone, Serialize)]
pub struct DiscreteSolve {
    pub beta: f64,
    /// Steps until every component of the gradient was below 1e-12.
    pub steps: usize,
    /// The policy gradient ascent reached, and the closed form π_ref·exp(r/β)/Z.
    pub policy: Vec<f64>,
    pub closed_form: Vec<f64>,
    /// max |π − π*|.
    pub max_error: f64,
    /// E[r] − β KL at the end, and β log Z (its value at the optimum).
    pub objective: f64,
    pub beta_log_z: f64,
    /// β log(π/π_ref) of each response: the implicit rewards.
    pub implicit: Vec<f64>,
    /// r − β log(π/π_ref) for each response: β log Z for every one when the derivation holds.
    pub offsets: Vec<f64>,
    /// The largest |(r̂_i − r̂_j) − (r_i − r_j)| over all pairs i, j.
    pub difference_error: f64,
    /// The largest |σ(r̂_i − r̂_j) − σ(r_i − r_j)|: Bradley–Terry with the implicit rewards.
    pub bt_error: f64,
}

/// DPO's gradient on one pair against β σ(−β h)(∇log π_c − ∇log π_r), each side from the tape.
#[derive(Debug, Clone, Serialize)]
pub struct GradientCheck {
    pub setting: String,
    pub beta: f64,
    /// h, the log-ratio margin, and σ(−β h), the weight of the pair.
    pub h: f64,
    pub weight: f64,
    pub params: usize,
    /// max |∇L_DPO − (−β σ(−β h)(∇log π_c − ∇log π_r))|, and the largest gradient entry.
    pub max_diff: f64,
    pub max_grad: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DpoDerivation {
    pub reference: Vec<f64>,
    pub rewards: Vec<f64>,
    pub solves: Vec<DiscreteSolve>,
    pub checks: Vec<GradientCheck>,
}

/// Maximises E_π[r] − β KL(π ‖ π_ref) over the logits θ of π = softmax(θ) by plain gradient
/// ascent, with the gradient from the tape.
fn solve_discrete(beta: f64) -> Result<DiscreteSolve> {
    let k = REWARDS.len();
    let ref_logp: Vec<f64> = {
        let p = softmax(&REF_LOGITS);
        p.iter().map(|x| x.ln()).collect()
    };
    let vec1 = |v: &[f64]| ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).expect("1-d");
    let mut store = ParamStore::<f64>::new();
    // Start from the reference itself, as fine-tuning starts from the SFT model.
    let theta = store.add("logits", vec1(&REF_LOGITS), true)?;
    // The Hessian of the objective in the logits is bounded by about 2 + 2β here (the rewards
    // span 2): a step of 1/(β + 2) is stable. Near the optimum the logit of a response of
    // probability p converges at a rate of about lr·β·p per step, so the smallest β needs tens of
    // thousands of steps: run until the gradient is below 1e-12.
    let lr = 1.0 / (beta + 2.0);
    let mut steps = 0;
    let objective = |tape: &mut Tape<'_, f64>, theta: Var| -> Result<Var> {
        let logp = tape.log_softmax(theta)?;
        let p = tape.exp(logp)?;
        let r = tape.constant(vec1(&REWARDS));
        let lref = tape.constant(vec1(&ref_logp));
        let pr = tape.mul(p, r)?;
        let expected = tape.sum_all(pr)?;
        let log_ratio = tape.sub(logp, lref)?;
        let pk = tape.mul(p, log_ratio)?;
        let kl = tape.sum_all(pk)?;
        let penalty = tape.scale(kl, beta)?;
        tape.sub(expected, penalty)
    };
    while steps < MAX_STEPS_18 {
        let mut tape = Tape::new(&store);
        let t = tape.param(theta);
        let j = objective(&mut tape, t)?;
        let loss = tape.scale(j, -1.0)?;
        let mut grads = Grads::new(&store);
        tape.backward(loss, &mut grads)?;
        let g = grads.get(theta).cloned().unwrap_or_else(|| vec1(&[0.0; 6]));
        if g.iter().all(|x| x.abs() < 1e-12) {
            break;
        }
        let next = store.value(theta) - &(g * lr);
        store.set_value(theta, next)?;
        steps += 1;
    }
    let final_j = {
        let mut tape = Tape::inference(&store);
        let t = tape.param(theta);
        let j = objective(&mut tape, t)?;
        tape.scalar(j)?
    };
    let logits: Vec<f64> = store.value(theta).iter().copied().collect();
    let policy = softmax(&logits);
    let pref = softmax(&REF_LOGITS);
    let z: f64 = pref
        .iter()
        .zip(&REWARDS)
        .map(|(p, r)| p * (r / beta).exp())
        .sum();
    let closed_form: Vec<f64> = pref
        .iter()
        .zip(&REWARDS)
        .map(|(p, r)| p * (r / beta).exp() / z)
        .collect();
    let implicit: Vec<f64> = policy
        .iter()
        .zip(&pref)
        .map(|(p, q)| beta * (p / q).ln())
        .collect();
    let offsets: Vec<f64> = REWARDS.iter().zip(&implicit).map(|(r, h)| r - h).collect();
    let (mut difference_error, mut bt_error) = (0.0f64, 0.0f64);
    for i in 0..k {
        for j in 0..k {
            let d_true = REWARDS[i] - REWARDS[j];
            let d_hat = implicit[i] - implicit[j];
            difference_error = difference_error.max((d_hat - d_true).abs());
            bt_error = bt_error.max((sigmoid(d_hat) - sigmoid(d_true)).abs());
        }
    }
    Ok(DiscreteSolve {
        beta,
        steps,
        max_error: max_abs_diff(&policy, &closed_form),
        policy,
        closed_form,
        objective: final_j,
        beta_log_z: beta * z.ln(),
        implicit,
        offsets,
        difference_error,
        bt_error,
    })
}

/// The DPO loss of one pair (its sequence log-probabilities on the tape, the reference's as
/// numbers) and the two gradients it is made of, each by its own backward pass: returns
/// (h, max difference, largest entry, parameters compared).
fn dpo_gradient_check<F: Float>(
    store: &ParamStore<F>,
    ids: &[ParamId],
    beta: f64,
    refs: [f64; 2],
    logps: impl Fn(&mut Tape<'_, F>) -> Result<(Var, Var)>,
) -> Result<(f64, f64, f64, usize)> {
    let flat = |g: &Grads<F>| -> Vec<f64> {
        ids.iter()
            .flat_map(|&id| {
                let n = store.value(id).len();
                match g.get(id) {
                    Some(a) => a.iter().map(|x| x.as_f64()).collect::<Vec<_>>(),
                    None => vec![0.0; n],
                }
            })
            .collect()
    };
    // ∇ of the DPO loss.
    let mut tape = Tape::new(store);
    tape.set_train(false);
    let (c, r) = logps(&mut tape)?;
    let (lc, lr) = (tape.scalar(c)?.as_f64(), tape.scalar(r)?.as_f64());
    let out = dpo_loss(
        &mut tape,
        &PairInputs {
            chosen: c,
            rejected: r,
            chosen_tokens: &[1],
            rejected_tokens: &[1],
            ref_chosen: Some(&refs[..1]),
            ref_rejected: Some(&refs[1..]),
            chosen_nll: None,
        },
        beta,
        0.0,
    )?;
    let mut g = Grads::new(store);
    tape.backward(out.loss, &mut g)?;
    let dpo = flat(&g);
    // ∇ log π(y_c) and ∇ log π(y_r), each on its own tape.
    let one = |chosen: bool| -> Result<Vec<f64>> {
        let mut tape = Tape::new(store);
        tape.set_train(false);
        let (c, r) = logps(&mut tape)?;
        let v = if chosen { c } else { r };
        let s = tape.sum_all(v)?;
        let mut g = Grads::new(store);
        tape.backward(s, &mut g)?;
        Ok(flat(&g))
    };
    let (gc, gr) = (one(true)?, one(false)?);
    let h = (lc - refs[0]) - (lr - refs[1]);
    let w = sigmoid(-beta * h);
    let formula: Vec<f64> = gc
        .iter()
        .zip(&gr)
        .map(|(a, b)| -beta * w * (a - b))
        .collect();
    let max_grad = dpo.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    Ok((h, max_abs_diff(&dpo, &formula), max_grad, dpo.len()))
}

/// The summed response log-probabilities of `responses` to `prompt` (one batch, right-padded),
/// read as preference tuning reads them: prompt masked, end token counted.
fn response_logps<F: Float>(
    tape: &mut Tape<'_, F>,
    base: &Base,
    hooks: &dyn Hooks<F>,
    prompt: &str,
    responses: &[&str],
) -> Result<Var> {
    let max_len = base.model.config.max_len;
    let (mut ids, mut labels) = (Vec::new(), Vec::new());
    for r in responses {
        let ex = Example::Generation {
            prompt: prompt.to_string(),
            response: r.to_string(),
        };
        let enc = encode_memo(&base.tok, &ex, &[], max_len)?;
        let Target::Lm(l) = enc.target else {
            return invalid("interview", "not a generation encoding");
        };
        ids.push(enc.ids);
        labels.push(l);
    }
    let pad = base.tok.pad_id().unwrap_or(0);
    let b = pad_with_labels(&ids, &labels, pad, PadSide::Right, Some(max_len))?;
    let input = Input::new(b.ids.view())
        .with_mask(b.attention_mask.view())
        .with_positions(b.positions.view());
    let h = base.model.forward(tape, hooks, &input)?;
    let logits = base.model.lm_logits(tape, hooks, h)?;
    let labels = b.labels.as_ref().expect("padded with labels");
    Ok(sequence_logps(tape, logits, labels.view(), false)?.0)
}

pub fn dpo_derivation() -> Result<DpoDerivation> {
    let solves = BETAS_18
        .iter()
        .map(|&b| solve_discrete(b))
        .collect::<Result<Vec<_>>>()?;
    let mut checks = Vec::new();
    // The discrete policy: logits θ, a pair (best, worst), the reference as given, β 1, at a
    // point half-way to the optimum (h ≠ 0).
    {
        let beta = 1.0;
        let mut store = ParamStore::<f64>::new();
        let pref = softmax(&REF_LOGITS);
        let logits: Vec<f64> = REF_LOGITS
            .iter()
            .zip(&REWARDS)
            .map(|(l, r)| l + 0.5 * r / beta)
            .collect();
        let theta = store.add(
            "logits",
            ArrayD::from_shape_vec(IxDyn(&[6]), logits).expect("6 logits"),
            true,
        )?;
        let (c, r) = (0usize, 5usize);
        let refs = [pref[c].ln(), pref[r].ln()];
        let (h, d, m, n) = dpo_gradient_check(&store, &[theta], beta, refs, |tape| {
            let t = tape.param(theta);
            let lp = tape.log_softmax(t)?;
            Ok((tape.slice(lp, 0, c, c + 1)?, tape.slice(lp, 0, r, r + 1)?))
        })?;
        checks.push(GradientCheck {
            setting: "discrete policy (6 logits), f64".into(),
            beta,
            h,
            weight: sigmoid(-beta * h),
            params: n,
            max_diff: d,
            max_grad: m,
        });
    }
    // gpt-tiny with LoRA (r 8 on q, v), B drawn at random so that the policy differs from the
    // reference (the base without the hooks), on one of the world's pairs, f32.
    {
        let beta = 0.1;
        let mut base = load_base(BASE)?;
        let spec = MethodSpec::Lora(crate::peft::lora::compare_config());
        let method = peft::apply(&spec, &base.model, &mut base.store, 7)?;
        let mut rng = StdRng::seed_from_u64(7);
        for &id in method.params() {
            if base.store.name(id).contains("lora_B") {
                let shape = base.store.value(id).shape().to_vec();
                let n: usize = shape.iter().product();
                let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.02f32..0.02)).collect();
                base.store.set_value(
                    id,
                    ArrayD::from_shape_vec(IxDyn(&shape), v).expect("its shape"),
                )?;
            }
        }
        let (splits, _) = world_pairs(4, 4, 4);
        let pair: &PreferencePair = &splits.train[0];
        let responses = [pair.chosen.as_str(), pair.rejected.as_str()];
        let refs = {
            let mut t = Tape::inference(&base.store);
            let v = response_logps(&mut t, &base, &NoHooks, &pair.prompt, &responses)?;
            let x: Vec<f64> = t.value(v).iter().map(|x| x.as_f64()).collect();
            [x[0], x[1]]
        };
        let ids: Vec<ParamId> = method.params().to_vec();
        let (h, d, m, n) = dpo_gradient_check(&base.store, &ids, beta, refs, |tape| {
            let v = response_logps(tape, &base, method.as_ref(), &pair.prompt, &responses)?;
            Ok((tape.slice(v, 0, 0, 1)?, tape.slice(v, 0, 1, 2)?))
        })?;
        checks.push(GradientCheck {
            setting: "gpt-tiny + LoRA r8 q,v, one world pair, f32".into(),
            beta,
            h,
            weight: sigmoid(-beta * h),
            params: n,
            max_diff: d,
            max_grad: m,
        });
    }
    Ok(DpoDerivation {
        reference: softmax(&REF_LOGITS),
        rewards: REWARDS.to_vec(),
        solves,
        checks,
    })
}

impl Evidence for DpoDerivation {
    fn render(&self) -> String {
        let fmt = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.4}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let mut s = format!(
            "one prompt, {} responses: π_ref = [{}], r = [{}]\n\
             maximise E_π[r] − β KL(π ‖ π_ref) over the logits of π by plain gradient ascent (tape, f64), from π = π_ref\n\n",
            self.rewards.len(),
            fmt(&self.reference),
            fmt(&self.rewards)
        );
        let rows: Vec<Vec<String>> = self
            .solves
            .iter()
            .map(|x| {
                vec![
                    format!("{}", x.beta),
                    x.steps.to_string(),
                    format!("[{}]", fmt(&x.policy)),
                    format!("{:.1e}", x.max_error),
                    format!("{:.6}", x.objective),
                    format!("{:.6}", x.beta_log_z),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "β",
                "steps to |∇| < 1e-12",
                "π reached",
                "max |π − π*|",
                "E[r] − β KL",
                "β log Z",
            ],
            &rows,
        ));
        s.push_str("\nimplicit rewards r̂ = β log π/π_ref at the optimum, and r − r̂ (β log Z for every response: it depends on the prompt only)\n\n");
        let rows: Vec<Vec<String>> = self
            .solves
            .iter()
            .map(|x| {
                let spread = x.offsets.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    - x.offsets.iter().copied().fold(f64::INFINITY, f64::min);
                vec![
                    format!("{}", x.beta),
                    format!("[{}]", fmt(&x.implicit)),
                    format!("{:.6}", mean(&x.offsets)),
                    format!("{spread:.1e}"),
                    format!("{:.1e}", x.difference_error),
                    format!("{:.1e}", x.bt_error),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "β",
                "r̂",
                "mean r − r̂",
                "its spread",
                "max |Δr̂ − Δr|",
                "max |σ(Δr̂) − σ(Δr)|",
            ],
            &rows,
        ));
        s.push_str("\nDPO's gradient on one pair (tape) against −β σ(−β h)(∇log π_c − ∇log π_r), each log π differentiated on its own tape\n\n");
        let rows: Vec<Vec<String>> = self
            .checks
            .iter()
            .map(|c| {
                vec![
                    c.setting.clone(),
                    format!("{}", c.beta),
                    format!("{:+.4}", c.h),
                    format!("{:.4}", c.weight),
                    c.params.to_string(),
                    format!("{:.2e}", c.max_grad),
                    format!("{:.2e}", c.max_diff),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "policy",
                "β",
                "h",
                "σ(−β h)",
                "parameters",
                "max |∇L|",
                "max difference",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let worst = |f: fn(&DiscreteSolve) -> f64| self.solves.iter().map(f).fold(0.0f64, f64::max);
        let err = worst(|x| x.max_error);
        let obj = worst(|x| (x.objective - x.beta_log_z).abs());
        let diff = worst(|x| x.difference_error);
        let bt = worst(|x| x.bt_error);
        let mut claims = vec![
            Claim::new(
                format!("gradient ascent on E[r] − β KL reaches the closed form π* = π_ref·exp(r/β)/Z at every β (max |π − π*| {err:.1e})"),
                err < 1e-6,
            ),
            Claim::new(
                format!("the optimum's value is β log Z (max difference {obj:.1e})"),
                obj < 1e-6,
            ),
            Claim::new(
                format!("the implicit rewards β log π*/π_ref recover every reward difference: Z cancels (max error {diff:.1e})"),
                diff < 1e-5,
            ),
            Claim::new(
                format!("Bradley–Terry with the implicit rewards gives the true preference probabilities (max error {bt:.1e})"),
                bt < 1e-5,
            ),
        ];
        for c in &self.checks {
            let tol = if c.setting.contains("f64") {
                1e-12
            } else {
                1e-5 * c.max_grad.max(1e-3)
            };
            claims.push(Claim::new(
                format!(
                    "DPO's gradient is β σ(−β h)(∇log π_c − ∇log π_r) on the tape, {} (max difference {:.1e})",
                    c.setting, c.max_diff
                ),
                c.max_diff <= tol && c.max_grad > 0.0,
            ));
        }
        claims
    }
}

// ---------------------------------------------------------------------------------------------
// 19. The reference model and β

/// The β values of question 19.
pub const BETAS_19: [f64; 3] = [0.01, 0.1, 1.0];

/// DPO with LoRA at one β, measured on held-out pairs.
#[derive(Debug, Clone, Serialize)]
pub struct BetaRow {
    pub beta: f64,
    /// Held-out preference accuracy and mean reward margin β·h.
    pub accuracy: f64,
    pub margin: f64,
    /// The mean log-ratio margin h = margin / β.
    pub log_ratio_margin: f64,
    /// Mean change of log π from the reference on the chosen and on the rejected responses
    /// (the chosen one's change is the task's `kl`: the k1 estimate on the data's responses).
    pub chosen_change: f64,
    pub rejected_change: f64,
    /// Mean |log π − log π_ref| over both responses of every held-out pair: how far the policy
    /// moved from the reference, whichever way.
    pub drift: f64,
    pub final_loss: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BetaSweep {
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub train_pairs: usize,
    pub heldout_pairs: usize,
    pub rows: Vec<BetaRow>,
    /// What the reference holds beyond the policy: LoRA (the base without hooks) and full
    /// fine-tuning (a frozen copy), and the policy's own weights.
    pub lora_reference_bytes: usize,
    pub full_reference_bytes: usize,
    pub weight_bytes: usize,
}

/// The world's pairs as DPO data: train from seen entities, validation (the held-out pairs
/// scored here) from held-out ones.
fn dpo_data(train: usize, heldout: usize) -> PreferenceData {
    let (s, _) = world_pairs(train, heldout, 4);
    PreferenceData {
        train: s.train,
        validation: s.validation,
        test: s.test,
        ..Default::default()
    }
}

fn dpo_options(beta: f64) -> PreferenceTrainOptions {
    PreferenceTrainOptions {
        objective: PreferenceOptions {
            loss_type: "sigmoid".into(),
            beta: Some(beta),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The base with a method applied, and the DPO task bound to it.
type DpoSetup = (Base, Box<dyn Method<f32>>, PreferenceTask<f32>);

/// A DPO task on gpt-tiny with `spec` applied (seeded), and the base with the method.
fn dpo_setup(spec: &MethodSpec, data: PreferenceData, beta: f64, seed: u64) -> Result<DpoSetup> {
    let mut base = load_base(BASE)?;
    let method = peft::apply(spec, &base.model, &mut base.store, seed)?;
    let task = PreferenceTask::new(
        base.model.clone(),
        &base.store,
        method.params(),
        base.tok.clone(),
        data,
        dpo_options(beta),
    )?;
    Ok((base, method, task))
}

pub fn beta(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<BetaSweep> {
    let (steps, batch, lr) = (mode.pick(8, 60), mode.pick(6, 8), 5e-3);
    let (train_pairs, heldout) = (mode.pick(48, 480), mode.pick(32, 200));
    let data = dpo_data(train_pairs, heldout);
    let lora = MethodSpec::Lora(crate::peft::lora::compare_config());
    let mut rows = Vec::new();
    let mut lora_reference_bytes = 0;
    let mut weight_bytes = 0;
    for &beta in &BETAS_19 {
        progress.line(&format!(
            "DPO with LoRA at β {beta}: {steps} steps of {batch} pairs at lr {lr:.0e}"
        ));
        let (mut base, method, task) = dpo_setup(&lora, data.clone(), beta, seed)?;
        lora_reference_bytes = task.reference_bytes();
        weight_bytes = base.store.bytes();
        let a = args(steps, batch, lr, seed, "dpo-beta");
        let mut record = Recorder::default();
        run_trainer(&a, &task, &mut base.store, method.as_ref(), &mut record)?;
        // One pass over the held-out pairs: (margin, log π_c, log π_r, log π_ref,c, log π_ref,r).
        let pairs = task.pair_rows(&base.store, method.as_ref(), Split::Validation, 16)?;
        let col = |f: &dyn Fn(&[f64; 5]) -> f64| mean(&pairs.iter().map(f).collect::<Vec<_>>());
        let margin = col(&|p| p[0]);
        let tail = &record.losses[record.losses.len().saturating_sub(3)..];
        rows.push(BetaRow {
            beta,
            accuracy: col(&|p| f64::from(u8::from(p[0] > 0.0))),
            margin,
            log_ratio_margin: margin / beta,
            chosen_change: col(&|p| p[1] - p[3]),
            rejected_change: col(&|p| p[2] - p[4]),
            drift: col(&|p| 0.5 * ((p[1] - p[3]).abs() + (p[2] - p[4]).abs())),
            final_loss: mean(tail),
        });
    }
    // Full fine-tuning's reference: a frozen copy of every weight (nothing trains here).
    let (_, _, full) = dpo_setup(&MethodSpec::Full { last_k: None }, data, 0.1, seed)?;
    Ok(BetaSweep {
        steps,
        batch,
        lr,
        train_pairs,
        heldout_pairs: heldout,
        rows,
        lora_reference_bytes,
        full_reference_bytes: full.reference_bytes(),
        weight_bytes,
    })
}

impl BetaSweep {
    pub fn row(&self, beta: f64) -> &BetaRow {
        self.rows
            .iter()
            .find(|r| r.beta == beta)
            .expect("a measured β")
    }
}

impl Evidence for BetaSweep {
    fn render(&self) -> String {
        let mut s = format!(
            "DPO on gpt-tiny with LoRA r=8 q,v: {} steps of {} pairs at lr {:.0e} on {} of the world's pairs; {} held-out pairs (entities never trained on)\n\n",
            self.steps, self.batch, self.lr, self.train_pairs, self.heldout_pairs
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    format!("{}", r.beta),
                    num(r.accuracy, 3),
                    format!("{:+.3}", r.margin),
                    format!("{:+.2}", r.log_ratio_margin),
                    format!("{:+.2}", r.chosen_change),
                    format!("{:+.2}", r.rejected_change),
                    num(r.drift, 2),
                    num(r.final_loss, 3),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "β",
                "held-out acc",
                "margin β·h",
                "h",
                "Δlog π chosen (kl)",
                "Δlog π rejected",
                "mean |Δlog π|",
                "train loss",
            ],
            &rows,
        ));
        s.push_str(&format!(
            "\nthe reference's cost beyond the policy's {} bytes of weights: LoRA (the base without hooks) {} bytes; full fine-tuning (a frozen copy) {} bytes\n",
            self.weight_bytes, self.lora_reference_bytes, self.full_reference_bytes
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (small, mid, large) = (self.row(0.01), self.row(0.1), self.row(1.0));
        vec![
            Claim::new(
                "the smaller β, the further the policy moves from the reference (mean |Δlog π| at β 0.01 > at β 1)",
                small.drift > large.drift,
            )
            .measured(
                "mean |Δlog π|, β 0.01 − β 1",
                small.drift - large.drift,
                Fmt::Signed(2),
            ),
            Claim::new(
                "... and step by step (β 0.01 > 0.1 > 1)",
                small.drift > mid.drift && mid.drift > large.drift,
            )
            .measured(
                "mean |Δlog π|, β 0.01 − β 0.1",
                small.drift - mid.drift,
                Fmt::Signed(2),
            ),
            Claim::new(
                "the smaller β, the larger the log-ratio margin h the loss asks for (h at β 0.01 > at β 1)",
                small.log_ratio_margin > large.log_ratio_margin,
            )
            .measured(
                "h at β 0.01 − h at β 1",
                small.log_ratio_margin - large.log_ratio_margin,
                Fmt::Signed(2),
            ),
            Claim::new(
                "at β 0.01 DPO lowers the chosen responses too, not only the rejected ones (likelihood displacement)",
                small.chosen_change < 0.0 && small.rejected_change < 0.0,
            )
            .measured(
                "Δlog π of the chosen responses at β 0.01",
                small.chosen_change,
                Fmt::Signed(2),
            ),
            Claim::new(
                "at β 0.1 (TRL's default) held-out pairs are ranked above chance",
                mid.accuracy > 0.5,
            )
            .measured("held-out accuracy at β 0.1", mid.accuracy, Fmt::Fixed(3)),
            Claim::new(
                "the smallest β does not rank held-out pairs better than β 0.1",
                small.accuracy <= mid.accuracy,
            )
            .measured(
                "held-out accuracy, β 0.01 − β 0.1",
                small.accuracy - mid.accuracy,
                Fmt::Signed(3),
            ),
            Claim::new(
                "with LoRA the reference costs no memory (the base without hooks); full fine-tuning's is a copy of every weight",
                self.lora_reference_bytes == 0 && self.full_reference_bytes >= self.weight_bytes / 2,
            )
            .measured(
                "full fine-tuning's reference (bytes)",
                self.full_reference_bytes as f64,
                Fmt::Fixed(0),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// GRPO on the code task, shared by questions 20 and 21

/// Prompts of the code task the GRPO runs train on: each is in every step's batch, so one
/// step's reward is comparable with the next (as in the GRPO test of the suite).
const GRPO_PROMPTS: usize = 4;
/// Supervised warm-up before GRPO (full fine-tuning, batch 8, lr 1e-3): a raw base never writes
/// a program that executes, so every group's rewards would be equal and every advantage 0.
const SFT_STEPS: usize = 5;
const NUM_GENERATIONS: usize = 8;
const MAX_COMPLETION: usize = 16;

/// gpt-tiny fine-tuned for a few steps on the code task's first prompts (full fine-tuning); the
/// starting point of the GRPO runs.
fn codegen_warmup(prompts: usize, seed: u64) -> Result<(Base, TaskModel)> {
    let mut base = load_base(BASE)?;
    let (data, world) = task_data(Task::Codegen, None, Some(prompts))?;
    let full = MethodSpec::Full { last_k: None };
    let (tm, method) = prepare(&mut base, Task::Codegen, data, world, &full, seed)?;
    let a = args(SFT_STEPS, 8, 1e-3, seed, "grpo-sft");
    run_trainer(
        &a,
        &tm,
        &mut base.store,
        method.as_ref(),
        &mut Recorder::default(),
    )?;
    Ok((base, tm))
}

fn grpo_options(beta: f64) -> GrpoOptions {
    GrpoOptions {
        num_generations: NUM_GENERATIONS,
        temperature: 1.0,
        max_completion_length: MAX_COMPLETION,
        beta,
        ..GrpoOptions::default()
    }
}

/// The prompt ids of the first `n` training items, each repeated G times, as a GRPO rollout
/// samples them.
fn rollout_prompts(tm: &TaskModel, n: usize) -> Vec<Vec<usize>> {
    tm.train[..n.min(tm.train.len())]
        .iter()
        .flat_map(|it| {
            let p: Vec<usize> = it.encoded.ids[..it.encoded.prompt_len]
                .iter()
                .map(|&x| x as usize)
                .collect();
            std::iter::repeat_n(p, NUM_GENERATIONS)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 20. DPO versus PPO versus GRPO

/// What one method holds, in bytes, by arithmetic on a model of `params` weights with a scalar
/// head of `head` weights.
#[derive(Debug, Clone, Serialize)]
pub struct HeldRow {
    pub method: String,
    pub policy: f64,
    pub reference: f64,
    pub reward_model: f64,
    pub value_model: f64,
}

impl HeldRow {
    pub fn total(&self) -> f64 {
        self.policy + self.reference + self.reward_model + self.value_model
    }
}

/// The models each method holds for full fine-tuning of a model: a trained model costs
/// `trained` bytes per weight (weights, gradients, AdamW's two moments), a frozen one `frozen`.
fn held(params: f64, head: f64, trained: f64, frozen: f64) -> Vec<HeldRow> {
    let row = |m: &str, r: f64, rm: f64, v: f64| HeldRow {
        method: m.into(),
        policy: trained * params,
        reference: r,
        reward_model: rm,
        value_model: v,
    };
    vec![
        row("DPO", frozen * params, 0.0, 0.0),
        row("GRPO, verifiable reward", frozen * params, 0.0, 0.0),
        row(
            "GRPO, reward model",
            frozen * params,
            frozen * (params + head),
            0.0,
        ),
        row(
            "PPO (critic not in tunelab: arithmetic)",
            frozen * params,
            frozen * (params + head),
            trained * (params + head),
        ),
    ]
}

#[derive(Debug, Clone, Serialize)]
pub struct RlCosts {
    /// gpt-tiny's weights and the reward head's (measured in the store), and a 7B model's.
    pub params: usize,
    pub head_params: usize,
    pub params_7b: f64,
    pub tiny: Vec<HeldRow>,
    pub big: Vec<HeldRow>,
    /// Measured with LoRA on gpt-tiny: the Trainer's memory ledger at the peak step and the
    /// reference's bytes beyond it.
    pub dpo_memory: usize,
    pub grpo_memory: usize,
    pub dpo_reference_bytes: usize,
    pub grpo_reference_bytes: usize,
    /// Median seconds per optimizer step, over as many sequences each (DPO: pairs × 2; GRPO:
    /// prompts × G completions).
    pub steps: usize,
    pub dpo_pairs: usize,
    pub grpo_prompts: usize,
    pub dpo_step_seconds: f64,
    pub grpo_step_seconds: f64,
    /// Median seconds to sample one step's completions (the same prompts and options), and the
    /// mean completion length of the GRPO steps.
    pub generate_seconds: f64,
    pub completion_length: f64,
    /// Mean tokens per sequence: DPO's prompt + response, GRPO's prompt + completion.
    pub dpo_tokens: f64,
    pub grpo_tokens: f64,
    /// What each trained on: DPO's pairs, GRPO's prompts and its samples.
    pub dpo_train_pairs: usize,
    pub grpo_samples: usize,
    pub example_pair: (String, String, String),
    pub example_prompt: String,
}

fn short(s: &str, n: usize) -> String {
    let one = s.replace('\n', " | ");
    if one.chars().count() <= n {
        one
    } else {
        format!("{}…", one.chars().take(n).collect::<String>())
    }
}

pub fn rl_costs(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<RlCosts> {
    let steps = mode.pick(3, 10);
    let (dpo_pairs, grpo_prompts) = (8, 2);
    let lora = MethodSpec::Lora(crate::peft::lora::compare_config());

    // The arithmetic: gpt-tiny's weights and a scalar head's, counted in a store.
    let plain = load_base(BASE)?;
    let params = plain.store.num_params();
    let head_params = {
        let mut s = plain.store.clone();
        let before = s.num_params();
        RewardHead::new(&mut s, &plain.model, seed)?;
        s.num_params() - before
    };
    let shape7 = estimate::named_shape("7B").ok_or_else(|| crate::error::Error::Invalid {
        op: "interview",
        detail: "no 7B shape".into(),
    })?;
    let params_7b = shape7.params().total as f64;
    // f32 with AdamW: weights, gradients, two moments; bf16 mixed precision for 7B: bf16
    // weights and gradients, an f32 master copy and two f32 moments (16 bytes), frozen in bf16.
    let tiny = held(params as f64, head_params as f64, 16.0, 4.0);
    let big = held(params_7b, shape7.hidden as f64, 16.0, 2.0);

    // DPO with LoRA: `dpo_pairs` pairs (2 × as many sequences) per step, on the world's code
    // pairs: a request and a program, as long as GRPO's prompts and completions.
    progress.line(&format!(
        "timing DPO with LoRA: {steps} steps of {dpo_pairs} code pairs"
    ));
    let (splits, kinds) = world_pairs(16 * dpo_pairs, 8, 4);
    let code: Vec<PreferencePair> = splits
        .train
        .iter()
        .zip(&kinds.train)
        .filter(|(_, k)| **k == "code")
        .map(|(p, _)| p.clone())
        .collect();
    let data = PreferenceData {
        train: code,
        validation: splits.validation,
        ..Default::default()
    };
    let dpo_train_pairs = data.train.len();
    let dpo_tokens = {
        let max_len = plain.model.config.max_len;
        let mut n = Vec::new();
        for p in &data.train {
            for r in [&p.chosen, &p.rejected] {
                let ex = Example::Generation {
                    prompt: p.prompt.clone(),
                    response: r.clone(),
                };
                n.push(encode_memo(&plain.tok, &ex, &[], max_len)?.ids.len() as f64);
            }
        }
        mean(&n)
    };
    let example = &data.train[0];
    let example_pair = (
        example.prompt.clone(),
        example.chosen.clone(),
        example.rejected.clone(),
    );
    let (mut base, method, task) = dpo_setup(&lora, data, 0.1, seed)?;
    let a = args(steps, dpo_pairs, 5e-3, seed, "dpo-time");
    let dpo = run_trainer(
        &a,
        &task,
        &mut base.store,
        method.as_ref(),
        &mut Recorder::default(),
    )?;

    // GRPO with LoRA after a short SFT warm-up: `grpo_prompts` × G completions per step.
    progress.line(&format!(
        "timing GRPO with LoRA: {SFT_STEPS} SFT steps, then {steps} steps of {grpo_prompts} prompts × {NUM_GENERATIONS} completions"
    ));
    let (mut base, tm) = codegen_warmup(grpo_prompts, seed)?;
    let example_prompt = tm.train[0].example.clone();
    let lora_m = peft::apply(&lora, &base.model, &mut base.store, seed)?;
    let reward = Box::new(crate::train::grpo::ExecutionReward { world: &tm.world });
    let gtask = GrpoTask::new(
        &tm,
        &base.store,
        lora_m.as_ref(),
        reward,
        grpo_options(0.04),
        seed,
    )?;
    let a = args(steps, grpo_prompts, 5e-3, seed, "grpo-time");
    let grpo = run_trainer(
        &a,
        &gtask,
        &mut base.store,
        lora_m.as_ref(),
        &mut Recorder::default(),
    )?;
    let history = gtask.steps();
    let completion_length = mean(
        &history
            .iter()
            .map(|s| s.completion_length)
            .collect::<Vec<_>>(),
    );
    // Sampling alone, on the same prompts with the same options and the trained policy.
    let prompts = rollout_prompts(&tm, grpo_prompts);
    let tok = &tm.tok;
    let mut times = Vec::new();
    for rep in 0..steps {
        let opts = GenerateOptions {
            max_new_tokens: MAX_COMPLETION,
            temperature: 1.0,
            top_k: None,
            seed: seed.wrapping_add(rep as u64),
            eos: tok.eos_id().map(|e| e as usize),
            pad: tok.pad_id().unwrap_or(0) as usize,
            max_length: Some(tm.model.config.max_len),
        };
        let t = Instant::now();
        generate(&tm.model, &base.store, lora_m.as_ref(), &prompts, &opts)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let prompt_tokens = mean(&prompts.iter().map(|p| p.len() as f64).collect::<Vec<_>>());
    Ok(RlCosts {
        dpo_tokens,
        grpo_tokens: prompt_tokens + completion_length,
        params,
        head_params,
        params_7b,
        tiny,
        big,
        dpo_memory: dpo.memory.total(),
        grpo_memory: grpo.memory.total(),
        dpo_reference_bytes: task.reference_bytes(),
        grpo_reference_bytes: gtask.reference_bytes(),
        steps,
        dpo_pairs,
        grpo_prompts,
        dpo_step_seconds: dpo.median_step_seconds,
        grpo_step_seconds: grpo.median_step_seconds,
        generate_seconds: times[times.len() / 2],
        completion_length,
        dpo_train_pairs,
        grpo_samples: history.len() * grpo_prompts * NUM_GENERATIONS,
        example_pair,
        example_prompt: match example_prompt {
            Example::Generation { prompt, .. } => prompt,
            _ => String::new(),
        },
    })
}

impl RlCosts {
    pub fn generation_share(&self) -> f64 {
        self.generate_seconds / self.grpo_step_seconds
    }

    fn held_table(rows: &[HeldRow], unit: f64, unit_name: &str) -> String {
        let f = |x: f64| {
            if x == 0.0 {
                "—".to_string()
            } else {
                format!("{:.2}", x / unit)
            }
        };
        let body: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.method.clone(),
                    f(r.policy),
                    f(r.reference),
                    f(r.reward_model),
                    f(r.value_model),
                    f(r.total()),
                ]
            })
            .collect();
        table(
            &[
                &format!("full fine-tuning ({unit_name})"),
                "policy (trained)",
                "reference",
                "reward model",
                "value model (trained)",
                "total",
            ],
            &body,
        )
    }
}

impl Evidence for RlCosts {
    fn render(&self) -> String {
        let mut s = format!(
            "what each method holds in memory (arithmetic: a trained model 16 bytes per weight — weights, gradients, AdamW's two moments; a frozen one 4 in f32, 2 in bf16); gpt-tiny has {} weights, a scalar head {}; 7B has {:.2e}\n\n",
            self.params, self.head_params, self.params_7b
        );
        s.push_str(&Self::held_table(&self.tiny, 1e6, "gpt-tiny, f32, MB"));
        s.push('\n');
        s.push_str(&Self::held_table(&self.big, 1e9, "7B, bf16 mixed, GB"));
        s.push_str(&format!(
            "\nmeasured on gpt-tiny with LoRA r=8 q,v ({} steps each, median):\n\n",
            self.steps
        ));
        s.push_str(&table(
            &[
                "method",
                "sequences per step",
                "mean tokens per sequence",
                "s per step",
                "memory ledger (bytes)",
                "reference beyond it (bytes)",
            ],
            &[
                vec![
                    format!("DPO, β 0.1, {} code pairs", self.dpo_pairs),
                    (2 * self.dpo_pairs).to_string(),
                    format!("{:.1}", self.dpo_tokens),
                    format!("{:.3}", self.dpo_step_seconds),
                    self.dpo_memory.to_string(),
                    self.dpo_reference_bytes.to_string(),
                ],
                vec![
                    format!(
                        "GRPO, β 0.04, {} prompts × {NUM_GENERATIONS}",
                        self.grpo_prompts
                    ),
                    (self.grpo_prompts * NUM_GENERATIONS).to_string(),
                    format!("{:.1}", self.grpo_tokens),
                    format!("{:.3}", self.grpo_step_seconds),
                    self.grpo_memory.to_string(),
                    self.grpo_reference_bytes.to_string(),
                ],
            ],
        ));
        s.push_str(&format!(
            "sampling one GRPO step's {} completions alone (KV cache, at most {MAX_COMPLETION} tokens, mean length {:.1}): {:.3} s, {:.0}% of the step\n",
            self.grpo_prompts * NUM_GENERATIONS,
            self.completion_length,
            self.generate_seconds,
            100.0 * self.generation_share()
        ));
        let (p, c, r) = &self.example_pair;
        s.push_str(&format!(
            "\nwhat each needs: DPO {} preference pairs (here the code pairs) such as\n  prompt {:?}\n  chosen {:?}  rejected {:?}\nGRPO prompts and a verifier: {} prompts such as {:?}, {} completions sampled and executed; PPO the prompts and a reward model trained on pairs\n",
            self.dpo_train_pairs,
            short(p, 70),
            short(c, 40),
            short(r, 40),
            self.grpo_prompts,
            short(&self.example_prompt, 70),
            self.grpo_samples
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let total = |rows: &[HeldRow], m: &str| {
            rows.iter()
                .find(|r| r.method.starts_with(m))
                .map_or(f64::NAN, HeldRow::total)
        };
        let (ppo, dpo, grpo) = (
            total(&self.big, "PPO"),
            total(&self.big, "DPO"),
            total(&self.big, "GRPO, verifiable"),
        );
        vec![
            Claim::new(
                "PPO holds four models (policy, reference, reward, value) and the most memory; DPO and GRPO with a verifiable reward hold two",
                ppo > dpo && ppo > grpo && dpo == grpo,
            )
            .measured("7B: PPO / DPO memory", ppo / dpo, Fmt::Times(2)),
            Claim::new(
                "with LoRA neither DPO's nor GRPO's reference costs memory (the base without hooks)",
                self.dpo_reference_bytes == 0 && self.grpo_reference_bytes == 0,
            ),
            Claim::new(
                "a GRPO step takes longer than a DPO step over as many sequences of about the same length",
                self.grpo_step_seconds > self.dpo_step_seconds,
            )
            .measured(
                "GRPO / DPO step time",
                self.grpo_step_seconds / self.dpo_step_seconds,
                Fmt::Times(2),
            ),
            Claim::new(
                "sampling the completions takes most of a GRPO step",
                self.generation_share() > 0.5,
            )
            .measured("sampling's share of a GRPO step", self.generation_share(), Fmt::Percent(0)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 21. Reward hacking

/// A reward that scores every completion twice, by a proxy and by the truth (execution), logs
/// both, and returns the one being optimised.
struct Logged<'a> {
    world: &'a World,
    log: &'a RefCell<Vec<(f64, f64)>>,
    optimise_proxy: bool,
}

/// The proxy: characters / 20, a grader that prefers longer, more detailed answers (the length
/// bias learned reward models are known for).
fn proxy_reward(completion: &str) -> f64 {
    completion.trim().chars().count() as f64 / 20.0
}

impl Reward for Logged<'_> {
    fn name(&self) -> &str {
        if self.optimise_proxy {
            "length proxy"
        } else {
            "execution"
        }
    }

    fn score(&self, _prompt: &str, completion: &str, reference: &str) -> Result<f64> {
        let proxy = proxy_reward(completion);
        let truth = f64::from(u8::from(same_answer(
            reference,
            completion.trim(),
            self.world,
        )));
        self.log.borrow_mut().push((proxy, truth));
        Ok(if self.optimise_proxy { proxy } else { truth })
    }
}

/// The KL weight of question 21's runs.
const HACK_BETA: f64 = 0.04;

/// One GRPO run's curve: per step, the mean proxy and true rewards of its samples and their mean
/// completion length.
#[derive(Debug, Clone, Serialize)]
pub struct HackRun {
    pub optimised: String,
    pub proxy: Vec<f64>,
    pub truth: Vec<f64>,
    pub length: Vec<f64>,
}

/// Mean of the first and of the last third of a curve.
fn thirds(x: &[f64]) -> (f64, f64) {
    let k = (x.len() / 3).max(1);
    (mean(&x[..k]), mean(&x[x.len() - k..]))
}

impl HackRun {
    pub fn proxy_thirds(&self) -> (f64, f64) {
        thirds(&self.proxy)
    }
    pub fn truth_thirds(&self) -> (f64, f64) {
        thirds(&self.truth)
    }
    pub fn length_thirds(&self) -> (f64, f64) {
        thirds(&self.length)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RewardHacking {
    pub steps: usize,
    pub lr: f64,
    pub proxy_run: HackRun,
    pub true_run: HackRun,
}

fn hack_run(
    warm: &Base,
    tm: &TaskModel,
    optimise_proxy: bool,
    steps: usize,
    lr: f64,
    seed: u64,
) -> Result<HackRun> {
    let mut store = warm.store.clone();
    let lora = MethodSpec::Lora(crate::peft::lora::compare_config());
    let method = peft::apply(&lora, &warm.model, &mut store, seed)?;
    let log = RefCell::new(Vec::new());
    let reward = Box::new(Logged {
        world: &tm.world,
        log: &log,
        optimise_proxy,
    });
    // With a KL penalty to the warmed-up model (TRL's former default β): the proxy is hacked
    // even so, and the run on the true reward stays stable over the full budget.
    let task = GrpoTask::new(
        tm,
        &store,
        method.as_ref(),
        reward,
        grpo_options(HACK_BETA),
        seed,
    )?;
    let a = args(steps, GRPO_PROMPTS, lr, seed, "grpo-hack");
    run_trainer(
        &a,
        &task,
        &mut store,
        method.as_ref(),
        &mut Recorder::default(),
    )?;
    let per_step = GRPO_PROMPTS * NUM_GENERATIONS;
    let log = log.borrow();
    let (mut proxy, mut truth) = (Vec::new(), Vec::new());
    for chunk in log.chunks(per_step).take(steps) {
        proxy.push(mean(&chunk.iter().map(|x| x.0).collect::<Vec<_>>()));
        truth.push(mean(&chunk.iter().map(|x| x.1).collect::<Vec<_>>()));
    }
    Ok(HackRun {
        optimised: if optimise_proxy {
            "length proxy".into()
        } else {
            "execution (the truth)".into()
        },
        proxy,
        truth,
        length: task.steps().iter().map(|s| s.completion_length).collect(),
    })
}

pub fn reward_hacking(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<RewardHacking> {
    let (steps, lr) = (mode.pick(12, 30), 5e-3);
    progress.line(&format!(
        "SFT warm-up on {GRPO_PROMPTS} code prompts ({SFT_STEPS} steps), then GRPO with LoRA, {steps} steps of {GRPO_PROMPTS} prompts × {NUM_GENERATIONS}, on a length proxy and on execution"
    ));
    let (warm, tm) = codegen_warmup(GRPO_PROMPTS, seed)?;
    let proxy_run = hack_run(&warm, &tm, true, steps, lr, seed)?;
    let true_run = hack_run(&warm, &tm, false, steps, lr, seed)?;
    Ok(RewardHacking {
        steps,
        lr,
        proxy_run,
        true_run,
    })
}

impl Evidence for RewardHacking {
    fn render(&self) -> String {
        let mut s = format!(
            "gpt-tiny after {SFT_STEPS} steps of SFT on {GRPO_PROMPTS} code prompts; GRPO with LoRA r=8 q,v, KL penalty β {HACK_BETA}, lr {:.0e}, {} steps of {GRPO_PROMPTS} prompts × {NUM_GENERATIONS} completions of at most {MAX_COMPLETION} tokens\n\
             proxy reward: characters / 20 (a grader that likes longer answers); true reward: the program computes the right value\n\n",
            self.lr, self.steps
        );
        let mut rows = Vec::new();
        for r in [&self.proxy_run, &self.true_run] {
            let (p0, p1) = r.proxy_thirds();
            let (t0, t1) = r.truth_thirds();
            let (l0, l1) = r.length_thirds();
            rows.push(vec![
                r.optimised.clone(),
                format!("{p0:.3} → {p1:.3}"),
                format!("{t0:.3} → {t1:.3}"),
                format!("{l0:.1} → {l1:.1}"),
            ]);
        }
        s.push_str(&table(
            &[
                "GRPO optimises",
                "proxy reward",
                "true reward",
                "completion tokens",
            ],
            &rows,
        ));
        s.push_str("(mean of the first third of the steps → of the last third)\n\nthe proxy run step by step:\n");
        let r = &self.proxy_run;
        let body: Vec<Vec<String>> = (0..r.proxy.len())
            .map(|i| {
                vec![
                    (i + 1).to_string(),
                    num(r.proxy[i], 3),
                    num(r.truth[i], 3),
                    r.length.get(i).map_or("-".into(), |l| format!("{l:.1}")),
                ]
            })
            .collect();
        s.push_str(&table(&["step", "proxy", "true", "tokens"], &body));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (p0, p1) = self.proxy_run.proxy_thirds();
        let (t0, t1) = self.proxy_run.truth_thirds();
        let (l0, l1) = self.proxy_run.length_thirds();
        let (c0, c1) = self.true_run.truth_thirds();
        vec![
            Claim::new("optimising the proxy raises the proxy reward", p1 > p0).measured(
                "proxy reward, last − first third",
                p1 - p0,
                Fmt::Signed(3),
            ),
            Claim::new(
                "... while the true reward does not rise with it (reward hacking)",
                t1 <= t0,
            )
            .measured("true reward, last − first third", t1 - t0, Fmt::Signed(3)),
            Claim::new(
                "the proxy is exploited by writing longer completions",
                l1 > l0,
            )
            .measured(
                "completion tokens, last − first third",
                l1 - l0,
                Fmt::Signed(1),
            ),
            Claim::new(
                "the same budget spent on the true reward raises it",
                c1 > c0,
            )
            .measured(
                "true reward when optimised, last − first third",
                c1 - c0,
                Fmt::Signed(3),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 22. The reward model and Bradley–Terry

/// Upper edges of the confidence bins of question 22: max(p, 1 − p) in [0.5, 0.6), ...
const BIN_EDGES: [f64; 5] = [0.6, 0.7, 0.8, 0.9, 1.0 + 1e-12];

#[derive(Debug, Clone, Serialize)]
pub struct CalibrationBin {
    pub lo: f64,
    pub hi: f64,
    pub pairs: usize,
    /// Mean predicted probability that the model's preferred response is the chosen one.
    pub confidence: f64,
    /// The share of those pairs the model ranked right.
    pub accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RewardModel {
    pub steps: usize,
    pub train_pairs: usize,
    pub test_pairs: usize,
    pub accuracy: f64,
    /// Test accuracy per kind, in [`KINDS`] order.
    pub kind_accuracy: Vec<f64>,
    /// Validation accuracy per kind at each evaluation: (step, accuracies in [`KINDS`] order).
    pub curve: Vec<(usize, Vec<f64>)>,
    pub bins: Vec<CalibrationBin>,
    /// Expected calibration error over the bins.
    pub ece: f64,
    /// Accuracy of the more and of the less confident half of the test pairs.
    pub confident_half: f64,
    pub unsure_half: f64,
    /// P(a coin ranks at least as many test pairs right).
    pub p_chance: f64,
    pub bt_loss: f64,
}

/// P(X ≥ k) for X ~ Binomial(n, 1/2).
fn binomial_tail(n: usize, k: usize) -> f64 {
    let mut pmf = 0.5f64.powi(n as i32);
    let mut tail = if k == 0 { pmf } else { 0.0 };
    for i in 1..=n {
        pmf *= (n - i + 1) as f64 / i as f64;
        if i >= k {
            tail += pmf;
        }
    }
    tail
}

pub fn reward_model(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<RewardModel> {
    let (steps, batch, lr) = (mode.pick(20, 100), 8, 3e-3);
    let (train, val, test) = (mode.pick(160, 800), mode.pick(48, 200), mode.pick(80, 200));
    let evals = 4;
    progress.line(&format!(
        "reward model: gpt-tiny + LoRA r=8 q,v and a scalar head, {steps} steps of {batch} pairs at lr {lr:.0e}"
    ));
    let (splits, kinds) = world_pairs(train, val, test);
    let mut base = load_base(BASE)?;
    let (task, method) = reward_task::prepare(
        &base.model,
        &mut base.store,
        &base.tok,
        &splits,
        Some(&kinds),
        &MethodSpec::Lora(Default::default()),
        RewardOptions {
            center_rewards_coefficient: Some(0.01),
            ..RewardOptions::default()
        },
        seed,
    )?;
    let mut a = args(steps, batch, lr, seed, "reward-model");
    a.warmup_steps = steps / 8;
    a.eval_strategy = Strategy::Steps;
    a.eval_steps = (steps / evals).max(1);
    a.max_eval_examples = val;
    let mut record = Recorder::default();
    run_trainer(&a, &task, &mut base.store, method.as_ref(), &mut record)?;
    let per_kind = |m: &crate::train::progress::Metrics| -> Vec<f64> {
        KIND_ACCURACY
            .iter()
            .map(|k| m.get(*k).copied().unwrap_or(f64::NAN))
            .collect()
    };
    let curve: Vec<(usize, Vec<f64>)> = record
        .evals
        .iter()
        .map(|(s, m)| (*s, per_kind(m)))
        .collect();
    let scores = task.score_pairs(&base.store, method.as_ref(), &task.test, 32)?;
    let m = RewardTask::metrics(&task.test, &scores);
    let margins: Vec<f64> = scores
        .chosen
        .iter()
        .zip(&scores.rejected)
        .map(|(c, r)| c - r)
        .collect();
    let bt_loss = mean(
        &margins
            .iter()
            .map(|d| -sigmoid(*d).ln())
            .collect::<Vec<_>>(),
    );
    // The model's preferred response, its probability under Bradley–Terry, and whether it is
    // the chosen one.
    let mut judged: Vec<(f64, bool)> = margins
        .iter()
        .map(|&d| (sigmoid(d.abs()), d > 0.0))
        .collect();
    let mut bins = Vec::new();
    let mut lo = 0.5;
    let mut ece = 0.0;
    for &hi in &BIN_EDGES {
        let inside: Vec<&(f64, bool)> =
            judged.iter().filter(|(q, _)| *q >= lo && *q < hi).collect();
        let n = inside.len();
        let confidence = mean(&inside.iter().map(|x| x.0).collect::<Vec<_>>());
        let accuracy = mean(
            &inside
                .iter()
                .map(|x| f64::from(u8::from(x.1)))
                .collect::<Vec<_>>(),
        );
        if n > 0 {
            ece += n as f64 / judged.len() as f64 * (accuracy - confidence).abs();
        }
        bins.push(CalibrationBin {
            lo,
            hi: hi.min(1.0),
            pairs: n,
            confidence,
            accuracy,
        });
        lo = hi;
    }
    judged.sort_by(|a, b| b.0.total_cmp(&a.0));
    let half = judged.len() / 2;
    let acc = |x: &[(f64, bool)]| {
        mean(
            &x.iter()
                .map(|p| f64::from(u8::from(p.1)))
                .collect::<Vec<_>>(),
        )
    };
    let n = margins.len();
    let right = margins.iter().filter(|d| **d > 0.0).count();
    Ok(RewardModel {
        steps,
        train_pairs: train,
        test_pairs: n,
        accuracy: m["accuracy"],
        kind_accuracy: per_kind(&m),
        curve,
        bins,
        ece,
        confident_half: acc(&judged[..half]),
        unsure_half: acc(&judged[half..]),
        p_chance: binomial_tail(n, right),
        bt_loss,
    })
}

impl RewardModel {
    /// Mean accuracy of the surface kinds (evasion, style) and of the checking kinds (fact,
    /// code), from accuracies in [`KINDS`] order.
    pub fn surface_and_checking(acc: &[f64]) -> (f64, f64) {
        (0.5 * (acc[1] + acc[2]), 0.5 * (acc[0] + acc[3]))
    }
}

impl Evidence for RewardModel {
    fn render(&self) -> String {
        let mut s = format!(
            "gpt-tiny + LoRA r=8 q,v + a scalar head on the last token, Bradley–Terry loss −log σ(r_c − r_r), {} steps of 8 on {} of the world's pairs; {} held-out test pairs\n\n",
            self.steps, self.train_pairs, self.test_pairs
        );
        let mut rows: Vec<Vec<String>> = self
            .curve
            .iter()
            .map(|(step, acc)| {
                let mut r = vec![format!("step {step} (validation)")];
                r.extend(acc.iter().map(|a| num(*a, 3)));
                r
            })
            .collect();
        let mut last = vec!["end (test)".to_string()];
        last.extend(self.kind_accuracy.iter().map(|a| num(*a, 3)));
        rows.push(last);
        let mut headers = vec!["pairwise accuracy"];
        headers.extend(KINDS);
        s.push_str(&table(&headers, &rows));
        s.push_str(&format!(
            "test accuracy {:.3} ({} pairs; P(a coin does as well) = {:.1e}); Bradley–Terry NLL of the test pairs {:.3} (log 2 = 0.693 at chance)\n\n",
            self.accuracy, self.test_pairs, self.p_chance, self.bt_loss
        ));
        s.push_str("calibration: the model's preferred response of each test pair, with P = σ(|r_c − r_r|) that it is the chosen one\n\n");
        let rows: Vec<Vec<String>> = self
            .bins
            .iter()
            .map(|b| {
                vec![
                    format!(
                        "[{:.1}, {:.1}{}",
                        b.lo,
                        b.hi,
                        if b.hi >= 1.0 { "]" } else { ")" }
                    ),
                    b.pairs.to_string(),
                    if b.pairs > 0 {
                        num(b.confidence, 3)
                    } else {
                        "-".into()
                    },
                    if b.pairs > 0 {
                        num(b.accuracy, 3)
                    } else {
                        "-".into()
                    },
                ]
            })
            .collect();
        s.push_str(&table(
            &["P bin", "pairs", "mean P", "observed accuracy"],
            &rows,
        ));
        s.push_str(&format!(
            "expected calibration error {:.3}; accuracy of the more confident half {:.3}, of the less confident half {:.3}\n",
            self.ece, self.confident_half, self.unsure_half
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let first = self
            .curve
            .first()
            .map_or(vec![f64::NAN; 4], |(_, a)| a.clone());
        let (s0, c0) = Self::surface_and_checking(&first);
        let (s1, c1) = Self::surface_and_checking(&self.kind_accuracy);
        vec![
            Claim::new(
                "the reward model ranks held-out pairs above chance (a coin does as well with P < 0.01)",
                self.p_chance < 0.01,
            )
            .measured("test accuracy", self.accuracy, Fmt::Fixed(3)),
            Claim::new(
                "surface kinds (evasion, style) are learned before the kinds that need checking the facts (fact, code): ahead at the first evaluation",
                s0 > c0,
            )
            .measured(
                "first evaluation: surface − checking accuracy",
                s0 - c0,
                Fmt::Signed(3),
            ),
            Claim::new(
                "... and still ahead at the end, on test",
                s1 > c1,
            )
            .measured("test: surface − checking accuracy", s1 - c1, Fmt::Signed(3)),
            Claim::new(
                "pairs with a larger reward gap are ranked right more often",
                self.confident_half > self.unsure_half,
            )
            .measured(
                "accuracy, confident − unsure half",
                self.confident_half - self.unsure_half,
                Fmt::Signed(3),
            ),
            Claim::new(
                "σ(r_c − r_r) is calibrated: expected calibration error under 0.1",
                self.ece < 0.1,
            )
            .measured("expected calibration error", self.ece, Fmt::Fixed(3)),
        ]
    }
}

/// Questions 18–22 in Vietnamese (`tunelab interview N --lang vi`): (number, question, answer).
pub const VI: &[(usize, &str, &str)] = &[
    (18, "Hãy suy ra DPO từ mục tiêu RLHF có ràng buộc KL.",
     "RLHF tối đa hóa E_{y∼π}[r(x, y)] − β KL(π ‖ π_ref) cho mỗi prompt x. Viết lại thành −β KL(π ‖ π_ref·exp(r/β)/Z) + β log Z, với Z(x) = Σ_y π_ref(y|x) exp(r(x, y)/β), nghiệm tối ưu của nó là π*(y|x) = π_ref(y|x) exp(r(x, y)/β) / Z(x), và giá trị tối ưu là β log Z. Giải ra reward: r(x, y) = β log π*(y|x)/π_ref(y|x) + β log Z(x). Z không tính được, nhưng nó chỉ phụ thuộc vào prompt, nên nó triệt tiêu trong xác suất Bradley–Terry của một preference: P(y_c ≻ y_r) = σ(r(y_c) − r(y_r)) = σ(β log π*/π_ref(y_c) − β log π*/π_ref(y_r)). Maximum likelihood trên các cặp preference với π thay cho π* chính là DPO: L = −log σ(β h), h = log π/π_ref(y_c) − log π/π_ref(y_r). Gradient của nó là −β σ(−β h)(∇log π(y_c) − ∇log π(y_r)): nâng response được chọn, hạ response bị loại, với trọng số là mức độ mà reward model ngầm định xếp sai cặp đó. Không cần reward model và không cần sampling: policy chính là reward model của nó."),
    (19, "Tại sao DPO cần một reference model, và β làm gì?",
     "DPO là mục tiêu RLHF có ràng buộc KL được giải ở dạng đóng: reward ngầm định của nó là β log π/π_ref, nên reference là thứ mà mọi response được đo so với. Nó neo policy vào mô hình SFT trôi chảy; không có nó (hoặc với β gần 0) không gì ngăn policy đẩy log-probabilities đi bất cứ đâu để nới rộng khoảng cách giữa chosen và rejected, và thường cả hai cùng giảm (likelihood displacement) trong khi văn bản xuống cấp. β là trọng số của KL: loss −log σ(β h) bão hòa khi β h đạt vài đơn vị, nên nó đòi một margin log-ratio h cỡ 1/β: β nhỏ cho phép policy đi xa reference, β lớn giữ nó ở gần và học ít hơn (mặc định của TRL là 0.1). Ở đây β nhỏ hơn đòi h lớn hơn và đẩy log-probabilities của policy xa reference hơn ở mọi seed, và DPO hạ các response bị loại ở mọi β và, ở β 0.01, hạ cả các response được chọn (likelihood displacement). Việc β quá nhỏ xếp hạng các cặp held-out kém hơn không thấy được ở ngân sách này: vài chục step không đủ để trôi xa tới mức gây hại, và β 0.01 xếp hạng tốt gần bằng 0.1; cái giá của β nhỏ là sự trôi, điều mà pitfall cho thấy qua các run dài hơn. Reference cũng tốn bộ nhớ: với LoRA hoặc một phương pháp giữ base frozen khác, nó chính là các weights đó chạy không có adapter (không tốn byte nào); full fine-tuning cần một bản sao frozen của mọi weight, hoặc log-probabilities của reference được tính trước một lần."),
    (20, "So sánh DPO, PPO và GRPO.",
     "PPO (công thức của InstructGPT) sample các response, chấm chúng bằng một reward model đã học, và dùng một value model đã học (critic) làm baseline cho advantage, với một phạt KL tới reference frozen: bốn mô hình, hai trong số đó được train. GRPO bỏ critic: nó sample G completion cho mỗi prompt và lấy reward của mỗi cái trừ trung bình của nhóm, chia cho độ lệch chuẩn của nhóm, làm advantage; với một reward kiểm chứng được (chương trình chạy được, đáp án đúng) thì cũng không cần reward model, nên nó chỉ giữ policy và reference. DPO không cần sampling cũng không cần reward model: nó train offline trên các cặp preference cố định với policy và reference, mỗi step rẻ như supervised fine-tuning, nhưng nó chỉ học được từ các cặp được cho, trong khi PPO và GRPO học từ chính các sample của policy. Dữ liệu: DPO cần các cặp (prompt, chosen, rejected); GRPO cần prompt và một reward function, lý tưởng là kiểm chứng được; PPO cần prompt và một reward model train trên các cặp. Theo phép tính bên dưới, PPO cần khoảng gấp đôi bộ nhớ của DPO khi full fine-tuning (tunelab không cài đặt PPO: critic của nó được tính, không được chạy). Ở quy mô lớn sampling chiếm phần lớn một step RL (completion dài, decoding bị giới hạn bởi bộ nhớ); trên gpt-tiny với các chương trình 16 token và một KV cache thì sampling rẻ: một step GRPO lâu hơn một step DPO trên cùng số chuỗi cùng độ dài (với ngân sách quick thì không phải ở mọi seed), nhưng sampling chỉ chiếm phần nhỏ của nó, nên khẳng định rằng sampling chiếm phần lớn không đúng ở quy mô này."),
    (21, "Reward hacking trông như thế nào?",
     "Policy học cái mà reward đo thay vì cái mà reward muốn đo: đường reward đi lên trong khi mục tiêu thật dậm chân hoặc giảm. Các dạng thường gặp: độ dài (reward model đã học ưa các câu trả lời dài hơn), mẹo định dạng, sycophancy (nịnh người dùng), và khai thác một verifier hay test harness có lỗi. Dấu hiệu: reward tăng nhanh hơn chất lượng held-out, độ dài completion hoặc KL tới reference tăng, các sample trông lạ. Cách phòng: một reward kiểm chứng được khi có thể, phạt KL tới reference, chuẩn hóa hoặc phạt độ dài, ensemble reward model, và theo dõi sample và metric held-out thay vì đường reward. Ở đây GRPO trên một proxy ưa câu trả lời dài hơn, kể cả với phạt KL, đã nâng proxy ở mọi seed bằng cách làm các chương trình dài ra cho tới giới hạn độ dài, và tỉ lệ chương trình tính đúng giá trị giảm gần như về không; cùng số step đó dành cho reward thực thi thì nâng được nó."),
    (22, "Reward model là gì, và mô hình Bradley–Terry là gì?",
     "Reward model ánh xạ một prompt và một response thành một số: thường là mô hình SFT với LM head được thay bằng một linear head trên token cuối, train trên các phép so sánh. Bradley–Terry mô hình hóa một phép so sánh là P(y_c ≻ y_r | x) = σ(r(x, y_c) − r(x, y_r)), nên training tối thiểu hóa −log σ(r_c − r_r) trên các cặp. Chỉ các hiệu số được xác định, nên reward chỉ xác định sai khác một hằng số cho mỗi prompt (center_rewards_coefficient của TRL ghim trung bình của chúng về 0). Đánh giá nó trên các cặp held-out: pairwise accuracy tổng thể và theo từng loại, và calibration, tức σ(r_c − r_r) có khớp với tần suất response được ưa thích đúng là response được chọn hay không. Nó học trước hết bất cứ thứ gì tách các cặp dễ nhất. Ở đây các câu né tránh và văn phong (lan man, thô lỗ) được xếp đúng ngay từ lần đánh giá đầu tiên, mới được một phần tư chặng đường, trong khi sai sự thật và chương trình sai vẫn gần mức ngẫu nhiên đến cuối: xếp hạng chúng đòi hỏi đối chiếu response với prompt, điều mà mô hình nhỏ này không học được trong một trăm step (trong hai mươi step của test quick, loại nào dẫn đầu ở lần đánh giá đầu tiên thay đổi theo seed). Độ tự tin có ý nghĩa (các cặp có khoảng cách reward lớn hơn đúng thường xuyên hơn), và calibration gần đúng, trong khoảng 0.1 ở phần lớn các seed. Một policy được tối ưu theo một mô hình như vậy có thể khai thác cùng những lối tắt đó: reward hacking (câu 21)."),
];
