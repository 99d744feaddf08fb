//! `tunelab compare`: the interval math against published values, the paired verdicts, and
//! quick runs whose table supports the claims it prints.

use tunelab::data::tasks::Task;
use tunelab::lab::compare::{compare, default_entries, summary, table, CompareOptions, Row};
use tunelab::lab::report;
use tunelab::lab::stats::{
    bootstrap_interval, paired_bootstrap, paired_t, t_cdf, t_interval, t_quantile, Estimate,
    IntervalKind, Verdict,
};

// ---------------------------------------------------------------------------------------------
// The interval math

#[test]
fn t_quantiles_match_published_tables() {
    // Two-sided 95% critical values (the 0.975 quantile), as printed in every statistics table
    // and by R's qt(0.975, df), to the 6 decimals the tables give.
    for (df, t) in [
        (1.0, 12.706_205),
        (2.0, 4.302_653),
        (3.0, 3.182_446),
        (4.0, 2.776_445),
        (9.0, 2.262_157),
        (29.0, 2.045_230),
        (100.0, 1.983_972),
        (1e6, 1.959_966), // the normal quantile
    ] {
        let q = t_quantile(0.975, df);
        assert!((q - t).abs() < 2e-6, "df {df}: {q} against {t}");
        // And the CDF inverts back.
        assert!((t_cdf(q, df) - 0.975).abs() < 1e-10, "df {df}");
    }
    // Other levels and the lower tail: qt(0.95, 5) = 2.015048, qt(0.025, 3) = -3.182446.
    assert!((t_quantile(0.95, 5.0) - 2.015_048).abs() < 2e-6);
    assert!((t_quantile(0.025, 3.0) + 3.182_446).abs() < 2e-6);
    assert_eq!(t_quantile(0.5, 7.0), 0.0);
    assert!(t_quantile(1.5, 3.0).is_nan() && t_quantile(0.9, 0.0).is_nan());
}

#[test]
fn t_interval_of_known_datasets_matches_r() {
    // R: t.test(1:5)$conf.int = 1.036757 4.963243.
    let e = t_interval(&[1.0, 2.0, 3.0, 4.0, 5.0], IntervalKind::TOverSeeds);
    assert_eq!((e.mean, e.n), (3.0, 5));
    assert!((e.lo.unwrap() - 1.036_757).abs() < 1e-6, "{e:?}");
    assert!((e.hi.unwrap() - 4.963_243).abs() < 1e-6, "{e:?}");
    assert!(e.contains(3.0) && !e.contains(5.0));
    assert_eq!(e.short(3), "3.000±1.963");
    // Two seeds: mean ± 12.706 · s/√2.
    let e = t_interval(&[0.80, 0.84], IntervalKind::TOverSeeds);
    let h = 12.706_205 * (0.0008f64).sqrt() / 2f64.sqrt();
    assert!((e.half_width().unwrap() - h).abs() < 1e-6, "{e:?}");
    // One value: no interval, said so.
    let e = t_interval(&[0.8], IntervalKind::TOverSeeds);
    assert_eq!((e.lo, e.hi, e.kind), (None, None, IntervalKind::None));
    assert_eq!(e.kind.describe(), "n=1, no interval");
}

/// Cushny and Peebles' sleep data (R's `sleep`): extra hours of sleep under two drugs, the same
/// ten patients.
const SLEEP_1: [f64; 10] = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0];
const SLEEP_2: [f64; 10] = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4];

#[test]
fn paired_verdicts_follow_whether_the_interval_excludes_zero() {
    // R: t.test(extra ~ group, data = sleep, paired = TRUE): difference 1.58 with 95% interval
    // [0.7001142, 2.4598858] for group 2 minus group 1.
    let p = paired_t("drug 1", &SLEEP_2, &SLEEP_1);
    assert!((p.difference.mean - 1.58).abs() < 1e-12);
    assert!(
        (p.difference.lo.unwrap() - 0.700_114_2).abs() < 1e-6,
        "{p:?}"
    );
    assert!(
        (p.difference.hi.unwrap() - 2.459_885_8).abs() < 1e-6,
        "{p:?}"
    );
    assert_eq!(p.verdict, Verdict::Better);
    assert_eq!(p.differences.len(), 10);
    assert_eq!(
        paired_t("drug 2", &SLEEP_1, &SLEEP_2).verdict,
        Verdict::Worse
    );
    // The first three patients alone do not decide (their interval is [-0.02, 3.29]).
    assert_eq!(
        paired_t("drug 1", &SLEEP_2[..3], &SLEEP_1[..3]).verdict,
        Verdict::Indistinguishable
    );
    // A method against itself: difference exactly 0, interval [0, 0], indistinguishable.
    let p = paired_t("full", &SLEEP_1, &SLEEP_1);
    assert_eq!((p.difference.lo, p.difference.hi), (Some(0.0), Some(0.0)));
    assert_eq!(p.verdict, Verdict::Indistinguishable);
    // One seed, nothing else: no interval, no verdict.
    let p = paired_t("full", &[0.8], &[0.7]);
    assert_eq!(p.verdict, Verdict::Undecided);
    assert_eq!(p.verdict.name(), "needs --seeds >= 2");
    assert_eq!(Verdict::of(&Estimate::point(0.1)), Verdict::Undecided);
}

#[test]
fn bootstrap_intervals_are_seeded_and_cover_the_mean() {
    // 200 examples, 150 right: the bootstrap interval of the accuracy is close to the normal
    // one, 0.75 ± 1.96 · √(0.75 · 0.25 / 200) = ±0.060.
    let xs: Vec<f64> = (0..200).map(|i| f64::from(u8::from(i % 4 != 0))).collect();
    let e = bootstrap_interval(&xs, 2000, 7);
    assert_eq!(e.mean, 0.75);
    assert_eq!(e.kind, IntervalKind::BootstrapOverExamples);
    assert!(e.contains(0.75));
    assert!((e.half_width().unwrap() - 0.060).abs() < 0.01, "{e:?}");
    assert_eq!(
        e,
        bootstrap_interval(&xs, 2000, 7),
        "same seed, same interval"
    );
    // Paired over examples: a model against itself is indistinguishable, and one that gets 30
    // more of the 200 right (never fewer) is better.
    let same = paired_bootstrap("full", &xs, &xs, 1);
    assert_eq!(same.difference.lo, Some(0.0));
    assert_eq!(same.verdict, Verdict::Indistinguishable);
    let better: Vec<f64> = xs
        .iter()
        .enumerate()
        .map(|(i, &x)| if i < 120 { 1.0 } else { x })
        .collect();
    assert_eq!(
        paired_bootstrap("full", &better, &xs, 1).verdict,
        Verdict::Better
    );
}

// ---------------------------------------------------------------------------------------------
// Quick runs

#[test]
fn compare_quick_measures_what_the_table_claims() {
    let mut opts = CompareOptions::new("gpt-tiny", Task::Sentiment).quick();
    // By label: `lora` alone picks every LoRA row (PiSSA's and OLoRA's init too).
    opts.only = vec!["full".into(), "lora r=8 q,v".into(), "prompt".into()];
    opts.out_dir = crate::common::temp_dir("compare");
    let rows = compare(&opts, &default_entries(opts.task, vec![]).unwrap(), &mut ()).unwrap();
    // Methods train side by side, each in its own directory.
    for dir in ["full", "lora-r-8-q-v", "prompt-P-10"] {
        assert!(
            opts.out_dir.join(dir).join("adapter").is_dir(),
            "no adapter in {dir}"
        );
    }
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    let get = |name: &str| -> &Row { rows.iter().find(|r| r.method.starts_with(name)).unwrap() };
    let (full, lora, prompt) = (get("full"), get("lora"), get("prompt"));
    assert_eq!(rows.len(), 3);

    // Trainable parameters: all for full fine-tuning, a few percent for LoRA, less for prompts.
    assert_eq!(full.trainable_params, full.total_params);
    assert!(lora.trainable_pct < 5.0, "LoRA {}%", lora.trainable_pct);
    assert!(prompt.trainable_params < lora.trainable_params);

    // Memory: the frozen base holds no gradients and no optimizer state.
    assert_eq!(full.memory.gradients, 4 * full.trainable_params);
    assert_eq!(full.memory.optimizer, 2 * 4 * full.trainable_params);
    assert_eq!(lora.memory.gradients, 4 * lora.trainable_params);
    assert!(lora.memory.optimizer * 10 < full.memory.optimizer);
    assert!(full.memory.activations > 0 && lora.memory.activations > 0);

    // Storage: a LoRA adapter is a small fraction of the full model's file.
    assert!(lora.adapter_bytes * 10 < full.adapter_bytes);

    // Forgetting: LoRA starts as the identity and moves little; full fine-tuning rewrites the
    // shared embeddings and forgets more.
    assert!(full.forgetting.delta() > lora.forgetting.delta());
    assert_eq!(full.forgetting.before, lora.forgetting.before);

    // Every row is measured: step times from the timing pass, scores in [0, 1], the low-data
    // column, the loss curve.
    for r in &rows {
        assert!(r.median_step_ms > 0.0);
        assert!(r.step_timing.alone && r.step_timing.steps == opts.timing_steps);
        assert!((0.0..=1.0).contains(&r.test_score));
        assert!((0.0..=1.0).contains(&r.low_data_test_score.unwrap()));
        assert_eq!(r.train_losses.len(), opts.steps);
        // One seed: accuracy is a mean over examples, so the intervals are over the 48 test
        // examples, and they contain the score.
        assert_eq!(r.seeds.len(), 1);
        assert_eq!(r.test.kind, IntervalKind::TOverExamples);
        assert_eq!(r.test.n, opts.max_eval_examples);
        assert!(r.test.contains(r.test_score), "{:?}", r.test);
        assert!(r
            .low_data_test
            .unwrap()
            .contains(r.low_data_test_score.unwrap()));
        // The paired comparison is a bootstrap over the same examples.
        let p = r.paired.as_ref().unwrap();
        assert_eq!(p.difference.kind, IntervalKind::BootstrapOverExamples);
        assert!((p.difference.mean - (r.test_score - full.test_score)).abs() < 1e-12);
    }
    assert_eq!(
        full.paired.as_ref().unwrap().verdict,
        Verdict::Indistinguishable
    );

    let t = table(&opts, &rows);
    assert_eq!(t.lines().filter(|l| l.starts_with("lora")).count(), 2); // table and paired
    assert!(
        t.contains("paired bootstrap over the 48 test examples"),
        "{t}"
    );
    assert!(t.contains("trained alone after the scored runs"), "{t}");
    let json: serde_json::Value = serde_json::to_value(summary(&opts, &rows)).unwrap();
    assert_eq!(json["rows"][1]["method"], "lora r=8 q,v");
    assert_eq!(json["baseline"], "full");
}

#[test]
fn two_seeds_give_t_intervals_and_the_baseline_paired_with_itself_is_zero() {
    let mut opts = CompareOptions::new("gpt-tiny", Task::Sentiment).quick();
    opts.only = vec!["full".into(), "lora r=8 q,v".into()];
    opts.seeds = 2;
    opts.steps = 8;
    opts.low_data_steps = 4;
    opts.max_eval_examples = 24;
    opts.timing_steps = 3;
    opts.out_dir = crate::common::temp_dir("compare-seeds");
    let rows = compare(&opts, &default_entries(opts.task, vec![]).unwrap(), &mut ()).unwrap();
    // Every (method, seed) run has its own directory.
    for dir in [
        "full",
        "full/seed-43",
        "lora-r-8-q-v",
        "lora-r-8-q-v/seed-43",
    ] {
        assert!(opts.out_dir.join(dir).join("adapter").is_dir(), "{dir}");
    }
    let _ = std::fs::remove_dir_all(&opts.out_dir);
    assert_eq!(rows.len(), 2);
    for r in &rows {
        assert_eq!(r.seeds.iter().map(|s| s.seed).collect::<Vec<_>>(), [42, 43]);
        let per_seed = |f: fn(&tunelab::lab::compare::SeedRun) -> f64| -> Vec<f64> {
            r.seeds.iter().map(f).collect()
        };
        // Each column is the mean of its seeds, with a t-interval (n = 2) around it.
        for (e, values) in [
            (r.validation, per_seed(|s| s.validation_score)),
            (r.test, per_seed(|s| s.test_score)),
            (
                r.low_data_test.unwrap(),
                per_seed(|s| s.low_data_test_score.unwrap()),
            ),
            (r.forgetting_delta, per_seed(|s| s.forgetting.delta())),
        ] {
            assert_eq!(e.kind, IntervalKind::TOverSeeds);
            assert_eq!(e.n, 2);
            assert!((e.mean - (values[0] + values[1]) / 2.0).abs() < 1e-12);
            assert!(e.contains(e.mean), "{e:?}");
            // t(0.975, 1) = 12.706: half-width 12.706 · |a − b| / 2.
            let h = 12.706_205 * (values[0] - values[1]).abs() / 2.0;
            assert!(
                (e.half_width().unwrap() - h).abs() < 1e-5,
                "{e:?} {values:?}"
            );
        }
        assert_eq!(r.train_losses.len(), opts.steps);
        let mean0 = (r.seeds[0].train_losses[0] + r.seeds[1].train_losses[0]) / 2.0;
        assert!((r.train_losses[0] - mean0).abs() < 1e-12);
        assert_eq!(r.step_timing.steps, 3);
    }
    // The seeds differ (initialisation, order, dropout), so the losses do.
    assert_ne!(rows[0].seeds[0].train_losses, rows[0].seeds[1].train_losses);
    // Paired against full: full itself is exactly 0 and indistinguishable; LoRA's difference
    // is the mean of its per-seed differences.
    let full = rows[0].paired.as_ref().unwrap();
    assert_eq!(full.differences, [0.0, 0.0]);
    assert_eq!(full.difference.mean, 0.0);
    assert_eq!(full.verdict, Verdict::Indistinguishable);
    let lora = rows[1].paired.as_ref().unwrap();
    let d: Vec<f64> = (0..2)
        .map(|k| rows[1].seeds[k].test_score - rows[0].seeds[k].test_score)
        .collect();
    assert_eq!(lora.differences, d);
    assert_eq!(lora.difference.kind, IntervalKind::TOverSeeds);

    // The table shows the intervals and the paired section; the report draws every chart.
    let t = table(&opts, &rows);
    assert!(t.contains("Student-t over 2 seeds"), "{t}");
    assert!(t.contains("paired against full"), "{t}");
    assert!(t.contains(&rows[1].test.short(3)), "{t}");
    let html = report::html(&opts, &rows);
    assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
    assert_eq!(html.matches("<svg").count(), 5);
    // Self-contained: the only address is the SVG namespace, and there is no script.
    assert_eq!(
        html.matches("http").count(),
        html.matches("http://www.w3.org/2000/svg").count()
    );
    assert!(!html.contains("<script"));
    let json = serde_json::to_value(summary(&opts, &rows)).unwrap();
    assert_eq!(json["seeds"], serde_json::json!([42, 43]));
    assert_eq!(json["rows"][0]["seeds"][1]["seed"], 43);
    assert_eq!(json["rows"][1]["paired"]["baseline"], "full");
}
