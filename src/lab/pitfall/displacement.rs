//! Pitfall: DPO's likelihood displacement. DPO's loss sees only the log-ratio margin
//! h = log(π/π_ref)(y_c) − log(π/π_ref)(y_r) (its gradient is the same on both responses, with
//! opposite signs), so nothing in it keeps the chosen response likely: the margin can grow while
//! *both* log-probabilities fall, the rejected one faster. Pal et al. 2024 ("Smaug: Fixing Failure
//! Modes of Preference Optimisation with DPO-Positive") prove it for pairs that differ in a few
//! tokens and measure it on real data; Razin et al. 2024 ("Unintentional Unalignment: Likelihood
//! Displacement in Direct Preference Optimization") trace it to chosen and rejected responses
//! whose hidden representations are alike: pushing the rejected one down pulls the similar
//! chosen one down with it, and the probability goes to responses that are neither.
//!
//! The fix: a term that rewards the chosen response's likelihood itself. Here the NLL of the
//! chosen responses added to DPO's loss, TRL's `loss_type = ["sigmoid", "sft"]` with
//! `loss_weights = [1, α]` (RPO, Pang et al. 2024, "Iterative Reasoning Preference
//! Optimization"; TRL 0.x's `rpo_alpha`); and ORPO, whose loss has the NLL built in (Hong et al.
//! 2024). The pairs are the world's `style` kind: a concise answer against the same answer
//! wrapped in rambling filler or insults, so the rejected response holds the chosen one word for
//! word — the most alike pairs there are, and the ones where pushing the rejected response down
//! drags the chosen one down with it. (On the `fact` and `code` kinds, one fact or operator
//! apart, gpt-tiny learns no preference that carries to held-out pairs at this budget: both
//! log-probabilities move together and the margin stays near 0.)
//!
//! Measured on held-out pairs with LoRA from the shipped model (the policy starts exactly at the
//! reference): the reward margin, and the change of log π of the chosen and of the rejected
//! responses (nats, summed over the response).
//!
//! Displacement is a tendency, not a law: it grows while the loss still pushes, and stops once
//! every training pair's margin is wide enough that σ(−β h) ≈ 0. With batches of 8 pairs at
//! lr 5e-3 the loss saturated early on one seed in three, whose chosen log-probability ended
//! slightly *up*; batches of 4 (more, noisier pushes on fewer rejected responses per step) show
//! the fall on each seed tried, and are what runs here. The claims say on how many seeds it held.

use super::align::{pairs, pristine, train_preference, PreferenceRow, PreferenceRun};
use crate::error::Result;
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::loss::preference::PreferenceOptions;
use crate::train::progress::Progress;
use serde::Serialize;

/// The kind of pair: the rejected response holds the chosen one (see the module doc).
pub const PAIR_KINDS: [&str; 1] = ["style"];
/// DPO's β (TRL's default), the same for every run.
pub const BETA: f64 = 0.1;
/// LoRA's learning rate, the same for every run. With batches of 4 pairs: the smaller the
/// batch, the more each step pushes a few rejected responses down (see the module doc).
pub const LR: f64 = 7e-3;
pub const BATCH: usize = 4;
/// α, the weight of the SFT term (the RPO paper's recommendation).
pub const SFT_WEIGHT: f64 = 1.0;
/// How much preference accuracy the fix may lose and still count as costing nothing.
pub const SIMILAR: f64 = 0.1;

/// The measurements of one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Displacement {
    pub train_pairs: usize,
    pub validation_pairs: usize,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    /// Plain DPO, DPO + SFT on the chosen responses, and (in full mode) ORPO.
    pub rows: Vec<PreferenceRow>,
}

impl Displacement {
    pub fn dpo(&self) -> &PreferenceRow {
        &self.rows[0]
    }
    pub fn dpo_sft(&self) -> &PreferenceRow {
        &self.rows[1]
    }
    pub fn orpo(&self) -> Option<&PreferenceRow> {
        self.rows.get(2)
    }
}

/// Plain DPO, DPO with the SFT term and ORPO, the same steps, learning rate, data and seed.
pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Displacement> {
    let train = mode.pick(64, 128);
    let validation = mode.pick(24, 64);
    let steps = mode.pick(24, 48);
    let (batch, lr) = (BATCH, LR);
    let (base, held) = pristine(1)?;
    let data = pairs(&PAIR_KINDS, train, validation)?;
    let run = |label: &str, loss_type: &str, beta: Option<f64>, sft_weight: f64| PreferenceRun {
        label: label.into(),
        objective: PreferenceOptions {
            loss_type: loss_type.into(),
            beta,
            ..PreferenceOptions::default()
        },
        sft_weight,
        lr,
        steps,
        batch,
    };
    let mut plan = vec![
        run("DPO", "sigmoid", Some(BETA), 0.0),
        run(
            &format!("DPO + {SFT_WEIGHT} · SFT (RPO)"),
            "sigmoid",
            Some(BETA),
            SFT_WEIGHT,
        ),
    ];
    if mode == Mode::Full {
        // ORPO's λ is its registry default (TRL's `beta` = 0.1).
        plan.push(run("ORPO (NLL built in)", "orpo", None, 0.0));
    }
    let mut rows = Vec::new();
    for r in plan {
        rows.push(train_preference(&base, &held, &data, &r, seed, progress)?);
    }
    Ok(Displacement {
        train_pairs: data.train.len(),
        validation_pairs: data.validation.len(),
        steps,
        batch,
        lr,
        rows,
    })
}

impl Evidence for Displacement {
    fn render(&self) -> String {
        let mut s = format!(
            "{} training pairs of the style kind (the rejected response is the chosen one wrapped in \
             filler or insults), LoRA r=8 q,v on gpt-tiny,\n{} steps of {} at lr {:.0e}, DPO β {BETA}; on {} held-out \
             pairs: Δ log π = log π − log π_ref, summed over the response;\nforgetting = LM loss on held-out pre-training text after minus before\n\n",
            self.train_pairs, self.steps, self.batch, self.lr, self.validation_pairs
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    num(r.accuracy, 3),
                    num(r.margin, 3),
                    format!("{:+.2}", r.chosen_change),
                    format!("{:+.2}", r.rejected_change),
                    if r.displaced() { "yes" } else { "no" }.into(),
                    format!("{:+.3}", r.forgetting.delta()),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "run",
                "pref acc",
                "margin",
                "Δ log π chosen",
                "Δ log π rejected",
                "both fell",
                "forgetting",
            ],
            &rows,
        ));
        s.push_str(
            "\n(margins are each objective's own rewards: DPO's β·h; ORPO's, in full mode, λ · mean token log-probability)\n",
        );
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (d, f) = (self.dpo(), self.dpo_sft());
        let mut c = vec![
            Claim::new(
                "DPO raises the held-out reward margin above 0",
                d.margin > 0.0,
            )
            .measured("DPO margin", d.margin, Fmt::Signed(3)),
            Claim::new(
                "... while the chosen log-probability falls",
                d.chosen_change < 0.0,
            )
            .measured("DPO Δ log π chosen (nats)", d.chosen_change, Fmt::Signed(2)),
            Claim::new(
                "... and the rejected one falls further (likelihood displacement: both fall)",
                d.displaced() && d.rejected_change < d.chosen_change,
            )
            .measured(
                "DPO Δ log π rejected (nats)",
                d.rejected_change,
                Fmt::Signed(2),
            ),
            Claim::new(
                "the SFT term keeps the chosen log-probability above plain DPO's",
                f.chosen_change > d.chosen_change,
            )
            .measured(
                "DPO+SFT − DPO Δ log π chosen (nats)",
                f.chosen_change - d.chosen_change,
                Fmt::Signed(2),
            ),
            Claim::new(
                "with the SFT term the chosen log-probability rises",
                f.chosen_change > 0.0,
            )
            .measured(
                "DPO+SFT Δ log π chosen (nats)",
                f.chosen_change,
                Fmt::Signed(2),
            ),
            Claim::new(
                format!(
                    "the SFT term costs no preference accuracy (within {SIMILAR} of plain DPO's)"
                ),
                f.accuracy >= d.accuracy - SIMILAR,
            )
            .measured(
                "DPO+SFT − DPO held-out preference accuracy",
                f.accuracy - d.accuracy,
                Fmt::Signed(3),
            ),
        ];
        if let Some(o) = self.orpo() {
            c.push(
                Claim::new(
                    "ORPO keeps the chosen log-probability above plain DPO's",
                    o.chosen_change > d.chosen_change,
                )
                .measured(
                    "ORPO − DPO Δ log π chosen (nats)",
                    o.chosen_change - d.chosen_change,
                    Fmt::Signed(2),
                ),
            );
        }
        c
    }
}
