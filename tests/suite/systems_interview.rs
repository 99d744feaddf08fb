//! Interview questions 36–40 (systems and evaluation) in quick mode, and the library pieces they
//! added: f16 and bf16 rounding to nearest even, ZeRO's accounting in `tunelab estimate`, the
//! unpaired interval and the seed count in `lab::stats`, and the head's own learning rate.

use tunelab::data::tasks::Task;
use tunelab::kernels::quant::{
    bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, F16_MAX, F16_MIN_POSITIVE,
};
use tunelab::lab::estimate::{self, EstimateArgs, Method, Zero, GB};
use tunelab::lab::evidence::{report, Evidence, Judged, Mode};
use tunelab::lab::interview::systems;
use tunelab::lab::runs::{prepare_run, Run};
use tunelab::lab::stats;
use tunelab::peft::lora::compare_config;
use tunelab::peft::MethodSpec;
use tunelab::train::trainer::{self, Training};
use tunelab::train::TrainingArgs;

/// Every claim of a deterministic run holds.
fn all_claims_hold<E: Evidence>(j: &Judged<E>) {
    let v = j.verdicts();
    assert!(!v.is_empty(), "no claims:\n{}", report(j));
    for c in v {
        assert!(c.always(), "claim does not hold: {}\n{}", c.text, report(j));
    }
}

fn claim_holds<E: Evidence>(j: &Judged<E>, prefix: &str) {
    let text = report(j);
    let v = j
        .verdict(prefix)
        .unwrap_or_else(|| panic!("no claim {prefix:?}\n{text}"));
    assert!(v.always(), "claim does not hold: {}\n{text}", v.text);
}

// ---------------------------------------------------------------------------------------------
// 36

#[test]
fn q36_checkpointing_keeps_gradients_and_trades_memory_for_one_more_forward() {
    let r = systems::checkpointing(Mode::Quick, &mut ()).unwrap();
    let j = Judged::once(r.clone());
    println!("{}", report(&j));
    for row in &r.rows {
        assert_eq!(row.max_grad_diff, 0.0, "{} layers", row.layers);
        assert!(row.same_loss, "{} layers", row.layers);
        // Every block ran once more in backward, and no more.
        assert_eq!(row.recomputed_blocks, row.layers);
        assert!(row.recompute_ops > 0 && row.recompute_ops < row.forward_ops);
        assert!(
            row.held_ckpt < row.held_plain,
            "{} layers: {} vs {}",
            row.layers,
            row.held_ckpt,
            row.held_plain
        );
    }
    // Plain: bytes held grow with every layer; checkpointed: by a block input only.
    let (plain, ckpt) = r.per_layer();
    assert!(
        plain > 0.0 && ckpt > 0.0 && ckpt < 0.25 * plain,
        "{plain} {ckpt}"
    );
    for prefix in [
        "checkpointing gives the same loss",
        "without checkpointing every layer adds",
        "the checkpointed peak",
        "backward runs every block's forward once more",
        "with the Trainer on gpt-tiny",
    ] {
        claim_holds(&j, prefix);
    }
    let (off, on) = (&r.trainer[0], &r.trainer[1]);
    assert!(!off.checkpointing && on.checkpointing);
    assert_eq!(off.losses.len(), r.steps);
    assert!(on.activations < off.activations);
    // The arithmetic: one more forward (2N) on 6N per token is a third more.
    assert!((r.est_flops_ckpt / r.est_flops - 4.0 / 3.0).abs() < 0.01);
    assert!(r.est_act_ckpt < r.est_act);
}

// ---------------------------------------------------------------------------------------------
// 37: the conversions

/// Every finite positive f16 and the next one up, as f32.
fn f16_neighbours() -> impl Iterator<Item = (u16, f32, f32)> {
    (0u16..0x7bff).map(|h| (h, f16_to_f32(h), f16_to_f32(h + 1)))
}

#[test]
fn f16_round_trips_every_value_and_rounds_ties_to_even() {
    for h in 0..=u16::MAX {
        let x = f16_to_f32(h);
        if x.is_nan() {
            assert!(f16_to_f32(f32_to_f16(x)).is_nan(), "{h:#06x}");
        } else {
            assert_eq!(f32_to_f16(x), h, "{h:#06x} = {x:e} does not come back");
        }
    }
    for (h, a, b) in f16_neighbours() {
        // The midpoint is exact in f32 (f32 has 13 more mantissa bits).
        let mid = (a + b) / 2.0;
        let even = if h % 2 == 0 { h } else { h + 1 };
        assert_eq!(f32_to_f16(mid), even, "tie between {h:#06x} and the next");
        assert_eq!(f32_to_f16(-mid), even | 0x8000, "negative tie at {h:#06x}");
        // The f32 just either side of the midpoint goes to the nearer.
        let below = f32::from_bits(mid.to_bits() - 1);
        let above = f32::from_bits(mid.to_bits() + 1);
        assert_eq!(
            f32_to_f16(below),
            h,
            "just below the midpoint after {h:#06x}"
        );
        assert_eq!(
            f32_to_f16(above),
            h + 1,
            "just above the midpoint after {h:#06x}"
        );
    }
}

#[test]
fn f16_overflows_to_inf_and_underflows_through_subnormals_to_zero() {
    assert_eq!(f32_to_f16(F16_MAX), 0x7bff);
    // 65520 is the midpoint between 65504 and 2^16: the tie goes to the even code, infinity.
    assert_eq!(f32_to_f16(65520.0), 0x7c00);
    assert_eq!(f32_to_f16(f32::from_bits(65520f32.to_bits() - 1)), 0x7bff);
    assert_eq!(f32_to_f16(1e6), 0x7c00);
    assert_eq!(f32_to_f16(-1e6), 0xfc00);
    assert_eq!(f32_to_f16(f32::INFINITY), 0x7c00);
    assert_eq!(f32_to_f16(f32::NEG_INFINITY), 0xfc00);
    assert_eq!(f32_to_f16(f32::MAX), 0x7c00);
    assert!(f16_to_f32(f32_to_f16(f32::NAN)).is_nan());
    assert!(f16_to_f32(f32_to_f16(-f32::NAN)).is_nan());
    // The normal range ends at 2^-14; below it, multiples of 2^-24.
    assert_eq!(f32_to_f16(F16_MIN_POSITIVE), 0x0400);
    assert_eq!(F16_MIN_POSITIVE, 2f32.powi(-14));
    assert_eq!(f32_to_f16(2f32.powi(-14) - 2f32.powi(-24)), 0x03ff);
    assert_eq!(f32_to_f16(2f32.powi(-24)), 0x0001);
    // 2^-25 is half the smallest subnormal: a tie, to the even 0. Anything above goes to 1.
    assert_eq!(f32_to_f16(2f32.powi(-25)), 0x0000);
    assert_eq!(f32_to_f16(-2f32.powi(-25)), 0x8000);
    assert_eq!(
        f32_to_f16(f32::from_bits(2f32.powi(-25).to_bits() + 1)),
        0x0001
    );
    // 3·2^-25 is halfway between 1 and 2 units: to the even 2.
    assert_eq!(f32_to_f16(3.0 * 2f32.powi(-25)), 0x0002);
    assert_eq!(f32_to_f16(1e-10), 0x0000);
    assert_eq!(f32_to_f16(f32::from_bits(1)), 0x0000);
    assert_eq!(f32_to_f16(-0.0), 0x8000);
    // Rounding up from the largest subnormal carries into the smallest normal.
    let top = f16_to_f32(0x03ff);
    assert_eq!(f32_to_f16(top + 0.75 * 2f32.powi(-24)), 0x0400);
    assert_eq!(f32_to_f16(1.0), 0x3c00);
    assert_eq!(f32_to_f16(-2.5), 0xc100);
}

#[test]
fn bf16_round_trips_every_value_rounds_ties_to_even_and_keeps_f32_range() {
    for b in 0..=u16::MAX {
        let x = bf16_to_f32(b);
        if x.is_nan() {
            assert!(bf16_to_f32(f32_to_bf16(x)).is_nan(), "{b:#06x}");
        } else {
            assert_eq!(f32_to_bf16(x), b, "{b:#06x} does not come back");
        }
    }
    for b in 0u16..0x7f7f {
        let (a, c) = (bf16_to_f32(b), bf16_to_f32(b + 1));
        // Midpoint: the dropped 16 bits are exactly 0x8000.
        let mid = f32::from_bits(a.to_bits() | 0x8000);
        assert!(a < mid && mid < c);
        let even = if b % 2 == 0 { b } else { b + 1 };
        assert_eq!(f32_to_bf16(mid), even, "tie after {b:#06x}");
        assert_eq!(f32_to_bf16(f32::from_bits(mid.to_bits() - 1)), b);
        assert_eq!(f32_to_bf16(f32::from_bits(mid.to_bits() + 1)), b + 1);
    }
    // f32's largest rounds to infinity (a tie past bf16's largest, 0x7f7f, to the even 0x7f80).
    assert_eq!(f32_to_bf16(f32::MAX), 0x7f80);
    assert_eq!(f32_to_bf16(bf16_to_f32(0x7f7f)), 0x7f7f);
    // f32's small normals and subnormals stay nonzero: the range is f32's.
    assert_eq!(f32_to_bf16(f32::MIN_POSITIVE), 0x0080);
    assert_eq!(f32_to_bf16(1e-30), f32_to_bf16(1e-30_f32));
    assert_ne!(bf16_to_f32(f32_to_bf16(1e-30)), 0.0);
    assert_ne!(bf16_to_f32(f32_to_bf16(2f32.powi(-133))), 0.0);
}

#[test]
fn q37_f16_needs_loss_scaling_bf16_does_not_and_master_weights_keep_small_updates() {
    let r = systems::mixed_precision(Mode::Quick).unwrap();
    let j = Judged::once(r.clone());
    println!("{}", report(&j));
    assert!(r.nonzero > 0 && r.nonzero <= r.params);
    assert!(r.min_abs > 0.0 && r.min_abs <= r.median_abs && r.median_abs <= r.max_abs);
    // The shares add up to at most everything; the dynamic scale is the largest safe power of
    // two: nothing overflows at it.
    for row in &r.rows {
        assert!(row.zero + row.subnormal + row.overflow <= 1.0);
    }
    let dynamic = r.rows.last().unwrap();
    assert_eq!(dynamic.scale, 2f64.powi(r.doublings as i32));
    assert_eq!(dynamic.overflow, 0.0);
    assert!(r.max_abs * 2.0 * dynamic.scale >= F16_MAX as f64 * 0.5);
    // No scaling loses at least as much as any safe scale.
    assert!(dynamic.zero <= r.rows[0].zero);
    assert_eq!(r.bf16_zero, 0.0);
    // f16 rounds to 2^-11, bf16 to 2^-8 (relative, half a unit).
    assert!(r.f16_max_rel <= 2f64.powi(-11) + 1e-12, "{}", r.f16_max_rel);
    assert!(
        r.bf16_max_rel <= 2f64.powi(-8) + 1e-12,
        "{}",
        r.bf16_max_rel
    );
    assert_eq!(r.updates.len(), 3);
    for u in &r.updates {
        assert!(u.changed > 0);
        assert!((0.0..=1.0).contains(&u.lost_bf16) && (0.0..=1.0).contains(&u.lost_f16));
    }
    // A larger step survives rounding at least as often.
    assert!(r.updates[0].lost_bf16 >= r.updates[2].lost_bf16);
    for prefix in [
        "dynamic loss scaling",
        "bf16 flushes no gradient entry",
        "bf16 rounds about 8 times coarser",
        "without f32 master weights",
    ] {
        claim_holds(&j, prefix);
    }
}

// ---------------------------------------------------------------------------------------------
// 38

#[test]
fn zero_reproduces_the_papers_figure_1() {
    let states = estimate::full_states(7.5e9, true);
    let got: Vec<f64> = (0..=3)
        .map(|s| Zero::new(64, s).unwrap().shard(states).total() / GB)
        .collect();
    for (g, want) in got.iter().zip([120.0, 31.4, 16.6, 1.9]) {
        assert!((g - want).abs() < 0.05, "{got:?}");
    }
    // Exact: 16Ψ, 4Ψ + 12Ψ/N, 2Ψ + 14Ψ/N, 16Ψ/N.
    assert_eq!(got[0], 120.0);
    assert!((got[3] - 120.0 / 64.0).abs() < 1e-12);
    // Communication: 2Ψ up to stage 2, 3Ψ at stage 3, nothing on one GPU.
    let psi = 7.5e9;
    assert_eq!(Zero::new(64, 2).unwrap().comm_elements(psi, psi), 2.0 * psi);
    assert_eq!(Zero::new(64, 3).unwrap().comm_elements(psi, psi), 3.0 * psi);
    assert_eq!(Zero::new(1, 3).unwrap().comm_elements(psi, psi), 0.0);
}

#[test]
fn estimate_with_zero_shards_each_rows_states_and_refuses_bad_options() {
    let plain = estimate::estimate(&EstimateArgs::new("7B")).unwrap();
    assert!(plain.zero.is_none());
    for stage in 0..=3u8 {
        let mut args = EstimateArgs::new("7B");
        args.zero = Some(Zero::new(8, stage).unwrap());
        let r = estimate::estimate(&args).unwrap();
        let (z, rows) = r.zero.as_ref().unwrap();
        assert_eq!((z.gpus, z.stage), (8, stage));
        assert_eq!(rows.len(), r.rows.len());
        let full = rows.iter().find(|x| x.method == Method::FullMixed).unwrap();
        let one = r.row(Method::FullMixed).unwrap();
        let want_opt = if stage >= 1 {
            one.optimizer_bytes / 8.0
        } else {
            one.optimizer_bytes
        };
        let want_grads = if stage >= 2 {
            one.grads_bytes / 8.0
        } else {
            one.grads_bytes
        };
        let want_w = if stage >= 3 {
            one.weights_bytes / 8.0
        } else {
            one.weights_bytes
        };
        assert_eq!(full.states.optimizer, want_opt);
        assert_eq!(full.states.grads, want_grads);
        assert_eq!(full.states.weights, want_w);
        assert_eq!(
            full.total_ckpt_bytes,
            full.states.total() + one.activations_ckpt_bytes
        );
        let text = estimate::render(&r);
        assert!(text.contains("on 8 GPUs: model states per GPU"), "{text}");
    }
    assert!(Zero::new(8, 4)
        .unwrap_err()
        .to_string()
        .contains("--zero-stage"));
    assert!(Zero::new(0, 1).unwrap_err().to_string().contains("--gpus"));
}

#[test]
fn q38_zero_and_fsdp_per_gpu_memory() {
    let r = systems::zero_memory().unwrap();
    let j = Judged::once(r.clone());
    println!("{}", report(&j));
    all_claims_hold(&j);
    // 2 sizes × 2 GPU counts × 4 stages; every stage holds no more than the one before.
    assert_eq!(r.rows.len(), 16);
    for w in r.rows.windows(2) {
        if w[0].size == w[1].size && w[0].gpus == w[1].gpus {
            assert!(w[1].full < w[0].full && w[1].lora <= w[0].lora);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 39: the statistics

#[test]
fn unpaired_interval_binomial_error_and_seed_count() {
    // Welch by hand: variances 1 and 4 over 3 runs each, se² = 1/3 + 4/3, df = (5/3)² /
    // ((1/3)²/2 + (4/3)²/2) = 50/17.
    let u = stats::unpaired_t("b", &[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]);
    assert_eq!(u.difference.mean, -2.0);
    let h = stats::t_quantile(0.975, 50.0 / 17.0) * (5.0f64 / 3.0).sqrt();
    assert!((u.difference.half_width().unwrap() - h).abs() < 1e-9);
    assert_eq!(u.verdict, stats::Verdict::Indistinguishable);
    // One run per side: no interval.
    assert_eq!(
        stats::unpaired_t("b", &[1.0], &[0.5]).verdict,
        stats::Verdict::Undecided
    );
    // Paired on the same seeds, a constant offset is decided at once.
    let p = stats::paired_t("b", &[1.1, 2.1, 3.1], &[1.0, 2.0, 3.0]);
    assert!((p.difference.mean - 0.1).abs() < 1e-12);
    assert!(p.difference.half_width().unwrap() < 1e-9);

    assert!((stats::binomial_se(0.7, 250) - (0.21f64 / 250.0).sqrt()).abs() < 1e-15);
    assert_eq!(stats::binomial_se(1.0, 10), 0.0);
    // t(0.975, 5)/√6 = 1.05 > 1, t(0.975, 6)/√7 = 0.92 < 1.
    assert_eq!(stats::seeds_to_separate(1.0, 1.0, 100), Some(7));
    assert_eq!(stats::seeds_to_separate(-1.0, 1.0, 100), Some(7));
    assert_eq!(stats::seeds_to_separate(1.0, 1.0, 6), None);
    assert_eq!(stats::seeds_to_separate(0.0, 1.0, 100), None);
}

#[test]
fn q39_seeds_and_intervals() {
    let r = systems::seeds(Mode::Quick, 2, &mut ()).unwrap();
    let j = Judged::pooled(r.seeds.clone(), r.clone());
    println!("{}", report(&j));
    assert_eq!(r.seeds, vec![42, 43]);
    assert_eq!((r.lora.len(), r.full.len()), (2, 2));
    assert_eq!(r.test_examples, 64);
    for a in r.lora.iter().chain(&r.full) {
        assert!((0.0..=1.0).contains(a));
        // An accuracy on 64 examples is a multiple of 1/64.
        assert!((a * 64.0 - (a * 64.0).round()).abs() < 1e-9);
    }
    let p = r.paired();
    assert_eq!(p.differences.len(), 2);
    for (i, d) in p.differences.iter().enumerate() {
        assert_eq!(*d, r.lora[i] - r.full[i]);
    }
    let se = r.binomial_se();
    let m = stats::mean(&r.lora);
    assert!((se - (m * (1.0 - m) / 64.0).sqrt()).abs() < 1e-15);
    if let Some(n) = r.seeds_needed() {
        assert!(n >= 2);
    }
    assert_eq!(j.verdicts().len(), 4);
}

// ---------------------------------------------------------------------------------------------
// 40: the head's learning rate

#[test]
fn head_learning_rate_is_checked_and_steps_the_head_alone() {
    let args = TrainingArgs {
        head_learning_rate: Some(-1.0),
        ..TrainingArgs::default()
    };
    let err = args.validate().unwrap_err().to_string();
    assert!(err.contains("--head-learning-rate"), "{err}");
    let err = TrainingArgs::from_toml("head_learning_rate = 0.0\n", "a.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a.toml") && err.contains("head_learning_rate"),
        "{err}"
    );

    // One step of LoRA on sentiment, head at lr and at 10 × lr, both through the Trainer's own
    // AdamW (no optimizer given). Adam's first step is about lr per entry whatever the gradient,
    // so the head moves about ten times as far and the adapters exactly as far.
    let step = |head: Option<f64>| {
        let mut run = Run::new(
            Task::Sentiment,
            MethodSpec::Lora(compare_config()),
            1e-3,
            1,
            8,
        );
        run.args.head_learning_rate = head;
        run.args.output_dir = crate::common::temp_dir("head-lr");
        let (mut base, tm, method) = prepare_run(&run).unwrap();
        let before = base.store.clone();
        trainer::train(Training::new(&run.args, &tm, &mut base.store).hooks(method.as_ref()))
            .unwrap();
        let _ = std::fs::remove_dir_all(&run.args.output_dir);
        let head = tm.head.params();
        assert!(!head.is_empty());
        let moved = |ids: &mut dyn Iterator<Item = tunelab::ParamId>| {
            ids.map(|id| {
                base.store
                    .value(id)
                    .iter()
                    .zip(before.value(id))
                    .map(|(a, b)| ((a - b) as f64).powi(2))
                    .sum::<f64>()
            })
            .sum::<f64>()
            .sqrt()
        };
        let others: Vec<_> = base
            .store
            .ids()
            .filter(|id| base.store.is_trainable(*id) && !head.contains(id))
            .collect();
        assert!(!others.is_empty());
        let rest: Vec<Vec<f32>> = others
            .iter()
            .map(|&id| base.store.value(id).iter().copied().collect())
            .collect();
        (
            moved(&mut head.iter().copied()),
            moved(&mut others.iter().copied()),
            rest,
        )
    };
    let (head1, rest1, adapters1) = step(None);
    let (head10, rest10, adapters10) = step(Some(1e-2));
    assert!(head1 > 0.0 && rest1 > 0.0);
    let ratio = head10 / head1;
    assert!((9.0..=10.5).contains(&ratio), "head moved {ratio}x");
    assert_eq!(rest1, rest10);
    assert_eq!(adapters1, adapters10);
    assert!(trainer::head_lr_multipliers(&TrainingArgs::default(), &[]).is_empty());
}

#[test]
fn q40_lora_and_full_learning_rates_and_the_heads() {
    let r = systems::lr_choice(Mode::Quick, 1, &mut ()).unwrap();
    let j = Judged::pooled(r.seeds.clone(), r.clone());
    println!("{}", report(&j));
    assert_eq!(r.lora.split, "validation");
    assert_eq!((r.lora.points.len(), r.full.points.len()), (2, 2));
    assert!(r
        .lora
        .points
        .iter()
        .any(|p| p.point.lr == r.lora.best().point.lr));
    assert!(r.best_ratio() > 0.0);
    assert_eq!(r.heads.len(), 3);
    for h in &r.heads {
        assert_eq!(h.accuracy.len(), 1);
        assert!(h.head_moved[0] > 0.0);
    }
    claim_holds(
        &j,
        "a head learning rate 10 times higher moves the head further",
    );
}
