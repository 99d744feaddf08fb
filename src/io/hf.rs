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

use super::{checkpoint, limits, read, safetensors};
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
    let bytes = read(&path)?;
    parse_config(&bytes, &path.display().to_string())
}

/// [`load_config`] from the file's bytes (`shown` names it in errors): every dimension is
/// checked against [`super::limits`] and every float for its range, naming the key.
pub fn parse_config(bytes: &[u8], shown: &str) -> Result<(Config, String)> {
    let shown = shown.to_string();
    let v: Value = serde_json::from_slice(bytes).map_err(|e| Error::Data {
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
    let file = dir.join(checkpoint::WEIGHTS);
    let shown = file.display().to_string();
    // The size check needs only the file's length: a config.json implying terabytes is refused
    // before the file is read or anything allocated.
    let len = std::fs::metadata(&file)
        .map_err(|source| Error::Io {
            path: shown.clone(),
            source,
        })?
        .len();
    check_size(&config, &dir.join(checkpoint::CONFIG), len, &shown)?;
    let bytes = read(&file)?;
    build(dir, config, architecture, &bytes, &shown)
}

/// [`load`] from the bytes of `config.json` and `model.safetensors` (`dir` names the files in
/// errors).
pub fn load_bytes<F: Float>(dir: &Path, config: &[u8], weights: &[u8]) -> Result<Loaded<F>> {
    let cpath = dir.join(checkpoint::CONFIG);
    let (config, architecture) = parse_config(config, &cpath.display().to_string())?;
    let shown = dir.join(checkpoint::WEIGHTS).display().to_string();
    check_size(&config, &cpath, weights.len() as u64, &shown)?;
    build(dir, config, architecture, weights, &shown)
}

/// Every parameter the checkpoint must hold takes at least 2 bytes (F16 or BF16), and the whole
/// model (with the BERT heads a file may leave out) may not be larger than 1 byte per parameter
/// of the file: a config.json whose dimensions do not belong to its weights is refused before
/// the model is built.
fn check_size(config: &Config, cpath: &Path, len: u64, weights: &str) -> Result<()> {
    let (required, optional) = config.param_counts().ok_or_else(|| Error::Data {
        path: cpath.display().to_string(),
        line: 0,
        detail: "the dimensions multiply past 2^64 parameters".into(),
    })?;
    let total = required.saturating_add(optional);
    let need = required.saturating_mul(2).max(total);
    if len < need {
        return Err(Error::Data {
            path: cpath.display().to_string(),
            line: 0,
            detail: format!(
                "the dimensions imply a model of {} parameters ({} of them stored, at least {} \
                 bytes at 16 bits), but {weights} has {} bytes: a dimension of config.json is \
                 wrong",
                limits::grouped(total),
                limits::grouped(required),
                limits::grouped(need),
                limits::grouped(len)
            ),
        });
    }
    Ok(())
}

fn build<F: Float>(
    dir: &Path,
    config: Config,
    architecture: String,
    weights: &[u8],
    shown: &str,
) -> Result<Loaded<F>> {
    let mut store = ParamStore::new();
    let model = Transformer::new(config.clone(), &mut store, 0)?;
    let err = |detail: String| Error::Data {
        path: shown.to_string(),
        line: 0,
        detail,
    };
    let tensors = safetensors::parse::<F>(weights, shown)?;
    // A tensor the model needs, stored in a dtype tunelab does not read, is named with its
    // dtype (not reported missing).
    for (name, dtype) in &tensors.skipped_dtypes {
        if let Some(n) = map_name(name, &config).filter(|n| store.id(n).is_ok()) {
            let as_model = if n == *name {
                String::new()
            } else {
                format!(" (the model's {n})")
            };
            return Err(err(format!(
                "tensor {name}{as_model} has dtype {dtype}, which tunelab does not read ({})",
                safetensors::FLOAT_DTYPES
            )));
        }
    }
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
/// unless `tokenizer_config.json` says `"do_lower_case": false`). When the directory has a
/// `config.json`, every id of the tokenizer must be a row of the model's embedding table: a
/// larger vocabulary is an error naming the tokenizer file, here, not at the first unlucky input.
pub fn load_tokenizer(dir: &Path) -> Result<Tokenizer> {
    let json = dir.join(checkpoint::TOKENIZER);
    let vocab = dir.join(VOCAB_TXT);
    let (tok, path) = if json.exists() {
        (Tokenizer::from_file(&json)?, json)
    } else if vocab.exists() {
        let lowercase = std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|v| v.get("do_lower_case").and_then(Value::as_bool))
            .unwrap_or(true);
        (Tokenizer::from_vocab_txt(&vocab, lowercase)?, vocab)
    } else {
        return Err(Error::Io {
            path: dir.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no tokenizer.json or vocab.txt in the model directory",
            ),
        });
    };
    if dir.join(checkpoint::CONFIG).exists() {
        let (config, _) = load_config(dir)?;
        check_tokenizer(&tok, &config, &path)?;
    }
    Ok(tok)
}

/// Every id of `tok` (read from `path`) is a row of the embedding table of `config`.
pub fn check_tokenizer(tok: &Tokenizer, config: &Config, path: &Path) -> Result<()> {
    if tok.vocab_size() > config.vocab_size {
        return Err(Error::Data {
            path: path.display().to_string(),
            line: 0,
            detail: format!(
                "token ids reach {}, beyond the model's vocabulary of {} (config.json vocab_size): \
                 the tokenizer does not belong to this model",
                tok.vocab_size() - 1,
                config.vocab_size
            ),
        });
    }
    Ok(())
}
