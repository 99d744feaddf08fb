//! The PEFT library's dialect of the adapter format: its config fields and key names, to and
//! from tunelab's own. No file access here: [`super::adapter`] reads and writes the directories
//! and calls [`import`] and [`export`] to convert.
//!
//! A PEFT adapter directory has the same two files as tunelab's, with other contents:
//!
//! | | tunelab | PEFT |
//! |---|---|---|
//! | `adapter_config.json` | `{"method": "lora", "r", "alpha", "targets": ["q", "v"], …, "meta"}` | `{"peft_type": "LORA", "r", "lora_alpha", "target_modules": ["query", "value"], "task_type", "base_model_name_or_path", …}` |
//! | LoRA tensors | `encoder.layer.0.attention.self.query.lora_A.weight` | `base_model.model.bert.encoder.layer.0.attention.self.query.lora_A.weight` |
//! | task head | `classifier.weight` | `base_model.model.classifier.weight` (`modules_to_save`) |
//!
//! The module path inside a PEFT key is the Hugging Face model's own: `transformer.` for every
//! GPT-2 model class, `bert.` for the BERT task classes, nothing for a bare `BertModel` (task
//! `FEATURE_EXTRACTION`). A and B have the same shapes in both, (r, d_in) and (d_out, r), for
//! Conv1D and nn.Linear alike. tunelab's LoRA puts one rank and one alpha on every block of the
//! chosen roles; PEFT adapters that do more (per-module ranks, some layers only, DoRA, trained
//! biases) are refused with the field named.

use crate::data::tasks::{Task, TaskShape};
use crate::error::{Error, Result};
use crate::nn::{Arch, Config};
use crate::peft::spec::{LoraConfig, MethodSpec};
use crate::tensor::Float;
use ndarray::ArrayD;
use serde_json::{json, Value};
use std::path::Path;

/// The prefix PEFT puts before the model's own module paths.
pub const KEY_PREFIX: &str = "base_model.model.";

/// Is this `adapter_config.json` PEFT's (it has `peft_type`)?
pub fn is_peft_config(config: &Value) -> bool {
    config.get("peft_type").is_some()
}

fn data_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        line: 0,
        detail: detail.into(),
    }
}

/// The LoRA target role (a short name of [`crate::nn::Role`]) of a tunelab module path, by its
/// Hugging Face name: `h.0.attn.c_attn` → `qkv`, `encoder.layer.0.attention.self.query` → `q`.
pub fn role_of_module(module: &str) -> Option<&'static str> {
    let tail = |s: &str| module.ends_with(s);
    if module.starts_with("h.") {
        return if tail(".attn.c_attn") {
            Some("qkv")
        } else if tail(".attn.c_proj") {
            Some("o")
        } else if tail(".mlp.c_fc") {
            Some("fc")
        } else if tail(".mlp.c_proj") {
            Some("proj")
        } else {
            None
        };
    }
    if module.starts_with("encoder.layer.") {
        return if tail(".attention.self.query") {
            Some("q")
        } else if tail(".attention.self.key") {
            Some("k")
        } else if tail(".attention.self.value") {
            Some("v")
        } else if tail(".attention.output.dense") {
            Some("o")
        } else if tail(".intermediate.dense") {
            Some("fc")
        } else if tail(".output.dense") {
            Some("proj")
        } else {
            None
        };
    }
    None
}

/// A module path of the model, stripped of PEFT's and the model class's prefixes.
fn strip_key(key: &str) -> &str {
    let k = key.strip_prefix(KEY_PREFIX).unwrap_or(key);
    ["transformer.", "bert."]
        .iter()
        .find_map(|p| k.strip_prefix(p))
        .unwrap_or(k)
}

/// Tensors under their names, in file order.
pub type Tensors<F> = Vec<(String, ArrayD<F>)>;

/// A PEFT LoRA adapter in tunelab's terms, from its `adapter_config.json` (`config`, read from
/// `cpath`) and its tensors (`load`, which reads `wpath`, is called once the config checked):
/// the equivalent LoRA spec; `meta` = `{"peft": {"task_type", "base_model_name_or_path"}}`; the
/// tensors under tunelab names (LoRA pairs and `modules_to_save` heads).
pub fn import<F: Float>(
    cpath: &Path,
    config: &Value,
    wpath: &Path,
    load: impl FnOnce() -> Result<Tensors<F>>,
) -> Result<(MethodSpec, Value, Tensors<F>)> {
    let cpath = cpath.to_path_buf();
    let peft_type = config
        .get("peft_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    if peft_type != "LORA" {
        return Err(data_err(
            &cpath,
            format!("peft_type {peft_type:?} is not supported (LORA)"),
        ));
    }
    // Options that change the computation beyond one rank and alpha for all targets.
    let refuse = |key: &str, fine: &dyn Fn(&Value) -> bool| -> Result<()> {
        match config.get(key) {
            Some(v) if !fine(v) => Err(data_err(
                &cpath,
                format!("{key} = {v} is not supported by tunelab's LoRA"),
            )),
            _ => Ok(()),
        }
    };
    let empty = |v: &Value| v.is_null() || v.as_object().is_some_and(|m| m.is_empty());
    let falsy = |v: &Value| v.is_null() || *v == Value::Bool(false);
    refuse("use_dora", &falsy)?;
    refuse("lora_bias", &falsy)?;
    refuse("use_qalora", &falsy)?;
    refuse("bias", &|v| v.is_null() || v == "none")?;
    refuse("rank_pattern", &empty)?;
    refuse("alpha_pattern", &empty)?;
    refuse("layers_to_transform", &Value::is_null)?;
    refuse("layer_replication", &Value::is_null)?;
    refuse("target_parameters", &Value::is_null)?;
    refuse("trainable_token_indices", &Value::is_null)?;
    let num = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| data_err(&cpath, format!("field {key:?} is missing or not a number")))
    };
    let r = num("r")?;
    if r < 1.0 || r.fract() != 0.0 {
        return Err(data_err(
            &cpath,
            format!("r = {r} is not a positive integer"),
        ));
    }

    let file = load()?;
    let mut targets: Vec<&str> = Vec::new();
    let mut tensors = Vec::with_capacity(file.len());
    for (key, value) in file {
        let name = strip_key(&key).to_string();
        let module = name
            .strip_suffix(".lora_A.weight")
            .or_else(|| name.strip_suffix(".lora_B.weight"));
        if let Some(module) = module {
            let role = role_of_module(module).ok_or_else(|| {
                data_err(
                    wpath,
                    format!(
                        "tensor {key}: LoRA on {module} is not supported (tunelab's LoRA targets \
                         the attention and MLP Linears of the blocks)"
                    ),
                )
            })?;
            if !targets.contains(&role) {
                targets.push(role);
            }
        } else if name.contains(".lora_") {
            return Err(data_err(
                wpath,
                format!("tensor {key} is not a LoRA A or B matrix tunelab knows"),
            ));
        }
        tensors.push((name, value));
    }
    if targets.is_empty() {
        return Err(data_err(wpath, "no lora_A / lora_B tensors"));
    }
    targets.sort_by_key(|t| {
        ["qkv", "q", "k", "v", "o", "fc", "proj"]
            .iter()
            .position(|x| x == t)
    });
    let lora = LoraConfig {
        r: r as usize,
        alpha: num("lora_alpha")?,
        dropout: config
            .get("lora_dropout")
            .and_then(Value::as_f64)
            .unwrap_or(0.0),
        targets: targets.iter().map(|t| t.to_string()).collect(),
        rslora: config
            .get("use_rslora")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        lr_ratio_b: 1.0,
    };
    let meta = json!({
        "peft": {
            "task_type": config.get("task_type").cloned().unwrap_or(Value::Null),
            "base_model_name_or_path": config.get("base_model_name_or_path").cloned().unwrap_or(Value::Null),
        },
    });
    Ok((MethodSpec::Lora(lora), meta, tensors))
}

/// PEFT's `task_type` for a tunelab adapter's `meta`: from its task, else from the task type
/// of the PEFT adapter it was imported from, else `FEATURE_EXTRACTION`.
fn task_type(arch: Arch, meta: &Value) -> String {
    let task = meta
        .get("task")
        .and_then(Value::as_str)
        .and_then(|t| Task::from_name(t).ok());
    let kind = match task.map(|t| t.shape()) {
        Some(TaskShape::Classification { .. }) => "SEQ_CLS",
        Some(TaskShape::Tagging { .. }) => "TOKEN_CLS",
        Some(TaskShape::Span) => "QUESTION_ANS",
        Some(TaskShape::Generation) if arch == Arch::Gpt => "CAUSAL_LM",
        Some(_) => "FEATURE_EXTRACTION",
        None => meta
            .pointer("/peft/task_type")
            .and_then(Value::as_str)
            .unwrap_or("FEATURE_EXTRACTION"),
    };
    kind.to_string()
}

/// The prefix of module paths in the model class PEFT wraps for `task_type`: `transformer.` for
/// every GPT-2 class, `bert.` for BERT's task classes, nothing for a bare `BertModel`.
fn class_prefix(arch: Arch, task_type: &str) -> &'static str {
    match (arch, task_type) {
        (Arch::Gpt, _) => "transformer.",
        (Arch::Bert, "FEATURE_EXTRACTION") => "",
        (Arch::Bert, _) => "bert.",
    }
}

/// PEFT `target_modules` for tunelab roles: module-name suffixes, or a regular expression where
/// a suffix would catch more (BERT's `output.dense` without `attention.output.dense`).
fn target_modules(arch: Arch, roles: &[String]) -> Value {
    let has = |r: &str| roles.iter().any(|x| x == r);
    if arch == Arch::Bert && has("proj") && !has("o") {
        let mut alts: Vec<&str> = Vec::new();
        for (role, path) in [
            ("q", r"attention\.self\.query"),
            ("k", r"attention\.self\.key"),
            ("v", r"attention\.self\.value"),
            ("fc", r"intermediate\.dense"),
            ("proj", r"output\.dense"),
        ] {
            if has(role) {
                alts.push(path);
            }
        }
        return json!(format!(r".*encoder\.layer\.\d+\.({})", alts.join("|")));
    }
    let mut out: Vec<&str> = Vec::new();
    for role in roles {
        let names: &[&str] = match (arch, role.as_str(), has("o") && has("proj")) {
            (Arch::Gpt, "qkv", _) => &["c_attn"],
            (Arch::Gpt, "o" | "proj", true) => &["c_proj"],
            (Arch::Gpt, "o", false) => &["attn.c_proj"],
            (Arch::Gpt, "proj", false) => &["mlp.c_proj"],
            (Arch::Gpt, "fc", _) => &["c_fc"],
            (Arch::Bert, "q", _) => &["query"],
            (Arch::Bert, "k", _) => &["key"],
            (Arch::Bert, "v", _) => &["value"],
            (Arch::Bert, "o" | "proj", true) => &["output.dense"],
            (Arch::Bert, "o", false) => &["attention.output.dense"],
            (Arch::Bert, "fc", _) => &["intermediate.dense"],
            _ => &[],
        };
        for n in names {
            if !out.contains(n) {
                out.push(n);
            }
        }
    }
    json!(out)
}

/// A tunelab LoRA adapter (`spec`, `meta` and `tensors` read from `cpath` and `wpath`, trained
/// on the base whose config is `base`) in PEFT's terms: its `adapter_config.json` and its
/// tensors under PEFT's keys. `base_name` goes into `base_model_name_or_path`.
pub fn export<F: Float>(
    spec: &MethodSpec,
    meta: &Value,
    tensors: Tensors<F>,
    base: &Config,
    base_name: &str,
    cpath: &Path,
    wpath: &Path,
) -> Result<(Value, Tensors<F>)> {
    let MethodSpec::Lora(lora) = spec else {
        return Err(data_err(
            cpath,
            format!(
                "method {} has no PEFT LoRA equivalent (export-peft writes LoRA adapters)",
                spec.name()
            ),
        ));
    };
    if lora
        .targets
        .iter()
        .any(|t| t == "q" || t == "k" || t == "v")
        && base.arch == Arch::Gpt
    {
        return Err(data_err(
            cpath,
            format!(
                "targets {:?}: PEFT cannot put LoRA on part of GPT-2's fused c_attn; train with \
                 --targets qkv (and o, fc, proj) to export",
                lora.targets
            ),
        ));
    }
    let kind = task_type(base.arch, meta);
    let prefix = class_prefix(base.arch, &kind);

    let mut keys = Vec::new();
    let mut heads: Vec<String> = Vec::new();
    for (name, value) in tensors {
        let module = name
            .strip_suffix(".lora_A.weight")
            .or_else(|| name.strip_suffix(".lora_B.weight"));
        let key = match module {
            Some(m) if role_of_module(m).is_some() => format!("{KEY_PREFIX}{prefix}{name}"),
            _ => {
                let head = ["classifier.", "score.", "qa_outputs."]
                    .into_iter()
                    .find(|h| name.starts_with(h))
                    .ok_or_else(|| {
                        data_err(
                            wpath,
                            format!("tensor {name} has no place in a PEFT LoRA adapter"),
                        )
                    })?;
                let module = head.trim_end_matches('.').to_string();
                if !heads.contains(&module) {
                    heads.push(module);
                }
                format!("{KEY_PREFIX}{name}")
            }
        };
        keys.push((key, value));
    }
    let config = json!({
        "peft_type": "LORA",
        "task_type": kind,
        "base_model_name_or_path": base_name,
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "use_rslora": lora.rslora,
        "target_modules": target_modules(base.arch, &lora.targets),
        "modules_to_save": if heads.is_empty() { Value::Null } else { json!(heads) },
        "fan_in_fan_out": base.arch == Arch::Gpt,
        "bias": "none",
        "init_lora_weights": true,
        "inference_mode": true,
        "use_dora": false,
        "rank_pattern": {},
        "alpha_pattern": {},
    });
    Ok((config, keys))
}
