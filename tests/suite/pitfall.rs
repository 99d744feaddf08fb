//! Every pitfall in quick mode, asserting the claims it prints that hold robustly (the rest are
//! printed with "does not hold here" when a run does not show them, and are not asserted).

use tunelab::lab::evidence::{report, Evidence, Mode};
use tunelab::lab::pitfall::{self, checkpoint, explode, lr, overfit, padding};

fn all_claims_hold(e: &dyn Evidence) {
    for c in e.claims() {
        assert!(c.holds, "claim does not hold: {}\n{}", c.text, report(e));
    }
}

#[test]
fn pitfalls_are_listed_and_an_unknown_name_lists_them() {
    let names: Vec<&str> = pitfall::PITFALLS.iter().map(|p| p.name).collect();
    assert_eq!(names, ["overfit", "lr", "padding", "checkpoint", "explode"]);
    let err = pitfall::run("nope", Mode::Quick, &mut ())
        .err()
        .expect("unknown name")
        .to_string();
    assert!(
        err.contains("nope") && err.contains("overfit, lr, padding, checkpoint, explode"),
        "{err}"
    );
}

#[test]
fn overfit_training_loss_falls_validation_loss_rises_early_stopping_stops() {
    let r = overfit::run(Mode::Quick, &mut ()).unwrap();
    let p = r.plain();
    assert!(
        p.final_train_loss < 0.5 * p.first_train_loss,
        "{}",
        report(&r)
    );
    assert!(
        r.val_rise() > 0.1,
        "validation loss did not rise: {}",
        report(&r)
    );
    assert!(p.best_val_step < p.steps, "{}", report(&r));
    let e = r.row("+ early").unwrap();
    assert!(
        e.stopped_early && e.steps < r.budget_steps,
        "{}",
        report(&r)
    );
    assert!(e.final_val_loss < p.final_val_loss, "{}", report(&r));
    assert_eq!(r.rows.len(), 5);
    assert!(r.rows.iter().all(|row| row.final_val_loss.is_finite()));
}

#[test]
fn lr_too_high_forgets_more_than_a_sane_lr_and_lora() {
    let r = lr::run(Mode::Quick, &mut ()).unwrap();
    let (h, s, l) = (r.high(), r.sane(), r.lora());
    assert!(
        h.forgetting.delta() > s.forgetting.delta() + 0.5,
        "{}",
        report(&r)
    );
    assert!(
        h.forgetting.delta() > l.forgetting.delta() + 0.5,
        "{}",
        report(&r)
    );
    assert!(s.forgetting.delta() < 0.1, "{}", report(&r));
    assert!(h.final_loss > s.final_loss, "{}", report(&r));
    // Every row measured the same pre-trained model before training.
    assert!(r
        .rows
        .iter()
        .all(|x| x.forgetting.before == h.forgetting.before));
}

#[test]
fn padding_fix_makes_padded_equal_unpadded() {
    let r = padding::run(Mode::Quick).unwrap();
    all_claims_hold(&r);
    assert!(r.fixed_max_diff() < padding::SAME);
    assert!(r.wrong_min_diff() > padding::SAME);
    assert_eq!(r.gen_rows_wrong_fixed, 0);
    assert!(r.gen_rows_wrong_naive > 0);
}

#[test]
fn checkpoint_resume_equals_the_uninterrupted_run() {
    let r = checkpoint::run(Mode::Quick, &mut ()).unwrap();
    all_claims_hold(&r);
    assert_eq!(r.losses, r.resumed_losses);
    assert_eq!(r.max_weight_diff, 0.0);
    assert_eq!(r.accuracy_resumed, r.accuracy_uninterrupted);
    assert_eq!(r.steps_with_restart, r.total_steps + r.killed_at);
}

#[test]
fn explode_post_ln_without_clipping_blows_up_and_clipping_fixes_it() {
    let r = explode::run(Mode::Quick, &mut ()).unwrap();
    let (post, clipped) = (r.post(), r.clipped());
    assert!(
        post.blew_up(),
        "post-LN without clipping did not blow up: {}",
        report(&r)
    );
    assert!(
        post.max_grad_norm() > 100.0 * clipped.clip.unwrap(),
        "{}",
        report(&r)
    );
    assert!(
        clipped.final_loss() < clipped.first_loss(),
        "{}",
        report(&r)
    );
    assert!(
        r.pre_clipped().final_loss() < r.pre_clipped().first_loss(),
        "{}",
        report(&r)
    );
    assert!(
        post.layer_spread() > r.pre().layer_spread(),
        "{}",
        report(&r)
    );
    assert_eq!(post.layer_norms.len(), r.layers);
}
