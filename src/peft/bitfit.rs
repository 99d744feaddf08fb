//! BitFit (Ben Zaken et al., 2021): train only the bias terms of the model (every `*.bias`,
//! LayerNorm biases included); all weight matrices stay frozen.

use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore};
use crate::error::Result;
use crate::nn::BaseDtype;
use crate::nn::Hooks;
use crate::tensor::Float;

/// BitFit's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "bitfit",
    help: "biases only",
    identity_at_init: true,
    spec: |_, _| Ok(MethodSpec::Bitfit),
    examples,
};

fn examples(_: &ExampleContext) -> Examples {
    Examples {
        compare: vec![CompareExample {
            label: "bitfit",
            spec: MethodSpec::Bitfit,
            lr: 5e-3,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![("bitfit", MethodSpec::Bitfit)],
        tests: vec![("bitfit", MethodSpec::Bitfit)],
    }
}

pub struct BitFit;

impl BitFit {
    // ANCHOR: apply
    pub fn apply<F: Float>(store: &mut ParamStore<F>) -> Self {
        let ids: Vec<ParamId> = store.ids().collect();
        for id in ids {
            let is_bias =
                store.name(id).ends_with(".bias") || store.name(id) == "cls.predictions.bias";
            store.set_trainable(id, is_bias);
        }
        BitFit
    }
    // ANCHOR_END: apply
}

impl<F: Float> Hooks<F> for BitFit {}

impl<F: Float> Method<F> for BitFit {
    fn name(&self) -> &'static str {
        "bitfit"
    }

    fn params(&self) -> &[ParamId] {
        &[]
    }

    /// The trained values are the base weights already: nothing to fold.
    fn merge_into_base(self: Box<Self>, _store: &mut ParamStore<F>) -> Result<()> {
        Ok(())
    }
}
