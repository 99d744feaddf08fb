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
//! `peft_type` is PEFT's (LoRA, AdaLoRA, LoHa, LoKr, VeRA): [`read`] converts it to the
//! equivalent spec and tunelab's tensor names ([`super::peft`] and [`super::peft_methods`] hold
//! that dialect's name maps), and [`export_peft`] writes a tunelab adapter of those methods
//! (LoRA-FA as LoRA) in PEFT's dialect.
//!
//! ## One write, one directory
//!
//! [`write`] replaces the directory as a whole ([`super::replace_dir`]): both files are written
//! into a fresh sibling, which is then renamed into place, so a kill can never leave one run's
//! config beside another run's weights (files put into an adapter directory by hand go with it).
//! Both files also carry the same `write_id` (the config beside its spec, the weights in their
//! safetensors metadata), and [`read`] refuses a pair whose ids differ (weights with no id,
//! written by another tool or by hand, are not checked). A directory missing
//! because a replacement was killed between its two renames is read from where its committed
//! contents were set aside ([`super::committed_dir`]).
//!
//! ## What an adapter was trained for
//!
//! `tunelab finetune` records in `meta` the task (`"task"`), the base as given and as resolved
//! (`"base_name"`, `"base"`) and the base's architecture (`"base_config"`, from
//! [`base_record`]). [`check_task`] and [`check_base`] compare them with a run's and refuse a
//! mismatch naming both. Adapters written before these were recorded (and PEFT's) have no such
//! record and load as before, unchecked.

use super::{atomic_write, peft, peft_methods, safetensors};
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
/// The key, in the config and in the weights' safetensors metadata, that pairs the two files of
/// one [`write`].
const WRITE_ID: &str = "write_id";

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

/// `adapter_config.json`'s bytes as JSON (`path` names it in errors).
fn parse_json(path: &Path, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::Data {
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
    config.remove(WRITE_ID);
    let spec: MethodSpec = serde_json::from_value(Value::Object(config))
        .map_err(|e| data_err(path, format!("not a method spec: {e}")))?;
    Ok((spec, meta))
}

/// The float tensors of `adapter_model.safetensors` (its `bytes`; `path` names it); any other tensor is an error naming it.
/// `write_id`, when the config recorded one, must be the weights' own if they record one too
/// (weights written by another tool, or by hand, record none and pass).
fn tensors_of<F: Float>(
    path: &Path,
    bytes: &[u8],
    write_id: Option<&str>,
) -> Result<Vec<(String, ArrayD<F>)>> {
    let file = safetensors::parse::<F>(bytes, &path.display().to_string())?;
    if let Some(name) = file.skipped.first() {
        return Err(data_err(
            path,
            format!("tensor {name} is not a float tensor"),
        ));
    }
    if let Some(id) = write_id {
        if let Some(theirs) = file.metadata.get(WRITE_ID).and_then(Value::as_str) {
            if theirs != id {
                return Err(data_err(
                    path,
                    format!(
                        "these weights were not written with the {CONFIG} beside them (its write_id is {id}, theirs {theirs}): the directory mixes two saves"
                    ),
                ));
            }
        }
    }
    Ok(file.tensors)
}

/// The `write_id` an own-dialect config records.
fn write_id_of(config: &Value) -> Option<String> {
    config
        .get(WRITE_ID)
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// The directory to read for the adapter `dir`: itself, or its committed contents set aside by a
/// replacement that was killed ([`super::committed_dir`]).
fn committed(dir: &Path) -> std::path::PathBuf {
    super::committed_dir(dir).unwrap_or_else(|| dir.to_path_buf())
}

/// A PEFT adapter in tunelab's terms, by its `peft_type`: LoHa, LoKr and VeRA
/// ([`peft_methods::import`]), else LoRA ([`peft::import`], which refuses other types).
fn import_peft<F: Float>(
    cpath: &Path,
    config: &Value,
    wpath: &Path,
    load: impl FnOnce() -> Result<peft::Tensors<F>>,
) -> Result<(MethodSpec, Value, peft::Tensors<F>)> {
    let peft_type = config.get("peft_type").and_then(Value::as_str);
    if peft_type.is_some_and(|t| peft_methods::PEFT_TYPES.contains(&t)) {
        peft_methods::import(cpath, config, wpath, load)
    } else {
        peft::import(cpath, config, wpath, load)
    }
}

/// Reads an adapter directory of either dialect: the config once, then the tensors.
pub fn read<F: Float>(dir: &Path) -> Result<AdapterFiles<F>> {
    let dir = &committed(dir);
    let config = super::read(&dir.join(CONFIG))?;
    parse(dir, &config, || super::read(&dir.join(WEIGHTS)))
}

/// What [`read`] does once it read the config of the adapter in `dir`: `config` is that file's
/// bytes, `weights` gives the bytes of its weights and is called only once the config checked.
/// Nothing is read from `dir`, which names the files in errors.
pub fn parse<F: Float>(
    dir: &Path,
    config: &[u8],
    weights: impl FnOnce() -> Result<Vec<u8>>,
) -> Result<AdapterFiles<F>> {
    let (cpath, wpath) = (dir.join(CONFIG), dir.join(WEIGHTS));
    let config = parse_json(&cpath, config)?;
    if peft::is_peft_config(&config) {
        let (spec, meta, tensors) = import_peft(&cpath, &config, &wpath, || {
            tensors_of(&wpath, &weights()?, None)
        })?;
        return Ok(AdapterFiles {
            spec,
            meta,
            tensors,
        });
    }
    let id = write_id_of(&config);
    let (spec, meta) = parse_own(&cpath, config)?;
    let tensors = tensors_of(&wpath, &weights()?, id.as_deref())?;
    Ok(AdapterFiles {
        spec,
        meta,
        tensors,
    })
}

/// Reads only the method spec and `meta` of an adapter directory (of a PEFT adapter, whose
/// targets are known from its tensors' names, the tensors are read too).
pub fn read_config(dir: &Path) -> Result<(MethodSpec, Value)> {
    let dir = &committed(dir);
    let cpath = dir.join(CONFIG);
    let config = parse_json(&cpath, &super::read(&cpath)?)?;
    if peft::is_peft_config(&config) {
        let wpath = dir.join(WEIGHTS);
        let (spec, meta, _) = import_peft::<f32>(&cpath, &config, &wpath, || {
            tensors_of(&wpath, &super::read(&wpath)?, None)
        })?;
        return Ok((spec, meta));
    }
    parse_own(&cpath, config)
}

/// A fresh id pairing the two files of one [`write`]: the process and the time.
fn new_write_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

/// Writes an adapter as the directory `dir` (replacing any directory there as a whole; see the
/// module's doc), in tunelab's dialect: `adapter_config.json` with `spec`, `meta` (and the folded
/// mark when `folded`), and `adapter_model.safetensors` with `tensors`.
pub fn write<F: Float>(
    dir: &Path,
    spec: &MethodSpec,
    folded: bool,
    meta: Value,
    tensors: &[(&str, ArrayViewD<'_, F>)],
) -> Result<()> {
    let tmp = super::temp_dir_for(dir)?;
    let id = new_write_id();
    let mut config = match serde_json::to_value(spec).expect("a method spec serialises") {
        Value::Object(m) => m,
        _ => unreachable!("an internally tagged enum serialises to an object"),
    };
    if folded {
        config.insert(FOLDED.into(), Value::Bool(true));
    }
    config.insert(WRITE_ID.into(), Value::String(id.clone()));
    config.insert(META.into(), meta);
    let json = serde_json::to_string_pretty(&Value::Object(config)).expect("JSON serialises");
    atomic_write(&tmp.join(CONFIG), json.as_bytes())?;
    super::crash_point("adapter:config_written");
    safetensors::save(
        &tmp.join(WEIGHTS),
        tensors,
        &[("format", "pt"), (WRITE_ID, &id)],
    )?;
    super::replace_dir(&tmp, dir)
}

/// What an adapter records of the base it was trained on: its architecture (`model_type`) and
/// every size that fixes a tensor's shape.
pub fn base_record(config: &Config) -> Value {
    serde_json::json!({
        "model_type": config.to_json().get("model_type").cloned().unwrap_or(Value::Null),
        "vocab_size": config.vocab_size,
        "d_model": config.d_model,
        "n_heads": config.n_heads,
        "n_layers": config.n_layers,
        "d_ff": config.d_ff,
        "max_len": config.max_len,
    })
}

/// Refuses to use the adapter in `dir` (its config's `meta`) with the base `base_name` whose
/// config is `config` when the adapter records another base architecture; names both. An adapter
/// without the record passes.
pub fn check_base(dir: &Path, meta: &Value, config: &Config, base_name: &str) -> Result<()> {
    let Some(saved) = meta.get("base_config") else {
        return Ok(());
    };
    let ours = base_record(config);
    let differs: Vec<String> = ours
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, v)| saved.get(k.as_str()) != Some(*v))
        .map(|(k, v)| {
            format!(
                "{k} {} (the base's: {v})",
                saved.get(k.as_str()).unwrap_or(&Value::Null)
            )
        })
        .collect();
    if differs.is_empty() {
        return Ok(());
    }
    let trained_on = meta
        .get("base_name")
        .or_else(|| meta.get("base"))
        .and_then(Value::as_str)
        .unwrap_or("another base");
    Err(Error::Invalid {
        op: "adapter",
        detail: format!(
            "{} was trained on {trained_on} ({}), not on {base_name}: it records {}",
            dir.display(),
            saved
                .get("model_type")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            differs.join(", ")
        ),
    })
}

/// Refuses to use the adapter in `dir` (its config's `meta`) for `task` when it records another
/// task; names both. An adapter without the record passes.
pub fn check_task(dir: &Path, meta: &Value, task: &str, flag: &str) -> Result<()> {
    match meta.get("task").and_then(Value::as_str) {
        Some(saved) if saved != task => Err(Error::Invalid {
            op: "adapter",
            detail: format!(
                "{} was trained for the task {saved}, not {task}: pass {flag} {saved}, or another adapter",
                dir.display()
            ),
        }),
        _ => Ok(()),
    }
}

/// Size in bytes of an adapter's tensor file, `adapter_model.safetensors`.
pub fn file_size(dir: &Path) -> Result<u64> {
    let path = committed(dir).join(WEIGHTS);
    std::fs::metadata(&path)
        .map(|m| m.len())
        .map_err(|e| io_err(&path, e))
}

/// Writes the adapter in `adapter` (LoRA, LoRA-FA, AdaLoRA, LoHa, LoKr or VeRA, trained on the base whose config is `base`) as a PEFT
/// adapter directory `out`, loadable with `PeftModel.from_pretrained`. `base_name` goes into
/// `base_model_name_or_path`. An adapter that records another base architecture is refused
/// ([`check_base`]). `out` is written as a whole ([`super::replace_dir`]); it may not be
/// `adapter`, lie inside it or contain it. Whether an existing `out` may be replaced is the
/// caller's decision (`tunelab export-peft --force`).
pub fn export_peft(adapter: &Path, base: &Config, base_name: &str, out: &Path) -> Result<()> {
    refuse_overlap(adapter, out)?;
    let files = read::<f32>(adapter)?;
    check_base(adapter, &files.meta, base, base_name)?;
    let (cpath, wpath) = (adapter.join(CONFIG), adapter.join(WEIGHTS));
    let export = match files.spec {
        MethodSpec::Loha(_) | MethodSpec::Lokr(_) | MethodSpec::Vera(_) => peft_methods::export,
        _ => peft::export,
    };
    let (config, keys) = export(
        &files.spec,
        &files.meta,
        files.tensors,
        base,
        base_name,
        &cpath,
        &wpath,
    )?;
    let tmp = super::temp_dir_for(out)?;
    let text = serde_json::to_string_pretty(&config).expect("JSON serialises");
    atomic_write(&tmp.join(CONFIG), text.as_bytes())?;
    let views: Vec<(&str, ArrayViewD<'_, f32>)> =
        keys.iter().map(|(k, v)| (k.as_str(), v.view())).collect();
    safetensors::save(&tmp.join(WEIGHTS), &views, &[("format", "pt")])?;
    super::replace_dir(&tmp, out)
}

/// `path` made absolute with every existing ancestor resolved (symlinks, `..`), for comparing
/// two paths of which one may not exist yet.
fn resolved(path: &Path) -> Result<std::path::PathBuf> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| io_err(path, e))?
            .join(path)
    };
    let mut rest = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Ok(out);
        }
        match (cur.parent(), cur.file_name()) {
            (Some(p), Some(name)) => {
                rest.push(name.to_os_string());
                cur = p;
            }
            _ => return Ok(abs),
        }
    }
}

/// Refuses an export whose `out` is the adapter directory, inside it or around it (replacing
/// `out` would destroy the adapter being read).
fn refuse_overlap(adapter: &Path, out: &Path) -> Result<()> {
    let (a, o) = (resolved(adapter)?, resolved(out)?);
    let what = if a == o {
        "is the adapter directory"
    } else if o.starts_with(&a) {
        "is inside the adapter directory"
    } else if a.starts_with(&o) {
        "contains the adapter directory"
    } else {
        return Ok(());
    };
    Err(Error::Invalid {
        op: "export-peft",
        detail: format!(
            "--out {} {what} {}: writing it would destroy the adapter; choose another --out",
            out.display(),
            adapter.display()
        ),
    })
}
