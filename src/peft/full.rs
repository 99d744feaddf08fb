//! Full fine-tuning: every parameter of the model trains. Partial fine-tuning: only the last k
//! blocks (plus the final LayerNorm and the task head) train, the rest stays frozen.

use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore};
use crate::error::{invalid, Result};
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Transformer};
use crate::tensor::Float;

/// Full fine-tuning's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "full",
    help: "every parameter trains (--last-k: only the last k blocks and the head)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Full { last_k: o.last_k }),
    examples,
};

fn examples(_: &ExampleContext) -> Examples {
    let full = MethodSpec::Full { last_k: None };
    Examples {
        compare: vec![
            CompareExample {
                label: "full",
                spec: full.clone(),
                lr: 5e-4,
                base_dtype: BaseDtype::F32,
            },
            CompareExample {
                label: "last-2 blocks",
                spec: MethodSpec::Full { last_k: Some(2) },
                lr: 1e-3,
                base_dtype: BaseDtype::F32,
            },
        ],
        bench: vec![("full", full.clone())],
        tests: vec![
            ("full", full),
            ("full_last1", MethodSpec::Full { last_k: Some(1) }),
        ],
    }
}

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

    /// The trained values are the base weights already: nothing to fold.
    fn merge_into_base(self: Box<Self>, _store: &mut ParamStore<F>) -> Result<()> {
        Ok(())
    }
}
