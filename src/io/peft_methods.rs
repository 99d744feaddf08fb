//! PEFT's dialect of LoHa, LoKr and VeRA adapters ([`super::peft`] holds LoRA's and the
//! shared name maps): `peft_type` "LOHA", "LOKR", "VERA", their config fields, and their
//! tensors' keys. No file access here; [`super::adapter`] calls [`import`] and [`export`] for
//! these methods.
//!
//! | | tunelab | PEFT |
//! |---|---|---|
//! | LoHa | `{"method": "loha", "r", "alpha", "targets"}`, `….query.hada_w1_a` | `{"peft_type": "LOHA", "r", "alpha", "target_modules", "rank_dropout", …}`, `base_model.model.bert.….query.hada_w1_a` |
//! | LoKr | `+ "decompose_both", "decompose_factor"`, `….lokr_w1`, `….lokr_w2_a`, … | the same fields, `….lokr_w1`, … |
//! | VeRA | `{"method": "vera", "r", "targets", "d_initial", "projection_prng_key", "dropout"}`, `….vera_lambda_b`, `vera_A`, `vera_B` | `{"peft_type": "VERA", …, "vera_dropout", "save_projection"}`, `….vera_lambda_b`, `base_model.vera_A`, `base_model.vera_B` |
//!
//! The factors have the same shapes in both (nn.Linear's (out, in) orientation). PEFT's LoHa and
//! LoKr (LyCORIS layers) take nn.Linear and torch's Conv layers, not GPT-2's Conv1D, so a GPT-2
//! LoHa or LoKr adapter has no PEFT form and its export is refused; VeRA takes both. A VeRA
//! adapter must hold its projections (`save_projection: true`, PEFT's default): tunelab cannot
//! draw torch's random numbers. As for LoRA, an option tunelab does not implement must be off
//! (`rank_dropout`, `module_dropout`, `rank_pattern`, `layers_to_transform`, …), or the file is
//! refused naming the field.

use super::peft::{
    check_targets, class_prefix, data_err, is_empty, peft_keys, role_of_module, strip_key,
    target_modules, task_type, Tensors,
};
use crate::error::Result;
use crate::nn::{Arch, Config};
use crate::peft::spec::{LohaConfig, LokrConfig, MethodSpec, VeraConfig};
use crate::tensor::Float;
use serde_json::{json, Value};
use std::path::Path;

/// The `peft_type`s this module reads.
pub const PEFT_TYPES: &[&str] = &["LOHA", "LOKR", "VERA"];

/// The per-module tensors of each method, as PEFT names them (the key's last component).
fn module_params(peft_type: &str) -> &'static [&'static str] {
    match peft_type {
        "LOHA" => &["hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"],
        "LOKR" => &[
            "lokr_w1",
            "lokr_w1_a",
            "lokr_w1_b",
            "lokr_w2",
            "lokr_w2_a",
            "lokr_w2_b",
        ],
        _ => &["vera_lambda_b", "vera_lambda_d"],
    }
}

/// The config keys whose meaning tunelab computes, per `peft_type`.
fn honoured(peft_type: &str) -> &'static [&'static str] {
    match peft_type {
        "LOHA" => &[
            "peft_type",
            "r",
            "alpha",
            "target_modules",
            "modules_to_save",
            "task_type",
            "base_model_name_or_path",
        ],
        "LOKR" => &[
            "peft_type",
            "r",
            "alpha",
            "decompose_both",
            "decompose_factor",
            "target_modules",
            "modules_to_save",
            "task_type",
            "base_model_name_or_path",
        ],
        _ => &[
            "peft_type",
            "r",
            "projection_prng_key",
            "save_projection",
            "d_initial",
            "vera_dropout",
            "fan_in_fan_out",
            "target_modules",
            "modules_to_save",
            "task_type",
            "base_model_name_or_path",
        ],
    }
}

/// Keys with no effect on what a loaded adapter computes: bookkeeping, the initialisation (the
/// tensors come from the file), Conv-only options, and `rank_dropout_scale` (which matters only
/// with a rank dropout, refused unless 0).
const NO_EFFECT: &[&str] = &[
    "revision",
    "inference_mode",
    "auto_mapping",
    "peft_version",
    "init_weights",
    "use_effective_conv2d",
    "rank_dropout_scale",
];

/// Keys tunelab does not implement, with the value that means "off" (null also does).
fn off_value(key: &str) -> Option<Value> {
    Some(match key {
        "rank_dropout" | "module_dropout" => json!(0.0),
        "bias" => json!("none"),
        "rank_pattern" | "alpha_pattern" => json!({}),
        "layers_to_transform" | "layers_pattern" | "exclude_modules" => Value::Null,
        _ => return None,
    })
}

/// Is `v` the "off" value `off` (numbers compared as numbers, empties as empty)?
fn is_off(v: &Value, off: &Value) -> bool {
    v.is_null()
        || v == off
        || (v.as_f64().is_some() && v.as_f64() == off.as_f64())
        || (is_empty(v) && is_empty(off))
}

/// Refuses, by name, every key whose value tunelab would silently ignore (as LoRA's import).
fn check_keys(cpath: &Path, config: &Value, peft_type: &str) -> Result<()> {
    let Some(map) = config.as_object() else {
        return Err(data_err(cpath, "the adapter config is not a JSON object"));
    };
    let honoured = honoured(peft_type);
    for (key, v) in map {
        let key = key.as_str();
        if honoured.contains(&key) || NO_EFFECT.contains(&key) {
            continue;
        }
        let (refused, what) = match off_value(key) {
            Some(off) => (!is_off(v, &off), "is not supported by tunelab"),
            None => (!is_empty(v), "is not an option tunelab knows"),
        };
        if refused {
            return Err(data_err(
                cpath,
                format!(
                    "{key} = {v} {what} for {peft_type} (it honours {}; other options must be off)",
                    honoured.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// A PEFT LoHa, LoKr or VeRA adapter in tunelab's terms: the spec, `meta` =
/// `{"peft": {"task_type", "base_model_name_or_path"}}` and the tensors under tunelab names
/// (as [`super::peft::import`] for LoRA).
pub fn import<F: Float>(
    cpath: &Path,
    config: &Value,
    wpath: &Path,
    load: impl FnOnce() -> Result<Tensors<F>>,
) -> Result<(MethodSpec, Value, Tensors<F>)> {
    let peft_type = config
        .get("peft_type")
        .and_then(Value::as_str)
        .unwrap_or("");
    check_keys(cpath, config, peft_type)?;
    let field = |key: &str| config.get(key).filter(|v| !v.is_null());
    let num = |key: &str, default: Option<f64>| match field(key) {
        None => default
            .ok_or_else(|| data_err(cpath, format!("field {key:?} is missing or not a number"))),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| data_err(cpath, format!("{key} = {v} is not a finite number"))),
    };
    let int = |key: &str, default: Option<f64>, min: f64| {
        let x = num(key, default)?;
        if x.fract() != 0.0 || x < min || x > u32::MAX as f64 {
            return Err(data_err(
                cpath,
                format!("{key} = {x} is not an integer in [{min}, 2^32 - 1]"),
            ));
        }
        Ok(x)
    };
    let flag = |key: &str, default: bool| match field(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(data_err(cpath, format!("{key} = {v} is not true or false"))),
    };
    let r = int("r", None, 1.0)? as usize;

    let file = load()?;
    let params = module_params(peft_type);
    let mut roles: Vec<&str> = Vec::new();
    let mut modules: Vec<String> = Vec::new();
    let mut tensors = Vec::with_capacity(file.len());
    for (key, value) in file {
        let name = match key.as_str() {
            "base_model.vera_A" if peft_type == "VERA" => "vera_A".to_string(),
            "base_model.vera_B" if peft_type == "VERA" => "vera_B".to_string(),
            _ => strip_key(&key).to_string(),
        };
        let module = params
            .iter()
            .find_map(|p| name.strip_suffix(&format!(".{p}")));
        if let Some(module) = module {
            let role = role_of_module(module).ok_or_else(|| {
                data_err(
                    wpath,
                    format!(
                        "tensor {key}: {peft_type} on {module} is not supported (tunelab puts it \
                         on the attention and MLP Linears of the blocks)"
                    ),
                )
            })?;
            if !roles.contains(&role) {
                roles.push(role);
            }
            if !modules.iter().any(|m| m == module) {
                modules.push(module.to_string());
            }
        } else if [".hada_", ".lokr_", ".vera_"]
            .iter()
            .any(|p| name.contains(p))
        {
            return Err(data_err(
                wpath,
                format!("tensor {key} is not a {peft_type} tensor tunelab knows"),
            ));
        }
        tensors.push((name, value));
    }
    if roles.is_empty() {
        return Err(data_err(
            wpath,
            format!("no {} tensors", params.join(" / ")),
        ));
    }
    roles.sort_by_key(|t| {
        ["qkv", "q", "k", "v", "o", "fc", "proj"]
            .iter()
            .position(|x| x == t)
    });
    check_targets(cpath, config, &modules, &roles)?;
    let targets: Vec<String> = roles.iter().map(|t| t.to_string()).collect();
    let spec = match peft_type {
        "LOHA" => MethodSpec::Loha(LohaConfig {
            r,
            alpha: num("alpha", None)?,
            targets,
        }),
        "LOKR" => {
            let factor = num("decompose_factor", Some(-1.0))?;
            if factor.fract() != 0.0
                || !(factor == -1.0 || (1.0..=u32::MAX as f64).contains(&factor))
            {
                return Err(data_err(
                    cpath,
                    format!("decompose_factor = {factor} is neither -1 nor a positive integer"),
                ));
            }
            MethodSpec::Lokr(LokrConfig {
                r,
                alpha: num("alpha", None)?,
                targets,
                decompose_both: flag("decompose_both", false)?,
                decompose_factor: factor as i64,
            })
        }
        _ => {
            if !flag("save_projection", true)? {
                return Err(data_err(
                    cpath,
                    "save_projection = false: the adapter lacks vera_A and vera_B, which PEFT \
                     redraws from torch's generator and tunelab cannot",
                ));
            }
            for p in ["vera_A", "vera_B"] {
                if !tensors.iter().any(|(n, _)| n == p) {
                    return Err(data_err(
                        wpath,
                        format!("tensor base_model.{p} (the shared projection) is missing"),
                    ));
                }
            }
            let dropout = num("vera_dropout", Some(0.0))?;
            if !(0.0..1.0).contains(&dropout) {
                return Err(data_err(
                    cpath,
                    format!("vera_dropout = {dropout} is not a probability in [0, 1)"),
                ));
            }
            let key = num("projection_prng_key", Some(0.0))?;
            if key.fract() != 0.0 || !(0.0..=u64::MAX as f64).contains(&key) {
                return Err(data_err(
                    cpath,
                    format!("projection_prng_key = {key} is not a non-negative integer"),
                ));
            }
            MethodSpec::Vera(VeraConfig {
                r,
                targets,
                d_initial: num("d_initial", Some(0.1))?,
                projection_prng_key: key as u64,
                dropout,
            })
        }
    };
    let meta = json!({
        "peft": {
            "task_type": config.get("task_type").cloned().unwrap_or(Value::Null),
            "base_model_name_or_path": config.get("base_model_name_or_path").cloned().unwrap_or(Value::Null),
        },
    });
    Ok((spec, meta, tensors))
}

/// A tunelab LoHa, LoKr or VeRA adapter in PEFT's terms: its `adapter_config.json`, with the
/// fields PEFT 0.21 writes, and its tensors under PEFT's keys (as [`super::peft::export`]).
pub fn export<F: Float>(
    spec: &MethodSpec,
    meta: &Value,
    tensors: Tensors<F>,
    base: &Config,
    base_name: &str,
    cpath: &Path,
    wpath: &Path,
) -> Result<(Value, Tensors<F>)> {
    let (peft_type, targets, fields) = match spec {
        MethodSpec::Loha(c) => ("LOHA", &c.targets, lycoris_fields(c.r, c.alpha)),
        MethodSpec::Lokr(c) => {
            let mut f = lycoris_fields(c.r, c.alpha);
            f.extend([
                ("decompose_both", json!(c.decompose_both)),
                ("decompose_factor", json!(c.decompose_factor)),
                ("rank_dropout_scale", json!(false)),
            ]);
            ("LOKR", &c.targets, f)
        }
        MethodSpec::Vera(c) => (
            "VERA",
            &c.targets,
            vec![
                ("r", json!(c.r)),
                ("projection_prng_key", json!(c.projection_prng_key)),
                ("save_projection", json!(true)),
                ("d_initial", json!(c.d_initial)),
                ("vera_dropout", json!(c.dropout)),
                ("fan_in_fan_out", json!(base.arch == Arch::Gpt)),
                ("bias", json!("none")),
            ],
        ),
        other => {
            return Err(data_err(
                cpath,
                format!("method {} is not LoHa, LoKr or VeRA", other.name()),
            ))
        }
    };
    if base.arch == Arch::Gpt && peft_type != "VERA" {
        return Err(data_err(
            cpath,
            format!(
                "method {}: PEFT's {peft_type} takes nn.Linear layers, not GPT-2's Conv1D, so a \
                 GPT-2 adapter of it cannot be loaded by PEFT",
                spec.name()
            ),
        ));
    }
    if base.arch == Arch::Gpt && targets.iter().any(|t| t == "q" || t == "k" || t == "v") {
        return Err(data_err(
            cpath,
            format!(
                "targets {targets:?}: PEFT cannot put {peft_type} on part of GPT-2's fused \
                 c_attn; train with --targets qkv (and o, fc, proj) to export"
            ),
        ));
    }
    let kind = task_type(base.arch, meta);
    let prefix = class_prefix(base.arch, &kind);
    // VeRA's shared projections sit at the model's top, outside any module.
    let (shared, tensors): (Tensors<F>, Tensors<F>) = tensors
        .into_iter()
        .partition(|(name, _)| peft_type == "VERA" && (name == "vera_A" || name == "vera_B"));
    let suffixes: Vec<String> = module_params(peft_type)
        .iter()
        .map(|p| format!(".{p}"))
        .collect();
    let suffixes: Vec<&str> = suffixes.iter().map(String::as_str).collect();
    let adapter = format!("PEFT {peft_type} adapter");
    let (mut keys, heads) = peft_keys(tensors, &suffixes, prefix, &adapter, wpath)?;
    keys.extend(
        shared
            .into_iter()
            .map(|(name, value)| (format!("base_model.{name}"), value)),
    );
    let mut config = json!({
        "peft_type": peft_type,
        "task_type": kind,
        "base_model_name_or_path": base_name,
        "target_modules": target_modules(base.arch, targets),
        "modules_to_save": if heads.is_empty() { Value::Null } else { json!(heads) },
        "auto_mapping": null,
        "inference_mode": true,
        "init_weights": true,
        "layers_pattern": null,
        "layers_to_transform": null,
        "revision": null,
    });
    let map = config.as_object_mut().expect("an object");
    for (k, v) in fields {
        map.insert(k.to_string(), v);
    }
    Ok((config, keys))
}

/// The fields LoHa and LoKr share (PEFT's `LycorisConfig`).
fn lycoris_fields(r: usize, alpha: f64) -> Vec<(&'static str, Value)> {
    vec![
        ("r", json!(r)),
        ("alpha", json!(alpha)),
        ("rank_dropout", json!(0.0)),
        ("module_dropout", json!(0.0)),
        ("rank_pattern", json!({})),
        ("alpha_pattern", json!({})),
        ("exclude_modules", Value::Null),
        ("use_effective_conv2d", json!(false)),
    ]
}
