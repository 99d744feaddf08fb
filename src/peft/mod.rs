//! Fine-tuning methods, one file each, applied to a model without changing the model code.
//!
//! A method is a reparameterization: it decides which base parameters stay trainable, may add
//! parameters of its own to the [`ParamStore`](crate::autodiff::ParamStore), and plugs into
//! the transformer through the [`Hooks`](crate::nn::Hooks) it implements (LoRA adds a low-rank
//! path to chosen Linears, prefix tuning prepends keys and values, ...). The transformer calls
//! the hooks and never asks which method is active.
//!
//! Applying a method freezes every parameter present in the store, then unfreezes what the
//! method trains and adds its own parameters as trainable. A task head created before
//! [`apply`] is frozen with the rest; callers unfreeze it (heads are always trained, as PEFT's
//! `modules_to_save`).
//!
//! ## Adding a method
//!
//! 1. `src/peft/<name>.rs`: the method (a struct implementing [`Hooks`](crate::nn::Hooks) and
//!    [`Method`]), and its `pub const ENTRY: MethodEntry` (name, one-line help, how
//!    [`MethodOptions`] become its spec, its example configurations for `compare`, the
//!    benchmarks and the tests), plus `pub mod <name>;` below.
//! 2. `spec.rs`: its [`MethodSpec`] variant (what its adapter config records) and `name()` arm.
//! 3. `registry.rs`: `&<name>::ENTRY` in [`METHODS`], and its arm in [`apply`]; the test
//!    `every_method_spec_variant_has_a_registry_line` fails until the line is there.
//! 4. `options.rs`, only if it needs a knob the other methods do not have.
//!
//! Everything else (the `--method` help, `compare`, `lab::bench`, the test line-ups) reads
//! the registry.

pub mod adalora;
pub mod adapter;
pub mod bitfit;
pub mod blocks;
pub mod dora;
pub mod full;
pub mod ia3;
pub mod limits;
pub mod linalg;
pub mod loha;
pub mod lokr;
pub mod lora;
pub mod lora_fa;
pub mod method;
pub mod options;
pub mod prefix;
pub mod prompt;
pub mod registry;
pub mod spec;
pub mod store;
pub mod vera;

pub use method::{Method, MethodEntry};
pub use options::MethodOptions;
pub use registry::{apply, MethodArgs, METHODS};
pub use spec::MethodSpec;
