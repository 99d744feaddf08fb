//! The registry: every method, one line each in [`METHODS`]. The command line (`--method`, its
//! help), `compare`'s line-up, the benchmarks ([`crate::lab::bench::methods`]) and the tests
//! take their methods from here; [`apply`] turns a spec into the applied method.

use super::method::{CompareExample, ExampleContext, Method, MethodEntry};
use super::options::MethodOptions;
use super::spec::MethodSpec;
use super::{
    adalora, adapter, bitfit, dora, full, ia3, loha, lokr, lora, lora_fa, prefix, prompt, vera,
};
use crate::autodiff::ParamStore;
use crate::data::tokenizer::Tokenizer;
use crate::error::{Error, Result};
use crate::nn::Transformer;
use crate::tensor::Float;
use clap::Args;

/// Every method, in the order `--help` lists them and `compare` runs them.
pub const METHODS: &[&MethodEntry] = &[
    &full::ENTRY,
    &bitfit::ENTRY,
    &adapter::HOULSBY,
    &adapter::PFEIFFER,
    &lora::ENTRY,
    &dora::ENTRY,
    &lora_fa::ENTRY,
    &adalora::ENTRY,
    &loha::ENTRY,
    &lokr::ENTRY,
    &vera::ENTRY,
    &ia3::ENTRY,
    &prefix::ENTRY,
    &prompt::ENTRY,
];

const NAME_LIST: [&str; METHODS.len()] = {
    let mut out = [""; METHODS.len()];
    let mut i = 0;
    while i < METHODS.len() {
        out[i] = METHODS[i].name;
        i += 1;
    }
    out
};

impl MethodSpec {
    /// The names `--method` accepts, in registry order.
    pub const NAMES: &'static [&'static str] = &NAME_LIST;

    /// This spec's line in the registry.
    pub fn entry(&self) -> &'static MethodEntry {
        find(self.name()).expect("every MethodSpec variant has a registry line (tested)")
    }
}

/// The method named `name`.
pub fn find(name: &str) -> Option<&'static MethodEntry> {
    METHODS.iter().copied().find(|m| m.name == name)
}

/// Applies `spec` to `model`: freezes every parameter in the store, then lets the method set
/// what trains and add its own parameters (initialised from `seed`).
///
/// The spec is first checked against the model ([`super::limits::check`]); an error names the
/// command-line option of the field out of range (`--r`, `--n-virtual`, ...), since specs
/// read from an adapter config are checked, naming the file, before they get here
/// ([`super::store`]).
pub fn apply<F: Float>(
    spec: &MethodSpec,
    model: &Transformer,
    store: &mut ParamStore<F>,
    seed: u64,
) -> Result<Box<dyn Method<F>>> {
    super::limits::check(spec, model).map_err(|l| Error::Invalid {
        op: l.flag(),
        detail: l.detail,
    })?;
    if matches!(spec, MethodSpec::Full { .. }) && store.has_quantized() {
        return Err(Error::Invalid {
            op: "--base-dtype",
            detail: "full fine-tuning trains the base's weights, which a quantised base \
                     (bf16, nf4) keeps frozen; use f32, or a method that leaves them frozen \
                     (lora is QLoRA on an nf4 base)"
                .into(),
        });
    }
    store.set_all_trainable(false);
    Ok(match spec {
        MethodSpec::Full { last_k } => Box::new(full::Full::apply(model, store, *last_k)?),
        MethodSpec::Bitfit => Box::new(bitfit::BitFit::apply(store)),
        MethodSpec::Lora(c) => Box::new(lora::Lora::apply(model, store, c.clone(), seed)?),
        MethodSpec::Dora(c) => Box::new(dora::Dora::apply(model, store, c.clone(), seed)?),
        MethodSpec::LoraFa(c) => Box::new(lora_fa::LoraFa::apply(model, store, c.clone(), seed)?),
        MethodSpec::Adalora(c) => Box::new(adalora::AdaLora::apply(model, store, c.clone(), seed)?),
        MethodSpec::Loha(c) => Box::new(loha::Loha::apply(model, store, c.clone(), seed)?),
        MethodSpec::Lokr(c) => Box::new(lokr::Lokr::apply(model, store, c.clone(), seed)?),
        MethodSpec::Vera(c) => Box::new(vera::Vera::apply(model, store, c.clone(), seed)?),
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

/// `compare`'s line-up: every method's compare rows, in registry order.
pub fn compare_examples(ctx: &ExampleContext) -> Vec<CompareExample> {
    METHODS
        .iter()
        .flat_map(|m| (m.examples)(ctx).compare)
        .collect()
}

/// The benchmarked configurations, by benchmark id, in registry order.
pub fn bench_examples() -> Vec<(&'static str, MethodSpec)> {
    let ctx = ExampleContext::default();
    METHODS
        .iter()
        .flat_map(|m| (m.examples)(&ctx).bench)
        .collect()
}

/// The tests' small configurations with their method, by label, in registry order.
pub fn test_examples() -> Vec<(&'static MethodEntry, &'static str, MethodSpec)> {
    let ctx = ExampleContext::default();
    METHODS
        .iter()
        .flat_map(|&m| {
            (m.examples)(&ctx)
                .tests
                .into_iter()
                .map(move |(label, spec)| (m, label, spec))
        })
        .collect()
}

/// `--method`'s help: the names.
fn names_help() -> String {
    MethodSpec::NAMES.join(", ")
}

/// The methods with their one-line help, a line each, for a command's long help.
pub fn help_table() -> String {
    let width = METHODS.iter().map(|m| m.name.len()).max().unwrap_or(0);
    let mut out = String::from("Methods:");
    for m in METHODS {
        out.push_str(&format!("\n  {:width$}  {}", m.name, m.help));
    }
    out
}

/// The method and its options, as the command line takes them.
#[derive(Args, Debug, Clone)]
pub struct MethodArgs {
    /// The fine-tuning method.
    #[arg(long, default_value = "lora", help = names_help())]
    pub method: String,
    #[command(flatten)]
    pub options: MethodOptions,
}

impl MethodArgs {
    /// The spec of the chosen method (`tok`, the base's tokenizer, for prompt tuning's
    /// `--prompt-init-text`).
    pub fn spec(&self, tok: Option<&Tokenizer>) -> Result<MethodSpec> {
        let entry = find(&self.method).ok_or_else(|| Error::Invalid {
            op: "--method",
            detail: format!(
                "unknown method {:?}; choose one of {}",
                self.method,
                MethodSpec::NAMES.join(", ")
            ),
        })?;
        (entry.spec)(&self.options, tok)
    }
}

#[cfg(test)]
mod tests {
    use crate::peft::registry::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        method: MethodArgs,
    }

    /// The match names every variant (no `_` arm): a new variant does not compile here until it
    /// has an arm and `VARIANTS` counts it, and this fails until a registry line gives a test
    /// example of it.
    #[test]
    fn every_method_spec_variant_has_a_registry_line() {
        const VARIANTS: usize = 14;
        let index = |spec: &MethodSpec| match spec {
            MethodSpec::Full { .. } => 0,
            MethodSpec::Bitfit => 1,
            MethodSpec::Lora(_) => 2,
            MethodSpec::Dora(_) => 3,
            MethodSpec::LoraFa(_) => 9,
            MethodSpec::Adalora(_) => 10,
            MethodSpec::Houlsby { .. } => 4,
            MethodSpec::Pfeiffer { .. } => 5,
            MethodSpec::Ia3 => 6,
            MethodSpec::Prefix { .. } => 7,
            MethodSpec::Prompt { .. } => 8,
            MethodSpec::Loha(_) => 11,
            MethodSpec::Lokr(_) => 12,
            MethodSpec::Vera(_) => 13,
        };
        let mut seen = [false; VARIANTS];
        for (_, _, spec) in test_examples() {
            seen[index(&spec)] = true;
        }
        for (i, s) in seen.iter().enumerate() {
            assert!(
                s,
                "MethodSpec variant {i} has no registry line with a test example"
            );
        }
        assert_eq!(METHODS.len(), VARIANTS, "one registry line per variant");
    }

    #[test]
    fn examples_belong_to_their_method_and_labels_are_unique() {
        let ctx = ExampleContext {
            vocab_init: vec![1, 2],
        };
        let mut labels = Vec::new();
        for m in METHODS {
            let ex = (m.examples)(&ctx);
            assert!(!ex.tests.is_empty(), "{} has no test example", m.name);
            let specs = ex
                .compare
                .iter()
                .map(|c| &c.spec)
                .chain(ex.bench.iter().map(|b| &b.1))
                .chain(ex.tests.iter().map(|t| &t.1));
            for spec in specs {
                assert_eq!(
                    spec.name(),
                    m.name,
                    "an example of {} is a {spec:?}",
                    m.name
                );
                assert_eq!(spec.entry().name, m.name);
            }
            labels.extend(ex.compare.iter().map(|c| c.label));
            labels.extend(ex.bench.iter().map(|b| b.0));
            labels.extend(ex.tests.iter().map(|t| t.0));
        }
        let names: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
        assert_eq!(MethodSpec::NAMES, names.as_slice());
        for (kind, list) in [
            ("method names", names),
            (
                "compare labels",
                compare_examples(&ctx).iter().map(|c| c.label).collect(),
            ),
            (
                "benchmark ids",
                bench_examples().iter().map(|b| b.0).collect(),
            ),
            ("test labels", test_examples().iter().map(|t| t.1).collect()),
        ] {
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "{kind} repeat: {list:?}");
        }
    }

    #[test]
    fn every_method_builds_its_spec_from_the_default_options() {
        for m in METHODS {
            let cli = Cli::try_parse_from(["tunelab", "--method", m.name]).unwrap();
            let spec = cli.method.spec(None).unwrap();
            assert_eq!(spec.name(), m.name);
        }
        let cli = Cli::try_parse_from(["tunelab", "--method", "boft"]).unwrap();
        let err = cli.method.spec(None).unwrap_err().to_string();
        assert!(err.contains("unknown method \"boft\""), "{err}");
        assert!(err.contains(&MethodSpec::NAMES.join(", ")), "{err}");
    }

    #[test]
    fn lora_options_parse_targets_through_the_shared_vocabulary() {
        let cli = Cli::try_parse_from(["tunelab", "--targets", "attn,up_proj"]).unwrap();
        let MethodSpec::Lora(c) = cli.method.spec(None).unwrap() else {
            panic!("lora is the default method");
        };
        assert_eq!(c.targets, ["q", "k", "v", "o", "fc"]);
        let cli = Cli::try_parse_from(["tunelab", "--targets", "q,w"]).unwrap();
        assert!(cli.method.spec(None).is_err());
    }
}
