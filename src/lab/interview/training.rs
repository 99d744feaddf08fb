//! Training questions: label masking in instruction tuning (12), warmup (14), QLoRA (16: the
//! base really stored in NF4, and LoRA trained on it beside LoRA on f32) and gradient
//! accumulation (17). Questions 13 and 15 run the lr and explode pitfalls.

use crate::autodiff::IGNORE_INDEX;
use crate::data::encode::Target;
use crate::data::tasks::Task;
use crate::error::Result;
use crate::kernels::nf4::DOUBLE_QUANT_BLOCKSIZE;
use crate::lab::estimate::{self, EstimateArgs, Method as EstMethod, GB};
use crate::lab::evidence::{num, seed_list, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::{load_base, Base};
use crate::lab::forgetting::{heldout_batches, heldout_loss};
use crate::lab::lanes::{lanes, side_by_side};
use crate::lab::runs::{prepare_run, temp_dir, train_run, Recorder, Run, BASE};
use crate::lab::stats::{self, IntervalKind, Paired};
use crate::nn::quantize::{BaseDtype, NF4_BLOCKSIZE};
use crate::nn::{Hooks, Layout, NoHooks};
use crate::peft::lora::{compare_config, LoraConfig};
use crate::peft::MethodSpec;
use crate::train::progress::Progress;
use crate::train::task::{Item, TaskModel};
use crate::train::trainer::{self, MicroBatch, Split, TrainTask, Training};
use crate::{Float, Grads, ParamStore, Tape};
use ndarray::{Array2, Ix2};
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
            "full fine-tuning of gpt-tiny on sentiment at lr {:.0e}, {} steps of batch 8, linear decay\n\n",
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
// 16. QLoRA: the base in 4-bit NormalFloat, and LoRA on top of it

/// 16 evenly spaced levels over [−1, 1]: the plain 4-bit code NF4 is measured against.
pub fn uniform4_levels() -> [f32; 16] {
    std::array::from_fn(|i| -1.0 + 2.0 * i as f32 / 15.0)
}

/// `values` through a uniform 4-bit code and back: the blocks, absmax and layout of NF4
/// (`crate::kernels::nf4`), with [`uniform4_levels`] in place of the normal quantiles. Only the
/// levels differ, so the error it adds is what NF4's levels save.
pub fn uniform4_round_trip(values: &[f32], blocksize: usize) -> Vec<f32> {
    let levels = uniform4_levels();
    let mut out = Vec::with_capacity(values.len());
    for block in values.chunks(blocksize) {
        let absmax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for &x in block {
            let y = if absmax > 0.0 { x / absmax } else { 0.0 };
            // The nearest level: levels are 2/15 apart from −1.
            let q = ((y + 1.0) * 7.5).round().clamp(0.0, 15.0) as usize;
            out.push(levels[q] * absmax);
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

/// gpt-tiny's block Linears stored one way, measured.
#[derive(Debug, Clone, Serialize)]
pub struct StoredBase {
    /// `f32`, `bf16`, `nf4`, `nf4+dq`, or `uniform 4-bit`.
    pub dtype: String,
    pub bits_per_value: f64,
    pub bytes: usize,
    /// ‖Ŵ − W‖ / ‖W‖ over every block Linear together, and the largest |ŵ − w|.
    pub relative_error: f64,
    pub max_abs_error: f64,
    /// Held-out LM loss of the whole model with its Linears stored this way.
    pub lm_loss: f64,
}

/// LoRA trained on one base storage over every seed.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedOn {
    pub label: String,
    pub trainable: usize,
    /// Bytes of every weight, and of the activations the tape held, at the peak step (the
    /// Trainer's memory ledger), per seed.
    pub weights: Vec<usize>,
    pub activations: Vec<usize>,
    /// Mean training loss of the last 5 steps, and test accuracy, per seed (seed order).
    pub final_loss: Vec<f64>,
    pub accuracy: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Qlora {
    pub rows: Vec<MemRow>,
    /// Block Linears quantised and their values.
    pub linears: usize,
    pub values: usize,
    /// f32, bf16, nf4, nf4+dq (stored by `Base::quantize`), then uniform 4-bit (round trip).
    pub bases: Vec<StoredBase>,
    /// QLoRA's bits per value with double quantisation by the paper's formula:
    /// 4 + 8/64 + 32/(64·256).
    pub paper_bits_dq: f64,
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub test_examples: usize,
    /// LoRA on the f32 base, then QLoRA (LoRA on the nf4+dq base), same seeds.
    pub lora: TrainedOn,
    pub qlora: TrainedOn,
}

impl Qlora {
    /// The stored base named `dtype`.
    pub fn base(&self, dtype: &str) -> Option<&StoredBase> {
        self.bases.iter().find(|b| b.dtype == dtype)
    }

    /// QLoRA − LoRA test accuracy, paired by seed, with its 95% interval.
    pub fn accuracy_difference(&self) -> Paired {
        stats::paired_t("lora", &self.qlora.accuracy, &self.lora.accuracy)
    }
}

/// The memory arithmetic of `tunelab estimate` for 7B and 65B.
fn memory_rows() -> Result<Vec<MemRow>> {
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
    Ok(rows)
}

/// The base with every block Linear through [`uniform4_round_trip`] (in the (out, in) layout
/// and blocks NF4 uses), kept in f32, and what that did to the weights.
fn uniform4_base(base: &Base) -> Result<(Base, StoredBase)> {
    let mut b = base.clone();
    let (mut err2, mut w2, mut max_err) = (0.0f64, 0.0f64, 0.0f64);
    let (mut values, mut bytes) = (0usize, 0usize);
    for lin in base.model.block_linears() {
        let w = base
            .store
            .value(lin.weight)
            .view()
            .into_dimensionality::<Ix2>()
            .map_err(|_| crate::error::Error::Shape {
                op: "interview 16",
                detail: format!("{}.weight is not 2-D", lin.module),
            })?;
        let out_in = match lin.layout {
            Layout::OutIn => w,
            Layout::InOut => w.reversed_axes(),
        };
        let flat: Vec<f32> = out_in.iter().copied().collect();
        let back = uniform4_round_trip(&flat, NF4_BLOCKSIZE);
        for (&x, &y) in flat.iter().zip(&back) {
            let d = (x - y) as f64;
            err2 += d * d;
            w2 += (x as f64) * (x as f64);
            max_err = max_err.max(d.abs());
        }
        values += flat.len();
        bytes += flat.len().div_ceil(2) + 4 * flat.len().div_ceil(NF4_BLOCKSIZE);
        let back = Array2::from_shape_vec(out_in.dim(), back).expect("rows × cols values");
        let stored = match lin.layout {
            Layout::OutIn => back,
            Layout::InOut => back.reversed_axes().as_standard_layout().into_owned(),
        };
        b.store.set_value(lin.weight, stored.into_dyn())?;
    }
    Ok((
        b,
        StoredBase {
            dtype: "uniform 4-bit".into(),
            bits_per_value: 8.0 * bytes as f64 / values.max(1) as f64,
            bytes,
            relative_error: (err2 / w2.max(f64::MIN_POSITIVE)).sqrt(),
            max_abs_error: max_err,
            lm_loss: f64::NAN,
        },
    ))
}

/// LoRA r=8 q,v (compare's) on sentiment on a base stored as `dtype`, one seed.
struct OneRun {
    trainable: usize,
    weights: usize,
    activations: usize,
    final_loss: f64,
    accuracy: f64,
}

fn train_on(
    dtype: BaseDtype,
    seed: u64,
    steps: usize,
    batch: usize,
    lr: f64,
    test_examples: usize,
) -> Result<OneRun> {
    let mut run = Run::new(
        Task::Sentiment,
        MethodSpec::Lora(compare_config()),
        lr,
        steps,
        batch,
    )
    .seed(seed);
    run.base_dtype = dtype;
    let o = train_run(&run, dtype.name(), &mut ())?;
    let l = &o.record.losses;
    let tail = &l[l.len().saturating_sub(5)..];
    Ok(OneRun {
        trainable: o.trainable,
        weights: o.report.as_ref().map_or(0, |r| r.memory.weights),
        activations: o.report.as_ref().map_or(0, |r| r.memory.activations),
        final_loss: tail.iter().sum::<f64>() / tail.len().max(1) as f64,
        accuracy: o.evaluate(Split::Test, test_examples)?["accuracy"],
    })
}

pub fn qlora(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<Qlora> {
    let rows = memory_rows()?;
    let base = load_base(BASE)?;
    let mut batches = heldout_batches(&base)?;
    batches.truncate(mode.pick(2, usize::MAX));
    let mut bases = vec![StoredBase {
        dtype: "f32".into(),
        bits_per_value: 32.0,
        bytes: 0,
        relative_error: 0.0,
        max_abs_error: 0.0,
        lm_loss: heldout_loss(&base, &NoHooks, &batches)?,
    }];
    let (mut linears, mut values) = (0, 0);
    for dtype in [
        BaseDtype::Bf16,
        BaseDtype::Nf4 {
            double_quant: false,
        },
        BaseDtype::Nf4 { double_quant: true },
    ] {
        let mut b = base.clone();
        b.quantize(dtype)?;
        let r = b
            .quant
            .clone()
            .expect("quantize reports every dtype but f32");
        (linears, values) = (r.linears, r.values);
        bases[0].bytes = r.bytes_f32;
        bases.push(StoredBase {
            dtype: dtype.name().into(),
            bits_per_value: r.bits_per_value,
            bytes: r.bytes,
            relative_error: r.relative_error,
            max_abs_error: r.max_abs_error,
            lm_loss: heldout_loss(&b, &NoHooks, &batches)?,
        });
    }
    let (uniform, mut row) = uniform4_base(&base)?;
    row.lm_loss = heldout_loss(&uniform, &NoHooks, &batches)?;
    bases.push(row);

    // LoRA on the f32 base and on the nf4+dq base, every seed, side by side.
    let (steps, batch, lr) = (mode.pick(8, 40), 16, 3e-3);
    let test_examples = mode.pick(64, 300);
    let seeds = seed_list(seeds.max(1));
    let dtypes = [BaseDtype::F32, BaseDtype::Nf4 { double_quant: true }];
    progress.line(&format!(
        "training LoRA r=8 q,v on the f32 base and on the nf4+dq base (QLoRA): {steps} steps of batch {batch} at lr {lr:.0e}, seeds {:?}",
        seeds
    ));
    let jobs: Vec<(BaseDtype, u64)> = dtypes
        .iter()
        .flat_map(|&d| seeds.iter().map(move |&s| (d, s)))
        .collect();
    let runs = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (d, s) = jobs[k];
        train_on(d, s, steps, batch, lr, test_examples)
    })?;
    let trained = |label: &str, part: &[OneRun]| TrainedOn {
        label: label.into(),
        trainable: part.first().map_or(0, |r| r.trainable),
        weights: part.iter().map(|r| r.weights).collect(),
        activations: part.iter().map(|r| r.activations).collect(),
        final_loss: part.iter().map(|r| r.final_loss).collect(),
        accuracy: part.iter().map(|r| r.accuracy).collect(),
    };
    let (on_f32, on_nf4) = runs.split_at(seeds.len());
    Ok(Qlora {
        rows,
        linears,
        values,
        bases,
        paper_bits_dq: 4.0
            + 8.0 / NF4_BLOCKSIZE as f64
            + 32.0 / (NF4_BLOCKSIZE * DOUBLE_QUANT_BLOCKSIZE) as f64,
        seeds,
        steps,
        batch,
        lr,
        test_examples,
        lora: trained("LoRA, f32 base", on_f32),
        qlora: trained("QLoRA, nf4+dq base", on_nf4),
    })
}

/// Mean ± the 95% interval over seeds.
fn over(xs: &[f64], d: usize) -> String {
    stats::t_interval(xs, IntervalKind::TOverSeeds).short(d)
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
            "\ngpt-tiny's {} block Linears ({} values) stored by --base-dtype (nf4: blocks of {NF4_BLOCKSIZE} along (out, in) rows; +dq: the constants in 8 bits, blocks of {DOUBLE_QUANT_BLOCKSIZE}); uniform 4-bit: the same blocks with 16 evenly spaced levels instead of NF4's, round-tripped into f32\n\n",
            self.linears, self.values
        ));
        let rows: Vec<Vec<String>> = self
            .bases
            .iter()
            .map(|b| {
                vec![
                    b.dtype.clone(),
                    format!("{:.3}", b.bits_per_value),
                    format!("{:.3}", b.bytes as f64 / 1e6),
                    format!("{:.2}%", 100.0 * b.relative_error),
                    format!("{:.4}", b.max_abs_error),
                    num(b.lm_loss, 4),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "base",
                "bits/value",
                "MB",
                "‖Ŵ−W‖/‖W‖",
                "max |ŵ−w|",
                "held-out LM loss",
            ],
            &rows,
        ));
        s.push_str(&format!(
            "\nsentiment on gpt-tiny, LoRA r=8 alpha 32 on q,v, {} steps of batch {} at lr {:.0e}, seeds {}; test accuracy on {} examples; mean ± 95% interval over the seeds (Student-t)\n\n",
            self.steps,
            self.batch,
            self.lr,
            self.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            self.test_examples
        ));
        let row = |t: &TrainedOn| {
            vec![
                t.label.clone(),
                t.trainable.to_string(),
                format!(
                    "{:.2}",
                    t.weights.first().copied().unwrap_or(0) as f64 / 1e6
                ),
                format!(
                    "{:.2}",
                    t.activations.first().copied().unwrap_or(0) as f64 / 1e6
                ),
                over(&t.final_loss, 3),
                over(&t.accuracy, 3),
            ]
        };
        let d = self.accuracy_difference();
        s.push_str(&table(
            &[
                "run",
                "trainable",
                "weights MB",
                "activations MB",
                "last-5 train loss",
                "test accuracy",
            ],
            &[row(&self.lora), row(&self.qlora)],
        ));
        s.push_str(&format!(
            "QLoRA − LoRA test accuracy, paired by seed: {} ({})\n",
            d.difference.short(3),
            d.verdict.name()
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
        let get = |d: &str| self.base(d).cloned();
        let (Some(f32b), Some(bf16), Some(nf4), Some(dq), Some(uni)) = (
            get("f32"),
            get("bf16"),
            get("nf4"),
            get("nf4+dq"),
            get("uniform 4-bit"),
        ) else {
            return vec![Claim::new("every storage was measured", false)];
        };
        let cost = |b: &StoredBase| b.lm_loss - f32b.lm_loss;
        let weights = |t: &TrainedOn| t.weights.first().copied().unwrap_or(0) as f64;
        let activations = |t: &TrainedOn| t.activations.first().copied().unwrap_or(0) as f64;
        let d = self.accuracy_difference();
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
                "NF4 with an f32 absmax per block of 64 costs 4.5 bits per value",
                (nf4.bits_per_value - 4.5).abs() < 0.005,
            )
            .measured("bits per value, nf4", nf4.bits_per_value, Fmt::Fixed(3)),
            Claim::new(
                format!(
                    "double quantisation brings it to the paper's 4 + 8/64 + 32/(64·256) = {:.3} bits per value",
                    self.paper_bits_dq
                ),
                (dq.bits_per_value - self.paper_bits_dq).abs() < 0.005,
            )
            .measured("bits per value, nf4+dq", dq.bits_per_value, Fmt::Fixed(3)),
            Claim::new(
                "NF4's normal-quantile levels reconstruct the weights better than uniform 4-bit levels in the same blocks",
                nf4.relative_error < uni.relative_error,
            )
            .measured(
                "relative error, uniform − NF4",
                uni.relative_error - nf4.relative_error,
                Fmt::Signed(4),
            ),
            Claim::new(
                "NF4 costs little held-out LM loss (under 0.1 nats)",
                cost(&nf4) < 0.1,
            )
            .measured("LM loss, nf4 − f32", cost(&nf4), Fmt::Signed(4)),
            Claim::new(
                "bf16 costs less LM loss than NF4",
                cost(&bf16).abs() < cost(&nf4).abs(),
            )
            .measured("LM loss, bf16 − f32", cost(&bf16), Fmt::Signed(4)),
            Claim::new(
                "double quantisation adds next to nothing to NF4's LM loss (under 0.01 nats)",
                (dq.lm_loss - nf4.lm_loss).abs() < 0.01,
            )
            .measured("LM loss, nf4+dq − nf4", dq.lm_loss - nf4.lm_loss, Fmt::Signed(4)),
            Claim::new(
                "NF4's smaller weight error also gives a lower LM loss than uniform 4-bit",
                nf4.lm_loss < uni.lm_loss,
            )
            .measured("LM loss, uniform − NF4", uni.lm_loss - nf4.lm_loss, Fmt::Signed(4)),
            Claim::new(
                "QLoRA holds its weights in less memory than LoRA",
                weights(&self.qlora) > 0.0 && weights(&self.qlora) < weights(&self.lora),
            )
            .measured(
                "weights at the peak step, LoRA / QLoRA",
                weights(&self.lora) / weights(&self.qlora),
                Fmt::Times(2),
            ),
            Claim::new(
                "at gpt-tiny's size the activations, not the weights, dominate QLoRA's memory",
                activations(&self.qlora) > weights(&self.qlora),
            )
            .measured(
                "activations / weights at QLoRA's peak step",
                activations(&self.qlora) / weights(&self.qlora),
                Fmt::Times(1),
            ),
            Claim::new(
                "QLoRA trains exactly the parameters LoRA trains",
                self.qlora.trainable == self.lora.trainable,
            ),
            Claim::new(
                "QLoRA scores as LoRA does: the 95% interval of QLoRA − LoRA test accuracy contains 0",
                d.verdict == stats::Verdict::Indistinguishable,
            )
            .measured(
                "QLoRA − LoRA test accuracy, mean over seeds",
                d.difference.mean,
                Fmt::Signed(3),
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

/// Questions 11–17 in Vietnamese (`tunelab interview N --lang vi`): (number, question, answer).
/// Questions 11, 13 and 15 run pitfalls; their translations live here with the other training
/// questions.
pub const VI: &[(usize, &str, &str)] = &[
    (11, "Tại sao phía padding lại quan trọng với mô hình decoder?",
     "Decoder sinh token tiếp theo từ vị trí cuối cùng. Với right padding, vị trí cuối của các hàng ngắn là một pad, nên khi sinh theo batch mô hình đọc sai chỗ; với left padding mọi hàng đều kết thúc ở cột cuối. Khi đó attention mask phải che các pad và position ids phải bắt đầu từ token thật đầu tiên của mỗi hàng, nếu không kết quả có padding và không padding sẽ khác nhau. Khi training, right padding với nhãn bị bỏ qua trên các pad là ổn."),
    (12, "Tại sao phải mask nhãn của prompt trong instruction tuning?",
     "Mô hình cần học cách tạo ra response, không phải đoán prompt của người dùng. Đặt nhãn của prompt là -100 giữ prompt làm ngữ cảnh nhưng loại các token của nó khỏi loss; nếu không, các token của prompt, thường chiếm đa số, lấn át loss và gradient, và mô hình tốn năng lực để bắt chước prompt. Ở quy mô của gpt-tiny, run có mask không đạt được response loss thấp hơn một cách chắc chắn: hai run kết thúc cách nhau khoảng một phần mười nat, bên nào thấp hơn tùy seed, có lẽ vì prompt và response của task dialogue đến từ cùng một thế giới nhỏ, nên đoán prompt cũng dạy được response. Điều mask thay đổi một cách đo được là những gì loss đếm: phần lớn target của một batch không mask là token của prompt."),
    (13, "Catastrophic forgetting là gì, và đo nó như thế nào?",
     "Fine-tuning đẩy weights về phía task mới và rời xa những gì pre-training đã dạy, nên khả năng chung bị suy giảm. Đo nó bằng cách chấm mô hình trước và sau fine-tuning trên dữ liệu held-out của phân phối ban đầu (ở đây là LM loss trên văn bản pre-training chưa thấy) hoặc trên các benchmark chung. Learning rate cao và full fine-tuning quên nhiều nhất; learning rate nhỏ, ít step và các phương pháp parameter-efficient quên ít nhất."),
    (14, "Tại sao dùng learning-rate warmup?",
     "Ở những step đầu, ước lượng moment bậc hai của Adam được tính từ một hai gradient và còn nhiễu, và head hay adapter của một mô hình pre-trained còn mới, nên các step đủ cỡ có thể ném weights ra xa điểm pre-trained. Warmup tăng learning rate từ 0 trong những step đầu để các cập nhật ban đầu nhỏ cho đến khi các thống kê ổn định. Ở đây, với learning rate 1e-3 khi full fine-tuning gpt-tiny, tác động của nó lên đỉnh loss ban đầu, lên việc quên và lên điểm đều nhỏ hơn khác biệt giữa các seed: warmup là bảo hiểm chống một step đầu tồi, và trên một run nhỏ bất kỳ lợi ích của nó nằm trong nhiễu, nên các kết luận bên dưới đếm số seed mà mỗi điều đúng thay vì khẳng định nó."),
    (15, "Gradient clipping làm gì, và khi nào nó quan trọng?",
     "Nó co tất cả gradient lại cùng lúc khi global norm của chúng vượt quá một ngưỡng, giữ nguyên hướng và giới hạn độ dài step. Nó quan trọng khi một loss spike hoặc một mạng sâu, điều kiện kém (post-LN không warmup, các đường dài kiểu RNN) sinh ra một gradient khổng lồ có thể ném weights đi mất; đây là bảo hiểm rẻ, được log dưới dạng gradient norm. Trong thí nghiệm, một decoder post-LN sâu train bằng SGD với learning rate cao bị nổ ở mọi seed khi không clipping và train được khi có clipping. Pre-LN phân bố gradient đều trên các block, nhưng ở learning rate đó tự nó không ngăn được mọi seed khỏi nổ; clipping thì ngăn được."),
    (16, "QLoRA cần bao nhiêu bộ nhớ, và tại sao?",
     "QLoRA lưu base frozen ở dạng 4-bit NormalFloat: các block 64 weights, mỗi block có absmax riêng, mỗi weight là chỉ số của mức gần nhất trong 16 mức đặt tại các quantile của phân phối chuẩn, nên các mã được dùng ở đúng nơi các weights xấp xỉ chuẩn thật sự nằm. Đó là 4.5 bit mỗi weight; double quantization lưu cả các hằng số absmax bằng 8 bit, còn khoảng 4.127, so với 16 của bf16. Các adapter của LoRA train ở 16 hoặc 32 bit bên trên, optimizer state chỉ dành cho chúng, và base được dequantize từng tile một bên trong mỗi phép matmul, không bao giờ giữ nguyên cả base ở độ chính xác đầy đủ. Khi đó bộ nhớ chủ yếu là base đã quantize và các activation: một mô hình 65B vừa một GPU 48 GB. Quantize tốn ít vì adapter học bên trên các weights đã quantize. Ở đây, trên base NF4 thật của gpt-tiny, weights của mô hình chiếm chưa tới một phần ba bộ nhớ của base f32 của LoRA, LM loss held-out gần như không đổi, và LoRA trên nó cho điểm như LoRA trên f32, trong một khoảng tin cậy qua ba seed rộng vài điểm: một khác biệt nhỏ có thể ẩn trong đó. Các mức của NF4 tái tạo weights tốt hơn các mức cách đều nhau về tổng thể, dù các mức đều làm sai số lớn nhất của một weight nhỏ hơn, và ở kích thước này chính các activation, không phải weights, chiếm phần lớn bộ nhớ của một training step."),
    (17, "Gradient accumulation có giống một batch lớn hơn không?",
     "Cộng gradient của k micro-batch, mỗi cái nhân 1/k, bằng gradient của một batch lớn gấp k chỉ khi loss của mỗi micro-batch là trung bình trên cùng số số hạng, như loss classification trên các micro-batch bằng nhau. Với LM loss tính theo token, các micro-batch có số target tokens khác nhau, nên lấy trung bình các giá trị trung bình của chúng sẽ đặt trọng số không đều cho các token. Accumulation chính xác cộng loss của từng token và chia cho số target của toàn bộ batch tích lũy; Trainer của tunelab làm đúng như vậy, như Hugging Face làm với num_items_in_batch, nên k micro-batch cỡ b cho loss và gradient của một batch cỡ k·b, với mọi loss."),
];
