//! Pitfall: overfitting a tiny dataset. Full fine-tuning on a handful of examples drives the
//! training loss down while the validation loss, after a minimum, climbs again: the model
//! memorises the examples and grows over-confident on new ones. Then the usual guards, each
//! one change from that run: early stopping on the validation loss, weight decay, dropout, and
//! a parameter-efficient method (LoRA) that trains 2% of the weights.
//!
//! Judged over seeds, only early stopping fixes it every time at this scale: weight decay and
//! LoRA lower the final validation loss clearly on some seeds and not on others, dropout raised
//! it on every seed of a full run, and the claims say in how many seeds each one helped.

use crate::data::tasks::Task;
use crate::error::Result;
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::runs::{train_run, Outcome, Run};
use crate::peft::lora::LoraConfig;
use crate::peft::MethodSpec;
use crate::train::progress::Progress;
use serde::Serialize;

/// One run of the experiment.
#[derive(Debug, Clone, Serialize)]
pub struct OverfitRow {
    pub label: String,
    pub steps: usize,
    /// Loss of the first training step.
    pub first_train_loss: f64,
    /// Mean loss of the last five training steps.
    pub final_train_loss: f64,
    pub best_val_loss: f64,
    pub best_val_step: usize,
    /// Validation loss at the last evaluation (where the run stopped).
    pub final_val_loss: f64,
    pub final_val_accuracy: f64,
    pub stopped_early: bool,
}

/// The measurements.
#[derive(Debug, Clone, Serialize)]
pub struct Overfit {
    pub train_examples: usize,
    pub val_examples: usize,
    pub budget_steps: usize,
    /// The first row is the unregularised run; each other row changes one thing.
    pub rows: Vec<OverfitRow>,
    /// The unregularised run's curve: (step, training loss, validation loss).
    pub curve: Vec<(usize, f64, f64)>,
}

fn tail_mean(xs: &[f64], n: usize) -> f64 {
    let t = &xs[xs.len().saturating_sub(n)..];
    t.iter().sum::<f64>() / t.len().max(1) as f64
}

fn row(label: &str, o: &Outcome) -> OverfitRow {
    let vals = o.val_losses();
    let (best_val_step, best_val_loss) =
        vals.iter()
            .copied()
            .fold((0, f64::INFINITY), |b, v| if v.1 < b.1 { v } else { b });
    let last = o
        .record
        .evals
        .last()
        .map(|(_, m)| m.clone())
        .unwrap_or_default();
    OverfitRow {
        label: label.into(),
        steps: o.steps(),
        first_train_loss: o.record.losses.first().copied().unwrap_or(f64::NAN),
        final_train_loss: tail_mean(&o.record.losses, 5),
        best_val_loss,
        best_val_step,
        final_val_loss: last.get("loss").copied().unwrap_or(f64::NAN),
        final_val_accuracy: last.get("accuracy").copied().unwrap_or(f64::NAN),
        stopped_early: o.report.as_ref().is_some_and(|r| r.stopped_early),
    }
}

/// How much lower a guard's final validation loss must be to count as a fix: a guard that moves
/// it by a few thousandths (weight decay 0.1 over twenty steps does) has changed nothing.
pub const CLEAR: f64 = 0.1;

/// Runs the unregularised run and its four guarded variants.
pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Overfit> {
    let train_examples = mode.pick(8, 32);
    let val_examples = mode.pick(32, 150);
    let steps = mode.pick(16, 100);
    let every = mode.pick(4, 10);
    let base = |spec: MethodSpec, lr: f64| {
        let mut r = Run::new(Task::Sentiment, spec, lr, steps, 8)
            .seed(seed)
            .eval_every(every, val_examples);
        r.train_limit = Some(train_examples);
        r.dropout = Some(0.0);
        r
    };
    let full = || base(MethodSpec::Full { last_k: None }, 1e-3);
    let plain = train_run(&full(), "full fine-tuning, no guard", progress)?;
    let mut early = full();
    early.args.early_stopping_patience = Some(2);
    let mut decay = full();
    decay.args.weight_decay = 0.1;
    let mut dropout = full();
    dropout.dropout = Some(0.1);
    let lora = base(MethodSpec::Lora(LoraConfig::default()), 3e-3);
    let mut rows = vec![row("full FT, no guard", &plain)];
    for (label, r) in [
        ("+ early stopping (patience 2)", early),
        ("+ weight decay 0.1", decay),
        ("+ dropout 0.1", dropout),
        ("LoRA r=8 q,v instead", lora),
    ] {
        let o = train_run(&r, label, progress)?;
        rows.push(row(label, &o));
    }
    let curve = plain
        .val_losses()
        .into_iter()
        .map(|(s, v)| (s, plain.record.losses[s - 1], v))
        .collect();
    Ok(Overfit {
        train_examples,
        val_examples,
        budget_steps: steps,
        rows,
        curve,
    })
}

impl Overfit {
    pub fn plain(&self) -> &OverfitRow {
        &self.rows[0]
    }

    /// The row whose label starts with `prefix`.
    pub fn row(&self, prefix: &str) -> Option<&OverfitRow> {
        self.rows.iter().find(|r| r.label.starts_with(prefix))
    }

    /// The unregularised run's validation loss rose after its minimum by this much.
    pub fn val_rise(&self) -> f64 {
        self.plain().final_val_loss - self.plain().best_val_loss
    }
}

impl Evidence for Overfit {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny with {} training examples, batch 8, up to {} steps, dropout 0 unless stated;\n\
             validation loss on {} held-out examples\n\n",
            self.train_examples, self.budget_steps, self.val_examples
        );
        s.push_str("the unguarded run's curve:\n");
        let rows: Vec<Vec<String>> = self
            .curve
            .iter()
            .map(|&(st, t, v)| vec![st.to_string(), num(t, 4), num(v, 4)])
            .collect();
        s.push_str(&table(&["step", "train loss (batch)", "val loss"], &rows));
        s.push('\n');
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    r.steps.to_string(),
                    num(r.final_train_loss, 4),
                    format!("{} @{}", num(r.best_val_loss, 4), r.best_val_step),
                    num(r.final_val_loss, 4),
                    num(r.final_val_accuracy, 3),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "run",
                "steps",
                "train loss (last 5)",
                "best val loss @step",
                "final val loss",
                "val acc",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let p = self.plain();
        let mut c = vec![
            Claim::new(
                "without a guard the training loss falls",
                p.final_train_loss < p.first_train_loss,
            )
            .measured(
                "first − last-5 training loss",
                p.first_train_loss - p.final_train_loss,
                Fmt::Signed(3),
            ),
            Claim::new(
                "... while the validation loss rises after its minimum",
                self.val_rise() > 0.0 && p.best_val_step < p.steps,
            )
            .measured("final − best val loss", self.val_rise(), Fmt::Signed(3)),
        ];
        if let Some(e) = self.row("+ early") {
            c.push(
                Claim::new(
                    "early stopping stops before the budget at a lower validation loss",
                    e.stopped_early && e.final_val_loss < p.final_val_loss,
                )
                .measured(
                    "unguarded − early-stopped final val loss",
                    p.final_val_loss - e.final_val_loss,
                    Fmt::Signed(3),
                ),
            );
        }
        for (prefix, what) in [
            ("+ weight", "weight decay"),
            ("+ dropout", "dropout"),
            ("LoRA", "LoRA"),
        ] {
            if let Some(r) = self.row(prefix) {
                c.push(
                    Claim::new(
                        format!(
                            "{what} ends at a validation loss clearly below the unguarded run's (by over {CLEAR} nats)"
                        ),
                        r.final_val_loss < p.final_val_loss - CLEAR,
                    )
                    .measured(
                        format!("unguarded − {what} final val loss"),
                        p.final_val_loss - r.final_val_loss,
                        Fmt::Signed(3),
                    ),
                );
            }
        }
        c
    }
}
