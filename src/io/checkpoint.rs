//! Checkpoints on disk, of two kinds.
//!
//! A **model checkpoint** is a directory with `config.json` (Hugging Face keys),
//! `model.safetensors` (Hugging Face names) and, when a tokenizer is saved with it,
//! `tokenizer.json`. Loading checks every tensor the config implies against the file and names the
//! first one that is missing or mis-shaped.
//!
//! A **training checkpoint** (`checkpoint-<step>/` in a run's output directory) is what the
//! Trainer needs to resume: the trainable parameters (`trainable.safetensors`), the optimizer's
//! state as its [`Optimizer::state`] names it (`optimizer.safetensors`, with the optimizer's name
//! in the metadata) and the trainer's state (`trainer_state.json`). It is written into a
//! temporary sibling and renamed into place ([`super::replace_dir`]), so an interruption never
//! leaves half a checkpoint; pruning renames a checkpoint aside (`checkpoint-N.del-<pid>`) before
//! deleting it, so a kill mid-deletion leaves no half checkpoint under a checkpoint's name
//! either. Only directories named exactly `checkpoint-<step>` are checkpoints; the siblings of
//! unfinished writes and deletions are ignored and removed by the next prune. A checkpoint never
//! holds a non-finite value: [`save_training`] refuses one ([`first_non_finite`]).

use super::{atomic_write, read, safetensors};
use crate::autodiff::ParamStore;
use crate::error::{invalid, Error, Result};
use crate::nn::{Config, Transformer};
use crate::optim::Optimizer;
use crate::tensor::{fmt_shape, Float};
use ndarray::ArrayViewD;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";
/// The files of a training checkpoint.
pub const TRAINABLE: &str = "trainable.safetensors";
pub const OPTIMIZER: &str = "optimizer.safetensors";
pub const TRAINER_STATE: &str = "trainer_state.json";
/// The metadata key of `optimizer.safetensors` that names the optimizer (absent in checkpoints
/// written before it was recorded, which were all AdamW's).
const OPTIMIZER_KEY: &str = "optimizer";

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `config.json` and `model.safetensors` (every parameter of `store`) into `dir`.
pub fn save<F: Float>(dir: &Path, config: &Config, store: &ParamStore<F>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let json = serde_json::to_string_pretty(&config.to_json()).expect("config serialises");
    atomic_write(&dir.join(CONFIG), json.as_bytes())?;
    let tensors: Vec<(&str, ArrayViewD<F>)> = store
        .iter()
        .map(|(_, p)| (p.name.as_str(), p.value.view()))
        .collect();
    safetensors::save(&dir.join(WEIGHTS), &tensors, &[("format", "pt")])
}

/// Reads `config.json` from a checkpoint directory.
pub fn load_config(dir: &Path) -> Result<Config> {
    let path = dir.join(CONFIG);
    let bytes = read(&path)?;
    let p = path.display().to_string();
    let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Data {
        path: p.clone(),
        line: e.line(),
        detail: e.to_string(),
    })?;
    Config::from_json(&v, &p)
}

/// Fills every parameter of `store` whose name is in `file` (after `rename`), checking shapes.
/// Returns the names of the store's parameters the file did not have.
pub fn load_into<F: Float>(
    store: &mut ParamStore<F>,
    file: &Path,
    rename: impl Fn(&str) -> String,
) -> Result<Vec<String>> {
    let tensors = safetensors::load::<F>(file)?;
    let mut by_name: HashMap<String, ndarray::ArrayD<F>> = tensors
        .tensors
        .into_iter()
        .map(|(n, t)| (rename(&n), t))
        .collect();
    let mut missing = Vec::new();
    let ids: Vec<_> = store.ids().collect();
    for id in ids {
        let name = store.name(id).to_string();
        match by_name.remove(&name) {
            Some(t) if t.shape() == store.value(id).shape() => store.set_value(id, t)?,
            Some(t) => {
                return Err(Error::Data {
                    path: file.display().to_string(),
                    line: 0,
                    detail: format!(
                        "tensor {name} has shape {}, the config expects {}",
                        fmt_shape(t.shape()),
                        fmt_shape(store.value(id).shape())
                    ),
                })
            }
            None => missing.push(name),
        }
    }
    Ok(missing)
}

/// Loads a model saved by [`save`]: the config, then every tensor it implies.
pub fn load<F: Float>(dir: &Path) -> Result<(Transformer, ParamStore<F>)> {
    let config = load_config(dir)?;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 0)?;
    let file = dir.join(WEIGHTS);
    let missing = load_into(&mut store, &file, |n| n.to_string())?;
    if let Some(first) = missing.first() {
        return Err(Error::Data {
            path: file.display().to_string(),
            line: 0,
            detail: format!(
                "tensor {first} is missing ({} of {} expected tensors are absent)",
                missing.len(),
                store.len()
            ),
        });
    }
    Ok((model, store))
}

/// The directory name of the training checkpoint taken after optimizer step `step`.
pub fn training_dir_name(step: usize) -> String {
    format!("checkpoint-{step}")
}

/// Writes a training checkpoint into `dir`: the trainable parameters of `store`, the optimizer's
/// state and the trainer's `state` (serialised as JSON). An existing `dir` is replaced whole.
///
/// A trainable parameter or an optimizer state tensor holding a NaN or an infinity is refused
/// before anything is written (the error names it): a checkpoint is always one training can
/// resume from.
pub fn save_training<F: Float>(
    dir: &Path,
    store: &ParamStore<F>,
    opt: &dyn Optimizer<F>,
    state: &impl Serialize,
) -> Result<()> {
    let params: Vec<(&str, ArrayViewD<F>)> = store
        .iter()
        .filter(|(_, p)| p.trainable)
        .map(|(_, p)| (p.name.as_str(), p.value.view()))
        .collect();
    let opt_state = opt.state();
    let views: Vec<(&str, ArrayViewD<F>)> = opt_state
        .iter()
        .map(|(n, a)| (n.as_str(), a.view()))
        .collect();
    let bad = first_non_finite(params.iter().map(|(n, v)| (*n, v.view())))
        .map(|b| format!("parameter {b}"))
        .or_else(|| {
            first_non_finite(views.iter().map(|(n, v)| (*n, v.view())))
                .map(|b| format!("optimizer state {b}"))
        });
    if let Some(bad) = bad {
        return invalid(
            "checkpoint",
            format!("{}: not written: {bad}", dir.display()),
        );
    }
    let tmp = super::temp_dir_for(dir)?;
    safetensors::save(&tmp.join(TRAINABLE), &params, &[])?;
    super::crash_point("checkpoint:trainable_written");
    safetensors::save(&tmp.join(OPTIMIZER), &views, &[(OPTIMIZER_KEY, opt.name())])?;
    let json = serde_json::to_string_pretty(state).expect("state serialises");
    atomic_write(&tmp.join(TRAINER_STATE), json.as_bytes())?;
    super::replace_dir(&tmp, dir)
}

/// The first tensor of `tensors` holding a NaN or an infinity, as `NAME (k of n values are not
/// finite)`.
pub fn first_non_finite<'a, F: Float + 'a>(
    tensors: impl IntoIterator<Item = (&'a str, ArrayViewD<'a, F>)>,
) -> Option<String> {
    tensors.into_iter().find_map(|(name, t)| {
        let bad = t.iter().filter(|x| !x.as_f64().is_finite()).count();
        (bad > 0).then(|| format!("{name} ({bad} of {} values are not finite)", t.len()))
    })
}

/// The trainable parameters of `store` and the optimizer's state, checked as [`save_training`]
/// checks them: a description of the first non-finite tensor, or `None`.
pub fn non_finite_training<F: Float>(
    store: &ParamStore<F>,
    opt: &dyn Optimizer<F>,
) -> Option<String> {
    let params = store
        .iter()
        .filter(|(_, p)| p.trainable)
        .map(|(_, p)| (p.name.as_str(), p.value.view()));
    if let Some(b) = first_non_finite(params) {
        return Some(format!("parameter {b}"));
    }
    let state = opt.state();
    first_non_finite(state.iter().map(|(n, a)| (n.as_str(), a.view())))
        .map(|b| format!("optimizer state {b}"))
}

/// The trainer's state of the training checkpoint `dir`, without loading anything else.
pub fn read_trainer_state<S: DeserializeOwned>(dir: &Path) -> Result<S> {
    let path = dir.join(TRAINER_STATE);
    let bytes = read(&path)?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Data {
        path: path.display().to_string(),
        line: e.line(),
        detail: e.to_string(),
    })
}

/// The run a training checkpoint records (its trainer state's `run`), `None` when it records
/// none (written before runs were recorded) or cannot be read.
pub fn run_of(dir: &Path) -> Option<serde_json::Value> {
    #[derive(serde::Deserialize)]
    struct RunOnly {
        #[serde(default)]
        run: Option<serde_json::Value>,
    }
    read_trainer_state::<RunOnly>(dir).ok()?.run
}

/// Restores a training checkpoint written by [`save_training`]: the trainable parameters into
/// `store`, the optimizer's state into `opt` (which must be the optimizer that wrote it), and
/// returns the trainer's state.
pub fn load_training<F: Float, S: DeserializeOwned>(
    dir: &Path,
    store: &mut ParamStore<F>,
    opt: &mut dyn Optimizer<F>,
) -> Result<S> {
    let missing = load_into(store, &dir.join(TRAINABLE), |n| n.to_string())?;
    let expected_missing = missing
        .iter()
        .filter(|n| {
            store
                .id(n)
                .map(|id| store.is_trainable(id))
                .unwrap_or(false)
        })
        .count();
    if expected_missing > 0 {
        return invalid("resume", format!("{}: {expected_missing} trainable parameters are missing (was it saved with another method?)", dir.display()));
    }
    let st = safetensors::load::<F>(&dir.join(OPTIMIZER))?;
    if let Some(saved) = st.metadata.get(OPTIMIZER_KEY) {
        if saved.as_str() != Some(opt.name()) {
            return invalid(
                "resume",
                format!(
                    "{}: the checkpoint holds {saved} state, this run trains with {}",
                    dir.display(),
                    opt.name()
                ),
            );
        }
    }
    opt.load_state(store, st.tensors)?;
    read_trainer_state(dir)
}

/// The training checkpoints (`checkpoint-<step>`) in `output_dir`, as (step, path), by step.
pub fn training_checkpoints(output_dir: &Path) -> Vec<(usize, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return Vec::new();
    };
    let mut found: Vec<(usize, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            let digits = name.strip_prefix("checkpoint-")?;
            // Only the canonical spelling: `checkpoint-007` or `checkpoint-+7` are not ours.
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let step: usize = digits.parse().ok()?;
            (training_dir_name(step) == name).then(|| (step, e.path()))
        })
        .collect();
    found.sort_by_key(|c| c.0);
    found
}

/// Every entry of `output_dir` that belongs to a run's checkpoints: `checkpoint-<step>`,
/// `checkpoint-best`, and what interrupted writes and deletions of them left.
fn checkpoint_entries(output_dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("checkpoint-"))
        .map(|e| e.path())
        .collect()
}

/// Deletes every checkpoint of `output_dir` (`checkpoint-<step>`, `checkpoint-best` and the
/// leftovers of interrupted writes): what `--overwrite-output-dir` does before a new run.
pub fn clear_training(output_dir: &Path) -> Result<()> {
    for p in checkpoint_entries(output_dir) {
        let r = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        r.map_err(io_err(&p))?;
    }
    Ok(())
}

/// The newest training checkpoint in `output_dir`.
pub fn latest_training(output_dir: &Path) -> Option<PathBuf> {
    training_checkpoints(output_dir)
        .into_iter()
        .max_by_key(|(s, _)| *s)
        .map(|(_, p)| p)
}

/// Deletes all but the newest `keep` training checkpoints of the run `run` in `output_dir` (0
/// keeps all): a checkpoint recording another run, or none, is never touched. Each is renamed
/// aside before it is deleted; the leftovers of earlier interrupted writes and deletions go too.
pub fn prune_training(output_dir: &Path, keep: usize, run: &serde_json::Value) {
    let mine = format!("-{}", std::process::id());
    for p in checkpoint_entries(output_dir) {
        let name = p.file_name().map(|n| n.to_string_lossy().to_string());
        let Some(name) = name else { continue };
        let leftover = [".tmp-", ".old-", ".del-"].iter().any(|m| name.contains(m))
            || name.ends_with(".partial");
        if leftover && !name.ends_with(&mine) {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
    if keep == 0 {
        return;
    }
    let ours: Vec<(usize, PathBuf)> = training_checkpoints(output_dir)
        .into_iter()
        .filter(|(_, p)| run_of(p).as_ref() == Some(run))
        .collect();
    let n = ours.len();
    for (_, p) in ours.into_iter().take(n.saturating_sub(keep)) {
        let mut aside = p.clone().into_os_string();
        aside.push(format!(".del-{}", std::process::id()));
        if std::fs::rename(&p, &aside).is_ok() {
            super::crash_point("checkpoint:pruned_aside");
            let _ = std::fs::remove_dir_all(&aside);
        }
    }
}
