//! Interview questions 23–30 (`src/lab/interview/methods.rs`) in quick mode on two seeds: each
//! test runs its question and asserts on what it measured — parameter counts against the
//! formulas, ranks, the allocator's budget, the memory ledger, the step-0 loss, the TIES worked
//! example, the paired differences — not only that it ran. Claims that compare scores are judged
//! on intervals and may go either way at this budget; the tests check they are there and carry
//! their measurement.

use tunelab::lab::evidence::{report, Evidence, Judged, Mode};
use tunelab::lab::interview::{self, methods};
use tunelab::peft::MethodSpec;

const SEEDS: usize = 2;

/// The pooled report of `e`, and a check that every claim named holds.
fn holds<E: Evidence>(j: &Judged<E>, claims: &[&str]) -> String {
    let text = report(j);
    for c in claims {
        let v = j
            .verdict(c)
            .unwrap_or_else(|| panic!("no claim {c:?}\n{text}"));
        assert!(v.always(), "claim does not hold: {}\n{text}", v.text);
    }
    text
}

/// The claim exists and carries a finite measurement.
fn measured<E: Evidence>(j: &Judged<E>, claim: &str) -> f64 {
    let v = j
        .verdict(claim)
        .unwrap_or_else(|| panic!("no claim {claim:?}\n{}", report(j)));
    let x = v.values[0];
    assert!(x.is_finite(), "{claim}: {x}\n{}", report(j));
    x
}

#[test]
fn q23_loha_and_lokr_reach_higher_rank_than_lora() {
    let e = methods::hadamard_kronecker(Mode::Quick, SEEDS, &mut ()).unwrap();
    // gpt-tiny: C = 128, q and v of 4 layers.
    assert_eq!((e.width, e.blocks), (128, 8));
    let per_block: Vec<(usize, usize)> = e
        .forms
        .iter()
        .map(|f| (f.per_block, f.random_rank))
        .collect();
    // LoRA r=1, r=8, LoHa r=4 (rank 16 = r²), LoKr r=8: W1 8×8 and W2 16×16, both full.
    assert_eq!(per_block, vec![(256, 1), (2048, 8), (2048, 16), (320, 128)]);
    let t = &e.trials;
    for runs in &t.runs {
        assert_eq!(runs.len(), SEEDS);
        assert!(runs.iter().all(|r| (0.0..=1.0).contains(&r.accuracy)));
        assert_eq!(runs[0].ranks.len(), 8);
    }
    assert_eq!(t.runs[0][0].adapter_params, 16_384);
    assert!(t.runs[0].iter().flat_map(|r| &r.ranks).all(|&r| r <= 8));
    let j = Judged::pooled(t.seeds.clone(), e);
    holds(
        &j,
        &[
            "the store holds exactly the formula's parameters",
            "LoHa r=4 has exactly LoRA r=8's parameters",
            "random factors reach each form's highest rank",
            "every learned LoHa update has a higher rank",
            "every learned LoKr update has a higher rank",
        ],
    );
    measured(&j, "LoHa's higher rank buys");
    measured(&j, "LoKr's higher rank buys");
}

#[test]
fn q24_vera_trains_r_plus_d_out_per_matrix() {
    let e = methods::vera(Mode::Quick, SEEDS, &mut ()).unwrap();
    // 8 blocks · (256 + 128) trained; A (256 × 128) and B (128 × 256) frozen.
    assert_eq!(e.trials.runs[1][0].adapter_params, 8 * (256 + 128));
    assert_eq!(e.trials.runs[1][0].frozen_params, 2 * 256 * 128);
    let llama = |m: &str| {
        e.counts
            .iter()
            .find(|r| r.model.starts_with("LLaMA") && r.method.starts_with(m))
            .unwrap()
            .trainable
    };
    // 32 layers, q and v 4096 × 4096.
    assert_eq!(llama("lora r=8"), 32 * 2 * 8 * 8192);
    assert_eq!(llama("vera"), 32 * 2 * (256 + 4096));
    assert!(e.grids.iter().any(|g| g.label.starts_with("vera")));
    let j = Judged::pooled(e.trials.seeds.clone(), e);
    holds(
        &j,
        &[
            "the store holds exactly the formulas' trainable parameters",
            "on LLaMA-7B's shape VeRA r=256 trains over 10x fewer",
            "VeRA's chosen learning rate is at least 10x LoRA's",
        ],
    );
    measured(&j, "VeRA scores reliably below LoRA");
}

#[test]
fn q25_adalora_ends_at_its_budget_with_ranks_it_chose() {
    let e = methods::adalora(Mode::Quick, SEEDS, &mut ()).unwrap();
    let (init, target) = (e.config.init_r, e.config.target_r);
    // The schedule starts at init_r · n and ends at target_r · n, masked.
    let n = 8;
    assert_eq!(e.schedule.first().unwrap().1, init * n);
    assert_eq!(
        *e.schedule.last().unwrap(),
        (e.trials.steps, target * n, true)
    );
    assert_eq!(e.kept.len(), SEEDS);
    for k in &e.kept {
        assert_eq!(k.len(), n);
        assert_eq!(k.values().sum::<usize>(), target * n);
        assert!(k.values().all(|&r| r <= init));
    }
    assert!(
        matches!(&e.trials.runs[1][0].saved, MethodSpec::Adalora(c) if c.rank_pattern.is_some())
    );
    let j = Judged::pooled(e.trials.seeds.clone(), e);
    holds(&j, &["after training, the blocks' kept ranks add up"]);
    measured(&j, "the allocator keeps more rank in the value projections");
    measured(&j, "AdaLoRA scores reliably above LoRA");
}

#[test]
fn q26_lora_fa_halves_the_adapter_state() {
    let e = methods::lora_fa(Mode::Quick, SEEDS, &mut ()).unwrap();
    let (l, f) = (&e.trials.runs[0][0], &e.trials.runs[1][0]);
    assert_eq!((l.adapter_params, l.frozen_params), (16_384, 0));
    assert_eq!((f.adapter_params, f.frozen_params), (8_192, 8_192));
    // The adapter's gradients and Adam state shrink by A's share: 8,192 values, 4 and 8 bytes.
    assert_eq!(l.memory.gradients - f.memory.gradients, 8_192 * 4);
    assert_eq!(l.memory.optimizer - f.memory.optimizer, 8_192 * 8);
    assert!(f.memory.activations > 0 && l.memory.activations > 0);
    let j = Judged::pooled(e.trials.seeds.clone(), e);
    holds(
        &j,
        &[
            "LoRA-FA trains half of LoRA's adapter parameters",
            "LoRA-FA holds less gradient and optimizer memory",
        ],
    );
    measured(&j, "LoRA-FA holds less activation memory");
}

#[test]
fn q27_pissa_and_olora_start_at_the_base_and_refuse_a_quantised_one() {
    let e = methods::pissa(Mode::Quick, SEEDS, &mut ()).unwrap();
    assert_eq!(e.start_loss.len(), 3);
    for arm in &e.start_loss {
        for (x, y) in arm.iter().zip(&e.start_loss[0]) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
    assert_eq!(e.refusals.len(), 2);
    assert!(e
        .refusals
        .iter()
        .all(|(_, said)| said.contains("quantised")));
    assert!(e.early_loss().iter().flatten().all(|l| l.is_finite()));
    let j = Judged::pooled(e.trials.seeds.clone(), e);
    holds(
        &j,
        &[
            "PiSSA and OLoRA start from the base's loss",
            "both refuse a quantised base",
        ],
    );
    measured(&j, "PiSSA's training loss over the first steps");
}

#[test]
fn q28_ties_worked_example_and_merges_of_two_tasks() {
    let x = methods::ties_example();
    // Entry 0: τ3's −0.2 is trimmed away, 0.9 and 0.7 agree: their mean. Entry 2: only τ3
    // keeps 0.8: kept whole. Entry 3: +0.5, −0.75, +0.3 survive; their sum elects +, so the
    // mean of 0.5 and 0.3. Entry 5: only τ1's −0.6 survives. Entry 4: all trimmed.
    let want = [0.8, 0.7, 0.8, 0.4, 0.0, -0.6];
    for (got, want) in x.ties.iter().zip(want) {
        assert!((got - want).abs() < 1e-12, "{:?}", x.ties);
    }
    assert_eq!(x.ties[4], 0.0);
    let e = methods::merging(Mode::Quick, 1, &mut ()).unwrap();
    assert_eq!(e.report.tasks, vec!["sentiment", "ner"]);
    // own, switching, and the seven default merges.
    assert_eq!(e.report.rows.len(), 9);
    let j = Judged::pooled(e.report.seeds.clone(), e);
    holds(
        &j,
        &[
            "in the worked example every TIES entry has the elected sign",
            "an entry only one trimmed task keeps is kept whole",
            "switching adapters in one AdapterSet scores exactly",
        ],
    );
    measured(&j, "every merge scores below");
}

#[test]
fn q29_neftune_pairs_two_arms_by_seed() {
    let e = methods::neftune(Mode::Quick, 1, &mut ()).unwrap();
    assert_eq!(e.report.plain.metrics.len(), 1);
    assert_eq!(e.report.neftune.metrics.len(), 1);
    assert_eq!(e.report.paired.differences.len(), 1);
    assert!(e.embedding_norm.is_finite() && e.embedding_norm > 0.0);
    // α/√(3L) at L = 16 with α = 5.
    assert!((e.noise_norm(16) - 5.0 / 48f64.sqrt()).abs() < 1e-12);
    let j = Judged::pooled(e.report.seeds.clone(), e);
    measured(&j, "NEFTune raises the test score here");
}

#[test]
fn q30_one_base_with_adapters_holds_less_than_merged_copies() {
    let e = methods::serving(Mode::Quick, &mut ()).unwrap();
    let four = e.rows.iter().find(|r| r.adapters == 4).unwrap();
    assert_eq!(four.merged_bytes, 4 * four.base_bytes);
    assert_eq!(four.set_bytes, four.base_bytes + 4 * four.adapter_bytes);
    // LoRA r=16 on q, v of LLaMA-7B: 32 layers · 2 · 16 · 8192.
    assert_eq!(e.arithmetic.adapter_params, 32 * 2 * 16 * 8192);
    // gpt-tiny: 16,384 adapter values over 4 · (128·384 + 128·128 + 2 · 128·512) + 1024·128.
    assert!(
        (e.tiny_share - 16_384.0 / 917_504.0).abs() < 1e-12,
        "{}",
        e.tiny_share
    );
    let j = Judged::once(e);
    holds(
        &j,
        &[
            "with more than one adapter, one base + adapters holds less memory",
            "both paths give the same logits up to f32 rounding",
            "for a 7B base with 100 r=16 q,v adapters",
            "the adapters add under 5% of the base's multiply-adds",
        ],
    );
}

#[test]
fn questions_23_to_30_are_listed_and_dispatched() {
    for n in 23..=30 {
        let q = interview::question(n).unwrap();
        assert_eq!(q.number, n);
        assert!(q.answer.len() > 400, "question {n}'s answer is short");
    }
    let numbers: Vec<usize> = methods::VI.iter().map(|v| v.0).collect();
    assert_eq!(numbers, (23..=30).collect::<Vec<_>>());
    assert!(methods::VI
        .iter()
        .all(|(_, q, a)| !q.is_empty() && a.len() > 200));
}
