//! Systems and evaluation questions: gradient checkpointing (36), mixed precision and loss
//! scaling (37), ZeRO and FSDP (38), seeds and intervals (39), and choosing LoRA's learning
//! rate and the head's (40).
//!
//! 36 runs a small decoder in f64 at several depths with and without checkpointing on the tape
//! (a counting [`Recompute`] says how many blocks ran again and how many bytes one held), then
//! the Trainer on gpt-tiny with `gradient_checkpointing`. 37 takes the gradients of one real
//! fine-tuning step of gpt-tiny and puts them through f16 (at several loss scales) and bf16
//! ([`crate::kernels::quant::f32_to_f16`]), then adds one AdamW step to the weights held in
//! bf16 and f16 instead of f32. 38 is `tunelab estimate`'s ZeRO arithmetic. 39 trains LoRA and
//! full fine-tuning on the same seeds and compares them with [`crate::lab::stats`]'s intervals,
//! paired and unpaired. 40 sweeps both learning rates on validation ([`crate::lab::sweep`]) and
//! trains a fresh head at its own rate (`head_learning_rate`).

use crate::autodiff::{Recompute, Segment};
use crate::data::tasks::Task;
use crate::error::Result;
use crate::kernels::quant::{round_bf16, round_f16, F16_MIN_POSITIVE};
use crate::lab::estimate::{self, EstimateArgs, Method as EstMethod, Zero, GB};
use crate::lab::evidence::{num, seed_list, table, Claim, Evidence, Fmt, Mode};
use crate::lab::lanes::{lanes, side_by_side};
use crate::lab::runs::{prepare_run, temp_dir, train_run, Run, BASE};
use crate::lab::stats::{self, IntervalKind, Paired};
use crate::lab::sweep::{self, Point, SweepOptions, SweepReport};
use crate::nn::{BlockRecompute, Config, Hooks, Input, NoHooks, Transformer};
use crate::optim::Optimizer;
use crate::peft::lora::compare_config;
use crate::peft::MethodSpec;
use crate::train::args::ScheduleKind;
use crate::train::progress::Progress;
use crate::train::task::Item;
use crate::train::trainer::{self, Split};
use crate::{Grads, ParamStore, Tape, Var};
use ndarray::Array2;
use serde::Serialize;
use std::cell::Cell;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// 36. Gradient checkpointing

/// Backward's recomputation of the blocks, counted: how many blocks ran again, the ops they
/// recorded, and the most bytes one block's recomputed tape held.
struct Counting<'a> {
    inner: BlockRecompute<'a, f64>,
    blocks: Cell<usize>,
    ops: Cell<usize>,
    peak: Cell<usize>,
}

impl Recompute<f64> for Counting<'_> {
    fn recompute(&self, tape: &mut Tape<'_, f64>, segment: &Segment, x: Var) -> Result<Var> {
        let before = tape.len();
        let y = self.inner.recompute(tape, segment, x)?;
        self.blocks.set(self.blocks.get() + 1);
        self.ops.set(self.ops.get() + tape.len() - before);
        self.peak.set(self.peak.get().max(tape.activation_bytes()));
        Ok(y)
    }
}

/// One depth of the small decoder, with and without checkpointing.
#[derive(Debug, Clone, Serialize)]
pub struct DepthRow {
    pub layers: usize,
    /// Bytes the tape held for backward after the forward, without and with checkpointing.
    pub held_plain: usize,
    pub held_ckpt: usize,
    /// The most one recomputed block's tape held during backward: the checkpointed peak is
    /// about `held_ckpt + block_peak`.
    pub block_peak: usize,
    /// Ops recorded by the forward, and by the blocks run again in backward.
    pub forward_ops: usize,
    pub recompute_ops: usize,
    pub recomputed_blocks: usize,
    /// Largest |gradient difference| with and without checkpointing, and whether the losses
    /// were bit-identical.
    pub max_grad_diff: f64,
    pub same_loss: bool,
}

/// The Trainer on gpt-tiny with and without `gradient_checkpointing`.
#[derive(Debug, Clone, Serialize)]
pub struct TrainerRow {
    pub checkpointing: bool,
    /// Activation bytes of the memory ledger's peak step.
    pub activations: usize,
    pub median_step_seconds: f64,
    pub losses: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checkpointing {
    pub d_model: usize,
    pub batch: usize,
    pub seq: usize,
    pub rows: Vec<DepthRow>,
    pub steps: usize,
    pub trainer: Vec<TrainerRow>,
    /// `tunelab estimate` for 7B, full fine-tuning in mixed precision, B = 1, T = 512:
    /// activations without and with checkpointing (bytes) and FLOPs per token.
    pub est_act: f64,
    pub est_act_ckpt: f64,
    pub est_flops: f64,
    pub est_flops_ckpt: f64,
}

/// What one step of [`ckpt_step`] measured.
struct StepOut {
    loss: f64,
    grads: Grads<f64>,
    /// Bytes held after the forward, and the ops it recorded.
    held: usize,
    ops: usize,
    /// Blocks recomputed in backward, the ops they recorded, and the most one held.
    blocks: usize,
    recompute_ops: usize,
    block_peak: usize,
}

/// One forward and backward of `model` on a fixed batch, with dropout.
fn ckpt_step(
    model: &Transformer,
    store: &ParamStore<f64>,
    checkpointing: bool,
    batch: usize,
    seq: usize,
) -> Result<StepOut> {
    let vocab = model.config.vocab_size;
    let ids = Array2::from_shape_fn((batch, seq), |(i, j)| (7 * i + 3 * j + 1) % vocab);
    let targets: Vec<i64> = (0..batch * seq)
        .map(|k| ((k * 5 + 3) % vocab) as i64)
        .collect();
    let mut tape = Tape::new(store);
    tape.seed(9);
    tape.set_checkpointing(checkpointing);
    let h = model.forward(&mut tape, &NoHooks, &Input::new(ids.view()))?;
    let logits = model.lm_logits(&mut tape, &NoHooks, h)?;
    let loss = tape.cross_entropy(logits, &targets, -100)?;
    tape.release_unsaved(0, &[loss]);
    let (held, ops) = (tape.activation_bytes(), tape.len());
    let mut grads = Grads::new(store);
    let counting = Counting {
        inner: BlockRecompute {
            model,
            hooks: &NoHooks as &dyn Hooks<f64>,
        },
        blocks: Cell::new(0),
        ops: Cell::new(0),
        peak: Cell::new(0),
    };
    tape.backward_recomputing(loss, &mut grads, &counting)?;
    Ok(StepOut {
        loss: tape.scalar(loss)?,
        grads,
        held,
        ops,
        blocks: counting.blocks.get(),
        recompute_ops: counting.ops.get(),
        block_peak: counting.peak.get(),
    })
}

pub fn checkpointing(mode: Mode, progress: &mut dyn Progress) -> Result<Checkpointing> {
    let (d_model, heads, batch, seq) = (64, 4, 4, 32);
    let depths: Vec<usize> = mode.pick(vec![1, 2, 4], vec![2, 4, 8, 16]);
    let mut rows = Vec::new();
    for &layers in &depths {
        progress.line(&format!(
            "a {layers}-layer decoder (d {d_model}, batch {batch} x {seq} tokens, f64): one step with and without checkpointing"
        ));
        let mut config = Config::gpt(64, d_model, heads, layers, seq);
        config.dropout = 0.1;
        let mut store = ParamStore::<f64>::new();
        let model = Transformer::new(config, &mut store, 5)?;
        let plain = ckpt_step(&model, &store, false, batch, seq)?;
        let ckpt = ckpt_step(&model, &store, true, batch, seq)?;
        let mut max_grad_diff = 0.0f64;
        for id in store.ids() {
            match (plain.grads.get(id), ckpt.grads.get(id)) {
                (Some(a), Some(b)) => {
                    for (x, y) in a.iter().zip(b) {
                        max_grad_diff = max_grad_diff.max((x - y).abs());
                    }
                }
                (None, None) => {}
                _ => max_grad_diff = f64::INFINITY,
            }
        }
        rows.push(DepthRow {
            layers,
            held_plain: plain.held,
            held_ckpt: ckpt.held,
            block_peak: ckpt.block_peak,
            forward_ops: plain.ops,
            recompute_ops: ckpt.recompute_ops,
            recomputed_blocks: ckpt.blocks,
            max_grad_diff,
            same_loss: plain.loss.to_bits() == ckpt.loss.to_bits(),
        });
    }

    // The Trainer's option on the shipped model.
    let steps = mode.pick(2, 10);
    let mut trainer_rows = Vec::new();
    for on in [false, true] {
        let mut run = Run::new(
            Task::Sentiment,
            MethodSpec::Full { last_k: None },
            1e-3,
            steps,
            8,
        );
        run.args.gradient_checkpointing = on;
        let label = if on {
            "full fine-tuning with gradient_checkpointing"
        } else {
            "full fine-tuning"
        };
        let o = train_run(&run, label, progress)?;
        let report = o.report.as_ref();
        trainer_rows.push(TrainerRow {
            checkpointing: on,
            activations: report.map_or(0, |r| r.memory.activations),
            median_step_seconds: report.map_or(f64::NAN, |r| r.median_step_seconds),
            losses: o.record.losses.clone(),
        });
    }
    let est = estimate::estimate(&EstimateArgs::new("7B"))?;
    let full = est
        .row(EstMethod::FullMixed)
        .expect("estimate has a mixed-precision row");
    Ok(Checkpointing {
        d_model,
        batch,
        seq,
        rows,
        steps,
        trainer: trainer_rows,
        est_act: full.activations_bytes,
        est_act_ckpt: full.activations_ckpt_bytes,
        est_flops: full.flops_per_token,
        est_flops_ckpt: full.flops_per_token_ckpt,
    })
}

impl Checkpointing {
    /// Bytes per layer held without and with checkpointing: the slope between the shallowest
    /// and the deepest model.
    pub fn per_layer(&self) -> (f64, f64) {
        let (a, b) = (&self.rows[0], &self.rows[self.rows.len() - 1]);
        let dl = (b.layers - a.layers).max(1) as f64;
        (
            (b.held_plain as f64 - a.held_plain as f64) / dl,
            (b.held_ckpt as f64 - a.held_ckpt as f64) / dl,
        )
    }
}

fn kib(bytes: f64) -> String {
    format!("{:.1}", bytes / 1024.0)
}

impl Evidence for Checkpointing {
    fn render(&self) -> String {
        let mut s = format!(
            "a GPT decoder, d {}, batch {} x {} tokens, dropout 0.1, f64, every weight trained; one step each way\n\n",
            self.d_model, self.batch, self.seq
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.layers.to_string(),
                    kib(r.held_plain as f64),
                    kib(r.held_ckpt as f64),
                    kib(r.block_peak as f64),
                    kib((r.held_ckpt + r.block_peak) as f64),
                    r.recomputed_blocks.to_string(),
                    format!("{} + {}", r.forward_ops, r.recompute_ops),
                    format!("{:.0e}", r.max_grad_diff),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "layers",
                "held, plain (KiB)",
                "held, ckpt",
                "one block again",
                "ckpt peak",
                "blocks rerun",
                "ops: forward + rerun",
                "max |grad diff|",
            ],
            &rows,
        ));
        let (plain, ckpt) = self.per_layer();
        s.push_str(&format!(
            "each layer adds {} KiB held without checkpointing, {} KiB with (its input only)\n",
            kib(plain),
            kib(ckpt)
        ));
        s.push_str(&format!(
            "\nthe Trainer on gpt-tiny, full fine-tuning on sentiment, {} steps of batch 8 (step times under whatever load the machine has)\n\n",
            self.steps
        ));
        let rows: Vec<Vec<String>> = self
            .trainer
            .iter()
            .map(|r| {
                vec![
                    if r.checkpointing { "on" } else { "off" }.into(),
                    kib(r.activations as f64),
                    format!("{:.3}", r.median_step_seconds),
                    r.losses.last().map_or("-".into(), |l| format!("{l:.6}")),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "gradient_checkpointing",
                "activations at the peak step (KiB)",
                "median step (s)",
                "last loss",
            ],
            &rows,
        ));
        s.push_str(&format!(
            "\nthe arithmetic (tunelab estimate, 7B, full fine-tuning, B = 1, T = 512): activations {:.2} GB -> {:.2} GB with checkpointing; \
             FLOPs per token {:.1} -> {:.1} GFLOP ({:+.0}%): forward 2N, backward 4N, one more forward 2N\n",
            self.est_act / GB,
            self.est_act_ckpt / GB,
            self.est_flops / 1e9,
            self.est_flops_ckpt / 1e9,
            100.0 * (self.est_flops_ckpt / self.est_flops - 1.0)
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let worst = self
            .rows
            .iter()
            .map(|r| r.max_grad_diff)
            .fold(0.0, f64::max);
        let (plain, ckpt) = self.per_layer();
        let deepest = &self.rows[self.rows.len() - 1];
        let (off, on) = (&self.trainer[0], &self.trainer[1]);
        let loss_diff = off
            .losses
            .iter()
            .zip(&on.losses)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        vec![
            Claim::new(
                "checkpointing gives the same loss and bit-identical gradients",
                worst == 0.0 && self.rows.iter().all(|r| r.same_loss),
            )
            .measured("largest |gradient difference|", worst, Fmt::Sci(1)),
            Claim::new(
                "without checkpointing every layer adds its activations; with it, only its input",
                ckpt < 0.25 * plain,
            )
            .measured(
                "bytes per layer, checkpointed / plain",
                ckpt / plain,
                Fmt::Percent(1),
            ),
            Claim::new(
                "the checkpointed peak (inputs kept + one block recomputed) is below the plain one",
                deepest.held_ckpt + deepest.block_peak < deepest.held_plain,
            )
            .measured(
                "deepest model's checkpointed peak / plain held",
                (deepest.held_ckpt + deepest.block_peak) as f64 / deepest.held_plain as f64,
                Fmt::Percent(0),
            ),
            Claim::new(
                "backward runs every block's forward once more (one more forward of the blocks)",
                self.rows.iter().all(|r| r.recomputed_blocks == r.layers),
            )
            .measured(
                "deepest model's ops rerun / forward ops",
                deepest.recompute_ops as f64 / deepest.forward_ops as f64,
                Fmt::Percent(0),
            ),
            Claim::new(
                "with the Trainer on gpt-tiny, gradient_checkpointing holds fewer activation bytes and trains the same",
                on.activations < off.activations && loss_diff < 1e-4,
            )
            .measured(
                "activations, on / off",
                on.activations as f64 / off.activations.max(1) as f64,
                Fmt::Percent(0),
            ),
            Claim::new(
                "a checkpointed step takes longer",
                on.median_step_seconds > off.median_step_seconds,
            )
            .measured(
                "median step time, on / off (under load)",
                on.median_step_seconds / off.median_step_seconds,
                Fmt::Times(2),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 37. Mixed precision and loss scaling

/// f16 at one loss scale: shares of the nonzero f32 gradient entries.
#[derive(Debug, Clone, Serialize)]
pub struct ScaleRow {
    pub label: String,
    pub scale: f64,
    /// Became 0 (underflow), became an f16 subnormal (fewer than 11 bits kept), became ±inf.
    pub zero: f64,
    pub subnormal: f64,
    pub overflow: f64,
}

/// One AdamW step added to weights held in a low precision instead of f32.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateRow {
    pub lr: f64,
    /// Weights the f32 step changed.
    pub changed: usize,
    /// Shares of those whose change vanished when the weight was held in bf16 or f16.
    pub lost_bf16: f64,
    pub lost_f16: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MixedPrecision {
    pub batch: usize,
    pub params: usize,
    pub nonzero: usize,
    /// |g| of the nonzero entries: smallest, median, largest.
    pub min_abs: f64,
    pub median_abs: f64,
    pub max_abs: f64,
    pub rows: Vec<ScaleRow>,
    /// Doublings of the dynamic scaler from 1 before the first overflow.
    pub doublings: usize,
    pub bf16_zero: f64,
    pub bf16_subnormal: f64,
    /// Largest relative error of a value that stays normal: f16 and bf16.
    pub f16_max_rel: f64,
    pub bf16_max_rel: f64,
    pub weight_median_abs: f64,
    pub updates: Vec<UpdateRow>,
}

fn f16_row(label: &str, g: &[f32], scale: f64) -> ScaleRow {
    let (mut zero, mut sub, mut over) = (0usize, 0usize, 0usize);
    for &x in g {
        let h = round_f16((x as f64 * scale) as f32);
        if h == 0.0 {
            zero += 1;
        } else if h.is_infinite() {
            over += 1;
        } else if h.abs() < F16_MIN_POSITIVE {
            sub += 1;
        }
    }
    let n = g.len().max(1) as f64;
    ScaleRow {
        label: label.into(),
        scale,
        zero: zero as f64 / n,
        subnormal: sub as f64 / n,
        overflow: over as f64 / n,
    }
}

/// PyTorch's GradScaler in one go: double the scale from 1 while no scaled gradient overflows
/// f16, then back off once the first one does. The doublings, and the last safe scale.
fn dynamic_scale(g: &[f32]) -> (usize, f64) {
    let overflows = |s: f64| {
        g.iter()
            .any(|&x| round_f16((x as f64 * s) as f32).is_infinite())
    };
    let mut k = 0;
    while k < 126 && !overflows(2f64.powi(k as i32 + 1)) {
        k += 1;
    }
    (k, 2f64.powi(k as i32))
}

pub fn mixed_precision(mode: Mode) -> Result<MixedPrecision> {
    let batch = mode.pick(8, 32);
    let run = Run::new(
        Task::Sentiment,
        MethodSpec::Full { last_k: None },
        1e-4,
        1,
        batch,
    );
    let (base, tm, method) = prepare_run(&run)?;
    let items: Vec<&Item> = tm.train.iter().take(batch).collect();
    let mut grads = Grads::new(&base.store);
    {
        let mut tape = Tape::new(&base.store);
        tape.seed(run.args.seed);
        let (loss, _) = tm.batch_loss(&mut tape, method.as_ref(), &items)?;
        tape.backward(loss, &mut grads)?;
    }
    let ids: Vec<_> = base
        .store
        .ids()
        .filter(|&id| base.store.is_trainable(id))
        .collect();
    let mut all: Vec<f32> = Vec::new();
    for &id in &ids {
        if let Some(g) = grads.get(id) {
            all.extend(g.iter().copied());
        }
    }
    let params = all.len();
    let g: Vec<f32> = all.into_iter().filter(|&x| x != 0.0).collect();
    let mut mags: Vec<f64> = g.iter().map(|&x| (x as f64).abs()).collect();
    mags.sort_by(f64::total_cmp);
    let (doublings, dynamic) = dynamic_scale(&g);
    let mut rows = vec![
        f16_row("f16, no scaling", &g, 1.0),
        f16_row("f16, static 2^8", &g, 256.0),
        f16_row("f16, static 2^16 (GradScaler's first scale)", &g, 65536.0),
        f16_row("f16, static 2^24", &g, 2f64.powi(24)),
    ];
    rows.push(f16_row(
        &format!("f16, dynamic: 2^{doublings}"),
        &g,
        dynamic,
    ));
    let (mut bz, mut bs) = (0usize, 0usize);
    let (mut f16_rel, mut bf16_rel) = (0.0f64, 0.0f64);
    for &x in &g {
        let b = round_bf16(x);
        if b == 0.0 {
            bz += 1;
        } else if b.abs() < f32::MIN_POSITIVE {
            bs += 1;
        } else {
            bf16_rel = bf16_rel.max(((b - x) / x).abs() as f64);
        }
        let h = round_f16(x);
        if h.abs() >= F16_MIN_POSITIVE && h.is_finite() {
            f16_rel = f16_rel.max(((h - x) / x).abs() as f64);
        }
    }

    // One AdamW step from these gradients, applied to f32 weights; the same change added to
    // the weights held in bf16 or f16.
    let mut updates = Vec::new();
    let mut weights: Vec<f64> = Vec::new();
    for &id in &ids {
        weights.extend(base.store.value(id).iter().map(|&w| (w as f64).abs()));
    }
    weights.sort_by(f64::total_cmp);
    for lr in [1e-5, 1e-4, 1e-3] {
        let mut store = base.store.clone();
        let mut opt = trainer::adamw(&run.args, &store, &[])?;
        opt.step(&mut store, &grads, lr);
        let (mut changed, mut lost_b, mut lost_h) = (0usize, 0usize, 0usize);
        for &id in &ids {
            for (&w0, &w1) in base.store.value(id).iter().zip(store.value(id).iter()) {
                let u = w1 - w0;
                if u == 0.0 {
                    continue;
                }
                changed += 1;
                let wb = round_bf16(w0);
                lost_b += usize::from(round_bf16(wb + round_bf16(u)) == wb);
                let wh = round_f16(w0);
                lost_h += usize::from(round_f16(wh + round_f16(u)) == wh);
            }
        }
        let n = changed.max(1) as f64;
        updates.push(UpdateRow {
            lr,
            changed,
            lost_bf16: lost_b as f64 / n,
            lost_f16: lost_h as f64 / n,
        });
    }
    let n = g.len().max(1) as f64;
    Ok(MixedPrecision {
        batch,
        params,
        nonzero: g.len(),
        min_abs: mags.first().copied().unwrap_or(f64::NAN),
        median_abs: mags.get(mags.len() / 2).copied().unwrap_or(f64::NAN),
        max_abs: mags.last().copied().unwrap_or(f64::NAN),
        rows,
        doublings,
        bf16_zero: bz as f64 / n,
        bf16_subnormal: bs as f64 / n,
        f16_max_rel: f16_rel,
        bf16_max_rel: bf16_rel,
        weight_median_abs: weights.get(weights.len() / 2).copied().unwrap_or(f64::NAN),
        updates,
    })
}

impl MixedPrecision {
    pub fn row(&self, prefix: &str) -> Option<&ScaleRow> {
        self.rows.iter().find(|r| r.label.starts_with(prefix))
    }

    fn dynamic(&self) -> &ScaleRow {
        &self.rows[self.rows.len() - 1]
    }
}

fn pct(x: f64) -> String {
    Fmt::Percent(2).show(x)
}

impl Evidence for MixedPrecision {
    fn render(&self) -> String {
        let mut s = format!(
            "the gradients of one full fine-tuning step of gpt-tiny on sentiment (batch {}), computed in f32: {} entries, {} nonzero; \
             |g| from {:.1e} (median {:.1e}) to {:.1e}\n\
             f16 keeps normals from 2^-14 = 6.1e-5 to 65504, subnormals down to 2^-24 = 6.0e-8; bf16 keeps f32's range (normals from 1.2e-38)\n\n",
            self.batch, self.params, self.nonzero, self.min_abs, self.median_abs, self.max_abs
        );
        let mut rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    pct(r.zero),
                    pct(r.subnormal),
                    pct(r.overflow),
                ]
            })
            .collect();
        rows.push(vec![
            "bf16, no scaling".into(),
            pct(self.bf16_zero),
            pct(self.bf16_subnormal),
            pct(0.0),
        ]);
        s.push_str(&table(
            &[
                "gradient held in",
                "flushed to 0",
                "subnormal (precision lost)",
                "overflow to inf",
            ],
            &rows,
        ));
        s.push_str(&format!(
            "dynamic scaling: doubled from 1 while nothing overflowed, {} times; backed off at the first overflow\n\
             largest relative rounding error of a normal value: f16 {:.1e}, bf16 {:.1e}\n",
            self.doublings, self.f16_max_rel, self.bf16_max_rel
        ));
        s.push_str(&format!(
            "\none AdamW step from these gradients (its first: about lr per weight), added to the weights (median |w| {:.3}) held in\n\n",
            self.weight_median_abs
        ));
        let rows: Vec<Vec<String>> = self
            .updates
            .iter()
            .map(|u| {
                vec![
                    format!("{:e}", u.lr),
                    u.changed.to_string(),
                    pct(u.lost_f16),
                    pct(u.lost_bf16),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "lr",
                "weights changed in f32 (master weights)",
                "of those lost, f16 weights",
                "lost, bf16 weights",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let one = &self.rows[0];
        let dynamic = self.dynamic();
        let smallest = &self.updates[0];
        vec![
            Claim::new(
                "at loss scale 1, f16 flushes nonzero gradient entries to zero",
                one.zero > 0.0,
            )
            .measured("share flushed to 0 at scale 1", one.zero, Fmt::Percent(2)),
            Claim::new(
                "dynamic loss scaling flushes fewer to zero or subnormals than no scaling, and overflows none",
                dynamic.zero + dynamic.subnormal < one.zero + one.subnormal
                    && dynamic.overflow == 0.0,
            )
            .measured(
                "flushed or subnormal, dynamic scale",
                dynamic.zero + dynamic.subnormal,
                Fmt::Percent(2),
            ),
            Claim::new(
                "bf16 flushes no gradient entry to zero without any scaling",
                self.bf16_zero == 0.0,
            )
            .measured("share flushed to 0 in bf16", self.bf16_zero, Fmt::Percent(2)),
            Claim::new(
                "bf16 rounds about 8 times coarser than f16 (7 mantissa bits against 10)",
                self.bf16_max_rel > 4.0 * self.f16_max_rel,
            )
            .measured(
                "largest relative error, bf16 / f16",
                self.bf16_max_rel / self.f16_max_rel,
                Fmt::Times(1),
            ),
            Claim::new(
                "without f32 master weights, bf16 weights lose a step's small updates",
                self.updates.iter().all(|u| u.lost_bf16 > 0.0)
                    && smallest.lost_bf16 > smallest.lost_f16,
            )
            .measured(
                "updates lost in bf16 at the smallest lr",
                smallest.lost_bf16,
                Fmt::Percent(1),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 38. ZeRO and FSDP

/// One model size on one GPU count at one stage.
#[derive(Debug, Clone, Serialize)]
pub struct ZeroRow {
    pub size: String,
    pub params: f64,
    pub gpus: usize,
    pub stage: u8,
    /// Model states per GPU (bytes): full fine-tuning in mixed precision, and LoRA.
    pub full: f64,
    pub lora: f64,
    pub lora_label: String,
    /// Elements communicated per step per GPU.
    pub full_comm: f64,
    pub lora_comm: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ZeroMemory {
    /// Figure 1 of the ZeRO paper recomputed: Ψ = 7.5B, N = 64, stages 0 to 3 (GB per GPU).
    pub figure1: Vec<f64>,
    pub rows: Vec<ZeroRow>,
}

/// ZeRO's Figure 1 (Rajbhandari et al. 2020): GB per GPU for Ψ = 7.5B, K = 12, N = 64.
pub const ZERO_FIGURE1_GB: [f64; 4] = [120.0, 31.4, 16.6, 1.9];

pub fn zero_memory() -> Result<ZeroMemory> {
    let mut figure1 = Vec::new();
    for stage in 0..=3 {
        let z = Zero::new(64, stage)?;
        figure1.push(z.shard(estimate::full_states(7.5e9, true)).total() / GB);
    }
    let mut rows = Vec::new();
    for size in ["7B", "70B"] {
        for gpus in [8, 64] {
            for stage in 0..=3 {
                let mut args = EstimateArgs::new(size);
                args.zero = Some(Zero::new(gpus, stage)?);
                let r = estimate::estimate(&args)?;
                let zrows = r
                    .zero
                    .as_ref()
                    .map(|(_, rows)| rows.as_slice())
                    .unwrap_or(&[]);
                let find = |m: EstMethod| zrows.iter().find(|x| x.method == m);
                let (Some(full), Some(lora)) = (find(EstMethod::FullMixed), find(EstMethod::Lora))
                else {
                    continue;
                };
                rows.push(ZeroRow {
                    size: size.into(),
                    params: r.params.total as f64,
                    gpus,
                    stage,
                    full: full.states.total(),
                    lora: lora.states.total(),
                    lora_label: lora.label.clone(),
                    full_comm: full.comm_elements,
                    lora_comm: lora.comm_elements,
                });
            }
        }
    }
    Ok(ZeroMemory { figure1, rows })
}

impl ZeroMemory {
    pub fn row(&self, size: &str, gpus: usize, stage: u8) -> Option<&ZeroRow> {
        self.rows
            .iter()
            .find(|r| r.size == size && r.gpus == gpus && r.stage == stage)
    }
}

impl Evidence for ZeroMemory {
    fn render(&self) -> String {
        let mut s = String::from(
            "ZeRO's Figure 1 recomputed: mixed-precision Adam, 2Ψ + 2Ψ + 12Ψ bytes, Ψ = 7.5B, N = 64 GPUs\n\n",
        );
        let names = [
            "baseline (stage 0)",
            "P_os (1)",
            "P_os+g (2)",
            "P_os+g+p (3)",
        ];
        let rows: Vec<Vec<String>> = self
            .figure1
            .iter()
            .zip(ZERO_FIGURE1_GB)
            .zip(names)
            .map(|((ours, paper), name)| {
                vec![name.into(), format!("{ours:.2}"), format!("{paper:.1}")]
            })
            .collect();
        s.push_str(&table(&["stage", "GB per GPU", "the paper's"], &rows));
        let lora_label = self.rows.first().map_or("", |r| r.lora_label.as_str());
        s.push_str(&format!(
            "\nmodel states per GPU (GB; tunelab estimate --gpus N --zero-stage S); {lora_label}: frozen base in 16 bits, Adam only for the adapters;\n\
             comm = elements each GPU sends and receives per step (stage 3: the parameters gathered for the forward and again for the backward)\n\n"
        ));
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.size.clone(),
                    r.gpus.to_string(),
                    r.stage.to_string(),
                    format!("{:.1}", r.full / GB),
                    estimate::fmt_count(r.full_comm),
                    format!("{:.1}", r.lora / GB),
                    estimate::fmt_count(r.lora_comm),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "model",
                "GPUs",
                "stage",
                "full FT states",
                "full comm",
                "LoRA states",
                "LoRA comm",
            ],
            &rows,
        ));
        s.push_str("activations are not partitioned: each GPU still holds its own micro-batch's (tunelab estimate prints them)\n");
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let worst = self
            .figure1
            .iter()
            .zip(ZERO_FIGURE1_GB)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let mut claims = vec![Claim::new(
            "the accounting reproduces ZeRO's Figure 1 to its printed precision",
            worst < 0.05,
        )
        .measured(
            "largest difference from the paper (GB)",
            worst,
            Fmt::Fixed(3),
        )];
        if let (Some(dp), Some(z3)) = (self.row("70B", 64, 0), self.row("70B", 64, 3)) {
            claims.push(
                Claim::new(
                    "70B full fine-tuning's model states fit an 80 GB GPU only with stage 3",
                    dp.full > 80.0 * GB && z3.full < 80.0 * GB,
                )
                .measured(
                    "70B, 64 GPUs, stage 3 (GB per GPU)",
                    z3.full / GB,
                    Fmt::Fixed(1),
                ),
            );
            claims.push(
                Claim::new(
                    "stage 3 communicates 1.5 times what data parallelism does",
                    (z3.full_comm / dp.full_comm - 1.5).abs() < 1e-9,
                )
                .measured(
                    "stage 3 / stage 0 elements per step",
                    z3.full_comm / dp.full_comm,
                    Fmt::Times(2),
                ),
            );
        }
        if let (Some(l0), Some(l2), Some(l3)) = (
            self.row("7B", 8, 0),
            self.row("7B", 8, 2),
            self.row("7B", 8, 3),
        ) {
            claims.push(
                Claim::new(
                    "for LoRA, stages 1 and 2 save almost nothing (its optimizer state and gradients are tiny); only stage 3, sharding the frozen base, does",
                    l2.lora > 0.99 * l0.lora && l3.lora < 0.5 * l0.lora,
                )
                .measured("7B LoRA on 8 GPUs, stage 2 / stage 0", l2.lora / l0.lora, Fmt::Percent(1)),
            );
            claims.push(
                Claim::new(
                    "LoRA unsharded needs less per GPU than full fine-tuning at ZeRO-2 on 8 GPUs",
                    l0.lora < l2.full,
                )
                .measured(
                    "7B: LoRA stage 0 / full stage 2",
                    l0.lora / l2.full,
                    Fmt::Percent(0),
                ),
            );
        }
        claims
    }
}

// ---------------------------------------------------------------------------------------------
// 39. Seeds and intervals

#[derive(Debug, Clone, Serialize)]
pub struct SeedsEval {
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub batch: usize,
    pub test_examples: usize,
    pub lora_lr: f64,
    pub full_lr: f64,
    /// Test accuracy per seed, in seed order.
    pub lora: Vec<f64>,
    pub full: Vec<f64>,
}

impl SeedsEval {
    /// LoRA's mean accuracy over seeds with its t-interval.
    pub fn lora_interval(&self) -> stats::Estimate {
        stats::t_interval(&self.lora, IntervalKind::TOverSeeds)
    }

    /// The test set's binomial standard error at LoRA's mean accuracy.
    pub fn binomial_se(&self) -> f64 {
        stats::binomial_se(stats::mean(&self.lora), self.test_examples)
    }

    /// LoRA − full, paired by seed, and unpaired (Welch).
    pub fn paired(&self) -> Paired {
        stats::paired_t("full", &self.lora, &self.full)
    }

    pub fn unpaired(&self) -> Paired {
        stats::unpaired_t("full", &self.lora, &self.full)
    }

    /// Seeds a paired comparison would need to separate the measured gap (at most 1000).
    pub fn seeds_needed(&self) -> Option<usize> {
        let p = self.paired();
        stats::seeds_to_separate(p.difference.mean, stats::sample_sd(&p.differences), 1000)
    }
}

fn one_run(
    spec: MethodSpec,
    lr: f64,
    seed: u64,
    steps: usize,
    batch: usize,
    test: usize,
) -> Result<(f64, usize)> {
    let mut run = Run::new(Task::Sentiment, spec, lr, steps, batch).seed(seed);
    run.args.schedule = ScheduleKind::Linear;
    run.args.warmup_steps = steps / 10;
    let o = train_run(&run, "", &mut ())?;
    let n = if test == 0 {
        o.tm.test.len()
    } else {
        test.min(o.tm.test.len())
    };
    Ok((o.evaluate(Split::Test, n)?["accuracy"], n))
}

pub fn seeds(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<SeedsEval> {
    let (steps, batch, test) = (mode.pick(8, 50), 16, mode.pick(64, 0));
    let (lora_lr, full_lr) = (9e-3, 1.5e-3);
    let seeds = seed_list(seeds.max(1));
    progress.line(&format!(
        "training LoRA r=8 q,v (lr {lora_lr:e}) and full fine-tuning (lr {full_lr:e}) on sentiment, {steps} steps of batch {batch}, seeds {seeds:?}"
    ));
    let jobs: Vec<(bool, u64)> = [true, false]
        .iter()
        .flat_map(|&l| seeds.iter().map(move |&s| (l, s)))
        .collect();
    let runs = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (is_lora, s) = jobs[k];
        if is_lora {
            one_run(
                MethodSpec::Lora(compare_config()),
                lora_lr,
                s,
                steps,
                batch,
                test,
            )
        } else {
            one_run(
                MethodSpec::Full { last_k: None },
                full_lr,
                s,
                steps,
                batch,
                test,
            )
        }
    })?;
    let (lora, full) = runs.split_at(seeds.len());
    Ok(SeedsEval {
        test_examples: runs.first().map_or(0, |r| r.1),
        seeds,
        steps,
        batch,
        lora_lr,
        full_lr,
        lora: lora.iter().map(|r| r.0).collect(),
        full: full.iter().map(|r| r.0).collect(),
    })
}

impl Evidence for SeedsEval {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny, {} steps of batch {}; LoRA r=8 q,v at lr {:e}, full fine-tuning at lr {:e} (compare's); test accuracy on {} examples\n\n",
            self.steps, self.batch, self.lora_lr, self.full_lr, self.test_examples
        );
        let rows: Vec<Vec<String>> = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| {
                vec![
                    seed.to_string(),
                    num(self.lora[i], 3),
                    num(self.full[i], 3),
                    format!("{:+.3}", self.lora[i] - self.full[i]),
                ]
            })
            .collect();
        s.push_str(&table(&["seed", "LoRA", "full", "LoRA − full"], &rows));
        let li = self.lora_interval();
        let se = self.binomial_se();
        let lo = self.lora.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.lora.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        s.push_str(&format!(
            "\nLoRA over {} seeds: {:.3} to {:.3}, sd {:.3}; mean with its 95% t-interval {}\n\
             one run's binomial standard error on {} test examples: sqrt(p(1-p)/n) = {:.3}, a 95% interval of ±{:.3}\n",
            self.seeds.len(),
            lo,
            hi,
            stats::sample_sd(&self.lora),
            li.short(3),
            self.test_examples,
            se,
            1.96 * se
        ));
        let (p, u) = (self.paired(), self.unpaired());
        s.push_str(&format!(
            "LoRA − full, paired by seed: {} ({}); unpaired (Welch, as if on different seeds): {} ({})\n",
            p.difference.short(3),
            p.verdict.name(),
            u.difference.short(3),
            u.verdict.name()
        ));
        s.push_str(&match self.seeds_needed() {
            Some(n) => format!(
                "seeds a paired comparison needs to separate a gap of {:+.3} with this spread: {n}\n",
                p.difference.mean
            ),
            None => format!(
                "a gap of {:+.3} with this spread is not separated by up to 1000 seeds (or there is no spread to measure)\n",
                p.difference.mean
            ),
        });
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let lo = self.lora.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = self.lora.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sd = stats::sample_sd(&self.lora);
        let (p, u) = (self.paired(), self.unpaired());
        let ratio = match (p.difference.half_width(), u.difference.half_width()) {
            (Some(a), Some(b)) if b > 0.0 => a / b,
            _ => f64::NAN,
        };
        vec![
            Claim::new(
                "the same config scores differently on different seeds",
                hi > lo,
            )
            .measured("LoRA's range over seeds", hi - lo, Fmt::Fixed(3)),
            Claim::new(
                "the spread over seeds is at least the test set's binomial standard error",
                sd >= self.binomial_se(),
            )
            .measured(
                "sd over seeds / binomial standard error",
                sd / self.binomial_se(),
                Fmt::Times(2),
            ),
            Claim::new(
                "pairing the methods on the same seeds gives a narrower interval than comparing them unpaired",
                ratio < 1.0,
            )
            .measured("paired / unpaired half-width", ratio, Fmt::Times(2)),
            Claim::new(
                "the paired interval separates LoRA from full fine-tuning",
                matches!(
                    p.verdict,
                    stats::Verdict::Better | stats::Verdict::Worse
                ),
            )
            .measured("LoRA − full, mean over seeds", p.difference.mean, Fmt::Signed(3)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 40. LoRA's learning rate, and the head's

/// One configuration trained on every seed, scored on validation.
#[derive(Debug, Clone, Serialize)]
pub struct HeadRow {
    pub label: String,
    /// Validation accuracy per seed.
    pub accuracy: Vec<f64>,
    /// ‖W_head after − W_head before‖ per seed.
    pub head_moved: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LrChoice {
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub val_examples: usize,
    pub lora: SweepReport,
    pub full: SweepReport,
    /// The learning rate of the head-lr runs and their rows: LoRA, LoRA with the head at 10×,
    /// LoRA+ (B at 16×).
    pub lr: f64,
    pub heads: Vec<HeadRow>,
}

impl LrChoice {
    /// LoRA's best learning rate over full fine-tuning's.
    pub fn best_ratio(&self) -> f64 {
        self.lora.best().point.lr / self.full.best().point.lr
    }
}

fn head_run(
    spec: MethodSpec,
    lr: f64,
    head_lr: Option<f64>,
    seed: u64,
    steps: usize,
    val: usize,
) -> Result<(f64, f64)> {
    let mut run = Run::new(Task::Sentiment, spec, lr, steps, 16).seed(seed);
    run.args.schedule = ScheduleKind::Linear;
    run.args.warmup_steps = steps / 10;
    run.args.head_learning_rate = head_lr;
    let (before, _, _) = prepare_run(&run)?;
    let o = train_run(&run, "", &mut ())?;
    let mut moved = 0.0f64;
    for id in o.tm.head.params() {
        for (a, b) in o.base.store.value(id).iter().zip(before.store.value(id)) {
            moved += ((a - b) as f64).powi(2);
        }
    }
    Ok((
        o.evaluate(Split::Validation, val)?["accuracy"],
        moved.sqrt(),
    ))
}

pub fn lr_choice(
    mode: Mode,
    seeds: usize,
    progress: &mut (dyn Progress + Send),
) -> Result<LrChoice> {
    let seeds = seed_list(seeds.max(1));
    let mut opts = SweepOptions::new(BASE, Task::Sentiment);
    opts.steps = mode.pick(8, 40);
    opts.max_eval_examples = mode.pick(48, 150);
    opts.seeds = seeds.clone();
    opts.out_dir = temp_dir("lr-sweep");
    let points = |spec: MethodSpec, lrs: &[f64]| -> Vec<Point> {
        lrs.iter()
            .map(|&lr| Point {
                lr,
                options: BTreeMap::new(),
                spec: spec.clone(),
                base_dtype: Default::default(),
            })
            .collect()
    };
    let lora_lrs = mode.pick(vec![3e-3, 3e-2], vec![1e-3, 3e-3, 1e-2, 3e-2]);
    let full_lrs = mode.pick(vec![3e-4, 3e-3], vec![1e-4, 3e-4, 1e-3, 3e-3]);
    progress.line(&format!(
        "sweeping LoRA r=8 q,v over lr {lora_lrs:?} and full fine-tuning over lr {full_lrs:?}: {} steps of batch {}, seeds {seeds:?}, validation only",
        opts.steps, opts.batch_size
    ));
    let lora = sweep::sweep(
        &opts,
        "lora r=8 q,v",
        &points(MethodSpec::Lora(compare_config()), &lora_lrs),
        progress,
    );
    let full = sweep::sweep(
        &opts,
        "full",
        &points(MethodSpec::Full { last_k: None }, &full_lrs),
        progress,
    );
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    let (lora, full) = (lora?, full?);

    // A fresh classification head at the base rate and at 10×, and LoRA+.
    let lr = 3e-3;
    let mut plus = compare_config();
    plus.lr_ratio_b = 16.0;
    let configs: Vec<(&str, MethodSpec, Option<f64>)> = vec![
        ("LoRA, head at lr", MethodSpec::Lora(compare_config()), None),
        (
            "LoRA, head at 10 x lr",
            MethodSpec::Lora(compare_config()),
            Some(10.0 * lr),
        ),
        (
            "LoRA+ (B at 16 x lr), head at lr",
            MethodSpec::Lora(plus),
            None,
        ),
    ];
    progress.line(&format!(
        "training LoRA at lr {lr:e} with the head at lr and at 10 x lr, and LoRA+, seeds {seeds:?}"
    ));
    let jobs: Vec<(usize, u64)> = (0..configs.len())
        .flat_map(|c| seeds.iter().map(move |&s| (c, s)))
        .collect();
    let (steps, val) = (opts.steps, opts.max_eval_examples);
    let runs = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (c, s) = jobs[k];
        let (_, spec, head) = &configs[c];
        head_run(spec.clone(), lr, *head, s, steps, val)
    })?;
    let heads = configs
        .iter()
        .zip(runs.chunks(seeds.len()))
        .map(|((label, _, _), r)| HeadRow {
            label: label.to_string(),
            accuracy: r.iter().map(|x| x.0).collect(),
            head_moved: r.iter().map(|x| x.1).collect(),
        })
        .collect();
    Ok(LrChoice {
        seeds,
        steps,
        val_examples: val,
        lora,
        full,
        lr,
        heads,
    })
}

impl Evidence for LrChoice {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny, {} steps of batch 16 with warmup over the first tenth, linear decay; validation accuracy on {} examples, seeds {:?} (test never read)\n\n",
            self.steps, self.val_examples, self.seeds
        );
        let mut rows = Vec::new();
        for r in [&self.lora, &self.full] {
            for (i, p) in r.points.iter().enumerate() {
                rows.push(vec![
                    r.method.clone(),
                    format!("{:e}", p.point.lr),
                    num(p.mean, 3),
                    num(p.std, 3),
                    if i == r.best {
                        "best".into()
                    } else {
                        String::new()
                    },
                ]);
            }
        }
        s.push_str(&table(
            &["method", "lr", "val accuracy (mean)", "sd", ""],
            &rows,
        ));
        s.push_str(&format!(
            "LoRA's best lr / full fine-tuning's: {:e} / {:e} = {:.1}x\n",
            self.lora.best().point.lr,
            self.full.best().point.lr,
            self.best_ratio()
        ));
        s.push_str(&format!(
            "\nLoRA r=8 q,v at lr {:e}, a new classification head at its own rate (--head-learning-rate), and LoRA+ (--lora-plus-ratio 16)\n\n",
            self.lr
        ));
        let rows: Vec<Vec<String>> = self
            .heads
            .iter()
            .map(|h| {
                vec![
                    h.label.clone(),
                    stats::t_interval(&h.accuracy, IntervalKind::TOverSeeds).short(3),
                    num(stats::mean(&h.head_moved), 3),
                ]
            })
            .collect();
        s.push_str(&table(
            &["run", "val accuracy (mean ± 95%)", "‖head change‖ (mean)"],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let ratio = self.best_ratio();
        let (base, head, plus) = (&self.heads[0], &self.heads[1], &self.heads[2]);
        let moved: Vec<f64> = head
            .head_moved
            .iter()
            .zip(&base.head_moved)
            .map(|(a, b)| a / b)
            .collect();
        let head_gain = stats::paired_t("head at lr", &head.accuracy, &base.accuracy);
        let plus_gain = stats::paired_t("lora", &plus.accuracy, &base.accuracy);
        vec![
            Claim::new(
                "LoRA's best learning rate is higher than full fine-tuning's",
                ratio > 1.0,
            )
            .measured("LoRA's best lr / full's", ratio, Fmt::Times(1)),
            Claim::new(
                "LoRA's best learning rate is about 10 times full fine-tuning's (3 to 30 times)",
                (3.0..=30.0).contains(&ratio),
            )
            .measured("LoRA's best lr / full's", ratio, Fmt::Times(1)),
            Claim::new(
                "a head learning rate 10 times higher moves the head further on every seed",
                moved.iter().all(|&m| m > 1.0),
            )
            .measured(
                "‖head change‖, 10 x / 1 x (mean)",
                stats::mean(&moved),
                Fmt::Times(2),
            ),
            Claim::new(
                "a head learning rate 10 times higher scores higher on validation",
                head_gain.difference.mean > 0.0,
            )
            .measured(
                "val accuracy, head at 10 x − at 1 x (mean over seeds)",
                head_gain.difference.mean,
                Fmt::Signed(3),
            ),
            Claim::new(
                "LoRA+ scores higher on validation than LoRA at the same lr",
                plus_gain.difference.mean > 0.0,
            )
            .measured(
                "val accuracy, LoRA+ − LoRA (mean over seeds)",
                plus_gain.difference.mean,
                Fmt::Signed(3),
            ),
        ]
    }
}

/// The questions and answers in Vietnamese, for `tunelab interview N --lang vi`.
pub const VI: &[(usize, &str, &str)] = &[
    (36, "Gradient checkpointing đánh đổi cái gì?",
     "Đổi bộ nhớ lấy tính toán. Backward cần activation của mọi lớp; bình thường forward giữ lại tất cả, nên bộ nhớ activation tăng theo độ sâu (O(L) lớp). Với checkpointing, mỗi block chỉ giữ đầu vào của nó, và backward chạy lại forward của block đó ngay trước khi tính backward của nó: bộ nhớ giảm còn L đầu vào của block cộng activation của một block tại một thời điểm, và mỗi bước tốn thêm một lần forward qua các block. Forward tốn khoảng 2N FLOP mỗi token, backward 4N, nên một lần forward thêm làm tăng khoảng một phần ba (6N → 8N). Gradient không đổi: việc tính lại lặp lại đúng các phép tính trên cùng đầu vào với cùng dropout mask, nên giống hệt từng bit. Đó là cách để chuỗi dài và batch lớn vừa bộ nhớ; Hugging Face bật nó bằng gradient_checkpointing=True. Ở đây, trong một decoder f64, gradient giống hệt từng bit, mỗi lớp thêm vào chỉ giữ khoảng 5% so với khi không dùng checkpointing (chỉ đầu vào của nó), và backward chạy lại mỗi block đúng một lần. Với một hoặc hai block, tape của block được tính lại (giữ mọi thứ trong lúc chạy) làm đỉnh bộ nhớ cao hơn cả khi không dùng checkpointing: nó chỉ có lợi từ vài block trở lên. Thời gian mỗi bước in ra được đo trên một máy dùng chung; phần tính toán tăng thêm một phần ba là theo phép tính."),
    (37, "Mixed-precision training hoạt động thế nào, và vì sao fp16 cần loss scaling còn bf16 thì không?",
     "Forward và backward chạy ở 16 bit (giảm một nửa lưu lượng bộ nhớ, tốc độ tensor core) trong khi một bản master weights f32 nhận các cập nhật của optimizer. fp16 có 10 bit mantissa nhưng chỉ 5 bit exponent: số chuẩn dừng ở 2^-14 ≈ 6e-5 và số subnormal ở 2^-24 ≈ 6e-8, mà nhiều phần tử gradient còn nhỏ hơn, nên chúng bị làm tròn về 0 hoặc chỉ còn vài bit. Loss scaling nhân loss với S (do tuyến tính nên mọi gradient cũng nhân S) để đưa chúng vào phạm vi biểu diễn, rồi chia lại cho S ở f32 trước khi cập nhật; dynamic scaling (GradScaler của PyTorch) tăng S cho đến khi có gradient tràn thành inf, bỏ qua bước đó và giảm S một nửa. bf16 giữ 8 bit exponent của f32 (7 bit mantissa), nên phạm vi của nó bằng f32 và không có gì bị underflow: không cần scaling, đổi lại làm tròn thô hơn. Master weights quan trọng ở cả hai: một trọng số gần 0.05 ở bf16 có khoảng cách giữa hai giá trị kề nhau khoảng 2^-12 ≈ 2.4e-4, nên một cập nhật 1e-4 cộng vào sẽ bị làm tròn mất; giữ ở f32 thì nó được tích luỹ. Ở đây, trên gradient của một bước thật của gpt-tiny, fp16 không scaling làm một số phần tử khác 0 thành 0 và để nhiều phần tử hơn thành subnormal chỉ còn ít bit; dynamic scale đưa gần như tất cả vào phạm vi mà không tràn, còn bf16 không làm phần tử nào thành 0. Khi cộng vào trọng số giữ ở bf16, phần lớn các cập nhật của một bước với lr 1e-5 biến mất, ở fp16 thì ít hơn nhiều; master weights f32 giữ được tất cả."),
    (38, "ZeRO và FSDP cần bao nhiêu bộ nhớ mỗi GPU?",
     "Adam với mixed precision giữ 2Ψ byte trọng số 16 bit, 2Ψ gradient và KΨ (K = 12: master weights f32, momentum, variance) trạng thái optimizer: tổng 16Ψ, trên mỗi GPU khi dùng data parallelism thông thường. ZeRO chia các trạng thái này cho N GPU: stage 1 chia optimizer states (4Ψ + 12Ψ/N), stage 2 chia thêm gradient (2Ψ + 14Ψ/N), stage 3 chia thêm cả tham số (16Ψ/N); full shard của PyTorch FSDP chính là stage 3. Với 7.5B trên 64 GPU, con số là 120, 31.4, 16.6 và 1.9 GB. Stage 1 và 2 truyền thông bằng data parallelism (2Ψ mỗi bước: reduce-scatter gradient, all-gather tham số đã cập nhật); stage 3 all-gather tham số của mỗi lớp trước forward và lần nữa trước backward, 3Ψ, gấp 1.5 lần. Activation không được chia. Với LoRA, optimizer state và gradient vốn đã rất nhỏ: stage 1 và 2 gần như không tiết kiệm gì, chỉ khi chia cả base đã đóng băng (stage 3) thì bộ nhớ mỗi GPU mới giảm. Trong bảng bên dưới, trạng thái full fine-tuning của 70B (1.1 TB) chỉ vừa GPU 80 GB ở stage 3, và trạng thái LoRA của 7B gần như không đổi từ stage 0 đến stage 2, rồi giảm tám lần ở stage 3 trên 8 GPU."),
    (39, "Vì sao một lần fine-tuning không chứng minh được gì, và so sánh hai phương pháp thế nào?",
     "Điểm của một lần chạy trộn lẫn phương pháp với may rủi của seed (khởi tạo head và adapter, thứ tự dữ liệu, dropout) và của tập test (sai số chuẩn nhị thức √(p(1−p)/n): 2.9 điểm ở độ chính xác 70% trên 250 ví dụ). Hãy chạy mỗi cấu hình trên k seed và báo cáo trung bình kèm khoảng tin cậy t qua các seed, mean ± t(0.975, k−1)·s/√k; với 3 seed t là 4.3, cái giá trung thực của việc chạy ít. Để so sánh hai phương pháp, chạy chúng trên cùng các seed và lấy hiệu theo từng seed: ảnh hưởng của seed lên cả hai bị triệt tiêu, và khoảng tin cậy ghép cặp (paired) thường hẹp hơn nhiều so với so sánh không ghép cặp giữa hai tập chạy độc lập. Nếu khoảng vẫn chứa 0 thì hai phương pháp chưa tách biệt; số seed cần thiết suy ra từ độ phân tán của các hiệu, n sao cho t·sd/√n < khoảng cách. Ở đây LoRA và full fine-tuning trên sentiment chạy trên cùng các seed. Việc ghép cặp chỉ có ích khi một seed tác động lên cả hai phương pháp theo cùng một hướng; ở quy mô của gpt-tiny thì không chắc: cùng một seed cho cả hai cùng cách khởi tạo head và cùng thứ tự dữ liệu, nhưng chúng huấn luyện những tham số khác nhau với learning rate khác nhau, nên một thứ tự dữ liệu hợp với phương pháp này chưa chắc hợp với phương pháp kia; khi điểm của hai phương pháp không cùng lên xuống theo seed, các hiệu số dao động nhiều như chính các điểm số và khoảng ghép cặp có thể rộng bằng, hoặc rộng hơn, khoảng không ghép cặp (với 3 seed nó chỉ có 2 bậc tự do, t = 4.3). Một chuyện riêng: trên 300 ví dụ test, độ phân tán giữa các seed có thể nhỏ hơn sai số nhị thức của tập test, vì một phần điều seed thay đổi là những ví dụ nào tình cờ đúng. Kết quả bên dưới cho biết trường hợp nào xảy ra, và cần bao nhiêu seed để tách được khoảng cách đo được."),
    (40, "Chọn learning rate cho LoRA, và cho classification head, thế nào?",
     "Sweep trên tập validation, không bao giờ trên test, và đừng dùng lại learning rate của full fine-tuning: LoRA huấn luyện ít tham số, bắt đầu từ cập nhật bằng 0 (B = 0) và được nhân với alpha/r, nên learning rate tốt nhất của nó thường cao hơn khoảng mười lần (1e-4 đến 1e-3 cho LoRA so với 1e-5 đến 1e-4 cho full fine-tuning một mô hình lớn). Một classification head mới bắt đầu từ trọng số ngẫu nhiên trong khi mọi thứ khác bắt đầu từ trạng thái tốt, nên nó có thể dùng learning rate riêng cao hơn (một parameter group thứ hai; ở đây là --head-learning-rate). LoRA+ làm điều tương tự bên trong adapter: B có learning rate cao hơn A (--lora-plus-ratio, 16 trong bài báo). Mỗi cách có giúp ích cho một tác vụ cụ thể hay không thì phải đo với nhiều seed, không phải giả định. Ở đây một lần sweep trên validation của sentiment in ra learning rate tốt nhất của cả hai và tỉ lệ giữa chúng; việc head học nhanh hơn hay LoRA+ có cho điểm cao hơn ở quy mô và ngân sách của gpt-tiny hay không được đánh giá trên các seed bên dưới chứ không giả định. Điều mà learning rate của head cao gấp 10 lần chắc chắn làm được là khiến head di chuyển xa hơn vài lần."),
];
