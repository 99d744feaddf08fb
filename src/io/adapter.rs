//! Adapter directories on disk, in both dialects: tunelab's own and the PEFT library's. This
//! module is the only one that reads or writes them; `crate::peft::store` applies what it
//! reads to a model.
//!
//! An adapter directory holds what a fine-tuning run changed and nothing else, as PEFT writes it:
//!
//! | file | holds |
//! |---|---|
//! | `adapter_config.json` | the [`MethodSpec`] (its fields, tagged by `method`) plus `meta`, free-form JSON (task, labels, base model path, ...) |
//! | `adapter_model.safetensors` | the method's own parameters, the `extra` ones (the task head, PEFT's `modules_to_save`), and every base parameter the method trains in place (full, last-k, BitFit) |
//!
//! A prefix-tuning adapter whose MLP was folded into its table at the end of training records
//! `"reparameterization_folded": true` beside its spec. An `adapter_config.json` with a
//! `peft_type` is PEFT's (LoRA): [`read`] converts it to the equivalent spec and tunelab's
//! tensor names ([`super::peft`] holds that dialect's name maps), and [`export_peft`] writes a
//! tunelab LoRA adapter in PEFT's dialect.

use super::{atomic_write, peft, safetensors};
use crate::error::{Error, Result};
use crate::nn::Config;
use crate::peft::spec::MethodSpec;
use crate::tensor::Float;
use ndarray::{ArrayD, ArrayViewD};
use serde_json::Value;
use std::path::Path;

/// The adapter's config: the method spec and `meta`.
pub const CONFIG: &str = "adapter_config.json";
/// The adapter's tensors.
pub const WEIGHTS: &str = "adapter_model.safetensors";

/// The config key holding the caller's free-form metadata.
const META: &str = "meta";
/// The config key recording that prefix tuning's MLP was folded into the saved table.
const FOLDED: &str = "reparameterization_folded";

/// An adapter as read from its directory, in tunelab's terms whichever dialect wrote it.
pub struct AdapterFiles<F: Float> {
    pub spec: MethodSpec,
    /// The config's `meta` (`null` when absent); for a PEFT adapter
    /// `{"peft": {"task_type", "base_model_name_or_path"}}`.
    pub meta: Value,
    /// The tensors under tunelab's names, in file order.
    pub tensors: Vec<(String, ArrayD<F>)>,
}

fn data_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        line: 0,
        detail: detail.into(),
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// `adapter_config.json` as JSON.
fn read_json(path: &Path) -> Result<Value> {
    let bytes = super::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Data {
        path: path.display().to_string(),
        line: e.line(),
        detail: e.to_string(),
    })
}

/// A tunelab config: the spec and `meta`.
fn parse_own(path: &Path, value: Value) -> Result<(MethodSpec, Value)> {
    let Value::Object(mut config) = value else {
        return Err(data_err(path, "the adapter config is not a JSON object"));
    };
    let meta = config.remove(META).unwrap_or(Value::Null);
    config.remove(FOLDED);
    let spec: MethodSpec = serde_json::from_value(Value::Object(config))
        .map_err(|e| data_err(path, format!("not a method spec: {e}")))?;
    Ok((spec, meta))
}

/// The float tensors of `adapter_model.safetensors`; any other tensor is an error naming it.
fn load_tensors<F: Float>(path: &Path) -> Result<Vec<(String, ArrayD<F>)>> {
    let file = safetensors::load::<F>(path)?;
    if let Some(name) = file.skipped.first() {
        return Err(data_err(
            path,
            format!("tensor {name} is not a float tensor"),
        ));
    }
    Ok(file.tensors)
}

/// Reads an adapter directory of either dialect: the config once, then the tensors.
pub fn read<F: Float>(dir: &Path) -> Result<AdapterFiles<F>> {
    let (cpath, wpath) = (dir.join(CONFIG), dir.join(WEIGHTS));
    let config = read_json(&cpath)?;
    if peft::is_peft_config(&config) {
        let (spec, meta, tensors) = peft::import(&cpath, &config, &wpath, || load_tensors(&wpath))?;
        return Ok(AdapterFiles {
            spec,
            meta,
            tensors,
        });
    }
    let (spec, meta) = parse_own(&cpath, config)?;
    let tensors = load_tensors(&wpath)?;
    Ok(AdapterFiles {
        spec,
        meta,
        tensors,
    })
}

/// Reads only the method spec and `meta` of an adapter directory (of a PEFT adapter, whose
/// targets are known from its tensors' names, the tensors are read too).
pub fn read_config(dir: &Path) -> Result<(MethodSpec, Value)> {
    let cpath = dir.join(CONFIG);
    let config = read_json(&cpath)?;
    if peft::is_peft_config(&config) {
        let wpath = dir.join(WEIGHTS);
        let (spec, meta, _) =
            peft::import::<f32>(&cpath, &config, &wpath, || load_tensors(&wpath))?;
        return Ok((spec, meta));
    }
    parse_own(&cpath, config)
}

/// Writes an adapter into `dir` (created if needed), in tunelab's dialect: `adapter_config.json`
/// with `spec`, `meta` (and the folded mark when `folded`), and `adapter_model.safetensors`
/// with `tensors`. Both files are written atomically.
pub fn write<F: Float>(
    dir: &Path,
    spec: &MethodSpec,
    folded: bool,
    meta: Value,
    tensors: &[(&str, ArrayViewD<'_, F>)],
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let mut config = match serde_json::to_value(spec).expect("a method spec serialises") {
        Value::Object(m) => m,
        _ => unreachable!("an internally tagged enum serialises to an object"),
    };
    if folded {
        config.insert(FOLDED.into(), Value::Bool(true));
    }
    config.insert(META.into(), meta);
    let json = serde_json::to_string_pretty(&Value::Object(config)).expect("JSON serialises");
    atomic_write(&dir.join(CONFIG), json.as_bytes())?;
    safetensors::save(&dir.join(WEIGHTS), tensors, &[("format", "pt")])
}

/// Size in bytes of an adapter's tensor file, `adapter_model.safetensors`.
pub fn file_size(dir: &Path) -> Result<u64> {
    let path = dir.join(WEIGHTS);
    std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|e| io_err(&path, e))
}

/// Writes the LoRA adapter in `adapter` (trained on the base whose config is `base`) as a PEFT
/// adapter directory `out`, loadable with `PeftModel.from_pretrained`. `base_name` goes into
/// `base_model_name_or_path`.
pub fn export_peft(adapter: &Path, base: &Config, base_name: &str, out: &Path) -> Result<()> {
    let files = read::<f32>(adapter)?;
    let (cpath, wpath) = (adapter.join(CONFIG), adapter.join(WEIGHTS));
    let (config, keys) = peft::export(
        &files.spec,
        &files.meta,
        files.tensors,
        base,
        base_name,
        &cpath,
        &wpath,
    )?;
    std::fs::create_dir_all(out).map_err(|e| io_err(out, e))?;
    let text = serde_json::to_string_pretty(&config).expect("JSON serialises");
    atomic_write(&out.join(CONFIG), text.as_bytes())?;
    let views: Vec<(&str, ArrayViewD<'_, f32>)> =
        keys.iter().map(|(k, v)| (k.as_str(), v.view())).collect();
    safetensors::save(&out.join(WEIGHTS), &views, &[("format", "pt")])
}
