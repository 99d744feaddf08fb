//! Merging adapters against PEFT (`tests/fixtures/merge_golden.json`, from
//! `tools/merge_golden.py`): merge_utils' functions on fixed tensors (DARE on the masks PEFT drew)
//! and `add_weighted_adapter` on two LoRA adapters of GPT-2 Conv1D layers. Each case prints its
//! max difference.

use ndarray::{Array2, ArrayD};
use serde_json::Value;
use tunelab::io::adapter::AdapterFiles;
use tunelab::lab::merge::{self, Combination, Input, MajoritySign, MergeOptions};
use tunelab::peft::spec::{LoraConfig, MethodSpec};

fn golden() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/merge_golden.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("JSON")
}

fn flat(v: &Value) -> Vec<f64> {
    match v {
        Value::Array(xs) => xs.iter().flat_map(flat).collect(),
        x => vec![x.as_f64().expect("a number")],
    }
}

fn matrix(v: &Value) -> Array2<f64> {
    let rows = v.as_array().expect("rows").len();
    let data = flat(v);
    Array2::from_shape_vec((rows, data.len() / rows), data).expect("rectangular")
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn merge_functions_match_peft_merge_utils() {
    let g = golden();
    let u = &g["utils"];
    let tensors: Vec<Vec<f64>> = u["tensors"].as_array().unwrap().iter().map(flat).collect();
    let weights = flat(&u["weights"]);
    let density = u["density"].as_f64().unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let cases: Vec<(&str, Vec<f64>)> = vec![
        (
            "task_arithmetic",
            merge::task_arithmetic(&tensors, &weights),
        ),
        (
            "magnitude_prune",
            merge::magnitude_prune(&tensors, &weights, density),
        ),
        (
            "ties_total",
            merge::ties(&tensors, &weights, density, MajoritySign::Total),
        ),
        (
            "ties_frequency",
            merge::ties(&tensors, &weights, density, MajoritySign::Frequency),
        ),
    ];
    for (name, ours) in cases {
        let d = max_diff(&ours, &flat(&u[name]));
        println!("merge_utils.{name}: max |tunelab − PEFT| = {d:.2e}");
        assert!(d < 1e-12, "{name}: {d}");
    }
    for (name, sign) in [
        ("dare_linear", None),
        ("dare_ties_total", Some(MajoritySign::Total)),
        ("dare_ties_frequency", Some(MajoritySign::Frequency)),
    ] {
        let masks: Vec<Vec<bool>> = u[name]["masks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| flat(m).iter().map(|&x| x == 1.0).collect())
            .collect();
        let ours = match sign {
            None => merge::dare_linear(&tensors, &weights, density, &masks),
            Some(s) => merge::dare_ties(&tensors, &weights, density, &masks, s),
        };
        let d = max_diff(&ours, &flat(&u[name]["result"]));
        println!("merge_utils.{name} (PEFT's masks): max |tunelab − PEFT| = {d:.2e}");
        assert!(d < 1e-12, "{name}: {d}");
    }
    // Our own masks: same shapes, a different draw (torch's RNG is not reproduced).
    let lens: Vec<usize> = tensors.iter().map(Vec::len).collect();
    let ours = merge::dare_masks(&lens, density, &mut rng);
    assert_eq!(ours.iter().map(Vec::len).collect::<Vec<_>>(), lens);
}

/// A PEFT adapter of the fixture as a tunelab input: c_attn is the `qkv` target, c_fc `fc`.
fn lora_input(label: &str, adapter: &Value) -> Input {
    let mut tensors = Vec::new();
    let mut scaling = 0.0;
    for (module, m) in adapter.as_object().unwrap() {
        for (key, side) in [("A", "lora_A"), ("B", "lora_B")] {
            let a = matrix(&m[key]);
            tensors.push((
                format!("{module}.{side}.weight"),
                a.mapv(|x| x as f32).into_dyn(),
            ));
        }
        scaling = m["scaling"].as_f64().unwrap();
    }
    Input {
        label: label.into(),
        files: AdapterFiles {
            spec: MethodSpec::Lora(LoraConfig {
                r: 4,
                alpha: scaling * 4.0,
                targets: vec!["qkv".into(), "fc".into()],
                ..LoraConfig::default()
            }),
            meta: Value::Null,
            tensors,
        },
    }
}

fn tensor(t: &[(String, ArrayD<f32>)], name: &str) -> Array2<f64> {
    t.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is not in the merge"))
        .1
        .mapv(|x| x as f64)
        .into_dimensionality()
        .unwrap()
}

#[test]
fn lora_merges_match_peft_add_weighted_adapter_on_gpt2_conv1d() {
    let g = golden();
    let l = &g["lora"];
    let inputs = vec![
        lora_input("first", &l["adapters"]["first"]),
        lora_input("second", &l["adapters"]["second"]),
    ];
    let weights = flat(&l["weights"]);
    for (label, case) in l["merges"].as_object().unwrap() {
        let combination = match case["combination"].as_str().unwrap() {
            "linear" => Combination::Linear,
            "cat" => Combination::Cat,
            "svd" => Combination::Svd,
            "ties" => Combination::Ties,
            "ties_svd" => Combination::TiesSvd,
            "magnitude_prune" => Combination::MagnitudePrune,
            "magnitude_prune_svd" => Combination::MagnitudePruneSvd,
            other => panic!("no case for {other}"),
        };
        let o = &case["options"];
        let opts = MergeOptions {
            weights: weights.clone(),
            density: o["density"].as_f64(),
            svd_rank: o["svd_rank"].as_u64().map(|r| r as usize),
            majority_sign_method: match o["majority_sign_method"].as_str() {
                Some("frequency") => MajoritySign::Frequency,
                _ => MajoritySign::Total,
            },
            ..MergeOptions::new(combination, 2)
        };
        let merged = merge::merge(&inputs, &opts, None).unwrap();
        let MethodSpec::Lora(cfg) = &merged.spec else {
            panic!("a LoRA merge gives a LoRA adapter")
        };
        assert_eq!(cfg.scaling(), 1.0, "{label}: PEFT's merged scaling is 1");
        let mut worst = 0.0f64;
        for (module, m) in case["modules"].as_object().unwrap() {
            assert_eq!(m["scaling"].as_f64(), Some(1.0));
            let (pa, pb) = (matrix(&m["A"]), matrix(&m["B"]));
            assert_eq!(cfg.r, pa.nrows(), "{label}: rank");
            let a = tensor(&merged.tensors, &format!("{module}.lora_A.weight"));
            let b = tensor(&merged.tensors, &format!("{module}.lora_B.weight"));
            let d = if combination.is_svd() {
                // SVD factors are unique up to sign: compare the update B A.
                let ours = b.dot(&a);
                let theirs = pb.dot(&pa);
                max_diff(ours.as_slice().unwrap(), theirs.as_slice().unwrap())
            } else {
                max_diff(a.as_slice().unwrap(), pa.as_slice().unwrap())
                    .max(max_diff(b.as_slice().unwrap(), pb.as_slice().unwrap()))
            };
            worst = worst.max(d);
        }
        let what = if combination.is_svd() { "B·A" } else { "A, B" };
        println!("add_weighted_adapter {label}: max |tunelab − PEFT| of {what} = {worst:.2e}");
        assert!(worst < 1e-5, "{label}: {worst}");
    }
}

#[test]
fn merge_refuses_what_peft_refuses_and_says_why() {
    let g = golden();
    let l = &g["lora"];
    let a = lora_input("first", &l["adapters"]["first"]);
    let mut b = lora_input("second", &l["adapters"]["second"]);
    // A rank-2 second adapter: linear and ties need equal ranks, cat and svd do not.
    if let MethodSpec::Lora(c) = &mut b.files.spec {
        c.r = 2;
    }
    for (name, t) in b.files.tensors.iter_mut() {
        let v = t.clone();
        *t = if name.contains("lora_A") {
            v.slice_axis(ndarray::Axis(0), (0..2).into()).to_owned()
        } else {
            v.slice_axis(ndarray::Axis(1), (0..2).into()).to_owned()
        };
    }
    let inputs = [a, b];
    let err = merge::merge(&inputs, &MergeOptions::new(Combination::Linear, 2), None)
        .err()
        .expect("unequal ranks")
        .to_string();
    assert!(err.contains("one rank") && err.contains("[4, 2]"), "{err}");
    let cat = merge::merge(&inputs, &MergeOptions::new(Combination::Cat, 2), None).unwrap();
    let MethodSpec::Lora(c) = &cat.spec else {
        panic!()
    };
    assert_eq!(c.r, 6);
    // cat is exact: B A = Σ w s B_i A_i.
    let svd = merge::merge(
        &inputs,
        &MergeOptions {
            svd_rank: Some(6),
            ..MergeOptions::new(Combination::Svd, 2)
        },
        None,
    )
    .unwrap();
    for m in ["h.0.attn.c_attn", "h.0.mlp.c_fc"] {
        let prod = |t: &[(String, ArrayD<f32>)]| {
            tensor(t, &format!("{m}.lora_B.weight")).dot(&tensor(t, &format!("{m}.lora_A.weight")))
        };
        let d = (prod(&cat.tensors) - prod(&svd.tensors))
            .iter()
            .fold(0.0f64, |x, y| x.max(y.abs()));
        assert!(d < 1e-5, "svd at full rank equals cat: {d}");
    }
    let mut opts = MergeOptions::new(Combination::Ties, 2);
    opts.density = None;
    let err = merge::merge(&inputs, &opts, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--density"), "{err}");
    let opts = MergeOptions {
        weights: vec![1.0],
        ..MergeOptions::new(Combination::Cat, 2)
    };
    let err = merge::merge(&inputs, &opts, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("1 weights for 2 adapters"), "{err}");
    let opts = MergeOptions {
        svd_rank: Some(100),
        ..MergeOptions::new(Combination::Svd, 2)
    };
    let err = merge::merge(&inputs, &opts, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("--svd-rank"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Folding into the base: the plain merged model computes what the model with the adapter did.
// ---------------------------------------------------------------------------------------------

use tunelab::io::hf;
use tunelab::nn::{Hooks, Input as ModelInput, NoHooks, Transformer};
use tunelab::peft::{self, Method};
use tunelab::{ParamStore, Tape};

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hf")
        .join(name)
}

fn logits(model: &Transformer, store: &ParamStore<f32>, hooks: &dyn Hooks<f32>) -> Vec<f64> {
    let ids = ndarray::Array2::from_shape_fn((2, 9), |(b, t)| (b * 31 + t * 7 + 3) % 100);
    let mut tape = Tape::inference(store);
    let h = model
        .forward(&mut tape, hooks, &ModelInput::new(ids.view()))
        .unwrap();
    let l = model.lm_logits(&mut tape, hooks, h).unwrap();
    tape.value(l).iter().map(|&x| x as f64).collect()
}

/// Every parameter the method added, moved away from its identity initialisation (B ≠ 0,
/// magnitudes and IA3 vectors ≠ their start), so the fold has something to fold.
fn perturb(store: &mut ParamStore<f32>, method: &dyn Method<f32>, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for &id in method.params() {
        let v = store
            .value(id)
            .mapv(|x| x + rng.random_range(-0.3f32..0.3) * (x.abs() + 0.5));
        store.set_value(id, v).unwrap();
    }
}

#[test]
fn lora_dora_and_ia3_fold_into_gpt2_conv1d_and_bert_linear_weights_exactly() {
    let lora = |targets: &[&str], r| LoraConfig {
        r,
        alpha: 2.0 * r as f64,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..LoraConfig::default()
    };
    let specs = [
        ("lora q,v", MethodSpec::Lora(lora(&["q", "v"], 2))),
        (
            "lora qkv,o,fc,proj",
            MethodSpec::Lora(lora(&["qkv", "o", "fc", "proj"], 3)),
        ),
        ("lora all", MethodSpec::Lora(lora(&["all"], 2))),
        ("dora q,v", MethodSpec::Dora(lora(&["q", "v"], 2))),
        (
            "dora k,o,fc,proj",
            MethodSpec::Dora(lora(&["k", "o", "fc", "proj"], 2)),
        ),
        ("ia3", MethodSpec::Ia3),
    ];
    for base in ["gpt2-tiny", "bert-tiny"] {
        for (label, spec) in &specs {
            if base == "bert-tiny" && label.contains("qkv") {
                continue; // BERT has no fused c_attn
            }
            let m = hf::load::<f32>(&fixture(base)).unwrap();
            let (model, mut store) = (m.model, m.store);
            let before = logits(&model, &store, &NoHooks);
            let method = peft::apply(spec, &model, &mut store, 7).unwrap();
            perturb(&mut store, method.as_ref(), 11);
            let adapted = logits(&model, &store, method.as_ref());
            let moved = max_diff(&adapted, &before);
            assert!(
                moved > 1e-3,
                "{base} {label}: the adapter changes the logits ({moved})"
            );
            method.merge_into_base(&mut store).unwrap();
            let folded = logits(&model, &store, &NoHooks);
            let d = max_diff(&folded, &adapted);
            let scale = adapted.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            println!(
                "{base} {label}: max |merged − adapter| logits = {d:.2e} (logits up to {scale:.1})"
            );
            assert!(d < 1e-5 * scale.max(1.0), "{base} {label}: {d}");
        }
    }
}

#[test]
fn prefix_prompt_and_bottleneck_adapters_refuse_to_fold_naming_the_method() {
    let m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    for spec in [
        MethodSpec::Houlsby { bottleneck: 2 },
        MethodSpec::Prefix {
            n_virtual: 2,
            reparameterize: false,
            hidden: 4,
        },
    ] {
        let mut store = m.store.clone();
        let method = peft::apply(&spec, &m.model, &mut store, 0).unwrap();
        let err = method
            .merge_into_base(&mut store)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains(spec.name()) && err.contains("cannot be folded"),
            "{err}"
        );
    }
}

#[test]
fn merge_into_base_writes_a_model_directory_that_loads_as_a_base_with_the_adapters_outputs() {
    use tunelab::lab::finetune::load_base;
    let dir = crate::common::temp_dir("merge-into-base");
    let _ = std::fs::remove_dir_all(&dir);
    let adapter = dir.join("adapter");
    // A DoRA adapter saved as finetune saves one, on the shipped decoder.
    let mut b = load_base("gpt-tiny").unwrap();
    let spec = MethodSpec::Dora(LoraConfig {
        r: 2,
        alpha: 4.0,
        targets: vec!["q".into(), "v".into(), "fc".into()],
        ..LoraConfig::default()
    });
    let mut method = peft::apply(&spec, &b.model, &mut b.store, 3).unwrap();
    perturb(&mut b.store, method.as_ref(), 5);
    let adapted = logits(&b.model, &b.store, method.as_ref());
    let meta = serde_json::json!({
        "base_config": tunelab::io::adapter::base_record(&b.model.config)
    });
    peft::store::save_adapter(&adapter, &spec, method.as_mut(), &mut b.store, &[], meta).unwrap();
    let out = dir.join("merged");
    let done = merge::into_base("gpt-tiny", &adapter, &out).unwrap();
    assert_eq!(done.method, "dora");
    assert!(done.dropped_heads.is_empty());
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(out.join(f).exists(), "{f}");
    }
    let merged = load_base(out.to_str().unwrap()).unwrap();
    assert_eq!(merged.store.len(), done.tensors);
    let d = max_diff(&logits(&merged.model, &merged.store, &NoHooks), &adapted);
    println!("gpt-tiny dora, merged dir reloaded: max |merged − adapter| logits = {d:.2e}");
    assert!(d < 1e-4, "{d}");
    // A missing adapter is an error naming it; nothing is written.
    let err = merge::into_base("gpt-tiny", &dir.join("none"), &dir.join("x"));
    assert!(err.err().unwrap().to_string().contains("none"));
    assert!(!dir.join("x").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Full fine-tunes (deltas from the base), heads kept apart
// ---------------------------------------------------------------------------------------------

/// A full fine-tune of `base` as its adapter file holds it: every base tensor moved by
/// `delta(k)` (k: the tensor's index), plus `head` tensors.
fn full_input(
    base: &ParamStore<f32>,
    label: &str,
    task: &str,
    delta: impl Fn(usize) -> f32,
    head: &[(&str, f32)],
) -> Input {
    let mut tensors: Vec<(String, ArrayD<f32>)> = base
        .iter()
        .map(|(id, p)| (p.name.clone(), p.value.mapv(|x| x + delta(id.index()))))
        .collect();
    for (name, v) in head {
        tensors.push((
            name.to_string(),
            ArrayD::from_elem(ndarray::IxDyn(&[2, 3]), *v),
        ));
    }
    Input {
        label: label.into(),
        files: AdapterFiles {
            spec: MethodSpec::Full { last_k: None },
            meta: serde_json::json!({ "task": task }),
            tensors,
        },
    }
}

#[test]
fn full_fine_tunes_merge_as_deltas_from_the_base_and_keep_their_heads_apart() {
    let m = hf::load::<f32>(&fixture("gpt2-tiny")).unwrap();
    let base = &m.store;
    let a = full_input(
        base,
        "a",
        "sentiment",
        |k| 0.01 * (k % 3) as f32,
        &[("score.weight", 1.0)],
    );
    let b = full_input(
        base,
        "b",
        "ner",
        |k| -0.02 * (k % 2) as f32,
        &[("classifier.weight", 2.0)],
    );
    let inputs = [a, b];
    // Task arithmetic (linear): W + 0.5 Δa + 2 Δb, tensor by tensor.
    let opts = MergeOptions {
        weights: vec![0.5, 2.0],
        ..MergeOptions::new(Combination::Linear, 2)
    };
    let merged = merge::merge(&inputs, &opts, Some(base)).unwrap();
    assert_eq!(merged.spec, MethodSpec::Full { last_k: None });
    assert_eq!(
        merged.tensors.len(),
        base.len(),
        "every base weight, no head"
    );
    let mut worst = 0.0f64;
    for ((id, p), (name, t)) in base.iter().zip(&merged.tensors) {
        assert_eq!(&p.name, name);
        let k = id.index();
        let want = 0.5 * 0.01 * (k % 3) as f64 - 2.0 * 0.02 * (k % 2) as f64;
        for (x, w) in t.iter().zip(p.value.iter()) {
            worst = worst.max(((x - w) as f64 - want).abs());
        }
    }
    assert!(worst < 1e-6, "{worst}");
    // The heads: one per input, untouched, and a note saying they were not merged.
    assert_eq!(merged.heads.len(), 2);
    assert_eq!(merged.heads[0].task.as_deref(), Some("sentiment"));
    assert_eq!(merged.heads[0].tensors[0].0, "score.weight");
    assert_eq!(merged.heads[1].tensors[0].1[[0, 0]], 2.0);
    assert!(merged
        .notes
        .iter()
        .any(|n| n.contains("heads are not merged")));
    let with = merged.with_head(Some(&merged.heads[1]));
    assert_eq!(with.len(), base.len() + 1);
    // TIES on deltas: where both move a tensor with opposite signs, the larger total wins.
    let ties = merge::merge(
        &inputs,
        &MergeOptions {
            density: Some(1.0),
            ..MergeOptions::new(Combination::Ties, 2)
        },
        Some(base),
    )
    .unwrap();
    // Tensor 1: Δa = +0.01, Δb = −0.02 → the sign is −, only b agrees: −0.02.
    let (name, t) = &ties.tensors[1];
    let w = base.value(base.id(name).unwrap());
    let moved: Vec<f64> = t
        .iter()
        .zip(w.iter())
        .map(|(x, y)| (x - y) as f64)
        .collect();
    assert!(
        moved.iter().all(|m| (m + 0.02).abs() < 1e-6),
        "{:?}",
        &moved[..3]
    );
    // SVD types need low-rank factors; LoRA and full inputs do not mix.
    let err = merge::merge(
        &inputs,
        &MergeOptions::new(Combination::TiesSvd, 2),
        Some(base),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("needs LoRA factors"), "{err}");
    let g = golden();
    let lora = lora_input("l", &g["lora"]["adapters"]["first"]);
    let mixed = [inputs.into_iter().next().unwrap(), lora];
    let err = merge::merge(
        &mixed,
        &MergeOptions::new(Combination::Linear, 2),
        Some(base),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("all of one kind"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Serving many adapters, at tiny size
// ---------------------------------------------------------------------------------------------

#[test]
fn serving_holds_the_base_once_plus_each_adapter_and_both_paths_agree_per_request() {
    use tunelab::lab::serving::{serve, ServingOptions};
    let opts = ServingOptions {
        counts: vec![1, 3],
        requests: 6,
        tokens: 8,
        lora: LoraConfig {
            r: 2,
            alpha: 4.0,
            targets: vec!["q".into(), "v".into()],
            ..LoraConfig::default()
        },
        ..ServingOptions::default()
    };
    let rows = serve(&opts, &mut |_| {}).unwrap();
    let b = tunelab::lab::finetune::load_base("gpt-tiny").unwrap();
    let (c, layers) = (b.model.config.d_model, b.model.config.n_layers);
    // Per layer: a q pair and a v pair, each A (r, C) and B (C, r), in f32.
    let adapter = layers * 2 * (2 * c + c * 2) * 4;
    for r in &rows {
        assert_eq!(r.base_bytes, b.store.bytes());
        assert_eq!(r.adapter_bytes, adapter);
        assert_eq!(r.set_bytes, r.base_bytes + r.adapters * adapter);
        assert_eq!(r.merged_bytes, r.adapters * r.base_bytes);
        assert!(r.set_requests_per_s > 0.0 && r.merged_requests_per_s > 0.0);
        assert!(
            r.max_diff < 1e-4,
            "{} adapters: logits differ by {}",
            r.adapters,
            r.max_diff
        );
    }
}

#[test]
fn merge_compare_scores_switching_exactly_as_each_task_s_own_adapter() {
    use tunelab::lab::merge_compare::{run, MergeCompareOptions};
    let mut opts = MergeCompareOptions::new("gpt-tiny");
    opts.tasks = vec![
        tunelab::data::tasks::Task::Sentiment,
        tunelab::data::tasks::Task::Ner,
    ];
    opts.steps = 2;
    opts.seeds = 1;
    opts.max_eval_examples = 8;
    opts.merges = tunelab::lab::merge_compare::default_merges(2, opts.lora.r, 0.5);
    opts.merges.truncate(3); // cat, svd, ties_svd
    let r = run(&opts, &mut |_| {}).unwrap();
    assert_eq!(r.rows.len(), 2 + 3);
    assert_eq!(r.rows[1].label, "switching (AdapterSet)");
    assert_eq!(
        r.rows[0].scores, r.rows[1].scores,
        "switching serves the same weights"
    );
    assert_eq!(
        r.heads[0],
        ["score.weight"],
        "GPT-2's score head has no bias"
    );
    for row in &r.rows {
        for s in row.scores.iter().flatten() {
            assert!((0.0..=1.0).contains(s), "{}: {s}", row.label);
        }
    }
}
