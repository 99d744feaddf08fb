//! `tunelab align` end to end at small budgets: a preference run saves its adapter and resumes
//! from its checkpoint, the memory ledger counts the reference, a reward model saved to disk
//! scores as it did in training, and the line-up of `align compare` measures every row.

use tunelab::data::tasks::Sizes;
use tunelab::lab::align::compare::{self as acompare, AlignCompareOptions, SFT};
use tunelab::lab::align::grpo::Warmup;
use tunelab::lab::align::{self, AlignRun, PairSource};
use tunelab::peft::MethodSpec;
use tunelab::train::args::{default_greater_is_better, Strategy};
use tunelab::train::preference::PreferenceTrainOptions;
use tunelab::train::reward::RewardOptions;
use tunelab::train::TrainingArgs;

use crate::common::temp_dir;

fn small_pairs() -> PairSource {
    PairSource::World(Sizes {
        train: 32,
        validation: 16,
        test: 16,
    })
}

fn run(spec: MethodSpec, dir: &std::path::Path, steps: usize, lr: f64) -> AlignRun {
    AlignRun {
        base: "gpt-tiny".into(),
        spec,
        args: TrainingArgs {
            output_dir: dir.to_path_buf(),
            max_steps: Some(steps),
            batch_size: 4,
            learning_rate: lr,
            eval_strategy: Strategy::No,
            save_strategy: Strategy::Steps,
            save_steps: 2,
            max_eval_examples: 16,
            ..TrainingArgs::default()
        },
        resume: false,
    }
}

/// DPO with LoRA: the reference is the base without hooks (0 bytes in the ledger), the adapter
/// is saved with its stage and objective, and a resumed run starts from the checkpoint.
#[test]
fn preference_run_saves_its_adapter_and_resumes_from_its_checkpoint() {
    let dir = temp_dir("align-pref");
    let data = align::pair_data(&small_pairs(), None).unwrap();
    let lora = MethodSpec::Lora(Default::default());
    let mut r = run(lora, &dir, 2, 5e-3);
    let first =
        align::train_preference(&r, &data, &PreferenceTrainOptions::default(), &mut ()).unwrap();
    assert_eq!(first.reference_bytes, 0);
    assert_eq!(first.report.memory.reference, 0);
    assert_eq!(first.reference.name(), "base-without-hooks");
    // LoRA starts at B = 0: before training every implicit reward is 0.
    assert!(first.before["margin"].abs() < 1e-6, "{:?}", first.before);
    assert!(first.test["margin"].is_finite() && first.test["margin"] != 0.0);
    let (_, meta) = tunelab::io::adapter::read_config(&first.adapter_dir).unwrap();
    assert_eq!(meta["stage"], "preference");
    assert_eq!(meta["objective"]["loss_type"], "sigmoid");

    r.args.max_steps = Some(4);
    r.resume = true;
    let resumed =
        align::train_preference(&r, &data, &PreferenceTrainOptions::default(), &mut ()).unwrap();
    assert_eq!(resumed.report.start_step, 2, "resumed at the checkpoint");
    assert_eq!(resumed.report.state.step, 4);

    // A resume with another objective is refused, naming what differs.
    let other = PreferenceTrainOptions {
        objective: tunelab::loss::preference::PreferenceOptions {
            loss_type: "ipo".into(),
            ..Default::default()
        },
        ..PreferenceTrainOptions::default()
    };
    r.args.max_steps = Some(6);
    let err = align::train_preference(&r, &data, &other, &mut ())
        .err()
        .expect("another objective's checkpoint");
    assert!(err.to_string().contains("ipo"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

/// Full fine-tuning's reference is a frozen copy, and the ledger's reference line holds it.
#[test]
fn full_fine_tuning_preference_ledger_counts_the_frozen_copy() {
    let dir = temp_dir("align-full");
    let data = align::pair_data(&small_pairs(), None).unwrap();
    let mut r = run(MethodSpec::Full { last_k: None }, &dir, 1, 1e-4);
    r.args.save_strategy = Strategy::No;
    let out =
        align::train_preference(&r, &data, &PreferenceTrainOptions::default(), &mut ()).unwrap();
    assert_eq!(out.reference.name(), "frozen-copy");
    assert!(out.reference_bytes > 3_000_000, "{}", out.reference_bytes);
    assert_eq!(out.report.memory.reference, out.reference_bytes);
    assert_eq!(
        out.report.memory.total(),
        out.report.memory.weights
            + out.report.memory.gradients
            + out.report.memory.optimizer
            + out.report.memory.activations
            + out.reference_bytes
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// A reward model saved by `train_reward` and loaded back scores pairs exactly as the trained
/// one did: its test margin is recomputed from the loaded model's rewards.
#[test]
fn a_saved_reward_model_loads_back_and_scores_as_trained() {
    let dir = temp_dir("align-reward");
    let data = align::pair_data(&small_pairs(), None).unwrap();
    let mut r = run(MethodSpec::Lora(Default::default()), &dir, 3, 5e-3);
    r.args.save_strategy = Strategy::No;
    let out = align::train_reward(&r, &data, RewardOptions::default(), &mut ()).unwrap();
    let rm = align::load_reward_model(&out.model_dir, "gpt-tiny").unwrap();
    let pairs = &data.splits.test;
    let chosen: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.prompt.as_str(), p.chosen.as_str()))
        .collect();
    let rejected: Vec<(&str, &str)> = pairs
        .iter()
        .map(|p| (p.prompt.as_str(), p.rejected.as_str()))
        .collect();
    let (c, rj) = (rm.score(&chosen).unwrap(), rm.score(&rejected).unwrap());
    let margin = c.iter().zip(&rj).map(|(a, b)| a - b).sum::<f64>() / c.len() as f64;
    assert!(
        (margin - out.test["margin"]).abs() < 1e-5,
        "loaded {margin} against trained {}",
        out.test["margin"]
    );
    // Not a reward model: refused, naming the directory.
    let pref_dir = temp_dir("align-not-rm");
    std::fs::create_dir_all(&pref_dir).unwrap();
    let err = align::load_reward_model(&pref_dir, "gpt-tiny")
        .err()
        .expect("no adapter there");
    assert!(
        err.to_string().contains(&pref_dir.display().to_string()),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_dir_all(pref_dir);
}

#[test]
fn kl_is_minimised_and_margin_maximised_by_default() {
    assert!(!default_greater_is_better("kl"));
    assert!(default_greater_is_better("margin"));
    assert!(default_greater_is_better("reward"));
    for m in ["margin", "kl", "reward"] {
        let args = TrainingArgs {
            metric_for_best_model: m.into(),
            ..TrainingArgs::default()
        };
        args.validate().unwrap();
    }
}

/// The line-up at a tiny budget: every row is measured with finite numbers, LoRA's reference
/// costs nothing and full fine-tuning's is a copy, SFT raises the chosen responses'
/// log-probability, and GRPO against SFT reports both arms and GRPO's curve.
#[test]
fn align_compare_measures_every_row_and_both_arms() {
    let mut o = AlignCompareOptions::new(true);
    o.objectives = vec![SFT.into(), "sigmoid".into(), "simpo".into()];
    o.pairs = Sizes {
        train: 64,
        validation: 16,
        test: 16,
    };
    o.steps = 4;
    o.seeds = 1;
    o.eval_examples = 16;
    o.gen_examples = 4;
    o.max_new_tokens = 8;
    let g = o.grpo.as_mut().unwrap();
    g.steps = 2;
    g.prompts = Some(4);
    g.warmup = Warmup {
        steps: 2,
        ..Warmup::default()
    };
    g.eval_examples = 4;
    let out = acompare::run(&o, &mut ()).unwrap();
    assert_eq!(out.rows.len(), 3 * 2);
    for r in &out.rows {
        for v in [
            r.accuracy.mean,
            r.margin.mean,
            r.kl.mean,
            r.logps_chosen.mean,
            r.logps_rejected.mean,
            r.generation.mean,
            r.forgetting.mean,
        ] {
            assert!(v.is_finite(), "{} {}: {v}", r.objective, r.method);
        }
        let expect_ref = match (r.objective.as_str(), r.method.as_str()) {
            (SFT, _) => 0,
            (_, "lora") => 0,
            ("sigmoid", "full") => r.memory.weights,
            // SimPO reads no reference in training: only the evaluation's log-probabilities.
            (_, _) => r.memory.reference,
        };
        assert_eq!(
            r.memory.reference, expect_ref,
            "{} {}",
            r.objective, r.method
        );
        assert!(r.step_ms > 0.0);
    }
    let sft_lora = &out.rows[0];
    assert!(
        sft_lora.logps_chosen.mean > out.before_logps_chosen,
        "SFT on the chosen responses raises their log-probability: {} → {}",
        out.before_logps_chosen,
        sft_lora.logps_chosen.mean
    );
    assert!(out.render().contains("sigmoid lora"));
    assert_eq!(out.grpo.len(), 1);
    let gr = &out.grpo[0];
    assert_eq!(gr.steps.len(), 2);
    assert!(gr.steps.iter().all(|s| s.kl.is_some_and(f64::is_finite)));
    for v in [gr.before, gr.grpo_after, gr.sft_after] {
        assert!((0.0..=1.0).contains(&v));
    }
}

/// GRPO rewarded by a reward model saved to disk: the rollouts are scored by it (continuous
/// rewards, not execution's 0 or 1), and the run records every step and saves its adapter.
#[test]
fn grpo_rewarded_by_a_saved_reward_model_trains_and_records_each_step() {
    use tunelab::lab::align::grpo::{train_grpo, GrpoRun, RewardSource};
    use tunelab::train::grpo::GrpoOptions;
    let dir = temp_dir("align-grpo-rm");
    let data = align::pair_data(&small_pairs(), None).unwrap();
    let mut r = run(MethodSpec::Lora(Default::default()), &dir, 2, 5e-3);
    r.args.save_strategy = Strategy::No;
    let rm = align::train_reward(&r, &data, RewardOptions::default(), &mut ()).unwrap();
    let mut g = GrpoRun {
        run: run(
            MethodSpec::Lora(Default::default()),
            &dir.join("grpo"),
            2,
            5e-3,
        ),
        options: GrpoOptions {
            num_generations: 4,
            max_completion_length: 8,
            beta: 0.1,
            ..GrpoOptions::default()
        },
        warmup: Warmup {
            steps: 2,
            ..Warmup::default()
        },
        prompts: Some(4),
        reward: RewardSource::Model(rm.model_dir.clone()),
    };
    g.run.args.batch_size = 2;
    g.run.args.max_eval_examples = 4;
    g.run.args.save_strategy = Strategy::No;
    let out = train_grpo(&g, &mut ()).unwrap();
    assert_eq!(out.steps.len(), 2);
    for s in &out.steps {
        assert!(s.reward_mean.is_finite() && s.kl.is_some_and(f64::is_finite));
    }
    let fractional = out
        .steps
        .iter()
        .any(|s| s.reward_mean.fract() != 0.0 && s.reward_std > 0.0);
    assert!(
        fractional,
        "reward-model rewards are continuous: {:?}",
        out.steps
    );
    assert!(out.after["execution_accuracy"].is_finite());
    assert!(out.adapter_dir.join("adapter_config.json").exists());
    let _ = std::fs::remove_dir_all(dir);
}
