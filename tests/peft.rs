//! Fine-tuning methods: unchanged model at initialisation, only the method's parameters change
//! after a step, LoRA merge/unmerge, and gradients through every method's hooks.

use ndarray::{array, ArrayD};
use tunelab::nn::{Config, Input, Pooling, SequenceHead, Transformer};
use tunelab::optim::{AdamW, AdamWConfig, Optimizer};
use tunelab::peft::lora::{Lora, LoraConfig};
use tunelab::peft::{apply, Method, MethodSpec};
use tunelab::{Grads, ParamStore, Tape};

fn setup(config: Config) -> (Transformer, SequenceHead, ParamStore<f64>) {
    let mut config = config;
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 5).unwrap();
    let head = SequenceHead::new(&mut store, &model, 3, Pooling::default_for(&model), 6).unwrap();
    (model, head, store)
}

fn models() -> Vec<(Transformer, SequenceHead, ParamStore<f64>)> {
    vec![
        setup(Config::gpt(29, 8, 2, 2, 16)),
        setup(Config::bert(29, 8, 2, 2, 16)),
    ]
}

fn specs() -> Vec<MethodSpec> {
    let lora = LoraConfig {
        r: 2,
        alpha: 4.0,
        targets: vec!["q".into(), "v".into(), "fc".into()],
        ..Default::default()
    };
    vec![
        MethodSpec::Full { last_k: None },
        MethodSpec::Full { last_k: Some(1) },
        MethodSpec::Bitfit,
        MethodSpec::Lora(lora.clone()),
        MethodSpec::Lora(LoraConfig {
            targets: vec!["qkv".into(), "o".into(), "proj".into()],
            rslora: true,
            ..lora.clone()
        }),
        MethodSpec::Dora(lora),
    ]
}

/// Logits of the classification head, and (optionally) a backward pass of a loss on them.
fn run(
    model: &Transformer,
    head: &SequenceHead,
    method: &dyn Method<f64>,
    store: &ParamStore<f64>,
    grads: Option<&mut Grads<f64>>,
) -> (ArrayD<f64>, f64) {
    let ids = array![[3usize, 7, 1, 9], [4, 2, 0, 0]];
    let mask = array![[true, true, true, true], [true, true, false, false]];
    let mut tape = Tape::new(store);
    let h = model
        .forward(
            &mut tape,
            method,
            &Input::new(ids.view()).with_mask(mask.view()),
        )
        .unwrap();
    let logits = head
        .forward(&mut tape, method, model, h, Some(mask.view()))
        .unwrap();
    let loss = tape.cross_entropy(logits, &[2, 0], -100).unwrap();
    if let Some(g) = grads {
        tape.backward(loss, g).unwrap();
    }
    (tape.value(logits).to_owned(), tape.scalar(loss).unwrap())
}

fn unfreeze_head(store: &mut ParamStore<f64>, head: &SequenceHead) {
    store.set_trainable(head.out.weight, true);
    if let Some(b) = head.out.bias {
        store.set_trainable(b, true);
    }
}

#[test]
fn peft_methods_leave_the_model_unchanged_at_init() {
    for (model, head, store) in models() {
        let (before, _) = run(
            &model,
            &head,
            &tunelab::peft::full::Full { last_k: None },
            &store,
            None,
        );
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            let (after, _) = run(&model, &head, method.as_ref(), &s, None);
            let d = before
                .iter()
                .zip(&after)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                d < 1e-12,
                "{} changed the output at init by {d}",
                spec.name()
            );
        }
    }
}

#[test]
fn peft_step_changes_only_the_methods_parameters() {
    for (model, head, store) in models() {
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            unfreeze_head(&mut s, &head);
            let trainable: Vec<bool> = s.iter().map(|(_, p)| p.trainable).collect();
            let before = s.clone();
            let mut grads = Grads::new(&s);
            run(&model, &head, method.as_ref(), &s, Some(&mut grads));
            let mut opt = AdamW::<f64>::new(AdamWConfig::default()).unwrap();
            opt.step(&mut s, &grads, 1e-2);
            for (id, p) in s.iter() {
                let old = &before.get(id).value;
                if trainable[id.index()] {
                    assert!(
                        grads.get(id).is_some() || p.value == *old,
                        "{}: trainable {} got no gradient",
                        spec.name(),
                        p.name
                    );
                } else {
                    assert_eq!(&p.value, old, "{}: frozen {} changed", spec.name(), p.name);
                    assert!(
                        grads.get(id).is_none(),
                        "{}: frozen {} holds a gradient",
                        spec.name(),
                        p.name
                    );
                }
            }
            for &id in method.params() {
                assert!(
                    s.is_trainable(id),
                    "{}: its own parameter {} is frozen",
                    spec.name(),
                    s.name(id)
                );
            }
        }
    }
}

#[test]
fn peft_trainable_counts_say_what_trains() {
    let (model, head, store) = setup(Config::gpt(29, 8, 2, 2, 16));
    let mut s = store.clone();
    apply(&MethodSpec::Bitfit, &model, &mut s, 0).unwrap();
    assert!(s
        .iter()
        .filter(|(_, p)| p.trainable)
        .all(|(_, p)| p.name.ends_with(".bias")));
    let mut s = store.clone();
    let lora = LoraConfig {
        r: 2,
        alpha: 4.0,
        targets: vec!["q".into(), "v".into()],
        ..Default::default()
    };
    apply(&MethodSpec::Lora(lora), &model, &mut s, 0).unwrap();
    unfreeze_head(&mut s, &head);
    // Per block: q and v each get A (2, 8) and B (8, 2): 64 parameters; two blocks; plus the head (3·8).
    assert_eq!(s.num_trainable(), 2 * 64 + 24);
    assert!(s
        .trainable_summary()
        .starts_with("trainable params: 152 || all params: "));
}

#[test]
fn lora_merge_then_unmerge_restores_the_base_and_merged_equals_adapter() {
    for (model, head, store) in models() {
        let mut s = store.clone();
        let config = LoraConfig {
            r: 2,
            alpha: 4.0,
            targets: vec!["q".into(), "v".into(), "o".into(), "fc".into()],
            ..Default::default()
        };
        let mut lora = Lora::apply(&model, &mut s, config, false, 3).unwrap();
        // Give B non-zero values, as after training.
        for t in lora.targets.values() {
            for u in &t.units {
                let b = s.value(u.b).mapv(|_| 0.0) + 0.3;
                s.set_value(u.b, b).unwrap();
            }
        }
        let base = s.clone();
        let (adapter, _) = run(&model, &head, &lora, &s, None);
        lora.merge(&mut s).unwrap();
        let (merged, _) = run(&model, &head, &lora, &s, None);
        let d = adapter
            .iter()
            .zip(&merged)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(d < 1e-5, "merged output differs from adapter output by {d}");
        lora.unmerge(&mut s).unwrap();
        for (id, p) in s.iter() {
            let d = p
                .value
                .iter()
                .zip(base.value(id))
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            assert!(
                d < 1e-6,
                "{} differs from the base by {d} after unmerge",
                p.name
            );
        }
    }
}

/// Every method's hooks, differentiated end to end, against central differences.
#[test]
fn peft_gradients_match_finite_differences() {
    for (model, head, store) in models() {
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            unfreeze_head(&mut s, &head);
            // Move every method parameter off its initial value (B = 0 hides A's gradient).
            for &id in method.params() {
                let v = s.value(id).mapv(|x| x + 0.05);
                s.set_value(id, v).unwrap();
            }
            let mut grads = Grads::new(&s);
            run(&model, &head, method.as_ref(), &s, Some(&mut grads));
            let mut probe = s.clone();
            for &id in method.params() {
                let g = grads.get(id).expect("method parameter has a gradient");
                let n = g.len();
                for i in (0..n).step_by(n / 4 + 1) {
                    let x0 = s.value(id).as_slice().unwrap()[i];
                    let h = 1e-6;
                    probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0 + h;
                    let (_, up) = run(&model, &head, method.as_ref(), &probe, None);
                    probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0 - h;
                    let (_, down) = run(&model, &head, method.as_ref(), &probe, None);
                    probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0;
                    let numeric = (up - down) / (2.0 * h);
                    let a = g.as_slice().unwrap()[i];
                    let rel = (a - numeric).abs() / a.abs().max(numeric.abs()).max(1e-3);
                    assert!(
                        rel < 1e-5,
                        "{} {}[{i}]: analytic {a}, numeric {numeric}",
                        spec.name(),
                        s.name(id)
                    );
                }
            }
        }
    }
}
