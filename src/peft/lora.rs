//! LoRA (Hu et al., 2021): a frozen weight W gets a trainable low-rank update,
//! y = x W + s · (x Aᵀ) Bᵀ with A (r, d_in), B (d_out, r) and s = α / r (or α / √r with rsLoRA,
//! Kalajdzievski 2023). B starts at zero, so the model is unchanged at step 0; A starts
//! uniform(±1/√d_in) as PEFT's Kaiming init. The update costs 2·r·(d_in + d_out) FLOPs per token
//! instead of a d_in × d_out weight gradient, and only A and B need optimizer state.
//!
//! Targets are the short names of [`Role`]: q, k, v, o, fc, proj. GPT-2 fuses q, k and v into one
//! `c_attn` Linear; there each targeted block of its output columns gets its own A and B (named
//! `…c_attn.lora_A.q.weight`), and the target `qkv` puts one pair on the whole of `c_attn` as
//! PEFT does for GPT-2.
//!
//! Merging adds s·B·A into W (so serving costs nothing extra); unmerging subtracts it again.
//! DoRA builds on the same units (see [`super::dora`]).

use super::{dora, Method};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::transformer::Qkv;
use crate::nn::{Hooks, Layout, Linear, Role, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, Ix2};
use ndarray_rand::rand_distr::Uniform;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// LoRA's options.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Short role names: q, k, v, o, fc, proj (and qkv for GPT-2's whole c_attn).
    pub targets: Vec<String>,
    /// Scale by α/√r instead of α/r.
    pub rslora: bool,
    /// LoRA+: B's learning rate is this many times A's (1 = plain LoRA).
    pub lr_ratio_b: f64,
}

impl Default for LoraConfig {
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec!["q".into(), "v".into()],
            rslora: false,
            lr_ratio_b: 1.0,
        }
    }
}

impl LoraConfig {
    // ANCHOR: scaling
    /// s = α / r, or α / √r with rsLoRA.
    pub fn scaling(&self) -> f64 {
        if self.rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }
    // ANCHOR_END: scaling
}

/// One low-rank pair on (a block of) one Linear's output.
#[derive(Debug, Clone)]
pub struct Unit {
    pub a: ParamId,
    pub b: ParamId,
    /// The output columns this pair updates (all of them, or one of q/k/v in a fused c_attn).
    pub cols: (usize, usize),
    /// DoRA's magnitude vector over those columns, when DoRA is on.
    pub magnitude: Option<ParamId>,
}

/// The pairs on one Linear.
#[derive(Debug, Clone)]
pub struct Target {
    pub linear: Linear,
    pub units: Vec<Unit>,
}

/// LoRA (or DoRA) applied to a model.
pub struct Lora {
    pub config: LoraConfig,
    pub dora: bool,
    pub targets: HashMap<String, Target>,
    params: Vec<ParamId>,
    merged: bool,
}

/// Every Linear of the blocks, with the role it plays.
pub fn block_linears(model: &Transformer) -> Vec<&Linear> {
    let mut out = Vec::new();
    for b in &model.blocks {
        match &b.qkv {
            Qkv::Fused(l) => out.push(l),
            Qkv::Split { q, k, v } => out.extend([q, k, v]),
        }
        out.extend([&b.attn_out, &b.fc, &b.proj]);
    }
    out
}

impl Lora {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LoraConfig,
        dora: bool,
        seed: u64,
    ) -> Result<Self> {
        if config.r == 0 {
            return invalid("lora", "rank r must be at least 1");
        }
        let known = ["q", "k", "v", "o", "fc", "proj", "qkv"];
        if let Some(bad) = config.targets.iter().find(|t| !known.contains(&t.as_str())) {
            return invalid(
                "lora",
                format!("unknown target {bad:?} (q, k, v, o, fc, proj, qkv)"),
            );
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let mut targets = HashMap::new();
        let mut params = Vec::new();
        let c = model.config.d_model;
        for lin in block_linears(model) {
            let wants = |t: &str| config.targets.iter().any(|x| x == t);
            let blocks: Vec<(&str, (usize, usize))> = match lin.role {
                Role::Qkv if wants("qkv") => vec![("", (0, 3 * c))],
                Role::Qkv => [("q", 0), ("k", 1), ("v", 2)]
                    .into_iter()
                    .filter(|(t, _)| wants(t))
                    .map(|(t, i)| (t, (i * c, (i + 1) * c)))
                    .collect(),
                role if wants(role.short()) => vec![("", (0, lin.d_out))],
                _ => vec![],
            };
            if blocks.is_empty() {
                continue;
            }
            let mut units = Vec::new();
            for (tag, cols) in blocks {
                let sep = if tag.is_empty() {
                    String::new()
                } else {
                    format!(".{tag}")
                };
                let bound = 1.0 / (lin.d_in as f64).sqrt();
                let a0 = Array2::<f64>::random_using(
                    (config.r, lin.d_in),
                    Uniform::new(-bound, bound).expect("bound > 0"),
                    &mut rng,
                );
                let a = store.add(
                    format!("{}.lora_A{sep}.weight", lin.module),
                    a0.mapv(F::of).into_dyn(),
                    true,
                )?;
                let b = store.add(
                    format!("{}.lora_B{sep}.weight", lin.module),
                    ArrayD::zeros(vec![cols.1 - cols.0, config.r]),
                    true,
                )?;
                params.extend([a, b]);
                let magnitude = if dora {
                    let m = dora::column_norms(store.value(lin.weight), lin.layout, cols);
                    let id = store.add(
                        format!("{}.lora_magnitude_vector{sep}", lin.module),
                        m,
                        true,
                    )?;
                    params.push(id);
                    Some(id)
                } else {
                    None
                };
                units.push(Unit {
                    a,
                    b,
                    cols,
                    magnitude,
                });
            }
            targets.insert(
                lin.module.clone(),
                Target {
                    linear: lin.clone(),
                    units,
                },
            );
        }
        if targets.is_empty() {
            return invalid(
                "lora",
                format!("targets {:?} match no Linear of this model", config.targets),
            );
        }
        Ok(Self {
            config,
            dora,
            targets,
            params,
            merged: false,
        })
    }

    // ANCHOR: delta
    /// The low-rank update of one unit for input x: s · dropout(x) Aᵀ Bᵀ, (…, cols).
    fn delta<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var, unit: &Unit) -> Result<Var> {
        let x = tape.dropout(x, self.config.dropout)?;
        let a = tape.param(unit.a);
        let b = tape.param(unit.b);
        let h = tape.matmul_t(x, a, false, true)?; // (…, r)
        let d = tape.matmul_t(h, b, false, true)?; // (…, cols)
        tape.scale(d, self.config.scaling())
    }
    // ANCHOR_END: delta

    // ANCHOR: fold
    /// W += sign · s · (B A) on each target's columns, in the weight's own layout.
    fn fold<F: Float>(&self, store: &mut ParamStore<F>, sign: f64) -> Result<()> {
        let s = F::of(sign * self.config.scaling());
        for t in self.targets.values() {
            for u in &t.units {
                let a = store
                    .value(u.a)
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("A is 2-D")
                    .to_owned();
                let b = store
                    .value(u.b)
                    .view()
                    .into_dimensionality::<Ix2>()
                    .expect("B is 2-D")
                    .to_owned();
                let ba = b.dot(&a); // (cols, d_in)
                let w = &mut store.get_mut(t.linear.weight).value;
                let mut w2 = w.view_mut().into_dimensionality::<Ix2>().expect("W is 2-D");
                let (c0, c1) = u.cols;
                match t.linear.layout {
                    Layout::OutIn => w2.slice_mut(ndarray::s![c0..c1, ..]).scaled_add(s, &ba),
                    Layout::InOut => w2.slice_mut(ndarray::s![.., c0..c1]).scaled_add(s, &ba.t()),
                }
            }
        }
        Ok(())
    }
    // ANCHOR_END: fold

    /// Folds the update into the base weights; the hook then adds nothing.
    pub fn merge<F: Float>(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        if self.dora {
            return invalid("lora", "merging DoRA is not supported; serve it unmerged");
        }
        if !self.merged {
            self.fold(store, 1.0)?;
            self.merged = true;
        }
        Ok(())
    }

    /// Takes the update back out of the base weights.
    pub fn unmerge<F: Float>(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        if self.merged {
            self.fold(store, -1.0)?;
            self.merged = false;
        }
        Ok(())
    }

    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// LoRA+: B's learning-rate multiplier.
    pub fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        self.targets
            .values()
            .flat_map(|t| t.units.iter().map(|u| (u.b, self.config.lr_ratio_b)))
            .collect()
    }
}

impl<F: Float> Hooks<F> for Lora {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        let Some(target) = self.targets.get(site.module) else {
            return Ok(y);
        };
        if self.merged {
            return Ok(y);
        }
        let width = target.linear.d_out;
        let mut y = y;
        for u in &target.units {
            let d = self.delta(tape, x, u)?;
            y = if self.dora {
                dora::apply_unit(tape, &target.linear, u, self.config.scaling(), y, d)?
            } else if u.cols == (0, width) {
                tape.add(y, d)?
            } else {
                // Only a block of the fused output: add the update to those columns.
                let last = tape.shape(y).len() - 1;
                tape.add_at(y, d, last, u.cols.0)?
            };
        }
        Ok(y)
    }
}

impl<F: Float> Method<F> for Lora {
    fn name(&self) -> &'static str {
        if self.dora {
            "dora"
        } else {
            "lora"
        }
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }
}
