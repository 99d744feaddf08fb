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
//!
//! LoRA-FA exports as a plain LoRA adapter (PEFT saves it so). PiSSA and OLoRA adapters are
//! already plain LoRA when tunelab saves them ([`crate::peft::lora`]), as PEFT's
//! `path_initial_model_for_weight_conversion` makes them.
//!
//! **AdaLoRA** (`peft_type` "ADALORA") keeps its triplets under `…lora_A`, `…lora_E`, `…lora_B`
//! (parameters, no `.weight`) and its allocation in `rank_pattern` (`{"transformer.h.0.attn.
//! c_attn.lora_E": [true, false, …]}`, init_r flags per module). PEFT saves only the kept
//! triplets (A (k, in), E (k, 1), B (out, k)); tunelab holds all init_r with the dropped λ at 0
//! (the same update, since PEFT's scaling divides by init_r either way), so import puts zero
//! rows and columns back where the pattern says false, and export drops them again.

use crate::data::tasks::{Task, TaskShape};
use crate::error::{Error, Result};
use crate::nn::{Arch, Config};
use crate::peft::spec::{AdaLoraConfig, LoraConfig, MethodSpec};
use crate::tensor::Float;
use ndarray::{ArrayD, Axis};
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
    let adalora = match peft_type {
        "LORA" => false,
        "ADALORA" => true,
        _ => {
            return Err(data_err(
                &cpath,
                format!(
                    "peft_type {peft_type:?} is not supported (LORA, ADALORA, LOHA, LOKR, VERA)"
                ),
            ))
        }
    };
    check_keys(&cpath, config, adalora)?;
    let num = |key: &str| {
        config
            .get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| data_err(&cpath, format!("field {key:?} is missing or not a number")))
    };
    let count = |key: &str| -> Result<usize> {
        let r = num(key)?;
        if !(r >= 0.0 && r.fract() == 0.0 && r <= u32::MAX as f64) {
            return Err(data_err(
                &cpath,
                format!("{key} = {r} is not a whole number (at most 2^32 - 1)"),
            ));
        }
        Ok(r as usize)
    };
    // AdaLoRA's rank is init_r (PEFT ignores its `r`).
    let r = count(if adalora { "init_r" } else { "r" })?;
    if r == 0 {
        return Err(data_err(&cpath, "the rank is 0: it must be at least 1"));
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
    if adalora {
        let real = |key: &str| num(key);
        let total_step = match config.get("total_step") {
            None | Some(Value::Null) => None,
            Some(_) => Some(count("total_step")?),
        };
        let ada = AdaLoraConfig {
            init_r: r,
            target_r: count("target_r")?,
            alpha,
            dropout,
            targets: Vec::new(),
            tinit: count("tinit")?,
            tfinal: count("tfinal")?,
            delta_t: count("deltaT")?,
            beta1: real("beta1")?,
            beta2: real("beta2")?,
            orth_reg_weight: real("orth_reg_weight")?,
            total_step,
            rank_pattern: rank_pattern_of(&cpath, config, r)?,
        };
        return import_adalora(&cpath, config, wpath, load()?, ada);
    }
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
        r,
        alpha,
        dropout,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        rslora,
        lr_ratio_b: 1.0,
        init_lora_weights: Default::default(),
    };
    Ok((MethodSpec::Lora(lora), peft_meta(config), tensors))
}

/// `meta` of an imported adapter: PEFT's task type and base model.
fn peft_meta(config: &Value) -> Value {
    json!({
        "peft": {
            "task_type": config.get("task_type").cloned().unwrap_or(Value::Null),
            "base_model_name_or_path": config.get("base_model_name_or_path").cloned().unwrap_or(Value::Null),
        },
    })
}

/// AdaLoRA's `rank_pattern` by tunelab module path (`transformer.h.0.attn.c_attn.lora_E` →
/// `h.0.attn.c_attn`), each a list of init_r flags; `None` when absent or empty.
fn rank_pattern_of(
    cpath: &Path,
    config: &Value,
    init_r: usize,
) -> Result<Option<BTreeMap<String, Vec<bool>>>> {
    let map = match config.get("rank_pattern") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(m)) if m.is_empty() => return Ok(None),
        Some(Value::Object(m)) => m,
        Some(v) => {
            return Err(data_err(
                cpath,
                format!("rank_pattern = {v} is not an object"),
            ))
        }
    };
    let mut out = BTreeMap::new();
    for (key, v) in map {
        let module = strip_key(key);
        let module = module.strip_suffix(".lora_E").unwrap_or(module);
        let flags: Option<Vec<bool>> = v
            .as_array()
            .and_then(|a| a.iter().map(Value::as_bool).collect());
        match flags {
            Some(f) if f.len() == init_r => {
                out.insert(module.to_string(), f);
            }
            _ => {
                return Err(data_err(
                    cpath,
                    format!("rank_pattern[{key:?}] is not a list of init_r = {init_r} true/false"),
                ))
            }
        }
    }
    Ok(Some(out))
}

/// A PEFT AdaLoRA adapter's tensors under tunelab's names, each expanded back to init_r
/// triplets (zeros where the rank pattern dropped one); the spec completed with its targets.
fn import_adalora<F: Float>(
    cpath: &Path,
    config: &Value,
    wpath: &Path,
    file: Tensors<F>,
    mut ada: AdaLoraConfig,
) -> Result<(MethodSpec, Value, Tensors<F>)> {
    let r = ada.init_r;
    let mut targets: Vec<&str> = Vec::new();
    let mut modules: Vec<String> = Vec::new();
    let mut tensors = Vec::with_capacity(file.len());
    for (key, value) in file {
        let name = strip_key(&key).to_string();
        let Some((module, part)) = [".lora_A", ".lora_E", ".lora_B"]
            .iter()
            .find_map(|p| name.strip_suffix(p).map(|m| (m.to_string(), *p)))
        else {
            if name.contains(".lora_") {
                return Err(data_err(
                    wpath,
                    format!("tensor {key} is not an AdaLoRA A, E or B tensor tunelab knows"),
                ));
            }
            tensors.push((name, value));
            continue;
        };
        let role = role_of_module(&module).ok_or_else(|| {
            data_err(
                wpath,
                format!("tensor {key}: AdaLoRA on {module} is not supported (tunelab targets the attention and MLP Linears of the blocks)"),
            )
        })?;
        if !targets.contains(&role) {
            targets.push(role);
        }
        if !modules.contains(&module) {
            modules.push(module.clone());
        }
        // The rank axis: rows of A and E, columns of B.
        let axis = if part == ".lora_B" { 1 } else { 0 };
        let kept: Vec<usize> = match ada.rank_pattern.as_ref().and_then(|p| p.get(&module)) {
            Some(flags) => flags
                .iter()
                .enumerate()
                .filter(|(_, &k)| k)
                .map(|(i, _)| i)
                .collect(),
            None => (0..r).collect(),
        };
        let shape = value.shape().to_vec();
        if shape.len() != 2 || shape[axis] != kept.len() || (part == ".lora_E" && shape[1] != 1) {
            return Err(data_err(
                wpath,
                format!(
                    "tensor {key} has shape {shape:?}: {} of init_r = {r} triplets are kept there, \
                     so its rank axis ({}) must be {}",
                    kept.len(),
                    if axis == 0 { "rows" } else { "columns" },
                    kept.len()
                ),
            ));
        }
        let mut full_shape = shape.clone();
        full_shape[axis] = r;
        let mut full = ArrayD::<F>::zeros(full_shape);
        for (j, &i) in kept.iter().enumerate() {
            full.index_axis_mut(Axis(axis), i)
                .assign(&value.index_axis(Axis(axis), j));
        }
        tensors.push((format!("{module}{part}"), full));
    }
    if targets.is_empty() {
        return Err(data_err(wpath, "no lora_A / lora_E / lora_B tensors"));
    }
    if let Some(p) = &ada.rank_pattern {
        if let Some(m) = p.keys().find(|m| !modules.contains(m)) {
            return Err(data_err(
                cpath,
                format!("rank_pattern names {m}, which has no AdaLoRA tensors in the adapter"),
            ));
        }
    }
    targets.sort_by_key(|t| {
        ["qkv", "q", "k", "v", "o", "fc", "proj"]
            .iter()
            .position(|x| x == t)
    });
    check_targets(cpath, config, &modules, &targets)?;
    ada.targets = targets.iter().map(|t| t.to_string()).collect();
    Ok((MethodSpec::Adalora(ada), peft_meta(config), tensors))
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

/// The AdaLoRA keys tunelab honours besides [`HONOURED`].
pub const HONOURED_ADALORA: &[&str] = &[
    "init_r",
    "target_r",
    "tinit",
    "tfinal",
    "deltaT",
    "beta1",
    "beta2",
    "orth_reg_weight",
    "total_step",
    "rank_pattern",
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
fn check_keys(cpath: &Path, config: &Value, adalora: bool) -> Result<()> {
    let Some(map) = config.as_object() else {
        return Err(data_err(cpath, "the adapter config is not a JSON object"));
    };
    for (key, v) in map {
        let key = key.as_str();
        if HONOURED.contains(&key) || (adalora && HONOURED_ADALORA.contains(&key)) {
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
    let (lora, targets) = match spec {
        MethodSpec::Lora(c) | MethodSpec::LoraFa(c) => (Some(c), &c.targets),
        MethodSpec::Adalora(c) => (None, &c.targets),
        _ => {
            return Err(data_err(
                cpath,
                format!(
                    "method {} has no PEFT equivalent (export-peft writes LoRA, LoRA-FA and \
                     AdaLoRA adapters)",
                    spec.name()
                ),
            ))
        }
    };
    if targets.iter().any(|t| t == "q" || t == "k" || t == "v") && base.arch == Arch::Gpt {
        return Err(data_err(
            cpath,
            format!(
                "targets {targets:?}: PEFT cannot put LoRA on part of GPT-2's fused c_attn; train \
                 with --targets qkv (and o, fc, proj) to export"
            ),
        ));
    }
    let kind = task_type(base.arch, meta);
    let prefix = class_prefix(base.arch, &kind);
    let Some(lora) = lora else {
        let MethodSpec::Adalora(ada) = spec else {
            unreachable!("matched above")
        };
        return export_adalora(ada, tensors, base, base_name, &kind, prefix, cpath, wpath);
    };
    if lora.init_lora_weights.changes_base() {
        return Err(data_err(
            cpath,
            format!(
                "init_lora_weights = {:?}: tunelab saves PiSSA and OLoRA converted to plain LoRA; \
                 this config was not written by it",
                lora.init_lora_weights.name()
            ),
        ));
    }
    let (keys, heads) = peft_keys(
        tensors,
        &[".lora_A.weight", ".lora_B.weight"],
        prefix,
        "PEFT adapter",
        wpath,
    )?;
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

/// Tensors under PEFT's keys: a method tensor (a module name ending in one of `suffixes`) under
/// `base_model.model.<prefix>`, a task head under `base_model.model.` (listed in the returned
/// `modules_to_save`); anything else is an error naming it and `adapter` (e.g. "PEFT adapter").
pub(super) fn peft_keys<F: Float>(
    tensors: Tensors<F>,
    suffixes: &[&str],
    prefix: &str,
    adapter: &str,
    wpath: &Path,
) -> Result<(Tensors<F>, Vec<String>)> {
    let mut keys = Vec::new();
    let mut heads: Vec<String> = Vec::new();
    for (name, value) in tensors {
        let module = suffixes.iter().find_map(|s| name.strip_suffix(s));
        let key = match module {
            Some(m) if role_of_module(m).is_some() => format!("{KEY_PREFIX}{prefix}{name}"),
            _ => {
                let head = ["classifier.", "score.", "qa_outputs."]
                    .into_iter()
                    .find(|h| name.starts_with(h))
                    .ok_or_else(|| {
                        data_err(wpath, format!("tensor {name} has no place in a {adapter}"))
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
    Ok((keys, heads))
}

/// A tunelab AdaLoRA adapter in PEFT's terms: only the triplets its rank pattern keeps, and the
/// pattern under PEFT's keys.
#[allow(clippy::too_many_arguments)]
fn export_adalora<F: Float>(
    ada: &AdaLoraConfig,
    tensors: Tensors<F>,
    base: &Config,
    base_name: &str,
    kind: &str,
    prefix: &str,
    cpath: &Path,
    wpath: &Path,
) -> Result<(Value, Tensors<F>)> {
    let Some(total_step) = ada.total_step else {
        return Err(data_err(
            cpath,
            "total_step is unknown (the adapter was never trained): PEFT's AdaLoraConfig requires it",
        ));
    };
    let mut kept = Vec::with_capacity(tensors.len());
    for (name, value) in tensors {
        let part = [".lora_A", ".lora_E", ".lora_B"]
            .into_iter()
            .find_map(|p| name.strip_suffix(p).map(|m| (m.to_string(), p)));
        let value = match (part, &ada.rank_pattern) {
            (Some((module, part)), Some(pattern)) => match pattern.get(&module) {
                Some(flags) => {
                    let axis = if part == ".lora_B" { 1 } else { 0 };
                    let idx: Vec<usize> = flags
                        .iter()
                        .enumerate()
                        .filter(|(_, &k)| k)
                        .map(|(i, _)| i)
                        .collect();
                    if value.shape().get(axis) != Some(&flags.len()) {
                        return Err(data_err(
                            wpath,
                            format!(
                                "tensor {name} has shape {:?}, its rank pattern {} entries",
                                value.shape(),
                                flags.len()
                            ),
                        ));
                    }
                    value.select(Axis(axis), &idx)
                }
                None => value,
            },
            _ => value,
        };
        kept.push((name, value));
    }
    let suffixes = [".lora_A", ".lora_E", ".lora_B"];
    let (keys, heads) = peft_keys(kept, &suffixes, prefix, "PEFT adapter", wpath)?;
    let pattern: serde_json::Map<String, Value> = ada
        .rank_pattern
        .iter()
        .flatten()
        .map(|(m, flags)| (format!("{prefix}{m}.lora_E"), json!(flags)))
        .collect();
    let config = json!({
        "peft_type": "ADALORA",
        "task_type": kind,
        "base_model_name_or_path": base_name,
        "init_r": ada.init_r,
        "target_r": ada.target_r,
        "lora_alpha": ada.alpha,
        "lora_dropout": ada.dropout,
        "target_modules": target_modules(base.arch, &ada.targets),
        "modules_to_save": if heads.is_empty() { Value::Null } else { json!(heads) },
        "fan_in_fan_out": base.arch == Arch::Gpt,
        "bias": "none",
        "tinit": ada.tinit,
        "tfinal": ada.tfinal,
        "deltaT": ada.delta_t,
        "beta1": ada.beta1,
        "beta2": ada.beta2,
        "orth_reg_weight": ada.orth_reg_weight,
        "total_step": total_step,
        "rank_pattern": if pattern.is_empty() { Value::Null } else { Value::Object(pattern) },
        "init_lora_weights": true,
        "inference_mode": true,
        "use_dora": false,
    });
    Ok((config, keys))
}
