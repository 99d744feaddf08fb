//! Pitfall: a learning rate too high for fine-tuning. Full fine-tuning of the pre-trained model
//! at a high learning rate moves every weight far from where pre-training put it: the training
//! loss jumps instead of falling, and the model forgets language modelling — measured as the
//! rise of its LM loss on held-out pre-training text ([`crate::lab::forgetting`]). The same
//! budget at a sane learning rate, and LoRA (which leaves the base weights alone), are the fix.

use crate::data::tasks::Task;
use crate::error::Result;
use crate::lab::evidence::{nan_as_inf, num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::forgetting::{heldout_batches, Forgetting};
use crate::lab::runs::{train_run, Run};
use crate::peft::lora::LoraConfig;
use crate::peft::MethodSpec;
use crate::train::progress::Progress;
use crate::train::trainer::Split;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct LrRow {
    pub label: String,
    pub lr: f64,
    pub steps: usize,
    pub first_loss: f64,
    /// The largest training loss of any step.
    pub max_loss: f64,
    /// Mean training loss of the last five steps.
    pub final_loss: f64,
    pub val_accuracy: f64,
    pub forgetting: Forgetting,
    /// The Trainer's message if the loss became NaN or infinite.
    pub diverged: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LrPitfall {
    pub steps: usize,
    pub batch: usize,
    /// Too-high full fine-tuning, sane full fine-tuning, LoRA.
    pub rows: Vec<LrRow>,
}

/// The learning rates compared.
pub const HIGH_LR: f64 = 1e-2;
pub const SANE_LR: f64 = 1e-4;
pub const LORA_LR: f64 = 3e-3;

pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<LrPitfall> {
    let steps = mode.pick(12, 100);
    let batch = 8;
    let val = mode.pick(32, 300);
    let full = MethodSpec::Full { last_k: None };
    let mut rows = Vec::new();
    let mut batches = None;
    for (label, spec, lr) in [
        ("full FT, lr too high", full.clone(), HIGH_LR),
        ("full FT, sane lr", full, SANE_LR),
        (
            "LoRA r=8 q,v",
            MethodSpec::Lora(LoraConfig::default()),
            LORA_LR,
        ),
    ] {
        let o = train_run(
            &Run::new(Task::Sentiment, spec, lr, steps, batch).seed(seed),
            label,
            progress,
        )?;
        let batches = match &batches {
            Some(b) => b,
            // Quick mode: one batch of held-out text, as `compare --quick` scores forgetting.
            None => {
                let mut b = heldout_batches(&o.base)?;
                b.truncate(mode.pick(1, 4));
                batches.insert(b)
            }
        };
        let l = &o.record.losses;
        let tail = &l[l.len().saturating_sub(5)..];
        let val_accuracy = if o.diverged.is_some() {
            f64::NAN
        } else {
            o.evaluate(Split::Validation, val)?["accuracy"]
        };
        rows.push(LrRow {
            label: label.into(),
            lr,
            steps: o.steps(),
            first_loss: l.first().copied().unwrap_or(f64::NAN),
            max_loss: l.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            final_loss: tail.iter().sum::<f64>() / tail.len().max(1) as f64,
            val_accuracy,
            forgetting: o.forgetting(batches)?,
            diverged: o.diverged.clone(),
        });
    }
    Ok(LrPitfall { steps, batch, rows })
}

impl LrPitfall {
    pub fn high(&self) -> &LrRow {
        &self.rows[0]
    }
    pub fn sane(&self) -> &LrRow {
        &self.rows[1]
    }
    pub fn lora(&self) -> &LrRow {
        &self.rows[2]
    }
}

impl Evidence for LrPitfall {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny, {} steps of batch {}, constant lr, clipping at 1.0;\n\
             forgetting = LM loss on held-out pre-training text after minus before\n\n",
            self.steps, self.batch
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    format!("{:.0e}", r.lr),
                    num(r.first_loss, 3),
                    num(r.max_loss, 3),
                    num(r.final_loss, 3),
                    num(r.val_accuracy, 3),
                    num(r.forgetting.before, 3),
                    num(r.forgetting.after, 3),
                    format!("{:+.3}", r.forgetting.delta()),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "run",
                "lr",
                "first loss",
                "max loss",
                "last-5 loss",
                "val acc",
                "LM before",
                "LM after",
                "forgetting",
            ],
            &rows,
        ));
        for r in &self.rows {
            if let Some(d) = &r.diverged {
                s.push_str(&format!("{}: {d}\n", r.label));
            }
        }
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (h, s, l) = (self.high(), self.sane(), self.lora());
        let fh = nan_as_inf(h.forgetting.delta());
        vec![
            Claim::new(
                "the high lr forgets more than the sane lr",
                fh > s.forgetting.delta(),
            )
            .measured(
                "high − sane lr forgetting (nats)",
                fh - s.forgetting.delta(),
                Fmt::Signed(3),
            ),
            Claim::new(
                "the high lr forgets more than LoRA",
                fh > l.forgetting.delta(),
            )
            .measured(
                "high lr − LoRA forgetting (nats)",
                fh - l.forgetting.delta(),
                Fmt::Signed(3),
            ),
            Claim::new(
                "the high lr trains worse: its last training losses are above the sane lr's",
                nan_as_inf(h.final_loss) > s.final_loss,
            )
            .measured(
                "high − sane lr last-5 training loss",
                nan_as_inf(h.final_loss) - s.final_loss,
                Fmt::Signed(3),
            ),
            Claim::new(
                "the sane lr forgets little (under 0.1 nats)",
                s.forgetting.delta() < 0.1,
            )
            .measured(
                "sane lr forgetting (nats)",
                s.forgetting.delta(),
                Fmt::Signed(3),
            ),
        ]
    }
}
