//! Every interview question in quick mode, asserting over seeds: each experiment that trains runs
//! on three seeds (side by side), and a test asserts on the merged claims — that the list is not
//! empty and that each claim it relies on held in the stated number of seeds — and on the
//! numbers of every seed's run. Experiments that train nothing run once.
//! Questions 4, 13 and 15 run the overfit, lr and explode pitfalls, which tests/suite/pitfall.rs
//! runs and checks; here they are only checked to be wired to those experiments.

use tunelab::lab::evidence::{over_seeds, report, Evidence, Judged, Mode};
use tunelab::lab::interview::{self, alignment, basics, lora, training, QUESTIONS};

use crate::common::{holds_in, judged, SEEDS};

/// A deterministic experiment's run: every claim holds.
fn all_claims_hold<E: Evidence>(j: &Judged<E>) {
    let v = j.verdicts();
    assert!(!v.is_empty(), "no claims:\n{}", report(j));
    for c in v {
        assert!(c.always(), "claim does not hold: {}\n{}", c.text, report(j));
    }
}

#[test]
fn questions_are_numbered_and_a_bad_number_is_an_error() {
    assert_eq!(QUESTIONS.len(), 30);
    for (i, q) in QUESTIONS.iter().enumerate() {
        assert_eq!(q.number, i + 1);
        assert!(q.question.ends_with('?') || q.question.ends_with('.'));
        assert!(!q.answer.is_empty() && !q.experiment.is_empty());
    }
    for bad in [0, QUESTIONS.len() + 1] {
        let err = interview::run(bad, Mode::Quick, SEEDS, &mut ())
            .err()
            .expect("bad number")
            .to_string();
        assert!(err.contains(&format!("1 to {}", QUESTIONS.len())), "{err}");
    }
}

#[test]
fn q1_pretrained_beats_scratch_on_every_seed() {
    let j = judged(|s, p| basics::scratch(Mode::Quick, s, p));
    holds_in(&j, "the pre-trained base scores higher", SEEDS);
    holds_in(&j, "... and ends at a lower validation loss", SEEDS);
}

#[test]
fn q2_compare_trainable_shares_on_every_seed() {
    // compare trains its methods side by side itself: one seed at a time.
    let j = over_seeds(SEEDS, false, &mut (), |s, p| {
        basics::methods(Mode::Quick, s, p)
    })
    .unwrap();
    holds_in(&j, "full fine-tuning trains every weight", SEEDS);
    holds_in(&j, "LoRA trains under 5% of the weights", SEEDS);
    holds_in(&j, "prompt tuning trains the fewest weights", SEEDS);
    for r in &j.runs {
        let (full, lora) = (r.row("full").unwrap(), r.row("lora").unwrap());
        assert_eq!(full.trainable_params, full.total_params);
        assert!(lora.trainable_pct < 5.0, "{}", r.table);
        assert!(r.rows.iter().all(|x| x.test_score.is_finite()));
    }
    // The seeds differ: not every method scores the same on every seed.
    let scores: Vec<f64> = j
        .runs
        .iter()
        .map(|r| r.row("lora").unwrap().test_score)
        .collect();
    let losses: Vec<f64> = j
        .runs
        .iter()
        .map(|r| r.row("lora").unwrap().train_losses[0])
        .collect();
    assert!(
        scores.windows(2).any(|w| w[0] != w[1]) || losses.windows(2).any(|w| w[0] != w[1]),
        "three seeds trained identically: {scores:?} {losses:?}"
    );
}

#[test]
fn q3_lm_loss_per_token_classification_per_sequence() {
    let r = basics::losses().unwrap();
    all_claims_hold(&Judged::once(r.clone()));
    assert_eq!(r.cls_targets, r.cls_sequences);
    assert!(r.lm_targets_response < r.lm_targets_all);
}

#[test]
fn q5_frozen_base_stores_little_per_task_on_every_seed() {
    let j = judged(|s, p| basics::frozen(Mode::Quick, s, p));
    holds_in(&j, "a LoRA file is under 5%", SEEDS);
    holds_in(&j, "10 tasks on one frozen base", SEEDS);
    holds_in(&j, "detached, the frozen-base methods give back", SEEDS);
    for r in &j.runs {
        let (full, lora, prompt) = (&r.rows[0], &r.rows[1], &r.rows[2]);
        assert!(prompt.adapter_bytes < lora.adapter_bytes);
        assert!(r.storage(lora) < r.storage(full));
        assert!(r
            .rows
            .iter()
            .all(|x| x.forgetting.is_finite() && x.val_accuracy.is_finite()));
    }
}

#[test]
fn q6_b_zero_leaves_the_output_unchanged() {
    all_claims_hold(&Judged::once(lora::zero_init().unwrap()));
}

#[test]
fn q7_alpha_over_r_shrinks_the_update_rslora_does_not_on_every_seed() {
    let j = judged(|s, p| lora::scaling(Mode::Quick, s, p));
    holds_in(&j, "with alpha/r the update shrinks", SEEDS);
    holds_in(&j, "with rsLoRA the update's size depends much less", SEEDS);
    for r in &j.runs {
        assert!(r.ratio(false) < 0.5, "{}", report(&j));
    }
}

#[test]
fn q8_targets_cost_what_the_formula_says_on_every_seed() {
    let j = judged(|s, p| lora::targets(Mode::Quick, s, p));
    holds_in(&j, "each target set adds exactly", SEEDS);
    holds_in(&j, "every linear layer costs more", SEEDS);
    for r in &j.runs {
        assert!(r.rows.iter().all(|x| x.lora_params == x.formula));
        assert!(r
            .rows
            .windows(2)
            .all(|w| w[0].lora_params < w[1].lora_params));
    }
}

#[test]
fn q9_lora_parameter_counts() {
    all_claims_hold(&Judged::once(lora::param_count().unwrap()));
}

#[test]
fn q10_merged_equals_unmerged_on_every_seed() {
    let j = judged(|s, p| lora::merging(Mode::Quick, s, p));
    for prefix in [
        "merged equals unmerged",
        "in f64 the difference",
        "unmerging restores W",
        "merging into bf16 weights",
    ] {
        holds_in(&j, prefix, SEEDS);
    }
    for r in &j.runs {
        assert!(r.diff_f64 < 1e-9 && r.roundtrip_f32 < 1e-5 && r.update_norm > 0.0);
    }
}

#[test]
fn q11_padding_side() {
    let r = interview::run(11, Mode::Quick, SEEDS, &mut ()).unwrap();
    assert!(r.deterministic() && r.seeds().len() == 1);
    let v = r.verdicts();
    assert!(!v.is_empty());
    assert!(v.iter().all(|c| c.always()), "{}", report(r.as_ref()));
}

#[test]
fn q12_masking_the_prompt_leaves_response_targets_on_every_seed() {
    let j = judged(|s, p| training::label_masking(Mode::Quick, s, p));
    holds_in(
        &j,
        "without masking, the prompt's tokens are targets",
        SEEDS,
    );
    for r in &j.runs {
        assert!(r.targets_unmasked > 2 * r.targets_masked, "{}", report(&j));
        assert!(
            r.response_loss_masked < r.response_loss_before,
            "{}",
            report(&j)
        );
    }
}

#[test]
fn q14_warmup_runs_measure_both_schedules_on_every_seed() {
    let j = judged(|s, p| training::warmup(Mode::Quick, s, p));
    for r in &j.runs {
        assert_eq!(r.rows[0].warmup_steps, 0);
        assert!(r.rows[1].warmup_steps > 0);
        assert!(r
            .rows
            .iter()
            .all(|x| x.forgetting.is_finite() && x.final_loss.is_finite()));
    }
    // Every claim was judged on every seed, with its measured margin.
    for v in j.verdicts() {
        assert_eq!((v.runs, v.values.len()), (SEEDS, SEEDS), "{}", v.text);
    }
}

#[test]
fn q16_qlora_stores_the_base_in_nf4_and_trains_lora_on_it_over_seeds() {
    let r = training::qlora(Mode::Quick, SEEDS, &mut ()).unwrap();
    let j = Judged::pooled(r.seeds.clone(), r);
    let text = report(&j);
    assert!(
        text.contains("claims (judged once, on what seeds 42, 43, 44 measured together)"),
        "{text}"
    );
    // What the storage and the arithmetic decide, whatever the seeds.
    for claim in [
        "QLoRA fits a 65B model",
        "NF4 with an f32 absmax per block of 64 costs 4.5 bits",
        "double quantisation brings it to the paper's",
        "NF4's normal-quantile levels reconstruct the weights better",
        "NF4 costs little held-out LM loss",
        "bf16 costs less LM loss than NF4",
        "double quantisation adds next to nothing",
        "QLoRA holds its weights in less memory than LoRA",
        "at gpt-tiny's size the activations, not the weights, dominate",
        "QLoRA trains exactly the parameters LoRA trains",
    ] {
        let v = j
            .verdict(claim)
            .unwrap_or_else(|| panic!("no claim {claim:?}\n{text}"));
        assert!(v.always(), "claim does not hold: {}\n{text}", v.text);
    }
    let r = j.first();
    // Every block Linear of gpt-tiny, stored by Base::quantize: 16 of them, 4.5 bits exactly
    // (every count even, every Linear a multiple of 64 values).
    assert_eq!((r.linears, r.values), (16, 786_432));
    assert_eq!(r.base("nf4").unwrap().bits_per_value, 4.5);
    assert_eq!(r.base("nf4").unwrap().bytes, 786_432 / 2 + 4 * 786_432 / 64);
    let dq = r.base("nf4+dq").unwrap().bits_per_value;
    assert!((4.12..4.14).contains(&dq), "{dq}");
    assert!(r.bases.iter().all(|b| b.lm_loss.is_finite()), "{text}");
    // Both trained on every seed; the accuracy claim is judged on an interval over them.
    for t in [&r.lora, &r.qlora] {
        assert_eq!((t.accuracy.len(), t.weights.len()), (SEEDS, SEEDS));
        assert!(t.activations.iter().all(|&a| a > 0), "{text}");
        assert!(t.accuracy.iter().all(|a| (0.0..=1.0).contains(a)), "{text}");
        assert!(t.final_loss.iter().all(|l| l.is_finite()), "{text}");
    }
    assert!(r.accuracy_difference().difference.half_width().is_some());
    assert!(j.verdict("QLoRA scores as LoRA does").is_some());
}

#[test]
fn q16_uniform_code_keeps_its_levels_and_zero_blocks() {
    let levels = training::uniform4_levels();
    // Each level times an absmax of 2 comes back as it went in; the block's absmax is 2.
    let values: Vec<f32> = levels.iter().map(|l| 2.0 * l).collect();
    let back = training::uniform4_round_trip(&values, 64);
    for (a, b) in values.iter().zip(&back) {
        assert!((a - b).abs() < 1e-6, "{a} came back as {b}");
    }
    // A value between two levels goes to the nearer one; a block of zeros stays zero.
    let back = training::uniform4_round_trip(&[1.0, 0.05, 0.0, 0.0], 2);
    assert_eq!(back[0], 1.0);
    assert!((back[1] - 1.0 / 15.0).abs() < 1e-6, "{}", back[1]);
    assert_eq!(&back[2..], &[0.0, 0.0]);
}

#[test]
fn q17_accumulation_equals_a_big_batch_only_when_weighted() {
    all_claims_hold(&Judged::once(training::accumulation().unwrap()));
}

#[test]
fn q18_gradient_ascent_reaches_the_closed_form_and_dpo_has_its_gradient() {
    let r = alignment::dpo_derivation().unwrap();
    println!("{}", report(&Judged::once(r.clone())));
    all_claims_hold(&Judged::once(r.clone()));
    assert_eq!(r.solves.len(), 3);
    for s in &r.solves {
        assert!(
            s.max_error < 1e-6,
            "β {}: {:?} vs {:?}",
            s.beta,
            s.policy,
            s.closed_form
        );
        assert!((s.objective - s.beta_log_z).abs() < 1e-6);
        // r − r̂ is the same number, β log Z, for every response.
        for o in &s.offsets {
            assert!(
                (o - s.beta_log_z).abs() < 1e-5,
                "{:?} vs {}",
                s.offsets,
                s.beta_log_z
            );
        }
        // The policy moved from the reference toward the high rewards.
        assert!(s.policy[0] > r.reference[0] && s.policy[5] < r.reference[5]);
    }
    // Smaller β puts more mass on the best response.
    assert!(r.solves[0].policy[0] > r.solves[2].policy[0]);
    assert_eq!(r.checks.len(), 2);
    assert!(r.checks[0].max_diff < 1e-12 && r.checks[0].h.abs() > 0.1);
    let lora = &r.checks[1];
    assert!(lora.h != 0.0 && lora.max_grad > 0.0);
    assert!(lora.max_diff < 1e-5 * lora.max_grad.max(1e-3), "{lora:?}");
}

/// β: the log-ratio margin the loss asks for grows as β shrinks, the policy moves further from
/// the reference (at β 0.01 the chosen responses fall too), and with LoRA the reference is the base without hooks (no bytes) while full
/// fine-tuning's is a copy of every weight.
#[test]
fn q19_small_beta_moves_the_policy_further_and_lora_needs_no_reference_copy() {
    let j = judged(|s, p| alignment::beta(Mode::Quick, s, p));
    println!("{}", report(&j));
    holds_in(&j, "the smaller β, the larger the log-ratio margin", SEEDS);
    holds_in(&j, "the smaller β, the further the policy moves", SEEDS);
    holds_in(&j, "at β 0.01 DPO lowers the chosen responses too", SEEDS);
    holds_in(&j, "with LoRA the reference costs no memory", SEEDS);
    let weights = tunelab::lab::finetune::load_base("gpt-tiny")
        .unwrap()
        .store
        .bytes();
    for r in &j.runs {
        assert_eq!(r.lora_reference_bytes, 0);
        assert_eq!(
            r.full_reference_bytes, weights,
            "a copy of every base weight"
        );
        assert_eq!(r.rows.len(), 3);
        for row in &r.rows {
            assert!(row.drift.is_finite() && row.margin.is_finite(), "{row:?}");
            // DPO lowers the rejected responses' likelihood at every β.
            assert!(row.rejected_change < 0.0, "{row:?}");
            assert!((row.log_ratio_margin * row.beta - row.margin).abs() < 1e-9);
        }
    }
}

/// What each method holds: PPO's four models by arithmetic (policy and value model trained,
/// reference and reward model frozen), DPO's and GRPO's two, and with LoRA no reference copy;
/// both steps timed.
#[test]
fn q20_ppo_holds_four_models_and_both_steps_are_timed() {
    let j = over_seeds(SEEDS, false, &mut (), |s, p| {
        alignment::rl_costs(Mode::Quick, s, p)
    })
    .unwrap();
    println!("{}", report(&j));
    holds_in(&j, "PPO holds four models", SEEDS);
    holds_in(&j, "with LoRA neither DPO's nor GRPO's reference", SEEDS);
    for r in &j.runs {
        let (p, h) = (r.params as f64, r.head_params as f64);
        assert_eq!(
            r.head_params, 128,
            "gpt-tiny's hidden size: one weight per channel"
        );
        let ppo = r.tiny.iter().find(|x| x.method.starts_with("PPO")).unwrap();
        assert_eq!(
            ppo.total(),
            16.0 * p + 4.0 * p + 4.0 * (p + h) + 16.0 * (p + h)
        );
        let dpo = r.tiny.iter().find(|x| x.method == "DPO").unwrap();
        assert_eq!(dpo.total(), 20.0 * p);
        assert!(r.dpo_step_seconds > 0.0 && r.grpo_step_seconds > 0.0);
        assert!(
            r.generation_share() > 0.0 && r.generation_share() < 1.0,
            "{}",
            report(&j)
        );
        assert!(r.dpo_train_pairs > 0 && r.grpo_samples == 3 * 2 * 8);
    }
}

/// Reward hacking on the code task: GRPO on a length proxy (with a KL penalty) raises the proxy, lengthens the
/// completions and lowers the true (execution) reward; the same budget on the true reward raises
/// it.
#[test]
fn q21_grpo_on_a_length_proxy_raises_it_while_the_true_reward_falls() {
    let j = judged(|s, p| alignment::reward_hacking(Mode::Quick, s, p));
    println!("{}", report(&j));
    for prefix in [
        "optimising the proxy raises the proxy reward",
        "... while the true reward does not rise",
        "the proxy is exploited by writing longer",
        "the same budget spent on the true reward raises it",
    ] {
        holds_in(&j, prefix, SEEDS);
    }
    for r in &j.runs {
        for run in [&r.proxy_run, &r.true_run] {
            assert_eq!(run.proxy.len(), r.steps);
            assert_eq!(run.truth.len(), r.steps);
            assert!(run.truth.iter().all(|t| (0.0..=1.0).contains(t)));
        }
    }
}

/// The Bradley–Terry reward model: held-out pairs ranked above chance, the surface kinds ahead
/// of the kinds that need the facts checked by the end, a larger reward gap more often right.
#[test]
fn q22_reward_model_ranks_held_out_pairs_and_the_surface_kinds_best() {
    let j = judged(|s, p| alignment::reward_model(Mode::Quick, s, p));
    println!("{}", report(&j));
    holds_in(
        &j,
        "the reward model ranks held-out pairs above chance",
        SEEDS,
    );
    // Which kinds lead at the first evaluation (a dozen validation pairs per kind) varies with
    // the seed; at the end the surface kinds lead on every seed.
    let early = j
        .verdict("surface kinds (evasion, style) are learned before")
        .unwrap();
    assert_eq!(early.runs, SEEDS);
    holds_in(&j, "... and still ahead at the end", SEEDS);
    holds_in(&j, "pairs with a larger reward gap", SEEDS);
    for r in &j.runs {
        assert_eq!(r.bins.iter().map(|b| b.pairs).sum::<usize>(), r.test_pairs);
        assert_eq!(r.kind_accuracy.len(), 4);
        assert!(r.curve.len() >= 2, "evaluated during training");
        assert!(r.bt_loss < std::f64::consts::LN_2, "{}", report(&j));
    }
}
