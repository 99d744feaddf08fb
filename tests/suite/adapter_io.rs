//! Adapters on disk and several adapters on one frozen base: every method saves only what it
//! trains, loads onto a fresh base with identical logits, is much smaller than the base model
//! (PEFT methods), and an `AdapterSet` switches between adapters without touching the base.

use ndarray::{array, ArrayD, IxDyn};
use serde_json::json;
use std::path::{Path, PathBuf};
use tunelab::io::adapter::{file_size as adapter_file_size, read_config, CONFIG, WEIGHTS};
use tunelab::io::{checkpoint, safetensors};
use tunelab::nn::{Config, Hooks, Input, Pooling, SequenceHead, Transformer};
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::store::{adapter_params, load_adapter, save_adapter, AdapterSet};
use tunelab::peft::{apply, registry, MethodSpec};
use tunelab::{ParamId, ParamStore, Tape};

/// A tiny GPT (V 29, C 8, NH 2, L 2, T ≤ 16), no dropout, with a 3-way sequence head.
fn setup() -> (Transformer, SequenceHead, ParamStore<f64>) {
    let mut config = Config::gpt(29, 8, 2, 2, 16);
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 5).unwrap();
    let head = SequenceHead::new(&mut store, &model, 3, Pooling::default_for(&model), 6).unwrap();
    (model, head, store)
}

fn head_ids(head: &SequenceHead) -> Vec<ParamId> {
    let mut ids = vec![head.out.weight];
    ids.extend(head.out.bias);
    ids
}

fn lora() -> LoraConfig {
    LoraConfig {
        r: 2,
        alpha: 4.0,
        ..Default::default()
    }
}

/// Every method's test configurations from the registry (every MethodSpec variant and a few
/// options), with a label for file names and messages.
fn specs() -> Vec<(&'static str, MethodSpec)> {
    registry::test_examples()
        .into_iter()
        .map(|(_, label, spec)| (label, spec))
        .collect()
}

/// A fresh directory under cargo's per-target scratch space.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("adapter_io")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The head's logits (B, 3) and the LM logits (B, T, V), flattened together: with both, every
/// parameter a method can touch shows up in the output.
fn logits(
    model: &Transformer,
    head: &SequenceHead,
    hooks: &dyn Hooks<f64>,
    store: &ParamStore<f64>,
) -> Vec<f64> {
    let ids = array![[3usize, 7, 1, 9], [4, 2, 0, 0]];
    let mask = array![[true, true, true, true], [true, true, false, false]];
    let mut tape = Tape::inference(store);
    let input = Input::new(ids.view()).with_mask(mask.view());
    let h = model.forward(&mut tape, hooks, &input).unwrap();
    let cls = head
        .forward(&mut tape, hooks, model, h, Some(mask.view()))
        .unwrap();
    let lm = model.lm_logits(&mut tape, hooks, h).unwrap();
    let mut out: Vec<f64> = tape.value(cls).iter().copied().collect();
    out.extend(tape.value(lm).iter().copied());
    out
}

/// "Trains" every trainable parameter: adds a deterministic, parameter-specific wiggle, so no
/// tensor keeps its init (LoRA's B and the adapters' up-projections start at zero).
fn perturb(store: &mut ParamStore<f64>, salt: f64) {
    for (id, p) in store.iter_mut() {
        if p.trainable {
            let k = id.index() as f64;
            let mut i = 0.0;
            p.value.mapv_inplace(|x| {
                i += 1.0;
                x + 0.3 * (1.7 * k + 0.9 * i + salt).sin()
            });
        }
    }
}

/// Applies `spec` to a fresh base, unfreezes the head, perturbs what trains, saves the adapter
/// into `dir`; returns the logits after saving (what the saved adapter computes).
fn train_and_save(spec: &MethodSpec, dir: &Path, salt: f64) -> Vec<f64> {
    let (model, head, mut store) = setup();
    let mut method = apply(spec, &model, &mut store, 1).unwrap();
    for id in head_ids(&head) {
        store.set_trainable(id, true);
    }
    perturb(&mut store, salt);
    let before = logits(&model, &head, method.as_ref(), &store);
    save_adapter(
        dir,
        spec,
        method.as_mut(),
        &mut store,
        &head_ids(&head),
        json!({"task": "sentiment", "labels": ["neg", "neu", "pos"], "salt": salt}),
    )
    .unwrap();
    // Saving finalizes (prefix tuning folds its MLP; PiSSA and OLoRA put the original weights
    // back and double the rank); the model computes the same thing after: bit for bit, but for
    // the converted inits, whose W + s·B'A' only equals W_res + s·B A up to rounding.
    let after = logits(&model, &head, method.as_ref(), &store);
    if converts(spec) {
        let d = before
            .iter()
            .zip(&after)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(
            d < 1e-12,
            "{spec:?}: conversion changed the output by {d:e}"
        );
    } else {
        assert_eq!(before, after, "{spec:?}: finalize changed the output");
    }
    after
}

/// Whether `spec` is a PiSSA or OLoRA init, saved converted to plain LoRA.
fn converts(spec: &MethodSpec) -> bool {
    matches!(spec, MethodSpec::Lora(c) | MethodSpec::LoraFa(c) if c.init_lora_weights.changes_base())
}

/// Loads an adapter onto a fresh base; returns the logits.
fn load_alone(dir: &Path) -> Vec<f64> {
    let (model, head, mut store) = setup();
    let (_, method, _) = load_adapter(dir, &model, &mut store, 77).unwrap();
    logits(&model, &head, method.as_ref(), &store)
}

fn tensor_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = safetensors::load::<f64>(&dir.join(WEIGHTS))
        .unwrap()
        .tensors
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    names.sort();
    names
}

fn expect_err<T>(r: tunelab::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn every_method_round_trips_with_identical_logits() {
    let (model, head, base) = setup();
    let plain = logits(&model, &head, &tunelab::nn::NoHooks, &base);
    for (label, spec) in specs() {
        let dir = scratch(&format!("roundtrip_{label}"));
        let trained = train_and_save(&spec, &dir, 0.5);
        assert_ne!(trained, plain, "{label}: the perturbation changed nothing");

        let (model, head, mut store) = setup();
        // A different seed: every value that matters must come from the file.
        let (loaded_spec, method, meta) = load_adapter(&dir, &model, &mut store, 1234).unwrap();
        let got = logits(&model, &head, method.as_ref(), &store);
        assert_eq!(got, trained, "{label}: logits differ after loading");
        assert_eq!(method.name(), spec.name(), "{label}");
        assert_eq!(meta["task"], "sentiment", "{label}");
        assert_eq!(meta["labels"][2], "pos", "{label}");
        match (&spec, &loaded_spec) {
            (
                MethodSpec::Prefix {
                    n_virtual, hidden, ..
                },
                MethodSpec::Prefix {
                    n_virtual: n2,
                    reparameterize,
                    hidden: h2,
                },
            ) => {
                assert_eq!((n_virtual, hidden), (n2, h2), "{label}");
                assert!(
                    !reparameterize,
                    "{label}: a saved prefix is the folded table"
                );
            }
            // PiSSA / OLoRA: saved as the plain LoRA of rank 2r with the same scaling.
            (MethodSpec::Lora(c), MethodSpec::Lora(l)) if converts(&spec) => {
                let want = tunelab::peft::spec::LoraConfig {
                    r: 2 * c.r,
                    alpha: if c.rslora {
                        c.alpha * 2f64.sqrt()
                    } else {
                        2.0 * c.alpha
                    },
                    init_lora_weights: Default::default(),
                    ..c.clone()
                };
                assert_eq!(l, &want, "{label}");
                assert!((l.scaling() - c.scaling()).abs() < 1e-12, "{label}");
            }
            _ => assert_eq!(loaded_spec, spec, "{label}"),
        }
        // What the file holds is what trains after loading, plus what the method keeps frozen:
        // LoRA-FA's A (one of its own parameters) and VeRA's shared projections (tensors beside
        // them), both loaded frozen; the rest of the base is frozen.
        let names = tensor_names(&dir);
        let mut frozen = method.frozen_params();
        frozen.extend(method.frozen().iter().copied());
        for &id in &frozen {
            assert!(
                !store.is_trainable(id),
                "{label}: {} trains",
                store.name(id)
            );
        }
        let mut trainable: Vec<String> = store
            .iter()
            .filter(|(id, p)| p.trainable || frozen.contains(id))
            .map(|(_, p)| p.name.clone())
            .collect();
        trainable.sort();
        assert_eq!(names, trainable, "{label}");
    }
}

#[test]
fn adapter_files_hold_only_what_the_method_trains() {
    let (_, head, base) = setup();
    let n_base = base.len();
    let head_names = ["score.weight".to_string()];
    for (label, spec) in specs() {
        let dir = scratch(&format!("contents_{label}"));
        train_and_save(&spec, &dir, 0.2);
        let names = tensor_names(&dir);
        let (model, _, mut store) = setup();
        let method = apply(&spec, &model, &mut store, 1).unwrap();
        let added: Vec<String> = method
            .params()
            .iter()
            .chain(method.frozen())
            .map(|&id| store.name(id).to_string())
            .collect();
        let base_names: Vec<&String> = names
            .iter()
            .filter(|n| base.id(n).is_ok() && !head_names.contains(n))
            .collect();
        match &spec {
            MethodSpec::Full { last_k: None } => assert_eq!(names.len(), n_base, "{label}"),
            MethodSpec::Full { last_k: Some(1) } => {
                assert!(names.iter().any(|n| n.starts_with("h.1.")), "{label}");
                assert!(!names.iter().any(|n| n.starts_with("h.0.")), "{label}");
                assert!(!names.iter().any(|n| n.starts_with("wte")), "{label}");
            }
            MethodSpec::Bitfit => {
                assert!(!base_names.is_empty(), "{label}");
                assert!(base_names.iter().all(|n| n.ends_with(".bias")), "{label}");
            }
            MethodSpec::Prefix { .. } => {
                assert_eq!(names, ["prompt_embeddings", "score.weight"], "{label}");
            }
            _ => {
                // PEFT methods: their own tensors and the head, no base tensor.
                assert!(base_names.is_empty(), "{label}: {base_names:?}");
                let mut want = added.clone();
                want.push("score.weight".into());
                want.sort();
                assert_eq!(names, want, "{label}");
            }
        }
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(CONFIG)).unwrap()).unwrap();
        assert_eq!(config["method"], spec.name(), "{label}");
        assert_eq!(config["meta"]["salt"], 0.2, "{label}");
        if label == "prefix" {
            assert_eq!(config["reparameterize"], false);
            assert_eq!(config["reparameterization_folded"], true);
        }
    }
    // The head's ids are the extra tensors every adapter above carries.
    assert_eq!(head_ids(&head).len(), 1, "GPT-2's score Linear has no bias");
}

#[test]
fn peft_adapters_are_much_smaller_than_the_base_model() {
    // The base model file as a checkpoint ships it (no task head).
    let mut config = Config::gpt(29, 8, 2, 2, 16);
    config.dropout = 0.0;
    let mut base = ParamStore::<f64>::new();
    Transformer::new(config.clone(), &mut base, 5).unwrap();
    let base_dir = scratch("size_base");
    checkpoint::save(&base_dir, &config, &base).unwrap();
    let base_bytes = std::fs::metadata(base_dir.join(checkpoint::WEIGHTS))
        .unwrap()
        .len() as f64;
    for (label, spec) in specs() {
        let dir = scratch(&format!("size_{label}"));
        train_and_save(&spec, &dir, 0.1);
        let bytes = adapter_file_size(&dir).unwrap();
        assert_eq!(bytes, std::fs::metadata(dir.join(WEIGHTS)).unwrap().len());
        let ratio = bytes as f64 / base_bytes;
        eprintln!(
            "{label:>12}: {bytes:>6} bytes, {:5.1}% of the base",
            100.0 * ratio
        );
        match label {
            // The whole model again, plus the head.
            "full" => assert!(ratio > 1.0, "{label}: {ratio}"),
            "full_last1" => assert!(ratio > 0.3 && ratio < 1.0, "{label}: {ratio}"),
            "lora" | "ia3" | "prompt" | "prompt_vocab" | "prefix" | "prefix_table" | "bitfit"
            | "pfeiffer" | "houlsby" => assert!(ratio < 0.3, "{label}: {ratio}"),
            _ => assert!(ratio < 0.5, "{label}: {ratio}"),
        }
    }
}

#[test]
fn switching_adapters_matches_each_adapter_loaded_alone() {
    let labelled = specs();
    let chosen = [
        "lora",
        "lora_qkv_o",
        "dora",
        "full",
        "bitfit",
        "full_last1",
        "prefix",
        "prompt",
        "houlsby",
        "ia3",
        "pissa",
        "lora_fa",
        "adalora",
    ];
    let mut alone = Vec::new();
    for (i, name) in chosen.iter().enumerate() {
        let spec = &labelled.iter().find(|(l, _)| l == name).unwrap().1;
        let dir = scratch(&format!("switch_{name}"));
        let trained = train_and_save(spec, &dir, i as f64);
        let loaded = load_alone(&dir);
        assert_eq!(loaded, trained, "{name}");
        alone.push((name.to_string(), dir, loaded));
    }
    // A second LoRA adapter of the same config: same parameter names, different values.
    let dir_b = scratch("switch_lora_b");
    let trained_b = train_and_save(&MethodSpec::Lora(lora()), &dir_b, 40.0);
    assert_ne!(trained_b, alone[0].2);
    alone.push(("lora_b".into(), dir_b, trained_b));

    let (model, head, base) = setup();
    let base_copy = base.clone();
    let plain = logits(&model, &head, &tunelab::nn::NoHooks, &base);
    let mut set = AdapterSet::new(model, base);
    for (name, dir, _) in &alone {
        let meta = set.load(name, dir, 99).unwrap();
        assert_eq!(meta["task"], "sentiment");
    }
    let run = |set: &AdapterSet<f64>| logits(set.model(), &head, set.hooks(), set.store());
    let want = |name: &str| &alone.iter().find(|(n, _, _)| n == name).unwrap().2;

    // A → B → A with two adapters of one method, then through every other kind and back.
    let order = [
        "lora",
        "lora_b",
        "lora",
        "full",
        "lora",
        "bitfit",
        "prefix",
        "full_last1",
        "lora_b",
        "prompt",
        "dora",
        "houlsby",
        "ia3",
        "lora_qkv_o",
        "pissa",
        "lora",
        "adalora",
        "lora_fa",
        "full",
        "lora",
    ];
    for name in order {
        set.activate(name).unwrap();
        assert_eq!(set.active(), Some(name));
        assert_eq!(
            set.method().unwrap().name(),
            set.info(name).unwrap().0.name()
        );
        assert_eq!(&run(&set), want(name), "after switching to {name}");
    }
    // Loading while an adapter is active keeps it active and correct.
    let extra = scratch("switch_extra");
    let trained_extra = train_and_save(&MethodSpec::Ia3, &extra, 7.0);
    set.load("ia3_b", &extra, 0).unwrap();
    assert_eq!(set.active(), Some("lora"));
    assert_eq!(&run(&set), want("lora"));
    set.activate("ia3_b").unwrap();
    assert_eq!(run(&set), trained_extra);
    assert!(set.file_bytes("ia3_b").unwrap() > 0);

    // Removing the active adapter falls back to the base; removing another keeps the active one.
    set.activate("full").unwrap();
    set.remove("ia3_b").unwrap();
    assert_eq!(set.active(), Some("full"));
    assert_eq!(&run(&set), want("full"));
    set.remove("full").unwrap();
    assert_eq!(set.active(), None);
    set.activate("bitfit").unwrap();
    assert_eq!(&run(&set), want("bitfit"));

    set.deactivate();
    assert_eq!(run(&set), plain);
    let (_, base) = set.into_base();
    assert_eq!(base.len(), base_copy.len());
    for ((_, a), (_, b)) in base.iter().zip(base_copy.iter()) {
        assert_eq!(a.name, b.name);
        let bits = |x: &ArrayD<f64>| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(a.value.shape(), b.value.shape(), "{}", a.name);
        assert_eq!(bits(&a.value), bits(&b.value), "{} changed", a.name);
        assert!(!a.trainable, "{} is frozen in the set", a.name);
    }
}

#[test]
fn adapter_set_errors_leave_the_set_unchanged() {
    let good = scratch("set_errors_good");
    let want = train_and_save(&MethodSpec::Lora(lora()), &good, 3.0);
    let (model, head, base) = setup();
    let mut set = AdapterSet::new(model, base);
    set.load("a", &good, 0).unwrap();
    set.activate("a").unwrap();
    assert!(expect_err(set.load("a", &good, 0)).contains("already loaded"));
    assert!(expect_err(set.load("b", &scratch("set_errors_empty"), 0)).contains(CONFIG));

    // A tensor of the wrong shape is found after the method was applied: still no change.
    let bad = scratch("set_errors_bad");
    std::fs::copy(good.join(CONFIG), bad.join(CONFIG)).unwrap();
    let mut tensors = safetensors::load::<f64>(&good.join(WEIGHTS))
        .unwrap()
        .tensors;
    let name = "h.1.attn.c_attn.lora_B.v.weight";
    let t = tensors.iter_mut().find(|(n, _)| n == name).unwrap();
    t.1 = ArrayD::zeros(IxDyn(&[8, 3]));
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.view()))
        .collect();
    safetensors::save(&bad.join(WEIGHTS), &views, &[]).unwrap();
    let msg = expect_err(set.load("b", &bad, 0));
    assert!(msg.contains(name) && msg.contains(WEIGHTS), "{msg}");

    assert!(expect_err(set.activate("b")).contains("no adapter named"));
    assert_eq!(set.names(), ["a"]);
    assert_eq!(set.active(), Some("a"));
    assert_eq!(logits(set.model(), &head, set.hooks(), set.store()), want);
}

#[test]
fn missing_files_and_corrupt_configs_are_errors_naming_the_file() {
    let (model, _, mut store) = setup();
    let missing = scratch("err_missing");
    let msg = expect_err(load_adapter::<f64>(&missing, &model, &mut store, 0));
    assert!(msg.contains(CONFIG), "{msg}");
    assert!(expect_err(adapter_file_size(&missing)).contains(WEIGHTS));

    // A config but no tensor file.
    let dir = scratch("err_no_weights");
    train_and_save(&MethodSpec::Ia3, &dir, 0.0);
    std::fs::remove_file(dir.join(WEIGHTS)).unwrap();
    let msg = expect_err(load_adapter::<f64>(&dir, &model, &mut store, 0));
    assert!(msg.contains(WEIGHTS), "{msg}");

    // Not JSON; JSON but not an object; an unknown method; a field of the wrong type.
    for (i, text) in [
        "{\"method\": \"lora\", ",
        "[1, 2, 3]",
        "{\"method\": \"telepathy\"}",
        "{\"method\": \"houlsby\", \"bottleneck\": \"wide\"}",
    ]
    .iter()
    .enumerate()
    {
        let dir = scratch(&format!("err_config_{i}"));
        train_and_save(&MethodSpec::Ia3, &dir, 0.0);
        std::fs::write(dir.join(CONFIG), text).unwrap();
        let msg = expect_err(read_config(&dir));
        assert!(msg.contains(CONFIG), "{text}: {msg}");
        let msg = expect_err(load_adapter::<f64>(&dir, &model, &mut store, 0));
        assert!(msg.contains(CONFIG), "{text}: {msg}");
    }
    assert_eq!(store.len(), setup().2.len(), "failed loads added nothing");

    // A truncated tensor file.
    let dir = scratch("err_truncated");
    train_and_save(&MethodSpec::Ia3, &dir, 0.0);
    let bytes = std::fs::read(dir.join(WEIGHTS)).unwrap();
    std::fs::write(dir.join(WEIGHTS), &bytes[..bytes.len() - 9]).unwrap();
    let msg = expect_err(load_adapter::<f64>(&dir, &model, &mut store, 0));
    assert!(msg.contains(WEIGHTS), "{msg}");
}

/// Rewrites one tensor of a saved adapter (or drops it, or adds a stranger).
fn tamper(from: &Path, to: &Path, edit: impl Fn(&mut Vec<(String, ArrayD<f64>)>)) {
    std::fs::copy(from.join(CONFIG), to.join(CONFIG)).unwrap();
    let mut tensors = safetensors::load::<f64>(&from.join(WEIGHTS))
        .unwrap()
        .tensors;
    edit(&mut tensors);
    let views: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.view()))
        .collect();
    safetensors::save(&to.join(WEIGHTS), &views, &[]).unwrap();
}

#[test]
fn wrong_shapes_missing_and_unknown_tensors_are_errors_naming_the_tensor() {
    let good = scratch("shape_good");
    train_and_save(&MethodSpec::Lora(lora()), &good, 0.0);
    let load = |dir: &Path| {
        let (model, _, mut store) = setup();
        expect_err(load_adapter::<f64>(dir, &model, &mut store, 0))
    };

    // A method tensor: A is (r, C) = (2, 8); give it (8, 2).
    let dir = scratch("shape_method");
    let a = "h.0.attn.c_attn.lora_A.q.weight";
    tamper(&good, &dir, |ts| {
        let t = ts.iter_mut().find(|(n, _)| n == a).unwrap();
        t.1 = ArrayD::zeros(IxDyn(&[8, 2]));
    });
    let msg = load(&dir);
    assert!(msg.contains(a) && msg.contains("(8, 2)"), "{msg}");
    assert!(msg.contains(WEIGHTS), "{msg}");

    // A base tensor (the head).
    let dir = scratch("shape_head");
    tamper(&good, &dir, |ts| {
        let t = ts.iter_mut().find(|(n, _)| n == "score.weight").unwrap();
        t.1 = ArrayD::zeros(IxDyn(&[4, 8]));
    });
    let msg = load(&dir);
    assert!(
        msg.contains("score.weight") && msg.contains(WEIGHTS),
        "{msg}"
    );

    // A tensor the method trains is missing.
    let dir = scratch("shape_missing");
    let b = "h.1.attn.c_attn.lora_B.v.weight";
    tamper(&good, &dir, |ts| ts.retain(|(n, _)| n != b));
    let msg = load(&dir);
    assert!(msg.contains(b) && msg.contains("missing"), "{msg}");

    // A tensor the model does not have.
    let dir = scratch("shape_unknown");
    tamper(&good, &dir, |ts| {
        ts.push((
            "h.9.attn.c_attn.lora_A.q.weight".into(),
            ArrayD::zeros(IxDyn(&[2, 8])),
        ))
    });
    let msg = load(&dir);
    assert!(msg.contains("h.9.attn.c_attn.lora_A.q.weight"), "{msg}");

    // A spec whose shapes differ from the file's (r = 4 in the config, r = 2 in the tensors).
    let dir = scratch("shape_rank");
    tamper(&good, &dir, |_| {});
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(CONFIG)).unwrap()).unwrap();
    config["r"] = json!(4);
    std::fs::write(dir.join(CONFIG), config.to_string()).unwrap();
    let msg = load(&dir);
    assert!(msg.contains("lora_A") && msg.contains("(4, 8)"), "{msg}");
}

#[test]
fn one_store_takes_one_adapter_of_a_method_and_specs_must_match_methods() {
    let dir = scratch("one_store");
    train_and_save(&MethodSpec::Lora(lora()), &dir, 0.0);
    let (model, _, mut store) = setup();
    load_adapter::<f64>(&dir, &model, &mut store, 0).unwrap();
    let msg = expect_err(load_adapter::<f64>(&dir, &model, &mut store, 0));
    assert!(msg.contains("AdapterSet"), "{msg}");

    let (model, head, mut store) = setup();
    let mut method = apply(&MethodSpec::Ia3, &model, &mut store, 0).unwrap();
    let msg = expect_err(save_adapter(
        &scratch("mismatch"),
        &MethodSpec::Bitfit,
        method.as_mut(),
        &mut store,
        &head_ids(&head),
        json!(null),
    ));
    assert!(msg.contains("bitfit") && msg.contains("ia3"), "{msg}");

    // The tensor list: method params first, then extras, then other trainables, no repeats.
    store.set_trainable(head.out.weight, true);
    let ids = adapter_params(method.as_ref(), &store, &[head.out.weight]).unwrap();
    assert_eq!(&ids[..method.params().len()], method.params());
    assert_eq!(ids.len(), method.params().len() + 1);
    // An id from a larger store is out of range here.
    let mut big = ParamStore::<f64>::new();
    Transformer::new(Config::gpt(29, 8, 2, 6, 16), &mut big, 0).unwrap();
    let stranger = big.ids().last().unwrap();
    assert!(stranger.index() >= store.len());
    assert!(adapter_params(method.as_ref(), &store, &[stranger]).is_err());
}
