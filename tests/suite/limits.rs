//! Limits before allocation and file-format errors: every dimension of a config.json, an
//! adapter config (both dialects), a safetensors header and the method-size options is checked
//! before anything is allocated, with a message naming the file and field (or the flag); a
//! tensor of an unsupported dtype, a tokenizer larger than its model and PEFT options tunelab
//! does not honour are refused by name.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tunelab::io::adapter::{export_peft, read_config, CONFIG};
use tunelab::io::{hf, safetensors};
use tunelab::nn::{Config, Transformer};
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::store::{load_adapter, save_adapter};
use tunelab::peft::{apply, MethodSpec};
use tunelab::ParamStore;

use super::common::empty_dir;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name)
}

fn err_of<T>(r: tunelab::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

fn assert_has(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "{msg:?} lacks {p:?}");
    }
}

/// gpt-tiny's config.json with `key` set to `value`, loaded with its real weights.
fn load_edited(weights: &[u8], key: &str, value: Value) -> String {
    let dir = shipped("gpt-tiny");
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    c[key] = value;
    err_of(hf::load_bytes::<f32>(
        &dir,
        &serde_json::to_vec(&c).unwrap(),
        weights,
    ))
}

#[test]
fn config_dimensions_beyond_the_limits_or_the_weights_are_refused_naming_the_key() {
    let weights = std::fs::read(shipped("gpt-tiny").join("model.safetensors")).unwrap();
    for (key, value, says) in [
        (
            "n_embd",
            json!(1u64 << 62),
            "exceeds tunelab's limit of 65,536",
        ),
        ("n_embd", json!(1_000_000_000u64), "exceeds tunelab's limit"),
        (
            "vocab_size",
            json!(1_000_000_000_000u64),
            "exceeds tunelab's limit",
        ),
        (
            "n_inner",
            json!(10_000_000_000u64),
            "exceeds tunelab's limit",
        ),
        (
            "n_layer",
            json!(10_000_000u64),
            "exceeds tunelab's limit of 1,024",
        ),
        ("n_embd", json!(1e9), "is not a non-negative integer"),
        ("n_head", json!(-4), "is not a non-negative integer"),
    ] {
        let msg = load_edited(&weights, key, value);
        assert_has(&msg, &["config.json", key, says]);
    }
    // Within the limits but not what the weights hold: refused before the model is built.
    for (key, value) in [("n_layer", json!(1000)), ("n_embd", json!(4096))] {
        let msg = load_edited(&weights, key, value);
        assert_has(
            &msg,
            &["config.json", "model.safetensors has 3,767,624 bytes"],
        );
    }
    // A programmatic config is held to the same limits.
    let mut store = ParamStore::<f32>::new();
    let msg = err_of(Transformer::new(
        Config::gpt(1 << 24, 1 << 16, 1, 4, 16),
        &mut store,
        0,
    ));
    assert_has(&msg, &["parameters, more than tunelab's limit"]);
    assert_eq!(store.len(), 0);
}

#[test]
fn non_finite_or_out_of_range_config_floats_are_refused_naming_the_key() {
    let weights = std::fs::read(shipped("gpt-tiny").join("model.safetensors")).unwrap();
    for (key, value) in [
        ("layer_norm_epsilon", json!(-1)),
        ("layer_norm_epsilon", json!(0)),
        ("layer_norm_epsilon", json!("NaN")),
        ("layer_norm_epsilon", json!(1e300)),
        ("resid_pdrop", json!(5)),
        ("attn_pdrop", json!(-0.5)),
        ("embd_pdrop", json!("inf")),
    ] {
        let msg = load_edited(&weights, key, value.clone());
        assert_has(&msg, &["config.json", key, &format!("{key} = {value}")]);
    }
}

/// A safetensors file of one F32 tensor with the given header entry.
fn one_tensor(entry: Value, data: usize) -> Vec<u8> {
    let header = serde_json::to_vec(&json!({ "t": entry })).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(vec![0u8; data]);
    out
}

#[test]
fn safetensors_headers_with_overflowing_or_oversized_shapes_are_errors_naming_the_tensor() {
    for (entry, says) in [
        (
            json!({"dtype": "F32", "shape": [1u64 << 62, 4], "data_offsets": [0, 16]}),
            "has more elements than memory can hold",
        ),
        (
            json!({"dtype": "F32", "shape": [0, u64::MAX, 4], "data_offsets": [0, 0]}),
            "has more elements than memory can hold",
        ),
        (
            json!({"dtype": "F32", "shape": [1u64 << 61], "data_offsets": [0, 16]}),
            "needs 9223372036854775808 bytes",
        ),
        (
            json!({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 1u64 << 40]}),
            "data_offsets give 0..1099511627776 of 16 bytes",
        ),
        (
            json!({"dtype": "F32", "shape": [2, 2], "data_offsets": [0]}),
            "data_offsets missing or not two integers",
        ),
    ] {
        let msg = err_of(safetensors::parse::<f32>(
            &one_tensor(entry, 16),
            "x.safetensors",
        ));
        assert_has(&msg, &["x.safetensors", "tensor t", says]);
    }
    let ok = safetensors::parse::<f32>(
        &one_tensor(
            json!({"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}),
            16,
        ),
        "x.safetensors",
    )
    .unwrap();
    assert_eq!(ok.tensors[0].1.shape(), &[2, 2]);
}

/// gpt-tiny's weights with one header entry's `field` replaced.
fn weights_edited(name: &str, field: &str, value: Value) -> Vec<u8> {
    let bytes = std::fs::read(shipped("gpt-tiny").join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    header[name][field] = value;
    let mut h = serde_json::to_vec(&header).unwrap();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend_from_slice(&bytes[8 + n..]);
    out
}

#[test]
fn a_tensor_of_an_unsupported_dtype_is_named_with_its_dtype_not_reported_missing() {
    let dir = shipped("gpt-tiny");
    let config = std::fs::read(dir.join("config.json")).unwrap();
    let i64 = weights_edited("wte.weight", "dtype", json!("I64"));
    let msg = err_of(hf::load_bytes::<f32>(&dir, &config, &i64));
    assert_has(
        &msg,
        &[
            "model.safetensors",
            "tensor wte.weight has dtype I64",
            "F32, F64, F16, BF16",
        ],
    );
    assert!(!msg.contains("missing"), "{msg}");
    let null = weights_edited("h.0.ln_1.weight", "dtype", Value::Null);
    let msg = err_of(hf::load_bytes::<f32>(&dir, &config, &null));
    assert_has(
        &msg,
        &[
            "model.safetensors",
            "tensor h.0.ln_1.weight: dtype null is not supported",
        ],
    );
}

#[test]
fn a_tokenizer_with_ids_beyond_the_models_vocabulary_fails_at_load_naming_it() {
    let dir = empty_dir("limits-tokenizer");
    let src = shipped("gpt-tiny");
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(src.join("config.json")).unwrap()).unwrap();
    c["vocab_size"] = json!(100);
    std::fs::write(dir.join("config.json"), serde_json::to_vec(&c).unwrap()).unwrap();
    let msg = err_of(hf::load_tokenizer(&dir));
    assert_has(
        &msg,
        &[
            "tokenizer.json",
            "token ids reach 1023",
            "vocabulary of 100",
        ],
    );
    // The shipped pair agrees.
    assert_eq!(hf::load_tokenizer(&src).unwrap().vocab_size(), 1024);
}

/// A tiny GPT (V 29, C 8, NH 2, L 2, T ≤ 16) and its store.
fn tiny() -> (Transformer, ParamStore<f32>) {
    let mut config = Config::gpt(29, 8, 2, 2, 16);
    config.dropout = 0.0;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 5).unwrap();
    (model, store)
}

fn lora(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r: 2,
        alpha: 4.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

/// A LoRA adapter of the tiny GPT saved in a fresh directory.
fn saved_adapter(name: &str, targets: &[&str]) -> PathBuf {
    let (model, mut store) = tiny();
    let spec = MethodSpec::Lora(lora(targets));
    let mut method = apply(&spec, &model, &mut store, 1).unwrap();
    let dir = empty_dir(name);
    save_adapter(&dir, &spec, method.as_mut(), &mut store, &[], json!({})).unwrap();
    dir
}

fn write_config(dir: &Path, config: &Value) {
    std::fs::write(dir.join(CONFIG), serde_json::to_vec(config).unwrap()).unwrap();
}

#[test]
fn adapter_config_sizes_and_floats_out_of_range_are_refused_naming_the_file_and_field() {
    let dir = saved_adapter("limits-adapter", &["q", "v"]);
    let lora = |edit: Value| {
        let mut c = json!({"method": "lora", "r": 2, "alpha": 4.0, "dropout": 0.0,
            "targets": ["q", "v"], "rslora": false, "lr_ratio_b": 1.0});
        for (k, v) in edit.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    for (config, says) in [
        (
            lora(json!({"r": 1_000_000_000u64})),
            "r = 1000000000 would add",
        ),
        (lora(json!({"dropout": 5})), "dropout = 5 is outside [0, 1)"),
        (
            lora(json!({"alpha": 1e308})),
            "alpha = 1e308 gives the scaling",
        ),
        (lora(json!({"lr_ratio_b": -1})), "lr_ratio_b = -1"),
        (
            json!({"method": "houlsby", "bottleneck": 1_000_000_000_000u64}),
            "bottleneck = 1000000000000 would add",
        ),
        (
            json!({"method": "prompt", "n_virtual": 1_000_000_000u64, "init": "random"}),
            "n_virtual = 1000000000 leaves no room",
        ),
        (
            json!({"method": "prompt", "n_virtual": 200, "init": "random"}),
            "n_virtual = 200 leaves no room for the input",
        ),
        (
            json!({"method": "prefix", "n_virtual": 4, "reparameterize": true,
                "hidden": 1_000_000_000_000u64}),
            "hidden = 1000000000000 would add",
        ),
    ] {
        write_config(&dir, &config);
        let (model, mut store) = tiny();
        let before = store.len();
        let msg = err_of(load_adapter(&dir, &model, &mut store, 0));
        assert_has(&msg, &[&dir.join(CONFIG).display().to_string(), says]);
        assert_eq!(store.len(), before, "nothing was added to the store");
    }
}

#[test]
fn method_size_options_are_checked_against_the_base_naming_the_flag() {
    // Through the library: `apply` names the option.
    let (model, mut store) = tiny();
    for (spec, flag) in [
        (
            MethodSpec::Lora(LoraConfig {
                r: 1_000_000,
                ..lora(&["q", "v"])
            }),
            "--r: invalid argument: r = 1000000 would add 64,000,000",
        ),
        (
            MethodSpec::Houlsby {
                bottleneck: 100_000_000,
            },
            "--bottleneck",
        ),
        (
            MethodSpec::Prefix {
                n_virtual: 4,
                reparameterize: true,
                hidden: 100_000_000_000,
            },
            "--prefix-hidden",
        ),
        (
            MethodSpec::Prompt {
                n_virtual: 10_000,
                init: tunelab::peft::spec::PromptInit::Random,
            },
            "--n-virtual",
        ),
    ] {
        let msg = err_of(apply(&spec, &model, &mut store, 0));
        assert_has(&msg, &[flag]);
    }
    // Through the command line, before any training.
    let out = empty_dir("limits-cli");
    for (args, says) in [
        (
            &["--r", "100000"][..],
            "--r: invalid argument: r = 100000 would add 204,800,000",
        ),
        (&["--r", "100000000000"][..], "--r: invalid argument"),
        (
            &["--method", "houlsby", "--bottleneck", "100000"][..],
            "--bottleneck: invalid argument",
        ),
        (
            &["--method", "prompt", "--n-virtual", "10000"][..],
            "--n-virtual: invalid argument: n_virtual = 10000 leaves no room",
        ),
        (
            &["--method", "prefix", "--prefix-hidden", "100000000000"][..],
            "--prefix-hidden: invalid argument",
        ),
    ] {
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(["finetune", "--task", "sentiment", "--base", "gpt-tiny"])
            .args(["--max-steps", "1", "--output-dir"])
            .arg(&out)
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{args:?} succeeded");
        assert_ne!(run.status.code(), Some(101), "{args:?} panicked: {stderr}");
        assert_has(&stderr, &[says]);
    }
}

#[test]
fn peft_configs_with_options_tunelab_does_not_honour_are_refused_by_name() {
    let dir = saved_adapter("limits-peft-src", &["qkv"]);
    let (model, _) = tiny();
    let out = empty_dir("limits-peft");
    export_peft(&dir, &model.config, "tiny", &out).unwrap();
    let exported: Value =
        serde_json::from_slice(&std::fs::read(out.join(CONFIG)).unwrap()).unwrap();
    // The exported adapter itself is accepted.
    read_config(&out).unwrap();
    for (key, value, says) in [
        (
            "target_modules",
            json!(["c_attn", "nosuch"]),
            "target_modules entry \"nosuch\" names no module",
        ),
        (
            "target_modules",
            json!(["c_fc"]),
            "target_modules entry \"c_fc\" names no module",
        ),
        (
            "target_modules",
            json!(".*nosuch"),
            "not other regular expressions",
        ),
        (
            "fan_in_fan_out",
            json!(false),
            "fan_in_fan_out = false does not fit",
        ),
        ("use_dora", json!(true), "use_dora = true is not supported"),
        (
            "layers_to_transform",
            json!([0]),
            "layers_to_transform = [0] is not supported",
        ),
        (
            "exclude_modules",
            json!(["h.0.attn.c_attn"]),
            "exclude_modules",
        ),
        (
            "init_lora_weights",
            json!("pissa"),
            "init_lora_weights = \"pissa\"",
        ),
        (
            "lora_dropout",
            json!(5),
            "lora_dropout = 5 is not a probability",
        ),
        ("lora_alpha", json!("x"), "lora_alpha"),
        (
            "some_future_option",
            json!(3),
            "some_future_option = 3 is not a PEFT LoRA option",
        ),
    ] {
        let mut c = exported.clone();
        c[key] = value;
        write_config(&out, &c);
        let msg = err_of(read_config(&out));
        assert_has(&msg, &[&out.join(CONFIG).display().to_string(), says]);
        if says.contains("option") || says.contains("not supported") {
            assert_has(&msg, &["it honours peft_type, r, lora_alpha"]);
        }
    }
    // Keys that are off, or that change nothing once loaded, are accepted.
    let mut c = exported.clone();
    c["some_future_option"] = json!(null);
    c["revision"] = json!("main");
    c["loftq_config"] = json!({});
    write_config(&out, &c);
    read_config(&out).unwrap();
}
