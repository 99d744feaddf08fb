//! Model configuration, with the two presets and Hugging Face `config.json` compatibility.

use crate::error::{Error, Result};
use crate::io::limits::{self, grouped, mul, sum};
use serde_json::{json, Value};

/// Which family of weight names (and embedding layout) the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// GPT-2 names: `wte`, `wpe`, `h.{i}.attn.c_attn`, `ln_f`, ...; Conv1D weights stored (in, out).
    Gpt,
    /// BERT names: `embeddings.word_embeddings`, `encoder.layer.{i}.attention.self.query`, ...;
    /// Linear weights stored (out, in); token-type embeddings and an embedding LayerNorm.
    Bert,
}

/// Which GELU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// tanh approximation, GPT-2's `gelu_new`.
    GeluTanh,
    /// exact erf form, BERT's `gelu`.
    GeluErf,
}

/// Everything that fixes a transformer's shape and wiring.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub arch: Arch,
    /// V: vocabulary size.
    pub vocab_size: usize,
    /// C: channels (d_model).
    pub d_model: usize,
    /// NH: attention heads; C must divide by NH.
    pub n_heads: usize,
    /// L: blocks.
    pub n_layers: usize,
    /// Hidden width of the MLP (usually 4C).
    pub d_ff: usize,
    /// Longest sequence the position embeddings cover.
    pub max_len: usize,
    /// Causal (decoder) or bidirectional (encoder) attention.
    pub causal: bool,
    /// Pre-LN (LayerNorm before each sublayer, GPT-2) or post-LN (after the residual add, BERT).
    pub pre_ln: bool,
    /// LM head shares the token embedding matrix.
    pub tied_head: bool,
    /// Dropout on embeddings, attention output and MLP output during training.
    pub dropout: f64,
    pub layer_norm_eps: f64,
    /// Token-type vocabulary (BERT segment ids); 0 for none.
    pub type_vocab_size: usize,
    pub activation: Activation,
}

impl Config {
    /// A GPT-style decoder: pre-LN, causal, tied LM head, tanh GELU.
    pub fn gpt(
        vocab_size: usize,
        d_model: usize,
        n_heads: usize,
        n_layers: usize,
        max_len: usize,
    ) -> Self {
        Self {
            arch: Arch::Gpt,
            vocab_size,
            d_model,
            n_heads,
            n_layers,
            d_ff: 4 * d_model,
            max_len,
            causal: true,
            pre_ln: true,
            tied_head: true,
            dropout: 0.1,
            layer_norm_eps: 1e-5,
            type_vocab_size: 0,
            activation: Activation::GeluTanh,
        }
    }

    /// A BERT-style encoder: post-LN, bidirectional, erf GELU, two token types.
    pub fn bert(
        vocab_size: usize,
        d_model: usize,
        n_heads: usize,
        n_layers: usize,
        max_len: usize,
    ) -> Self {
        Self {
            arch: Arch::Bert,
            vocab_size,
            d_model,
            n_heads,
            n_layers,
            d_ff: 4 * d_model,
            max_len,
            causal: false,
            pre_ln: false,
            tied_head: true,
            dropout: 0.1,
            layer_norm_eps: 1e-12,
            type_vocab_size: 2,
            activation: Activation::GeluErf,
        }
    }

    /// HS: channels per head.
    pub fn head_size(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// Checks the numbers fit together and stay within [`crate::io::limits`] (so that
    /// [`crate::nn::Transformer::new`] never attempts an absurd allocation).
    pub fn validate(&self) -> Result<()> {
        let bad = |detail: String| {
            Err(Error::Invalid {
                op: "config",
                detail,
            })
        };
        if self.d_model == 0 || self.n_heads == 0 || self.vocab_size == 0 || self.max_len == 0 {
            return bad("vocab_size, d_model, n_heads and max_len must be positive".into());
        }
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, limits::MAX_VOCAB),
            ("d_model", self.d_model, limits::MAX_WIDTH),
            ("n_heads", self.n_heads, limits::MAX_WIDTH),
            ("n_layers", self.n_layers, limits::MAX_LAYERS),
            ("d_ff", self.d_ff, limits::MAX_MLP_WIDTH),
            ("max_len", self.max_len, limits::MAX_POSITIONS),
            (
                "type_vocab_size",
                self.type_vocab_size,
                limits::MAX_TYPE_VOCAB,
            ),
        ] {
            if value > max {
                return bad(format!(
                    "{field} = {value} exceeds tunelab's limit of {}",
                    grouped(max as u64)
                ));
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            return bad(format!(
                "d_model {} is not divisible by n_heads {}",
                self.d_model, self.n_heads
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} is outside [0, 1)", self.dropout));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return bad(format!(
                "layer_norm_eps {} is not in (0, 1)",
                self.layer_norm_eps
            ));
        }
        match self.param_count() {
            Some(n) if n <= limits::MAX_PARAMS => Ok(()),
            n => bad(format!(
                "the model would have {} parameters, more than tunelab's limit of {}",
                n.map_or("more than 2^64".into(), grouped),
                grouped(limits::MAX_PARAMS)
            )),
        }
    }

    /// The number of parameters [`crate::nn::Transformer::new`] creates, `None` if it overflows.
    pub fn param_count(&self) -> Option<u64> {
        let (required, optional) = self.param_counts()?;
        required.checked_add(optional)
    }

    /// The parameters a checkpoint must hold and those it may leave out (BERT's masked-LM head
    /// and pooler, see [`crate::io::hf`]); `None` if a count overflows.
    pub fn param_counts(&self) -> Option<(u64, u64)> {
        let n = |x: usize| x as u64;
        let (v, c, f, l) = (
            n(self.vocab_size),
            n(self.d_model),
            n(self.d_ff),
            n(self.n_layers),
        );
        let gpt = self.arch == Arch::Gpt;
        let ln = mul(2, c);
        // Linear (d_in, d_out) with bias.
        let linear = |d_in: u64, d_out: u64| sum(&[mul(d_in, d_out), Some(d_out)]);
        let qkv = if gpt {
            linear(c, mul(3, c)?)
        } else {
            mul(3, linear(c, c)?)
        };
        let block = sum(&[ln, qkv, linear(c, c), ln, linear(c, f), linear(f, c)]);
        let required = sum(&[
            mul(v, c),
            mul(n(self.max_len), c),
            mul(n(self.type_vocab_size), c),
            if gpt { Some(0) } else { ln },
            mul(l, block?),
            if gpt { ln } else { Some(0) },
            if self.tied_head { Some(0) } else { mul(v, c) },
        ])?;
        let optional = if gpt {
            0
        } else {
            sum(&[linear(c, c), ln, Some(v), linear(c, c)])?
        };
        Some((required, optional))
    }

    /// The config as Hugging Face writes it (`GPT2Config` or `BertConfig` keys), plus tunelab's
    /// own wiring keys so that non-standard variants (a post-LN decoder) round-trip.
    pub fn to_json(&self) -> Value {
        let act = match self.activation {
            Activation::GeluTanh => "gelu_new",
            Activation::GeluErf => "gelu",
        };
        let mut v = match self.arch {
            Arch::Gpt => json!({
                "model_type": "gpt2",
                "architectures": ["GPT2LMHeadModel"],
                "vocab_size": self.vocab_size,
                "n_embd": self.d_model,
                "n_head": self.n_heads,
                "n_layer": self.n_layers,
                "n_inner": self.d_ff,
                "n_positions": self.max_len,
                "layer_norm_epsilon": self.layer_norm_eps,
                "activation_function": act,
                "resid_pdrop": self.dropout,
                "embd_pdrop": self.dropout,
                "attn_pdrop": self.dropout,
                "tie_word_embeddings": self.tied_head,
            }),
            Arch::Bert => json!({
                "model_type": "bert",
                "architectures": ["BertForMaskedLM"],
                "vocab_size": self.vocab_size,
                "hidden_size": self.d_model,
                "num_attention_heads": self.n_heads,
                "num_hidden_layers": self.n_layers,
                "intermediate_size": self.d_ff,
                "max_position_embeddings": self.max_len,
                "type_vocab_size": self.type_vocab_size,
                "layer_norm_eps": self.layer_norm_eps,
                "hidden_act": act,
                "hidden_dropout_prob": self.dropout,
                "attention_probs_dropout_prob": self.dropout,
                "tie_word_embeddings": self.tied_head,
            }),
        };
        v["tunelab"] = json!({ "causal": self.causal, "pre_ln": self.pre_ln });
        v
    }

    /// Reads a Hugging Face `config.json` (GPT-2 or BERT) or one tunelab wrote. `path` names the
    /// file in errors.
    pub fn from_json(v: &Value, path: &str) -> Result<Self> {
        let err = |detail: String| Error::Data {
            path: path.to_string(),
            line: 0,
            detail,
        };
        // Every dimension is checked against its limit here, naming the key, before any
        // product of them is formed (4·n_embd included).
        let int = |key: &str, max: usize| -> Result<Option<usize>> {
            match v.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(x) => match x.as_u64() {
                    Some(n) if n <= max as u64 => Ok(Some(n as usize)),
                    Some(n) => Err(err(format!(
                        "{key} = {n} exceeds tunelab's limit of {} (see tunelab::io::limits)",
                        grouped(max as u64)
                    ))),
                    None => Err(err(format!("{key} = {x} is not a non-negative integer"))),
                },
            }
        };
        let num = |key: &str, max: usize| -> Result<usize> {
            int(key, max)?.ok_or_else(|| {
                err(format!(
                    "field {key:?} is missing or not a non-negative integer"
                ))
            })
        };
        // A float key: absent or null gives the default; otherwise a finite number in `range`.
        let float = |key: &str, default: f64, range: (f64, f64, bool), what: &str| -> Result<f64> {
            let x = match v.get(key) {
                None | Some(Value::Null) => return Ok(default),
                Some(x) => x,
            };
            let (lo, hi, lo_open) = range;
            match x.as_f64() {
                Some(f) if f.is_finite() && (if lo_open { f > lo } else { f >= lo }) && f < hi => {
                    Ok(f)
                }
                _ => Err(err(format!("{key} = {x} is not {what}"))),
            }
        };
        let eps = |key: &str, default| float(key, default, (0.0, 1.0, true), "a number in (0, 1)");
        let prob = |key: &str| float(key, 0.1, (0.0, 1.0, false), "a probability in [0, 1)");
        let model_type = v.get("model_type").and_then(Value::as_str).unwrap_or("");
        let mut c = match model_type {
            "gpt2" => {
                let d = num("n_embd", limits::MAX_WIDTH)?;
                let mut c = Config::gpt(
                    num("vocab_size", limits::MAX_VOCAB)?,
                    d,
                    num("n_head", limits::MAX_WIDTH)?,
                    num("n_layer", limits::MAX_LAYERS)?,
                    num("n_positions", limits::MAX_POSITIONS)?,
                );
                c.d_ff = int("n_inner", limits::MAX_MLP_WIDTH)?.unwrap_or(4 * d);
                c.layer_norm_eps = eps("layer_norm_epsilon", 1e-5)?;
                c.dropout = prob("resid_pdrop")?;
                // Read for their range only: tunelab has one dropout rate.
                prob("embd_pdrop")?;
                prob("attn_pdrop")?;
                c
            }
            "bert" => {
                let mut c = Config::bert(
                    num("vocab_size", limits::MAX_VOCAB)?,
                    num("hidden_size", limits::MAX_WIDTH)?,
                    num("num_attention_heads", limits::MAX_WIDTH)?,
                    num("num_hidden_layers", limits::MAX_LAYERS)?,
                    num("max_position_embeddings", limits::MAX_POSITIONS)?,
                );
                c.d_ff = num("intermediate_size", limits::MAX_MLP_WIDTH)?;
                c.type_vocab_size = int("type_vocab_size", limits::MAX_TYPE_VOCAB)?.unwrap_or(2);
                c.layer_norm_eps = eps("layer_norm_eps", 1e-12)?;
                c.dropout = prob("hidden_dropout_prob")?;
                prob("attention_probs_dropout_prob")?;
                c
            }
            other => {
                return Err(err(format!(
                    "model_type {other:?} is not supported (gpt2 or bert)"
                )))
            }
        };
        if let Some(act) = v
            .get("activation_function")
            .or_else(|| v.get("hidden_act"))
            .and_then(Value::as_str)
        {
            c.activation = match act {
                "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
                "gelu" => Activation::GeluErf,
                other => {
                    return Err(err(format!(
                        "activation {other:?} is not supported (gelu, gelu_new)"
                    )))
                }
            };
        }
        if let Some(t) = v.get("tie_word_embeddings").and_then(Value::as_bool) {
            c.tied_head = t;
        }
        if let Some(t) = v.get("tunelab") {
            c.causal = t.get("causal").and_then(Value::as_bool).unwrap_or(c.causal);
            c.pre_ln = t.get("pre_ln").and_then(Value::as_bool).unwrap_or(c.pre_ln);
        }
        c.validate().map_err(|e| err(e.to_string()))?;
        Ok(c)
    }
}
