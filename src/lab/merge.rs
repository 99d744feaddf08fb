//! Merging adapters: several LoRA adapters (or several full fine-tunes) trained on one base become
//! one, with the semantics of PEFT's `LoraModel.add_weighted_adapter` and of the functions of
//! `peft/utils/merge_utils.py`.
//!
//! ## The merge functions (merge_utils)
//!
//! Each input i gives a task tensor τ_i (a LoRA A or B, or a full update ΔW) and a weight w_i:
//!
//! | name | result |
//! |---|---|
//! | `task_arithmetic` | Σ w_i τ_i (Ilharco et al., 2023) |
//! | `magnitude_prune` | Σ w_i top_k(τ_i): each τ_i keeps its k = ⌊density·n⌋ largest |entries| |
//! | `ties` | TIES (Yadav et al., 2023): trim to top-k, elect a sign per entry (`total`: the sign of Σ τ_i; `frequency`: the sign of Σ sign τ_i; 0 counts as +), then the mean of the w_i τ_i that agree with it |
//! | `dare_linear` | DARE (Yu et al., 2024): drop each entry with probability 1 − density and rescale the kept ones by 1/density, then task arithmetic |
//! | `dare_ties` | DARE's drop and rescale, then TIES' sign election and disjoint mean |
//!
//! A density of 1 or more prunes nothing (and DARE then does not rescale), as in PEFT. DARE's
//! drop is the only random step: [`dare_masks`] draws the masks (from `--seed`), and
//! [`dare_linear`] / [`dare_ties`] take them as input, so the deterministic part is tested
//! against PEFT on the masks PEFT drew (`tools/merge_golden.py`).
//!
//! ## LoRA adapters (add_weighted_adapter)
//!
//! Per targeted Linear, with s_i the scaling (α/r) of adapter i:
//!
//! - `linear`, `ties`, `dare_linear`, `dare_ties`, `magnitude_prune`: the A's and the B's are merged
//!   *separately*, A with weights sign(w_i s_i)·√|w_i s_i| and B with √|w_i s_i|. Every rank must
//!   be equal. B A of the result is not Σ w_i s_i B_i A_i (cross terms B_i A_j appear): PEFT calls
//!   `linear` "a very rough approximation".
//! - `cat`: A = [w_1 s_1 A_1; w_2 s_2 A_2; …], B = [B_1 B_2 …]: B A = Σ w_i s_i B_i A_i exactly, at
//!   rank Σ r_i.
//! - `svd`, `ties_svd`, `dare_linear_svd`, `dare_ties_svd`, `magnitude_prune_svd`: the merge
//!   function runs on the full updates ΔW_i = s_i B_i A_i (`svd` is task arithmetic), and the
//!   result is re-factored by SVD into rank `svd_rank` (default: the largest input rank), B = U S,
//!   A = Vᵀ (optionally clamped at the `svd_clamp` quantile); see [`super::merge_linalg`].
//!
//! The merged adapter has r = α = its rank, so its scaling is 1 (PEFT copies the first input's
//! `use_rslora`, which would make it √r; tunelab writes plain LoRA, the scaling the merge assumes).
//! A merge of one adapter is `linear`, as in PEFT. A Linear that only some inputs target merges
//! those inputs only; the merged adapter targets the union.
//!
//! **Heads are not merged.** A classification, NER or QA adapter also saves its task head
//! (PEFT's `modules_to_save`); two heads of different tasks are different functions on different
//! label sets, and PEFT refuses to merge adapters that save the same module. The merged adapter
//! holds only the merged LoRA weights; each task keeps its own head on top of them
//! ([`Merged::with_head`]). Generation tasks use the base's tied LM head, so their merged
//! adapter is complete on its own.
//!
//! ## Full fine-tunes
//!
//! Full fine-tuning adapters hold the whole model W_i; their task tensors are the deltas
//! ΔW_i = W_i − W_base, merged tensor by tensor with the merge functions above (`linear` is task
//! arithmetic; the `svd` and `cat` types need low-rank factors and are refused), and
//! W_merged = W_base + merge(ΔW_1, …).

use super::merge_linalg;
use crate::autodiff::ParamStore;
use crate::error::{Error, Result};
use crate::io::adapter::AdapterFiles;
use crate::peft::lora::{parse_targets, Target};
use crate::peft::spec::{LoraConfig, MethodSpec};
use ndarray::{Array2, ArrayD, Ix2, IxDyn};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// merge_utils
// ---------------------------------------------------------------------------------------------

/// How the majority sign of an entry is elected (PEFT's `majority_sign_method`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MajoritySign {
    /// The sign of Σ_i τ_i.
    Total,
    /// The sign of Σ_i sign(τ_i): the sign most inputs have.
    Frequency,
}

/// A merge function of merge_utils.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeFn {
    TaskArithmetic,
    MagnitudePrune,
    Ties,
    DareLinear,
    DareTies,
}

/// The checked `density` of a pruning merge: in (0, 1] (PEFT divides by it in DARE, so 0 would
/// give NaN; above 1 prunes nothing, as 1 does).
pub fn check_density(density: Option<f64>, what: &str) -> Result<f64> {
    match density {
        Some(d) if d > 0.0 && d.is_finite() => Ok(d.min(1.0)),
        Some(d) => Err(Error::Invalid {
            op: "--density",
            detail: format!("must be a number in (0, 1], got {d}"),
        }),
        None => Err(Error::Invalid {
            op: "--density",
            detail: format!("{what} needs --density (the fraction of entries kept, in (0, 1])"),
        }),
    }
}

/// Σ_i w_i τ_i.
pub fn task_arithmetic(tensors: &[Vec<f64>], weights: &[f64]) -> Vec<f64> {
    let n = tensors.first().map_or(0, Vec::len);
    let mut out = vec![0.0; n];
    for (t, &w) in tensors.iter().zip(weights) {
        for (o, &x) in out.iter_mut().zip(t) {
            *o += w * x;
        }
    }
    out
}

/// τ with all but its k = ⌊density·n⌋ largest |entries| set to zero (PEFT's
/// `magnitude_based_pruning`; among equal magnitudes the earlier entry is kept).
pub fn prune_magnitude(t: &[f64], density: f64) -> Vec<f64> {
    if density >= 1.0 {
        return t.to_vec();
    }
    let k = (density * t.len() as f64) as usize;
    let mut order: Vec<usize> = (0..t.len()).collect();
    order.sort_by(|&i, &j| t[j].abs().total_cmp(&t[i].abs()));
    let mut out = vec![0.0; t.len()];
    for &i in &order[..k] {
        out[i] = t[i];
    }
    out
}

/// DARE's keep-masks, one per tensor of `lens`: each entry kept with probability `density`
/// (PEFT: `torch.bernoulli(full_like(t, density))`). All kept when density ≥ 1.
pub fn dare_masks(lens: &[usize], density: f64, rng: &mut StdRng) -> Vec<Vec<bool>> {
    lens.iter()
        .map(|&n| {
            (0..n)
                .map(|_| density >= 1.0 || rng.random::<f64>() < density)
                .collect()
        })
        .collect()
}

/// τ · mask / density (PEFT's `random_pruning` with `rescale=True`, given its mask); τ itself
/// when density ≥ 1.
pub fn drop_and_rescale(t: &[f64], mask: &[bool], density: f64) -> Vec<f64> {
    if density >= 1.0 {
        return t.to_vec();
    }
    t.iter()
        .zip(mask)
        .map(|(&x, &keep)| if keep { x / density } else { 0.0 })
        .collect()
}

/// Per input and entry: whether τ_i's sign is the elected one (zeros never agree).
pub fn majority_sign_mask(tensors: &[Vec<f64>], method: MajoritySign) -> Vec<Vec<bool>> {
    let n = tensors.first().map_or(0, Vec::len);
    let sign = |x: f64| {
        if x > 0.0 {
            1.0
        } else if x < 0.0 {
            -1.0
        } else {
            0.0
        }
    };
    let elected: Vec<f64> = (0..n)
        .map(|j| {
            let total: f64 = tensors
                .iter()
                .map(|t| match method {
                    MajoritySign::Total => t[j],
                    MajoritySign::Frequency => sign(t[j]),
                })
                .sum();
            if total >= 0.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    tensors
        .iter()
        .map(|t| (0..n).map(|j| sign(t[j]) == elected[j]).collect())
        .collect()
}

/// Σ_i w_i τ_i over the inputs that agree with the elected sign, divided by how many agree
/// (at least 1): TIES' disjoint mean.
pub fn disjoint_merge(tensors: &[Vec<f64>], weights: &[f64], agree: &[Vec<bool>]) -> Vec<f64> {
    let n = tensors.first().map_or(0, Vec::len);
    (0..n)
        .map(|j| {
            let (mut sum, mut count) = (0.0, 0usize);
            for ((t, &w), a) in tensors.iter().zip(weights).zip(agree) {
                if a[j] {
                    sum += w * t[j];
                    count += 1;
                }
            }
            sum / count.max(1) as f64
        })
        .collect()
}

/// Top-k trimming, then Σ w_i τ_i.
pub fn magnitude_prune(tensors: &[Vec<f64>], weights: &[f64], density: f64) -> Vec<f64> {
    let pruned: Vec<Vec<f64>> = tensors
        .iter()
        .map(|t| prune_magnitude(t, density))
        .collect();
    task_arithmetic(&pruned, weights)
}

/// TIES: top-k trimming, sign election, disjoint mean.
pub fn ties(tensors: &[Vec<f64>], weights: &[f64], density: f64, sign: MajoritySign) -> Vec<f64> {
    let pruned: Vec<Vec<f64>> = tensors
        .iter()
        .map(|t| prune_magnitude(t, density))
        .collect();
    let agree = majority_sign_mask(&pruned, sign);
    disjoint_merge(&pruned, weights, &agree)
}

/// DARE-linear with the keep-masks given: drop and rescale, then Σ w_i τ_i.
pub fn dare_linear(
    tensors: &[Vec<f64>],
    weights: &[f64],
    density: f64,
    masks: &[Vec<bool>],
) -> Vec<f64> {
    let kept: Vec<Vec<f64>> = tensors
        .iter()
        .zip(masks)
        .map(|(t, m)| drop_and_rescale(t, m, density))
        .collect();
    task_arithmetic(&kept, weights)
}

/// DARE-TIES with the keep-masks given: drop and rescale, sign election, disjoint mean.
pub fn dare_ties(
    tensors: &[Vec<f64>],
    weights: &[f64],
    density: f64,
    masks: &[Vec<bool>],
    sign: MajoritySign,
) -> Vec<f64> {
    let kept: Vec<Vec<f64>> = tensors
        .iter()
        .zip(masks)
        .map(|(t, m)| drop_and_rescale(t, m, density))
        .collect();
    let agree = majority_sign_mask(&kept, sign);
    disjoint_merge(&kept, weights, &agree)
}

/// One merge function on `tensors` (equal lengths), drawing DARE's masks from `rng`.
pub fn apply_fn(
    f: MergeFn,
    tensors: &[Vec<f64>],
    weights: &[f64],
    density: f64,
    sign: MajoritySign,
    rng: &mut StdRng,
) -> Vec<f64> {
    match f {
        MergeFn::TaskArithmetic => task_arithmetic(tensors, weights),
        MergeFn::MagnitudePrune => magnitude_prune(tensors, weights, density),
        MergeFn::Ties => ties(tensors, weights, density, sign),
        MergeFn::DareLinear | MergeFn::DareTies => {
            let lens: Vec<usize> = tensors.iter().map(Vec::len).collect();
            let masks = dare_masks(&lens, density, rng);
            if f == MergeFn::DareLinear {
                dare_linear(tensors, weights, density, &masks)
            } else {
                dare_ties(tensors, weights, density, &masks, sign)
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// add_weighted_adapter
// ---------------------------------------------------------------------------------------------

/// PEFT's `combination_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[clap(rename_all = "snake_case")]
pub enum Combination {
    /// A's and B's merged by task arithmetic, separately (equal ranks).
    Linear,
    /// A's and B's stacked: B A = Σ w s B A exactly (rank Σ r).
    Cat,
    /// Task arithmetic on the full updates, re-factored by SVD.
    Svd,
    /// TIES on A's and B's separately (equal ranks; needs --density).
    Ties,
    /// TIES on the full updates, re-factored by SVD.
    TiesSvd,
    /// DARE then task arithmetic on A's and B's separately.
    DareLinear,
    /// DARE then task arithmetic on the full updates, re-factored by SVD.
    DareLinearSvd,
    /// DARE then TIES on A's and B's separately.
    DareTies,
    /// DARE then TIES on the full updates, re-factored by SVD.
    DareTiesSvd,
    /// Top-k trimming then task arithmetic on A's and B's separately.
    MagnitudePrune,
    /// Top-k trimming then task arithmetic on the full updates, re-factored by SVD.
    MagnitudePruneSvd,
}

impl Combination {
    /// PEFT's name.
    pub fn name(self) -> &'static str {
        match self {
            Combination::Linear => "linear",
            Combination::Cat => "cat",
            Combination::Svd => "svd",
            Combination::Ties => "ties",
            Combination::TiesSvd => "ties_svd",
            Combination::DareLinear => "dare_linear",
            Combination::DareLinearSvd => "dare_linear_svd",
            Combination::DareTies => "dare_ties",
            Combination::DareTiesSvd => "dare_ties_svd",
            Combination::MagnitudePrune => "magnitude_prune",
            Combination::MagnitudePruneSvd => "magnitude_prune_svd",
        }
    }

    /// The merge function it applies (`None` for `cat`).
    pub fn merge_fn(self) -> Option<MergeFn> {
        use Combination::*;
        Some(match self {
            Cat => return None,
            Linear | Svd => MergeFn::TaskArithmetic,
            Ties | TiesSvd => MergeFn::Ties,
            DareLinear | DareLinearSvd => MergeFn::DareLinear,
            DareTies | DareTiesSvd => MergeFn::DareTies,
            MagnitudePrune | MagnitudePruneSvd => MergeFn::MagnitudePrune,
        })
    }

    /// Whether it merges full updates and re-factors them by SVD.
    pub fn is_svd(self) -> bool {
        self.name().ends_with("svd")
    }

    /// Whether it needs `density`.
    pub fn needs_density(self) -> bool {
        !matches!(self.merge_fn(), None | Some(MergeFn::TaskArithmetic))
    }
}

/// `add_weighted_adapter`'s arguments (PEFT's names).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MergeOptions {
    pub combination: Combination,
    /// One weight per input (may be negative).
    pub weights: Vec<f64>,
    pub density: Option<f64>,
    pub majority_sign_method: MajoritySign,
    /// The merged rank of the `*_svd` types (default: the largest input rank).
    pub svd_rank: Option<usize>,
    /// Clamp the SVD factors at this quantile of their entries.
    pub svd_clamp: Option<f64>,
    /// Seeds DARE's random drop.
    pub seed: u64,
}

impl MergeOptions {
    /// `combination` with weight 1 for each of `n` inputs, density 0.5 when it needs one, the
    /// `total` sign election and seed 0.
    pub fn new(combination: Combination, n: usize) -> Self {
        Self {
            combination,
            weights: vec![1.0; n],
            density: combination.needs_density().then_some(0.5),
            majority_sign_method: MajoritySign::Total,
            svd_rank: None,
            svd_clamp: None,
            seed: 0,
        }
    }

    /// PEFT's checks, before anything is merged: one weight per input, finite; a density when
    /// the type needs one; a clamp quantile in [0, 1].
    fn check(&self, n: usize) -> Result<()> {
        if n == 0 {
            return Err(Error::Invalid {
                op: "merge",
                detail: "no adapters to merge".into(),
            });
        }
        if self.weights.len() != n {
            return Err(Error::Invalid {
                op: "--weights",
                detail: format!(
                    "{} weights for {n} adapters: give one weight per adapter",
                    self.weights.len()
                ),
            });
        }
        if let Some(w) = self.weights.iter().find(|w| !w.is_finite()) {
            return Err(Error::Invalid {
                op: "--weights",
                detail: format!("weight {w} is not a finite number"),
            });
        }
        if self.combination.needs_density() {
            check_density(self.density, self.combination.name())?;
        }
        if let Some(q) = self.svd_clamp {
            if !(0.0..=1.0).contains(&q) {
                return Err(Error::Invalid {
                    op: "--svd-clamp",
                    detail: format!("a quantile in [0, 1], got {q}"),
                });
            }
        }
        if self.svd_rank == Some(0) {
            return Err(Error::Invalid {
                op: "--svd-rank",
                detail: "must be at least 1".into(),
            });
        }
        Ok(())
    }
}

/// One input adapter: a label for messages (its directory) and what was read from it.
pub struct Input {
    pub label: String,
    pub files: AdapterFiles<f32>,
}

impl Input {
    /// The task its config records, if any.
    pub fn task(&self) -> Option<&str> {
        self.files.meta.get("task").and_then(Value::as_str)
    }
}

/// A task head kept from one input (never merged).
#[derive(Debug, Clone)]
pub struct Head {
    /// The input it came from (index into the inputs).
    pub input: usize,
    pub task: Option<String>,
    pub tensors: Vec<(String, ArrayD<f32>)>,
}

/// The result of a merge.
pub struct Merged {
    pub spec: MethodSpec,
    /// The merged tensors: LoRA's A and B, or every base weight of a full merge.
    pub tensors: Vec<(String, ArrayD<f32>)>,
    /// The inputs' task heads, each kept as it was.
    pub heads: Vec<Head>,
    /// What the user should know (one adapter means `linear`, heads were kept apart, ...).
    pub notes: Vec<String>,
    /// The combination actually used.
    pub combination: Combination,
}

impl Merged {
    /// The merged tensors plus `head`'s: the adapter to evaluate `head`'s task with.
    pub fn with_head(&self, head: Option<&Head>) -> Vec<(String, ArrayD<f32>)> {
        let mut out = self.tensors.clone();
        if let Some(h) = head {
            out.extend(h.tensors.iter().cloned());
        }
        out
    }
}

fn data_err(label: &str, detail: impl Into<String>) -> Error {
    Error::Data {
        path: label.to_string(),
        line: 0,
        detail: detail.into(),
    }
}

fn flat(a: &ArrayD<f32>) -> Vec<f64> {
    a.iter().map(|&x| x as f64).collect()
}

fn to_2d(label: &str, name: &str, a: &ArrayD<f32>) -> Result<Array2<f64>> {
    a.mapv(|x| x as f64)
        .into_dimensionality::<Ix2>()
        .map_err(|_| data_err(label, format!("tensor {name} is not 2-D")))
}

fn from_2d(a: &Array2<f64>) -> ArrayD<f32> {
    a.mapv(|x| x as f32).into_dyn()
}

fn shaped(v: Vec<f64>, shape: &[usize]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v.into_iter().map(|x| x as f32).collect())
        .expect("the merged tensor has its inputs' shape")
}

/// Refuses inputs whose configs record different bases (architecture or sizes).
fn check_same_base(inputs: &[Input]) -> Result<()> {
    let first = inputs
        .iter()
        .find_map(|i| i.files.meta.get("base_config").map(|b| (i, b)));
    if let Some((a, base)) = first {
        for i in inputs {
            if let Some(other) = i.files.meta.get("base_config") {
                if other != base {
                    return Err(Error::Invalid {
                        op: "merge",
                        detail: format!(
                            "{} and {} were trained on different bases ({base} and {other}): only adapters of one base merge",
                            a.label, i.label
                        ),
                    });
                }
            }
        }
    }
    Ok(())
}

/// Merges the inputs: LoRA adapters with `add_weighted_adapter`'s semantics, full fine-tunes as
/// deltas from `base` (the base's weights, needed only then).
pub fn merge(
    inputs: &[Input],
    opts: &MergeOptions,
    base: Option<&ParamStore<f32>>,
) -> Result<Merged> {
    opts.check(inputs.len())?;
    check_same_base(inputs)?;
    let kinds: Vec<&str> = inputs.iter().map(|i| i.files.spec.name()).collect();
    match inputs[0].files.spec {
        MethodSpec::Lora(_) if kinds.iter().all(|k| *k == "lora") => merge_lora(inputs, opts),
        MethodSpec::Full { .. } if kinds.iter().all(|k| *k == "full") => {
            let base = base.ok_or_else(|| Error::Invalid {
                op: "merge",
                detail: "merging full fine-tunes needs the base's weights (--base)".into(),
            })?;
            merge_full(inputs, opts, base)
        }
        _ => Err(Error::Invalid {
            op: "merge",
            detail: format!(
                "merge takes LoRA adapters or full fine-tunes, all of one kind; got {}",
                inputs
                    .iter()
                    .zip(&kinds)
                    .map(|(i, k)| format!("{k} ({})", i.label))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// Whether a tensor is a LoRA A: `h.0.mlp.c_fc.lora_A.weight`, `h.0.attn.c_attn.lora_A.q.weight`.
fn is_lora_a(name: &str) -> bool {
    name.contains(".lora_A.")
}

fn is_lora(name: &str) -> bool {
    name.contains(".lora_A") || name.contains(".lora_B")
}

/// The name of B for the A named `a`.
fn b_name(a: &str) -> String {
    a.replacen(".lora_A", ".lora_B", 1)
}

fn lora_config(input: &Input) -> &LoraConfig {
    match &input.files.spec {
        MethodSpec::Lora(c) => c,
        _ => unreachable!("merge_lora takes LoRA inputs only"),
    }
}

/// The merged adapter's targets: the union of the inputs', refusing `qkv` beside q, k or v
/// (one would update columns the other updates too).
fn union_targets(inputs: &[Input]) -> Result<Vec<String>> {
    let all: Vec<String> = inputs
        .iter()
        .flat_map(|i| lora_config(i).targets.clone())
        .collect();
    let targets = parse_targets(&all.join(","))?;
    if targets.contains(&Target::Qkv)
        && targets
            .iter()
            .any(|t| matches!(t, Target::Q | Target::K | Target::V))
    {
        return Err(Error::Invalid {
            op: "merge",
            detail: "one adapter targets GPT-2's whole c_attn (qkv), another q, k or v of it: their pairs do not line up".into(),
        });
    }
    Ok(targets.iter().map(|t| t.name().to_string()).collect())
}

fn merge_lora(inputs: &[Input], opts: &MergeOptions) -> Result<Merged> {
    let mut notes = Vec::new();
    let mut combination = opts.combination;
    if inputs.len() == 1 && combination != Combination::Linear {
        notes.push(format!(
            "one adapter: merged with linear instead of {} (as PEFT does)",
            combination.name()
        ));
        combination = Combination::Linear;
    }
    let ranks: Vec<usize> = inputs.iter().map(|i| lora_config(i).r).collect();
    let new_rank = match combination {
        Combination::Cat => ranks.iter().sum(),
        c if c.is_svd() => opts
            .svd_rank
            .unwrap_or(*ranks.iter().max().expect("inputs")),
        c => {
            if ranks.iter().any(|&r| r != ranks[0]) {
                return Err(Error::Invalid {
                    op: "merge",
                    detail: format!(
                        "{} needs adapters of one rank; the ranks are {ranks:?} (use cat or an *_svd type)",
                        c.name()
                    ),
                });
            }
            ranks[0]
        }
    };
    let density = if combination.needs_density() {
        check_density(opts.density, combination.name())?
    } else {
        1.0
    };
    let mut rng = StdRng::seed_from_u64(opts.seed);
    // Every pair, by its A's name, in order of first appearance.
    let mut pairs: Vec<String> = Vec::new();
    for i in inputs {
        for (name, _) in &i.files.tensors {
            if is_lora_a(name) && !pairs.contains(name) {
                pairs.push(name.clone());
            }
        }
    }
    if pairs.is_empty() {
        return Err(data_err(
            &inputs[0].label,
            "the adapter holds no lora_A tensor",
        ));
    }
    let mut tensors = Vec::new();
    for a_name in &pairs {
        let bn = b_name(a_name);
        // (input, A, B, scaling) of every input that has this pair.
        let mut valid: Vec<(usize, Array2<f64>, Array2<f64>, f64)> = Vec::new();
        for (k, i) in inputs.iter().enumerate() {
            let find = |n: &str| i.files.tensors.iter().find(|(t, _)| t == n);
            let Some((_, a)) = find(a_name) else { continue };
            let (_, b) = find(&bn)
                .ok_or_else(|| data_err(&i.label, format!("{bn} is missing beside {a_name}")))?;
            let (a, b) = (to_2d(&i.label, a_name, a)?, to_2d(&i.label, &bn, b)?);
            let cfg = lora_config(i);
            if a.nrows() != cfg.r || b.ncols() != cfg.r {
                return Err(data_err(
                    &i.label,
                    format!(
                        "{a_name} is {:?} and {bn} is {:?}, the config's rank is {}",
                        a.dim(),
                        b.dim(),
                        cfg.r
                    ),
                ));
            }
            if let Some((_, a0, b0, _)) = valid.first() {
                if a.ncols() != a0.ncols() || b.nrows() != b0.nrows() {
                    return Err(data_err(
                        &i.label,
                        format!(
                            "{a_name}: update of shape ({}, {}), another adapter's is ({}, {})",
                            b.nrows(),
                            a.ncols(),
                            b0.nrows(),
                            a0.ncols()
                        ),
                    ));
                }
            }
            valid.push((k, a, b, cfg.scaling()));
        }
        let (d_in, d_out) = (valid[0].1.ncols(), valid[0].2.nrows());
        let (a, b) = match combination {
            Combination::Cat => {
                let mut a = Array2::<f64>::zeros((new_rank, d_in));
                let mut b = Array2::<f64>::zeros((d_out, new_rank));
                let mut at = 0;
                for (k, ai, bi, s) in &valid {
                    let r = ai.nrows();
                    let ws = opts.weights[*k] * s;
                    a.slice_mut(ndarray::s![at..at + r, ..]).assign(&(ai * ws));
                    b.slice_mut(ndarray::s![.., at..at + r]).assign(bi);
                    at += r;
                }
                (a, b)
            }
            c if c.is_svd() => {
                if new_rank > d_in.min(d_out) {
                    return Err(Error::Invalid {
                        op: "--svd-rank",
                        detail: format!(
                            "{new_rank} is more than the rank ({}) an update of {a_name}'s Linear ({d_out}, {d_in}) can have",
                            d_in.min(d_out)
                        ),
                    });
                }
                // ΔW_i = s_i B_i A_i (PEFT's get_delta_weight applies the scaling), weight w_i.
                let deltas: Vec<Vec<f64>> = valid
                    .iter()
                    .map(|(_, a, b, s)| (b.dot(a) * *s).iter().copied().collect())
                    .collect();
                let weights: Vec<f64> = valid.iter().map(|(k, ..)| opts.weights[*k]).collect();
                let f = c.merge_fn().expect("svd types have a merge function");
                let merged = apply_fn(
                    f,
                    &deltas,
                    &weights,
                    density,
                    opts.majority_sign_method,
                    &mut rng,
                );
                let m = Array2::from_shape_vec((d_out, d_in), merged).expect("ΔW's shape");
                let (a, b) = merge_linalg::low_rank(m.view(), new_rank, opts.svd_clamp);
                (a, b)
            }
            c => {
                let f = c.merge_fn().expect("non-cat types have a merge function");
                // w_i s_i split over both factors, its sign on A only (so it is not cancelled).
                let ws: Vec<f64> = valid
                    .iter()
                    .map(|(k, .., s)| opts.weights[*k] * s)
                    .collect();
                let wa: Vec<f64> = ws
                    .iter()
                    .map(|w| w.abs().sqrt() * if *w >= 0.0 { 1.0 } else { -1.0 })
                    .collect();
                let wb: Vec<f64> = ws.iter().map(|w| w.abs().sqrt()).collect();
                let la: Vec<Vec<f64>> = valid
                    .iter()
                    .map(|v| v.1.iter().copied().collect())
                    .collect();
                let lb: Vec<Vec<f64>> = valid
                    .iter()
                    .map(|v| v.2.iter().copied().collect())
                    .collect();
                let sign = opts.majority_sign_method;
                let a = apply_fn(f, &la, &wa, density, sign, &mut rng);
                let b = apply_fn(f, &lb, &wb, density, sign, &mut rng);
                (
                    Array2::from_shape_vec((new_rank, d_in), a).expect("A's shape"),
                    Array2::from_shape_vec((d_out, new_rank), b).expect("B's shape"),
                )
            }
        };
        tensors.push((a_name.clone(), from_2d(&a)));
        tensors.push((bn, from_2d(&b)));
    }
    let heads = collect_heads(inputs, |n| {
        is_lora(n) || n.contains("lora_magnitude_vector")
    });
    if !heads.is_empty() {
        notes.push(heads_note(inputs, &heads));
    }
    let first = lora_config(&inputs[0]);
    let spec = MethodSpec::Lora(LoraConfig {
        r: new_rank,
        alpha: new_rank as f64,
        dropout: first.dropout,
        targets: union_targets(inputs)?,
        rslora: false,
        lr_ratio_b: 1.0,
        // Saved PiSSA / OLoRA adapters are plain LoRAs of the original base already.
        ..LoraConfig::default()
    });
    Ok(Merged {
        spec,
        tensors,
        heads,
        notes,
        combination,
    })
}

/// Each input's tensors that are not merged (`merged(name)` false): its task head.
fn collect_heads(inputs: &[Input], merged: impl Fn(&str) -> bool) -> Vec<Head> {
    inputs
        .iter()
        .enumerate()
        .filter_map(|(k, i)| {
            let tensors: Vec<(String, ArrayD<f32>)> = i
                .files
                .tensors
                .iter()
                .filter(|(n, _)| !merged(n))
                .cloned()
                .collect();
            (!tensors.is_empty()).then(|| Head {
                input: k,
                task: i.task().map(str::to_string),
                tensors,
            })
        })
        .collect()
}

fn heads_note(inputs: &[Input], heads: &[Head]) -> String {
    let list: Vec<String> = heads
        .iter()
        .map(|h| {
            let names: Vec<&str> = h.tensors.iter().map(|(n, _)| n.as_str()).collect();
            format!(
                "{} ({}: {})",
                inputs[h.input].label,
                h.task.as_deref().unwrap_or("no task recorded"),
                names.join(", ")
            )
        })
        .collect();
    format!(
        "task heads are not merged (a head maps features to one task's labels; PEFT refuses to merge modules_to_save): the merged weights are shared and each task keeps its own head: {}",
        list.join("; ")
    )
}

fn merge_full(inputs: &[Input], opts: &MergeOptions, base: &ParamStore<f32>) -> Result<Merged> {
    let combination = opts.combination;
    let Some(f) = combination.merge_fn().filter(|_| !combination.is_svd()) else {
        return Err(Error::Invalid {
            op: "--combination",
            detail: format!(
                "{} needs LoRA factors; full fine-tunes merge with linear (task arithmetic), ties, dare_linear, dare_ties or magnitude_prune",
                combination.name()
            ),
        });
    };
    let density = if combination.needs_density() {
        check_density(opts.density, combination.name())?
    } else {
        1.0
    };
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut tensors = Vec::with_capacity(base.len());
    let mut changed = 0usize;
    for (_, p) in base.iter() {
        let mut deltas = Vec::new();
        let mut weights = Vec::new();
        for (k, i) in inputs.iter().enumerate() {
            let Some((_, w)) = i.files.tensors.iter().find(|(n, _)| *n == p.name) else {
                continue;
            };
            if w.shape() != p.value.shape() {
                return Err(data_err(
                    &i.label,
                    format!(
                        "tensor {} has shape {:?}, the base's is {:?}",
                        p.name,
                        w.shape(),
                        p.value.shape()
                    ),
                ));
            }
            deltas.push(
                w.iter()
                    .zip(p.value.iter())
                    .map(|(&a, &b)| a as f64 - b as f64)
                    .collect::<Vec<f64>>(),
            );
            weights.push(opts.weights[k]);
        }
        let value = if deltas.is_empty() {
            p.value.clone()
        } else {
            changed += 1;
            let d = apply_fn(
                f,
                &deltas,
                &weights,
                density,
                opts.majority_sign_method,
                &mut rng,
            );
            let w: Vec<f64> = flat(&p.value).iter().zip(&d).map(|(a, b)| a + b).collect();
            shaped(w, p.value.shape())
        };
        tensors.push((p.name.clone(), value));
    }
    if changed == 0 {
        return Err(data_err(
            &inputs[0].label,
            "no tensor of these adapters is a weight of the base",
        ));
    }
    let heads = collect_heads(inputs, |n| base.id(n).is_ok());
    let mut notes = Vec::new();
    if !heads.is_empty() {
        notes.push(heads_note(inputs, &heads));
    }
    Ok(Merged {
        spec: MethodSpec::Full { last_k: None },
        tensors,
        heads,
        notes,
        combination,
    })
}

// ---------------------------------------------------------------------------------------------
// Folding one adapter into the base: `merge --into-base`
// ---------------------------------------------------------------------------------------------

/// The files of a model directory that carry its tokenizer, copied beside the merged weights.
const TOKENIZER_FILES: [&str; 3] = ["tokenizer.json", "vocab.txt", "tokenizer_config.json"];

/// Whether a tensor an adapter saved is a task head: a top-level module's weight or bias
/// (`score.weight`, `classifier.bias`, `qa_outputs.weight`) that is not a base parameter.
/// Method parameters always sit under a block's module path.
fn is_head(name: &str, base: &ParamStore<f32>) -> bool {
    base.id(name).is_err() && name.matches('.').count() == 1
}

/// What [`into_base`] wrote.
pub struct IntoBase {
    pub method: &'static str,
    /// Tensors of the written model.
    pub tensors: usize,
    /// The adapter's task-head tensors, which a base model has no place for.
    pub dropped_heads: Vec<String>,
}

/// Folds the adapter in `adapter` into the base `base` (a shipped name or a model directory)
/// and writes the result as the Hugging Face model directory `out` (config.json,
/// model.safetensors, the base's tokenizer files), loadable as `--base out`. `out` is written
/// as a whole ([`crate::io::replace_dir`]). LoRA, DoRA, IA3, full and BitFit adapters fold
/// ([`crate::peft::Method::merge_into_base`]); the adapter's task head, if it saved one, is
/// not part of a base model and is left out (`dropped_heads`).
pub fn into_base(base: &str, adapter: &std::path::Path, out: &std::path::Path) -> Result<IntoBase> {
    let mut b = super::finetune::load_base(base)?;
    let files = crate::io::adapter::read::<f32>(adapter)?;
    crate::io::adapter::check_base(adapter, &files.meta, &b.model.config, base)?;
    let method = files.spec.name();
    if !matches!(method, "lora" | "dora" | "ia3" | "full" | "bitfit") {
        return Err(Error::Invalid {
            op: "merge --into-base",
            detail: format!(
                "{}: a {method} adapter cannot be folded into the base weights (it is not a change of the weights); LoRA, DoRA, IA3, full and BitFit can",
                adapter.display()
            ),
        });
    }
    let n_base = b.store.len();
    let (heads, kept): (Vec<_>, Vec<_>) = files
        .tensors
        .into_iter()
        .partition(|(n, _)| is_head(n, &b.store));
    let files = AdapterFiles {
        tensors: kept,
        ..files
    };
    let (_, m, _) =
        crate::peft::store::load_adapter_files(adapter, files, &b.model, &mut b.store, 0)?;
    m.merge_into_base(&mut b.store)?;
    write_model_dir(out, &b.model.config, &b.store, n_base, &b.dir)?;
    Ok(IntoBase {
        method,
        tensors: n_base,
        dropped_heads: heads.into_iter().map(|(n, _)| n).collect(),
    })
}

/// Writes the first `n_base` parameters of `store` (the base model's) with `config` as a Hugging
/// Face directory `out`, with the tokenizer files of `tokenizer_dir`.
pub fn write_model_dir(
    out: &std::path::Path,
    config: &crate::nn::Config,
    store: &ParamStore<f32>,
    n_base: usize,
    tokenizer_dir: &std::path::Path,
) -> Result<()> {
    use crate::io::checkpoint;
    let tmp = crate::io::temp_dir_for(out)?;
    let json = serde_json::to_string_pretty(&config.to_json()).expect("config serialises");
    crate::io::atomic_write(&tmp.join(checkpoint::CONFIG), json.as_bytes())?;
    let tensors: Vec<(&str, ndarray::ArrayViewD<'_, f32>)> = store
        .iter()
        .take(n_base)
        .map(|(_, p)| (p.name.as_str(), p.value.view()))
        .collect();
    crate::io::safetensors::save(
        &tmp.join(checkpoint::WEIGHTS),
        &tensors,
        &[("format", "pt")],
    )?;
    for name in TOKENIZER_FILES {
        let from = tokenizer_dir.join(name);
        if from.exists() {
            let bytes = crate::io::read(&from)?;
            crate::io::atomic_write(&tmp.join(name), &bytes)?;
        }
    }
    crate::io::replace_dir(&tmp, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_elects_the_sign_and_averages_the_agreeing_entries() {
        let t = vec![vec![1.0, -2.0, 3.0, 0.0], vec![3.0, 1.0, -1.0, 0.0]];
        // No pruning: sign of the sums (+, −, +, + for 0) and the mean of those that agree.
        let m = ties(&t, &[1.0, 1.0], 1.0, MajoritySign::Total);
        assert_eq!(m, vec![2.0, -2.0, 3.0, 0.0]);
        // frequency: one vote each; ties (one + one −) elect +.
        let m = ties(&t, &[1.0, 1.0], 1.0, MajoritySign::Frequency);
        assert_eq!(m, vec![2.0, 1.0, 3.0, 0.0]);
    }

    #[test]
    fn magnitude_pruning_keeps_the_floor_of_density_times_n_largest() {
        assert_eq!(
            prune_magnitude(&[0.1, -5.0, 2.0, -0.3, 4.0], 0.5),
            vec![0.0, -5.0, 0.0, 0.0, 4.0]
        );
        assert_eq!(prune_magnitude(&[1.0, 2.0], 1.5), vec![1.0, 2.0]);
    }

    #[test]
    fn dare_keeps_about_density_of_the_entries_and_rescales_them() {
        let mut rng = StdRng::seed_from_u64(3);
        let masks = dare_masks(&[10_000], 0.3, &mut rng);
        let kept = masks[0].iter().filter(|&&k| k).count() as f64 / 1e4;
        assert!((kept - 0.3).abs() < 0.02, "{kept}");
        let t = vec![1.0; 10_000];
        let d = drop_and_rescale(&t, &masks[0], 0.3);
        let mean = d.iter().sum::<f64>() / 1e4;
        assert!(
            (mean - 1.0).abs() < 0.07,
            "DARE keeps the expectation: {mean}"
        );
    }
}
