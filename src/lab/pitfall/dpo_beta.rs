//! Pitfall: a DPO β too small. β is the weight of the KL constraint DPO is derived from
//! (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a
//! Reward Model"): max E[r] − β KL(π ‖ π_ref), whose optimum π* ∝ π_ref · exp(r / β) strays
//! further from the reference the smaller β is. In the loss, −log σ(β h) on the log-ratio margin
//! h = log(π/π_ref)(y_c) − log(π/π_ref)(y_r), β sets the margin at which a pair stops being
//! pushed: its weight σ(−β h) only fades once β h is a few units, so β = 0.01 keeps pushing until
//! the log-ratios are apart by hundreds of nats where β = 0.5 stops at ten. The gradient's own
//! scale (β) does not slow the small β down: AdamW divides every update by the gradient's running
//! size. So at the same steps and learning rate the small β moves the policy further from the
//! reference — mostly by pushing the rejected responses down, dragging other text with them —
//! and the larger β is the fix.
//!
//! Measured with LoRA from the shipped model, on held-out preference pairs of every kind (the
//! policy starts exactly at the reference): the mean |log π − log π_ref| over both responses of
//! each pair (how far the policy moved), the log-probability changes, the preference accuracy, and
//! forgetting, the LM loss on held-out pre-training text.

use super::align::{pairs, pristine, train_preference, PreferenceRow, PreferenceRun};
use crate::data::preference::KINDS;
use crate::error::Result;
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::loss::preference::PreferenceOptions;
use crate::train::progress::Progress;
use serde::Serialize;

/// The β compared: too small, TRL's default, and a larger one.
pub const SMALL_BETA: f64 = 0.01;
pub const DEFAULT_BETA: f64 = 0.1;
pub const LARGE_BETA: f64 = 0.5;
/// LoRA's learning rate, the same for every β.
pub const LR: f64 = 5e-3;
/// How much better the small β's preference accuracy may be and still count as "similar": the
/// point is that it buys nothing for the distance it travels.
pub const SIMILAR: f64 = 0.1;

/// The measurements of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct DpoBeta {
    pub train_pairs: usize,
    pub validation_pairs: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// β = 0.01, (in full mode) 0.1, and 0.5.
    pub rows: Vec<PreferenceRow>,
}

impl DpoBeta {
    pub fn small(&self) -> &PreferenceRow {
        &self.rows[0]
    }
    /// TRL's default β, run in full mode only.
    pub fn default_beta(&self) -> Option<&PreferenceRow> {
        self.rows.iter().find(|r| r.beta == DEFAULT_BETA)
    }
    pub fn large(&self) -> &PreferenceRow {
        self.rows.last().expect("at least two runs")
    }
}

/// DPO with LoRA at each β, the same steps, learning rate, data and seed.
pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<DpoBeta> {
    let train = mode.pick(64, 128);
    let validation = mode.pick(24, 64);
    let steps = mode.pick(20, 40);
    let batch = mode.pick(4, 8);
    let (base, held) = pristine(mode.pick(1, 2))?;
    let data = pairs(&KINDS, train, validation)?;
    let betas = match mode {
        Mode::Quick => vec![SMALL_BETA, LARGE_BETA],
        Mode::Full => vec![SMALL_BETA, DEFAULT_BETA, LARGE_BETA],
    };
    let mut rows = Vec::new();
    for beta in betas {
        let r = PreferenceRun {
            label: format!("DPO β = {beta}"),
            objective: PreferenceOptions {
                loss_type: "sigmoid".into(),
                beta: Some(beta),
                ..PreferenceOptions::default()
            },
            sft_weight: 0.0,
            lr: LR,
            steps,
            batch,
        };
        rows.push(train_preference(&base, &held, &data, &r, seed, progress)?);
    }
    Ok(DpoBeta {
        train_pairs: data.train.len(),
        validation_pairs: data.validation.len(),
        steps,
        batch,
        lr: LR,
        rows,
    })
}

impl Evidence for DpoBeta {
    fn render(&self) -> String {
        let mut s = format!(
            "DPO (sigmoid) with LoRA r=8 q,v on gpt-tiny: {} training pairs of every kind, {} steps of {} \
             at lr {:.0e} for every β;\non {} held-out pairs: Δ log π = log π − log π_ref (summed over \
             the response), drift = mean |Δ log π| over both responses,\nh = margin / β (the log-ratio \
             margin); forgetting = LM loss on held-out pre-training text after minus before\n\n",
            self.train_pairs, self.steps, self.batch, self.lr, self.validation_pairs
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    format!("β = {}", r.beta),
                    num(r.accuracy, 3),
                    num(r.margin, 3),
                    num(r.margin / r.beta, 1),
                    format!("{:+.2}", r.chosen_change),
                    format!("{:+.2}", r.rejected_change),
                    num(r.drift, 2),
                    format!("{:+.3}", r.forgetting.delta()),
                    format!("{} → {}", num(r.first_loss, 3), num(r.final_loss, 3)),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "run",
                "pref acc",
                "margin",
                "h",
                "Δ log π chosen",
                "Δ log π rejected",
                "drift",
                "forgetting",
                "loss (first 5 → last 5)",
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (s, l) = (self.small(), self.large());
        let mut c = vec![
            Claim::new(
                "β = 0.01 moves the policy further from the reference than β = 0.5",
                s.drift > l.drift,
            )
            .measured(
                "drift at β 0.01 / at β 0.5",
                s.drift / l.drift,
                Fmt::Times(2),
            ),
            Claim::new(
                "β = 0.01 forgets more pre-training text than β = 0.5",
                s.forgetting.delta() > l.forgetting.delta(),
            )
            .measured(
                "forgetting at β 0.01 − at β 0.5 (nats)",
                s.forgetting.delta() - l.forgetting.delta(),
                Fmt::Signed(3),
            ),
            Claim::new(
                format!(
                    "... for a similar preference accuracy: β = 0.01's is not above β = 0.5's by more than {SIMILAR}"
                ),
                s.accuracy <= l.accuracy + SIMILAR,
            )
            .measured(
                "held-out preference accuracy at β 0.01 − at β 0.5",
                s.accuracy - l.accuracy,
                Fmt::Signed(3),
            ),
        ];
        if let Some(d) = self.default_beta() {
            c.extend([
                Claim::new(
                    "β = 0.01 moves the policy further from the reference than β = 0.1",
                    s.drift > d.drift,
                )
                .measured(
                    "drift at β 0.01 / at β 0.1",
                    s.drift / d.drift,
                    Fmt::Times(2),
                ),
                Claim::new(
                    "the drift shrinks as β grows (0.01 > 0.1 > 0.5)",
                    s.drift > d.drift && d.drift > l.drift,
                ),
                Claim::new(
                    "β = 0.01 forgets more pre-training text than β = 0.1",
                    s.forgetting.delta() > d.forgetting.delta(),
                )
                .measured(
                    "forgetting at β 0.01 − at β 0.1 (nats)",
                    s.forgetting.delta() - d.forgetting.delta(),
                    Fmt::Signed(3),
                ),
                Claim::new(
                    format!(
                        "... for a similar preference accuracy: β = 0.01's is not above β = 0.1's by more than {SIMILAR}"
                    ),
                    s.accuracy <= d.accuracy + SIMILAR,
                )
                .measured(
                    "held-out preference accuracy at β 0.01 − at β 0.1",
                    s.accuracy - d.accuracy,
                    Fmt::Signed(3),
                ),
            ]);
        }
        c
    }
}
