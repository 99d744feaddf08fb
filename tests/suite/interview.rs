//! Every interview question in quick mode, asserting the claims it prints that hold robustly.
//! Questions 4, 13 and 15 run the overfit, lr and explode pitfalls, which tests/suite/pitfall.rs runs
//! and checks; here they are only checked to be wired to those experiments.

use tunelab::lab::evidence::{report, Evidence, Mode};
use tunelab::lab::interview::{self, basics, lora, training, QUESTIONS};

fn all_claims_hold(e: &dyn Evidence) {
    for c in e.claims() {
        assert!(c.holds, "claim does not hold: {}\n{}", c.text, report(e));
    }
}

#[test]
fn questions_are_numbered_and_a_bad_number_is_an_error() {
    assert!(QUESTIONS.len() >= 15);
    for (i, q) in QUESTIONS.iter().enumerate() {
        assert_eq!(q.number, i + 1);
        assert!(q.question.ends_with('?') || q.question.ends_with('.'));
        assert!(!q.answer.is_empty() && !q.experiment.is_empty());
    }
    for bad in [0, QUESTIONS.len() + 1] {
        let err = interview::run(bad, Mode::Quick, &mut ())
            .err()
            .expect("bad number")
            .to_string();
        assert!(err.contains(&format!("1 to {}", QUESTIONS.len())), "{err}");
    }
}

#[test]
fn q1_pretrained_beats_scratch() {
    let r = basics::scratch(Mode::Quick, &mut ()).unwrap();
    assert!(r.pretrained_accuracy > r.scratch_accuracy, "{}", report(&r));
}

#[test]
fn q2_compare_trainable_shares() {
    let r = basics::methods(Mode::Quick, &mut ()).unwrap();
    let (full, lora) = (r.row("full").unwrap(), r.row("lora").unwrap());
    assert_eq!(full.trainable_params, full.total_params);
    assert!(lora.trainable_pct < 5.0, "{}", r.table);
    let prompt = r.row("prompt").unwrap();
    assert!(r
        .rows
        .iter()
        .all(|x| x.trainable_params >= prompt.trainable_params));
    assert!(r.rows.iter().all(|x| x.test_score.is_finite()));
}

#[test]
fn q3_lm_loss_per_token_classification_per_sequence() {
    let r = basics::losses().unwrap();
    all_claims_hold(&r);
    assert_eq!(r.cls_targets, r.cls_sequences);
    assert!(r.lm_targets_response < r.lm_targets_all);
}

#[test]
fn q5_frozen_base_stores_little_per_task() {
    let r = basics::frozen(Mode::Quick, &mut ()).unwrap();
    let (full, lora, prompt) = (&r.rows[0], &r.rows[1], &r.rows[2]);
    assert!(
        (lora.adapter_bytes as f64) < 0.05 * full.adapter_bytes as f64,
        "{}",
        report(&r)
    );
    assert!(prompt.adapter_bytes < lora.adapter_bytes, "{}", report(&r));
    assert!(r.storage(lora) < r.storage(full));
    assert!(r
        .rows
        .iter()
        .all(|x| x.forgetting.is_finite() && x.val_accuracy.is_finite()));
}

#[test]
fn q6_b_zero_leaves_the_output_unchanged() {
    let r = lora::zero_init().unwrap();
    all_claims_hold(&r);
}

#[test]
fn q7_alpha_over_r_shrinks_the_update_rslora_does_not() {
    let r = lora::scaling(Mode::Quick, &mut ()).unwrap();
    all_claims_hold(&r);
    assert!(r.ratio(false) < 0.5, "{}", report(&r));
}

#[test]
fn q8_targets_cost_what_the_formula_says() {
    let r = lora::targets(Mode::Quick, &mut ()).unwrap();
    assert!(
        r.rows.iter().all(|x| x.lora_params == x.formula),
        "{}",
        report(&r)
    );
    assert!(r
        .rows
        .windows(2)
        .all(|w| w[0].lora_params < w[1].lora_params));
}

#[test]
fn q9_lora_parameter_counts() {
    let r = lora::param_count().unwrap();
    all_claims_hold(&r);
}

#[test]
fn q10_merged_equals_unmerged() {
    let r = lora::merging(Mode::Quick, &mut ()).unwrap();
    assert!(r.diff_f32 < 1e-3, "{}", report(&r));
    assert!(r.diff_f64 < 1e-9, "{}", report(&r));
    assert!(r.roundtrip_f32 < 1e-5, "{}", report(&r));
    assert!(r.update_norm > 0.0);
}

#[test]
fn q11_padding_side() {
    let r = interview::run(11, Mode::Quick, &mut ()).unwrap();
    all_claims_hold(r.as_ref());
}

#[test]
fn q12_masking_the_prompt_leaves_response_targets() {
    let r = training::label_masking(Mode::Quick, &mut ()).unwrap();
    assert!(r.targets_unmasked > 2 * r.targets_masked, "{}", report(&r));
    assert!(
        r.response_loss_masked < r.response_loss_before,
        "{}",
        report(&r)
    );
}

#[test]
fn q14_warmup_runs_measure_both_schedules() {
    let r = training::warmup(Mode::Quick, &mut ()).unwrap();
    assert_eq!(r.rows[0].warmup_steps, 0);
    assert!(r.rows[1].warmup_steps > 0);
    assert!(r
        .rows
        .iter()
        .all(|x| x.forgetting.is_finite() && x.final_loss.is_finite()));
}

#[test]
fn q16_qlora_memory_and_nf4() {
    let r = training::qlora(Mode::Quick).unwrap();
    all_claims_hold(&r);
}

#[test]
fn q17_accumulation_equals_a_big_batch_only_when_weighted() {
    let r = training::accumulation().unwrap();
    all_claims_hold(&r);
}
