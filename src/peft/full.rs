//! Full fine-tuning: every parameter of the model trains. Partial fine-tuning: only the last k
//! blocks (plus the final LayerNorm and the task head) train, the rest stays frozen.

use super::Method;
use crate::autodiff::{ParamId, ParamStore};
use crate::error::{invalid, Result};
use crate::nn::{Hooks, Transformer};
use crate::tensor::Float;

/// Full (or last-k partial) fine-tuning. Adds no parameters and no hooks.
pub struct Full {
    pub last_k: Option<usize>,
}

impl Full {
    // ANCHOR: apply
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        last_k: Option<usize>,
    ) -> Result<Self> {
        let l = model.config.n_layers;
        match last_k {
            None => store.set_all_trainable(true),
            Some(k) if k > l => {
                return invalid("full", format!("last_k {k} exceeds the model's {l} blocks"))
            }
            Some(k) => {
                let first = l - k;
                let ids: Vec<ParamId> = store.ids().collect();
                for id in ids {
                    let name = store.name(id);
                    let trains = match block_index(name) {
                        Some(i) => i >= first,
                        // Outside the blocks: embeddings stay frozen; the final LayerNorm trains.
                        None => name.starts_with("ln_f."),
                    };
                    store.set_trainable(id, trains);
                }
            }
        }
        Ok(Self { last_k })
    }
    // ANCHOR_END: apply
}

/// The block a parameter belongs to, from its Hugging Face name (`h.3.` or `encoder.layer.3.`).
pub fn block_index(name: &str) -> Option<usize> {
    let rest = name
        .strip_prefix("h.")
        .or_else(|| name.strip_prefix("encoder.layer."))?;
    rest.split('.').next()?.parse().ok()
}

impl<F: Float> Hooks<F> for Full {}

impl<F: Float> Method<F> for Full {
    fn name(&self) -> &'static str {
        "full"
    }

    fn params(&self) -> &[ParamId] {
        &[]
    }
}
