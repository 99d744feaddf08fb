//! LoRA questions: why B starts at zero (6), alpha, rank and rsLoRA (7), which modules to
//! target (8), how many parameters it adds (9), merging and precision (10).

use crate::data::lm::LmBatch;
use crate::data::tasks::Task;
use crate::error::Result;
use crate::lab::estimate;
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::{load_base, task_data, Base};
use crate::lab::forgetting::heldout_batches;
use crate::lab::runs::{temp_dir, train_run, Outcome, Run, BASE};
use crate::nn::layers::normal;
use crate::nn::{Hooks, NoHooks, Transformer};
use crate::peft::lora::{Lora, LoraConfig};
use crate::peft::{Method, MethodSpec};
use crate::train::pretrain::lm_batch_loss;
use crate::train::progress::Progress;
use crate::train::trainer::{self, Split, Training};
use crate::train::TrainingArgs;
use crate::{Float, Grads, ParamStore, Tape};
use ndarray::{ArrayD, Ix2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;

fn lora(r: usize, targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r,
        alpha: 2.0 * r as f64,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..LoraConfig::default()
    }
}

/// LM logits (B, T, V) of one batch through `hooks`, in evaluation mode.
fn logits<F: Float>(
    model: &Transformer,
    store: &ParamStore<F>,
    hooks: &dyn Hooks<F>,
    b: &LmBatch,
) -> Result<ArrayD<F>> {
    let mut tape = Tape::inference(store);
    let h = model.forward(&mut tape, hooks, &crate::nn::Input::new(b.ids.view()))?;
    let l = model.lm_logits(&mut tape, hooks, h)?;
    Ok(tape.value(l).to_owned())
}

fn max_abs_diff<F: Float>(a: &ArrayD<F>, b: &ArrayD<F>) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0, |m, (x, y)| m.max((x.as_f64() - y.as_f64()).abs()))
}

/// The L2 norm of the gradients of the method's parameters whose name contains `part`.
fn grad_norm_of(
    store: &ParamStore<f32>,
    method: &dyn Method<f32>,
    grads: &Grads<f32>,
    part: &str,
) -> f64 {
    method
        .params()
        .iter()
        .filter(|&&id| store.name(id).contains(part))
        .filter_map(|&id| grads.get(id))
        .flat_map(|g| g.iter().map(|&x| (x as f64) * (x as f64)))
        .sum::<f64>()
        .sqrt()
}

// ---------------------------------------------------------------------------------------------
// 6. B starts at zero

#[derive(Debug, Clone, Serialize)]
pub struct InitRow {
    pub label: String,
    /// Largest logit difference from the base model.
    pub max_logit_diff: f64,
    pub lm_loss: f64,
    pub grad_a: f64,
    pub grad_b: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ZeroInit {
    pub base_lm_loss: f64,
    /// A random and B zero (LoRA's), both zero, both random.
    pub rows: Vec<InitRow>,
}

pub fn zero_init() -> Result<ZeroInit> {
    let base = load_base(BASE)?;
    let batch = heldout_batches(&base)?.swap_remove(0);
    let want = logits(&base.model, &base.store, &NoHooks, &batch)?;
    let loss_of = |store: &ParamStore<f32>, hooks: &dyn Hooks<f32>| -> Result<f64> {
        let mut tape = Tape::inference(store);
        let (l, _) = lm_batch_loss(&base.model, &mut tape, hooks, &batch)?;
        Ok(tape.scalar(l)?.as_f64())
    };
    let base_lm_loss = loss_of(&base.store, &NoHooks)?;
    let mut rows = Vec::new();
    for label in [
        "A random, B = 0 (LoRA)",
        "A = 0, B = 0",
        "A random, B random",
    ] {
        let mut store = base.store.clone();
        store.set_all_trainable(false);
        let method = Lora::apply(&base.model, &mut store, LoraConfig::default(), 42)?;
        let mut rng = StdRng::seed_from_u64(7);
        for &id in Method::<f32>::params(&method) {
            let name = store.name(id).to_string();
            let shape = store.value(id).shape().to_vec();
            if label.starts_with("A = 0") && name.contains("lora_A") {
                store.set_value(id, ArrayD::zeros(shape))?;
            } else if label.ends_with("B random") && name.contains("lora_B") {
                store.set_value(id, normal(&shape, 0.02, &mut rng))?;
            }
        }
        let got = logits(&base.model, &store, &method, &batch)?;
        // One backward pass and no update: the demonstration is the gradient LoRA's factors
        // receive at initialisation, so nothing here trains (training goes through the Trainer).
        let mut grads = Grads::new(&store);
        {
            let mut tape = Tape::new(&store);
            tape.set_train(false);
            let (l, _) = lm_batch_loss(&base.model, &mut tape, &method, &batch)?;
            tape.backward(l, &mut grads)?;
        }
        rows.push(InitRow {
            label: label.into(),
            max_logit_diff: max_abs_diff(&got, &want),
            lm_loss: loss_of(&store, &method)?,
            grad_a: grad_norm_of(&store, &method, &grads, "lora_A"),
            grad_b: grad_norm_of(&store, &method, &grads, "lora_B"),
        });
    }
    Ok(ZeroInit { base_lm_loss, rows })
}

impl Evidence for ZeroInit {
    fn render(&self) -> String {
        let mut s = format!(
            "gpt-tiny with LoRA r=8 on q,v, one batch of held-out text; the base's LM loss is {}\n\n",
            num(self.base_lm_loss, 4)
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    format!("{:.2e}", r.max_logit_diff),
                    num(r.lm_loss, 4),
                    format!("{:.2e}", r.grad_a),
                    format!("{:.2e}", r.grad_b),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "init",
                "max |logit - base|",
                "LM loss",
                "|grad A|",
                "|grad B|",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (std, zero, random) = (&self.rows[0], &self.rows[1], &self.rows[2]);
        vec![
            Claim::new(
                "with B = 0 the adapted model's output is exactly the base model's",
                std.max_logit_diff == 0.0 && std.lm_loss == self.base_lm_loss,
            ),
            Claim::new(
                "with B = 0, B still gets a gradient at step 0 (A's is zero until B moves)",
                std.grad_b > 0.0 && std.grad_a == 0.0,
            ),
            Claim::new(
                "with A = B = 0 neither gets a gradient: LoRA could never learn",
                zero.grad_a == 0.0 && zero.grad_b == 0.0,
            ),
            Claim::new(
                format!(
                    "with B random the model starts away from the base (LM loss {} vs {})",
                    num(random.lm_loss, 4),
                    num(self.base_lm_loss, 4)
                ),
                random.max_logit_diff > 0.0 && random.lm_loss > self.base_lm_loss,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 7. Alpha, rank and rsLoRA

#[derive(Debug, Clone, Serialize)]
pub struct ScalingRow {
    pub r: usize,
    pub rslora: bool,
    pub scaling: f64,
    /// ‖s·B·A‖_F summed over every adapted matrix (squares added).
    pub update_norm: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Scaling {
    pub alpha: f64,
    pub steps: usize,
    pub lr: f64,
    pub rows: Vec<ScalingRow>,
}

/// ‖s·B·A‖_F over every LoRA pair of a trained run.
fn update_norm(o: &Outcome, s: f64) -> f64 {
    let store = &o.base.store;
    let mut sq = 0.0;
    for &id in o.method.params() {
        let name = store.name(id);
        if !name.contains(".lora_B") {
            continue;
        }
        let Ok(a_id) = store.id(&name.replace(".lora_B", ".lora_A")) else {
            continue;
        };
        let b = store
            .value(id)
            .view()
            .into_dimensionality::<Ix2>()
            .expect("B is 2-D")
            .mapv(|x| x as f64);
        let a = store
            .value(a_id)
            .view()
            .into_dimensionality::<Ix2>()
            .expect("A is 2-D")
            .mapv(|x| x as f64);
        sq += b.dot(&a).iter().map(|x| (s * x).powi(2)).sum::<f64>();
    }
    sq.sqrt()
}

pub const ALPHA: f64 = 16.0;
pub const RANKS: [usize; 3] = [2, 8, 32];

pub fn scaling(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Scaling> {
    let (steps, lr) = (mode.pick(3, 20), 1e-3);
    let mut rows = Vec::new();
    for rslora in [false, true] {
        for r in RANKS {
            let cfg = LoraConfig {
                r,
                alpha: ALPHA,
                rslora,
                ..LoraConfig::default()
            };
            let s = cfg.scaling();
            let run = Run::new(Task::Sentiment, MethodSpec::Lora(cfg), lr, steps, 8).seed(seed);
            let label = format!("LoRA r={r}{}", if rslora { " rsLoRA" } else { "" });
            let o = train_run(&run, &label, progress)?;
            rows.push(ScalingRow {
                r,
                rslora,
                scaling: s,
                update_norm: update_norm(&o, s),
            });
        }
    }
    Ok(Scaling {
        alpha: ALPHA,
        steps,
        lr,
        rows,
    })
}

impl Scaling {
    /// The update norm at the largest rank over that at the smallest.
    pub fn ratio(&self, rslora: bool) -> f64 {
        let rows: Vec<&ScalingRow> = self.rows.iter().filter(|r| r.rslora == rslora).collect();
        rows.last().map_or(f64::NAN, |l| l.update_norm)
            / rows.first().map_or(f64::NAN, |f| f.update_norm)
    }
}

impl Evidence for Scaling {
    fn render(&self) -> String {
        let mut s = format!(
            "LoRA on q,v with alpha {}, {} Adam steps at lr {:.0e} on sentiment; the learned update's size ‖s·B·A‖\n\n",
            self.alpha, self.steps, self.lr
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.r.to_string(),
                    if r.rslora {
                        "alpha/sqrt(r)".into()
                    } else {
                        "alpha/r".into()
                    },
                    num(r.scaling, 3),
                    format!("{:.3e}", r.update_norm),
                ]
            })
            .collect();
        s.push_str(&table(&["r", "scaling", "s", "‖s·B·A‖"], &rows));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (std, rs) = (self.ratio(false), self.ratio(true));
        let what = |how: &str| format!("‖s·B·A‖ at r={} / at r={}, {how}", RANKS[2], RANKS[0]);
        vec![
            Claim::new("with alpha/r the update shrinks as r grows", std < 1.0).measured(
                what("alpha/r"),
                std,
                Fmt::Times(2),
            ),
            Claim::new(
                "with rsLoRA the update's size depends much less on r",
                rs.ln().abs() < std.ln().abs(),
            )
            .measured(what("rsLoRA"), rs, Fmt::Times(2)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Which modules to target

#[derive(Debug, Clone, Serialize)]
pub struct TargetRow {
    pub targets: String,
    /// Parameters LoRA added (the head not counted).
    pub lora_params: usize,
    /// r·(d_in + d_out) summed over the adapted matrices.
    pub formula: usize,
    pub val_accuracy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Targets {
    pub r: usize,
    pub steps: usize,
    pub rows: Vec<TargetRow>,
}

/// r·(d_in + d_out) for the named targets of one GPT block, times the blocks.
fn lora_formula(model: &Transformer, r: usize, targets: &[&str]) -> usize {
    let c = model.config.d_model;
    let ff = model.config.d_ff;
    let per_block: usize = targets
        .iter()
        .map(|t| match *t {
            "q" | "k" | "v" | "o" => r * (c + c),
            "fc" => r * (c + ff),
            "proj" => r * (ff + c),
            _ => 0,
        })
        .sum();
    per_block * model.config.n_layers
}

fn lora_param_count(store: &ParamStore<f32>, method: &dyn Method<f32>) -> usize {
    method
        .params()
        .iter()
        .map(|&id| store.value(id).len())
        .sum()
}

pub const TARGET_SETS: [&[&str]; 3] = [
    &["q", "v"],
    &["q", "k", "v", "o"],
    &["q", "k", "v", "o", "fc", "proj"],
];

pub fn targets(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Targets> {
    let (r, steps, val) = (8, mode.pick(4, 100), mode.pick(16, 300));
    let mut rows = Vec::new();
    for t in TARGET_SETS {
        let run = Run::new(
            Task::Sentiment,
            MethodSpec::Lora(lora(r, t)),
            3e-3,
            steps,
            8,
        )
        .seed(seed);
        let o = train_run(&run, &format!("LoRA on {}", t.join(",")), progress)?;
        rows.push(TargetRow {
            targets: t.join(","),
            lora_params: lora_param_count(&o.base.store, o.method.as_ref()),
            formula: lora_formula(&o.base.model, r, t),
            val_accuracy: o.evaluate(Split::Validation, val)?["accuracy"],
        });
    }
    Ok(Targets { r, steps, rows })
}

impl Evidence for Targets {
    fn render(&self) -> String {
        let mut s = format!(
            "LoRA r={} (alpha 2r) on sentiment, {} steps of batch 8 at lr 3e-3\n\n",
            self.r, self.steps
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.targets.clone(),
                    r.lora_params.to_string(),
                    r.formula.to_string(),
                    num(r.val_accuracy, 3),
                ]
            })
            .collect();
        s.push_str(&table(
            &["targets", "LoRA params", "r·(d_in+d_out)", "val acc"],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let first = &self.rows[0];
        let last = &self.rows[self.rows.len() - 1];
        vec![
            Claim::new(
                "each target set adds exactly r·(d_in + d_out) per adapted matrix",
                self.rows.iter().all(|r| r.lora_params == r.formula),
            ),
            Claim::new(
                "every linear layer costs more parameters than q,v",
                last.lora_params > first.lora_params,
            )
            .measured(
                "all linear / q,v parameters",
                last.lora_params as f64 / first.lora_params as f64,
                Fmt::Times(1),
            ),
            // Strictly higher: a tie on a few dozen validation examples decides nothing.
            Claim::new(
                "targeting every linear layer scores higher than q,v",
                last.val_accuracy > first.val_accuracy,
            )
            .measured(
                "all linear − q,v val accuracy",
                last.val_accuracy - first.val_accuracy,
                Fmt::Signed(3),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 9. How many parameters LoRA adds

#[derive(Debug, Clone, Serialize)]
pub struct CountRow {
    pub model: String,
    pub config: String,
    /// Counted in the parameter store (gpt-tiny) or by the estimator (named sizes).
    pub counted: u64,
    pub formula: u64,
    pub base_params: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParamCount {
    pub rows: Vec<CountRow>,
}

pub fn param_count() -> Result<ParamCount> {
    let base: Base = load_base(BASE)?;
    let total = base.store.num_params() as u64;
    let mut rows = Vec::new();
    for (t, label) in [(&["q", "v"][..], "q,v"), (TARGET_SETS[2], "all linear")] {
        for r in [4, 8, 16] {
            let mut store = base.store.clone();
            let m = Lora::apply(&base.model, &mut store, lora(r, t), 0)?;
            rows.push(CountRow {
                model: "gpt-tiny".into(),
                config: format!("r={r} {label}"),
                counted: lora_param_count(&store, &m) as u64,
                formula: lora_formula(&base.model, r, t) as u64,
                base_params: total,
            });
        }
    }
    let shape = estimate::named_shape("7B").expect("7B is a named size");
    let p = shape.params().total;
    let c = shape.hidden as u64;
    for (cfg, label) in [
        (estimate::LoraConfig::qv(8), "r=8 q,v"),
        (estimate::LoraConfig::qv(64), "r=64 q,v"),
    ] {
        rows.push(CountRow {
            model: "LLaMA-7B (shape)".into(),
            config: label.into(),
            counted: estimate::lora_params(&shape, &cfg)?,
            // q and v are C × C in LLaMA-7B: 2 matrices · r · 2C per layer.
            formula: shape.layers as u64 * 2 * cfg.r as u64 * 2 * c,
            base_params: p,
        });
    }
    Ok(ParamCount { rows })
}

impl ParamCount {
    pub fn pct(r: &CountRow) -> f64 {
        100.0 * r.counted as f64 / r.base_params as f64
    }
}

impl Evidence for ParamCount {
    fn render(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.config.clone(),
                    r.counted.to_string(),
                    r.formula.to_string(),
                    r.base_params.to_string(),
                    format!("{:.3}%", ParamCount::pct(r)),
                ]
            })
            .collect();
        let mut s = String::from("LoRA's added parameters: counted in gpt-tiny's parameter store after applying it, and for LLaMA-7B's shape by the estimator\n\n");
        s.push_str(&table(
            &[
                "model",
                "LoRA",
                "added",
                "r·(d_in+d_out)",
                "base params",
                "% of base",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let tiny = self
            .rows
            .iter()
            .find(|r| r.model == "gpt-tiny" && r.config == "r=8 q,v");
        let big = self
            .rows
            .iter()
            .find(|r| r.model.starts_with("LLaMA") && r.config == "r=8 q,v");
        vec![
            Claim::new(
                "the count matches r·(d_in + d_out) per adapted matrix everywhere",
                self.rows.iter().all(|r| r.counted == r.formula),
            ),
            Claim::new(
                format!(
                    "r=8 on q,v adds under 5% to gpt-tiny ({:.2}%)",
                    tiny.map_or(f64::NAN, ParamCount::pct)
                ),
                tiny.is_some_and(|r| ParamCount::pct(r) < 5.0),
            ),
            Claim::new(
                format!(
                    "... and under 0.1% to a 7B model ({:.3}%)",
                    big.map_or(f64::NAN, ParamCount::pct)
                ),
                big.is_some_and(|r| ParamCount::pct(r) < 0.1),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 10. Merging and its precision

#[derive(Debug, Clone, Serialize)]
pub struct Merging {
    pub steps: usize,
    /// Largest logit of the batch, for scale.
    pub max_logit: f64,
    /// Merged versus unmerged, f32 and f64.
    pub diff_f32: f64,
    pub diff_f64: f64,
    /// Largest weight difference after merge then unmerge, f32.
    pub roundtrip_f32: f64,
    /// ‖s·B·A‖_F, and the relative error of the update after merging into bf16 weights.
    pub update_norm: f64,
    pub bf16_update_error: f64,
    /// Share of the nonzero update entries that bf16 rounding erased completely.
    pub bf16_erased: f64,
}

/// Rounds to the nearest bfloat16 (8 bits of mantissa), ties to even.
pub fn bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) & 0xFFFF_0000;
    f32::from_bits(rounded)
}

pub fn merging(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Merging> {
    let steps = mode.pick(6, 60);
    let mut base = load_base(BASE)?;
    let batch = heldout_batches(&base)?.swap_remove(0);
    let (data, world) = task_data(Task::Sentiment, None, Some(256))?;
    let tm = base.task_model(Task::Sentiment, world, data, seed)?;
    base.store.set_all_trainable(false);
    let mut lora = Lora::apply(&base.model, &mut base.store, LoraConfig::default(), seed)?;
    for id in tm.head.params() {
        base.store.set_trainable(id, true);
    }
    progress.line(&format!("training LoRA r=8 q,v for {steps} steps"));
    let dir = temp_dir("merge");
    let args = TrainingArgs {
        output_dir: dir.clone(),
        max_steps: Some(steps),
        batch_size: 8,
        learning_rate: 3e-3,
        seed,
        eval_strategy: crate::train::args::Strategy::No,
        ..TrainingArgs::default()
    };
    trainer::train(Training::new(&args, &tm, &mut base.store).hooks(&lora))?;
    let _ = std::fs::remove_dir_all(dir);

    let weights: Vec<crate::ParamId> = lora.targets.values().map(|t| t.linear.weight).collect();
    let w0: Vec<ArrayD<f32>> = weights
        .iter()
        .map(|&id| base.store.value(id).clone())
        .collect();
    let mut store64 = base.store.cast::<f64>();

    // f32: unmerged, merged, unmerged again.
    let unmerged = logits(&base.model, &base.store, &lora, &batch)?;
    lora.merge(&mut base.store)?;
    let merged = logits(&base.model, &base.store, &lora, &batch)?;
    lora.unmerge(&mut base.store)?;
    let roundtrip_f32 = weights
        .iter()
        .zip(&w0)
        .map(|(&id, w)| max_abs_diff(base.store.value(id), w))
        .fold(0.0, f64::max);

    // f64: the same, and the exact update s·B·A.
    let u64_ = logits(&base.model, &store64, &lora, &batch)?;
    let w0_64: Vec<ArrayD<f64>> = weights
        .iter()
        .map(|&id| store64.value(id).clone())
        .collect();
    lora.merge(&mut store64)?;
    let m64 = logits(&base.model, &store64, &lora, &batch)?;
    let (mut upd_sq, mut err_sq, mut nonzero, mut erased) = (0.0, 0.0, 0usize, 0usize);
    for (k, &id) in weights.iter().enumerate() {
        for ((&w_merged, &w_orig), &w_f32) in store64.value(id).iter().zip(&w0_64[k]).zip(&w0[k]) {
            let delta = w_merged - w_orig;
            let effective = bf16((w_f32 as f64 + delta) as f32) as f64 - bf16(w_f32) as f64;
            upd_sq += delta * delta;
            err_sq += (effective - delta).powi(2);
            if delta != 0.0 {
                nonzero += 1;
                if effective == 0.0 {
                    erased += 1;
                }
            }
        }
    }
    Ok(Merging {
        steps,
        max_logit: unmerged
            .iter()
            .fold(0.0f64, |m, &x| m.max((x as f64).abs())),
        diff_f32: max_abs_diff(&merged, &unmerged),
        diff_f64: max_abs_diff(&m64, &u64_),
        roundtrip_f32,
        update_norm: upd_sq.sqrt(),
        bf16_update_error: (err_sq / upd_sq).sqrt(),
        bf16_erased: erased as f64 / nonzero.max(1) as f64,
    })
}

impl Evidence for Merging {
    fn render(&self) -> String {
        let mut s = format!(
            "LoRA r=8 q,v trained {} steps on sentiment, then merged into gpt-tiny's weights; one batch of held-out text (largest |logit| {})\n\n",
            self.steps,
            num(self.max_logit, 2)
        );
        s.push_str(&table(
            &["check", "value"],
            &[
                vec![
                    "max |logit merged - unmerged|, f32".into(),
                    format!("{:.2e}", self.diff_f32),
                ],
                vec![
                    "max |logit merged - unmerged|, f64".into(),
                    format!("{:.2e}", self.diff_f64),
                ],
                vec![
                    "max |W after merge+unmerge - W|, f32".into(),
                    format!("{:.2e}", self.roundtrip_f32),
                ],
                vec![
                    "‖s·B·A‖ over the adapted matrices".into(),
                    format!("{:.3e}", self.update_norm),
                ],
                vec![
                    "relative error of the update merged into bf16 weights".into(),
                    format!("{:.1}%", 100.0 * self.bf16_update_error),
                ],
                vec![
                    "update entries bf16 rounding erased entirely".into(),
                    format!("{:.1}%", 100.0 * self.bf16_erased),
                ],
            ],
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        vec![
            Claim::new(
                "merged equals unmerged up to f32 rounding",
                self.diff_f32 < 1e-3,
            )
            .measured(
                "max |logit merged − unmerged|, f32",
                self.diff_f32,
                Fmt::Sci(1),
            ),
            Claim::new(
                "in f64 the difference is far smaller still",
                self.diff_f64 < 1e-9 && self.diff_f64 < self.diff_f32,
            )
            .measured(
                "max |logit merged − unmerged|, f64",
                self.diff_f64,
                Fmt::Sci(1),
            ),
            Claim::new(
                "unmerging restores W up to f32 rounding",
                self.roundtrip_f32 < 1e-5,
            )
            .measured(
                "max |W after merge+unmerge − W|",
                self.roundtrip_f32,
                Fmt::Sci(1),
            ),
            Claim::new(
                "merging into bf16 weights loses a visible part of the update (over 1%)",
                self.bf16_update_error > 0.01,
            )
            .measured(
                "relative error of the update merged into bf16",
                self.bf16_update_error,
                Fmt::Percent(1),
            ),
        ]
    }
}

/// Questions 6–10 in Vietnamese (`tunelab interview N --lang vi`): (number, question, answer).
pub const VI: &[(usize, &str, &str)] = &[
    (6, "Tại sao LoRA khởi tạo B bằng 0 (và A ngẫu nhiên)?",
     "Để cập nhật B·A bằng 0 lúc bắt đầu: ở step 0 mô hình đã gắn adapter đúng bằng mô hình pre-trained, và training bắt đầu từ hành vi của nó thay vì từ một nhiễu ngẫu nhiên của nó. A phải ngẫu nhiên, không được bằng 0: gradient của B tỉ lệ với A, nên nếu cả hai bằng 0 thì không cái nào di chuyển được."),
    (7, "Alpha và rank r của LoRA làm gì, và rsLoRA thay đổi điều gì?",
     "Cập nhật được nhân với hệ số s = alpha / r. Với Adam, mỗi step di chuyển mỗi phần tử của B khoảng bằng learning rate, nên cập nhật B·A tăng như sqrt(r) và s·B·A như alpha / sqrt(r): tăng r làm cập nhật hiệu dụng nhỏ lại và làm việc học chậm đi. rsLoRA nhân với alpha / sqrt(r), nên độ lớn của cập nhật không còn phụ thuộc vào r và một rank lớn hơn thật sự có thể giúp ích."),
    (8, "LoRA nên áp dụng vào những module nào?",
     "Bài báo gốc chỉ adapt các projection query và value của attention; các công trình sau (trong đó có QLoRA) thấy rằng adapt mọi linear layer, kể cả MLP, gần với full fine-tuning hơn, đổi lại nhiều parameters hơn. Cái nào thắng tùy vào task và ngân sách: hãy đo. Ở đây, với ngân sách này trên task sentiment, áp dụng vào mọi linear layer không cho điểm chắc chắn cao hơn q,v: các seed cho kết quả khác nhau."),
    (9, "LoRA thêm bao nhiêu parameters vào một mô hình cho trước?",
     "r·(d_in + d_out) cho mỗi ma trận d_in×d_out được adapt: A có kích thước r×d_in và B là d_out×r. Với r=8 trên q và v của một mô hình có hidden size C và L layers, tổng là 2·L·8·2C = 32·L·C, chỉ một phần nhỏ của một phần trăm của một mô hình lớn."),
    (10, "Merge một LoRA adapter là gì, và điều gì xảy ra với độ chính xác số?",
     "Merge cộng s·B·A vào weight frozen W, nên khi serve chi phí đúng bằng một mô hình thường; unmerge trừ nó ra lại. Ở f32 mô hình đã merge khớp với mô hình chưa merge đến sai số làm tròn. Merge vào một base độ chính xác thấp (bf16, hoặc một base 4-bit đã dequantize) làm tròn W + s·B·A về độ chính xác đó, và một cập nhật nhỏ có thể bị làm tròn mất phần lớn."),
];
