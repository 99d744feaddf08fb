//! Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2020): a small two-layer MLP with
//! a residual connection, inserted after a sublayer's output projection,
//!
//! ```text
//! h ↦ h + up(act(down(h)))      down: C → m,  up: m → C,  both with biases
//! ```
//!
//! where m, the bottleneck, is much smaller than C. `up` starts at exactly zero (weight and
//! bias), so every adapter is the identity and the model is unchanged at step 0; `down` starts
//! uniform(±1/√C), as LoRA's A (and the MAM-adapter init), so `up` gets a useful gradient from
//! the first step. The base model stays frozen, LayerNorms included: Houlsby et al. also train
//! the LayerNorms, we keep them frozen so the adapter is the only thing that trains (use
//! BitFit-style unfreezing on top if you want them).
//!
//! Placement, in the hook vocabulary of [`crate::nn::hooks`]:
//! - **Houlsby**: two adapters per block, on the output of the attention output projection
//!   ([`Role::AttnOut`]) and on the output of the MLP's second Linear ([`Role::Proj`]), before
//!   dropout and the residual add, as in the paper. GELU by default (the paper's `adapter-bert`).
//! - **Pfeiffer**: one adapter per block, after the MLP only ([`Role::Proj`]). ReLU by default
//!   (AdapterHub's `PfeifferConfig`). AdapterHub also arranges the residual and the block's
//!   LayerNorm differently around it (`original_ln_before`); here it is the same bottleneck as
//!   Houlsby's, placed once, so the two differ only in placement and activation.
//!
//! The adapter's weights are stored as PyTorch `nn.Linear` weights, (out, in), for both
//! architectures, under the path of the Linear they follow:
//!
//! | parameter | shape |
//! |---|---|
//! | `<module>.adapter.down.weight` | (m, C) |
//! | `<module>.adapter.down.bias` | (m) |
//! | `<module>.adapter.up.weight` | (C, m) |
//! | `<module>.adapter.up.bias` | (C) |
//!
//! e.g. `h.0.attn.c_proj.adapter.down.weight`, `h.0.mlp.c_proj.adapter.up.bias` (GPT-2) or
//! `encoder.layer.0.attention.output.dense.adapter.down.weight`,
//! `encoder.layer.0.output.dense.adapter.up.bias` (BERT).
//!
//! Parameters: (2·C·m + m + C) per adapter; times 2·L for Houlsby, L for Pfeiffer.

use super::lora::block_linears;
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Role, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, IxDyn};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Houlsby adapters' line in the registry.
pub const HOULSBY: MethodEntry = MethodEntry {
    name: "houlsby",
    help: "bottleneck adapters after attention and after the MLP, two per block (--bottleneck)",
    identity_at_init: true,
    spec: |o, _| {
        Ok(MethodSpec::Houlsby {
            bottleneck: o.bottleneck,
        })
    },
    examples: houlsby_examples,
};

/// Pfeiffer adapters' line in the registry.
pub const PFEIFFER: MethodEntry = MethodEntry {
    name: "pfeiffer",
    help: "a bottleneck adapter after the MLP, one per block (--bottleneck)",
    identity_at_init: true,
    spec: |o, _| {
        Ok(MethodSpec::Pfeiffer {
            bottleneck: o.bottleneck,
        })
    },
    examples: pfeiffer_examples,
};

/// Bottleneck 16 in `compare` and the benchmarks; 2 and 3 in the tests.
fn houlsby_examples(_: &ExampleContext) -> Examples {
    let spec = |bottleneck| MethodSpec::Houlsby { bottleneck };
    Examples {
        compare: vec![CompareExample {
            label: "houlsby",
            spec: spec(16),
            lr: 1e-2,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![("houlsby_16", spec(16))],
        tests: vec![("houlsby", spec(2)), ("houlsby_b3", spec(3))],
    }
}

fn pfeiffer_examples(_: &ExampleContext) -> Examples {
    let spec = |bottleneck| MethodSpec::Pfeiffer { bottleneck };
    Examples {
        compare: vec![CompareExample {
            label: "pfeiffer",
            spec: spec(16),
            lr: 1e-2,
            base_dtype: BaseDtype::F32,
        }],
        bench: vec![],
        tests: vec![("pfeiffer", spec(2)), ("pfeiffer_b3", spec(3))],
    }
}

/// Where the adapters go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// After the attention output projection and after the MLP: two per block.
    Houlsby,
    /// After the MLP only: one per block.
    Pfeiffer,
}

impl Placement {
    /// Whether a Linear in this role gets an adapter on its output.
    pub fn wants(self, role: Role) -> bool {
        match self {
            Placement::Houlsby => matches!(role, Role::AttnOut | Role::Proj),
            Placement::Pfeiffer => role == Role::Proj,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Placement::Houlsby => "houlsby",
            Placement::Pfeiffer => "pfeiffer",
        }
    }
}

/// The adapter's non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdapterActivation {
    /// GELU, tanh approximation.
    Gelu,
    Relu,
}

/// Adapter options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    pub placement: Placement,
    /// m: the bottleneck width.
    pub bottleneck: usize,
    pub activation: AdapterActivation,
}

impl AdapterConfig {
    /// Two adapters per block, GELU.
    pub fn houlsby(bottleneck: usize) -> Self {
        Self {
            placement: Placement::Houlsby,
            bottleneck,
            activation: AdapterActivation::Gelu,
        }
    }

    /// One adapter per block after the MLP, ReLU.
    pub fn pfeiffer(bottleneck: usize) -> Self {
        Self {
            placement: Placement::Pfeiffer,
            bottleneck,
            activation: AdapterActivation::Relu,
        }
    }
}

/// One bottleneck: the ids of its four tensors.
#[derive(Debug, Clone)]
pub struct Bottleneck {
    /// (m, C)
    pub down_weight: ParamId,
    /// (m)
    pub down_bias: ParamId,
    /// (C, m)
    pub up_weight: ParamId,
    /// (C)
    pub up_bias: ParamId,
}

/// Bottleneck adapters applied to a model.
pub struct Adapter {
    pub config: AdapterConfig,
    /// The adapters, by the module path of the Linear they follow.
    pub adapters: HashMap<String, Bottleneck>,
    params: Vec<ParamId>,
}

impl Adapter {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: AdapterConfig,
        seed: u64,
    ) -> Result<Self> {
        let m = config.bottleneck;
        if m == 0 {
            return invalid("adapter", "bottleneck must be at least 1");
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut adapters = HashMap::new();
        let mut params = Vec::new();
        for lin in block_linears(model) {
            if !config.placement.wants(lin.role) {
                continue;
            }
            let c = lin.d_out;
            let p = format!("{}.adapter", lin.module);
            let bound = 1.0 / (c as f64).sqrt();
            let down0 = Array2::<f64>::random_using(
                (m, c),
                Uniform::new(-bound, bound).expect("bound > 0"),
                &mut rng,
            );
            let zeros = |shape: &[usize]| ArrayD::<F>::zeros(IxDyn(shape));
            let b = Bottleneck {
                down_weight: store.add(
                    format!("{p}.down.weight"),
                    down0.mapv(F::of).into_dyn(),
                    true,
                )?,
                down_bias: store.add(format!("{p}.down.bias"), zeros(&[m]), true)?,
                up_weight: store.add(format!("{p}.up.weight"), zeros(&[c, m]), true)?,
                up_bias: store.add(format!("{p}.up.bias"), zeros(&[c]), true)?,
            };
            params.extend([b.down_weight, b.down_bias, b.up_weight, b.up_bias]);
            adapters.insert(lin.module.clone(), b);
        }
        if adapters.is_empty() {
            return invalid("adapter", "this model has no blocks to put adapters in");
        }
        Ok(Self {
            config,
            adapters,
            params,
        })
    }

    // ANCHOR: forward
    /// h + up(act(down(h))) for h (…, C).
    pub fn forward<F: Float>(&self, tape: &mut Tape<'_, F>, b: &Bottleneck, h: Var) -> Result<Var> {
        let (wd, bd) = (tape.param(b.down_weight), tape.param(b.down_bias));
        let (wu, bu) = (tape.param(b.up_weight), tape.param(b.up_bias));
        let z = tape.matmul_t(h, wd, false, true)?; // (…, m)
        let z = tape.add(z, bd)?;
        let z = match self.config.activation {
            AdapterActivation::Gelu => tape.gelu_tanh(z)?,
            AdapterActivation::Relu => tape.relu(z)?,
        };
        let u = tape.matmul_t(z, wu, false, true)?; // (…, C)
        let u = tape.add(u, bu)?;
        tape.add(h, u)
    }
    // ANCHOR_END: forward
}

impl<F: Float> Hooks<F> for Adapter {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, _x: Var, y: Var) -> Result<Var> {
        match self.adapters.get(site.module) {
            Some(b) => self.forward(tape, b, y),
            None => Ok(y),
        }
    }
}

impl<F: Float> Method<F> for Adapter {
    fn name(&self) -> &'static str {
        self.config.placement.name()
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }
}
