//! Fine-tuning methods, one file each, applied to a model without changing the model code.
//!
//! A method is a reparameterization: it decides which base parameters stay trainable, may add
//! parameters of its own to the [`ParamStore`], and plugs into the transformer through the
//! [`Hooks`] it implements (LoRA adds a low-rank path to chosen Linears, prefix tuning prepends
//! keys and values, ...). The transformer calls the hooks and never asks which method is active.
//!
//! Applying a method freezes every parameter present in the store, then unfreezes what the
//! method trains and adds its own parameters as trainable. A task head created before
//! [`apply`] is frozen with the rest; callers unfreeze it (heads are always trained, as PEFT's
//! `modules_to_save`).

pub mod adapter;
pub mod bitfit;
pub mod dora;
pub mod full;
pub mod ia3;
pub mod lora;
pub mod prefix;
pub mod prompt;
pub mod store;

use crate::autodiff::{ParamId, ParamStore};
use crate::error::Result;
use crate::nn::{Hooks, Transformer};
use crate::tensor::Float;
use serde::{Deserialize, Serialize};

/// A fine-tuning method applied to one model.
pub trait Method<F: Float>: Hooks<F> {
    /// The method's name, as `--method` takes it.
    fn name(&self) -> &'static str;

    /// The parameters this method added to the store (none for full fine-tuning and BitFit).
    fn params(&self) -> &[ParamId];

    /// After training: fold anything that only helps optimisation into the saved form (prefix
    /// tuning drops its reparameterization MLP). The default does nothing.
    fn finalize(&mut self, _store: &mut ParamStore<F>) -> Result<()> {
        Ok(())
    }
}

/// Which method, with its options; serialised into an adapter's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum MethodSpec {
    /// Every parameter trains; with `last_k`, only the last k blocks (and the head).
    Full { last_k: Option<usize> },
    /// Biases only.
    Bitfit,
    /// Low-rank updates of chosen Linears.
    Lora(lora::LoraConfig),
    /// LoRA with a learned magnitude per output column.
    Dora(lora::LoraConfig),
    /// Bottleneck adapters after the attention output and after the MLP (two per block, GELU).
    Houlsby { bottleneck: usize },
    /// Bottleneck adapters after the MLP only (one per block, ReLU).
    Pfeiffer { bottleneck: usize },
    /// Learned rescaling of keys, values and MLP activations.
    Ia3,
    /// Prefix tuning: P learned keys and values prepended in every layer, trained through an
    /// MLP of width `hidden` unless `reparameterize` is false.
    Prefix {
        n_virtual: usize,
        #[serde(default = "prefix::default_reparameterize")]
        reparameterize: bool,
        hidden: usize,
    },
    /// Prompt tuning: P soft-prompt embeddings prepended to the input.
    Prompt {
        n_virtual: usize,
        init: prompt::PromptInit,
    },
}

impl MethodSpec {
    /// The names `--method` accepts.
    pub const NAMES: &'static [&'static str] = &[
        "full", "bitfit", "lora", "dora", "houlsby", "pfeiffer", "ia3", "prefix", "prompt",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            MethodSpec::Full { .. } => "full",
            MethodSpec::Bitfit => "bitfit",
            MethodSpec::Lora(_) => "lora",
            MethodSpec::Dora(_) => "dora",
            MethodSpec::Houlsby { .. } => "houlsby",
            MethodSpec::Pfeiffer { .. } => "pfeiffer",
            MethodSpec::Ia3 => "ia3",
            MethodSpec::Prefix { .. } => "prefix",
            MethodSpec::Prompt { .. } => "prompt",
        }
    }
}

/// Applies `spec` to `model`: sets what trains and adds the method's parameters.
pub fn apply<F: Float>(
    spec: &MethodSpec,
    model: &Transformer,
    store: &mut ParamStore<F>,
    seed: u64,
) -> Result<Box<dyn Method<F>>> {
    store.set_all_trainable(false);
    Ok(match spec {
        MethodSpec::Full { last_k } => Box::new(full::Full::apply(model, store, *last_k)?),
        MethodSpec::Bitfit => Box::new(bitfit::BitFit::apply(store)),
        MethodSpec::Lora(c) => Box::new(lora::Lora::apply(model, store, c.clone(), false, seed)?),
        MethodSpec::Dora(c) => Box::new(lora::Lora::apply(model, store, c.clone(), true, seed)?),
        MethodSpec::Houlsby { bottleneck } => Box::new(adapter::Adapter::apply(
            model,
            store,
            adapter::AdapterConfig::houlsby(*bottleneck),
            seed,
        )?),
        MethodSpec::Pfeiffer { bottleneck } => Box::new(adapter::Adapter::apply(
            model,
            store,
            adapter::AdapterConfig::pfeiffer(*bottleneck),
            seed,
        )?),
        MethodSpec::Ia3 => Box::new(ia3::Ia3::apply(model, store)?),
        MethodSpec::Prefix {
            n_virtual,
            reparameterize,
            hidden,
        } => {
            let config = prefix::PrefixConfig {
                n_virtual: *n_virtual,
                reparameterize: *reparameterize,
                hidden: *hidden,
            };
            Box::new(prefix::Prefix::apply(model, store, config, seed)?)
        }
        MethodSpec::Prompt { n_virtual, init } => Box::new(prompt::Prompt::apply(
            model,
            store,
            *n_virtual,
            init.clone(),
            seed,
        )?),
    })
}
