//! LoHa (Hyeon-Woo et al., 2022, FedPara; LyCORIS): the weight update is the Hadamard
//! (elementwise) product of two low-rank products,
//! ΔW = (W1a · W1b) ⊙ (W2a · W2b) · s, with W1a, W2a (d_out, r), W1b, W2b (r, d_in), s = α / r.
//! Each factor has rank at most r, their elementwise product rank up to r², for 2·r·(d_in + d_out)
//! parameters: twice LoRA's at the same r, with up to r times its rank.
//!
//! PEFT's init (`init_weights=True`): W1a, W1b and W2a Kaiming-uniform (a = √5, i.e.
//! uniform(±1/√fan_in) with fan_in the tensor's second dimension), W2b zero, so ΔW = 0 and the
//! model is unchanged at step 0 (PEFT's `rank_dropout` and `module_dropout` are not implemented:
//! they are 0 here).
//!
//! The forward builds ΔW from the tape's matmul, mul and scale, so the gradients of the four
//! factors come from those ops' backward: y' = y + x ΔWᵀ. Targets, names and GPT-2's fused c_attn
//! are handled as by LoRA ([`super::blocks`]): `h.0.attn.c_attn.hada_w1_a.q` is W1a of c_attn's
//! query block. Merging folds ΔW into the frozen weight.

use super::blocks::{self, Block};
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::options::MethodOptions;
use super::spec::{LohaConfig, MethodSpec};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::{Hooks, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;

/// LoHa's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "loha",
    help: "Hadamard product of two low-rank products (W1a·W1b)⊙(W2a·W2b) on chosen Linears \
           (--r, --alpha, --targets)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Loha(config(o)?)),
    examples,
};

/// LoHa's options from the command line's.
pub fn config(o: &MethodOptions) -> Result<LohaConfig> {
    let targets = super::lora::parse_targets(&o.targets.join(","))?;
    Ok(LohaConfig {
        r: o.r,
        alpha: o.alpha,
        targets: targets.iter().map(|t| t.name().to_string()).collect(),
    })
}

fn examples(_: &ExampleContext) -> Examples {
    let test = |r, alpha, targets: &[&str]| LohaConfig {
        r,
        alpha,
        targets: targets.iter().map(|t| t.to_string()).collect(),
    };
    Examples {
        // r = 4: the parameters of LoRA r=8 (2·r·(d_in + d_out) per Linear), rank up to 16.
        compare: vec![CompareExample {
            label: "loha r=4 q,v",
            spec: MethodSpec::Loha(test(4, 4.0, &["q", "v"])),
            // Chosen on sentiment's validation split (configs/compare.toml).
            lr: 3e-2,
            base_dtype: crate::nn::BaseDtype::F32,
        }],
        bench: vec![("loha_r4_qv", MethodSpec::Loha(test(4, 4.0, &["q", "v"])))],
        tests: vec![
            ("loha", MethodSpec::Loha(test(2, 4.0, &["q", "v"]))),
            (
                "loha_qkv_fc",
                MethodSpec::Loha(test(2, 3.0, &["qkv", "o", "fc"])),
            ),
        ],
    }
}

/// The four factors of one block.
#[derive(Debug, Clone)]
pub struct LohaPart {
    pub block: Block,
    /// (width, r)
    pub w1_a: ParamId,
    /// (r, d_in)
    pub w1_b: ParamId,
    /// (width, r)
    pub w2_a: ParamId,
    /// (r, d_in), zero at init.
    pub w2_b: ParamId,
}

/// LoHa applied to a model.
pub struct Loha {
    pub config: LohaConfig,
    /// The parts of each targeted Linear, by module path.
    pub targets: HashMap<String, Vec<LohaPart>>,
    params: Vec<ParamId>,
    merged: bool,
}

/// uniform(±1/√cols): PyTorch's `kaiming_uniform_(a=√5)` of a (rows, cols) tensor.
pub fn kaiming_a_sqrt5<F: Float>(rows: usize, cols: usize, rng: &mut StdRng) -> ArrayD<F> {
    let bound = 1.0 / (cols as f64).sqrt();
    Array2::<f64>::random_using(
        (rows, cols),
        Uniform::new(-bound, bound).expect("bound > 0"),
        rng,
    )
    .mapv(F::of)
    .into_dyn()
}

impl Loha {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LohaConfig,
        seed: u64,
    ) -> Result<Self> {
        if config.r == 0 {
            return invalid("loha", "rank r must be at least 1");
        }
        let r = config.r;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut targets: HashMap<String, Vec<LohaPart>> = HashMap::new();
        let mut params = Vec::new();
        for block in blocks::blocks(model, &config.targets, "loha")? {
            let (n, d_in) = (block.width(), block.linear.d_in);
            let mut add = |name: &str, value: ArrayD<F>| store.add(block.name(name), value, true);
            let w1_a = add("hada_w1_a", kaiming_a_sqrt5(n, r, &mut rng))?;
            let w1_b = add("hada_w1_b", kaiming_a_sqrt5(r, d_in, &mut rng))?;
            let w2_a = add("hada_w2_a", kaiming_a_sqrt5(n, r, &mut rng))?;
            let w2_b = add("hada_w2_b", ArrayD::zeros(vec![r, d_in]))?;
            params.extend([w1_a, w1_b, w2_a, w2_b]);
            targets
                .entry(block.linear.module.clone())
                .or_default()
                .push(LohaPart {
                    block,
                    w1_a,
                    w1_b,
                    w2_a,
                    w2_b,
                });
        }
        Ok(Self {
            config,
            targets,
            params,
            merged: false,
        })
    }

    /// s = α / r.
    pub fn scaling(&self) -> f64 {
        self.config.alpha / self.config.r as f64
    }

    // ANCHOR: delta_weight
    /// ΔW = (W1a · W1b) ⊙ (W2a · W2b) · s, (width, d_in).
    pub fn delta_weight<F: Float>(&self, tape: &mut Tape<'_, F>, p: &LohaPart) -> Result<Var> {
        let (w1_a, w1_b) = (tape.param(p.w1_a), tape.param(p.w1_b));
        let (w2_a, w2_b) = (tape.param(p.w2_a), tape.param(p.w2_b));
        let w1 = tape.matmul(w1_a, w1_b)?;
        let w2 = tape.matmul(w2_a, w2_b)?;
        let dw = tape.mul(w1, w2)?;
        tape.scale(dw, self.scaling())
    }
    // ANCHOR_END: delta_weight

    fn fold<F: Float>(&self, store: &mut ParamStore<F>, sign: f64) -> Result<()> {
        let parts = self.targets.values().flatten();
        blocks::fold_parts(
            store,
            parts,
            |p| &p.block,
            |t, p| self.delta_weight(t, p),
            sign,
        )
    }

    /// Folds ΔW into the base weights; the hook then adds nothing.
    pub fn merge<F: Float>(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        if !self.merged {
            self.fold(store, 1.0)?;
            self.merged = true;
        }
        Ok(())
    }

    /// Takes ΔW back out of the base weights.
    pub fn unmerge<F: Float>(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        if self.merged {
            self.fold(store, -1.0)?;
            self.merged = false;
        }
        Ok(())
    }
}

impl<F: Float> Hooks<F> for Loha {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        let Some(parts) = self.targets.get(site.module) else {
            return Ok(y);
        };
        if self.merged {
            return Ok(y);
        }
        blocks::add_parts(
            tape,
            x,
            y,
            parts,
            |p| &p.block,
            |t, p| self.delta_weight(t, p),
        )
    }
}

impl<F: Float> Method<F> for Loha {
    fn name(&self) -> &'static str {
        "loha"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }
}
