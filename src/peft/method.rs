//! What every method provides: the [`Method`] trait its applied form implements, and the
//! [`MethodEntry`] that lists it in the registry ([`super::registry::METHODS`]) with its name,
//! help, options and example configurations.

use super::options::MethodOptions;
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore};
use crate::data::tokenizer::Tokenizer;
use crate::error::Result;
use crate::nn::Hooks;
use crate::tensor::Float;

/// A fine-tuning method applied to one model.
pub trait Method<F: Float>: Hooks<F> {
    /// The method's name, as `--method` takes it.
    fn name(&self) -> &'static str;

    /// The parameters this method added to the store (none for full fine-tuning and BitFit).
    fn params(&self) -> &[ParamId];

    /// Parameters the method adds that never train (VeRA's shared random projections): saved in
    /// its adapter file beside [`Method::params`], so the file alone rebuilds the method, and
    /// loaded frozen. The default: none.
    fn frozen(&self) -> &[ParamId] {
        &[]
    }

    /// Per-parameter learning-rate multipliers the optimizer applies (LoRA+ scales B's rate).
    /// The default: none, every parameter at the base rate.
    fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        Vec::new()
    }

    /// The parameters of [`Method::params`] that stay frozen (LoRA-FA's A): saved with the
    /// adapter, never trained. The default: none.
    fn frozen_params(&self) -> Vec<ParamId> {
        Vec::new()
    }

    /// After training: fold anything that only helps optimisation into the saved form (prefix
    /// tuning drops its reparameterization MLP; PiSSA and OLoRA become plain LoRA on the
    /// original base). The default does nothing.
    fn finalize(&mut self, _store: &mut ParamStore<F>) -> Result<()> {
        Ok(())
    }

    /// Folds the method into the base weights of `store`, so that the plain model (no hooks)
    /// computes what the model with this method computed; consumes the method, whose hooks
    /// would apply it twice. LoRA adds s·B A, DoRA rescales W + s·B A per output, IA3 scales
    /// weight columns and rows; full fine-tuning and BitFit already changed the weights in
    /// place. The default: an error, for methods that are not a change of the weights
    /// (adapters add a non-linear path, prefix and prompt tuning add tokens).
    fn merge_into_base(self: Box<Self>, _store: &mut ParamStore<F>) -> Result<()> {
        Err(crate::error::Error::Invalid {
            op: "merge into base",
            detail: format!(
                "{} cannot be folded into the base weights (it is not a change of the weights); \
                 LoRA, DoRA, IA3, full and BitFit can",
                self.name()
            ),
        })
    }

    /// The spec an adapter saved now records, given the one the method was applied with (after
    /// [`Method::finalize`]: a converted PiSSA is a LoRA of rank 2r; AdaLoRA adds its rank
    /// pattern). The default: `spec` as it is.
    fn saved_spec(&self, spec: &MethodSpec) -> MethodSpec {
        spec.clone()
    }
}

/// One method's line in the registry.
pub struct MethodEntry {
    /// `--method`'s value and the `method` tag of adapter configs ([`MethodSpec::name`]).
    pub name: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// Whether the model computes exactly what the base computes right after `apply` (LoRA's
    /// B = 0, an adapter's zero up-projection); prefix and prompt tuning add tokens and do not.
    pub identity_at_init: bool,
    /// The spec from the command line's options (`tok`, the base's tokenizer when it loaded,
    /// turns words into ids for prompt tuning's init).
    pub spec: fn(&MethodOptions, Option<&Tokenizer>) -> Result<MethodSpec>,
    /// The configurations `compare`, the benchmarks and the tests run.
    pub examples: fn(&ExampleContext) -> Examples,
}

/// What example configurations may depend on.
#[derive(Debug, Clone, Default)]
pub struct ExampleContext {
    /// Token ids of words of the base's vocabulary, for initialising prompt tuning from them in
    /// `compare` (empty: random init).
    pub vocab_init: Vec<usize>,
}

/// One row of `tunelab compare`'s default line-up.
#[derive(Debug, Clone)]
pub struct CompareExample {
    pub label: &'static str,
    pub spec: MethodSpec,
    /// The learning rate the method is compared at (see `crate::lab::compare::Entry`).
    pub lr: f64,
    /// How the base's block Linears are stored for this row (f32; nf4 for QLoRA's row).
    pub base_dtype: crate::nn::BaseDtype,
}

/// A method's example configurations, each list in the order it is run.
#[derive(Debug, Clone, Default)]
pub struct Examples {
    /// Rows of `tunelab compare`.
    pub compare: Vec<CompareExample>,
    /// Benchmarked training steps (`crate::lab::bench`), by benchmark id.
    pub bench: Vec<(&'static str, MethodSpec)>,
    /// Small configurations the tests run on tiny models, by a label for messages and file
    /// names. Every method has at least one.
    pub tests: Vec<(&'static str, MethodSpec)>,
}
