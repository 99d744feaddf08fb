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
//! biases) are refused with the field named. LoHa, LoKr and VeRA adapters (`peft_type` LOHA,
//! LOKR, VERA) are [`super::peft_methods`]'s, which uses this module's name maps;
//! [`super::adapter`] picks the module by `peft_type` or method.

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

pub(super) fn data_err(path: &Path, detail: impl Into<String>) -> Error {
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
pub(super) fn strip_key(key: &str) -> &str {
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
            format!("peft_type {peft_type:?} is not supported (LORA, LOHA, LOKR, VERA)"),
        ));
    }
    check_keys(&cpath, config)?;
    let num = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| data_err(&cpath, format!("field {key:?} is missing or not a number")))
    };
    let r = num("r")?;
    if !(r >= 1.0 && r.fract() == 0.0 && r <= u32::MAX as f64) {
        return Err(data_err(
            &cpath,
            format!("r = {r} is not a positive integer (at most 2^32 - 1)"),
        ));
    }
    let alpha = num("lora_alpha")?;
    if !alpha.is_finite() {
        return Err(data_err(
            &cpath,
            format!("lora_alpha = {alpha} is not finite"),
        ));
    }
    let dropout = match config.get("lora_dropout") {
        None | Some(Value::Null) => 0.0,
        Some(v) => match v.as_f64() {
            Some(p) if (0.0..1.0).contains(&p) => p,
            _ => {
                return Err(data_err(
                    &cpath,
                    format!("lora_dropout = {v} is not a probability in [0, 1)"),
                ))
            }
        },
    };
    let rslora = match config.get("use_rslora") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(data_err(
                &cpath,
                format!("use_rslora = {v} is not true or false"),
            ))
        }
    };

    let file = load()?;
    let mut targets: Vec<&str> = Vec::new();
    // The module paths (tunelab's, e.g. `h.0.attn.c_attn`) that hold LoRA tensors.
    let mut modules: Vec<String> = Vec::new();
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
            if !modules.iter().any(|m| m == module) {
                modules.push(module.to_string());
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
    check_targets(&cpath, config, &modules, &targets)?;
    let lora = LoraConfig {
        r: r as usize,
        alpha,
        dropout,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        rslora,
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

/// The `adapter_config.json` keys tunelab honours: what they mean is what tunelab computes.
pub const HONOURED: &[&str] = &[
    "peft_type",
    "r",
    "lora_alpha",
    "lora_dropout",
    "use_rslora",
    "target_modules",
    "modules_to_save",
    "fan_in_fan_out",
    "task_type",
    "base_model_name_or_path",
];

/// Keys that do not change what a loaded adapter computes (bookkeeping, training-time or
/// runtime settings): any value is accepted. `init_lora_weights` is here only for the values
/// that initialise the adapter alone (true, false, "gaussian"); the others change the base
/// weights and are refused in [`check_keys`].
const NO_EFFECT: &[&str] = &[
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
    "megatron_core",
    "qalora_group_size",
    "runtime_config",
    "init_lora_weights",
];

/// Keys tunelab does not implement, with the value that means "off" (null also does).
fn off_value(key: &str) -> Option<Value> {
    Some(match key {
        "use_dora" | "lora_bias" | "use_qalora" | "ensure_weight_tying" => Value::Bool(false),
        "bias" => Value::from("none"),
        "rank_pattern" | "alpha_pattern" | "loftq_config" => json!({}),
        "layers_to_transform"
        | "layers_pattern"
        | "layer_replication"
        | "target_parameters"
        | "trainable_token_indices"
        | "exclude_modules"
        | "megatron_config"
        | "eva_config"
        | "corda_config"
        | "alora_invocation_tokens"
        | "arrow_config" => Value::Null,
        _ => return None,
    })
}

/// Does `v` mean "nothing" (null, false, an empty list, object or string)?
pub(super) fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null | Value::Bool(false) => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Refuses, by name, every key whose value tunelab would silently ignore: a key it does not
/// implement set to anything but its "off" value, and a key it does not know set to anything
/// but an empty value (later PEFT versions add keys, off by default).
fn check_keys(cpath: &Path, config: &Value) -> Result<()> {
    let Some(map) = config.as_object() else {
        return Err(data_err(cpath, "the adapter config is not a JSON object"));
    };
    for (key, v) in map {
        let key = key.as_str();
        if HONOURED.contains(&key) {
            continue;
        }
        if key == "init_lora_weights" && !(v.is_null() || v.is_boolean() || v == "gaussian") {
            return Err(data_err(
                cpath,
                format!(
                    "init_lora_weights = {v} is not supported: that initialisation changes the \
                     base weights, which tunelab's LoRA keeps frozen as loaded"
                ),
            ));
        }
        if NO_EFFECT.contains(&key) {
            continue;
        }
        let refused = match off_value(key) {
            Some(off) => !v.is_null() && *v != off && !(is_empty(v) && is_empty(&off)),
            None => !is_empty(v),
        };
        if refused {
            let what = if off_value(key).is_some() {
                "is not supported by tunelab's LoRA"
            } else {
                "is not a PEFT LoRA option tunelab knows"
            };
            return Err(data_err(
                cpath,
                format!(
                    "{key} = {v} {what} (it honours {}; other options must be off)",
                    HONOURED.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `target_modules` must name exactly the modules whose LoRA tensors the file holds (as PEFT
/// matches them: a module path equal to an entry or ending in `.entry`; or the regular
/// expression tunelab's export writes for those targets), and `fan_in_fan_out` must match their
/// layer type (true for GPT-2's Conv1D, false for BERT's nn.Linear).
pub(super) fn check_targets(
    cpath: &Path,
    config: &Value,
    modules: &[String],
    roles: &[&str],
) -> Result<()> {
    let gpt = modules.iter().any(|m| m.starts_with("h."));
    match config.get("fan_in_fan_out") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(f)) if *f == gpt => {}
        Some(v) => {
            return Err(data_err(
                cpath,
                format!(
                    "fan_in_fan_out = {v} does not fit the adapter's {} layers (PEFT uses true \
                     only for GPT-2's Conv1D, whose weights are stored (in, out))",
                    if gpt {
                        "GPT-2 Conv1D"
                    } else {
                        "BERT nn.Linear"
                    }
                ),
            ))
        }
    }
    let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
    let arch = if gpt { Arch::Gpt } else { Arch::Bert };
    let entries: Vec<&str> = match config.get("target_modules") {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::String(s)) => {
            if *s == target_modules(arch, &roles) {
                return Ok(());
            }
            return Err(data_err(
                cpath,
                format!(
                    "target_modules = {s:?}: tunelab matches a list of module names, or the \
                     pattern it writes itself ({}), not other regular expressions",
                    target_modules(arch, &roles)
                ),
            ));
        }
        Some(Value::Array(list)) => list
            .iter()
            .map(|e| {
                e.as_str().ok_or_else(|| {
                    data_err(cpath, format!("target_modules entry {e} is not a string"))
                })
            })
            .collect::<Result<_>>()?,
        Some(v) => {
            return Err(data_err(
                cpath,
                format!("target_modules = {v} is not a list of module names"),
            ))
        }
    };
    let matches = |m: &str, e: &str| m == e || m.ends_with(&format!(".{e}"));
    for e in &entries {
        if !modules.iter().any(|m| matches(m, e)) {
            return Err(data_err(
                cpath,
                format!(
                    "target_modules entry {e:?} names no module with adapter tensors in the \
                     adapter (it has them on {})",
                    modules.join(", ")
                ),
            ));
        }
    }
    if let Some(m) = modules
        .iter()
        .find(|m| !entries.iter().any(|e| matches(m, e)))
    {
        return Err(data_err(
            cpath,
            format!("the adapter has tensors on {m}, which no target_modules entry names"),
        ));
    }
    Ok(())
}

/// PEFT's `task_type` for a tunelab adapter's `meta`: from its task, else from the task type
/// of the PEFT adapter it was imported from, else `FEATURE_EXTRACTION`.
pub(super) fn task_type(arch: Arch, meta: &Value) -> String {
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
pub(super) fn class_prefix(arch: Arch, task_type: &str) -> &'static str {
    match (arch, task_type) {
        (Arch::Gpt, _) => "transformer.",
        (Arch::Bert, "FEATURE_EXTRACTION") => "",
        (Arch::Bert, _) => "bert.",
    }
}

/// PEFT `target_modules` for tunelab roles: module-name suffixes, or a regular expression where
/// a suffix would catch more (BERT's `output.dense` without `attention.output.dense`).
pub(super) fn target_modules(arch: Arch, roles: &[String]) -> Value {
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
