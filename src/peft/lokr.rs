//! LoKr (Edalati et al., 2022, KronA; LyCORIS): the weight update is a Kronecker product,
//! ΔW = kron(W1, W2) · s with s = α / r. A (d_out, d_in) update is split as d_out = a·b and
//! d_in = c·d, W1 (a, c), W2 (b, d): kron(W1, W2)[i·b + j, k·d + l] = W1[i, k] · W2[j, l].
//! With both sides near √d the update has a·c + b·d ≈ 2·√(d_out·d_in) parameters, far fewer
//! than LoRA's, yet full rank when W1 and W2 are.
//!
//! Everything follows PEFT's `LoKrLayer.update_layer`:
//! - each dimension is split by [`factorization`] (`decompose_factor` f: (f, d / f) when f
//!   divides d, else the divisor pair nearest √d that does not pass f; -1: nearest √d);
//! - W2 is a low-rank product W2a (b, r) · W2b (r, d) when r < max(b, d) / 2, else one full
//!   matrix; with `decompose_both`, the same rule for W1 = W1a (a, r) · W1b (r, c);
//! - init (`init_weights=True`): W1 (or W1a) zero, the other factors Kaiming-uniform (a = √5),
//!   so ΔW = 0 and the model is unchanged at step 0.
//!
//! The Kronecker product is built from the tape's ops: W1 reshaped (a, 1, c, 1) times W2
//! reshaped (1, b, 1, d) broadcasts to (a, b, c, d), which reshaped is (a·b, c·d), so the
//! gradients come from mul's and reshape's backward. Names as PEFT's (`lokr_w1`, `lokr_w1_a`,
//! `lokr_w1_b`, `lokr_w2`, `lokr_w2_a`, `lokr_w2_b`); targets and GPT-2's c_attn as LoRA's
//! ([`super::blocks`]).

use super::blocks::{self, Block};
use super::loha::kaiming_a_sqrt5;
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::options::MethodOptions;
use super::spec::{LokrConfig, MethodSpec};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::{Hooks, Site, Transformer};
use crate::tensor::Float;
use ndarray::ArrayD;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;

/// LoKr's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "lokr",
    help: "Kronecker product kron(W1, W2) of two small factors on chosen Linears (--r, --alpha, \
           --targets, --decompose-both, --decompose-factor)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Lokr(config(o)?)),
    examples,
};

/// LoKr's options from the command line's.
pub fn config(o: &MethodOptions) -> Result<LokrConfig> {
    let targets = super::lora::parse_targets(&o.targets.join(","))?;
    Ok(LokrConfig {
        r: o.r,
        alpha: o.alpha,
        targets: targets.iter().map(|t| t.name().to_string()).collect(),
        decompose_both: o.decompose_both,
        decompose_factor: o.decompose_factor,
    })
}

fn examples(_: &ExampleContext) -> Examples {
    let test = |r, targets: &[&str], decompose_both, decompose_factor| LokrConfig {
        r,
        alpha: 2.0 * r as f64,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        decompose_both,
        decompose_factor,
    };
    let compare = LokrConfig {
        alpha: 8.0,
        ..test(8, &["q", "v"], false, -1)
    };
    Examples {
        compare: vec![CompareExample {
            label: "lokr r=8 q,v",
            spec: MethodSpec::Lokr(compare.clone()),
            // Chosen on sentiment's validation split (configs/compare.toml).
            lr: 3e-2,
            base_dtype: crate::nn::BaseDtype::F32,
        }],
        bench: vec![("lokr_r8_qv", MethodSpec::Lokr(compare))],
        tests: vec![
            // On C = 8: W1 (2, 2) and W2 (4, 4) full at r 2; with decompose_both and factor 4 at
            // r 1, c_attn (24, 8) and fc (32, 8) get low-rank W1 (4, 4) and W2.
            ("lokr", MethodSpec::Lokr(test(2, &["q", "v"], false, -1))),
            (
                "lokr_both_fc",
                MethodSpec::Lokr(test(1, &["qkv", "k", "fc", "proj"], true, 4)),
            ),
        ],
    }
}

// ANCHOR: factorization
/// PEFT's (LyCORIS's) `factorization(dimension, factor)`: (m, n) with m·n = dimension. With
/// factor > 0 dividing the dimension, (factor, dimension / factor); otherwise the divisor pair
/// nearest the square root whose smaller side does not pass `factor` (any, for -1), smaller first.
pub fn factorization(dimension: usize, factor: i64) -> (usize, usize) {
    if factor > 0 && dimension.is_multiple_of(factor as usize) {
        return (factor as usize, dimension / factor as usize);
    }
    let factor = if factor == -1 {
        dimension as i64
    } else {
        factor
    };
    let (mut m, mut n) = (1, dimension);
    let length = m + n;
    while m < n {
        let mut new_m = m + 1;
        while !dimension.is_multiple_of(new_m) {
            new_m += 1;
        }
        let new_n = dimension / new_m;
        if new_m + new_n > length || new_m as i64 > factor {
            break;
        }
        (m, n) = (new_m, new_n);
    }
    if m > n {
        (m, n) = (n, m);
    }
    (m, n)
}
// ANCHOR_END: factorization

/// The shapes of one update (d_out, d_in) under `config`, as PEFT's `update_layer` picks them:
/// W1 (a, c) and W2 (b, d) with d_out = a·b, d_in = c·d, and whether each is a low-rank pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LokrShape {
    /// (a, c)
    pub w1: (usize, usize),
    /// (b, d)
    pub w2: (usize, usize),
    /// W1 = W1a (a, r) · W1b (r, c).
    pub w1_low_rank: bool,
    /// W2 = W2a (b, r) · W2b (r, d).
    pub w2_low_rank: bool,
}

impl LokrShape {
    pub fn of(d_out: usize, d_in: usize, config: &LokrConfig) -> Self {
        let (in_m, in_n) = factorization(d_in, config.decompose_factor);
        let (out_l, out_k) = factorization(d_out, config.decompose_factor);
        let r = config.r as f64;
        Self {
            w1: (out_l, in_m),
            w2: (out_k, in_n),
            w1_low_rank: config.decompose_both && r < out_l.max(in_m) as f64 / 2.0,
            w2_low_rank: r < out_k.max(in_n) as f64 / 2.0,
        }
    }

    /// The parameters it holds (checked arithmetic: `None` on overflow).
    pub fn count(&self, r: usize) -> Option<u64> {
        let side = |(p, q): (usize, usize), low: bool| {
            let (p, q, r) = (p as u64, q as u64, r as u64);
            if low {
                r.checked_mul(p)?.checked_add(r.checked_mul(q)?)
            } else {
                p.checked_mul(q)
            }
        };
        side(self.w1, self.w1_low_rank)?.checked_add(side(self.w2, self.w2_low_rank)?)
    }
}

/// A Kronecker factor: one full matrix, or a low-rank pair a · b.
#[derive(Debug, Clone, Copy)]
pub enum Factor {
    Full(ParamId),
    LowRank(ParamId, ParamId),
}

impl Factor {
    fn ids(self) -> Vec<ParamId> {
        match self {
            Factor::Full(w) => vec![w],
            Factor::LowRank(a, b) => vec![a, b],
        }
    }

    fn value<F: Float>(self, tape: &mut Tape<'_, F>) -> Result<Var> {
        match self {
            Factor::Full(w) => Ok(tape.param(w)),
            Factor::LowRank(a, b) => {
                let (a, b) = (tape.param(a), tape.param(b));
                tape.matmul(a, b)
            }
        }
    }
}

/// The two factors of one block.
#[derive(Debug, Clone)]
pub struct LokrPart {
    pub block: Block,
    pub shape: LokrShape,
    pub w1: Factor,
    pub w2: Factor,
}

/// LoKr applied to a model.
pub struct Lokr {
    pub config: LokrConfig,
    /// The parts of each targeted Linear, by module path.
    pub targets: HashMap<String, Vec<LokrPart>>,
    params: Vec<ParamId>,
    merged: bool,
}

impl Lokr {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LokrConfig,
        seed: u64,
    ) -> Result<Self> {
        if config.r == 0 {
            return invalid("lokr", "rank r must be at least 1");
        }
        let r = config.r;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut targets: HashMap<String, Vec<LokrPart>> = HashMap::new();
        let mut params = Vec::new();
        for block in blocks::blocks(model, &config.targets, "lokr")? {
            let shape = LokrShape::of(block.width(), block.linear.d_in, &config);
            let mut add = |name: &str, value: ArrayD<F>| store.add(block.name(name), value, true);
            let (a, c) = shape.w1;
            let w1 = if shape.w1_low_rank {
                Factor::LowRank(
                    add("lokr_w1_a", ArrayD::zeros(vec![a, r]))?,
                    add("lokr_w1_b", kaiming_a_sqrt5(r, c, &mut rng))?,
                )
            } else {
                Factor::Full(add("lokr_w1", ArrayD::zeros(vec![a, c]))?)
            };
            let (b, d) = shape.w2;
            let w2 = if shape.w2_low_rank {
                Factor::LowRank(
                    add("lokr_w2_a", kaiming_a_sqrt5(b, r, &mut rng))?,
                    add("lokr_w2_b", kaiming_a_sqrt5(r, d, &mut rng))?,
                )
            } else {
                Factor::Full(add("lokr_w2", kaiming_a_sqrt5(b, d, &mut rng))?)
            };
            params.extend(w1.ids().into_iter().chain(w2.ids()));
            targets
                .entry(block.linear.module.clone())
                .or_default()
                .push(LokrPart {
                    block,
                    shape,
                    w1,
                    w2,
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
    /// ΔW = kron(W1, W2) · s, (a·b, c·d) = (width, d_in).
    pub fn delta_weight<F: Float>(&self, tape: &mut Tape<'_, F>, p: &LokrPart) -> Result<Var> {
        let ((a, c), (b, d)) = (p.shape.w1, p.shape.w2);
        let w1 = p.w1.value(tape)?;
        let w2 = p.w2.value(tape)?;
        let w1 = tape.reshape(w1, &[a, 1, c, 1])?;
        let w2 = tape.reshape(w2, &[1, b, 1, d])?;
        let k = tape.mul(w1, w2)?; // (a, b, c, d): W1[i, k] · W2[j, l]
        let k = tape.reshape(k, &[a * b, c * d])?;
        tape.scale(k, self.scaling())
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

impl<F: Float> Hooks<F> for Lokr {
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

impl<F: Float> Method<F> for Lokr {
    fn name(&self) -> &'static str {
        "lokr"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn factorization_matches_peft_docstring_and_divisor_rules() {
        // PEFT's docstring examples.
        assert_eq!(factorization(256, -1), (16, 16));
        assert_eq!(factorization(128, -1), (8, 16));
        assert_eq!(factorization(127, -1), (1, 127));
        assert_eq!(factorization(128, 4), (4, 32));
        // A dividing factor is taken as is, even when larger than the cofactor.
        assert_eq!(factorization(128, 32), (32, 4));
        // A factor that does not divide caps the smaller side: 48 = 4·12 (6 > 5).
        assert_eq!(factorization(48, 5), (4, 12));
        assert_eq!(factorization(48, -1), (6, 8));
        assert_eq!(factorization(1, -1), (1, 1));
    }

    #[test]
    fn low_rank_sides_follow_peft_rule() {
        let c = |r, both| LokrConfig {
            r,
            decompose_both: both,
            ..Default::default()
        };
        // 32 → (4, 8) both ways: W1 (4, 4), W2 (8, 8); W2 low-rank iff r < 4.
        let s = LokrShape::of(32, 32, &c(2, false));
        assert_eq!(
            (s.w1, s.w2, s.w1_low_rank, s.w2_low_rank),
            ((4, 4), (8, 8), false, true)
        );
        assert_eq!(s.count(2), Some(16 + 2 * 16));
        let s = LokrShape::of(32, 32, &c(4, false));
        assert!(!s.w2_low_rank);
        assert_eq!(s.count(4), Some(16 + 64));
        // decompose_both: W1 low-rank iff r < max(4, 4) / 2.
        assert!(LokrShape::of(32, 32, &c(1, true)).w1_low_rank);
        assert!(!LokrShape::of(32, 32, &c(2, true)).w1_low_rank);
    }
}
