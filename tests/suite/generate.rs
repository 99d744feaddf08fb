//! Generation through the key/value cache against the uncached reference: the same tokens for
//! every method of the registry (greedy, seeded sampling, batched left-padded prompts, the end
//! token, rows crossing max_len), decode logits against a full forward, and the cache's errors.

use ndarray::{Array2, ArrayD};
use tunelab::nn::generate::{generate, generate_uncached, left_pad, GenerateOptions};
use tunelab::nn::{Config, Hooks, Input, KvCache, NoHooks, Transformer};
use tunelab::peft::{apply, registry, Method};
use tunelab::{Float, ParamStore, Tape};

/// A small random GPT (V 31, C 16, NH 2, L 2) with position embeddings up to `max_len`.
fn gpt<F: Float>(max_len: usize) -> (Transformer, ParamStore<F>) {
    let mut config = Config::gpt(31, 16, 2, 2, max_len);
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 3).unwrap();
    (model, store)
}

/// Moves every trainable parameter away from its initial value, so that methods which are the
/// identity at init (LoRA's B = 0, adapters' up = 0, IA3's ones) change the model.
fn perturb<F: Float>(store: &mut ParamStore<F>) {
    let ids: Vec<_> = store.ids().filter(|&id| store.is_trainable(id)).collect();
    for (n, id) in ids.into_iter().enumerate() {
        let mut v = store.value(id).clone();
        for (j, x) in v.iter_mut().enumerate() {
            let noise = 0.3 * ((n * 131 + j) as f64 * 0.7).sin();
            *x = F::of(x.as_f64() + noise);
        }
        store.set_value(id, v).unwrap();
    }
}

/// A labelled model with a method applied.
type Case<F> = (String, Transformer, ParamStore<F>, Box<dyn Method<F>>);

/// Every registry test configuration applied to a fresh model, perturbed.
fn methods<F: Float>(max_len: usize) -> Vec<Case<F>> {
    registry::test_examples()
        .into_iter()
        .map(|(_, label, spec)| {
            let (model, mut store) = gpt::<F>(max_len);
            let method = apply(&spec, &model, &mut store, 11).unwrap();
            perturb(&mut store);
            (label.to_string(), model, store, method)
        })
        .collect()
}

fn prompts(lengths: &[usize]) -> Vec<Vec<usize>> {
    lengths
        .iter()
        .enumerate()
        .map(|(r, &n)| (0..n).map(|j| (r * 7 + j * 5 + 1) % 31).collect())
        .collect()
}

/// Cached and uncached generation of `prompts` under `opts`, asserted equal; returns the tokens.
fn both(
    label: &str,
    model: &Transformer,
    store: &ParamStore<f64>,
    hooks: &dyn Hooks<f64>,
    prompts: &[Vec<usize>],
    opts: &GenerateOptions,
) -> Vec<Vec<usize>> {
    let want = generate_uncached(model, store, hooks, prompts, opts).unwrap();
    let got = generate(model, store, hooks, prompts, opts).unwrap();
    assert_eq!(
        got, want,
        "{label}: cached and uncached differ under {opts:?}"
    );
    got
}

#[test]
fn cached_generation_equals_uncached_for_every_method() {
    let prompts = prompts(&[5, 1, 3, 7]);
    let greedy = GenerateOptions {
        max_new_tokens: 8,
        ..Default::default()
    };
    let sampled = [
        GenerateOptions {
            temperature: 0.8,
            top_k: Some(5),
            seed: 3,
            ..greedy.clone()
        },
        GenerateOptions {
            temperature: 1.3,
            seed: 4,
            ..greedy.clone()
        },
    ];
    let mut methods = methods::<f64>(32);
    let (model, store) = gpt::<f64>(32);
    methods.push(("no method".into(), model, store, Box::new(full_none())));
    for (label, model, store, method) in &methods {
        let out = both(label, model, store, method.as_ref(), &prompts, &greedy);
        assert!(out.iter().all(|o| o.len() == 8), "{label}: {out:?}");
        for opts in &sampled {
            both(label, model, store, method.as_ref(), &prompts, opts);
        }
        // The end token: row 0's third greedy token stops row 0 where it first produces it (and
        // any other row that produces it); the others go on with finished rows fed padding.
        let end = out[0][2];
        let eos = GenerateOptions {
            eos: Some(end),
            ..greedy.clone()
        };
        let stopped = both(label, model, store, method.as_ref(), &prompts, &eos);
        let first = out[0].iter().position(|&t| t == end).expect("produced");
        assert_eq!(stopped[0], out[0][..first], "{label}");
        let sampled_eos = GenerateOptions {
            eos: Some(out[0][2]),
            ..sampled[0].clone()
        };
        both(label, model, store, method.as_ref(), &prompts, &sampled_eos);
    }
}

/// The plain model, as a method with no hooks.
fn full_none() -> tunelab::peft::full::Full {
    tunelab::peft::full::Full { last_k: None }
}

#[test]
fn cached_generation_equals_uncached_across_max_len() {
    // max_len 12: the rows of 9 and 11 tokens cross it after 3 and 1 new tokens, the prompt of
    // 14 is cut to its last 12 at once, the row of 2 stays inside.
    let max_len = 12;
    let lengths = [9, 2, 11, 14];
    let prompts = prompts(&lengths);
    let greedy = GenerateOptions {
        max_new_tokens: 7,
        ..Default::default()
    };
    let sampled = GenerateOptions {
        temperature: 1.0,
        top_k: Some(8),
        seed: 5,
        ..greedy.clone()
    };
    for (label, model, store, method) in &methods::<f64>(max_len) {
        let out = both(label, model, store, method.as_ref(), &prompts, &greedy);
        assert!(
            lengths
                .iter()
                .zip(&out)
                .any(|(n, o)| n + o.len() > max_len + 1),
            "{label}: no row crossed max_len"
        );
        both(label, model, store, method.as_ref(), &prompts, &sampled);
        let eos = GenerateOptions {
            eos: Some(out[1][3]),
            ..greedy.clone()
        };
        both(label, model, store, method.as_ref(), &prompts, &eos);
        // With max_length (Hugging Face's), rows stop at max_len instead of sliding: the prompt
        // of 11 gets one token, the one of 14 none, the others fill up to 12.
        let capped = GenerateOptions {
            max_length: Some(max_len),
            ..greedy.clone()
        };
        let out = both(label, model, store, method.as_ref(), &prompts, &capped);
        let got: Vec<usize> = out.iter().map(Vec::len).collect();
        assert_eq!(
            got,
            vec![3, 7, 1, 0],
            "{label}: tokens per row under max_length"
        );
    }
}

/// LM logits (B, T, V) of a full forward.
fn full_logits(
    model: &Transformer,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    seqs: &[Vec<usize>],
) -> (ArrayD<f32>, Array2<bool>) {
    let (ids, mask, pos) = left_pad(seqs, 0);
    let mut tape = Tape::inference(store);
    let input = Input::new(ids.view())
        .with_mask(mask.view())
        .with_positions(pos.view());
    let h = model.forward(&mut tape, hooks, &input).unwrap();
    let l = model.lm_logits(&mut tape, hooks, h).unwrap();
    (tape.value(l).to_owned(), mask)
}

fn max_diff(a: ndarray::ArrayViewD<'_, f32>, b: ndarray::ArrayViewD<'_, f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b.iter())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn cached_decode_logits_match_the_full_forward_in_f32() {
    let lengths = [6, 2, 4];
    let mut methods = methods::<f32>(32);
    let (model, store) = gpt::<f32>(32);
    methods.push(("no method".into(), model, store, Box::new(full_none())));
    for (label, model, store, method) in &methods {
        let hooks = method.as_ref();
        let mut seqs = prompts(&lengths);
        let mut cache = KvCache::new(model);
        // Prefill: the hidden states of every real token equal the plain forward's.
        let (ids, mask, pos) = left_pad(&seqs, 0);
        let (want, _) = full_logits(model, store, hooks, &seqs);
        let mut tape = Tape::inference(store);
        let input = Input::new(ids.view())
            .with_mask(mask.view())
            .with_positions(pos.view());
        let h = model
            .forward_cached(&mut tape, hooks, &input, &mut cache)
            .unwrap();
        let l = model.lm_logits(&mut tape, hooks, h).unwrap();
        let got = tape.value(l).to_owned();
        let mut worst = 0.0f32;
        for (r, row) in mask.outer_iter().enumerate() {
            for (j, &real) in row.iter().enumerate() {
                if real {
                    let d = max_diff(
                        got.slice(ndarray::s![r, j, ..]).into_dyn(),
                        want.slice(ndarray::s![r, j, ..]).into_dyn(),
                    );
                    worst = worst.max(d);
                }
            }
        }
        assert!(worst < 1e-4, "{label}: prefill logits differ by {worst}");
        assert_eq!(cache.next_positions(), &lengths, "{label}");
        assert_eq!(cache.rows(), 3);
        drop(tape);
        // Decode steps of one token per row (row 1 finished after the first: fed padding).
        for step in 0..4 {
            let live = |r: usize| r != 1 || step == 0;
            let new: Vec<usize> = (0..3).map(|r| (step * 3 + r * 11 + 2) % 31).collect();
            let ids = Array2::from_shape_fn((3, 1), |(r, _)| new[r]);
            let m = Array2::from_shape_fn((3, 1), |(r, _)| live(r));
            let before = cache.len();
            let mut tape = Tape::inference(store);
            let input = Input::new(ids.view()).with_mask(m.view());
            let h = model
                .forward_cached(&mut tape, hooks, &input, &mut cache)
                .unwrap();
            let l = model.lm_logits(&mut tape, hooks, h).unwrap();
            let got = tape.value(l).to_owned();
            assert_eq!(got.shape(), &[3, 1, 31]);
            assert_eq!(cache.len(), before + 1, "{label}: one key per step");
            for (r, seq) in seqs.iter_mut().enumerate() {
                if live(r) {
                    seq.push(new[r]);
                }
            }
            let (want, _) = full_logits(model, store, hooks, &seqs);
            let t = want.shape()[1];
            for r in (0..3).filter(|&r| live(r)) {
                let d = max_diff(
                    got.slice(ndarray::s![r, 0, ..]).into_dyn(),
                    want.slice(ndarray::s![r, t - 1, ..]).into_dyn(),
                );
                assert!(d < 1e-4, "{label}: step {step} row {r} differs by {d}");
            }
            let next: Vec<usize> = seqs.iter().map(Vec::len).collect();
            assert_eq!(cache.next_positions(), next.as_slice(), "{label}");
        }
    }
}

#[test]
fn cache_sizes_count_prefix_keys_and_virtual_tokens() {
    // Prefix tuning caches P more keys per layer, prompt tuning P more positions; the rest none.
    let prompts = prompts(&[5, 3]);
    let (ids, mask, pos) = left_pad(&prompts, 0);
    for (_, label, spec) in registry::test_examples() {
        let (model, mut store) = gpt::<f64>(32);
        let method = apply(&spec, &model, &mut store, 11).unwrap();
        let extra = match spec {
            tunelab::peft::MethodSpec::Prefix { n_virtual, .. }
            | tunelab::peft::MethodSpec::Prompt { n_virtual, .. } => n_virtual,
            _ => 0,
        };
        let mut cache = KvCache::new(&model);
        assert!(cache.is_empty());
        let mut tape = Tape::inference(&store);
        let input = Input::new(ids.view())
            .with_mask(mask.view())
            .with_positions(pos.view());
        let h = model
            .forward_cached(&mut tape, method.as_ref(), &input, &mut cache)
            .unwrap();
        assert_eq!(
            tape.shape(h),
            &[2, 5, 16],
            "{label}: hidden states of the prompt only"
        );
        assert_eq!(cache.len(), extra + 5, "{label}");
        for layer in &cache.layers {
            let (k, v) = layer.keys_values().unwrap();
            assert_eq!(k.shape(), &[2, 2, extra + 5, 8], "{label}");
            assert_eq!(v.shape(), k.shape());
            // Row 1 is left-padded by 2: those keys are masked, the prefix/virtual ones are not.
            let m = layer.key_mask().unwrap();
            let row1: Vec<bool> = m.row(1).to_vec();
            let mut want = vec![true; extra];
            want.extend([false, false, true, true, true]);
            assert_eq!(row1, want, "{label}");
        }
    }
}

#[test]
fn cache_errors_name_the_problem_and_do_not_panic() {
    let (model, store) = gpt::<f64>(8);
    let ids = Array2::from_elem((2, 3), 1usize);
    let input = Input::new(ids.view());
    let mut cache = KvCache::new(&model);
    // A training tape.
    let mut tape = Tape::new(&store);
    let err = model
        .forward_cached(&mut tape, &NoHooks, &input, &mut cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains("inference"), "{err}");
    assert!(cache.is_empty());
    let mut tape = Tape::inference(&store);
    model
        .forward_cached(&mut tape, &NoHooks, &input, &mut cache)
        .unwrap();
    // Three rows of new tokens for a cache of two.
    let three = Array2::from_elem((3, 1), 1usize);
    let err = model
        .forward_cached(&mut tape, &NoHooks, &Input::new(three.view()), &mut cache)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 rows") && err.contains("2 rows"), "{err}");
    // Past max_len (8): positions 3..8 fit, the sixth new token would be at 8.
    let five = Array2::from_elem((2, 5), 1usize);
    model
        .forward_cached(&mut tape, &NoHooks, &Input::new(five.view()), &mut cache)
        .unwrap();
    assert_eq!(cache.next_positions(), &[8, 8]);
    let one = Array2::from_elem((2, 1), 1usize);
    let err = model
        .forward_cached(&mut tape, &NoHooks, &Input::new(one.view()), &mut cache)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("position 8") && err.contains("max_len 8"),
        "{err}"
    );
    // A mask of the wrong shape.
    let bad = Array2::from_elem((2, 2), true);
    let err = model
        .forward_cached(
            &mut tape,
            &NoHooks,
            &Input::new(one.view()).with_mask(bad.view()),
            &mut cache,
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("mask"), "{err}");
    // Generation needs a causal model and non-empty prompts.
    let opts = GenerateOptions::default();
    assert!(generate(&model, &store, &NoHooks, &[vec![]], &opts).is_err());
    let mut bert = Config::bert(31, 16, 2, 1, 8);
    bert.dropout = 0.0;
    let mut s = ParamStore::<f64>::new();
    let enc = Transformer::new(bert, &mut s, 0).unwrap();
    let err = generate(&enc, &s, &NoHooks, &[vec![1]], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("causal"), "{err}");
}
