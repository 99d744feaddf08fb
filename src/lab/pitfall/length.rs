//! Pitfall: length bias from GRPO's per-sequence normalisation. GRPO as published (Shao et al.
//! 2024) averages each completion's token losses over its own length, 1/|o_i| Σ_t, before
//! averaging over completions (TRL's `loss_type = "grpo"`). Liu et al. 2025 ("Understanding
//! R1-Zero-Like Training: A Critical Perspective", Dr. GRPO) point out what that does to the
//! gradient: every token of a completion is pushed with weight A_i / |o_i|. A *right* completion
//! (A > 0) is pushed up hardest when it is short, a *wrong* one (A < 0) pushed down hardest when
//! it is short and barely when it is long — so the policy learns that, when wrong, longer is
//! safer, and wrong answers grow. Dr. GRPO divides every completion by the same constant (the
//! maximum completion length, TRL's `"dr_grpo"`), so a token weighs A_i / L_max whatever the
//! completion's length, and the bias is gone.
//!
//! Both runs start from the same supervised warm-up on the code task (full fine-tuning), train
//! LoRA with the execution reward and no KL term at the same steps and learning rate, and differ
//! only in `loss_type`. After training, completions of the training prompts are sampled and split
//! by their reward: the claims compare the mean length of the wrong ones (and of the right ones)
//! with the warmed-up model's and with each other.
//!
//! The comparison between the two runs is the claim that measures the bias. The length of the
//! wrong completions of one run against the warmed-up model's mixes it with *which* completions
//! are still wrong: as a run learns, the prompts it keeps failing are the harder ones, whose
//! programs are longer, so the wrong completions can grow under Dr. GRPO too (by less), and the
//! claim that Dr. GRPO leaves them where they were (the paper's figure) is printed with the seeds
//! it held in.

use super::align::{completion_lengths, train_grpo, warm_up, GrpoRow, GrpoRun, Lengths, Probe};
use super::align::{WarmUp, LENGTH_SALT};
use crate::error::Result;
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::loss::grpo::LossType;
use crate::nn::NoHooks;
use crate::train::grpo::GrpoOptions;
use crate::train::progress::Progress;
use serde::Serialize;

/// The learning rate of both runs (high enough that lengths move in this budget).
pub const LR: f64 = 1e-2;

/// The measurements of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct LengthBias {
    pub warm_steps: usize,
    pub prompts: usize,
    pub num_generations: usize,
    pub max_completion_length: usize,
    pub steps: usize,
    /// Completions sampled per training prompt to measure the lengths.
    pub samples: usize,
    /// The warmed-up model's completions of the training prompts.
    pub before: Lengths,
    /// `grpo` (per sequence), then `dr_grpo` (a constant).
    pub rows: Vec<GrpoRow>,
}

impl LengthBias {
    pub fn grpo(&self) -> &GrpoRow {
        &self.rows[0]
    }
    pub fn dr_grpo(&self) -> &GrpoRow {
        &self.rows[1]
    }
    fn after(r: &GrpoRow) -> Lengths {
        r.lengths.unwrap_or(Lengths {
            right_len: f64::NAN,
            wrong_len: f64::NAN,
            at_limit: f64::NAN,
            ..Lengths::default()
        })
    }
    /// Mean length of the wrong completions after `r`'s training.
    pub fn wrong_len(r: &GrpoRow) -> f64 {
        Self::after(r).wrong_len
    }
    pub fn right_len(r: &GrpoRow) -> f64 {
        Self::after(r).right_len
    }
}

/// The warm-up, then GRPO with each normalisation.
pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<LengthBias> {
    let setup = WarmUp {
        examples: mode.pick(32, 2000),
        steps: mode.pick(40, 300),
        lr: 2e-3,
        batch: 8,
        prompts: mode.pick(4, 8),
    };
    let steps = mode.pick(4, 30);
    let samples = mode.pick(8, 16);
    let options = GrpoOptions {
        num_generations: 8,
        max_completion_length: 32,
        beta: 0.0,
        ..GrpoOptions::default()
    };
    let probe = Probe {
        examples: mode.pick(8, 32),
        every: 0,
        length_samples: samples,
    };
    let warm = warm_up(setup, seed, progress)?;
    let before = completion_lengths(
        &warm.tm,
        &warm.base.store,
        &NoHooks,
        &warm.tm.train,
        samples,
        &options,
        seed ^ LENGTH_SALT,
    )?;
    let mut rows = Vec::new();
    for loss_type in [LossType::Grpo, LossType::DrGrpo] {
        let run = GrpoRun {
            label: format!("loss_type {}", loss_type.name()),
            options: GrpoOptions {
                loss_type,
                ..options.clone()
            },
            lr: LR,
            steps,
        };
        rows.push(train_grpo(&warm, &run, probe, seed, progress)?);
    }
    Ok(LengthBias {
        warm_steps: setup.steps,
        prompts: warm.tm.train.len(),
        num_generations: options.num_generations,
        max_completion_length: options.max_completion_length,
        steps,
        samples,
        before,
        rows,
    })
}

impl Evidence for LengthBias {
    fn render(&self) -> String {
        let mut s = format!(
            "supervised warm-up: full fine-tuning of gpt-tiny on the code task, {} steps; then GRPO with \
             LoRA on {} training prompts × {} completions\n(at most {} tokens), {} steps at lr {LR:.0e}, \
             no KL term, execution reward; lengths of {} sampled completions of each training prompt\n\
             (tokens, the end token counted), split by reward\n\n",
            self.warm_steps,
            self.prompts,
            self.num_generations,
            self.max_completion_length,
            self.steps,
            self.samples
        );
        let line = |label: &str, l: &Lengths, reward: String| {
            vec![
                label.to_string(),
                l.right.to_string(),
                num(l.right_len, 2),
                l.wrong.to_string(),
                num(l.wrong_len, 2),
                format!("{:.1}%", 100.0 * l.at_limit),
                reward,
            ]
        };
        let mut rows = vec![line("warmed-up model", &self.before, String::new())];
        for r in &self.rows {
            rows.push(line(
                &r.label,
                &LengthBias::after(r),
                format!(
                    "{} → {}",
                    num(r.reward_first(3), 3),
                    num(r.reward_last(3), 3)
                ),
            ));
        }
        s.push_str(&table(
            &[
                "model",
                "right",
                "right length",
                "wrong",
                "wrong length",
                "at the limit",
                "train reward (first 3 → last 3 steps)",
            ],
            &rows,
        ));
        for r in &self.rows {
            if let Some(d) = &r.diverged {
                s.push_str(&format!("{}: diverged: {d}\n", r.label));
            }
        }
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (g, d) = (self.grpo(), self.dr_grpo());
        let (gw, dw) = (LengthBias::wrong_len(g), LengthBias::wrong_len(d));
        let (gr, dr) = (LengthBias::right_len(g), LengthBias::right_len(d));
        vec![
            Claim::new(
                "with GRPO's per-sequence normalisation the wrong completions grow longer than the warmed-up model's",
                gw > self.before.wrong_len,
            )
            .measured(
                "grpo − warmed-up wrong-completion length (tokens)",
                gw - self.before.wrong_len,
                Fmt::Signed(2),
            ),
            Claim::new(
                "the wrong completions end longer with grpo than with Dr. GRPO",
                gw > dw,
            )
            .measured(
                "grpo − dr_grpo wrong-completion length (tokens)",
                gw - dw,
                Fmt::Signed(2),
            ),
            Claim::new(
                "Dr. GRPO keeps the wrong completions as long as the warmed-up model's (within 1 token)",
                (dw - self.before.wrong_len).abs() <= 1.0,
            )
            .measured(
                "dr_grpo − warmed-up wrong-completion length (tokens)",
                dw - self.before.wrong_len,
                Fmt::Signed(2),
            ),
            Claim::new(
                "the right completions end shorter with grpo than with Dr. GRPO",
                gr < dr,
            )
            .measured(
                "grpo − dr_grpo right-completion length (tokens)",
                gr - dr,
                Fmt::Signed(2),
            ),
        ]
    }
}
