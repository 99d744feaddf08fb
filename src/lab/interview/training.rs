//! Training questions: label masking in instruction tuning (12), warmup (14), QLoRA memory (16)
//! and gradient accumulation (17). Questions 13 and 15 run the lr and explode pitfalls.

use crate::autodiff::IGNORE_INDEX;
use crate::data::encode::Target;
use crate::data::tasks::Task;
use crate::error::Result;
use crate::lab::estimate::{self, EstimateArgs, Method as EstMethod, GB};
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::load_base;
use crate::lab::forgetting::{heldout_batches, heldout_loss};
use crate::lab::runs::{prepare_run, temp_dir, train_run, Recorder, Run, BASE};
use crate::nn::{Hooks, NoHooks};
use crate::peft::lora::{block_linears, LoraConfig};
use crate::peft::MethodSpec;
use crate::train::progress::Progress;
use crate::train::task::{Item, TaskModel};
use crate::train::trainer::{self, MicroBatch, Split, TrainTask, Training};
use crate::{Float, Grads, ParamStore, Tape};
use serde::Serialize;

// ---------------------------------------------------------------------------------------------
// 12. Label masking in instruction tuning

#[derive(Debug, Clone, Serialize)]
pub struct LabelMasking {
    pub steps: usize,
    /// Targets in the first training batch with the prompt masked and unmasked.
    pub targets_masked: usize,
    pub targets_unmasked: usize,
    /// Validation loss on the response tokens only, before training and after each run.
    pub response_loss_before: f64,
    pub response_loss_masked: f64,
    pub response_loss_unmasked: f64,
}

/// Mean per-token loss on the response tokens of `items` (their labels mask the prompt).
fn response_loss(
    tm: &TaskModel,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    items: &[Item],
) -> Result<f64> {
    let (mut sum, mut count) = (0.0, 0usize);
    for chunk in items.chunks(16) {
        let refs: Vec<&Item> = chunk.iter().collect();
        let n: usize = chunk.iter().map(lm_targets).sum();
        let mut tape = Tape::inference(store);
        let (loss, _) = tm.batch_loss(&mut tape, hooks, &refs)?;
        sum += tape.scalar(loss)?.as_f64() * n as f64;
        count += n;
    }
    Ok(sum / count.max(1) as f64)
}

/// Targets the causal LM loss counts in one item (labels are shifted by one).
fn lm_targets(item: &Item) -> usize {
    match &item.encoded.target {
        Target::Lm(l) => l.iter().skip(1).filter(|&&x| x != IGNORE_INDEX).count(),
        _ => 0,
    }
}

pub fn label_masking(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<LabelMasking> {
    let (steps, val) = (mode.pick(10, 120), mode.pick(24, 200));
    let run = Run::new(
        Task::Dialogue,
        MethodSpec::Lora(LoraConfig::default()),
        3e-3,
        steps,
        8,
    )
    .seed(seed);
    let mut results = Vec::new();
    let mut before = f64::NAN;
    let mut counts = Vec::new();
    for masked in [true, false] {
        let label = if masked {
            "LoRA, prompt masked"
        } else {
            "LoRA, prompt in the loss"
        };
        progress.line(&format!("training {label}: {steps} steps of batch 8"));
        let (mut base, mut tm, method) = prepare_run(&run)?;
        if !masked {
            for item in &mut tm.train {
                item.encoded.target =
                    Target::Lm(item.encoded.ids.iter().map(|&x| x as i64).collect());
            }
        }
        counts.push(
            tm.train[..8.min(tm.train.len())]
                .iter()
                .map(lm_targets)
                .sum::<usize>(),
        );
        let items = &tm.validation[..val.min(tm.validation.len())];
        if masked {
            before = response_loss(&tm, &base.store, method.as_ref(), items)?;
        }
        let mut args = run.args.clone();
        args.output_dir = temp_dir("mask");
        trainer::train(
            Training::new(&args, &tm, &mut base.store)
                .hooks(method.as_ref())
                .progress(&mut Recorder::default()),
        )?;
        let _ = std::fs::remove_dir_all(&args.output_dir);
        results.push(response_loss(&tm, &base.store, method.as_ref(), items)?);
    }
    Ok(LabelMasking {
        steps,
        targets_masked: counts[0],
        targets_unmasked: counts[1],
        response_loss_before: before,
        response_loss_masked: results[0],
        response_loss_unmasked: results[1],
    })
}

impl Evidence for LabelMasking {
    fn render(&self) -> String {
        let mut s = format!(
            "dialogue on gpt-tiny, LoRA r=8 q,v, {} steps of batch 8 at lr 3e-3; validation loss on response tokens only\n\n",
            self.steps
        );
        s.push_str(&table(
            &["labels", "targets in a batch of 8", "response loss after"],
            &[
                vec![
                    "prompt masked (-100)".into(),
                    self.targets_masked.to_string(),
                    num(self.response_loss_masked, 4),
                ],
                vec![
                    "prompt in the loss".into(),
                    self.targets_unmasked.to_string(),
                    num(self.response_loss_unmasked, 4),
                ],
            ],
        ));
        s.push_str(&format!(
            "response loss before training: {}\n",
            num(self.response_loss_before, 4)
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        vec![
            Claim::new(
                "without masking, the prompt's tokens are targets too",
                self.targets_unmasked > self.targets_masked,
            )
            .measured(
                "prompt tokens' share of the unmasked targets",
                1.0 - self.targets_masked as f64 / self.targets_unmasked as f64,
                Fmt::Percent(0),
            ),
            Claim::new(
                "the masked run reaches a lower loss on responses",
                self.response_loss_masked < self.response_loss_unmasked,
            )
            .measured(
                "unmasked − masked response loss",
                self.response_loss_unmasked - self.response_loss_masked,
                Fmt::Signed(4),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 14. Learning-rate warmup

#[derive(Debug, Clone, Serialize)]
pub struct WarmupRow {
    pub warmup_steps: usize,
    /// The largest training loss in the first quarter of the run.
    pub early_max_loss: f64,
    pub final_loss: f64,
    pub val_accuracy: f64,
    pub forgetting: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Warmup {
    pub lr: f64,
    pub steps: usize,
    pub rows: Vec<WarmupRow>,
}

pub fn warmup(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Warmup> {
    let (lr, steps, val) = (1e-3, mode.pick(8, 120), mode.pick(32, 300));
    let mut rows = Vec::new();
    let mut heldout = None;
    for w in [0, steps / 4] {
        let mut run = Run::new(
            Task::Sentiment,
            MethodSpec::Full { last_k: None },
            lr,
            steps,
            8,
        )
        .seed(seed);
        run.args.schedule = crate::train::args::ScheduleKind::Linear;
        run.args.warmup_steps = w;
        let o = train_run(
            &run,
            &format!("full fine-tuning, {w} warmup steps"),
            progress,
        )?;
        let h = match &heldout {
            Some(h) => h,
            // Quick mode: one batch of held-out text, as `compare --quick` scores forgetting.
            None => {
                let mut b = heldout_batches(&o.base)?;
                b.truncate(mode.pick(1, 4));
                heldout.insert(b)
            }
        };
        let l = &o.record.losses;
        let early = &l[..(l.len() / 4).max(1)];
        let tail = &l[l.len().saturating_sub(5)..];
        rows.push(WarmupRow {
            warmup_steps: w,
            early_max_loss: early.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            final_loss: tail.iter().sum::<f64>() / tail.len().max(1) as f64,
            val_accuracy: o.evaluate(Split::Validation, val)?["accuracy"],
            forgetting: o.forgetting(h)?.delta(),
        });
    }
    Ok(Warmup { lr, steps, rows })
}

impl Evidence for Warmup {
    fn render(&self) -> String {
        let mut s = format!(
            "full fine-tuning of gpt-tiny on sentiment at lr {:.0e} (twice compare's), {} steps of batch 8, linear decay\n\n",
            self.lr, self.steps
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.warmup_steps.to_string(),
                    num(r.early_max_loss, 3),
                    num(r.final_loss, 3),
                    num(r.val_accuracy, 3),
                    format!("{:+.3}", r.forgetting),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "warmup steps",
                "max loss, first quarter",
                "last-5 loss",
                "val acc",
                "forgetting",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (no, yes) = (&self.rows[0], &self.rows[1]);
        vec![
            Claim::new(
                "without warmup the early loss peaks higher",
                no.early_max_loss > yes.early_max_loss,
            )
            .measured(
                "max early loss, no warmup − warmup",
                no.early_max_loss - yes.early_max_loss,
                Fmt::Signed(3),
            ),
            Claim::new(
                "with warmup the model forgets less",
                yes.forgetting < no.forgetting,
            )
            .measured(
                "forgetting, no warmup − warmup (nats)",
                no.forgetting - yes.forgetting,
                Fmt::Signed(3),
            ),
            // Strictly higher: a tie on a few dozen validation examples decides nothing.
            Claim::new(
                "with warmup it scores higher",
                yes.val_accuracy > no.val_accuracy,
            )
            .measured(
                "warmup − no warmup val accuracy",
                yes.val_accuracy - no.val_accuracy,
                Fmt::Signed(3),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 16. QLoRA memory arithmetic

/// The 16 NormalFloat-4 levels (Dettmers et al. 2023, appendix E; bitsandbytes' table): the
/// quantiles of a standard normal, rescaled to [-1, 1], with an exact zero.
pub const NF4: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_04,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// Block size of the absmax constants, as in QLoRA.
pub const BLOCK: usize = 64;

/// Quantizes `w` in blocks of 64 to the nearest of `levels` times the block's absmax, and
/// returns the dequantized values.
pub fn quantize(w: &[f32], levels: &[f32; 16]) -> Vec<f32> {
    let mut out = Vec::with_capacity(w.len());
    for block in w.chunks(BLOCK) {
        let absmax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for &x in block {
            let y = if absmax > 0.0 { x / absmax } else { 0.0 };
            let q = levels
                .iter()
                .copied()
                .min_by(|a, b| (a - y).abs().total_cmp(&(b - y).abs()))
                .unwrap_or(0.0);
            out.push(q * absmax);
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct MemRow {
    pub size: String,
    pub method: String,
    pub trainable: u64,
    pub states_gb: f64,
    pub total_ckpt_gb: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Qlora {
    pub rows: Vec<MemRow>,
    /// Bits per weight of the 4-bit codes plus fp32 absmax constants, counted on gpt-tiny.
    pub bits_measured: f64,
    /// With double quantization of the constants, by the paper's formula.
    pub bits_double_quant: f64,
    pub quantized_weights: usize,
    /// Relative error ‖Ŵ − W‖ / ‖W‖ of NF4 and of uniform 4-bit levels.
    pub nf4_error: f64,
    pub int4_error: f64,
    /// Held-out LM loss of gpt-tiny in f32, with NF4 block linears, with uniform 4-bit.
    pub lm_f32: f64,
    pub lm_nf4: f64,
    pub lm_int4: f64,
}

pub fn qlora(_mode: Mode) -> Result<Qlora> {
    let mut rows = Vec::new();
    for size in ["7B", "65B"] {
        let report = estimate::estimate(&EstimateArgs::new(size))?;
        for m in [EstMethod::FullMixed, EstMethod::Lora, EstMethod::Qlora] {
            if let Some(r) = report.row(m) {
                rows.push(MemRow {
                    size: size.into(),
                    method: r.label.clone(),
                    trainable: r.trainable,
                    states_gb: r.states_bytes() / GB,
                    total_ckpt_gb: r.total_ckpt_bytes / GB,
                });
            }
        }
    }
    let base = load_base(BASE)?;
    let batches = heldout_batches(&base)?;
    let lm_f32 = heldout_loss(&base, &NoHooks, &batches)?;
    let uniform: [f32; 16] = std::array::from_fn(|i| -1.0 + 2.0 * i as f32 / 15.0);
    let ids: Vec<crate::ParamId> = block_linears(&base.model)
        .iter()
        .map(|l| l.weight)
        .collect();
    let quantized_weights: usize = ids.iter().map(|&id| base.store.value(id).len()).sum();
    let mut errs = Vec::new();
    let mut losses = Vec::new();
    for levels in [&NF4, &uniform] {
        let mut b = crate::lab::finetune::Base {
            dir: base.dir.clone(),
            model: base.model.clone(),
            store: base.store.clone(),
            tok: base.tok.clone(),
            notes: base.notes.clone(),
            initialised: base.initialised.clone(),
            quant: None,
        };
        let (mut err_sq, mut w_sq) = (0.0, 0.0);
        for &id in &ids {
            let w = base.store.value(id);
            let flat: Vec<f32> = w.iter().copied().collect();
            let q = quantize(&flat, levels);
            for (x, y) in flat.iter().zip(&q) {
                err_sq += ((x - y) as f64).powi(2);
                w_sq += (*x as f64).powi(2);
            }
            b.store.set_value(
                id,
                ndarray::ArrayD::from_shape_vec(w.shape(), q).expect("same size"),
            )?;
        }
        errs.push((err_sq / w_sq).sqrt());
        losses.push(heldout_loss(&b, &NoHooks, &batches)?);
    }
    let blocks = quantized_weights.div_ceil(BLOCK);
    Ok(Qlora {
        rows,
        bits_measured: (4 * quantized_weights + 32 * blocks) as f64 / quantized_weights as f64,
        bits_double_quant: estimate::nf4_bits_per_param(),
        quantized_weights,
        nf4_error: errs[0],
        int4_error: errs[1],
        lm_f32,
        lm_nf4: losses[0],
        lm_int4: losses[1],
    })
}

impl Evidence for Qlora {
    fn render(&self) -> String {
        let mut s = String::from("memory for fine-tuning, B = 1, T = 512, with gradient checkpointing (tunelab estimate's arithmetic)\n\n");
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.size.clone(),
                    r.method.clone(),
                    r.trainable.to_string(),
                    format!("{:.1}", r.states_gb),
                    format!("{:.1}", r.total_ckpt_gb),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "model",
                "method",
                "trainable",
                "weights+grads+optimizer GB",
                "total GB",
            ],
            &rows,
        ));
        s.push_str(&format!(
            "\ngpt-tiny's {} block-linear weights quantized here in blocks of {BLOCK}: {:.3} bits per weight with fp32 constants ({:.3} with double quantization)\n\n",
            self.quantized_weights, self.bits_measured, self.bits_double_quant
        ));
        s.push_str(&table(
            &["weights", "relative error", "held-out LM loss"],
            &[
                vec!["f32".into(), "0".into(), num(self.lm_f32, 4)],
                vec![
                    "NF4".into(),
                    format!("{:.2}%", 100.0 * self.nf4_error),
                    num(self.lm_nf4, 4),
                ],
                vec![
                    "uniform 4-bit".into(),
                    format!("{:.2}%", 100.0 * self.int4_error),
                    num(self.lm_int4, 4),
                ],
            ],
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let qlora65 = self
            .rows
            .iter()
            .find(|r| r.size == "65B" && r.method.starts_with("QLoRA"));
        let full65 = self
            .rows
            .iter()
            .find(|r| r.size == "65B" && r.method.starts_with("full"));
        vec![
            Claim::new(
                format!(
                    "QLoRA fits a 65B model in one 48 GB GPU ({:.1} GB), full mixed-precision fine-tuning needs {:.0} GB",
                    qlora65.map_or(f64::NAN, |r| r.total_ckpt_gb),
                    full65.map_or(f64::NAN, |r| r.total_ckpt_gb)
                ),
                qlora65.is_some_and(|r| r.total_ckpt_gb < 48.0),
            ),
            Claim::new(
                format!("4-bit blocks cost about 4.5 bits per weight ({:.3})", self.bits_measured),
                (self.bits_measured - 4.5).abs() < 0.01,
            ),
            Claim::new(
                format!(
                    "NF4 reconstructs normally distributed weights better than uniform 4-bit levels ({:.2}% vs {:.2}%)",
                    100.0 * self.nf4_error,
                    100.0 * self.int4_error
                ),
                self.nf4_error < self.int4_error,
            ),
            Claim::new(
                format!(
                    "NF4 costs little LM loss on gpt-tiny (+{:.4} nats)",
                    self.lm_nf4 - self.lm_f32
                ),
                self.lm_nf4 - self.lm_f32 < 0.1,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 17. Gradient accumulation

#[derive(Debug, Clone, Serialize)]
pub struct AccumRow {
    pub loss: String,
    /// ‖g_accumulated − g_batch‖ / ‖g_batch‖.
    pub plain_error: f64,
    /// The same with each micro-batch weighted by its share of the target tokens.
    pub weighted_error: f64,
    /// Targets per micro-batch.
    pub micro_targets: Vec<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Accumulation {
    pub batch: usize,
    pub micro: usize,
    pub rows: Vec<AccumRow>,
}

/// The gradients of `parts` (examples, weight) summed as gradient accumulation sums them, without
/// an optimizer step: the demonstration compares gradients, so nothing here trains (training goes
/// through the Trainer).
fn grads_of(
    tm: &TaskModel,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    parts: &[(Vec<usize>, f64)],
) -> Result<Grads<f32>> {
    let mut grads = Grads::new(store);
    for (idx, weight) in parts {
        let mut tape = Tape::new(store);
        tape.set_train(false);
        let (loss, _) = TrainTask::<f32>::loss(tm, &mut tape, hooks, &MicroBatch::of(idx))?;
        let scaled = tape.scale(loss, *weight)?;
        tape.backward(scaled, &mut grads)?;
    }
    Ok(grads)
}

fn rel_diff(a: &Grads<f32>, b: &Grads<f32>) -> f64 {
    let (mut d, mut n) = (0.0, 0.0);
    for id in b.ids() {
        let (Some(x), Some(y)) = (a.get(id), b.get(id)) else {
            continue;
        };
        for (p, q) in x.iter().zip(y) {
            d += ((p - q) as f64).powi(2);
            n += (*q as f64).powi(2);
        }
    }
    (d / n).sqrt()
}

pub fn accumulation() -> Result<Accumulation> {
    let (batch, micro) = (16, 4);
    let mut rows = Vec::new();
    for (task, label) in [
        (Task::Sentiment, "classification (mean over sequences)"),
        (Task::Dialogue, "causal LM (mean over tokens)"),
    ] {
        let run = Run::new(task, MethodSpec::Full { last_k: None }, 1e-3, 1, batch);
        let (base, tm, method) = prepare_run(&run)?;
        let all: Vec<usize> = (0..batch).collect();
        let whole = grads_of(&tm, &base.store, method.as_ref(), &[(all, 1.0)])?;
        let chunks: Vec<Vec<usize>> = (0..batch)
            .collect::<Vec<_>>()
            .chunks(micro)
            .map(<[usize]>::to_vec)
            .collect();
        let targets: Vec<usize> = chunks
            .iter()
            .map(|c| match task {
                Task::Dialogue => c.iter().map(|&i| lm_targets(&tm.train[i])).sum(),
                _ => c.len(),
            })
            .collect();
        let total: usize = targets.iter().sum();
        let k = chunks.len() as f64;
        let plain: Vec<(Vec<usize>, f64)> = chunks.iter().map(|c| (c.clone(), 1.0 / k)).collect();
        let weighted: Vec<(Vec<usize>, f64)> = chunks
            .iter()
            .zip(&targets)
            .map(|(c, &t)| (c.clone(), t as f64 / total as f64))
            .collect();
        rows.push(AccumRow {
            loss: label.into(),
            plain_error: rel_diff(
                &grads_of(&tm, &base.store, method.as_ref(), &plain)?,
                &whole,
            ),
            weighted_error: rel_diff(
                &grads_of(&tm, &base.store, method.as_ref(), &weighted)?,
                &whole,
            ),
            micro_targets: targets,
        });
    }
    Ok(Accumulation { batch, micro, rows })
}

impl Evidence for Accumulation {
    fn render(&self) -> String {
        let mut s = format!(
            "gpt-tiny, full fine-tuning gradients (dropout off): one batch of {} versus {} micro-batches of {}\n\n",
            self.batch,
            self.batch / self.micro,
            self.micro
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.loss.clone(),
                    format!("{:?}", r.micro_targets),
                    format!("{:.2e}", r.plain_error),
                    format!("{:.2e}", r.weighted_error),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "loss",
                "targets per micro-batch",
                "error, each / k",
                "error, weighted by targets",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (cls, lm) = (&self.rows[0], &self.rows[1]);
        vec![
            Claim::new(
                format!("for classification, accumulating k means / k equals the big batch ({:.1e})", cls.plain_error),
                cls.plain_error < 1e-4,
            ),
            Claim::new(
                format!("for the per-token LM loss the naive 1/k scaling does not ({:.1e})", lm.plain_error),
                lm.plain_error > 1e-3,
            ),
            Claim::new(
                format!("weighting each micro-batch by its share of target tokens, as the Trainer does, makes it exact ({:.1e})", lm.weighted_error),
                lm.weighted_error < 1e-4,
            ),
        ]
    }
}
