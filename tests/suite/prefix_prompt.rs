//! Prefix tuning and prompt tuning: padding invariance with the extra keys / virtual tokens,
//! the causal property, what trains, gradients against central differences, folding the prefix
//! MLP away, prompt initialisation and parameter counts.

use crate::common::unfreeze_head;
use approx::{abs_diff_eq, abs_diff_ne};
use ndarray::{array, s, Array2, ArrayD};
use tunelab::nn::{Config, Input, Pooling, SequenceHead, Transformer};
use tunelab::optim::{AdamW, AdamWConfig, Optimizer};
use tunelab::peft::prefix::{Prefix, PrefixConfig, Source};
use tunelab::peft::prompt::{Prompt, PromptInit};
use tunelab::peft::{apply, registry, Method, MethodSpec};
use tunelab::{Grads, ParamStore, Tape};

fn setup(config: Config) -> (Transformer, SequenceHead, ParamStore<f64>) {
    let mut config = config;
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 5).unwrap();
    let head = SequenceHead::new(&mut store, &model, 3, Pooling::default_for(&model), 6).unwrap();
    (model, head, store)
}

fn gpt() -> (Transformer, SequenceHead, ParamStore<f64>) {
    setup(Config::gpt(29, 8, 2, 2, 16))
}

fn bert() -> (Transformer, SequenceHead, ParamStore<f64>) {
    setup(Config::bert(29, 8, 2, 2, 16))
}

/// The registry's test configurations of prefix and prompt tuning.
fn specs() -> Vec<MethodSpec> {
    registry::test_examples()
        .into_iter()
        .filter(|(method, _, _)| ["prefix", "prompt"].contains(&method.name))
        .map(|(_, _, spec)| spec)
        .collect()
}

fn label(spec: &MethodSpec) -> String {
    format!("{spec:?}")
}

/// LM logits (B, T, V) of the model with `method`'s hooks, no gradients.
fn logits(
    model: &Transformer,
    method: &dyn Method<f64>,
    store: &ParamStore<f64>,
    input: &Input<'_>,
) -> ArrayD<f64> {
    let mut tape = Tape::inference(store);
    let h = model.forward(&mut tape, method, input).unwrap();
    let l = model.lm_logits(&mut tape, method, h).unwrap();
    tape.value(l).to_owned()
}

/// A classification loss on the head plus an LM loss on every real token, so every position's
/// output depends on the method's parameters; with an optional backward pass.
fn run(
    model: &Transformer,
    head: &SequenceHead,
    method: &dyn Method<f64>,
    store: &ParamStore<f64>,
    grads: Option<&mut Grads<f64>>,
) -> (ArrayD<f64>, f64) {
    let ids = array![[3usize, 7, 1, 9], [4, 2, 0, 0]];
    let mask = array![[true, true, true, true], [true, true, false, false]];
    let targets: Vec<i64> = vec![7, 1, 9, 5, 2, 8, -100, -100];
    let mut tape = Tape::new(store);
    let h = model
        .forward(
            &mut tape,
            method,
            &Input::new(ids.view()).with_mask(mask.view()),
        )
        .unwrap();
    let cls = head
        .forward(&mut tape, method, model, h, Some(mask.view()))
        .unwrap();
    let lm = model.lm_logits(&mut tape, method, h).unwrap();
    let l1 = tape.cross_entropy(cls, &[2, 0], -100).unwrap();
    let l2 = tape.cross_entropy(lm, &targets, -100).unwrap();
    let loss = tape.add(l1, l2).unwrap();
    if let Some(g) = grads {
        tape.backward(loss, g).unwrap();
    }
    (tape.value(lm).to_owned(), tape.scalar(loss).unwrap())
}

#[test]
fn prefix_and_prompt_do_change_the_output_at_init() {
    // Unlike LoRA, neither method starts as the identity: the prefix / prompt is attended to.
    for (model, head, store) in [gpt(), bert()] {
        let (plain, _) = run(
            &model,
            &head,
            &tunelab::peft::full::Full { last_k: None },
            &store,
            None,
        );
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            let (with, _) = run(&model, &head, method.as_ref(), &s, None);
            assert_eq!(plain.shape(), with.shape(), "{}", label(&spec));
            crate::common::assert_finite(&plain);
            crate::common::assert_finite(&with);
            assert!(
                abs_diff_ne!(plain, with, epsilon = 1e-8),
                "{}: output unchanged",
                label(&spec)
            );
        }
    }
}

#[test]
fn right_padding_with_a_mask_gives_the_same_logits_gpt_and_bert() {
    for (model, _, store) in [gpt(), bert()] {
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            let alone = array![[3usize, 7, 1, 9, 4]];
            let want = logits(&model, method.as_ref(), &s, &Input::new(alone.view()));
            let padded = array![[3usize, 7, 1, 9, 4, 0, 0, 0], [5, 6, 2, 2, 8, 1, 3, 4]];
            let mask = Array2::from_shape_fn((2, 8), |(i, j)| i == 1 || j < 5);
            let got = logits(
                &model,
                method.as_ref(),
                &s,
                &Input::new(padded.view()).with_mask(mask.view()),
            );
            assert_eq!(got.shape(), &[2, 8, 29], "virtual positions are stripped");
            let got = got.slice(s![0..1, 0..5, ..]).into_dyn();
            assert!(
                abs_diff_eq!(got, want, epsilon = 1e-10),
                "{:?} {}: right-padded logits differ\n{got}\nalone\n{want}",
                model.config.arch,
                label(&spec)
            );
        }
    }
}

#[test]
fn left_padding_with_positions_gives_the_same_logits_gpt() {
    let (model, _, store) = gpt();
    for spec in specs() {
        let mut s = store.clone();
        let method = apply(&spec, &model, &mut s, 11).unwrap();
        let alone = array![[3usize, 7, 1]];
        let want = logits(&model, method.as_ref(), &s, &Input::new(alone.view()));
        let padded = array![[0usize, 0, 3, 7, 1], [5, 6, 2, 8, 4]];
        let mask = array![
            [false, false, true, true, true],
            [true, true, true, true, true]
        ];
        let positions = array![[0usize, 0, 0, 1, 2], [0, 1, 2, 3, 4]];
        let got = logits(
            &model,
            method.as_ref(),
            &s,
            &Input::new(padded.view())
                .with_mask(mask.view())
                .with_positions(positions.view()),
        );
        let left = got.slice(s![0..1, 2.., ..]).into_dyn();
        assert!(
            abs_diff_eq!(left, want, epsilon = 1e-10),
            "{}: left-padded logits differ\n{left}\nalone\n{want}",
            label(&spec)
        );
        // And the second row equals that sequence run alone.
        let row = array![[5usize, 6, 2, 8, 4]];
        let want = logits(&model, method.as_ref(), &s, &Input::new(row.view()));
        let second = got.slice(s![1..2, .., ..]).into_dyn();
        assert!(
            abs_diff_eq!(second, want, epsilon = 1e-10),
            "{}: batch row differs\n{second}\nalone\n{want}",
            label(&spec)
        );
    }
}

#[test]
fn causal_property_holds_with_a_prefix_or_prompt() {
    let (model, _, store) = gpt();
    for spec in specs() {
        let mut s = store.clone();
        let method = apply(&spec, &model, &mut s, 11).unwrap();
        let a = array![[3usize, 7, 1, 9, 4, 2]];
        let mut b = a.clone();
        b[[0, 3]] = 11; // change token t + 1 = 3
        let la = logits(&model, method.as_ref(), &s, &Input::new(a.view()));
        let lb = logits(&model, method.as_ref(), &s, &Input::new(b.view()));
        assert_eq!(
            la.slice(s![.., ..3, ..]),
            lb.slice(s![.., ..3, ..]),
            "{}: positions 0..=2 must not see token 3",
            label(&spec)
        );
        assert_eq!(la.shape(), lb.shape());
        crate::common::assert_finite(&la);
        crate::common::assert_finite(&lb);
        assert!(
            abs_diff_ne!(
                la.slice(s![.., 3.., ..]),
                lb.slice(s![.., 3.., ..]),
                epsilon = 1e-6
            ),
            "{}: positions 3.. must see token 3",
            label(&spec)
        );
    }
}

#[test]
fn a_step_changes_only_the_methods_parameters_and_the_head() {
    for (model, head, store) in [gpt(), bert()] {
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            unfreeze_head(&mut s, &head);
            let own = method.params().to_vec();
            let head_ids: Vec<_> = [Some(head.out.weight), head.out.bias]
                .into_iter()
                .flatten()
                .collect();
            let before = s.clone();
            let mut grads = Grads::new(&s);
            run(&model, &head, method.as_ref(), &s, Some(&mut grads));
            let mut opt = AdamW::<f64>::new(AdamWConfig::default()).unwrap();
            opt.step(&mut s, &grads, 1e-2);
            for (id, p) in s.iter() {
                let old = &before.get(id).value;
                if own.contains(&id) || head_ids.contains(&id) {
                    assert!(p.trainable, "{}: {} is frozen", label(&spec), p.name);
                    assert!(grads.get(id).is_some(), "{}: no gradient", p.name);
                    assert_ne!(&p.value, old, "{}: {} did not move", label(&spec), p.name);
                } else {
                    assert!(!p.trainable, "{}: base {} trains", label(&spec), p.name);
                    assert!(
                        grads.get(id).is_none(),
                        "{}: frozen {} holds a gradient",
                        label(&spec),
                        p.name
                    );
                    // Bit-identical, element by element.
                    assert!(
                        p.value
                            .iter()
                            .zip(old.iter())
                            .all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{}: frozen {} changed",
                        label(&spec),
                        p.name
                    );
                }
            }
        }
    }
}

/// Every element of every method parameter against central differences in f64.
#[test]
fn gradients_match_central_differences() {
    for (model, head, store) in [gpt(), bert()] {
        for spec in specs() {
            let mut s = store.clone();
            let method = apply(&spec, &model, &mut s, 11).unwrap();
            unfreeze_head(&mut s, &head);
            // Move off the initial values (the zero biases) as training would.
            for (k, &id) in method.params().iter().enumerate() {
                let v = s.value(id).mapv(|x| x + 0.05 * (k as f64 + 1.0));
                s.set_value(id, v).unwrap();
            }
            let mut grads = Grads::new(&s);
            run(&model, &head, method.as_ref(), &s, Some(&mut grads));
            let mut probe = s.clone();
            for &id in method.params() {
                let g = grads.get(id).expect("method parameter has a gradient");
                for i in 0..g.len() {
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
                        "{:?} {} {}[{i}]: analytic {a}, numeric {numeric}",
                        model.config.arch,
                        label(&spec),
                        s.name(id)
                    );
                }
            }
        }
    }
}

#[test]
fn prefix_finalize_folds_the_mlp_into_an_identical_table() {
    for (model, head, store) in [gpt(), bert()] {
        let mut s = store.clone();
        s.set_all_trainable(false);
        let config = PrefixConfig {
            n_virtual: 3,
            reparameterize: true,
            hidden: 5,
        };
        let mut prefix = Prefix::apply(&model, &mut s, config, 2).unwrap();
        // As after training: every MLP parameter moved off its init.
        for (k, &id) in prefix.params().to_vec().iter().enumerate() {
            let v = s.value(id).mapv(|x| x * 1.5 + 0.01 * k as f64);
            s.set_value(id, v).unwrap();
        }
        let mlp = prefix.params().to_vec();
        assert_eq!(mlp.len(), 5);
        let ids = array![[3usize, 7, 1, 9], [4, 2, 0, 0]];
        let mask = array![[true, true, true, true], [true, true, false, false]];
        let input = Input::new(ids.view()).with_mask(mask.view());
        let before = logits(&model, &prefix, &s, &input);
        prefix.finalize(&mut s).unwrap();
        let after = logits(&model, &prefix, &s, &input);
        assert_eq!(
            before, after,
            "{:?}: folding changed the output",
            model.config.arch
        );

        // Only the table is left in use and trainable: (P, 2·L·C).
        assert!(matches!(prefix.source, Source::Table(_)));
        let table = s.id("prompt_embeddings").unwrap();
        assert_eq!(prefix.params(), &[table]);
        assert_eq!(s.value(table).shape(), &[3, 2 * 2 * 8]);
        assert!(s.is_trainable(table));
        assert!(mlp.iter().all(|&id| !s.is_trainable(id)));
        assert_eq!(s.num_trainable(), 3 * 32);
        // The MLP no longer takes part: no gradient reaches it, the table gets one.
        unfreeze_head(&mut s, &head);
        let mut grads = Grads::new(&s);
        run(&model, &head, &prefix, &s, Some(&mut grads));
        assert!(grads.get(table).is_some());
        assert!(mlp.iter().all(|&id| grads.get(id).is_none()));
        // Folding again, or a prefix without the MLP, is a no-op.
        prefix.finalize(&mut s).unwrap();
        assert_eq!(prefix.params(), &[table]);
        let mut s2 = store.clone();
        let mut direct = apply(
            &MethodSpec::Prefix {
                n_virtual: 3,
                reparameterize: false,
                hidden: 0,
            },
            &model,
            &mut s2,
            2,
        )
        .unwrap();
        let n = s2.len();
        direct.finalize(&mut s2).unwrap();
        assert_eq!(s2.len(), n);
    }
}

#[test]
fn prefix_table_layout_matches_peft_past_key_values() {
    // Column block 2l holds layer l's keys, 2l + 1 its values: put a marker in layer 1's value
    // block and check the hook returns it as head h, prefix position p of layer 1's values.
    let (model, _, store) = gpt();
    let mut s = store.clone();
    let config = PrefixConfig {
        n_virtual: 3,
        reparameterize: false,
        hidden: 0,
    };
    let prefix = Prefix::apply(&model, &mut s, config, 2).unwrap();
    let Source::Table(table) = prefix.source else {
        panic!("direct prefix uses the table")
    };
    let (c, hs) = (8, 4);
    let (p, h, d) = (2, 1, 3);
    let col = 3 * c + h * hs + d; // block 2·1 + 1 = 3
    let mut v = s.value(table).clone();
    v[[p, col]] = 42.0;
    s.set_value(table, v).unwrap();
    let mut tape = Tape::inference(&s);
    let k = tape.constant(ArrayD::zeros(vec![2, 2, 4, hs]));
    let vv = tape.constant(ArrayD::zeros(vec![2, 2, 4, hs]));
    let (k1, v1) = tunelab::nn::Hooks::key_value(&prefix, &mut tape, 1, k, vv).unwrap();
    assert_eq!(tape.shape(k1), &[2, 2, 3 + 4, hs]);
    let values = tape.value(v1);
    for b in 0..2 {
        assert_eq!(values[[b, h, p, d]], 42.0);
    }
    assert_eq!(values.iter().filter(|&&x| x == 42.0).count(), 2);
    assert!(!tape.value(k1).iter().any(|&x| x == 42.0));
}

#[test]
fn prompt_init_from_vocab_is_the_embedding_of_those_words_at_the_start() {
    // GPT: token row + position row, exactly.
    let (model, _, store) = gpt();
    let mut s = store.clone();
    let prompt = Prompt::apply(&model, &mut s, 5, PromptInit::Vocab(vec![4, 9]), 0).unwrap();
    let table = s.value(prompt.prompt).clone();
    let (wte, wpe) = (s.value(model.tok_emb), s.value(model.pos_emb));
    assert_eq!(table.shape(), &[5, 8]);
    for (i, want) in [4usize, 9, 4, 9, 4].into_iter().enumerate() {
        let expected = &wte.slice(s![want, ..]) + &wpe.slice(s![i, ..]);
        assert_eq!(
            table.slice(s![i, ..]),
            expected,
            "row {i} is not token {want} at position {i}"
        );
    }
    // The same word at two positions starts as two different vectors.
    assert_ne!(table.slice(s![0, ..]), table.slice(s![2, ..]));
    // Fewer virtual tokens than ids: truncated.
    let mut s = store.clone();
    let prompt = Prompt::apply(&model, &mut s, 2, PromptInit::Vocab(vec![7, 3, 5]), 0).unwrap();
    let table = s.value(prompt.prompt);
    let expected =
        &s.value(model.tok_emb).slice(s![3, ..]) + &s.value(model.pos_emb).slice(s![1, ..]);
    assert_eq!(table.slice(s![1, ..]), expected);

    // BERT: what the embedding layer outputs (token + position + segment 0, then LayerNorm).
    let (model, _, store) = bert();
    let mut s = store.clone();
    let prompt = Prompt::apply(&model, &mut s, 3, PromptInit::Vocab(vec![4, 9]), 0).unwrap();
    let ids = ndarray::Array2::from_shape_vec((1, 3), vec![4usize, 9, 4]).unwrap();
    let mut tape = Tape::inference(&store);
    let x = model.embed(&mut tape, &Input::new(ids.view())).unwrap();
    let want = tape.value(x).to_shape((3, 8)).unwrap().to_owned();
    let got = s.value(prompt.prompt);
    for (a, b) in got.iter().zip(want.iter()) {
        assert!(abs_diff_eq!(a, b, epsilon = 1e-12), "{a} vs {b}");
    }
}

#[test]
fn random_prompt_init_has_the_scale_of_the_token_embeddings() {
    let mut store = ParamStore::<f64>::new();
    let mut config = Config::gpt(64, 32, 2, 1, 16);
    config.dropout = 0.0;
    let model = Transformer::new(config, &mut store, 1).unwrap();
    let prompt = Prompt::apply(&model, &mut store, 50, PromptInit::Random, 3).unwrap();
    let t = store.value(prompt.prompt);
    let std = (t.iter().map(|x| x * x).sum::<f64>() / t.len() as f64).sqrt();
    // The table was initialised normal(0, 0.02); 1600 samples pin the std within ~10 %.
    assert!(abs_diff_eq!(std, 0.02, epsilon = 0.003), "std {std}");
}

#[test]
fn bad_options_are_errors_not_panics() {
    let (model, _, store) = gpt();
    let bad = [
        MethodSpec::Prefix {
            n_virtual: 0,
            reparameterize: true,
            hidden: 4,
        },
        MethodSpec::Prefix {
            n_virtual: 2,
            reparameterize: true,
            hidden: 0,
        },
        MethodSpec::Prompt {
            n_virtual: 0,
            init: PromptInit::Random,
        },
        MethodSpec::Prompt {
            n_virtual: 2,
            init: PromptInit::Vocab(vec![]),
        },
        MethodSpec::Prompt {
            n_virtual: 2,
            init: PromptInit::Vocab(vec![3, 29]),
        },
    ];
    for spec in bad {
        let mut s = store.clone();
        assert!(apply(&spec, &model, &mut s, 0).is_err(), "{}", label(&spec));
    }
}

#[test]
fn specs_serialise_and_are_named() {
    for spec in specs() {
        let json = serde_json::to_string(&spec).unwrap();
        let back: MethodSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec, "{json}");
        assert!(MethodSpec::NAMES.contains(&spec.name()));
    }
    let prompt = MethodSpec::Prompt {
        n_virtual: 4,
        init: PromptInit::Vocab(vec![1, 2]),
    };
    assert_eq!(
        serde_json::to_string(&prompt).unwrap(),
        r#"{"method":"prompt","n_virtual":4,"init":{"vocab":[1,2]}}"#
    );
    // reparameterize defaults to true.
    let spec: MethodSpec =
        serde_json::from_str(r#"{"method":"prefix","n_virtual":10,"hidden":128}"#).unwrap();
    assert_eq!(
        spec,
        MethodSpec::Prefix {
            n_virtual: 10,
            reparameterize: true,
            hidden: 128
        }
    );
    assert_eq!(spec.name(), "prefix");
}

#[test]
fn trainable_counts_by_hand() {
    // The tiny test model: V 29, C 8, NH 2, L 2; P = 3, MLP hidden 5; GPT's `score` head 3×8.
    let (model, head, store) = gpt();
    let count = |spec: MethodSpec| {
        let mut s = store.clone();
        apply(&spec, &model, &mut s, 0).unwrap();
        unfreeze_head(&mut s, &head);
        s.num_trainable()
    };
    let head_n = 3 * 8;
    // E 3·8 + W1 5·8 + b1 5 + W2 (2·2·8)·5 + b2 32.
    let reparam = 3 * 8 + 5 * 8 + 5 + 32 * 5 + 32;
    assert_eq!(reparam, 261);
    let [a, b, c] = [
        MethodSpec::Prefix {
            n_virtual: 3,
            reparameterize: true,
            hidden: 5,
        },
        MethodSpec::Prefix {
            n_virtual: 3,
            reparameterize: false,
            hidden: 0,
        },
        MethodSpec::Prompt {
            n_virtual: 3,
            init: PromptInit::Random,
        },
    ]
    .map(count);
    assert_eq!(a, reparam + head_n);
    assert_eq!(b, 3 * 2 * 2 * 8 + head_n);
    assert_eq!(c, 3 * 8 + head_n);

    // A gpt-tiny-like model: V 1024, C 128, NH 4, L 4; P = 10, MLP hidden 128. No head.
    let mut store = ParamStore::<f32>::new();
    let model = Transformer::new(Config::gpt(1024, 128, 4, 4, 64), &mut store, 0).unwrap();
    let count = |spec: MethodSpec| {
        let mut s = store.clone();
        let mut m = apply(&spec, &model, &mut s, 0).unwrap();
        let n = s.num_trainable();
        m.finalize(&mut s).unwrap();
        (n, s.num_trainable())
    };
    let prefix = MethodSpec::Prefix {
        n_virtual: 10,
        reparameterize: true,
        hidden: 128,
    };
    // E 10·128 + W1 128·128 + 128 + W2 1024·128 + 1024 = 149 888; folded: 10 · 2·4·128 = 10 240.
    assert_eq!(count(prefix), (149_888, 10_240));
    let direct = MethodSpec::Prefix {
        n_virtual: 10,
        reparameterize: false,
        hidden: 128,
    };
    assert_eq!(count(direct), (10_240, 10_240));
    let prompt = MethodSpec::Prompt {
        n_virtual: 10,
        init: PromptInit::Vocab(vec![1, 2, 3]),
    };
    assert_eq!(count(prompt), (1_280, 1_280));
}
