//! LoRA's variants against PEFT, with fixtures written by `tools/peft_lora_variants_fixtures.py`
//! (its docstring says what each file holds):
//!
//! - PiSSA's and OLoRA's initial A, B and residual weight equal PEFT's `pissa_init` /
//!   `olora_init` on the same weights (PiSSA's singular vectors up to their sign), and the model
//!   with the residual base and the adapter computes what the base computed.
//! - PEFT's converted PiSSA (GPT-2) and OLoRA (BERT) adapters, and a trained AdaLoRA adapter with
//!   its rank pattern, load onto the original base and give PEFT's outputs; tunelab's own PiSSA
//!   adapter saved converted loads onto the original base with the outputs it trained to.
//! - AdaLoRA's rank allocator equals PEFT's `RankAllocator` step by step on fixed values and
//!   gradients; its orthogonality regulariser equals PEFT's and its gradient finite differences.
//! - LoRA-FA's projected gradient and optimizer steps against PEFT's `LoraFAOptimizer`.
//!
//! Every comparison prints its max difference (`cargo test --test suite lora_variants:: --
//! --nocapture`).

use crate::common::temp_dir;
use ndarray::{Array2, ArrayD, Ix2};
use std::path::{Path, PathBuf};
use tunelab::io::{hf, safetensors};
use tunelab::nn::{Hooks, Input, NoHooks, Transformer};
use tunelab::optim::{AdamW, AdamWConfig, Optimizer};
use tunelab::peft::adalora::AdaLora;
use tunelab::peft::lora_fa;
use tunelab::peft::spec::{AdaLoraConfig, LoraConfig, LoraInit};
use tunelab::peft::store::{load_adapter, save_adapter};
use tunelab::peft::{apply, Method, MethodSpec};
use tunelab::{Grads, ParamStore, Tape};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The tensors of a fixture file, by name, in f64.
fn tensors(name: &str) -> Vec<(String, ArrayD<f64>)> {
    safetensors::load::<f64>(&fixture(name)).unwrap().tensors
}

fn get<'a>(t: &'a [(String, ArrayD<f64>)], name: &str) -> &'a ArrayD<f64> {
    &t.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name} in the fixture"))
        .1
}

fn ids(t: &[(String, ArrayD<f64>)], name: &str) -> Array2<usize> {
    get(t, name)
        .view()
        .into_dimensionality::<Ix2>()
        .unwrap()
        .mapv(|x| x as usize)
}

fn max_diff(a: &ArrayD<f64>, b: &ArrayD<f64>) -> f64 {
    assert_eq!(a.shape(), b.shape());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Prints the verdict and max |a − b| (as `hf_parity`), and whether it is within `tol`.
fn agrees(what: &str, a: &ArrayD<f64>, b: &ArrayD<f64>, tol: f64) -> bool {
    let d = max_diff(a, b);
    println!(
        "{} {what}: max |diff| {d:.3e}",
        if d <= tol { "OK    " } else { "NOT OK" }
    );
    d <= tol
}

/// GPT-2 LM logits of `ids` through `hooks`.
fn gpt_logits(
    model: &Transformer,
    store: &ParamStore<f64>,
    hooks: &dyn Hooks<f64>,
    ids: &Array2<usize>,
) -> ArrayD<f64> {
    let mut tape = Tape::inference(store);
    let h = model
        .forward(&mut tape, hooks, &Input::new(ids.view()))
        .unwrap();
    let logits = model.lm_logits(&mut tape, hooks, h).unwrap();
    tape.value(logits).to_owned()
}

fn lora(r: usize, alpha: f64, targets: &[&str], init: LoraInit) -> LoraConfig {
    LoraConfig {
        r,
        alpha,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        init_lora_weights: init,
        ..Default::default()
    }
}

/// Checks the init A, B and residual of every module the fixture `reference` lists against
/// tunelab's in `store`; `signs`: align each component's sign to PEFT's first (PiSSA).
fn check_init(store: &ParamStore<f64>, reference: &[(String, ArrayD<f64>)], signs: bool) -> usize {
    let mut checked = 0;
    for (name, want_a) in reference.iter().filter(|(n, _)| n.ends_with(".lora_A")) {
        let module = &name["init.".len()..name.len() - ".lora_A".len()];
        let want_b = get(reference, &format!("init.{module}.lora_B"));
        let want_w = get(reference, &format!("init.{module}.weight"));
        let a = store.value(store.id(&format!("{module}.lora_A.weight")).unwrap());
        let b = store.value(store.id(&format!("{module}.lora_B.weight")).unwrap());
        let w = store.value(store.id(&format!("{module}.weight")).unwrap());
        let (mut a, mut b) = (a.clone(), b.clone());
        if signs {
            for k in 0..a.shape()[0] {
                let dot: f64 = (0..a.shape()[1]).map(|j| a[[k, j]] * want_a[[k, j]]).sum();
                if dot < 0.0 {
                    for j in 0..a.shape()[1] {
                        a[[k, j]] = -a[[k, j]];
                    }
                    for i in 0..b.shape()[0] {
                        b[[i, k]] = -b[[i, k]];
                    }
                }
            }
        }
        // PEFT decomposes in float32; tunelab in f64 on the same (f32) weights.
        assert!(
            agrees(&format!("{module} A0"), &a, want_a, 2e-5),
            "{module}"
        );
        assert!(
            agrees(&format!("{module} B0"), &b, want_b, 2e-5),
            "{module}"
        );
        assert!(
            agrees(&format!("{module} W_res"), w, want_w, 2e-6),
            "{module}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn pissa_init_equals_peft_and_leaves_the_model_unchanged() {
    let r = tensors("hf/gpt2-tiny-pissa-ref.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let ids = ids(&r, "input_ids");
    let before = gpt_logits(&m.model, &m.store, &NoHooks, &ids);
    let spec = MethodSpec::Lora(lora(4, 8.0, &["qkv", "o", "fc", "proj"], LoraInit::Pissa));
    let method = apply(&spec, &m.model, &mut m.store, 0).unwrap();
    assert_eq!(
        check_init(&m.store, &r, true),
        8,
        "c_attn, c_proj, c_fc, mlp.c_proj × 2 layers"
    );
    let at_init = gpt_logits(&m.model, &m.store, method.as_ref(), &ids);
    assert!(agrees(
        "residual + PiSSA vs base logits",
        &at_init,
        &before,
        1e-10
    ));
}

#[test]
fn olora_init_equals_peft_on_bert_and_leaves_the_model_unchanged() {
    let r = tensors("hf/bert-tiny-olora-ref.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/bert-tiny")).unwrap();
    let spec = MethodSpec::Lora(lora(4, 8.0, &["q", "v"], LoraInit::Olora));
    let (ids, mask, types) = bert_inputs(&r);
    let before = bert_hidden(&m.model, &m.store, &NoHooks, &ids, &mask, &types);
    let method = apply(&spec, &m.model, &mut m.store, 0).unwrap();
    // QR's signs are LAPACK's in both: no alignment.
    assert_eq!(
        check_init(&m.store, &r, false),
        4,
        "query, value × 2 layers"
    );
    let at_init = bert_hidden(&m.model, &m.store, method.as_ref(), &ids, &mask, &types);
    assert!(agrees(
        "residual + OLoRA vs base hidden",
        &at_init,
        &before,
        1e-10
    ));
}

type BertInputs = (Array2<usize>, Array2<bool>, Array2<usize>);

fn bert_inputs(r: &[(String, ArrayD<f64>)]) -> BertInputs {
    (
        ids(r, "input_ids"),
        ids(r, "attention_mask").mapv(|x| x == 1),
        ids(r, "token_type_ids"),
    )
}

/// BERT's last hidden states at the real (unpadded) positions, padding zeroed.
fn bert_hidden(
    model: &Transformer,
    store: &ParamStore<f64>,
    hooks: &dyn Hooks<f64>,
    ids: &Array2<usize>,
    mask: &Array2<bool>,
    types: &Array2<usize>,
) -> ArrayD<f64> {
    let mut input = Input::new(ids.view()).with_mask(mask.view());
    input.token_types = Some(types.view());
    let mut tape = Tape::inference(store);
    let h = model.forward(&mut tape, hooks, &input).unwrap();
    let mut h = tape.value(h).to_owned();
    for ((i, j), &m) in mask.indexed_iter() {
        if !m {
            h.index_axis_mut(ndarray::Axis(0), i)
                .index_axis_mut(ndarray::Axis(0), j)
                .fill(0.0);
        }
    }
    h
}

#[test]
fn peft_converted_pissa_adapter_gives_peft_logits_on_the_original_base() {
    let r = tensors("hf/gpt2-tiny-pissa-ref.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let (spec, method, _) =
        load_adapter(&fixture("hf/gpt2-tiny-pissa"), &m.model, &mut m.store, 0).unwrap();
    let MethodSpec::Lora(c) = spec else {
        panic!("a converted PiSSA adapter is plain LoRA")
    };
    assert_eq!(
        (c.r, c.alpha, c.init_lora_weights),
        (8, 16.0, LoraInit::Default)
    );
    let logits = gpt_logits(&m.model, &m.store, method.as_ref(), &ids(&r, "input_ids"));
    assert!(agrees(
        "PiSSA (converted) logits",
        &logits,
        get(&r, "logits"),
        1e-4
    ));
}

#[test]
fn peft_converted_olora_adapter_gives_peft_hidden_states_on_the_original_base() {
    let r = tensors("hf/bert-tiny-olora-ref.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/bert-tiny")).unwrap();
    let (spec, method, meta) =
        load_adapter(&fixture("hf/bert-tiny-olora"), &m.model, &mut m.store, 0).unwrap();
    assert_eq!(meta["peft"]["task_type"], "FEATURE_EXTRACTION");
    let MethodSpec::Lora(c) = spec else {
        panic!("plain LoRA")
    };
    assert_eq!((c.r, c.alpha), (8, 16.0));
    let (ids, mask, types) = bert_inputs(&r);
    let hidden = bert_hidden(&m.model, &m.store, method.as_ref(), &ids, &mask, &types);
    let mut want = get(&r, "hidden").clone();
    for ((i, j), &keep) in mask.indexed_iter() {
        if !keep {
            want.index_axis_mut(ndarray::Axis(0), i)
                .index_axis_mut(ndarray::Axis(0), j)
                .fill(0.0);
        }
    }
    assert!(agrees(
        "OLoRA (converted) hidden states",
        &hidden,
        &want,
        1e-4
    ));
}

/// tunelab's own PiSSA, trained (perturbed), saved: the file is a plain LoRA of rank 2r that
/// gives on the original base what the residual model computed; exported, its PEFT config says
/// so too.
#[test]
fn a_saved_pissa_adapter_loads_on_the_original_base_with_its_trained_outputs() {
    let m0 = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let ids = ids(&tensors("hf/gpt2-tiny-pissa-ref.safetensors"), "input_ids");
    for init in [LoraInit::Pissa, LoraInit::Olora] {
        let (model, mut store) = (m0.model.clone(), m0.store.clone());
        let spec = MethodSpec::Lora(lora(3, 6.0, &["qkv", "o", "fc", "proj"], init));
        let mut method = apply(&spec, &model, &mut store, 0).unwrap();
        for &id in method.params() {
            let v = store.value(id).mapv(|x| x + 0.01 * (x * 1e3).sin());
            store.set_value(id, v).unwrap();
        }
        let trained = gpt_logits(&model, &store, method.as_ref(), &ids);
        let base = gpt_logits(&model, &m0.store, &NoHooks, &ids);
        assert!(
            max_diff(&trained, &base) > 1e-3,
            "the perturbation changes the model"
        );
        let dir = temp_dir("pissa-saved");
        let meta = serde_json::json!({"task": "dialogue"});
        save_adapter(&dir, &spec, method.as_mut(), &mut store, &[], meta).unwrap();
        // The store holds the original weights again.
        for (id, p) in m0.store.iter() {
            assert_eq!(store.value(id), &p.value, "{} is not the original", p.name);
        }
        let mut fresh = m0.store.clone();
        let (loaded, method2, _) = load_adapter(&dir, &model, &mut fresh, 5).unwrap();
        assert_eq!(
            loaded,
            MethodSpec::Lora(lora(
                6,
                12.0,
                &["qkv", "o", "fc", "proj"],
                LoraInit::Default
            ))
        );
        let got = gpt_logits(&model, &fresh, method2.as_ref(), &ids);
        assert!(agrees(
            &format!("{} saved → loaded on the original base", init.name()),
            &got,
            &trained,
            1e-10
        ));

        let out = temp_dir("pissa-exported");
        tunelab::io::adapter::export_peft(&dir, &model.config, "gpt2-tiny", &out).unwrap();
        let config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap())
                .unwrap();
        assert_eq!(
            (config["r"].as_u64(), config["lora_alpha"].as_f64()),
            (Some(6), Some(12.0))
        );
        assert_eq!(config["init_lora_weights"], true);
        for d in [dir, out] {
            std::fs::remove_dir_all(d).unwrap();
        }
    }
}

#[test]
fn a_saved_config_asking_for_pissa_is_refused_before_the_base_changes() {
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let dir = temp_dir("pissa-config");
    let spec = MethodSpec::Lora(lora(2, 4.0, &["qkv"], LoraInit::Default));
    let mut method = apply(&spec, &m.model, &mut m.store, 0).unwrap();
    save_adapter(
        &dir,
        &spec,
        method.as_mut(),
        &mut m.store,
        &[],
        serde_json::Value::Null,
    )
    .unwrap();
    let path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"true\"", "\"pissa\"");
    std::fs::write(&path, text).unwrap();
    let mut fresh = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let err = load_adapter(&dir, &fresh.model, &mut fresh.store, 0)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("init_lora_weights") && err.contains("adapter_config.json"),
        "{err}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn peft_adalora_adapter_gives_peft_logits_and_exports_back_to_its_file() {
    let r = tensors("hf/gpt2-tiny-adalora-ref.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let (spec, method, _) =
        load_adapter(&fixture("hf/gpt2-tiny-adalora"), &m.model, &mut m.store, 0).unwrap();
    let MethodSpec::Adalora(c) = &spec else {
        panic!("an AdaLoRA adapter")
    };
    assert_eq!(
        (c.init_r, c.target_r, c.tinit, c.tfinal, c.total_step),
        (6, 3, 2, 2, Some(8))
    );
    let pattern = c
        .rank_pattern
        .as_ref()
        .expect("a trained adapter has a rank pattern");
    assert_eq!(pattern.len(), 8);
    let kept: usize = pattern
        .values()
        .map(|p| p.iter().filter(|&&k| k).count())
        .sum();
    assert_eq!(kept, 3 * 8, "the final budget is target_r per module");
    let ids = ids(&r, "input_ids");
    let logits = gpt_logits(&m.model, &m.store, method.as_ref(), &ids);
    assert!(agrees("AdaLoRA logits", &logits, get(&r, "logits"), 1e-4));

    // tunelab's format, then PEFT's again: the file PEFT wrote.
    let own = temp_dir("adalora-own");
    let mut method = method;
    save_adapter(
        &own,
        &spec,
        method.as_mut(),
        &mut m.store,
        &[],
        serde_json::json!({"task": "dialogue"}),
    )
    .unwrap();
    let out = temp_dir("adalora-exported");
    tunelab::io::adapter::export_peft(&own, &m.model.config, "gpt2-tiny", &out).unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("adapter_config.json")).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture("hf/gpt2-tiny-adalora/adapter_config.json")).unwrap(),
    )
    .unwrap();
    for key in [
        "peft_type",
        "init_r",
        "target_r",
        "tinit",
        "tfinal",
        "deltaT",
        "total_step",
        "rank_pattern",
        "fan_in_fan_out",
    ] {
        assert_eq!(config[key], theirs[key], "{key}");
    }
    let mut a = safetensors::load::<f64>(&out.join("adapter_model.safetensors"))
        .unwrap()
        .tensors;
    let mut b =
        safetensors::load::<f64>(&fixture("hf/gpt2-tiny-adalora/adapter_model.safetensors"))
            .unwrap()
            .tensors;
    a.sort_by(|x, y| x.0.cmp(&y.0));
    b.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(a.len(), b.len());
    for ((n1, t1), (n2, t2)) in a.iter().zip(&b) {
        assert_eq!(n1, n2);
        assert_eq!(t1, t2, "{n1}");
    }
    for d in [own, out] {
        std::fs::remove_dir_all(d).unwrap();
    }
}

/// The adapter before any allocation (every triplet, no rank pattern): PEFT's logits, and
/// PEFT's orthogonality regulariser (its loss minus its LM loss) at the same weights.
#[test]
fn peft_adalora_adapter_before_allocation_gives_peft_logits_and_regulariser() {
    let r = tensors("hf/gpt2-tiny-adalora-ref.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let (spec, method, _) = load_adapter(
        &fixture("hf/gpt2-tiny-adalora-init"),
        &m.model,
        &mut m.store,
        0,
    )
    .unwrap();
    let MethodSpec::Adalora(c) = &spec else {
        panic!("an AdaLoRA adapter")
    };
    assert_eq!((c.init_r, c.rank_pattern.as_ref()), (6, None));
    let logits = gpt_logits(&m.model, &m.store, method.as_ref(), &ids(&r, "input_ids"));
    assert!(agrees(
        "AdaLoRA (before allocation) logits",
        &logits,
        get(&r, "init_logits"),
        1e-4
    ));
    let mut tape = Tape::new(&m.store);
    let reg = method.regularizer(&mut tape).unwrap().unwrap();
    let ours = tape.scalar(reg).unwrap();
    let scalar = |n: &str| *get(&r, n).iter().next().unwrap();
    let theirs = scalar("init_loss") - scalar("init_lm_loss");
    println!(
        "AdaLoRA regulariser: tunelab {ours:.7}, PEFT {theirs:.7}, |diff| {:.3e}",
        (ours - theirs).abs()
    );
    assert!((ours - theirs).abs() < 1e-5, "{ours} vs {theirs}");
}

#[test]
fn adalora_rank_allocation_equals_peft_step_by_step() {
    let g = tensors("hf/adalora-allocator.safetensors");
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let config = AdaLoraConfig {
        init_r: 4,
        target_r: 2,
        alpha: 8.0,
        targets: vec!["qkv".into()],
        total_step: Some(6),
        tinit: 1,
        tfinal: 1,
        ..Default::default()
    };
    let method = AdaLora::apply(&m.model, &mut m.store, config, 0).unwrap();
    let mut masked_any = false;
    for step in 0..6 {
        let mut grads = Grads::new(&m.store);
        for &id in Method::<f64>::params(&method) {
            let name = m.store.name(id).to_string();
            m.store
                .set_value(id, get(&g, &format!("step{step}.{name}")).clone())
                .unwrap();
            *grads_slot(&mut grads, &m.store, id) =
                get(&g, &format!("step{step}.grad.{name}")).clone();
        }
        method.after_step(&mut m.store, &grads, step, 6).unwrap();
        for t in &method.triplets {
            let name = m.store.name(t.e).to_string();
            let want = get(&g, &format!("step{step}.masked.{name}"));
            let got = m.store.value(t.e);
            assert_eq!(got, want, "step {step} {name}");
            masked_any |= got.iter().any(|&x| x == 0.0);
        }
    }
    assert!(masked_any, "the schedule masked some triplets");
    let pattern = method.rank_pattern().unwrap();
    let kept: usize = pattern
        .values()
        .map(|p| p.iter().filter(|&&k| k).count())
        .sum();
    assert_eq!(kept, 2 * 2, "target_r 2 on 2 blocks");
}

/// The gradient slot of `id`, created at its parameter's shape.
fn grads_slot<'a>(
    grads: &'a mut Grads<f64>,
    store: &ParamStore<f64>,
    id: tunelab::ParamId,
) -> &'a mut ArrayD<f64> {
    if grads.get(id).is_none() {
        let mut tape = Tape::new(store);
        let p = tape.param(id);
        let s = tape.sum_all(p).unwrap();
        tape.backward(s, grads).unwrap();
    }
    grads.get_mut(id).unwrap()
}

#[test]
fn adalora_regulariser_gradient_matches_finite_differences() {
    let mut m = hf::load::<f64>(&fixture("hf/gpt2-tiny")).unwrap();
    let config = AdaLoraConfig {
        init_r: 3,
        target_r: 1,
        targets: vec!["qkv".into(), "fc".into()],
        orth_reg_weight: 0.7,
        ..Default::default()
    };
    let method = AdaLora::apply(&m.model, &mut m.store, config, 3).unwrap();
    let value = |store: &ParamStore<f64>, grads: Option<&mut Grads<f64>>| {
        let mut tape = Tape::new(store);
        let r = method.regularizer(&mut tape).unwrap().unwrap();
        if let Some(g) = grads {
            tape.backward(r, g).unwrap();
        }
        tape.scalar(r).unwrap()
    };
    let mut grads = Grads::new(&m.store);
    value(&m.store, Some(&mut grads));
    let mut probe = m.store.clone();
    let mut worst = 0.0f64;
    for &id in Method::<f64>::params(&method) {
        let n = probe.value(id).len();
        for i in (0..n).step_by(n / 5 + 1) {
            let x0 = m.store.value(id).as_slice().unwrap()[i];
            let h = 1e-6;
            probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0 + h;
            let up = value(&probe, None);
            probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0 - h;
            let down = value(&probe, None);
            probe.get_mut(id).value.as_slice_mut().unwrap()[i] = x0;
            let numeric = (up - down) / (2.0 * h);
            let analytic = grads.get(id).map_or(0.0, |g| g.as_slice().unwrap()[i]);
            let rel = (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(1e-3);
            worst = worst.max(rel);
            assert!(
                rel < 1e-6,
                "{}[{i}]: analytic {analytic}, numeric {numeric}",
                m.store.name(id)
            );
        }
    }
    println!("AdaLoRA regulariser gradient: max relative error {worst:.3e}");
}

/// PEFT's `LoraFAOptimizer` on fixed tensors, two steps. Its Adam is `transformers`' old AdamW
/// (adamw-hf), tunelab's is PyTorch's: the moments are the same, the update differs in where ε
/// enters (adamw-hf: lr·√(1−β2ᵗ)/(1−β1ᵗ) · m/(√v + ε), PyTorch: lr/(1−β1ᵗ) · m/(√v/√(1−β2ᵗ) + ε)).
/// So: the projected gradient and both moments must equal PEFT's; PEFT's parameters must equal
/// adamw-hf's formula on those moments; tunelab's step differs from PEFT's by the ε placement
/// alone, which is computed and bounded.
#[test]
fn lora_fa_projection_and_steps_match_peft_lorafa_optimizer() {
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("lorafa_golden.json")).unwrap()).unwrap();
    let mat = |v: &serde_json::Value| -> Array2<f64> {
        let rows: Vec<Vec<f64>> = serde_json::from_value(v.clone()).unwrap();
        Array2::from_shape_fn((rows.len(), rows[0].len()), |(i, j)| rows[i][j])
    };
    let a = mat(&g["A"]);
    let s = g["scaling"].as_f64().unwrap();
    let (lr, eps) = (g["lr"].as_f64().unwrap(), g["eps"].as_f64().unwrap());
    let (beta1, beta2) = (0.9, 0.999);
    let mut store = ParamStore::<f32>::new();
    let b = store
        .add(
            "m.lora_B.weight",
            mat(&g["B"]).mapv(|x| x as f32).into_dyn(),
            true,
        )
        .unwrap();
    let head = store
        .add(
            "head.weight",
            mat(&g["head"]).mapv(|x| x as f32).into_dyn(),
            true,
        )
        .unwrap();
    let mut opt = AdamW::<f32>::new(AdamWConfig {
        beta1,
        beta2,
        eps,
        weight_decay: 0.0,
    })
    .unwrap();
    let mut prev: Vec<Array2<f64>> = vec![mat(&g["B"]), mat(&g["head"])];
    let (mut moments, mut formula, mut placement) = (0.0f64, 0.0f64, 0.0f64);
    for (k, step) in g["grads"].as_array().unwrap().iter().enumerate() {
        let gb = lora_fa::project(&mat(&step["B"]), &a, s, f32::EPSILON as f64);
        let mut grads = Grads::new(&store);
        for (id, v) in [(b, gb), (head, mat(&step["head"]))] {
            *grads_slot32(&mut grads, &store, id) = v.mapv(|x| x as f32).into_dyn();
        }
        opt.step(&mut store, &grads, lr);
        let want = &g["steps"][k];
        let t = (k + 1) as i32;
        let (bc1, bc2) = (1.0 - beta1.powi(t), 1.0 - beta2.powi(t));
        for (i, (id, key)) in [(b, "B"), (head, "head")].into_iter().enumerate() {
            let m = opt.exp_avg(id).unwrap().mapv(|x| x as f64);
            let v = opt.exp_avg_sq(id).unwrap().mapv(|x| x as f64);
            let (want_m, want_v) = (
                mat(&want[format!("exp_avg_{key}")]).into_dyn(),
                mat(&want[format!("exp_avg_sq_{key}")]).into_dyn(),
            );
            // The first moment carries the projected gradient: (1 − β1)·g at step 1.
            moments = moments.max(max_diff(&m, &want_m) / (1.0 - beta1));
            moments = moments.max(max_diff(&v, &want_v) / (1.0 - beta2));
            let peft = mat(&want[key]).into_dyn();
            let hf = &prev[i].clone().into_dyn()
                - &(&want_m / &want_v.mapv(|x| x.sqrt() + eps)) * (lr * bc2.sqrt() / bc1);
            formula = formula.max(max_diff(&hf, &peft));
            let ours = store.value(id).mapv(|x| x as f64);
            placement = placement.max(max_diff(&ours, &peft));
            prev[i] = peft.into_dimensionality::<Ix2>().unwrap();
        }
    }
    println!("LoRA-FA: moments (as gradients) max |diff| {moments:.3e}");
    println!("LoRA-FA: PEFT's parameters vs adamw-hf's formula max |diff| {formula:.3e}");
    println!("LoRA-FA: tunelab's AdamW steps vs PEFT's max |diff| {placement:.3e} (ε placement)");
    assert!(
        moments < 1e-5,
        "the projected gradients or moments differ by {moments:e}"
    );
    assert!(
        formula < 1e-7,
        "PEFT's step is not adamw-hf's formula: {formula:e}"
    );
    // ε enters as ε·√(1−β2ᵗ) in PyTorch's form: at most lr·ε/(√v̂)·(1/√(1−β2ᵗ)) apart per step.
    assert!(placement < 1e-4 && placement > 0.0, "{placement:e}");
}

/// The f32 gradient slot of `id`, created at its parameter's shape.
fn grads_slot32<'a>(
    grads: &'a mut Grads<f32>,
    store: &ParamStore<f32>,
    id: tunelab::ParamId,
) -> &'a mut ArrayD<f32> {
    if grads.get(id).is_none() {
        let mut tape = Tape::new(store);
        let p = tape.param(id);
        let s = tape.sum_all(p).unwrap();
        tape.backward(s, grads).unwrap();
    }
    grads.get_mut(id).unwrap()
}

/// Trains `spec` on gpt-tiny's sentiment task for `steps` through the one Trainer; returns the
/// store before and after, the method and the report.
fn trained(
    spec: &MethodSpec,
    steps: usize,
) -> (
    ParamStore<f32>,
    tunelab::lab::finetune::Base,
    Box<dyn Method<f32>>,
    tunelab::train::trainer::TrainReport,
) {
    use tunelab::data::tasks::Task;
    use tunelab::lab::finetune::{load_base, prepare, task_data};
    use tunelab::train::args::Strategy;
    use tunelab::train::trainer::{train, Training};
    use tunelab::train::TrainingArgs;
    let mut base = load_base("gpt-tiny").unwrap();
    let (data, world) = task_data(Task::Sentiment, None, Some(64)).unwrap();
    let (tm, method) = prepare(&mut base, Task::Sentiment, data, world, spec, 0).unwrap();
    let before = base.store.clone();
    let dir = temp_dir(&format!("trainer-{}", spec.name()));
    let args = TrainingArgs {
        output_dir: dir.clone(),
        max_steps: Some(steps),
        batch_size: 8,
        learning_rate: 1e-2,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        ..TrainingArgs::default()
    };
    let report = train(Training::new(&args, &tm, &mut base.store).hooks(method.as_ref())).unwrap();
    let _ = std::fs::remove_dir_all(dir);
    (before, base, method, report)
}

#[test]
fn lora_fa_trains_b_only_through_the_trainer() {
    let spec = MethodSpec::LoraFa(lora(4, 8.0, &["q", "v"], LoraInit::Default));
    let (before, base, method, _) = trained(&spec, 3);
    let frozen = method.frozen_params();
    assert_eq!(frozen.len() * 2, method.params().len(), "one A per pair");
    for ab in method.params().chunks(2) {
        assert!(frozen.contains(&ab[0]) && !frozen.contains(&ab[1]));
        assert_eq!(base.store.value(ab[0]), before.value(ab[0]), "A moved");
        assert_ne!(
            base.store.value(ab[1]),
            before.value(ab[1]),
            "B did not train"
        );
    }
}

#[test]
fn adalora_prunes_to_its_budget_through_the_trainer_and_saves_its_rank_pattern() {
    let config = AdaLoraConfig {
        init_r: 4,
        target_r: 2,
        targets: vec!["q".into(), "v".into(), "fc".into()],
        tinit: 1,
        tfinal: 2,
        ..Default::default()
    };
    let spec = MethodSpec::Adalora(config.clone());
    let steps = 8;
    let (_, mut base, mut method, report) = trained(&spec, steps);
    // The first step's loss includes the regulariser: it is larger than without it.
    let no_reg = MethodSpec::Adalora(AdaLoraConfig {
        orth_reg_weight: 0.0,
        ..config
    });
    let (_, _, _, plain) = trained(&no_reg, steps);
    let (with, without) = (report.state.losses[0], plain.state.losses[0]);
    println!("AdaLoRA first loss with the regulariser {with:.5}, without {without:.5}");
    assert!(with > without + 0.1, "{with} vs {without}");

    let saved = method.saved_spec(&spec);
    let MethodSpec::Adalora(c) = &saved else {
        panic!("adalora")
    };
    assert_eq!(c.total_step, Some(steps), "the run's steps");
    let pattern = c.rank_pattern.as_ref().expect("allocated");
    let n_blocks = 4 * 3; // gpt-tiny's 4 layers × q, v, fc
    assert_eq!(pattern.len(), n_blocks);
    let kept: usize = pattern
        .values()
        .map(|p| p.iter().filter(|&&k| k).count())
        .sum();
    assert_eq!(kept, 2 * n_blocks, "the final budget is target_r per block");
    for (key, keep) in pattern {
        let e = base
            .store
            .value(base.store.id(&format!("{key}.lora_E")).unwrap_or_else(|_| {
                // A block of the fused c_attn: `h.0.attn.c_attn.q` → `h.0.attn.c_attn.lora_E.q`.
                let (module, tag) = key.rsplit_once('.').unwrap();
                base.store.id(&format!("{module}.lora_E.{tag}")).unwrap()
            }));
        for (i, &k) in keep.iter().enumerate() {
            if !k {
                assert_eq!(e[[i, 0]], 0.0, "{key}[{i}] is masked");
            }
        }
    }
    let dir = temp_dir("adalora-trained");
    save_adapter(
        &dir,
        &spec,
        method.as_mut(),
        &mut base.store,
        &[],
        serde_json::Value::Null,
    )
    .unwrap();
    let text = std::fs::read_to_string(dir.join("adapter_config.json")).unwrap();
    assert!(
        text.contains("rank_pattern") && text.contains("\"total_step\": 8"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn configs_written_before_init_lora_weights_existed_still_load_as_the_default_init() {
    let old = r#"{"method": "lora", "r": 4, "alpha": 8.0, "dropout": 0.0, "targets": ["q", "v"],
                  "rslora": false, "lr_ratio_b": 1.0}"#;
    let spec: MethodSpec = serde_json::from_str(old).unwrap();
    let MethodSpec::Lora(c) = spec else {
        panic!("lora")
    };
    assert_eq!(c.init_lora_weights, LoraInit::Default);
    let text = serde_json::to_string(&MethodSpec::Lora(c)).unwrap();
    assert!(text.contains(r#""init_lora_weights":"true""#), "{text}");
}
