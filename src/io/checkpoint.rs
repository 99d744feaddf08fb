//! Model checkpoints: a directory with `config.json` (Hugging Face keys), `model.safetensors`
//! (Hugging Face names) and, when a tokenizer is saved with it, `tokenizer.json`.
//!
//! Loading checks every tensor the config implies against the file and names the first one that
//! is missing or mis-shaped.

use super::{atomic_write, read, safetensors};
use crate::autodiff::ParamStore;
use crate::error::{Error, Result};
use crate::nn::{Config, Transformer};
use crate::tensor::{fmt_shape, Float};
use ndarray::ArrayViewD;
use std::collections::HashMap;
use std::path::Path;

pub const CONFIG: &str = "config.json";
pub const WEIGHTS: &str = "model.safetensors";
pub const TOKENIZER: &str = "tokenizer.json";

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
