//! VeRA (Kopiczko et al., 2024, Vector-based Random Matrix Adaptation): one pair of frozen random
//! matrices A (r, in_max) and B (out_max, r) is shared by every targeted Linear; each Linear
//! trains only two vectors, λd (r) and λb (d_out):
//! y' = y + λb ⊙ (B_s · (λd ⊙ (A_s · x))), with A_s = A[:, :d_in] and B_s = B[:d_out, :] the
//! slices of this Linear's shape. Σ (r + d_out) trainable parameters over the targets: r can be
//! large (PEFT's default is 256) at almost no cost, where LoRA pays r · (d_in + d_out) per Linear.
//!
//! As PEFT: A and B are Kaiming-uniform (gain √2, bound √(6 / fan_in) with fan_in the second
//! dimension) drawn from `projection_prng_key` (tunelab's generator, not torch's: the same key
//! gives other values than in PEFT), sized by the largest input and output over the targets;
//! λb starts at zero (so the model is unchanged at step 0) and λd at `d_initial` (0.1). A and B
//! are saved in the adapter (PEFT's `save_projection=True`), so an adapter never depends on a
//! generator; they are frozen parameters ([`Method::frozen`]).
//!
//! PEFT computes the update token by token, λb ⊙ (B_s · (λd ⊙ (A_s · x))); tunelab computes the
//! same product reassociated, as a weight: ΔW = (λb ⊙ B_s ⊙ λd) · A_s (width, d_in), then
//! y' = y + x ΔWᵀ. Backward then keeps the input x (…, d_in) instead of the (…, r) projections
//! A_s·x, which with VeRA's large r would hold more memory than full fine-tuning does, and
//! costs fewer FLOPs once r is above about half the width. The gradients of λd and λb come from
//! the tape's matmul, mul, reshape and slice. Targets and GPT-2's fused c_attn as LoRA's
//! ([`super::blocks`]): a block of c_attn (`.q`) has its own λd, λb and its width's slice of B.
//! Merging folds the same ΔW into the frozen weight.

use super::blocks::{self, Block};
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::options::MethodOptions;
use super::spec::{MethodSpec, VeraConfig};
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

/// VeRA's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "vera",
    help: "frozen random projections shared by all chosen Linears, trained scaling vectors λd, λb \
           (--r, --targets, --vera-d-initial, --projection-prng-key, --lora-dropout)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Vera(config(o)?)),
    examples,
};

/// The shared projections' names in the store and in tunelab's adapter files.
pub const VERA_A: &str = "vera_A";
pub const VERA_B: &str = "vera_B";

/// VeRA's options from the command line's.
pub fn config(o: &MethodOptions) -> Result<VeraConfig> {
    let targets = super::lora::parse_targets(&o.targets.join(","))?;
    Ok(VeraConfig {
        r: o.r,
        targets: targets.iter().map(|t| t.name().to_string()).collect(),
        d_initial: o.vera_d_initial,
        projection_prng_key: o.projection_prng_key,
        dropout: o.lora_dropout,
    })
}

fn examples(_: &ExampleContext) -> Examples {
    let test = |r, targets: &[&str]| VeraConfig {
        r,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        projection_prng_key: 5,
        ..Default::default()
    };
    Examples {
        // r = 256, PEFT's default: 2 · (256 + C) trainable parameters per block on q, v.
        compare: vec![CompareExample {
            label: "vera r=256 q,v",
            spec: MethodSpec::Vera(test(256, &["q", "v"])),
            // Chosen on sentiment's validation split (configs/compare.toml).
            lr: 9e-2,
            base_dtype: crate::nn::BaseDtype::F32,
        }],
        bench: vec![("vera_r256_qv", MethodSpec::Vera(test(256, &["q", "v"])))],
        tests: vec![
            ("vera", MethodSpec::Vera(test(4, &["q", "v"]))),
            // Shapes differ (c_attn 24 or 8 wide, fc 8 → 32, proj 32 → 8): A and B are sliced.
            (
                "vera_qkv_mlp",
                MethodSpec::Vera(test(3, &["qkv", "o", "fc", "proj"])),
            ),
        ],
    }
}

/// The trained vectors of one block.
#[derive(Debug, Clone)]
pub struct VeraPart {
    pub block: Block,
    /// (width), zero at init.
    pub lambda_b: ParamId,
    /// (r), `d_initial` at init.
    pub lambda_d: ParamId,
}

/// VeRA applied to a model.
pub struct Vera {
    pub config: VeraConfig,
    /// The parts of each targeted Linear, by module path.
    pub targets: HashMap<String, Vec<VeraPart>>,
    /// The shared frozen projections A (r, in_max) and B (out_max, r).
    pub vera_a: ParamId,
    pub vera_b: ParamId,
    params: Vec<ParamId>,
    frozen: [ParamId; 2],
    merged: bool,
}

/// uniform(±√(6 / cols)): PEFT's `_kaiming_init` (gain √2) of a (rows, cols) tensor.
fn kaiming_gain_sqrt2<F: Float>(rows: usize, cols: usize, rng: &mut StdRng) -> ArrayD<F> {
    let bound = (6.0 / cols as f64).sqrt();
    Array2::<f64>::random_using(
        (rows, cols),
        Uniform::new(-bound, bound).expect("bound > 0"),
        rng,
    )
    .mapv(F::of)
    .into_dyn()
}

impl Vera {
    /// Adds A and B (from the config's key; `_seed` is not used: λd and λb start constant) and
    /// λb, λd for every targeted block.
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: VeraConfig,
        _seed: u64,
    ) -> Result<Self> {
        if config.r == 0 {
            return invalid("vera", "rank r must be at least 1");
        }
        let r = config.r;
        let found = blocks::blocks(model, &config.targets, "vera")?;
        let in_max = found.iter().map(|b| b.linear.d_in).max().unwrap_or(0);
        let out_max = found.iter().map(Block::width).max().unwrap_or(0);
        let mut rng = StdRng::seed_from_u64(config.projection_prng_key);
        let vera_a = store.add(VERA_A, kaiming_gain_sqrt2(r, in_max, &mut rng), false)?;
        let vera_b = store.add(VERA_B, kaiming_gain_sqrt2(out_max, r, &mut rng), false)?;
        let mut targets: HashMap<String, Vec<VeraPart>> = HashMap::new();
        let mut params = Vec::new();
        for block in found {
            let lambda_b = store.add(
                block.name("vera_lambda_b"),
                ArrayD::zeros(vec![block.width()]),
                true,
            )?;
            let lambda_d = store.add(
                block.name("vera_lambda_d"),
                ArrayD::from_elem(vec![r], F::of(config.d_initial)),
                true,
            )?;
            params.extend([lambda_b, lambda_d]);
            targets
                .entry(block.linear.module.clone())
                .or_default()
                .push(VeraPart {
                    block,
                    lambda_b,
                    lambda_d,
                });
        }
        Ok(Self {
            config,
            targets,
            vera_a,
            vera_b,
            params,
            frozen: [vera_a, vera_b],
            merged: false,
        })
    }

    /// A_s = A[:, :d_in] (r, d_in) and B_s = B[:width, :] (width, r) for one block.
    fn slices<F: Float>(&self, tape: &mut Tape<'_, F>, p: &VeraPart) -> Result<(Var, Var)> {
        let (a, b) = (tape.param(self.vera_a), tape.param(self.vera_b));
        let (d_in, width) = (p.block.linear.d_in, p.block.width());
        let a = if tape.shape(a)[1] == d_in {
            a
        } else {
            tape.slice(a, 1, 0, d_in)?
        };
        let b = if tape.shape(b)[0] == width {
            b
        } else {
            tape.slice(b, 0, 0, width)?
        };
        Ok((a, b))
    }

    // ANCHOR: delta_weight
    /// ΔW = (λb ⊙ B_s ⊙ λd) · A_s, (width, d_in): row i of B_s scaled by λb[i], column j by
    /// λd[j], times A_s.
    pub fn delta_weight<F: Float>(&self, tape: &mut Tape<'_, F>, p: &VeraPart) -> Result<Var> {
        let (a, b) = self.slices(tape, p)?;
        let lambda_b = tape.param(p.lambda_b);
        let lambda_b = tape.reshape(lambda_b, &[p.block.width(), 1])?;
        let lambda_d = tape.param(p.lambda_d);
        let b = tape.mul(b, lambda_b)?; // (width, r)
        let b = tape.mul(b, lambda_d)?; // λd (r) broadcast along the rows
        tape.matmul(b, a)
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

impl<F: Float> Hooks<F> for Vera {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        let Some(parts) = self.targets.get(site.module) else {
            return Ok(y);
        };
        if self.merged {
            return Ok(y);
        }
        let x = tape.dropout(x, self.config.dropout)?;
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

impl<F: Float> Method<F> for Vera {
    fn name(&self) -> &'static str {
        "vera"
    }

    /// λb and λd of every block.
    fn params(&self) -> &[ParamId] {
        &self.params
    }

    /// The shared projections A and B.
    fn frozen(&self) -> &[ParamId] {
        &self.frozen
    }
}
