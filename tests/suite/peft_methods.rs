//! LoHa, LoKr and VeRA: parity with PEFT on adapters PEFT wrote (`tools/peft_methods_fixtures.py`:
//! the tiny BERT classifier with LoHa, LoKr, LoKr with decompose_both, VeRA; the tiny GPT-2 with
//! VeRA), the round trip PEFT → tunelab → PEFT with the same keys, values and logits, PEFT's
//! initialisation, trainable counts, merging, and the errors for what PEFT cannot express.
//!
//! The exported PEFT directories are left in `target/tmp/peft_methods/<fixture>-exported`, where
//! `python tools/peft_methods_fixtures.py --check` loads them with PEFT itself. Every comparison
//! prints its max difference (`-- --nocapture`).

use crate::common::unfreeze_head;
use ndarray::{array, ArrayD, Ix2};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tunelab::io::{adapter, hf, safetensors};
use tunelab::nn::{Arch, Config, Hooks, Input, Pooling, SequenceHead, Transformer};
use tunelab::peft::loha::Loha;
use tunelab::peft::lokr::{Lokr, LokrShape};
use tunelab::peft::spec::{LohaConfig, LokrConfig, VeraConfig};
use tunelab::peft::store::{load_adapter, save_adapter};
use tunelab::peft::vera::Vera;
use tunelab::peft::{apply, MethodSpec};
use tunelab::{Float, ParamStore, Tape};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

/// A fresh directory under cargo's per-target scratch space (kept after the run).
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("peft_methods")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn reference(name: &str) -> Vec<(String, ArrayD<f32>)> {
    safetensors::load::<f32>(&fixture(name)).unwrap().tensors
}

fn get<'a>(r: &'a [(String, ArrayD<f32>)], name: &str) -> &'a ArrayD<f32> {
    &r.iter().find(|(n, _)| n == name).unwrap().1
}

fn ids(r: &[(String, ArrayD<f32>)], name: &str) -> ndarray::Array2<usize> {
    get(r, name)
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .mapv(|x| x as usize)
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The PEFT fixtures: (adapter directory, base, reference file).
const BERT: [&str; 4] = [
    "bert-tiny-loha",
    "bert-tiny-lokr",
    "bert-tiny-lokr-both",
    "bert-tiny-vera",
];

/// Logits of the inputs of `fixture_name`'s reference file on a loaded base (BERT: the 3-way
/// classifier's (B, 3) through `head`; GPT-2: the LM's (B, T, V)).
fn logits_of(
    model: &Transformer,
    head: Option<&SequenceHead>,
    hooks: &dyn Hooks<f32>,
    store: &ParamStore<f32>,
    fixture_name: &str,
) -> ArrayD<f32> {
    let r = reference(&format!("{fixture_name}-ref.safetensors"));
    let ids = ids(&r, "input_ids");
    let mut tape = Tape::inference(store);
    match head {
        Some(head) => {
            let mask = self::ids(&r, "attention_mask").mapv(|x| x == 1);
            let types = self::ids(&r, "token_type_ids");
            let mut input = Input::new(ids.view()).with_mask(mask.view());
            input.token_types = Some(types.view());
            let h = model.forward(&mut tape, hooks, &input).unwrap();
            let logits = head
                .forward(&mut tape, hooks, model, h, Some(mask.view()))
                .unwrap();
            tape.value(logits).to_owned()
        }
        None => {
            let h = model
                .forward(&mut tape, hooks, &Input::new(ids.view()))
                .unwrap();
            let logits = model.lm_logits(&mut tape, hooks, h).unwrap();
            tape.value(logits).to_owned()
        }
    }
}

/// Logits of the fixture's inputs with the adapter in `dir` loaded onto its base; also the
/// loaded spec.
fn logits_with(dir: &Path, fixture_name: &str) -> (ArrayD<f32>, MethodSpec) {
    let gpt = fixture_name.starts_with("gpt2");
    let mut m = hf::load::<f32>(&fixture(if gpt { "gpt2-tiny" } else { "bert-tiny" })).unwrap();
    let head = (!gpt).then(|| SequenceHead::new(&mut m.store, &m.model, 3, Pooling::Cls, 0));
    let head = head.transpose().unwrap();
    let (spec, method, _) = load_adapter(dir, &m.model, &mut m.store, 0).unwrap();
    let logits = logits_of(
        &m.model,
        head.as_ref(),
        method.as_ref(),
        &m.store,
        fixture_name,
    );
    (logits, spec)
}

#[test]
fn peft_loha_lokr_vera_adapters_give_peft_logits() {
    for name in BERT.iter().chain(&["gpt2-tiny-vera"]) {
        let (logits, spec) = logits_with(&fixture(name), name);
        let r = reference(&format!("{name}-ref.safetensors"));
        let d = max_diff(&logits, get(&r, "logits"));
        println!(
            "{name} ({}): max |logits diff| vs PEFT {d:.3e}",
            spec.name()
        );
        assert!(d < 1e-4, "{name}: logits differ from PEFT's by {d}");
    }
}

#[test]
fn peft_configs_become_the_equivalent_specs() {
    let spec = |name: &str| adapter::read_config(&fixture(name)).unwrap().0;
    assert_eq!(
        spec("bert-tiny-loha"),
        MethodSpec::Loha(LohaConfig {
            r: 4,
            alpha: 8.0,
            targets: vec!["q".into(), "v".into()],
        })
    );
    assert_eq!(
        spec("bert-tiny-lokr-both"),
        MethodSpec::Lokr(LokrConfig {
            r: 1,
            alpha: 2.0,
            targets: vec!["k".into(), "o".into()],
            decompose_both: true,
            decompose_factor: 4,
        })
    );
    assert_eq!(
        spec("gpt2-tiny-vera"),
        MethodSpec::Vera(VeraConfig {
            r: 8,
            targets: vec!["qkv".into(), "o".into(), "fc".into(), "proj".into()],
            d_initial: 0.1,
            projection_prng_key: 7,
            dropout: 0.0,
        })
    );
}

/// PEFT → tunelab (load, save in tunelab's format) → PEFT (export): PEFT's keys and values, its
/// config fields, and the same logits when loaded again.
#[test]
fn export_reproduces_peft_files_and_logits() {
    for name in BERT.iter().chain(&["gpt2-tiny-vera"]) {
        let gpt = name.starts_with("gpt2");
        let base = if gpt { "gpt2-tiny" } else { "bert-tiny" };
        let mut m = hf::load::<f32>(&fixture(base)).unwrap();
        let head = (!gpt).then(|| SequenceHead::new(&mut m.store, &m.model, 3, Pooling::Cls, 0));
        let head = head.transpose().unwrap();
        let (spec, mut method, _) =
            load_adapter(&fixture(name), &m.model, &mut m.store, 0).unwrap();
        let extra: Vec<_> = head
            .iter()
            .flat_map(|h| [h.out.weight, h.out.bias.unwrap()])
            .collect();
        let own = scratch(&format!("{name}-own"));
        let task = if gpt { "dialogue" } else { "sentiment" };
        let meta = json!({ "task": task, "base": base });
        save_adapter(&own, &spec, method.as_mut(), &mut m.store, &extra, meta).unwrap();
        let exported = scratch(&format!("{name}-exported"));
        adapter::export_peft(&own, &m.model.config, base, &exported).unwrap();

        let read = |d: &Path| -> Value {
            serde_json::from_slice(&std::fs::read(d.join("adapter_config.json")).unwrap()).unwrap()
        };
        let (ours, theirs) = (read(&exported), read(&fixture(name)));
        // Every field PEFT wrote, with PEFT's value, except its version, the base's path, its
        // modules_to_save for a class tunelab does not build (`score`) and the list order.
        for (key, value) in theirs.as_object().unwrap() {
            match key.as_str() {
                "peft_version" | "base_model_name_or_path" => {}
                "modules_to_save" if !value.is_null() => {
                    assert_eq!(ours[key], json!(["classifier"]), "{name}: {key}")
                }
                "target_modules" => {
                    let set = |v: &Value| {
                        let mut s: Vec<String> = v
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|x| x.as_str().unwrap().to_string())
                            .collect();
                        s.sort();
                        s
                    };
                    assert_eq!(set(&ours[key]), set(value), "{name}: {key}");
                }
                _ => assert!(
                    ours[key] == *value
                        || ours[key].as_f64() == value.as_f64() && value.is_number(),
                    "{name}: {key} = {} in the export, {value} in PEFT's",
                    ours[key]
                ),
            }
        }
        assert_eq!(
            ours.as_object().unwrap().len(),
            theirs.as_object().unwrap().len() - 1,
            "{name}: the same fields but peft_version: {ours}"
        );
        // The same keys and values as the file PEFT wrote.
        let sorted = |p: PathBuf| {
            let mut t = safetensors::load::<f32>(&p).unwrap().tensors;
            t.sort_by(|a, b| a.0.cmp(&b.0));
            t
        };
        let ours = sorted(exported.join("adapter_model.safetensors"));
        let theirs = sorted(fixture(name).join("adapter_model.safetensors"));
        assert_eq!(
            ours.iter().map(|t| &t.0).collect::<Vec<_>>(),
            theirs.iter().map(|t| &t.0).collect::<Vec<_>>(),
            "{name}"
        );
        for ((key, a), (_, b)) in ours.iter().zip(&theirs) {
            assert_eq!(a, b, "{name}: {key}");
        }
        let (logits, _) = logits_with(&exported, name);
        let r = reference(&format!("{name}-ref.safetensors"));
        let d = max_diff(&logits, get(&r, "logits"));
        println!("{name}: PEFT → tunelab → PEFT, max |logits diff| {d:.3e}");
        assert!(d < 1e-4, "{name}: round-trip logits differ by {d}");
    }
}

/// Adapters tunelab initialised and "trained" (every trainable tensor moved), exported for PEFT
/// into `target/tmp/peft_methods/<name>-exported`, with the logits tunelab computes on the
/// fixture's inputs beside them (`<name>-logits.safetensors`): `tools/peft_methods_fixtures.py
/// --check` loads each export in PEFT and compares. Here: the export re-imports with the same
/// logits, which differ from the base's.
#[test]
fn tunelab_adapters_export_for_peft_with_their_logits() {
    let t = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let cases = [
        (
            "tunelab-bert-loha",
            "bert-tiny-loha",
            MethodSpec::Loha(LohaConfig {
                r: 3,
                alpha: 6.0,
                targets: t(&["q", "v", "fc"]),
            }),
        ),
        (
            "tunelab-bert-lokr",
            "bert-tiny-lokr",
            MethodSpec::Lokr(LokrConfig {
                r: 1,
                alpha: 3.0,
                targets: t(&["k", "o", "proj"]),
                decompose_both: true,
                decompose_factor: -1,
            }),
        ),
        (
            "tunelab-bert-vera",
            "bert-tiny-vera",
            MethodSpec::Vera(VeraConfig {
                r: 16,
                targets: t(&["q", "v", "fc", "proj"]),
                projection_prng_key: 4,
                ..Default::default()
            }),
        ),
        (
            "tunelab-gpt2-vera",
            "gpt2-tiny-vera",
            MethodSpec::Vera(VeraConfig {
                r: 6,
                targets: t(&["qkv", "proj"]),
                ..Default::default()
            }),
        ),
    ];
    for (name, inputs, spec) in cases {
        let gpt = name.contains("gpt2");
        let base = if gpt { "gpt2-tiny" } else { "bert-tiny" };
        let mut m = hf::load::<f32>(&fixture(base)).unwrap();
        let head = (!gpt).then(|| SequenceHead::new(&mut m.store, &m.model, 3, Pooling::Cls, 0));
        let head = head.transpose().unwrap();
        let before = logits_of(
            &m.model,
            head.as_ref(),
            &tunelab::nn::NoHooks,
            &m.store,
            inputs,
        );
        let mut method = apply(&spec, &m.model, &mut m.store, 3).unwrap();
        if let Some(h) = &head {
            unfreeze_head(&mut m.store, h);
        }
        wiggle(&mut m.store);
        let logits = logits_of(&m.model, head.as_ref(), method.as_ref(), &m.store, inputs);
        let moved = max_diff(&before, &logits);
        assert!(
            moved > 1e-2,
            "{name}: the adapter changes the logits by {moved} only"
        );
        let own = scratch(&format!("{name}-own"));
        let extra: Vec<_> = head
            .iter()
            .flat_map(|h| [h.out.weight, h.out.bias.unwrap()])
            .collect();
        let task = if gpt { "dialogue" } else { "sentiment" };
        let meta = json!({ "task": task, "base": base });
        save_adapter(&own, &spec, method.as_mut(), &mut m.store, &extra, meta).unwrap();
        let exported = scratch(&format!("{name}-exported"));
        adapter::export_peft(&own, &m.model.config, base, &exported).unwrap();
        let path = scratch(&format!("{name}-logits.safetensors"));
        safetensors::save(&path, &[("logits", logits.view())], &[]).unwrap();
        let (again, loaded) = logits_with(&exported, inputs);
        assert_eq!(loaded, spec, "{name}");
        let d = max_diff(&again, &logits);
        println!("{name}: tunelab → PEFT export → tunelab, max |logits diff| {d:.3e}");
        assert!(d < 1e-5, "{name}: {d}");
    }
}

#[test]
fn what_peft_cannot_express_is_refused_on_export_and_import() {
    // GPT-2's Conv1D has no LoHa or LoKr in PEFT; VeRA on part of c_attn has no PEFT form.
    let mut m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    for (spec, words) in [
        (MethodSpec::Loha(LohaConfig::default()), "Conv1D"),
        (MethodSpec::Lokr(LokrConfig::default()), "Conv1D"),
        (
            MethodSpec::Vera(VeraConfig {
                r: 4,
                ..Default::default()
            }),
            "qkv",
        ),
    ] {
        let mut store = m.store.clone();
        let mut method = apply(&spec, &m.model, &mut store, 0).unwrap();
        let own = scratch(&format!("refused-{}", spec.name()));
        save_adapter(&own, &spec, method.as_mut(), &mut store, &[], Value::Null).unwrap();
        let err = adapter::export_peft(&own, &m.model.config, "gpt2-tiny", &scratch("x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(words), "{}: {err}", spec.name());
    }
    m.store.set_all_trainable(false);

    // Options tunelab does not implement, and a VeRA adapter without its projections.
    let tampered = |name: &str, key: &str, value: Value| {
        let dir = scratch(&format!("tampered-{name}-{key}"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = fixture(name);
        let mut config: Value =
            serde_json::from_slice(&std::fs::read(src.join("adapter_config.json")).unwrap())
                .unwrap();
        config[key] = value;
        std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
        std::fs::copy(
            src.join("adapter_model.safetensors"),
            dir.join("adapter_model.safetensors"),
        )
        .unwrap();
        adapter::read::<f32>(&dir).err().unwrap().to_string()
    };
    let err = tampered("bert-tiny-loha", "rank_dropout", json!(0.1));
    assert!(err.contains("rank_dropout"), "{err}");
    let err = tampered("bert-tiny-lokr", "layers_to_transform", json!([0]));
    assert!(err.contains("layers_to_transform"), "{err}");
    let err = tampered("bert-tiny-lokr", "decompose_factor", json!(0));
    assert!(err.contains("decompose_factor"), "{err}");
    let err = tampered("gpt2-tiny-vera", "save_projection", json!(false));
    assert!(err.contains("save_projection"), "{err}");
    let err = tampered("gpt2-tiny-vera", "fan_in_fan_out", json!(false));
    assert!(err.contains("fan_in_fan_out"), "{err}");
    let err = tampered("bert-tiny-vera", "target_modules", json!(["query"]));
    assert!(err.contains("value"), "{err}");
    // PEFT writes 0.0; an integer 0 is the same "off".
    let dir = scratch("zero-int");
    std::fs::create_dir_all(&dir).unwrap();
    let src = fixture("bert-tiny-loha");
    let mut config: Value =
        serde_json::from_slice(&std::fs::read(src.join("adapter_config.json")).unwrap()).unwrap();
    config["module_dropout"] = json!(0);
    std::fs::write(dir.join("adapter_config.json"), config.to_string()).unwrap();
    std::fs::copy(
        src.join("adapter_model.safetensors"),
        dir.join("adapter_model.safetensors"),
    )
    .unwrap();
    adapter::read::<f32>(&dir).unwrap();
}

/// A tiny GPT and BERT (C 8, d_ff 32, L 2) with a 3-way head, f64, no dropout.
fn models() -> Vec<(Transformer, SequenceHead, ParamStore<f64>)> {
    [Config::gpt(29, 8, 2, 2, 16), Config::bert(29, 8, 2, 2, 16)]
        .into_iter()
        .map(|mut config| {
            config.dropout = 0.0;
            let mut store = ParamStore::new();
            let model = Transformer::new(config, &mut store, 5).unwrap();
            let head =
                SequenceHead::new(&mut store, &model, 3, Pooling::default_for(&model), 6).unwrap();
            (model, head, store)
        })
        .collect()
}

fn head_logits(
    model: &Transformer,
    head: &SequenceHead,
    hooks: &dyn Hooks<f64>,
    store: &ParamStore<f64>,
) -> ArrayD<f64> {
    let ids = array![[3usize, 7, 1, 9], [4, 2, 0, 0]];
    let mask = array![[true, true, true, true], [true, true, false, false]];
    let mut tape = Tape::inference(store);
    let input = Input::new(ids.view()).with_mask(mask.view());
    let h = model.forward(&mut tape, hooks, &input).unwrap();
    let out = head
        .forward(&mut tape, hooks, model, h, Some(mask.view()))
        .unwrap();
    let lm = model.lm_logits(&mut tape, hooks, h).unwrap();
    let mut all: Vec<f64> = tape.value(out).iter().copied().collect();
    all.extend(tape.value(lm).iter());
    ArrayD::from_shape_vec(vec![all.len()], all).unwrap()
}

/// Every trainable parameter moved off its init, as after training.
fn wiggle<F: Float>(store: &mut ParamStore<F>) {
    for (id, p) in store.iter_mut() {
        if p.trainable {
            let k = id.index() as f64;
            let mut i = 0.0;
            p.value.mapv_inplace(|x| {
                i += 1.0;
                x + F::of(0.2 * (1.3 * k + 0.7 * i).sin())
            });
        }
    }
}

fn max_abs(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// The three methods' merge and unmerge, behind one interface for the test.
trait Fold: Hooks<f64> {
    fn fold(&mut self, store: &mut ParamStore<f64>, merge: bool);
}

macro_rules! fold_impl {
    ($($t:ty),*) => {$(
        impl Fold for $t {
            fn fold(&mut self, store: &mut ParamStore<f64>, merge: bool) {
                if merge {
                    self.merge(store).unwrap()
                } else {
                    self.unmerge(store).unwrap()
                }
            }
        }
    )*};
}
fold_impl!(Loha, Lokr, Vera);

#[test]
fn merged_loha_lokr_vera_equal_their_adapters_and_unmerge_restores_the_base() {
    let targets: Vec<String> = ["q", "v", "o", "fc"].map(String::from).to_vec();
    for (model, head, store) in models() {
        let mut stores = vec![store.clone(), store.clone(), store.clone()];
        let loha = LohaConfig {
            r: 2,
            alpha: 3.0,
            targets: targets.clone(),
        };
        let lokr = LokrConfig {
            r: 1,
            alpha: 3.0,
            targets: targets.clone(),
            decompose_both: true,
            decompose_factor: 4,
        };
        let vera = VeraConfig {
            r: 3,
            targets: targets.clone(),
            ..Default::default()
        };
        let methods: Vec<(&str, Box<dyn Fold>)> = vec![
            (
                "loha",
                Box::new(Loha::apply(&model, &mut stores[0], loha, 1).unwrap()),
            ),
            (
                "lokr",
                Box::new(Lokr::apply(&model, &mut stores[1], lokr, 1).unwrap()),
            ),
            (
                "vera",
                Box::new(Vera::apply(&model, &mut stores[2], vera, 1).unwrap()),
            ),
        ];
        for ((name, mut method), s) in methods.into_iter().zip(&mut stores) {
            wiggle(s);
            let base = s.clone();
            let adapter = head_logits(&model, &head, method.as_ref(), s);
            method.fold(s, true);
            let changed = s
                .iter()
                .filter(|(id, p)| p.value != *base.value(*id))
                .count();
            // GPT-2: c_attn (q, v), c_proj, c_fc; BERT: query, value, attention.output, fc.
            let linears = if model.config.arch == Arch::Gpt { 3 } else { 4 };
            assert_eq!(
                changed,
                2 * linears,
                "{name}: merge changes the targeted weights"
            );
            let merged = head_logits(&model, &head, method.as_ref(), s);
            let d = max_abs(&adapter, &merged);
            println!("{name}: merged vs adapter max |diff| {d:.3e}");
            assert!(d < 1e-10, "{name}: merged output differs by {d}");
            method.fold(s, false);
            for (id, p) in s.iter() {
                let d = max_abs(&p.value, base.value(id));
                assert!(d < 1e-12, "{name}: {} differs by {d} after unmerge", p.name);
            }
        }
    }
}

#[test]
fn initialisation_is_pefts() {
    let (model, head, store) = models().remove(0);
    let within = |v: &ArrayD<f64>, bound: f64| {
        v.iter().all(|x| x.abs() <= bound) && v.iter().any(|x| x.abs() > bound / 2.0)
    };
    // LoHa: W1a, W1b, W2a Kaiming-uniform (±1/√fan_in), W2b zero.
    let mut s = store.clone();
    let targets = vec!["q".to_string(), "fc".to_string()];
    let loha = Loha::apply(
        &model,
        &mut s,
        LohaConfig {
            r: 4,
            alpha: 4.0,
            targets: targets.clone(),
        },
        3,
    )
    .unwrap();
    for p in loha.targets.values().flatten() {
        let d_in = p.block.linear.d_in as f64;
        assert!(within(s.value(p.w1_a), 1.0 / 2.0));
        assert!(within(s.value(p.w1_b), 1.0 / d_in.sqrt()));
        assert!(within(s.value(p.w2_a), 1.0 / 2.0));
        assert!(s.value(p.w2_b).iter().all(|&x| x == 0.0));
    }
    // LoKr: W1 zero, W2 Kaiming-uniform; fc (32, 8): 32 → (4, 8), 8 → (2, 4).
    let mut s = store.clone();
    let config = LokrConfig {
        r: 4,
        alpha: 4.0,
        targets: targets.clone(),
        ..Default::default()
    };
    let lokr = Lokr::apply(&model, &mut s, config, 3).unwrap();
    let fc = &lokr.targets["h.0.mlp.c_fc"][0];
    assert_eq!((fc.shape.w1, fc.shape.w2), ((4, 2), (8, 4)));
    assert!(!fc.shape.w2_low_rank, "r 4 is not below max(8, 4) / 2");
    for p in lokr.targets.values().flatten() {
        let tunelab::peft::lokr::Factor::Full(w1) = p.w1 else {
            panic!("W1 is full without decompose_both")
        };
        assert!(s.value(w1).iter().all(|&x| x == 0.0));
    }
    // VeRA: A (r, in_max), B (out_max, r) with bound √(6 / fan_in), frozen; λb 0, λd d_initial.
    let mut s = store.clone();
    let config = VeraConfig {
        r: 6,
        targets,
        d_initial: 0.25,
        projection_prng_key: 9,
        dropout: 0.0,
    };
    let vera = Vera::apply(&model, &mut s, config.clone(), 3).unwrap();
    // q and fc read C = 8 inputs; fc writes 32 outputs.
    assert_eq!(s.value(vera.vera_a).shape(), [6, 8]);
    assert_eq!(s.value(vera.vera_b).shape(), [32, 6]);
    assert!(within(s.value(vera.vera_a), (6.0f64 / 8.0).sqrt()));
    assert!(within(s.value(vera.vera_b), 1.0));
    assert!(!s.is_trainable(vera.vera_a) && !s.is_trainable(vera.vera_b));
    for p in vera.targets.values().flatten() {
        assert!(s.value(p.lambda_b).iter().all(|&x| x == 0.0));
        assert!(s.value(p.lambda_d).iter().all(|&x| x == 0.25));
    }
    // The projections depend on the key alone, not on apply's seed.
    let mut s2 = store.clone();
    let other = Vera::apply(&model, &mut s2, config, 99).unwrap();
    assert_eq!(s.value(vera.vera_a), s2.value(other.vera_a));
    let _ = head;
}

#[test]
fn trainable_counts_follow_the_shapes() {
    let (model, head, store) = models().remove(0);
    let count = |spec: MethodSpec| {
        let mut s = store.clone();
        apply(&spec, &model, &mut s, 0).unwrap();
        unfreeze_head(&mut s, &head);
        s.num_trainable() - 3 * 8
    };
    let qv = vec!["q".to_string(), "v".to_string()];
    // Per block and layer, LoHa: 2·r·(d_out + d_in) = 2·2·16; two blocks, two layers.
    assert_eq!(
        count(MethodSpec::Loha(LohaConfig {
            r: 2,
            alpha: 2.0,
            targets: qv.clone()
        })),
        4 * 64
    );
    // LoKr at r 1 on (8, 8): 8 → (2, 4); W1 (2, 2) full, W2 low-rank 4·1 + 1·4 (1 < 4/2).
    let shape = LokrShape::of(
        8,
        8,
        &LokrConfig {
            r: 1,
            ..Default::default()
        },
    );
    assert_eq!(shape.count(1), Some(4 + 8));
    assert_eq!(
        count(MethodSpec::Lokr(LokrConfig {
            r: 1,
            alpha: 1.0,
            targets: qv.clone(),
            ..Default::default()
        })),
        4 * 12
    );
    // VeRA: r + d_out per block, whatever r costs the frozen projections.
    for r in [4, 64] {
        let spec = MethodSpec::Vera(VeraConfig {
            r,
            targets: qv.clone(),
            ..Default::default()
        });
        assert_eq!(count(spec), 4 * (r + 8), "vera r {r}");
    }
}

#[test]
fn vera_projections_are_read_from_the_adapter_file_and_stay_frozen() {
    let (model, head, store) = models().remove(0);
    let spec = MethodSpec::Vera(VeraConfig {
        r: 4,
        ..Default::default()
    });
    let mut s = store.clone();
    let mut method = apply(&spec, &model, &mut s, 0).unwrap();
    wiggle(&mut s);
    let before = head_logits(&model, &head, method.as_ref(), &s);
    let dir = scratch("vera-own");
    save_adapter(&dir, &spec, method.as_mut(), &mut s, &[], Value::Null).unwrap();
    // Another key in the config: A and B still come from the file, so nothing changes.
    let path = dir.join("adapter_config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    config["projection_prng_key"] = json!(12345);
    std::fs::write(&path, config.to_string()).unwrap();
    let mut s = store.clone();
    let (_, method, _) = load_adapter(&dir, &model, &mut s, 0).unwrap();
    assert_eq!(head_logits(&model, &head, method.as_ref(), &s), before);
    let a = s.id("vera_A").unwrap();
    assert!(!s.is_trainable(a), "vera_A trains after loading");
    // A file without vera_B is refused naming it.
    let dir2 = scratch("vera-no-b");
    std::fs::create_dir_all(&dir2).unwrap();
    std::fs::copy(&path, dir2.join("adapter_config.json")).unwrap();
    let tensors: Vec<(String, ArrayD<f64>)> =
        safetensors::load::<f64>(&dir.join("adapter_model.safetensors"))
            .unwrap()
            .tensors;
    let views: Vec<(&str, ndarray::ArrayViewD<f64>)> = tensors
        .iter()
        .filter(|(n, _)| n != "vera_B")
        .map(|(n, v)| (n.as_str(), v.view()))
        .collect();
    safetensors::save(&dir2.join("adapter_model.safetensors"), &views, &[]).unwrap();
    let mut s = store.clone();
    let err = load_adapter(&dir2, &model, &mut s, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("vera_B") && err.contains("missing"), "{err}");
}

#[test]
fn out_of_range_options_are_refused_naming_the_flag() {
    let (model, _, store) = models().remove(0);
    let qv = vec!["q".to_string(), "v".to_string()];
    for (spec, says) in [
        (
            MethodSpec::Loha(LohaConfig {
                r: 1_000_000,
                alpha: 1.0,
                targets: qv.clone(),
            }),
            "--r: invalid argument: r = 1000000 would add",
        ),
        (
            MethodSpec::Loha(LohaConfig {
                r: 2,
                alpha: f64::INFINITY,
                targets: qv.clone(),
            }),
            "--alpha",
        ),
        (
            MethodSpec::Lokr(LokrConfig {
                decompose_factor: 0,
                ..Default::default()
            }),
            "--decompose-factor",
        ),
        (
            MethodSpec::Lokr(LokrConfig {
                targets: vec!["q".into(), "w".into()],
                ..Default::default()
            }),
            "--targets",
        ),
        (
            MethodSpec::Vera(VeraConfig {
                r: 100_000_000,
                ..Default::default()
            }),
            "--r: invalid argument",
        ),
        (
            MethodSpec::Vera(VeraConfig {
                d_initial: f64::NAN,
                ..Default::default()
            }),
            "--vera-d-initial",
        ),
        (
            MethodSpec::Vera(VeraConfig {
                dropout: 1.0,
                ..Default::default()
            }),
            "--lora-dropout",
        ),
    ] {
        let mut s = store.clone();
        let msg = match apply(&spec, &model, &mut s, 0) {
            Ok(_) => panic!("{spec:?} applied"),
            Err(e) => e.to_string(),
        };
        assert!(msg.contains(says), "{spec:?}: {msg}");
    }
}

#[test]
fn the_new_options_are_in_finetunes_help() {
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(["finetune", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&run.stdout);
    for flag in [
        "--decompose-both",
        "--decompose-factor",
        "--vera-d-initial",
        "--projection-prng-key",
        "loha",
        "lokr",
        "vera",
    ] {
        assert!(help.contains(flag), "finetune --help lacks {flag}");
    }
}
