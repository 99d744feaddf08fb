//! The reward model: the Bradley–Terry loss (hand-worked, gradchecked in f64, replayed against
//! TRL's `RewardTrainer.compute_loss`), the reward head (gradchecked through a tiny transformer,
//! blind to padding), the preference and KTO file readers (each error with its file:line:
//! field), the world's preference pairs (deterministic, balanced, held out), and a short
//! training run of gpt-tiny whose held-out pairwise accuracy beats chance by a binomial test.
//!
//! `cargo test --test suite reward:: -- --nocapture` prints the golden report and the run's
//! accuracies.

use crate::common::{empty_dir, temp_dir, HAND_TOL};
use ndarray::{Array, ArrayD, IxDyn};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use tunelab::autodiff::gradcheck::{STEP, TOLERANCE};
use tunelab::data::batch::{pad, PadSide};
use tunelab::data::lm::WORLD_SEED;
use tunelab::data::loaders::{self, load_kto, load_preference, load_preference_lines};
use tunelab::data::preference::{
    build, build_tagged, KtoExample, PairKinds, PreferencePair, PreferenceSplits, KINDS,
};
use tunelab::data::tasks::{execute, leaks, same_answer, Example, Sizes, DATA_SEED};
use tunelab::data::world::{Partition, World};
use tunelab::error::Error;
use tunelab::lab::finetune::load_base;
use tunelab::loss::{reward_loss, RewardLoss};
use tunelab::nn::{Config, Input, NoHooks, RewardHead, Transformer};
use tunelab::peft::MethodSpec;
use tunelab::train::args::Strategy;
use tunelab::train::reward::{
    self, EncodedPair, PairScores, RewardOptions, RewardTask, KIND_ACCURACY,
};
use tunelab::train::trainer::{train, Split, TrainTask, Training};
use tunelab::train::TrainingArgs;
use tunelab::{Grads, ParamStore, Tape, Var};

// ---------------------------------------------------------------------------------------------
// The Bradley–Terry loss

fn vector(v: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.to_vec()).unwrap()
}

/// The loss of rewards `chosen` and `rejected` and its gradients with respect to both.
fn bt(
    chosen: &[f64],
    rejected: &[f64],
    margin: Option<&[f64]>,
    center: Option<f64>,
) -> (f64, Vec<f64>, Vec<f64>) {
    let mut store = ParamStore::<f64>::new();
    let c = store.add("chosen", vector(chosen), true).unwrap();
    let r = store.add("rejected", vector(rejected), true).unwrap();
    let mut tape = Tape::new(&store);
    let (vc, vr) = (tape.param(c), tape.param(r));
    let loss = RewardLoss {
        center_rewards_coefficient: center,
    }
    .forward(&mut tape, vc, vr, margin)
    .unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();
    let g = |id| grads.get(id).unwrap().iter().copied().collect::<Vec<f64>>();
    (tape.scalar(loss).unwrap(), g(c), g(r))
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// r_c = (2, 0), r_r = (0, 0), as in `loss/reward.rs`: d = (2, 0),
///   L = (−log σ(2) − log σ(0)) / 2 = (log(1 + e⁻²) + ln 2) / 2 = 0.410038,
///   ∂L/∂r_c = (−σ(−2)/2, −σ(0)/2) = (−0.059601, −0.25), ∂L/∂r_r = −∂L/∂r_c.
/// With η = 0.5 each gradient gains 2η(r_c + r_r)/N = (1, 0) and the loss η·mean((2, 0)²) = 1.
/// With a margin m = (1, 0): d = (1, 0), L = (log(1 + e⁻¹) + ln 2) / 2.
#[test]
fn bradley_terry_hand_worked_case() {
    let ln2 = std::f64::consts::LN_2;
    let (loss, gc, gr) = bt(&[2.0, 0.0], &[0.0, 0.0], None, None);
    let want = ((1.0 + (-2f64).exp()).ln() + ln2) / 2.0;
    assert!((loss - want).abs() < HAND_TOL, "{loss} vs {want}");
    assert!((want - 0.410038).abs() < 1e-6);
    let g0 = -sigmoid(-2.0) / 2.0;
    for (got, want) in gc.iter().zip([g0, -0.25]) {
        assert!((got - want).abs() < HAND_TOL, "{gc:?}");
    }
    for (got, want) in gr.iter().zip([-g0, 0.25]) {
        assert!((got - want).abs() < HAND_TOL, "{gr:?}");
    }
    let (loss, gc, gr) = bt(&[2.0, 0.0], &[0.0, 0.0], None, Some(0.5));
    assert!((loss - (want + 1.0)).abs() < HAND_TOL);
    assert!((gc[0] - (g0 + 1.0)).abs() < HAND_TOL && (gc[1] + 0.25).abs() < HAND_TOL);
    assert!((gr[0] - (1.0 - g0)).abs() < HAND_TOL && (gr[1] - 0.25).abs() < HAND_TOL);
    let (loss, _, _) = bt(&[2.0, 0.0], &[0.0, 0.0], Some(&[1.0, 0.0]), None);
    let want = ((1.0 + (-1f64).exp()).ln() + ln2) / 2.0;
    assert!((loss - want).abs() < HAND_TOL);
    // Only differences count: shifting every reward leaves the loss and its gradient.
    let (a, ga, _) = bt(&[0.3, -1.2, 4.0], &[1.0, 0.5, -2.0], None, None);
    let (b, gb, _) = bt(&[10.3, 8.8, 14.0], &[11.0, 10.5, 8.0], None, None);
    assert!((a - b).abs() < 1e-12 && ga.iter().zip(&gb).all(|(x, y)| (x - y).abs() < 1e-12));
    // Far apart, the stable log-sigmoid neither overflows nor rounds the tail to zero.
    let (loss, gc, _) = bt(&[-800.0, 800.0], &[0.0, 0.0], None, None);
    assert!((loss - 400.0).abs() < 1e-9, "{loss}");
    assert!((gc[0] + 0.5).abs() < 1e-12 && gc[1].abs() < 1e-300 && gc[1] <= 0.0);
    let tiny = bt(&[40.0], &[0.0], None, None).0;
    assert!(
        tiny > 0.0 && (tiny - (-40f64).exp()).abs() < 1e-25,
        "{tiny:e}"
    );
    // The plain function is the default options.
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let c = tape.constant(vector(&[2.0, 0.0]));
    let r = tape.constant(vector(&[0.0, 0.0]));
    let l = reward_loss(&mut tape, c, r).unwrap();
    assert!((tape.scalar(l).unwrap() - bt(&[2.0, 0.0], &[0.0, 0.0], None, None).0).abs() < 1e-15);
}

#[test]
fn bradley_terry_refuses_bad_shapes_and_options() {
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let two = tape.constant(vector(&[1.0, 2.0]));
    let three = tape.constant(vector(&[1.0, 2.0, 3.0]));
    let empty = tape.constant(vector(&[]));
    let matrix = tape.constant(ArrayD::zeros(IxDyn(&[2, 1])));
    let plain = RewardLoss::default();
    for (c, r) in [(two, three), (empty, empty), (matrix, matrix)] {
        let err = plain.forward(&mut tape, c, r, None).unwrap_err();
        assert!(err.to_string().contains("reward_loss"), "{err}");
    }
    let err = plain
        .forward(&mut tape, two, two, Some(&[1.0]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 margins for 2 pairs"), "{err}");
    for eta in [-0.1, f64::NAN] {
        let bad = RewardLoss {
            center_rewards_coefficient: Some(eta),
        };
        let err = bad.forward(&mut tape, two, two, None).unwrap_err();
        assert!(
            matches!(
                &err,
                Error::Invalid {
                    op: "center_rewards_coefficient",
                    ..
                }
            ),
            "{err}"
        );
    }
}

/// Central differences of `loss` at every trainable element of `store` (extrapolated, see
/// below) against the tape's gradients: the largest |analytic − numeric| / max(|analytic|,
/// |numeric|, 1e-3), as `autodiff::gradcheck` measures, its element, and how many were checked.
fn worst_rel_error(
    store: &ParamStore<f64>,
    loss: impl Fn(&ParamStore<f64>, Option<&mut Grads<f64>>) -> f64,
) -> (f64, usize, String) {
    let mut grads = Grads::new(store);
    loss(store, Some(&mut grads));
    let mut probe = store.clone();
    let (mut worst, mut checked, mut at) = (0.0f64, 0, String::new());
    for id in store.ids().filter(|&id| store.is_trainable(id)) {
        let analytic = grads
            .get(id)
            .cloned()
            .unwrap_or_else(|| ArrayD::zeros(store.value(id).raw_dim()));
        for (i, &a) in analytic.iter().enumerate() {
            let x0 = store.value(id).as_slice_memory_order().unwrap()[i];
            let set = |p: &mut ParamStore<f64>, v: f64| {
                p.get_mut(id).value.as_slice_memory_order_mut().unwrap()[i] = v;
            };
            set(&mut probe, x0 + STEP);
            let up = loss(&probe, None);
            set(&mut probe, x0 - STEP);
            let down = loss(&probe, None);
            set(&mut probe, x0);
            // Richardson's extrapolation of two central differences, error O(h⁴): through a
            // transformer some second and third derivatives are in the hundreds (the position
            // embeddings'), where one central difference at h = 1e-5 is off by 3e-6 relative
            // (measured: the gap falls as h², 8e-5 at h = 1e-3, 8e-7 at 1e-4, 8e-9 at 1e-5).
            set(&mut probe, x0 + STEP / 2.0);
            let up_half = loss(&probe, None);
            set(&mut probe, x0 - STEP / 2.0);
            let down_half = loss(&probe, None);
            set(&mut probe, x0);
            let wide = (up - down) / (2.0 * STEP);
            let narrow = (up_half - down_half) / STEP;
            let n = (4.0 * narrow - wide) / 3.0;
            let err = (a - n).abs() / a.abs().max(n.abs()).max(1e-3);
            if err > worst {
                worst = err;
                at = format!(
                    "{}[{i}] (analytic {a:.6e}, numeric {n:.6e})",
                    store.name(id)
                );
            }
            checked += 1;
        }
    }
    (worst, checked, at)
}

#[test]
fn gradcheck_bradley_terry_loss_f64() {
    let mut rng = StdRng::seed_from_u64(5);
    let r: ArrayD<f64> = Array::random_using(IxDyn(&[7]), StandardNormal, &mut rng) * 2.0;
    let c: ArrayD<f64> = Array::random_using(IxDyn(&[7]), StandardNormal, &mut rng) * 2.0;
    let margin = [0.0, 0.5, 1.0, 0.2, 0.0, 2.0, 0.1];
    for (m, center) in [
        (None, None),
        (None, Some(0.01)),
        (Some(&margin[..]), Some(0.5)),
    ] {
        let mut store = ParamStore::<f64>::new();
        let ic = store.add("chosen", c.clone(), true).unwrap();
        let ir = store.add("rejected", r.clone(), true).unwrap();
        let loss = |s: &ParamStore<f64>, grads: Option<&mut Grads<f64>>| {
            let mut tape = Tape::new(s);
            let (vc, vr) = (tape.param(ic), tape.param(ir));
            let l = RewardLoss {
                center_rewards_coefficient: center,
            }
            .forward(&mut tape, vc, vr, m)
            .unwrap();
            if let Some(g) = grads {
                tape.backward(l, g).unwrap();
            }
            tape.scalar(l).unwrap()
        };
        let (worst, checked, at) = worst_rel_error(&store, loss);
        println!("gradcheck reward loss (margin {}, center {center:?}): {checked} inputs, max relative error {worst:.2e}", m.is_some());
        assert!(worst < TOLERANCE, "{worst:e} at {at}");
    }
}

/// A tiny decoder (V 29, C 8, NH 2, L 1, T ≤ 16) without dropout, in f64.
fn tiny_decoder(store: &mut ParamStore<f64>) -> Transformer {
    let mut config = Config::gpt(29, 8, 2, 1, 16);
    config.dropout = 0.0;
    Transformer::new(config, store, 3).unwrap()
}

/// Two pairs, chosen rows first, of different lengths (so some rows are padded).
fn tiny_rows() -> Vec<Vec<u32>> {
    vec![
        vec![3, 7, 1, 9, 4],
        vec![5, 2, 8],
        vec![3, 7, 1, 11],
        vec![6, 6],
    ]
}

/// The reward loss of `rows` through `model` and `head` (rows 0..n chosen, n..2n rejected).
fn head_loss(
    tape: &mut Tape<'_, f64>,
    model: &Transformer,
    head: &RewardHead,
    rows: &[Vec<u32>],
    center: Option<f64>,
) -> (Var, Var) {
    let b = pad(rows, 0, PadSide::Right, None).unwrap();
    let input = Input::new(b.ids.view())
        .with_mask(b.attention_mask.view())
        .with_positions(b.positions.view());
    let h = model.forward(tape, &NoHooks, &input).unwrap();
    let r = head
        .forward(tape, &NoHooks, model, h, Some(b.attention_mask.view()))
        .unwrap();
    let n = rows.len() / 2;
    let c = tape.slice(r, 0, 0, n).unwrap();
    let rj = tape.slice(r, 0, n, 2 * n).unwrap();
    let loss = RewardLoss {
        center_rewards_coefficient: center,
    }
    .forward(tape, c, rj, None)
    .unwrap();
    (loss, r)
}

#[test]
fn gradcheck_reward_head_through_a_tiny_decoder_f64() {
    let mut store = ParamStore::<f64>::new();
    let model = tiny_decoder(&mut store);
    let head = RewardHead::new(&mut store, &model, 4).unwrap();
    // A larger head than its 0.02 initialisation, so the rewards differ by more than rounding.
    let w = store.value(head.out.weight).mapv(|x| x * 50.0);
    store.set_value(head.out.weight, w).unwrap();
    assert_eq!(store.value(head.out.weight).shape(), [1, 8]);
    assert!(head.out.bias.is_none(), "GPT-2's score has no bias");
    let rows = tiny_rows();
    let loss = |s: &ParamStore<f64>, grads: Option<&mut Grads<f64>>| {
        let mut tape = Tape::new(s);
        let (l, _) = head_loss(&mut tape, &model, &head, &rows, Some(0.1));
        if let Some(g) = grads {
            tape.backward(l, g).unwrap();
        }
        tape.scalar(l).unwrap()
    };
    let (worst, checked, at) = worst_rel_error(&store, loss);
    println!("gradcheck reward head + tiny decoder: {checked} parameters, max relative error {worst:.2e}");
    assert!(checked > 1000, "{checked}");
    assert!(worst < TOLERANCE, "{worst:e} at {at}");
}

#[test]
fn the_reward_head_reads_the_last_real_token_whatever_the_padding() {
    let mut store = ParamStore::<f64>::new();
    let model = tiny_decoder(&mut store);
    let head = RewardHead::new(&mut store, &model, 4).unwrap();
    let rows = tiny_rows();
    let mut tape = Tape::inference(&store);
    let (_, batched) = head_loss(&mut tape, &model, &head, &rows, None);
    let batched: Vec<f64> = tape.value(batched).iter().copied().collect();
    for (i, row) in rows.iter().enumerate() {
        let mut t = Tape::inference(&store);
        let alone = head_loss(&mut t, &model, &head, &[row.clone(), row.clone()], None).1;
        let alone = t.value(alone)[[0]];
        assert!(
            (alone - batched[i]).abs() < 1e-12,
            "row {i}: {alone} vs {}",
            batched[i]
        );
    }
    // The last token decides: rows 0 and 2 share a prefix and differ only at the end.
    assert!((batched[0] - batched[2]).abs() > 1e-6);
}

// ---------------------------------------------------------------------------------------------
// The golden file: TRL's RewardTrainer.compute_loss on fixed rewards

#[derive(Deserialize)]
struct Golden {
    torch_version: String,
    trl_version: String,
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenCase {
    name: String,
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    margin: Option<Vec<f64>>,
    center_rewards_coefficient: Option<f64>,
    loss: f64,
    grad_chosen: Vec<f64>,
    grad_rejected: Vec<f64>,
    accuracy: f64,
    margin_mean: f64,
}

/// Rust against TRL: every case's loss, gradients, accuracy and mean margin, max difference
/// printed, under 1e-9 in f64.
#[test]
fn golden_bradley_terry_matches_trl_reward_trainer() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trl_reward_golden.json"
    );
    let text = std::fs::read_to_string(path).expect("read tests/fixtures/trl_reward_golden.json");
    let golden: Golden = serde_json::from_str(&text).expect("parse the reward golden fixture");
    println!(
        "reward golden: torch {}, trl {}",
        golden.torch_version, golden.trl_version
    );
    assert!(golden.cases.len() >= 5);
    let mut worst_all = 0.0f64;
    for case in &golden.cases {
        let (loss, gc, gr) = bt(
            &case.chosen,
            &case.rejected,
            case.margin.as_deref(),
            case.center_rewards_coefficient,
        );
        let pairs: Vec<EncodedPair> = (0..case.chosen.len())
            .map(|_| EncodedPair {
                chosen: vec![],
                rejected: vec![],
                kind: None,
            })
            .collect();
        let scores = PairScores {
            chosen: case.chosen.clone(),
            rejected: case.rejected.clone(),
            loss,
        };
        let m = RewardTask::metrics(&pairs, &scores);
        let mut worst = (loss - case.loss).abs();
        for (a, b) in gc
            .iter()
            .zip(&case.grad_chosen)
            .chain(gr.iter().zip(&case.grad_rejected))
        {
            worst = worst.max((a - b).abs());
        }
        worst = worst
            .max((m["accuracy"] - case.accuracy).abs())
            .max((m["margin"] - case.margin_mean).abs());
        assert_eq!(gc.len(), case.grad_chosen.len());
        println!(
            "{} {:<28} loss {:.12} max difference {worst:.2e}",
            if worst < 1e-9 { "OK    " } else { "NOT OK" },
            case.name,
            case.loss
        );
        worst_all = worst_all.max(worst);
    }
    println!("reward golden: max difference over all cases {worst_all:.2e}");
    assert!(worst_all < 1e-9, "{worst_all:e}");
}

// ---------------------------------------------------------------------------------------------
// Preference and KTO files

fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn preference_and_kto_files_load_in_trl_formats() {
    let dir = empty_dir("pref-load");
    let jsonl = concat!(
        "{\"prompt\": \"Question: Where does Anna live?\\nAnswer:\", \"chosen\": \"In Lima.\", \"rejected\": \"I don't know.\"}\n",
        "\n",
        "{\"chosen\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}], ",
        "\"rejected\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Go away.\"}]}\n",
        "{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"2+2?\"}], ",
        "\"chosen\": [{\"role\": \"assistant\", \"content\": \"4\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"5\"}], \"extra\": 1}\n",
    );
    let path = write(&dir, "pairs.jsonl", jsonl.as_bytes());
    let (pairs, lines) = load_preference_lines(&path).unwrap();
    assert_eq!(lines, [1, 3, 4]);
    let pair = |p: &str, c: &str, r: &str| PreferencePair {
        prompt: p.into(),
        chosen: c.into(),
        rejected: r.into(),
    };
    assert_eq!(
        pairs,
        [
            pair(
                "Question: Where does Anna live?\nAnswer:",
                "In Lima.",
                "I don't know."
            ),
            pair("User: Hi\nAssistant:", "Hello!", "Go away."),
            pair("System: Be brief.\nUser: 2+2?\nAssistant:", "4", "5"),
        ]
    );
    let csv =
        "rejected,prompt,chosen\r\n\"I don't know.\",\"Q: where?\nAnswer:\",\"In Lima, Peru.\"\r\n";
    let path = write(&dir, "pairs.csv", csv.as_bytes());
    assert_eq!(
        load_preference(&path).unwrap(),
        [pair(
            "Q: where?\nAnswer:",
            "In Lima, Peru.",
            "I don't know."
        )]
    );
    let kto = concat!(
        "{\"prompt\": \"Q?\\nAnswer:\", \"completion\": \"Yes.\", \"label\": true}\n",
        "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Go away.\"}], \"label\": false}\n",
    );
    let path = write(&dir, "kto.jsonl", kto.as_bytes());
    let ex = |p: &str, c: &str, label| KtoExample {
        prompt: p.into(),
        completion: c.into(),
        label,
    };
    assert_eq!(
        load_kto(&path).unwrap(),
        [
            ex("Q?\nAnswer:", "Yes.", true),
            ex("User: Hi\nAssistant:", "Go away.", false)
        ]
    );
    let path = write(
        &dir,
        "kto.csv",
        b"prompt,completion,label\nQ?,Yes.,TRUE\nQ?,No.,false\n",
    );
    assert_eq!(
        load_kto(&path).unwrap(),
        [ex("Q?", "Yes.", true), ex("Q?", "No.", false)]
    );
    // The world's pairs survive a round trip through a JSONL file.
    let world = World::generate(WORLD_SEED);
    let s = build(
        &world,
        3,
        Sizes {
            train: 40,
            validation: 4,
            test: 4,
        },
    );
    let text: String = s
        .train
        .iter()
        .map(|p| {
            serde_json::json!({"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected})
                .to_string()
                + "\n"
        })
        .collect();
    let path = write(&dir, "world.jsonl", text.as_bytes());
    assert_eq!(load_preference(&path).unwrap(), s.train);
}

/// Loading `text` as `name` fails with a data error at `line` whose message starts with the
/// file and line and names each of `words`.
fn assert_data_error(dir: &Path, name: &str, text: &[u8], kto: bool, line: usize, words: &[&str]) {
    let path = write(dir, name, text);
    let err = if kto {
        load_kto(&path).map(|_| ()).unwrap_err()
    } else {
        load_preference(&path).map(|_| ()).unwrap_err()
    };
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Data { line: l, .. } if l == line),
        "{name}: {msg}"
    );
    assert!(
        msg.starts_with(&format!("{}:{line}: ", path.display())),
        "{name}: {msg}"
    );
    for w in words {
        assert!(msg.contains(w), "{name}: {msg:?} should mention {w:?}");
    }
}

#[test]
fn broken_preference_files_name_file_line_and_field() {
    let dir = empty_dir("pref-broken");
    let good = "{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n";
    let user = "{\"role\": \"user\", \"content\": \"hi\"}";
    let asst = |c: &str| format!("{{\"role\": \"assistant\", \"content\": \"{c}\"}}");
    let pairs: Vec<(&str, String, usize, Vec<&str>)> = vec![
        ("missing.jsonl", format!("{good}{{\"prompt\": \"p\", \"chosen\": \"a\"}}\n"), 2, vec!["field \"rejected\"", "missing"]),
        ("type.jsonl", format!("{good}{good}{{\"prompt\": \"p\", \"chosen\": 5, \"rejected\": \"b\"}}\n"), 3, vec!["field \"chosen\"", "expected a string", "a number"]),
        ("empty_chosen.jsonl", "{\"prompt\": \"p\", \"chosen\": \"  \", \"rejected\": \"b\"}\n".into(), 1, vec!["field \"chosen\"", "empty"]),
        ("empty_rejected.jsonl", format!("{good}{{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"\"}}\n"), 2, vec!["field \"rejected\"", "empty"]),
        ("empty_prompt.jsonl", "{\"prompt\": \"\", \"chosen\": \"a\", \"rejected\": \"b\"}\n".into(), 1, vec!["field \"prompt\"", "empty"]),
        ("json.jsonl", format!("{good}{good}{good}{{\"prompt\": \"p\",\n"), 4, vec!["invalid JSON"]),
        ("array.jsonl", "[1, 2]\n".into(), 1, vec!["expected a JSON object"]),
        ("last_user.jsonl", format!("{{\"chosen\": [{user}], \"rejected\": [{user}, {}]}}\n", asst("b")), 1, vec!["field \"chosen\"", "last message must be the assistant's response", "\"user\""]),
        ("prefix.jsonl", format!("{{\"chosen\": [{user}, {}], \"rejected\": [{{\"role\": \"user\", \"content\": \"bye\"}}, {}]}}\n", asst("a"), asst("b")), 1, vec!["field \"rejected\"", "differ from those of \"chosen\""]),
        ("role.jsonl", format!("{{\"chosen\": [{{\"role\": \"bot\", \"content\": \"x\"}}, {}], \"rejected\": [{user}, {}]}}\n", asst("a"), asst("b")), 1, vec!["field \"chosen\": message 1", "unknown role \"bot\""]),
        ("content.jsonl", format!("{{\"chosen\": [{user}, {{\"role\": \"assistant\", \"content\": [\"a\"]}}], \"rejected\": [{user}, {}]}}\n", asst("b")), 1, vec!["field \"chosen\": message 2", "\"content\" should be a string", "an array"]),
        ("message.jsonl", format!("{{\"chosen\": [{user}, 7], \"rejected\": [{user}, {}]}}\n", asst("b")), 1, vec!["field \"chosen\": message 2", "expected an object"]),
        ("no_prompt.jsonl", format!("{{\"chosen\": [{}], \"rejected\": [{}]}}\n", asst("a"), asst("b")), 1, vec!["field \"prompt\"", "no messages before the response"]),
        ("prompt_type.jsonl", format!("{{\"prompt\": \"hi\", \"chosen\": [{}], \"rejected\": [{}]}}\n", asst("a"), asst("b")), 1, vec!["field \"prompt\"", "expected a list of messages"]),
        ("rejected_type.jsonl", format!("{{\"chosen\": [{user}, {}], \"rejected\": \"b\"}}\n", asst("a")), 1, vec!["field \"rejected\"", "expected a list"]),
        ("no_messages.jsonl", format!("{{\"chosen\": [], \"rejected\": [{user}, {}]}}\n", asst("b")), 1, vec!["field \"chosen\"", "no messages"]),
        ("header.csv", "prompt,chosen\np,a\n".into(), 1, vec!["field \"rejected\"", "missing column", "prompt, chosen"]),
        ("count.csv", "prompt,chosen,rejected\np,a,b\np,a,b,c\n".into(), 3, vec!["expected 3 fields", "found 4"]),
        ("empty.csv", "prompt,chosen,rejected\np,,b\n".into(), 2, vec!["field \"chosen\"", "empty"]),
        ("quote.csv", "prompt,chosen,rejected\np,a,b\n\"p,a,b\n".into(), 3, vec!["field \"prompt\"", "unterminated quote"]),
        ("pairs.txt", good.into(), 0, vec!["extension"]),
    ];
    for (name, text, line, words) in &pairs {
        assert_data_error(&dir, name, text.as_bytes(), false, *line, words);
    }
    assert_data_error(
        &dir,
        "latin1.jsonl",
        b"{\"prompt\": \"p\", \"chosen\": \"a\", \"rejected\": \"b\"}\n{\"prompt\": \"caf\xe9\"}\n",
        false,
        2,
        &["invalid UTF-8", "byte 16"],
    );
    let kto_good = "{\"prompt\": \"p\", \"completion\": \"a\", \"label\": true}\n";
    let kto: Vec<(&str, String, usize, Vec<&str>)> = vec![
        (
            "label_string.jsonl",
            format!("{kto_good}{{\"prompt\": \"p\", \"completion\": \"a\", \"label\": \"yes\"}}\n"),
            2,
            vec!["field \"label\"", "expected a boolean", "a string"],
        ),
        (
            "label_number.jsonl",
            "{\"prompt\": \"p\", \"completion\": \"a\", \"label\": 1}\n".into(),
            1,
            vec!["field \"label\"", "a number"],
        ),
        (
            "label_missing.jsonl",
            "{\"prompt\": \"p\", \"completion\": \"a\"}\n".into(),
            1,
            vec!["field \"label\"", "missing"],
        ),
        (
            "completion_empty.jsonl",
            "{\"prompt\": \"p\", \"completion\": \" \", \"label\": false}\n".into(),
            1,
            vec!["field \"completion\"", "empty"],
        ),
        (
            "completion_role.jsonl",
            format!("{{\"prompt\": [{user}], \"completion\": [{user}], \"label\": true}}\n"),
            1,
            vec![
                "field \"completion\"",
                "last message must be the assistant's",
            ],
        ),
        (
            "label.csv",
            "prompt,completion,label\np,a,true\np,b,maybe\n".into(),
            3,
            vec!["field \"label\"", "expected true or false", "\"maybe\""],
        ),
        (
            "kto_header.csv",
            "prompt,completion\np,a\n".into(),
            1,
            vec!["field \"label\"", "missing column"],
        ),
    ];
    for (name, text, line, words) in &kto {
        assert_data_error(&dir, name, text.as_bytes(), true, *line, words);
    }
    // Unreadable: an I/O error naming the path.
    let absent = dir.join("absent.jsonl");
    let err = load_preference(&absent).unwrap_err();
    assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("absent.jsonl"));
    // Every reader shares the task loaders' byte limit.
    assert_eq!(loaders::MAX_DATA_BYTES, 512 << 20);
}

// ---------------------------------------------------------------------------------------------
// The world's preference pairs

/// `needle` occurs in `hay` as whole words.
fn contains_words(hay: &str, needle: &str) -> bool {
    hay.match_indices(needle).any(|(i, _)| {
        let before = hay[..i].chars().next_back();
        let after = hay[i + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Every seen surface string: full names, name parts, cities, organisations, foods, events.
fn seen_names(w: &World) -> Vec<String> {
    let seen = Partition::Seen;
    let mut names: Vec<String> = Vec::new();
    for p in w.people.iter().filter(|p| p.part == seen) {
        names.extend([p.name(), p.first.to_string(), p.last.to_string()]);
    }
    names.extend(
        w.cities
            .iter()
            .filter(|x| x.part == seen)
            .map(|x| x.name.to_string()),
    );
    names.extend(
        w.orgs
            .iter()
            .filter(|x| x.part == seen)
            .map(|x| x.name.to_string()),
    );
    names.extend(
        w.foods
            .iter()
            .filter(|x| x.part == seen)
            .map(|x| x.name.to_string()),
    );
    names.extend(
        w.events
            .iter()
            .filter(|x| x.part == seen)
            .map(|x| x.name.to_string()),
    );
    names.sort();
    names.dedup();
    names
}

/// The evasions the world's pairs reject (they name nothing, so the leak check skips them).
const EVASIONS: [&str; 4] = [
    "I don't know.",
    "I cannot help with that.",
    "Sorry, I have no idea.",
    "I would rather not answer that.",
];

const SIZES: Sizes = Sizes {
    train: 800,
    validation: 200,
    test: 200,
};

#[test]
fn world_pairs_are_deterministic_balanced_and_well_formed() {
    let w = World::generate(WORLD_SEED);
    let (a, ka) = build_tagged(&w, DATA_SEED, SIZES);
    let (b, kb) = build_tagged(&w, DATA_SEED, SIZES);
    assert_eq!(
        (&a.train, &a.validation, &a.test),
        (&b.train, &b.validation, &b.test)
    );
    assert_eq!(ka, kb);
    assert_eq!(build(&w, DATA_SEED, SIZES).test, a.test);
    assert_ne!(build(&w, DATA_SEED + 1, SIZES).test, a.test);
    assert_eq!(
        (a.train.len(), a.validation.len(), a.test.len()),
        (800, 200, 200)
    );
    assert_eq!(
        KIND_ACCURACY.map(String::from),
        KINDS.map(|k| format!("accuracy_{k}"))
    );
    let splits = [
        (&a.train, &ka.train),
        (&a.validation, &ka.validation),
        (&a.test, &ka.test),
    ];
    for (pairs, kinds) in splits {
        assert_eq!(kinds.len(), pairs.len());
        for kind in KINDS {
            assert_eq!(
                kinds.iter().filter(|k| **k == kind).count() * 4,
                pairs.len(),
                "{kind}"
            );
        }
        for (p, kind) in pairs.iter().zip(kinds.iter()) {
            let label = if *kind == "code" {
                "\nCode:"
            } else if p.prompt.starts_with("Context:") {
                "\nAnswer:"
            } else {
                "\nAssistant:"
            };
            assert!(p.prompt.ends_with(label), "{kind}: {p:?}");
            for r in [&p.chosen, &p.rejected] {
                assert!(
                    !r.is_empty() && !r.starts_with(' ') && !r.ends_with(' '),
                    "{p:?}"
                );
            }
            assert_ne!(p.chosen, p.rejected, "{p:?}");
            match *kind {
                "code" => {
                    assert!(execute(&p.chosen, &w).is_some(), "{p:?}");
                    assert!(execute(&p.rejected, &w).is_some(), "{p:?}");
                    assert!(!same_answer(&p.chosen, &p.rejected, &w), "{p:?}");
                }
                "fact" => {
                    // One fact swapped for another of its type: same length in words, give or take
                    // a multi-word name.
                    let words = |s: &str| s.split_whitespace().count() as i64;
                    assert!((words(&p.chosen) - words(&p.rejected)).abs() <= 3, "{p:?}");
                }
                "style" => assert!(p.rejected.contains(&p.chosen), "{p:?}"),
                _ => assert!(EVASIONS.contains(&p.rejected.as_str()), "{p:?}"),
            }
        }
    }
    // Prompts are distinct across validation and test, and no held-out prompt trains.
    let held: HashSet<&String> = a.validation.iter().map(|p| &p.prompt).collect();
    assert!(a.test.iter().all(|p| !held.contains(&p.prompt)));
    let train: HashSet<&String> = a.train.iter().map(|p| &p.prompt).collect();
    assert!(a
        .test
        .iter()
        .chain(&a.validation)
        .all(|p| !train.contains(&p.prompt)));
    let distinct: HashSet<&String> = a.test.iter().map(|p| &p.prompt).collect();
    assert!(
        distinct.len() >= 190,
        "{} distinct test prompts",
        distinct.len()
    );
    // Every kind of prompt occurs: questions about people and events, and conversations.
    assert!(a.test.iter().any(|p| p.prompt.contains("takes place in")));
    assert!(a.test.iter().any(|p| p.prompt.starts_with("User:")));
    assert!(a.test.iter().any(|p| p.rejected.contains("Stop wasting")
        || p.rejected.contains("ask me again")
        || p.rejected.contains("Everybody")));
    assert!(a
        .test
        .iter()
        .any(|p| p.rejected.contains("I hope that helps")
            || p.rejected.contains("thank you for asking")
            || p.rejected.contains("what I know")));
}

/// The `a op b` steps of a program as written, parentheses ignored (as the codegen task's own
/// `triples`): `2 * (3 + 4)` has the steps `2 * 3` and `3 + 4`.
fn steps(code: &str) -> Vec<(i64, char, i64)> {
    let tokens: Vec<&str> = code
        .split(|c: char| c == '(' || c == ')' || c.is_whitespace())
        .filter(|t| !t.is_empty())
        .collect();
    tokens
        .windows(3)
        .filter_map(|t| {
            let op = match t[1] {
                "+" | "-" | "*" => t[1].chars().next()?,
                _ => return None,
            };
            Some((t[0].parse().ok()?, op, t[2].parse().ok()?))
        })
        .collect()
}

#[test]
fn world_pairs_speak_only_of_entities_of_their_split() {
    let w = World::generate(WORLD_SEED);
    let (s, kinds) = build_tagged(&w, DATA_SEED, SIZES);
    let held = w.held_out_names();
    let seen = seen_names(&w);
    let text = |p: &PreferencePair| format!("{}\n{}\n{}", p.prompt, p.chosen, p.rejected);
    let held_step = |t: &(i64, char, i64)| w.is_held_out_triple(t.0, t.1, t.2);
    for p in &s.train {
        if let Some(name) = held.iter().find(|n| contains_words(&text(p), n)) {
            panic!("held-out {name:?} in train pair {p:?}");
        }
        // No held-out arithmetic step in a training program, right or wrong.
        if p.prompt.starts_with("Request:") {
            for code in [&p.chosen, &p.rejected] {
                assert!(!steps(code).iter().any(held_step), "{p:?}");
            }
        }
    }
    let held_pairs = s.test.iter().zip(&kinds.test);
    for (p, kind) in held_pairs.chain(s.validation.iter().zip(&kinds.validation)) {
        if let Some(name) = seen.iter().find(|n| contains_words(&text(p), n)) {
            panic!("seen {name:?} in held-out pair {p:?}");
        }
        let named = held.iter().any(|n| contains_words(&text(p), n));
        // Held-out arithmetic: the first step of both programs is held out.
        let first_held = |code: &str| steps(code).first().is_some_and(held_step);
        let arith = *kind == "code" && first_held(&p.chosen) && first_held(&p.rejected);
        assert!(named || arith, "nothing held out in {p:?}");
    }
    // The tasks' leak check: no held-out prompt or response (evasions aside, which name
    // nothing) occurs verbatim in a pre-training corpus of the world.
    let corpus = w.corpus(3000, 1);
    let evasion = |r: &str| EVASIONS.contains(&r);
    let examples: Vec<Example> = s
        .test
        .iter()
        .chain(&s.validation)
        .flat_map(|p| {
            [&p.chosen, &p.rejected]
                .into_iter()
                .filter(|r| !evasion(r.as_str()))
                .map(|r| Example::Generation {
                    prompt: p.prompt.clone(),
                    response: r.clone(),
                })
        })
        .collect();
    assert_eq!(
        examples.len(),
        700,
        "every held-out response but the 100 evasions"
    );
    let found = leaks(&corpus, &examples);
    assert!(found.is_empty(), "held-out pairs in the corpus: {found:?}");
}

/// Every pair of the world fits gpt-tiny's 128 positions, with room to spare: the reward task
/// refuses a pair it would have to truncate.
#[test]
fn world_pairs_fit_the_shipped_decoder() {
    let mut base = load_base("gpt-tiny").unwrap();
    let w = World::generate(WORLD_SEED);
    let (splits, kinds) = build_tagged(&w, DATA_SEED, SIZES);
    let task = RewardTask::new(
        &base.model,
        &mut base.store,
        &base.tok,
        &splits,
        Some(&kinds),
        RewardOptions::default(),
        1,
    )
    .unwrap();
    let all = task.train.iter().chain(&task.validation).chain(&task.test);
    let longest = all
        .flat_map(|p| [p.chosen.len(), p.rejected.len()])
        .max()
        .unwrap();
    println!(
        "world pairs: longest sequence {longest} tokens of {}",
        task.max_len
    );
    assert!(longest <= 120, "{longest}");
}
// ---------------------------------------------------------------------------------------------
// The reward model on gpt-tiny

/// P(X ≥ k) for X ~ Binomial(n, 1/2), exactly (a sum of n + 1 terms in f64).
fn binomial_tail(n: usize, k: usize) -> f64 {
    let mut pmf = 0.5f64.powi(n as i32); // P(X = 0)
    let mut tail = if k == 0 { pmf } else { 0.0 };
    for i in 1..=n {
        pmf *= (n - i + 1) as f64 / i as f64;
        if i >= k {
            tail += pmf;
        }
    }
    tail
}

#[test]
fn binomial_tail_is_exact_on_small_cases() {
    assert!((binomial_tail(4, 0) - 1.0).abs() < 1e-15);
    assert!((binomial_tail(4, 3) - 5.0 / 16.0).abs() < 1e-15);
    assert!((binomial_tail(10, 10) - 1.0 / 1024.0).abs() < 1e-18);
}

#[test]
fn the_reward_task_refuses_encoders_and_pairs_longer_than_max_len() {
    let mut base = load_base("gpt-tiny").unwrap();
    let long = "word ".repeat(200);
    let splits = PreferenceSplits {
        train: vec![PreferencePair {
            prompt: "Question: hi\nAnswer:".into(),
            chosen: "Hello.".into(),
            rejected: long.trim().into(),
        }],
        ..PreferenceSplits::default()
    };
    let err = RewardTask::new(
        &base.model,
        &mut base.store,
        &base.tok,
        &splits,
        None,
        RewardOptions::default(),
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.contains("train pair 1 (1-based), field \"rejected\"") && err.contains("max_len 128"),
        "{err}"
    );
    let kinds = PairKinds {
        train: vec!["fact", "code"],
        ..PairKinds::default()
    };
    let err = RewardTask::new(
        &base.model,
        &mut base.store,
        &base.tok,
        &splits,
        Some(&kinds),
        RewardOptions::default(),
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("2 kinds for 1 train pairs"), "{err}");
    let mut bert = load_base("bert-tiny").unwrap();
    let err = RewardTask::new(
        &bert.model,
        &mut bert.store,
        &bert.tok,
        &splits,
        None,
        RewardOptions::default(),
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("needs a decoder"), "{err}");
}

/// gpt-tiny with LoRA (r 8 on q and v) and the reward head, trained on 320 pairs of the world
/// (40 steps of 8), scored on 200 held-out test pairs. Chance is 1/2; the accuracy must be one
/// that a coin ranking the pairs reaches with probability below 1e-4 (an exact binomial tail:
/// with n = 200, k ≥ 127 correct, 63.5%).
#[test]
fn a_reward_model_ranks_held_out_pairs_above_chance() {
    let mut base = load_base("gpt-tiny").unwrap();
    let w = World::generate(WORLD_SEED);
    let sizes = Sizes {
        train: 320,
        validation: 32,
        test: 200,
    };
    let (splits, kinds) = build_tagged(&w, DATA_SEED, sizes);
    let options = RewardOptions {
        center_rewards_coefficient: Some(0.01),
        ..RewardOptions::default()
    };
    let (task, method) = reward::prepare(
        &base.model,
        &mut base.store,
        &base.tok,
        &splits,
        Some(&kinds),
        &MethodSpec::Lora(Default::default()),
        options,
        7,
    )
    .unwrap();
    assert_eq!(task.model.config.dropout, 0.0, "TRL's disable_dropout");
    let before =
        TrainTask::<f32>::evaluate(&task, &base.store, method.as_ref(), Split::Test, 0, 50)
            .unwrap();
    let args = TrainingArgs {
        output_dir: temp_dir("reward-model"),
        max_steps: Some(40),
        batch_size: 8,
        learning_rate: 3e-3,
        warmup_steps: 5,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        ..TrainingArgs::default()
    };
    let report = train(
        Training::new(&args, &task, &mut base.store)
            .hooks(method.as_ref())
            .log_file(false),
    )
    .unwrap();
    let after = TrainTask::<f32>::evaluate(&task, &base.store, method.as_ref(), Split::Test, 0, 50)
        .unwrap();
    let losses = &report.state.losses;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "reward model: {} steps in {:.1} s, train loss {:.3} → {:.3}",
        losses.len(),
        report.seconds,
        mean(&losses[..10]),
        mean(&losses[losses.len() - 10..])
    );
    for (name, m) in [("before", &before), ("after", &after)] {
        println!(
            "  {name}: test loss {:.3}, accuracy {:.3}, margin {:.3}, chosen {:.3}, rejected {:.3}; by kind {}",
            m["loss"],
            m["accuracy"],
            m["margin"],
            m["reward_chosen"],
            m["reward_rejected"],
            KIND_ACCURACY.iter().map(|k| format!("{k} {:.3}", m[*k])).collect::<Vec<_>>().join(", ")
        );
    }
    let n = task.test.len();
    let k = (after["accuracy"] * n as f64).round() as usize;
    let p = binomial_tail(n, k);
    let need = (0..=n)
        .find(|&j| binomial_tail(n, j) < 1e-4)
        .unwrap_or(n + 1);
    println!(
        "  held-out: {k}/{n} pairs ranked right (chance: {}; p < 1e-4 needs {need}); P(a coin does as well) = {p:.2e}",
        n / 2
    );
    assert!(
        p < 1e-4 && k >= need,
        "{k}/{n} right is not clearly above chance (p = {p:e})"
    );
    assert!(after["loss"] < before["loss"], "{before:?} {after:?}");
    assert!(after["margin"] > before["margin"]);
    assert!(mean(&losses[losses.len() - 10..]) < mean(&losses[..10]));
    // Scoring (prompt, response) texts gives the rewards evaluation gave the pairs.
    let items: Vec<(&str, &str)> = splits.test[..6]
        .iter()
        .flat_map(|p| {
            [
                (p.prompt.as_str(), p.chosen.as_str()),
                (p.prompt.as_str(), p.rejected.as_str()),
            ]
        })
        .collect();
    let r = task
        .reward(&base.store, method.as_ref(), &items, 4)
        .unwrap();
    let scores = task
        .score_pairs(&base.store, method.as_ref(), &task.test[..6], 6)
        .unwrap();
    for i in 0..6 {
        assert!(
            (r[2 * i] - scores.chosen[i]).abs() < 1e-4,
            "{} vs {}",
            r[2 * i],
            scores.chosen[i]
        );
        assert!((r[2 * i + 1] - scores.rejected[i]).abs() < 1e-4);
    }
}
