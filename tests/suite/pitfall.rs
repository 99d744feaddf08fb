//! Every pitfall in quick mode, asserting over seeds: each pitfall that trains runs on three
//! seeds (side by side), and a test asserts on the merged claims — that the list is not empty
//! and that each claim it relies on held in the stated number of seeds — and on the numbers of
//! every seed's run. Claims a run may not show are printed with their count and not asserted.

use tunelab::lab::evidence::{report, Judged, Mode};
use tunelab::lab::pitfall::{
    self, checkpoint, displacement, dpo_beta, explode, grpo_collapse, length, lr, overfit, padding,
};

use crate::common::{holds_in, judged, SEEDS};

#[test]
fn pitfalls_are_listed_and_an_unknown_name_lists_them() {
    let names: Vec<&str> = pitfall::PITFALLS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "overfit",
            "lr",
            "padding",
            "checkpoint",
            "explode",
            "dpo-beta",
            "displacement",
            "grpo-collapse",
            "length"
        ]
    );
    let err = pitfall::run("nope", Mode::Quick, SEEDS, &mut ())
        .err()
        .expect("unknown name")
        .to_string();
    assert!(
        err.contains("nope")
            && err.contains(
                "overfit, lr, padding, checkpoint, explode, dpo-beta, displacement, grpo-collapse, length"
            ),
        "{err}"
    );
}

#[test]
fn overfit_training_loss_falls_validation_loss_rises_early_stopping_stops_on_every_seed() {
    let j = judged(|s, p| overfit::run(Mode::Quick, s, p));
    holds_in(&j, "without a guard the training loss falls", SEEDS);
    holds_in(&j, "... while the validation loss rises", SEEDS);
    holds_in(&j, "early stopping stops before the budget", SEEDS);
    for r in &j.runs {
        let p = r.plain();
        assert!(
            p.final_train_loss < 0.5 * p.first_train_loss,
            "{}",
            report(&j)
        );
        assert!(
            r.val_rise() > 0.1,
            "validation loss did not rise: {}",
            report(&j)
        );
        let e = r.row("+ early").unwrap();
        assert!(
            e.stopped_early && e.steps < r.budget_steps,
            "{}",
            report(&j)
        );
        assert_eq!(r.rows.len(), 5);
        assert!(r.rows.iter().all(|row| row.final_val_loss.is_finite()));
    }
}

#[test]
fn lr_too_high_forgets_more_than_a_sane_lr_and_lora_on_every_seed() {
    let j = judged(|s, p| lr::run(Mode::Quick, s, p));
    holds_in(&j, "the high lr forgets more than the sane lr", SEEDS);
    holds_in(&j, "the high lr forgets more than LoRA", SEEDS);
    holds_in(&j, "the sane lr forgets little", SEEDS);
    let margin = j
        .verdict("the high lr forgets more than the sane lr")
        .unwrap();
    assert!(margin.min() > 0.5, "{}", report(&j));
    for r in &j.runs {
        let h = r.high();
        // Every row measured the same pre-trained model before training.
        assert!(r
            .rows
            .iter()
            .all(|x| x.forgetting.before == h.forgetting.before));
    }
}

#[test]
fn padding_fix_makes_padded_equal_unpadded() {
    let r = padding::run(Mode::Quick).unwrap();
    let j = Judged::once(r.clone());
    let v = j.verdicts();
    assert!(!v.is_empty());
    assert!(v.iter().all(|c| c.always()), "{}", report(&j));
    assert!(r.fixed_max_diff() < padding::SAME);
    assert!(r.wrong_min_diff() > padding::SAME);
    assert_eq!(r.gen_rows_wrong_fixed, 0);
    assert!(r.gen_rows_wrong_naive > 0);
}

#[test]
fn checkpoint_resume_equals_the_uninterrupted_run_on_every_seed() {
    let j = judged(|s, p| checkpoint::run(Mode::Quick, s, p));
    holds_in(&j, "the resumed run continues from the checkpoint", SEEDS);
    holds_in(&j, "the resumed run ends with exactly", SEEDS);
    holds_in(
        &j,
        "the steps trained after the resume compute exactly",
        SEEDS,
    );
    holds_in(
        &j,
        "without a checkpoint the steps done before the kill",
        SEEDS,
    );
    for r in &j.runs {
        assert_eq!(r.max_weight_diff, 0.0);
        assert_eq!(r.max_loss_diff_after_resume, 0.0);
        assert_eq!(r.accuracy_resumed, r.accuracy_uninterrupted);
        assert_eq!(r.steps_with_restart, r.total_steps + r.killed_at);
    }
    // The whole loss history is bit-identical on every seed, the losses before the kill read
    // back from trainer_state.json included (serde_json parses floats exactly: its
    // `float_roundtrip` feature).
    holds_in(&j, "the whole loss history", SEEDS);
    for r in &j.runs {
        assert_eq!(r.losses, r.resumed_losses, "{}", report(&j));
    }
    // Different seeds, different runs.
    assert_ne!(j.runs[0].losses, j.runs[1].losses);
}

#[test]
fn explode_post_ln_without_clipping_blows_up_and_clipping_fixes_it_on_every_seed() {
    let j = judged(|s, p| explode::run(Mode::Quick, s, p));
    holds_in(&j, "without clipping the post-LN run blows up", SEEDS);
    holds_in(&j, "clipping the gradient norm", SEEDS);
    holds_in(&j, "pre-LN with clipping trains", SEEDS);
    holds_in(&j, "post-LN spreads gradients", SEEDS);
    for r in &j.runs {
        let (post, clipped) = (r.post(), r.clipped());
        assert!(
            post.max_grad_norm() > 100.0 * clipped.clip.unwrap(),
            "{}",
            report(&j)
        );
        assert_eq!(post.layer_norms.len(), r.layers);
    }
}

#[test]
fn dpo_beta_too_small_drifts_further_and_forgets_more_than_a_larger_beta_on_every_seed() {
    let j = judged(|s, p| dpo_beta::run(Mode::Quick, s, p));
    println!("{}", report(&j));
    holds_in(
        &j,
        "β = 0.01 moves the policy further from the reference than β = 0.5",
        SEEDS,
    );
    holds_in(
        &j,
        "β = 0.01 forgets more pre-training text than β = 0.5",
        SEEDS,
    );
    for r in &j.runs {
        let (small, large) = (r.small(), r.large());
        assert_eq!(r.rows.len(), 2, "quick mode runs β 0.01 and 0.5");
        assert_eq!((small.beta, large.beta), (0.01, 0.5));
        for row in &r.rows {
            assert_eq!(row.steps, r.steps);
            assert!(row.drift.is_finite() && row.drift > 0.0, "{}", report(&j));
            assert!(row.accuracy.is_finite() && row.margin.is_finite());
            // Every run starts from the same pristine model.
            assert_eq!(row.forgetting.before, small.forgetting.before);
        }
        assert!(small.drift > 1.5 * large.drift, "{}", report(&j));
    }
}

#[test]
fn displacement_dpo_lowers_both_log_probs_and_an_sft_term_keeps_the_chosen_up_on_every_seed() {
    let j = judged(|s, p| displacement::run(Mode::Quick, s, p));
    println!("{}", report(&j));
    holds_in(&j, "DPO raises the held-out reward margin above 0", SEEDS);
    holds_in(&j, "... while the chosen log-probability falls", SEEDS);
    holds_in(&j, "... and the rejected one falls further", SEEDS);
    holds_in(
        &j,
        "the SFT term keeps the chosen log-probability above plain DPO's",
        SEEDS,
    );
    holds_in(
        &j,
        "with the SFT term the chosen log-probability rises",
        SEEDS,
    );
    for r in &j.runs {
        let (d, f) = (r.dpo(), r.dpo_sft());
        assert_eq!(r.rows.len(), 2, "quick mode runs DPO and DPO + SFT");
        assert!(r.orpo().is_none());
        assert!(d.displaced() && !f.displaced(), "{}", report(&j));
        assert!(d.rejected_change < d.chosen_change, "{}", report(&j));
        assert!(d.accuracy >= 0.9 && f.accuracy >= 0.9, "{}", report(&j));
        assert_eq!(
            (d.sft_weight, f.sft_weight),
            (0.0, displacement::SFT_WEIGHT)
        );
    }
}

#[test]
fn grpo_without_kl_at_a_high_lr_collapses_and_kl_with_a_sane_lr_does_not_on_every_seed() {
    let j = judged(|s, p| grpo_collapse::run(Mode::Quick, s, p));
    println!("{}", report(&j));
    holds_in(
        &j,
        "without a KL term at the high lr the training reward collapses",
        SEEDS,
    );
    holds_in(&j, "... and the policy drifts further", SEEDS);
    holds_in(&j, "the fix's KL to the warmed-up model stays under", SEEDS);
    // Quick mode's warm-up is too short for held-out programs to execute (accuracy 0 before and
    // after), and what the collapsed completions degenerate into (long repeats, or short junk)
    // varies by seed: those claims are printed, not asserted.
    for r in &j.runs {
        let (c, f) = (r.collapsed(), r.fixed());
        assert_eq!(r.rows.len(), 2, "quick mode runs the collapse and the fix");
        assert!(c.diverged.is_none() && f.diverged.is_none());
        assert_eq!(c.curve.len(), r.steps);
        assert_eq!(f.curve.len(), r.steps);
        // The probe measured both runs after their last step, the run without a KL term too.
        assert_eq!(c.evals.last().map(|e| e.0), Some(r.steps));
        assert!(c.last("kl") > 1.0, "{}", report(&j));
        assert!(f.last("kl") >= 0.0 && f.last("kl") < 0.1, "{}", report(&j));
        // Collapsed: no completion of the last step executes, so no group has a signal.
        let end = c.curve.last().unwrap();
        assert_eq!(end.reward_mean, 0.0, "{}", report(&j));
        assert_eq!(end.frac_reward_zero_std, 1.0);
        // Some of the warmed-up model's programs executed at the first step: GRPO had a signal.
        assert!(r.before("reward").is_finite() && c.reward_first(1) > 0.0);
    }
}

#[test]
fn length_grpo_and_dr_grpo_runs_measure_right_and_wrong_completion_lengths() {
    let j = judged(|s, p| length::run(Mode::Quick, s, p));
    // At this budget the bias is not asserted (it shows over the full run's 30 steps): the report
    // prints what the claims measured.
    println!("{}", report(&j));
    for r in &j.runs {
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.grpo().loss_type, "grpo");
        assert_eq!(r.dr_grpo().loss_type, "dr_grpo");
        let total = r.prompts * r.samples;
        for l in std::iter::once(r.before).chain(r.rows.iter().map(|x| x.lengths.unwrap())) {
            assert_eq!(l.right + l.wrong, total);
            for (n, len) in [(l.right, l.right_len), (l.wrong, l.wrong_len)] {
                if n > 0 {
                    assert!(
                        len >= 1.0 && len <= r.max_completion_length as f64,
                        "{}",
                        report(&j)
                    );
                } else {
                    assert!(len.is_nan());
                }
            }
            assert!((0.0..=1.0).contains(&l.at_limit));
        }
        for row in &r.rows {
            assert_eq!(row.curve.len(), r.steps);
            assert!(
                row.curve.iter().all(|s| s.kl.is_none()),
                "β = 0: no reference"
            );
        }
    }
}
