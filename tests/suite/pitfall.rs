//! Every pitfall in quick mode, asserting over seeds: each pitfall that trains runs on three
//! seeds (side by side), and a test asserts on the merged claims — that the list is not empty
//! and that each claim it relies on held in the stated number of seeds — and on the numbers of
//! every seed's run. Claims a run may not show are printed with their count and not asserted.

use tunelab::lab::evidence::{report, Judged, Mode};
use tunelab::lab::pitfall::{self, checkpoint, explode, lr, overfit, padding};

use crate::common::{holds_in, judged, SEEDS};

#[test]
fn pitfalls_are_listed_and_an_unknown_name_lists_them() {
    let names: Vec<&str> = pitfall::PITFALLS.iter().map(|p| p.name).collect();
    assert_eq!(names, ["overfit", "lr", "padding", "checkpoint", "explode"]);
    let err = pitfall::run("nope", Mode::Quick, SEEDS, &mut ())
        .err()
        .expect("unknown name")
        .to_string();
    assert!(
        err.contains("nope") && err.contains("overfit, lr, padding, checkpoint, explode"),
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
