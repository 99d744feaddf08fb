//! Hugging Face model directories: `config.json`, `model.safetensors`, and `tokenizer.json` or
//! BERT's `vocab.txt`.
//!
//! tunelab's parameters already carry Hugging Face names without the model's prefix, so loading
//! is a name map:
//!
//! | file name | tunelab name |
//! |---|---|
//! | `transformer.h.0.attn.c_attn.weight` (GPT2LMHeadModel) | `h.0.attn.c_attn.weight` (Conv1D (in, out), as stored) |
//! | `bert.encoder.layer.0.attention.self.query.weight` (BertFor…) | `encoder.layer.0.attention.self.query.weight` |
//! | `lm_head.weight`, `cls.predictions.decoder.weight` | tied to the word embeddings: not read |
//! | `cls.predictions.decoder.bias` | `cls.predictions.bias` (one tensor in PyTorch) |
//! | `….LayerNorm.gamma` / `.beta` (old BERT files) | `….LayerNorm.weight` / `.bias` |
//! | `h.0.attn.bias`, `embeddings.position_ids`, `cls.seq_relationship.*`, `classifier.*` | buffers and heads tunelab does not use: ignored, listed in the report |
//!
//! Files written by tunelab itself ([`super::checkpoint::save`]) are Hugging Face files, so they
//! load the same way. A tensor the model needs that the file lacks is an error naming it, except
//! for the BERT heads a checkpoint may legitimately leave out: the masked-LM head
//! (`cls.predictions.*`, absent from `BertModel`) and the pooler (absent from `BertForMaskedLM`).
//! Those keep their random initialisation and [`Loaded::initialised`] lists them, so a use that
//! needs them (`tunelab logits` needs the MLM head) can refuse.

use super::{checkpoint, read, safetensors};
use crate::autodiff::ParamStore;
use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::nn::{Arch, Config, Transformer};
use crate::tensor::{fmt_shape, Float};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The `architectures` entries whose weights map onto tunelab's transformer.
pub const ARCHITECTURES: &[&str] = &[
    "GPT2LMHeadModel",
    "GPT2Model",
    "BertModel",
    "BertForMaskedLM",
    "BertForPreTraining",
];

/// A BERT vocabulary file, used when a directory has no `tokenizer.json`.
pub const VOCAB_TXT: &str = "vocab.txt";

/// A model read from a Hugging Face directory, with what the loader did beyond a 1:1 copy.
pub struct Loaded<F: Float> {
    pub dir: PathBuf,
    pub model: Transformer,
    pub store: ParamStore<F>,
    /// The `architectures` entry of config.json (empty when it has none).
    pub architecture: String,
    /// Parameters the file did not have that kept their random initialisation (BERT's MLM head
    /// or pooler).
    pub initialised: Vec<String>,
    /// Tensors of the file that the model does not use.
    pub ignored: Vec<String>,
}

impl<F: Float> Loaded<F> {
    /// One line for the user about what was not a plain copy, or `None`.
    pub fn notes(&self) -> Option<String> {
        let heads: Vec<&str> = [
            (
                "cls.predictions.",
                "cls.predictions.* (the masked-LM head, used by `logits`)",
            ),
            (
                "pooler.",
                "pooler.* (used by [CLS] pooling of classification heads)",
            ),
        ]
        .into_iter()
        .filter(|(p, _)| self.initialised.iter().any(|n| n.starts_with(p)))
        .map(|(_, what)| what)
        .collect();
        if heads.is_empty() {
            return None;
        }
        Some(format!(
            "{}: the checkpoint has no {}; initialised randomly",
            self.dir.display(),
            heads.join(" and no ")
        ))
    }
}

/// The tunelab name of a file's tensor, or `None` for a tensor tunelab does not use.
pub fn map_name(file_name: &str, config: &Config) -> Option<String> {
    let mut n = file_name;
    for prefix in ["transformer.", "bert."] {
        if let Some(rest) = n.strip_prefix(prefix) {
            n = rest;
        }
    }
    let n = if let Some(stem) = n.strip_suffix(".gamma") {
        format!("{stem}.weight")
    } else if let Some(stem) = n.strip_suffix(".beta") {
        format!("{stem}.bias")
    } else {
        n.to_string()
    };
    match (config.arch, n.as_str()) {
        (Arch::Gpt, "lm_head.weight") if config.tied_head => None,
        (Arch::Bert, "cls.predictions.decoder.weight") if config.tied_head => None,
        (Arch::Bert, "cls.predictions.decoder.bias") => Some("cls.predictions.bias".into()),
        // GPT-2's causal-mask buffers.
        (Arch::Gpt, n) if n.ends_with(".attn.bias") || n.ends_with(".attn.masked_bias") => None,
        _ => Some(n),
    }
}

/// May a checkpoint leave this parameter out (it then keeps its initialisation)?
fn optional(name: &str) -> bool {
    name.starts_with("cls.predictions.") || name.starts_with("pooler.")
}

/// Reads config.json, checking the architecture and the options tunelab does not implement.
pub fn load_config(dir: &Path) -> Result<(Config, String)> {
    let path = dir.join(checkpoint::CONFIG);
    let shown = path.display().to_string();
    let bytes = read(&path)?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| Error::Data {
        path: shown.clone(),
        line: e.line(),
        detail: e.to_string(),
    })?;
    let err = |detail: String| Error::Data {
        path: shown.clone(),
        line: 0,
        detail,
    };
    let architecture = match v.get("architectures").and_then(Value::as_array) {
        Some(list) => {
            let names: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
            match names.iter().find(|a| ARCHITECTURES.contains(a)) {
                Some(a) => a.to_string(),
                None => {
                    return Err(err(format!(
                        "architectures {names:?}: none is supported ({})",
                        ARCHITECTURES.join(", ")
                    )))
                }
            }
        }
        None => String::new(),
    };
    // Options that change the computation and that tunelab's transformer does not have.
    let unsupported = [
        ("position_embedding_type", Value::from("absolute")),
        ("scale_attn_by_inverse_layer_idx", Value::Bool(false)),
        ("reorder_and_upcast_attn", Value::Bool(false)),
        ("scale_attn_weights", Value::Bool(true)),
        ("add_cross_attention", Value::Bool(false)),
        ("is_decoder", Value::Bool(false)),
    ];
    for (key, default) in unsupported {
        if let Some(found) = v.get(key) {
            if *found != default && !found.is_null() {
                return Err(err(format!(
                    "{key} = {found} is not supported (only {default})"
                )));
            }
        }
    }
    let config = Config::from_json(&v, &shown)?;
    Ok((config, architecture))
}

/// Loads a Hugging Face (or tunelab) model directory into a fresh store, as f-precision.
pub fn load<F: Float>(dir: &Path) -> Result<Loaded<F>> {
    let (config, architecture) = load_config(dir)?;
    let mut store = ParamStore::new();
    let model = Transformer::new(config.clone(), &mut store, 0)?;
    let file = dir.join(checkpoint::WEIGHTS);
    let shown = file.display().to_string();
    let err = |detail: String| Error::Data {
        path: shown.clone(),
        line: 0,
        detail,
    };
    let tensors = safetensors::load::<F>(&file)?;
    let mut ignored = tensors.skipped;
    let mut by_name = HashMap::new();
    for (name, t) in tensors.tensors {
        match map_name(&name, &config) {
            Some(n) if store.id(&n).is_ok() => {
                if by_name.insert(n.clone(), (name.clone(), t)).is_some() {
                    return Err(err(format!(
                        "tensor {name} maps to {n}, which another tensor of the file already gave"
                    )));
                }
            }
            _ => ignored.push(name),
        }
    }
    let mut initialised = Vec::new();
    let ids: Vec<_> = store.ids().collect();
    for id in ids {
        let name = store.name(id).to_string();
        match by_name.remove(&name) {
            Some((file_name, t)) => {
                if t.shape() != store.value(id).shape() {
                    return Err(err(format!(
                        "tensor {file_name} has shape {}, config.json implies {}",
                        fmt_shape(t.shape()),
                        fmt_shape(store.value(id).shape())
                    )));
                }
                store.set_value(id, t)?;
            }
            None if optional(&name) => initialised.push(name),
            None => {
                let prefix = match (config.arch, architecture.as_str()) {
                    (Arch::Gpt, "GPT2LMHeadModel") => "transformer.",
                    (Arch::Bert, "BertForMaskedLM" | "BertForPreTraining") => "bert.",
                    _ => "",
                };
                return Err(err(format!(
                    "tensor {name} is missing (looked for {name} and {prefix}{name})"
                )));
            }
        }
    }
    ignored.sort();
    Ok(Loaded {
        dir: dir.to_path_buf(),
        model,
        store,
        architecture,
        initialised,
        ignored,
    })
}

/// The directory's tokenizer: `tokenizer.json` if present, else BERT's `vocab.txt` (lower-cased
/// unless `tokenizer_config.json` says `"do_lower_case": false`).
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let json = dir.join(checkpoint::TOKENIZER);
    if json.exists() {
        return Tokenizer::from_file(json);
    }
    let vocab = dir.join(VOCAB_TXT);
    if vocab.exists() {
        let lowercase = std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("do_lower_case").and_then(Value::as_bool))
            .unwrap_or(true);
        return Tokenizer::from_vocab_txt(vocab, lowercase);
    }
    Err(Error::Io {
        path: dir.display().to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no tokenizer.json or vocab.txt in the model directory",
        ),
    })
}
