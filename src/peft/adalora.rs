//! AdaLoRA (Zhang et al., 2023, "Adaptive Budget Allocation for Parameter-Efficient
//! Fine-Tuning"): each targeted Linear gets an update in SVD form,
//!
//! ```text
//! y = x W + s · x (Q ⊙ λ)ᵀ Pᵀ        s = alpha / (init_r + 1e-5)
//! ```
//!
//! with P (d_out, r) and Q (r, d_in) kept near orthogonal by a regulariser and λ (r, 1) the
//! "singular values". Every triplet (Pᵢ, λᵢ, Qᵢ) starts at rank r = init_r; during training a
//! budget of triplets shrinks from init_r·n to target_r·n (n targeted blocks) and the least
//! important triplets of the whole model are switched off by setting their λᵢ to 0. Where the
//! budget goes is learned: some layers keep more rank than others.
//!
//! Names and numbers are PEFT's (`peft/tuners/adalora/`): `lora_A` = Q, `lora_B` = P, `lora_E` =
//! λ; A and B start normal(0, 0.02), E at 0 (so the model is unchanged at step 0); the scaling
//! divides by `ranknum` = init_r (+1e-5), which stays fixed while ranks are masked.
//!
//! - **Orthogonality** ([`Hooks::regularizer`]): the loss gains orth_reg_weight · mean over every
//!   A and B of ‖A Aᵀ − I‖_F and ‖Bᵀ B − I‖_F (PEFT's `AdaLoraModel.forward`).
//! - **Importance** ([`Hooks::after_step`], PEFT's `RankAllocator`, called after each optimizer
//!   step with its gradients): per entry, I = |w · ∇w|, smoothed Ī ← β1 Ī + (1 − β1) I, its
//!   uncertainty Ū ← β2 Ū + (1 − β2) |I − Ī|, score Ī·Ū. A triplet's score is λᵢ's plus the mean
//!   of row i of Q and of column i of P.
//! - **Budget** (`budget_schedule`): init_r·n for the first tinit steps, then
//!   target + (init − target)·(1 − (t − tinit)/(T − tfinal − tinit))³, cut to an integer, every
//!   deltaT steps, down to target_r·n; at step T − tfinal the final pattern is fixed
//!   (`rank_pattern`) and re-applied after every later step. T = `total_step`, or the run's
//!   optimizer steps. Triplets whose score is at most the (init − budget)-th smallest are masked.
//!
//! The adapter keeps all init_r triplets with the masked λᵢ at 0 and records `rank_pattern`
//! (which triplets each block kept); PEFT's format stores only the kept ones
//! ([`crate::io::peft`] drops and restores the others).

use super::lora::{parse_targets, target_blocks};
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::options::MethodOptions;
pub use super::spec::AdaLoraConfig;
use super::spec::MethodSpec;
use crate::autodiff::{Grads, ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::{Hooks, Linear, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, Axis, IxDyn};
use ndarray_rand::rand_distr::Normal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// AdaLoRA's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "adalora",
    help: "SVD-form updates whose ranks a budget prunes from --init-r to --target-r (--tinit, --tfinal, --delta-t, --orth-reg-weight, --targets)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Adalora(config(o)?)),
    examples,
};

/// AdaLoRA's options from the command line's.
pub fn config(o: &MethodOptions) -> Result<AdaLoraConfig> {
    let targets = parse_targets(&o.targets.join(","))?;
    Ok(AdaLoraConfig {
        init_r: o.init_r,
        target_r: o.target_r,
        alpha: o.alpha,
        dropout: o.lora_dropout,
        targets: targets.iter().map(|t| t.name().to_string()).collect(),
        tinit: o.tinit,
        tfinal: o.tfinal,
        delta_t: o.delta_t,
        beta1: o.beta1,
        beta2: o.beta2,
        orth_reg_weight: o.orth_reg_weight,
        total_step: o.total_step,
        rank_pattern: None,
    })
}

/// init_r 8 pruned to an average of 4 on q and v, alpha 32: compare's row, the same number of
/// parameters at the start as LoRA's r = 8 row (plus 8 λ per block).
pub fn compare_config() -> AdaLoraConfig {
    AdaLoraConfig {
        init_r: 8,
        target_r: 4,
        alpha: 32.0,
        ..Default::default()
    }
}

fn examples(_: &ExampleContext) -> Examples {
    let test = |init_r, target_r, targets: &[&str]| AdaLoraConfig {
        init_r,
        target_r,
        alpha: 4.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        total_step: Some(4),
        ..Default::default()
    };
    Examples {
        compare: vec![CompareExample {
            label: "adalora r=8→4 q,v",
            spec: MethodSpec::Adalora(compare_config()),
            lr: 2.7e-2,
            base_dtype: crate::nn::BaseDtype::F32,
        }],
        bench: vec![(
            "adalora_r12_qv",
            MethodSpec::Adalora(AdaLoraConfig::default()),
        )],
        tests: vec![
            ("adalora", MethodSpec::Adalora(test(3, 2, &["q", "v"]))),
            (
                "adalora_qkv_fc",
                MethodSpec::Adalora(test(2, 1, &["qkv", "fc", "proj"])),
            ),
        ],
    }
}

/// One SVD-form update on (a block of) one Linear.
#[derive(Debug, Clone)]
pub struct Triplet {
    /// The block's key in `rank_pattern`: the module path, with `.q` (…) for a block of a
    /// fused c_attn.
    pub key: String,
    /// Q, (r, d_in).
    pub a: ParamId,
    /// λ, (r, 1).
    pub e: ParamId,
    /// P, (cols, r).
    pub b: ParamId,
    /// The output columns it updates.
    pub cols: (usize, usize),
}

/// The rank allocator's state (PEFT's `RankAllocator`): the smoothed importance and
/// uncertainty of every entry of every A, E, B, the rank pattern of the last allocation, and
/// the schedule's length once known.
#[derive(Debug, Default)]
struct Allocator {
    /// Per parameter: (Ī, Ū), shaped like it.
    scores: HashMap<ParamId, (ArrayD<f64>, ArrayD<f64>)>,
    rank_pattern: Option<BTreeMap<String, Vec<bool>>>,
    total_step: Option<usize>,
}

/// AdaLoRA applied to a model.
pub struct AdaLora {
    pub config: AdaLoraConfig,
    /// The triplets by module path (a fused c_attn may hold several).
    pub targets: HashMap<String, (Linear, Vec<Triplet>)>,
    /// Every triplet, in store order.
    pub triplets: Vec<Triplet>,
    /// A, E, B of every triplet, in store order.
    params: Vec<ParamId>,
    state: Mutex<Allocator>,
}

impl AdaLora {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: AdaLoraConfig,
        seed: u64,
    ) -> Result<Self> {
        let r = config.init_r;
        if r == 0 {
            return invalid("adalora", "init_r must be at least 1");
        }
        let wanted = parse_targets(&config.targets.join(","))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let normal = Normal::new(0.0, 0.02).expect("std > 0");
        let (mut targets, mut triplets, mut params) = (HashMap::new(), Vec::new(), Vec::new());
        for (lin, blocks) in target_blocks(model, &wanted) {
            let mut mine = Vec::new();
            for (sep, cols) in blocks {
                let m = &lin.module;
                let a0 = Array2::<f64>::random_using((r, lin.d_in), normal, &mut rng);
                let b0 = Array2::<f64>::random_using((cols.1 - cols.0, r), normal, &mut rng);
                let a = store.add(format!("{m}.lora_A{sep}"), a0.mapv(F::of).into_dyn(), true)?;
                let e = store.add(
                    format!("{m}.lora_E{sep}"),
                    ArrayD::zeros(IxDyn(&[r, 1])),
                    true,
                )?;
                let b = store.add(format!("{m}.lora_B{sep}"), b0.mapv(F::of).into_dyn(), true)?;
                params.extend([a, e, b]);
                let t = Triplet {
                    key: format!("{m}{sep}"),
                    a,
                    e,
                    b,
                    cols,
                };
                triplets.push(t.clone());
                mine.push(t);
            }
            targets.insert(lin.module.clone(), (lin.clone(), mine));
        }
        if targets.is_empty() {
            return invalid(
                "adalora",
                format!("targets {:?} match no Linear of this model", config.targets),
            );
        }
        let state = Mutex::new(Allocator {
            rank_pattern: config.rank_pattern.clone(),
            ..Default::default()
        });
        Ok(Self {
            config,
            targets,
            triplets,
            params,
            state,
        })
    }

    /// s = alpha / (init_r + 1e-5) (init_r in place of alpha when alpha is 0), as PEFT's
    /// `scaling / ranknum`.
    pub fn scaling(&self) -> f64 {
        let r = self.config.init_r as f64;
        let alpha = if self.config.alpha > 0.0 {
            self.config.alpha
        } else {
            r
        };
        alpha / (r + 1e-5)
    }

    // ANCHOR: delta
    /// One triplet's update for input x: s · dropout(x) (A ⊙ E)ᵀ Bᵀ, (…, cols).
    fn delta<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var, t: &Triplet) -> Result<Var> {
        let x = tape.dropout(x, self.config.dropout)?;
        let (a, e, b) = (tape.param(t.a), tape.param(t.e), tape.param(t.b));
        let ae = tape.mul(a, e)?; // (r, d_in): row i scaled by λᵢ
        let h = tape.matmul_t(x, ae, false, true)?; // (…, r)
        let d = tape.matmul_t(h, b, false, true)?; // (…, cols)
        tape.scale(d, self.scaling())
    }
    // ANCHOR_END: delta

    /// The rank budget at `step` of `total` and whether to mask there (PEFT's
    /// `budget_schedule`).
    pub fn budget_schedule(&self, step: usize, total: usize) -> (usize, bool) {
        let c = &self.config;
        let n = self.triplets.len();
        let (init, target) = (c.init_r * n, c.target_r * n);
        if step <= c.tinit {
            (init, false)
        } else if step > total - c.tfinal {
            (target, true)
        } else {
            let mul = 1.0 - (step - c.tinit) as f64 / (total - c.tfinal - c.tinit) as f64;
            let budget = ((init - target) as f64 * mul.powi(3) + target as f64) as usize;
            (budget, step.is_multiple_of(c.delta_t.max(1)))
        }
    }

    /// Ī and Ū of every parameter after this step's |w · ∇w| (PEFT's `update_ipt`).
    fn update_ipt<F: Float>(&self, st: &mut Allocator, store: &ParamStore<F>, grads: &Grads<F>) {
        let (b1, b2) = (self.config.beta1, self.config.beta2);
        for &id in &self.params {
            let w = store.value(id);
            let ipt: ArrayD<f64> = match grads.get(id) {
                Some(g) => ndarray::Zip::from(w)
                    .and(g)
                    .map_collect(|&w, &g| (w.as_f64() * g.as_f64()).abs()),
                None => ArrayD::zeros(w.raw_dim()),
            };
            let (avg, unc) = st
                .scores
                .entry(id)
                .or_insert_with(|| (ArrayD::zeros(w.raw_dim()), ArrayD::zeros(w.raw_dim())));
            ndarray::Zip::from(&mut *avg)
                .and(&mut *unc)
                .and(&ipt)
                .for_each(|avg, unc, &i| {
                    *avg = b1 * *avg + (1.0 - b1) * i;
                    *unc = b2 * *unc + (1.0 - b2) * (i - *avg).abs();
                });
        }
    }

    /// Masks every triplet whose score is at most the (init − budget)-th smallest (PEFT's
    /// `mask_to_budget`); returns the rank pattern.
    fn mask_to_budget<F: Float>(
        &self,
        st: &Allocator,
        store: &mut ParamStore<F>,
        budget: usize,
    ) -> BTreeMap<String, Vec<bool>> {
        let score = |id: ParamId| -> ArrayD<f64> {
            match st.scores.get(&id) {
                Some((avg, unc)) => avg * unc,
                None => ArrayD::zeros(store.value(id).raw_dim()),
            }
        };
        let mut per_triplet = Vec::with_capacity(self.triplets.len());
        for t in &self.triplets {
            let s_e = score(t.e);
            let s_a = score(t.a).mean_axis(Axis(1)).expect("A has columns");
            let s_b = score(t.b).mean_axis(Axis(0)).expect("B has rows");
            let total: Vec<f64> = (0..self.config.init_r)
                .map(|i| s_e[[i, 0]] + s_a[i] + s_b[i])
                .collect();
            per_triplet.push(total);
        }
        let mut all: Vec<f64> = per_triplet.iter().flatten().copied().collect();
        all.sort_by(f64::total_cmp);
        let k = (self.config.init_r * self.triplets.len()).saturating_sub(budget);
        let threshold = if k == 0 {
            f64::NEG_INFINITY
        } else {
            all[k - 1]
        };
        let mut pattern = BTreeMap::new();
        for (t, scores) in self.triplets.iter().zip(&per_triplet) {
            let keep: Vec<bool> = scores.iter().map(|&s| s > threshold).collect();
            mask_e(store, t.e, &keep);
            pattern.insert(t.key.clone(), keep);
        }
        pattern
    }

    /// Sets λᵢ to 0 wherever `pattern` says the triplet is not kept (PEFT's
    /// `mask_using_rank_pattern`).
    fn mask_using<F: Float>(
        &self,
        store: &mut ParamStore<F>,
        pattern: &BTreeMap<String, Vec<bool>>,
    ) {
        for t in &self.triplets {
            if let Some(keep) = pattern.get(&t.key) {
                mask_e(store, t.e, keep);
            }
        }
    }

    /// The rank pattern of the last allocation, if any.
    pub fn rank_pattern(&self) -> Option<BTreeMap<String, Vec<bool>>> {
        self.lock().rank_pattern.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        // The state is only ever replaced whole: a panic elsewhere cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// λᵢ ← 0 where `keep[i]` is false.
fn mask_e<F: Float>(store: &mut ParamStore<F>, e: ParamId, keep: &[bool]) {
    let v = &mut store.get_mut(e).value;
    for (i, &k) in keep.iter().enumerate() {
        if !k {
            v[[i, 0]] = F::zero();
        }
    }
}

impl<F: Float> Hooks<F> for AdaLora {
    fn linear(&self, tape: &mut Tape<'_, F>, site: &Site<'_>, x: Var, y: Var) -> Result<Var> {
        let Some((lin, triplets)) = self.targets.get(site.module) else {
            return Ok(y);
        };
        let mut y = y;
        for t in triplets {
            let d = self.delta(tape, x, t)?;
            y = if t.cols == (0, lin.d_out) {
                tape.add(y, d)?
            } else {
                let last = tape.shape(y).len() - 1;
                tape.add_at(y, d, last, t.cols.0)?
            };
        }
        Ok(y)
    }

    // ANCHOR: regularizer
    /// orth_reg_weight · mean over every A and B of ‖A Aᵀ − I‖_F, ‖Bᵀ B − I‖_F.
    fn regularizer(&self, tape: &mut Tape<'_, F>) -> Result<Option<Var>> {
        let w = self.config.orth_reg_weight;
        if w == 0.0 {
            return Ok(None);
        }
        let r = self.config.init_r;
        let eye = tape.constant(Array2::<F>::eye(r).into_dyn());
        let mut terms = Vec::new();
        for t in &self.triplets {
            let (a, b) = (tape.param(t.a), tape.param(t.b));
            for cov in [
                tape.matmul_t(a, a, false, true)?, // A Aᵀ (r, r)
                tape.matmul_t(b, b, true, false)?, // Bᵀ B (r, r)
            ] {
                let d = tape.sub(cov, eye)?;
                let d2 = tape.square(d)?;
                let n2 = tape.sum(d2, &[0, 1], false)?;
                // ‖·‖_F = √(Σ d²); exactly orthogonal factors (never at a random init) add 0.
                if tape.value(n2).iter().all(|&x| x == F::zero()) {
                    continue;
                }
                terms.push(tape.sqrt(n2)?);
            }
        }
        let count = 2 * self.triplets.len();
        let mut total = match terms.first() {
            Some(&t) => t,
            None => return Ok(None),
        };
        for &t in &terms[1..] {
            total = tape.add(total, t)?;
        }
        Ok(Some(tape.scale(total, w / count as f64)?))
    }
    // ANCHOR_END: regularizer

    // ANCHOR: after_step
    /// PEFT's `AdaLoraModel.update_and_allocate(step)`.
    fn after_step(
        &self,
        store: &mut ParamStore<F>,
        grads: &Grads<F>,
        step: usize,
        total_steps: usize,
    ) -> Result<()> {
        let c = &self.config;
        let total = c.total_step.unwrap_or(total_steps);
        if c.tinit + c.tfinal >= total {
            return invalid(
                "--tinit",
                format!(
                    "adalora: tinit {} + tfinal {} leave no budgeting phase in {total} steps \
                     (PEFT requires tinit < total_step − tfinal)",
                    c.tinit, c.tfinal
                ),
            );
        }
        let mut st = self.lock();
        st.total_step = Some(total);
        let end = total - c.tfinal;
        if step < end {
            self.update_ipt(&mut st, store, grads);
            let (budget, mask) = self.budget_schedule(step, total);
            if mask {
                st.rank_pattern = Some(self.mask_to_budget(&st, store, budget));
            }
        } else if step == end {
            // The final allocation (budget target_r·n), fixed from here on.
            let (budget, _) = self.budget_schedule(step, total);
            st.rank_pattern = Some(self.mask_to_budget(&st, store, budget));
            st.scores.clear();
        } else if let Some(p) = st.rank_pattern.clone() {
            self.mask_using(store, &p);
        }
        Ok(())
    }
    // ANCHOR_END: after_step
}

impl<F: Float> Method<F> for AdaLora {
    fn name(&self) -> &'static str {
        "adalora"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }

    /// The masked λᵢ at 0 in the saved adapter (they may have moved since the last
    /// allocation), as PEFT's saved form, which drops them, computes.
    fn finalize(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        if let Some(p) = self.rank_pattern() {
            self.mask_using(store, &p);
        }
        Ok(())
    }

    /// The config with the rank pattern and the schedule's length of this run.
    fn saved_spec(&self, spec: &MethodSpec) -> MethodSpec {
        let st = self.lock();
        let mut c = self.config.clone();
        c.rank_pattern = st.rank_pattern.clone();
        c.total_step = st.total_step.or(c.total_step);
        match spec {
            MethodSpec::Adalora(_) => MethodSpec::Adalora(c),
            other => other.clone(),
        }
    }
}
