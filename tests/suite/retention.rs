//! What the tape keeps for backward: only the values some backward reads (so freezing the base
//! saves activation memory), and with gradient checkpointing only each block's input, with the
//! same loss and gradients as keeping everything.

use ndarray::{Array, Array2};
use tunelab::lab::bench::{BenchShape, StepBench};
use tunelab::nn::{BlockRecompute, Config, Hooks, Input, Transformer};
use tunelab::peft::{apply, registry};
use tunelab::{Grads, ParamStore, Tape};

/// A small GPT-shaped benchmark model: the same wiring as the benchmarks, at test size.
fn small() -> BenchShape {
    BenchShape {
        d_model: 64,
        n_layers: 2,
        n_heads: 2,
        seq_len: 32,
        batch: 4,
        vocab: 256,
    }
}

#[test]
fn a_frozen_linear_keeps_nothing_of_its_input() {
    // p (trainable) → h = 2p → y = h Wᵀ → loss. With W frozen, the matmul's backward needs W
    // only (dh = G W), so h's value is released; with W trainable it is kept for dW = Gᵀ h.
    let held = |w_trainable: bool| {
        let mut store = ParamStore::<f32>::new();
        let p = store
            .add(
                "p",
                Array::from_shape_fn((64, 32), |(i, j)| (i + j) as f32 * 0.01).into_dyn(),
                true,
            )
            .unwrap();
        let w = store
            .add(
                "w",
                Array::from_shape_fn((8, 32), |(i, j)| (i * j) as f32 * 0.01).into_dyn(),
                w_trainable,
            )
            .unwrap();
        let mut tape = Tape::new(&store);
        let (pv, wv) = (tape.param(p), tape.param(w));
        let h = tape.scale(pv, 2.0).unwrap();
        let y = tape.matmul_t(h, wv, false, true).unwrap();
        let loss = tape.sum_all(y).unwrap();
        let before = tape.activation_bytes();
        tape.release_unsaved(0, &[loss]);
        let after = tape.activation_bytes();
        let mut grads = Grads::new(&store);
        tape.backward(loss, &mut grads).unwrap();
        (before, after, grads.get(p).unwrap().clone())
    };
    let h_bytes = 64 * 32 * 4;
    let (before, frozen, g_frozen) = held(false);
    let (_, trainable, g_trainable) = held(true);
    assert!(before >= h_bytes, "h was on the tape before release");
    assert!(
        frozen < h_bytes,
        "a frozen weight's matmul kept its input: {frozen} bytes held"
    );
    assert!(
        trainable >= h_bytes,
        "a trainable weight's matmul must keep its input: {trainable} bytes"
    );
    // Releasing changes no gradient.
    assert_eq!(g_frozen, g_trainable);
}

#[test]
fn every_frozen_base_method_holds_less_activation_memory_than_full_fine_tuning() {
    let held = |spec| {
        StepBench::new(small(), spec)
            .unwrap()
            .step_measured()
            .unwrap()
            .activation_bytes
    };
    let methods = tunelab::lab::bench::methods();
    let (_, full_spec) = methods.iter().find(|(n, _)| *n == "full").unwrap();
    let full = held(full_spec);
    for (name, spec) in &methods {
        let bytes = held(spec);
        eprintln!(
            "{name}: {bytes} bytes ({:.2} of full)",
            bytes as f64 / full as f64
        );
        if *name != "full" {
            assert!(
                bytes < full,
                "{name} holds {bytes} bytes for backward, full fine-tuning {full}"
            );
        }
    }
}

/// One forward and backward of a GPT with dropout on, returning the loss, the gradients and
/// the bytes the tape held after the forward.
fn run(
    model: &Transformer,
    hooks: &dyn Hooks<f64>,
    store: &ParamStore<f64>,
    checkpointing: bool,
) -> (f64, Grads<f64>, usize) {
    let (b, t) = (3, 12);
    let ids = Array2::from_shape_fn((b, t), |(i, j)| (7 * i + 3 * j + 1) % 50);
    let mut mask = Array2::from_elem((b, t), true);
    mask[[2, 0]] = false;
    mask[[2, 1]] = false;
    let targets: Vec<i64> = (0..b * t).map(|k| ((k * 5) % 50) as i64).collect();
    let mut tape = Tape::new(store);
    tape.seed(9);
    tape.set_checkpointing(checkpointing);
    let h = model
        .forward(
            &mut tape,
            hooks,
            &Input::new(ids.view()).with_mask(mask.view()),
        )
        .unwrap();
    let logits = model.lm_logits(&mut tape, hooks, h).unwrap();
    let loss = tape.cross_entropy(logits, &targets, -100).unwrap();
    tape.release_unsaved(0, &[loss]);
    let held = tape.activation_bytes();
    let mut grads = Grads::new(store);
    tape.backward_recomputing(loss, &mut grads, &BlockRecompute { model, hooks })
        .unwrap();
    (tape.scalar(loss).unwrap(), grads, held)
}

#[test]
fn gradient_checkpointing_gives_the_same_loss_and_gradients_with_less_memory() {
    let mut config = Config::gpt(50, 32, 4, 3, 16);
    config.dropout = 0.1;
    let mut base = ParamStore::<f64>::new();
    let model = Transformer::new(config, &mut base, 5).unwrap();
    let mut specs = vec![tunelab::peft::MethodSpec::Full { last_k: None }];
    specs.extend(registry::test_examples().into_iter().map(|(_, _, s)| s));
    for spec in specs {
        let mut store = base.clone();
        let method = apply(&spec, &model, &mut store, 3).unwrap();
        let (loss, grads, kept) = run(&model, method.as_ref(), &store, false);
        let (loss_c, grads_c, kept_c) = run(&model, method.as_ref(), &store, true);
        assert_eq!(
            loss,
            loss_c,
            "{}: checkpointing changed the loss (dropout masks must repeat)",
            spec.name()
        );
        let mut max_diff = 0.0f64;
        for id in store.ids() {
            match (grads.get(id), grads_c.get(id)) {
                (Some(a), Some(b)) => {
                    max_diff = a
                        .iter()
                        .zip(b)
                        .fold(max_diff, |m, (x, y)| m.max((x - y).abs()))
                }
                (None, None) => {}
                _ => panic!(
                    "{}: {} has a gradient in one run only",
                    spec.name(),
                    store.name(id)
                ),
            }
        }
        assert!(
            max_diff == 0.0,
            "{}: gradients differ by {max_diff:e} with checkpointing",
            spec.name()
        );
        assert!(
            kept_c < kept,
            "{}: checkpointing held {kept_c} bytes, without {kept}",
            spec.name()
        );
    }
}

#[test]
fn gradient_checkpointing_halves_full_fine_tunings_activations() {
    let measure = |on: bool| {
        let methods = tunelab::lab::bench::methods();
        let (_, full) = methods.iter().find(|(n, _)| *n == "full").unwrap();
        let mut bench = StepBench::new(small(), full)
            .unwrap()
            .with_gradient_checkpointing(on);
        let first = bench.step_measured().unwrap();
        let second = bench.step_measured().unwrap();
        (first, second)
    };
    let (plain, plain2) = measure(false);
    let (ckpt, ckpt2) = measure(true);
    eprintln!(
        "full fine-tuning: {} bytes held, {} with gradient checkpointing",
        plain.activation_bytes, ckpt.activation_bytes
    );
    assert!(
        2 * ckpt.activation_bytes <= plain.activation_bytes,
        "checkpointing kept {} of {} bytes",
        ckpt.activation_bytes,
        plain.activation_bytes
    );
    // The same training trajectory: the second step's loss follows the same update.
    assert_eq!(plain.loss, ckpt.loss);
    assert!((plain2.loss - ckpt2.loss).abs() < 1e-5);
}
