//! The newer PEFT methods, merging and serving: LoHa and LoKr (23), VeRA (24), AdaLoRA (25),
//! LoRA-FA (26), PiSSA and OLoRA (27), merging adapters with task arithmetic, TIES and DARE (28),
//! NEFTune (29), and serving many adapters from one base (30).
//!
//! Questions 23–27 train the methods of `src/peft/` against plain LoRA on sentiment, every
//! method on every seed side by side, with the learning rate compare uses for each
//! (`configs/compare.toml`), and judge their claims once on what the seeds measured together
//! (means with Student-t 95% intervals, differences paired by seed). Questions 28–30 call the
//! lab functions behind `tunelab merge --compare`, `tunelab neftune` and `tunelab serve-bench`.
//! Every number printed is measured or counted in the run; the formulas are printed beside what
//! the parameter store holds.

use crate::data::tasks::Task;
use crate::error::Result;
use crate::lab::estimate;
use crate::lab::evidence::{num, seed_list, table, Claim, Evidence, Fmt, Mode};
use crate::lab::lanes::{lanes, side_by_side};
use crate::lab::merge::{self, MajoritySign};
use crate::lab::merge_compare::{self, MergeCompareOptions};
use crate::lab::merge_linalg::svd;
use crate::lab::neftune::{self, NeftuneOptions};
use crate::lab::runs::{prepare_run, train_run, Run};
use crate::lab::serving::{self, ServingOptions, ServingRow};
use crate::lab::settings::Settings;
use crate::lab::stats::{self, IntervalKind, Paired};
use crate::nn::quantize::BaseDtype;
use crate::peft::adalora::AdaLora;
use crate::peft::lokr::LokrShape;
use crate::peft::spec::{AdaLoraConfig, LohaConfig, LokrConfig, LoraConfig, LoraInit, VeraConfig};
use crate::peft::MethodSpec;
use crate::train::progress::Progress;
use crate::train::trainer::{Memory, Split, TrainTask};
use crate::ParamStore;
use ndarray::{Array2, Ix2};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Serialize;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Shared: methods trained against LoRA on sentiment, every seed side by side

/// One method of a comparison: its label, spec and learning rate.
#[derive(Debug, Clone, Serialize)]
pub struct Arm {
    pub label: String,
    pub spec: MethodSpec,
    pub lr: f64,
}

/// One method trained on one seed.
#[derive(Debug, Clone, Serialize)]
pub struct Trained {
    /// Trainable parameters the method added (its frozen ones not counted; the head not either).
    pub adapter_params: usize,
    /// Parameters the method added that never train (LoRA-FA's A, VeRA's projections).
    pub frozen_params: usize,
    pub memory: Memory,
    /// Every step's training loss.
    pub losses: Vec<f64>,
    pub accuracy: f64,
    pub diverged: bool,
    /// The numerical rank of each learned update ΔW, in model order (LoRA, LoHa, LoKr).
    pub ranks: Vec<usize>,
    /// The spec the adapter would be saved with (AdaLoRA's records its rank pattern).
    pub saved: MethodSpec,
}

/// Every arm on every seed: `[arm][seed]`.
#[derive(Debug, Clone, Serialize)]
pub struct Trials {
    pub arms: Vec<Arm>,
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub batch: usize,
    pub test_examples: usize,
    pub runs: Vec<Vec<Trained>>,
}

impl Trials {
    fn accuracy(&self, arm: usize) -> Vec<f64> {
        self.runs[arm].iter().map(|t| t.accuracy).collect()
    }

    /// `arm − baseline` test accuracy, paired by seed.
    fn paired(&self, arm: usize, baseline: usize) -> Paired {
        stats::paired_t(
            &self.arms[baseline].label,
            &self.accuracy(arm),
            &self.accuracy(baseline),
        )
    }

    /// One row per arm: trainable, test accuracy with its interval, the paired difference from
    /// arm 0.
    fn score_table(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny, {} steps of batch {} (as compare: linear decay after a tenth of the steps of warmup, compare's learning rate per method), seeds {}; test accuracy on {} examples, mean ± 95% interval over the seeds (Student-t); differences paired by seed\n\n",
            self.steps,
            self.batch,
            seed_names(&self.seeds),
            self.test_examples
        );
        let rows: Vec<Vec<String>> = (0..self.arms.len())
            .map(|i| {
                let p = self.paired(i, 0);
                vec![
                    self.arms[i].label.clone(),
                    format!("{:.0e}", self.arms[i].lr),
                    self.runs[i][0].adapter_params.to_string(),
                    over(&self.accuracy(i), 3),
                    if i == 0 {
                        "-".into()
                    } else {
                        format!("{} ({})", p.difference.short(3), p.verdict.name())
                    },
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "method",
                "lr",
                "trainable",
                "test accuracy",
                &format!("− {}", self.arms[0].label),
            ],
            &rows,
        ));
        s
    }

    /// The claim that arm `i` scores reliably above arm 0 (the paired interval above zero).
    fn better_claim(&self, i: usize, text: &str) -> Claim {
        let p = self.paired(i, 0);
        Claim::new(text, matches!(p.verdict, stats::Verdict::Better)).measured(
            format!(
                "{} − {} test accuracy",
                self.arms[i].label, self.arms[0].label
            ),
            p.difference.mean,
            Fmt::Signed(3),
        )
    }
}

fn seed_names(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Mean ± the 95% interval over seeds.
fn over(xs: &[f64], d: usize) -> String {
    stats::t_interval(xs, IntervalKind::TOverSeeds).short(d)
}

/// The learning rate compare uses for `label` on sentiment (configs/compare.toml), or `fallback`.
fn compare_lr(label: &str, fallback: f64) -> f64 {
    Settings::compiled()
        .ok()
        .and_then(|s| s.get(Task::Sentiment, label).map(|x| x.lr))
        .unwrap_or(fallback)
}

fn arm(label: &str, spec: MethodSpec, lr: f64) -> Arm {
    Arm {
        label: label.into(),
        spec,
        lr,
    }
}

/// compare's LoRA r=8 on q,v (alpha 32) at compare's rate.
fn lora_arm() -> Arm {
    arm(
        "lora r=8 q,v",
        MethodSpec::Lora(crate::peft::lora::compare_config()),
        compare_lr("lora r=8 q,v", 3e-3),
    )
}

/// The numerical rank of `m`: singular values above 1e-6 of the largest (the matrices are
/// products of f32 factors computed in f64, so a rank-deficient one has its other singular
/// values at about 1e-16 of the largest).
pub fn numerical_rank(m: &Array2<f64>) -> usize {
    let s = svd(m.view()).s;
    let top = s.first().copied().unwrap_or(0.0);
    if top == 0.0 {
        return 0;
    }
    s.iter().filter(|&&x| x > 1e-6 * top).count()
}

fn matrix(store: &ParamStore<f32>, name: &str) -> Option<Array2<f64>> {
    let id = store.id(name).ok()?;
    store
        .value(id)
        .mapv(|x| x as f64)
        .into_dimensionality::<Ix2>()
        .ok()
}

/// kron(a, b): (a_rows·b_rows, a_cols·b_cols).
pub fn kron(a: &Array2<f64>, b: &Array2<f64>) -> Array2<f64> {
    let ((p, q), (r, s)) = (a.dim(), b.dim());
    Array2::from_shape_fn((p * r, q * s), |(i, j)| {
        a[[i / r, j / s]] * b[[i % r, j % s]]
    })
}

/// Each learned update ΔW (unscaled) of the LoRA, LoHa or LoKr parameters in `store`, rebuilt
/// by the method's formula from the factors' names, in name order.
pub fn updates(store: &ParamStore<f32>, names: &[String]) -> Vec<(String, Array2<f64>)> {
    // "h.0.attn.c_attn.lora_A.q.weight" → key "h.0.attn.c_attn.q", factor "lora_A".
    let mut groups: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for n in names {
        let parts: Vec<&str> = n.split('.').collect();
        let Some(i) = parts.iter().position(|p| {
            p.starts_with("lora_") || p.starts_with("hada_") || p.starts_with("lokr_")
        }) else {
            continue;
        };
        let key: Vec<&str> = parts
            .iter()
            .enumerate()
            .filter(|&(j, p)| j != i && *p != "weight")
            .map(|(_, p)| *p)
            .collect();
        groups
            .entry(key.join("."))
            .or_default()
            .insert(parts[i].to_string(), n.clone());
    }
    let mut out = Vec::new();
    for (key, f) in groups {
        let get = |k: &str| f.get(k).and_then(|n| matrix(store, n));
        let product = |a: &str, b: &str| Some(get(a)?.dot(&get(b)?));
        let dw = if let (Some(a), Some(b)) = (get("lora_A"), get("lora_B")) {
            Some(b.dot(&a))
        } else if let (Some(w1), Some(w2)) = (
            product("hada_w1_a", "hada_w1_b"),
            product("hada_w2_a", "hada_w2_b"),
        ) {
            Some(w1 * w2)
        } else {
            let w1 = get("lokr_w1").or_else(|| product("lokr_w1_a", "lokr_w1_b"));
            let w2 = get("lokr_w2").or_else(|| product("lokr_w2_a", "lokr_w2_b"));
            w1.zip(w2).map(|(a, b)| kron(&a, &b))
        };
        if let Some(dw) = dw {
            out.push((key, dw));
        }
    }
    out
}

/// A run as compare trains its entries: the Trainer's default schedule (linear decay) with a
/// tenth of the steps of warmup; the learning rate was chosen by compare's sweep under it, and a
/// method run at that rate on a constant schedule without warmup can fail to learn (LoRA at
/// 9e-3 did: it stayed at chance on every seed).
fn compare_run(spec: MethodSpec, lr: f64, steps: usize, batch: usize, seed: u64) -> Run {
    let mut run = Run::new(Task::Sentiment, spec, lr, steps, batch).seed(seed);
    run.args.schedule = crate::train::TrainingArgs::default().schedule;
    run.args.warmup_steps = steps / 10;
    run
}

fn train_one(a: &Arm, seed: u64, steps: usize, batch: usize, test: usize) -> Result<Trained> {
    let run = compare_run(a.spec.clone(), a.lr, steps, batch, seed);
    let o = train_run(&run, &a.label, &mut ())?;
    let store = &o.base.store;
    let (mut adapter_params, mut frozen_params) = (0, 0);
    for &id in o.method.params().iter().chain(o.method.frozen()) {
        if store.is_trainable(id) {
            adapter_params += store.numel(id);
        } else {
            frozen_params += store.numel(id);
        }
    }
    let names: Vec<String> = o
        .method
        .params()
        .iter()
        .map(|&id| store.name(id).to_string())
        .collect();
    let ranks = updates(store, &names)
        .iter()
        .map(|(_, m)| numerical_rank(m))
        .collect();
    let accuracy = if o.diverged.is_some() {
        f64::NAN
    } else {
        o.evaluate(Split::Test, test)?["accuracy"]
    };
    Ok(Trained {
        adapter_params,
        frozen_params,
        memory: o.report.as_ref().map(|r| r.memory).unwrap_or_default(),
        losses: o.record.losses.clone(),
        accuracy,
        diverged: o.diverged.is_some(),
        ranks,
        saved: o.method.saved_spec(&a.spec),
    })
}

/// Trains every arm on every seed, side by side.
pub fn trials(
    arms: Vec<Arm>,
    mode: Mode,
    seeds: usize,
    progress: &mut dyn Progress,
) -> Result<Trials> {
    // compare's budget: 50 steps of batch 16.
    let (steps, batch, test) = (mode.pick(8, 50), 16, mode.pick(64, 200));
    let seeds = seed_list(seeds.max(1));
    progress.line(&format!(
        "training {} on sentiment: {steps} steps of batch {batch}, seeds {}",
        arms.iter()
            .map(|a| a.label.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        seed_names(&seeds)
    ));
    let jobs: Vec<(usize, u64)> = (0..arms.len())
        .flat_map(|i| seeds.iter().map(move |&s| (i, s)))
        .collect();
    let flat = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (i, s) = jobs[k];
        train_one(&arms[i], s, steps, batch, test)
    })?;
    let mut it = flat.into_iter();
    let runs = (0..arms.len())
        .map(|_| it.by_ref().take(seeds.len()).collect())
        .collect();
    Ok(Trials {
        arms,
        seeds,
        steps,
        batch,
        test_examples: test,
        runs,
    })
}

/// gpt-tiny's width C (its q and v blocks are C × C).
fn gpt_tiny_width() -> Result<usize> {
    Ok(crate::lab::finetune::load_base(crate::lab::runs::BASE)?
        .model
        .config
        .d_model)
}

// ---------------------------------------------------------------------------------------------
// 23. LoHa and LoKr

/// One method's update shape for a C × C block: parameters and the rank its form allows.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateForm {
    pub label: String,
    pub formula: String,
    /// Parameters per C × C block, by the formula.
    pub per_block: usize,
    /// The highest rank the form allows.
    pub max_rank: usize,
    /// The rank of ΔW built from random factors of this form.
    pub random_rank: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct HadaKron {
    pub width: usize,
    pub blocks: usize,
    pub forms: Vec<UpdateForm>,
    pub trials: Trials,
}

/// ΔW of random factors of each form on a C × C block, and its rank.
fn forms(c: usize) -> Vec<UpdateForm> {
    let mut rng = StdRng::seed_from_u64(23);
    let mut rand = |r: usize, k: usize| {
        crate::nn::layers::normal::<f64>(&[r, k], 1.0, &mut rng)
            .into_dimensionality::<Ix2>()
            .expect("2-D")
    };
    let mut out = Vec::new();
    for r in [1, 8] {
        let dw = rand(c, r).dot(&rand(r, c));
        out.push(UpdateForm {
            label: format!("LoRA r={r}"),
            formula: "B·A: r(d_in + d_out)".into(),
            per_block: r * 2 * c,
            max_rank: r,
            random_rank: numerical_rank(&dw),
        });
    }
    let r = 4;
    let dw = rand(c, r).dot(&rand(r, c)) * rand(c, r).dot(&rand(r, c));
    out.push(UpdateForm {
        label: format!("LoHa r={r}"),
        formula: "(W1a·W1b)⊙(W2a·W2b): 2r(d_in + d_out)".into(),
        per_block: 2 * r * 2 * c,
        max_rank: (r * r).min(c),
        random_rank: numerical_rank(&dw),
    });
    let cfg = lokr_config();
    let shape = LokrShape::of(c, c, &cfg);
    let side = |(p, q): (usize, usize), low: bool| {
        if low {
            cfg.r.min(p).min(q)
        } else {
            p.min(q)
        }
    };
    let w1 = if shape.w1_low_rank {
        rand(shape.w1.0, cfg.r).dot(&rand(cfg.r, shape.w1.1))
    } else {
        rand(shape.w1.0, shape.w1.1)
    };
    let w2 = if shape.w2_low_rank {
        rand(shape.w2.0, cfg.r).dot(&rand(cfg.r, shape.w2.1))
    } else {
        rand(shape.w2.0, shape.w2.1)
    };
    out.push(UpdateForm {
        label: format!("LoKr r={}", cfg.r),
        formula: format!(
            "kron(W1 {}×{}, W2 {}×{}): rank(W1)·rank(W2)",
            shape.w1.0, shape.w1.1, shape.w2.0, shape.w2.1
        ),
        per_block: shape.count(cfg.r).unwrap_or(0) as usize,
        max_rank: side(shape.w1, shape.w1_low_rank) * side(shape.w2, shape.w2_low_rank),
        random_rank: numerical_rank(&kron(&w1, &w2)),
    });
    out
}

fn lokr_config() -> LokrConfig {
    match crate::peft::registry::compare_examples(&Default::default())
        .into_iter()
        .find(|e| e.label.starts_with("lokr"))
        .map(|e| e.spec)
    {
        Some(MethodSpec::Lokr(c)) => c,
        _ => LokrConfig {
            r: 8,
            alpha: 8.0,
            targets: vec!["q".into(), "v".into()],
            decompose_both: false,
            decompose_factor: -1,
        },
    }
}

pub fn hadamard_kronecker(
    mode: Mode,
    seeds: usize,
    progress: &mut dyn Progress,
) -> Result<HadaKron> {
    let c = gpt_tiny_width()?;
    let qv = || vec!["q".to_string(), "v".to_string()];
    let arms = vec![
        lora_arm(),
        arm(
            "loha r=4 q,v",
            MethodSpec::Loha(LohaConfig {
                r: 4,
                alpha: 4.0,
                targets: qv(),
            }),
            compare_lr("loha r=4 q,v", 3e-2),
        ),
        arm(
            "lokr r=8 q,v",
            MethodSpec::Lokr(lokr_config()),
            compare_lr("lokr r=8 q,v", 3e-2),
        ),
    ];
    let trials = trials(arms, mode, seeds, progress)?;
    let blocks = trials.runs[0][0].ranks.len();
    Ok(HadaKron {
        width: c,
        blocks,
        forms: forms(c),
        trials,
    })
}

fn rank_range(ranks: &[usize]) -> String {
    let lo = ranks.iter().min().copied().unwrap_or(0);
    let hi = ranks.iter().max().copied().unwrap_or(0);
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}..{hi}")
    }
}

impl Evidence for HadaKron {
    fn render(&self) -> String {
        let c = self.width;
        let mut s = format!(
            "the update of one {c}×{c} block (gpt-tiny's q or v): parameters by the formula, the highest rank the form allows, and the numerical rank of ΔW built from random factors (singular values above 1e-6 of the largest)\n\n"
        );
        let rows: Vec<Vec<String>> = self
            .forms
            .iter()
            .map(|f| {
                vec![
                    f.label.clone(),
                    f.formula.clone(),
                    f.per_block.to_string(),
                    f.max_rank.to_string(),
                    f.random_rank.to_string(),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "form",
                "formula",
                "params/block",
                "max rank",
                "rank (random)",
            ],
            &rows,
        ));
        let t = &self.trials;
        s.push_str(&format!(
            "\ntrained on q,v ({} blocks): trainable parameters in the store against formula × blocks, and the numerical rank of each learned ΔW (seed {})\n\n",
            self.blocks, t.seeds[0]
        ));
        let rows: Vec<Vec<String>> = t
            .arms
            .iter()
            .zip(&t.runs)
            .map(|(a, runs)| {
                // "lora r=8 q,v" is the form "LoRA r=8".
                let form = self
                    .forms
                    .iter()
                    .find(|f| a.label.starts_with(&f.label.to_lowercase()));
                vec![
                    a.label.clone(),
                    runs[0].adapter_params.to_string(),
                    form.map_or("-".into(), |f| (f.per_block * self.blocks).to_string()),
                    rank_range(&runs[0].ranks),
                ]
            })
            .collect();
        s.push_str(&table(
            &["method", "in store", "formula × blocks", "learned ΔW rank"],
            &rows,
        ));
        s.push('\n');
        s.push_str(&t.score_table());
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let t = &self.trials;
        let all_ranks =
            |i: usize| -> Vec<usize> { t.runs[i].iter().flat_map(|r| r.ranks.clone()).collect() };
        let form = |p: &str| self.forms.iter().find(|f| f.label.starts_with(p));
        let counted = |i: usize, p: &str| {
            form(p).is_some_and(|f| {
                t.runs[i]
                    .iter()
                    .all(|r| r.adapter_params == f.per_block * self.blocks)
            })
        };
        let lora_max = all_ranks(0).into_iter().max().unwrap_or(0);
        let loha_min = all_ranks(1).into_iter().min().unwrap_or(0);
        let lokr_min = all_ranks(2).into_iter().min().unwrap_or(0);
        vec![
            Claim::new(
                "the store holds exactly the formula's parameters for LoRA, LoHa and LoKr",
                counted(0, "LoRA r=8") && counted(1, "LoHa") && counted(2, "LoKr"),
            ),
            Claim::new(
                "LoHa r=4 has exactly LoRA r=8's parameters",
                form("LoHa").map(|f| f.per_block) == form("LoRA r=8").map(|f| f.per_block),
            ),
            Claim::new(
                "random factors reach each form's highest rank (LoRA r, LoHa r², LoKr rank(W1)·rank(W2))",
                self.forms.iter().all(|f| f.random_rank == f.max_rank),
            ),
            Claim::new(
                "every learned LoHa update has a higher rank than any learned LoRA update at the same parameter count",
                loha_min > lora_max,
            )
            .measured("lowest learned LoHa rank", loha_min as f64, Fmt::Fixed(0)),
            Claim::new(
                "every learned LoKr update has a higher rank than any learned LoRA update, with fewer parameters",
                lokr_min > lora_max
                    && t.runs[2][0].adapter_params < t.runs[0][0].adapter_params,
            )
            .measured("lowest learned LoKr rank", lokr_min as f64, Fmt::Fixed(0)),
            t.better_claim(1, "LoHa's higher rank buys a higher test accuracy than LoRA's (paired interval above 0)"),
            t.better_claim(2, "LoKr's higher rank buys a higher test accuracy than LoRA's (paired interval above 0)"),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 24. VeRA

/// One parameter count: LoRA's or VeRA's, on gpt-tiny or LLaMA-7B's shape.
#[derive(Debug, Clone, Serialize)]
pub struct CountRow {
    pub model: String,
    pub method: String,
    pub trainable: u64,
    /// Frozen numbers the method adds (VeRA's shared projections).
    pub frozen: u64,
}

/// One entry's learning-rate grid in compare's settings.
#[derive(Debug, Clone, Serialize)]
pub struct Grid {
    pub label: String,
    pub chosen: f64,
    /// (lr, mean validation accuracy)
    pub scores: Vec<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VeraEvidence {
    pub counts: Vec<CountRow>,
    /// Learning-rate grids of compare's sweep on sentiment.
    pub grids: Vec<Grid>,
    pub trials: Trials,
}

fn vera_config() -> VeraConfig {
    match crate::peft::registry::compare_examples(&Default::default())
        .into_iter()
        .find(|e| e.label.starts_with("vera"))
        .map(|e| e.spec)
    {
        Some(MethodSpec::Vera(c)) => c,
        _ => VeraConfig {
            r: 256,
            targets: vec!["q".into(), "v".into()],
            ..Default::default()
        },
    }
}

pub fn vera(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<VeraEvidence> {
    let cfg = vera_config();
    let vera_label = format!("vera r={} q,v", cfg.r);
    let arms = vec![
        lora_arm(),
        arm(
            &vera_label,
            MethodSpec::Vera(cfg.clone()),
            compare_lr(&vera_label, 9e-2),
        ),
    ];
    let trials = trials(arms, mode, seeds, progress)?;
    let c = gpt_tiny_width()? as u64;
    let blocks = trials.runs[0][0].ranks.len() as u64;
    let r = cfg.r as u64;
    let shape = estimate::named_shape("7B").expect("7B is a named size");
    let (l, h) = (shape.layers as u64, shape.hidden as u64);
    let mut counts = vec![
        CountRow {
            model: "gpt-tiny (formula)".into(),
            method: "lora r=8 q,v".into(),
            trainable: blocks * 8 * 2 * c,
            frozen: 0,
        },
        CountRow {
            model: "gpt-tiny (in store)".into(),
            method: "lora r=8 q,v".into(),
            trainable: trials.runs[0][0].adapter_params as u64,
            frozen: trials.runs[0][0].frozen_params as u64,
        },
        CountRow {
            model: "gpt-tiny (formula)".into(),
            method: vera_label.clone(),
            trainable: blocks * (r + c),
            frozen: r * c + c * r,
        },
        CountRow {
            model: "gpt-tiny (in store)".into(),
            method: vera_label.clone(),
            trainable: trials.runs[1][0].adapter_params as u64,
            frozen: trials.runs[1][0].frozen_params as u64,
        },
    ];
    for rr in [8, 16] {
        counts.push(CountRow {
            model: "LLaMA-7B (shape)".into(),
            method: format!("lora r={rr} q,v"),
            trainable: estimate::lora_params(&shape, &estimate::LoraConfig::qv(rr))?,
            frozen: 0,
        });
    }
    counts.push(CountRow {
        model: "LLaMA-7B (shape)".into(),
        method: format!("vera r={} q,v", cfg.r),
        trainable: 2 * l * (r + h),
        frozen: 2 * r * h,
    });
    let settings = Settings::compiled()?;
    let grids = [trials.arms[0].label.clone(), vera_label]
        .into_iter()
        .filter_map(|label| {
            let s = settings.get(Task::Sentiment, &label)?;
            Some(Grid {
                chosen: s.lr,
                scores: s.grid.iter().map(|g| (g.lr, g.mean)).collect(),
                label,
            })
        })
        .collect();
    Ok(VeraEvidence {
        counts,
        grids,
        trials,
    })
}

impl Evidence for VeraEvidence {
    fn render(&self) -> String {
        let mut s = String::from("trainable parameters: LoRA r·(d_in + d_out) per adapted matrix; VeRA r + d_out (λd and λb) per adapted matrix, plus one frozen pair A (r × d_in), B (d_out × r) shared by all\n\n");
        let rows: Vec<Vec<String>> = self
            .counts
            .iter()
            .map(|r| {
                vec![
                    r.model.clone(),
                    r.method.clone(),
                    r.trainable.to_string(),
                    r.frozen.to_string(),
                ]
            })
            .collect();
        s.push_str(&table(
            &["model", "method", "trainable", "frozen added"],
            &rows,
        ));
        s.push_str("\nthe learning rates compare's sweep tried on sentiment's validation split (configs/compare.toml): mean validation accuracy per rate, * the chosen one\n\n");
        for g in &self.grids {
            let (label, chosen) = (&g.label, &g.chosen);
            let cells: Vec<String> = g
                .scores
                .iter()
                .map(|(lr, m)| {
                    format!(
                        "{lr:.0e}:{}{}",
                        num(*m, 3),
                        if lr == chosen { "*" } else { "" }
                    )
                })
                .collect();
            s.push_str(&format!("  {label:<16} {}\n", cells.join("  ")));
        }
        s.push('\n');
        s.push_str(&self.trials.score_table());
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let t = &self.trials;
        let find = |m: &str, p: &str| {
            self.counts
                .iter()
                .find(|r| r.model.starts_with(m) && r.method.starts_with(p))
                .map(|r| r.trainable)
        };
        let store_matches = self
            .counts
            .chunks(2)
            .take(2)
            .all(|p| p[0].trainable == p[1].trainable);
        let ratio7b = find("LLaMA", "lora r=8").unwrap_or(0) as f64
            / find("LLaMA", "vera").unwrap_or(1) as f64;
        let lr_ratio = t.arms[1].lr / t.arms[0].lr;
        let p = t.paired(1, 0);
        vec![
            Claim::new(
                "the store holds exactly the formulas' trainable parameters for LoRA and VeRA on gpt-tiny",
                store_matches,
            ),
            Claim::new(
                "on LLaMA-7B's shape VeRA r=256 trains over 10x fewer parameters than LoRA r=8",
                ratio7b > 10.0,
            )
            .measured("LoRA r=8 / VeRA r=256 trainable on 7B", ratio7b, Fmt::Times(1)),
            Claim::new(
                "VeRA's chosen learning rate is at least 10x LoRA's",
                lr_ratio >= 10.0,
            )
            .measured("VeRA lr / LoRA lr", lr_ratio, Fmt::Times(0)),
            Claim::new(
                "VeRA scores reliably below LoRA here (paired interval below 0)",
                matches!(p.verdict, stats::Verdict::Worse),
            )
            .measured("VeRA − LoRA test accuracy", p.difference.mean, Fmt::Signed(3)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 25. AdaLoRA

#[derive(Debug, Clone, Serialize)]
pub struct AdaloraEvidence {
    pub config: AdaLoraConfig,
    /// (step, budget, whether ranks are masked at that step).
    pub schedule: Vec<(usize, usize, bool)>,
    /// Per seed: each adapted block's kept rank, by name.
    pub kept: Vec<BTreeMap<String, usize>>,
    pub trials: Trials,
}

pub fn adalora(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<AdaloraEvidence> {
    let steps = mode.pick(8, 50);
    let config = AdaLoraConfig {
        tinit: steps / 5,
        tfinal: steps / 5,
        delta_t: 1,
        ..crate::peft::adalora::compare_config()
    };
    let lora4 = LoraConfig {
        r: config.target_r,
        alpha: 4.0 * config.target_r as f64,
        ..crate::peft::lora::compare_config()
    };
    let arms = vec![
        arm(
            &format!("lora r={} q,v", lora4.r),
            MethodSpec::Lora(lora4),
            compare_lr("lora r=8 q,v", 3e-3),
        ),
        arm(
            &format!("adalora r={}→{} q,v", config.init_r, config.target_r),
            MethodSpec::Adalora(config.clone()),
            compare_lr("adalora r=8→4 q,v", 2.7e-2),
        ),
    ];
    let trials = trials(arms, mode, seeds, progress)?;
    // The budget schedule of this run, from the allocator itself.
    let base = crate::lab::finetune::load_base(crate::lab::runs::BASE)?;
    let mut store = base.store.clone();
    let ada = AdaLora::apply(&base.model, &mut store, config.clone(), 0)?;
    let mut schedule = Vec::new();
    for step in 1..=steps {
        let (budget, mask) = ada.budget_schedule(step, steps);
        if schedule
            .last()
            .is_none_or(|&(_, b, m)| b != budget || m != mask)
            || step == steps
        {
            schedule.push((step, budget, mask));
        }
    }
    let kept = trials.runs[1]
        .iter()
        .map(|t| match &t.saved {
            MethodSpec::Adalora(c) => c
                .rank_pattern
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.iter().filter(|&&x| x).count()))
                .collect(),
            _ => BTreeMap::new(),
        })
        .collect();
    Ok(AdaloraEvidence {
        config,
        schedule,
        kept,
        trials,
    })
}

impl Evidence for AdaloraEvidence {
    fn render(&self) -> String {
        let c = &self.config;
        let mut s = format!(
            "AdaLoRA on q,v: every block starts at rank {}; the budget (triplets kept over all blocks) falls from init_r·n to target_r·n = {}·n between step tinit = {} and T − tfinal = {} (cubic), then the pattern is fixed\n\nthe budget schedule of a {}-step run (step: budget, masked?):\n  ",
            c.init_r,
            c.target_r,
            c.tinit,
            self.trials.steps - c.tfinal,
            self.trials.steps
        );
        let sched: Vec<String> = self
            .schedule
            .iter()
            .map(|(st, b, m)| format!("{st}:{b}{}", if *m { "m" } else { "" }))
            .collect();
        s.push_str(&sched.join(" "));
        s.push_str(&format!(
            "\n\nthe rank each adapted block ended with (seed {}):\n\n",
            self.trials.seeds[0]
        ));
        let rows: Vec<Vec<String>> = self
            .kept
            .first()
            .map(|k| {
                k.iter()
                    .map(|(n, r)| vec![n.clone(), r.to_string()])
                    .collect()
            })
            .unwrap_or_default();
        s.push_str(&table(&["block", "kept rank"], &rows));
        s.push('\n');
        s.push_str(&self.trials.score_table());
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let c = &self.config;
        let n = self.kept.first().map_or(0, BTreeMap::len);
        let met = self
            .kept
            .iter()
            .all(|k| !k.is_empty() && k.values().sum::<usize>() == c.target_r * k.len());
        let uneven = self
            .kept
            .iter()
            .filter(|k| k.values().min() != k.values().max())
            .count();
        let t = &self.trials;
        let p = t.paired(1, 0);
        // Per seed: the rank kept in the v blocks minus that in the q blocks.
        let v_minus_q: Vec<f64> = self
            .kept
            .iter()
            .map(|k| {
                let sum = |suffix: &str| {
                    k.iter()
                        .filter(|(n, _)| n.ends_with(suffix))
                        .map(|(_, &r)| r as f64)
                        .sum::<f64>()
                };
                sum(".v") - sum(".q")
            })
            .collect();
        vec![
            Claim::new(
                "the allocator keeps more rank in the value projections than in the queries, on every seed",
                !v_minus_q.is_empty() && v_minus_q.iter().all(|&d| d > 0.0),
            )
            .measured(
                "rank kept in v − in q (all layers)",
                stats::mean(&v_minus_q),
                Fmt::Signed(1),
            ),
            Claim::new(
                "after training, the blocks' kept ranks add up to the final budget target_r · n",
                met && n > 0,
            ),
            Claim::new(
                "the allocator gives some blocks more rank than others, on every seed",
                uneven == self.kept.len() && uneven > 0,
            )
            .measured("seeds with uneven ranks", uneven as f64, Fmt::Fixed(0)),
            Claim::new(
                "AdaLoRA scores reliably above LoRA at the same final rank (paired interval above 0)",
                matches!(p.verdict, stats::Verdict::Better),
            )
            .measured("AdaLoRA − LoRA test accuracy", p.difference.mean, Fmt::Signed(3)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 26. LoRA-FA

#[derive(Debug, Clone, Serialize)]
pub struct LoraFaEvidence {
    pub trials: Trials,
}

pub fn lora_fa(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<LoraFaEvidence> {
    let arms = vec![
        lora_arm(),
        arm(
            "lora-fa r=8 q,v",
            MethodSpec::LoraFa(crate::peft::lora::compare_config()),
            compare_lr("lora-fa r=8 q,v", 9e-3),
        ),
    ];
    Ok(LoraFaEvidence {
        trials: trials(arms, mode, seeds, progress)?,
    })
}

impl Evidence for LoraFaEvidence {
    fn render(&self) -> String {
        let t = &self.trials;
        let mut s = format!(
            "memory of one training step (the Trainer's ledger, bytes of every tensor held; seed {}): LoRA trains A (r × d_in) and B (d_out × r); LoRA-FA freezes A, so B alone has gradients and Adam state, and backward keeps the r-wide x·Aᵀ instead of x\n\n",
            t.seeds[0]
        );
        let kb = |b: usize| format!("{:.1}", b as f64 / 1e3);
        let rows: Vec<Vec<String>> = t
            .arms
            .iter()
            .zip(&t.runs)
            .map(|(a, r)| {
                let r = &r[0];
                vec![
                    a.label.clone(),
                    r.adapter_params.to_string(),
                    r.frozen_params.to_string(),
                    kb(r.memory.gradients),
                    kb(r.memory.optimizer),
                    kb(r.memory.activations),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "method",
                "trainable",
                "frozen added",
                "grads KB",
                "optimizer KB",
                "activations KB",
            ],
            &rows,
        ));
        s.push_str("(grads and optimizer include the classification head's, which both train)\n\n");
        s.push_str(&t.score_table());
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let t = &self.trials;
        let (l, f) = (&t.runs[0][0], &t.runs[1][0]);
        let act = f.memory.activations as f64 / l.memory.activations.max(1) as f64;
        let p = t.paired(1, 0);
        vec![
            Claim::new(
                "LoRA-FA trains half of LoRA's adapter parameters (B only; A is as large as B on q,v)",
                2 * f.adapter_params == l.adapter_params && f.frozen_params == f.adapter_params,
            ),
            Claim::new(
                "LoRA-FA holds less gradient and optimizer memory than LoRA",
                f.memory.gradients < l.memory.gradients && f.memory.optimizer < l.memory.optimizer,
            )
            .measured(
                "LoRA-FA / LoRA optimizer state",
                f.memory.optimizer as f64 / l.memory.optimizer.max(1) as f64,
                Fmt::Times(2),
            ),
            Claim::new(
                "LoRA-FA holds less activation memory than LoRA",
                f.memory.activations < l.memory.activations,
            )
            .measured("LoRA-FA / LoRA activations", act, Fmt::Times(3)),
            Claim::new(
                "LoRA-FA scores within LoRA's noise (the paired interval contains 0)",
                matches!(p.verdict, stats::Verdict::Indistinguishable),
            )
            .measured("LoRA-FA − LoRA test accuracy", p.difference.mean, Fmt::Signed(3)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 27. PiSSA and OLoRA

#[derive(Debug, Clone, Serialize)]
pub struct PissaEvidence {
    /// Per arm, per seed: the validation loss at step 0 (before any update).
    pub start_loss: Vec<Vec<f64>>,
    /// Steps whose training loss is averaged for the early curve.
    pub early: usize,
    /// What applying PiSSA and OLoRA to an nf4 base said.
    pub refusals: Vec<(String, String)>,
    pub trials: Trials,
}

fn with_init(init: LoraInit) -> LoraConfig {
    crate::peft::lora::with_init(crate::peft::lora::compare_config(), init)
}

pub fn pissa(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<PissaEvidence> {
    let arms = vec![
        lora_arm(),
        arm(
            "pissa r=8 q,v",
            MethodSpec::Lora(with_init(LoraInit::Pissa)),
            compare_lr("pissa r=8 q,v", 3e-3),
        ),
        arm(
            "olora r=8 q,v",
            MethodSpec::Lora(with_init(LoraInit::Olora)),
            compare_lr("olora r=8 q,v", 9e-3),
        ),
    ];
    let val = mode.pick(32, 200);
    let mut start_loss = Vec::new();
    for a in &arms {
        let mut per = Vec::new();
        for s in seed_list(seeds.max(1)) {
            let run = compare_run(a.spec.clone(), a.lr, 1, 16, s);
            let (base, tm, method) = prepare_run(&run)?;
            let m = TrainTask::<f32>::evaluate(
                &tm,
                &base.store,
                method.as_ref(),
                Split::Validation,
                val,
                32,
            )?;
            per.push(m["loss"]);
        }
        start_loss.push(per);
    }
    let mut refusals = Vec::new();
    for a in &arms[1..] {
        let mut run = Run::new(Task::Sentiment, a.spec.clone(), a.lr, 1, 16);
        run.base_dtype = BaseDtype::Nf4 { double_quant: true };
        let said = match prepare_run(&run) {
            Ok(_) => "accepted".to_string(),
            Err(e) => e.to_string(),
        };
        refusals.push((a.label.clone(), said));
    }
    let trials = trials(arms, mode, seeds, progress)?;
    Ok(PissaEvidence {
        start_loss,
        early: mode.pick(4, 10),
        refusals,
        trials,
    })
}

impl PissaEvidence {
    /// Per arm, per seed: the mean training loss of the first `early` steps.
    pub fn early_loss(&self) -> Vec<Vec<f64>> {
        self.trials
            .runs
            .iter()
            .map(|runs| {
                runs.iter()
                    .map(|r| {
                        let k = self.early.min(r.losses.len()).max(1);
                        r.losses.iter().take(k).sum::<f64>() / k as f64
                    })
                    .collect()
            })
            .collect()
    }
}

impl Evidence for PissaEvidence {
    fn render(&self) -> String {
        let t = &self.trials;
        let early = self.early_loss();
        let mut s = format!(
            "PiSSA puts W's top-r singular directions into A and B (A = √S Vᵀ, B = U √S) and the residual W − s·B·A into the base; OLoRA does the same with W's QR; plain LoRA starts at B = 0. Validation loss at step 0 (same head, seeds {}), and the mean training loss of the first {} steps\n\n",
            seed_names(&t.seeds),
            self.early
        );
        let rows: Vec<Vec<String>> = t
            .arms
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let d: Vec<f64> = self.start_loss[i]
                    .iter()
                    .zip(&self.start_loss[0])
                    .map(|(x, y)| (x - y).abs())
                    .collect();
                vec![
                    a.label.clone(),
                    format!("{:.0e}", a.lr),
                    num(self.start_loss[i][0], 5),
                    format!("{:.1e}", d.iter().copied().fold(0.0, f64::max)),
                    over(&early[i], 3),
                    t.runs[i].iter().filter(|r| r.diverged).count().to_string(),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "method",
                "lr",
                "val loss, step 0",
                "max |Δ| from LoRA's",
                &format!("train loss, steps 1–{}", self.early),
                "diverged",
            ],
            &rows,
        ));
        s.push_str("\non a quantised base (nf4+dq):\n");
        for (label, said) in &self.refusals {
            s.push_str(&format!("  {label}: {said}\n"));
        }
        s.push('\n');
        s.push_str(&t.score_table());
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let t = &self.trials;
        let max_start = (1..self.start_loss.len())
            .flat_map(|i| {
                self.start_loss[i]
                    .iter()
                    .zip(&self.start_loss[0])
                    .map(|(x, y)| (x - y).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0.0, f64::max);
        let early = self.early_loss();
        let faster = stats::paired_t("lora", &early[1], &early[0]);
        let mut v = vec![
            Claim::new(
                "PiSSA and OLoRA start from the base's loss (the residual construction: W − s·B·A + s·B·A = W, up to f32 rounding)",
                max_start < 1e-4,
            )
            .measured("largest |step-0 loss − LoRA's|", max_start, Fmt::Sci(1)),
            Claim::new(
                "both refuse a quantised base, naming why",
                self.refusals
                    .iter()
                    .all(|(_, e)| e.contains("quantised")),
            ),
            Claim::new(
                "PiSSA's training loss over the first steps is reliably below LoRA's (paired interval below 0)",
                matches!(faster.verdict, stats::Verdict::Worse),
            )
            .measured(
                "PiSSA − LoRA early training loss",
                faster.difference.mean,
                Fmt::Signed(3),
            ),
        ];
        v.push(t.better_claim(
            1,
            "PiSSA scores reliably above LoRA (paired interval above 0)",
        ));
        v.push(t.better_claim(
            2,
            "OLoRA scores reliably above LoRA (paired interval above 0)",
        ));
        v
    }
}

// ---------------------------------------------------------------------------------------------
// 28. Merging adapters

/// TIES on three small task vectors, step by step.
#[derive(Debug, Clone, Serialize)]
pub struct TiesExample {
    pub tasks: Vec<Vec<f64>>,
    pub density: f64,
    pub trimmed: Vec<Vec<f64>>,
    pub elected: Vec<f64>,
    pub ties: Vec<f64>,
    pub mean: Vec<f64>,
}

/// The worked example: three task vectors with a sign conflict, an entry only one touches, and
/// small entries trimming removes.
pub fn ties_example() -> TiesExample {
    let tasks = vec![
        vec![0.9, -0.1, 0.0, 0.5, 0.05, -0.6],
        vec![0.7, 0.8, 0.0, -0.75, 0.02, -0.5],
        vec![-0.2, 0.6, 0.8, 0.3, -0.03, 0.1],
    ];
    let density = 0.5;
    let w = vec![1.0; tasks.len()];
    let trimmed: Vec<Vec<f64>> = tasks
        .iter()
        .map(|t| merge::prune_magnitude(t, density))
        .collect();
    let agree = merge::majority_sign_mask(&trimmed, MajoritySign::Total);
    let n = tasks[0].len();
    let elected = (0..n)
        .map(|j| {
            if trimmed.iter().map(|t| t[j]).sum::<f64>() >= 0.0 {
                1.0
            } else {
                -1.0
            }
        })
        .collect();
    let ties = merge::disjoint_merge(&trimmed, &w, &agree);
    let third = vec![1.0 / tasks.len() as f64; tasks.len()];
    TiesExample {
        mean: merge::task_arithmetic(&tasks, &third),
        ties,
        elected,
        trimmed,
        density,
        tasks,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Merging {
    pub example: TiesExample,
    pub report: merge_compare::Report,
    pub table: String,
}

pub fn merging(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<Merging> {
    let mut opts = MergeCompareOptions::new(crate::lab::runs::BASE);
    opts.tasks = vec![Task::Sentiment, Task::Ner];
    opts.merges = merge_compare::default_merges(opts.tasks.len(), opts.lora.r, 0.5);
    opts.steps = mode.pick(8, 60);
    opts.seeds = seeds.max(1);
    opts.max_eval_examples = mode.pick(24, 100);
    let report = merge_compare::run(&opts, &mut |line| progress.line(line))?;
    Ok(Merging {
        example: ties_example(),
        table: merge_compare::table(&opts, &report),
        report,
    })
}

fn vector(v: &[f64]) -> String {
    let cells: Vec<String> = v.iter().map(|x| format!("{x:+.2}")).collect();
    format!("[{}]", cells.join(" "))
}

impl Evidence for Merging {
    fn render(&self) -> String {
        let e = &self.example;
        let mut s = format!(
            "TIES on three task vectors (density {}: keep the top half of each by magnitude; elect each entry's sign as the sign of the trimmed sum; average only the entries that agree with it)\n\n",
            e.density
        );
        for (i, t) in e.tasks.iter().enumerate() {
            s.push_str(&format!("  τ{}          {}\n", i + 1, vector(t)));
        }
        for (i, t) in e.trimmed.iter().enumerate() {
            s.push_str(&format!("  trimmed τ{}  {}\n", i + 1, vector(t)));
        }
        s.push_str(&format!("  elected sign {}\n", vector(&e.elected)));
        s.push_str(&format!("  TIES merge   {}\n", vector(&e.ties)));
        s.push_str(&format!("  plain mean   {}\n\n", vector(&e.mean)));
        s.push_str(&self.table);
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let e = &self.example;
        let n = e.ties.len();
        // Every merged entry has the elected sign (or is 0).
        let signs = (0..n).all(|j| e.ties[j] == 0.0 || e.ties[j].signum() == e.elected[j]);
        // An entry only one trimmed vector keeps is kept whole, not divided by the task count.
        let lone = (0..n)
            .filter(|&j| e.trimmed.iter().filter(|t| t[j] != 0.0).count() == 1)
            .all(|j| {
                let x: f64 = e.trimmed.iter().map(|t| t[j]).sum();
                (e.ties[j] - x).abs() < 1e-12 && (e.mean[j] - x).abs() > 1e-12
            });
        let r = &self.report;
        let own = &r.rows[0];
        let switching = &r.rows[1];
        let same = own.scores == switching.scores;
        // Per merge: the mean over tasks minus the own adapters', per seed.
        let losses: Vec<(String, Paired)> = r.rows[2..]
            .iter()
            .map(|row| {
                let per_seed = |row: &merge_compare::Row| -> Vec<f64> {
                    (0..r.seeds.len())
                        .map(|s| {
                            row.scores.iter().map(|t| t[s]).sum::<f64>() / row.scores.len() as f64
                        })
                        .collect()
                };
                (
                    row.label.clone(),
                    stats::paired_t("own adapters", &per_seed(row), &per_seed(own)),
                )
            })
            .collect();
        let best = losses
            .iter()
            .map(|(_, p)| p.difference.mean)
            .fold(f64::NEG_INFINITY, f64::max);
        let every_below = losses.iter().all(|(_, p)| p.difference.mean < 0.0);
        vec![
            Claim::new(
                "in the worked example every TIES entry has the elected sign or is 0",
                signs,
            ),
            Claim::new(
                "an entry only one trimmed task keeps is kept whole by TIES, while the plain mean divides it by the task count",
                lone,
            ),
            Claim::new(
                "switching adapters in one AdapterSet scores exactly as each task's own adapter",
                same,
            ),
            Claim::new(
                "every merge scores below the task's own adapters on the mean over tasks",
                every_below,
            )
            .measured(
                "best merge − own adapters, mean over tasks",
                best,
                Fmt::Signed(3),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 29. NEFTune

#[derive(Debug, Clone, Serialize)]
pub struct Neftune {
    pub report: neftune::Report,
    pub table: String,
    /// The noise's scale per embedding entry, α/√(L·d), for the typical sequence length.
    pub alpha: f64,
    pub d_model: usize,
    /// The mean norm of a token embedding of the base.
    pub embedding_norm: f64,
}

pub fn neftune(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<Neftune> {
    let opts = NeftuneOptions {
        steps: mode.pick(8, 60),
        seeds: seeds.max(1),
        max_eval_examples: mode.pick(8, 48),
        ..NeftuneOptions::default()
    };
    let report = neftune::run(&opts, &mut |line| progress.line(line))?;
    let base = crate::lab::finetune::load_base(&opts.base)?;
    let wte = base
        .store
        .iter()
        .find(|(_, p)| p.name.ends_with("wte.weight"))
        .map(|(id, _)| base.store.value(id).clone());
    let embedding_norm = wte
        .and_then(|w| w.into_dimensionality::<Ix2>().ok())
        .map(|w| {
            let rows = w.nrows().max(1) as f64;
            w.rows()
                .into_iter()
                .map(|r| r.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt())
                .sum::<f64>()
                / rows
        })
        .unwrap_or(f64::NAN);
    Ok(Neftune {
        table: neftune::table(&opts, &report),
        report,
        alpha: opts.alpha,
        d_model: base.model.config.d_model,
        embedding_norm,
    })
}

impl Neftune {
    /// The expected norm of one token's noise, α/√(L·d) · √(d/3) = α/√(3L), at length `l`.
    pub fn noise_norm(&self, l: usize) -> f64 {
        self.alpha / (3.0 * l as f64).sqrt()
    }
}

impl Evidence for Neftune {
    fn render(&self) -> String {
        let mut s = format!(
            "NEFTune adds uniform noise in [−1, 1] · α/√(L·d) to every input embedding while training (L tokens, d = {}): per token a vector of expected norm α/√(3L); the mean norm of gpt-tiny's token embeddings is {}\n",
            self.d_model,
            num(self.embedding_norm, 3)
        );
        for l in [16, 64] {
            s.push_str(&format!(
                "  α = {}, L = {l}: noise norm {} ({} of an embedding's)\n",
                self.alpha,
                num(self.noise_norm(l), 3),
                Fmt::Percent(0).show(self.noise_norm(l) / self.embedding_norm)
            ));
        }
        s.push('\n');
        s.push_str(&self.table);
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let p = &self.report.paired;
        vec![
            Claim::new(
                "NEFTune raises the test score here (paired interval above 0)",
                matches!(p.verdict, stats::Verdict::Better),
            )
            .measured(
                "NEFTune − plain test score",
                p.difference.mean,
                Fmt::Signed(3),
            ),
            Claim::new(
                "the noise is a sizeable share of an embedding at L = 16 (over 10% of its norm)",
                self.noise_norm(16) > 0.1 * self.embedding_norm,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 30. Serving many adapters

/// The arithmetic for a 7B base with many LoRA adapters against merged copies.
#[derive(Debug, Clone, Serialize)]
pub struct ServingArithmetic {
    pub adapters: usize,
    pub rank: usize,
    pub base_params: u64,
    pub adapter_params: u64,
    /// Weights used in a matmul per token (block Linears and the LM head).
    pub matmul_params: u64,
    pub bytes_per_value: f64,
}

impl ServingArithmetic {
    pub fn one_base_gb(&self) -> f64 {
        (self.base_params + self.adapters as u64 * self.adapter_params) as f64
            * self.bytes_per_value
            / estimate::GB
    }
    pub fn copies_gb(&self) -> f64 {
        self.adapters as f64 * self.base_params as f64 * self.bytes_per_value / estimate::GB
    }
    /// One adapter's multiply-adds per token (one per parameter) over the base's (one per
    /// weight used in a matmul).
    pub fn share(&self) -> f64 {
        self.adapter_params as f64 / self.matmul_params as f64
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Serving {
    pub rows: Vec<ServingRow>,
    pub table: String,
    /// On gpt-tiny: one adapter's multiply-adds per token over the base's (block Linears and
    /// the tied LM head).
    pub tiny_share: f64,
    pub arithmetic: ServingArithmetic,
}

pub fn serving(mode: Mode, progress: &mut dyn Progress) -> Result<Serving> {
    let opts = ServingOptions {
        counts: mode.pick(vec![1, 4], vec![1, 4, 16]),
        requests: mode.pick(16, 64),
        ..ServingOptions::default()
    };
    let rows = serving::serve(&opts, &mut |line| progress.line(line))?;
    // gpt-tiny: each matmul weight of the blocks and the (tied) head is one multiply-add per
    // token; the adapter's A and B are one each too.
    let base = crate::lab::finetune::load_base(&opts.base)?;
    let c = &base.model.config;
    let base_macs: usize = crate::peft::lora::block_linears(&base.model)
        .iter()
        .map(|l| l.d_in * l.d_out)
        .sum::<usize>()
        + c.vocab_size * c.d_model;
    let blocks = crate::peft::blocks::blocks(&base.model, &opts.lora.targets, "lora")?;
    let adapter_macs: usize = blocks
        .iter()
        .map(|b| opts.lora.r * (b.linear.d_in + b.width()))
        .sum();
    let shape = estimate::named_shape("7B").expect("7B is a named size");
    let rank = 16;
    Ok(Serving {
        table: serving::table(&opts, &rows),
        rows,
        tiny_share: adapter_macs as f64 / base_macs as f64,
        arithmetic: ServingArithmetic {
            adapters: 100,
            rank,
            base_params: shape.params().total,
            adapter_params: estimate::lora_params(&shape, &estimate::LoraConfig::qv(rank))?,
            matmul_params: shape.params().matmul,
            bytes_per_value: 2.0,
        },
    })
}

impl Evidence for Serving {
    fn render(&self) -> String {
        let a = &self.arithmetic;
        let mut s = format!("{}\n", self.table);
        s.push_str(&format!(
            "the arithmetic for LLaMA-7B's shape in bf16 ({} bytes a value) with {} LoRA adapters, r={} on q,v:\n",
            a.bytes_per_value, a.adapters, a.rank
        ));
        let rows = vec![
            vec![
                "one base".into(),
                estimate::fmt_count(a.base_params as f64),
                format!(
                    "{:.2}",
                    a.base_params as f64 * a.bytes_per_value / estimate::GB
                ),
            ],
            vec![
                "one adapter".into(),
                estimate::fmt_count(a.adapter_params as f64),
                format!(
                    "{:.4}",
                    a.adapter_params as f64 * a.bytes_per_value / estimate::GB
                ),
            ],
            vec![
                format!("one base + {} adapters", a.adapters),
                "".into(),
                format!("{:.2}", a.one_base_gb()),
            ],
            vec![
                format!("{} merged copies", a.adapters),
                "".into(),
                format!("{:.1}", a.copies_gb()),
            ],
        ];
        s.push_str(&table(&["", "parameters", "GB"], &rows));
        s.push_str(&format!(
            "\nwork per token: an adapter adds a multiply-add per parameter of A and B; {} of the base's on gpt-tiny (blocks and tied head), {} of LLaMA-7B's\n",
            Fmt::Percent(1).show(self.tiny_share),
            Fmt::Percent(2).show(a.share())
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let many: Vec<&ServingRow> = self.rows.iter().filter(|r| r.adapters > 1).collect();
        let a = &self.arithmetic;
        vec![
            Claim::new(
                "with more than one adapter, one base + adapters holds less memory than merged copies",
                !many.is_empty() && many.iter().all(|r| r.set_bytes < r.merged_bytes),
            ),
            Claim::new(
                "both paths give the same logits up to f32 rounding (max difference under 1e-3)",
                self.rows.iter().all(|r| r.max_diff < 1e-3),
            )
            .measured(
                "largest |logit difference|",
                self.rows.iter().map(|r| r.max_diff).fold(0.0, f64::max),
                Fmt::Sci(1),
            ),
            Claim::new(
                "for a 7B base with 100 r=16 q,v adapters, one base + adapters needs under 2% of 100 copies' memory",
                a.one_base_gb() < 0.02 * a.copies_gb(),
            )
            .measured(
                "one base + 100 adapters / 100 copies",
                a.one_base_gb() / a.copies_gb(),
                Fmt::Percent(2),
            ),
            Claim::new(
                "the adapters add under 5% of the base's multiply-adds per token, on gpt-tiny and on 7B",
                self.tiny_share < 0.05 && a.share() < 0.05,
            )
            .measured(
                "gpt-tiny's LoRA r=8 q,v multiply-adds / the base's",
                self.tiny_share,
                Fmt::Percent(1),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// Vietnamese

/// Questions 23–30 and their answers in Vietnamese, as `(number, question, answer)`.
pub const VI: &[(usize, &str, &str)] = &[
    (23, "Tích Hadamard của LoHa và tích Kronecker của LoKr mang lại gì so với B·A của LoRA?",
     "Cập nhật B·A của LoRA có hạng tối đa là r với r·(d_in + d_out) tham số. LoHa nhân hai tích như vậy theo từng phần tử, ΔW = (W1a·W1b) ⊙ (W2a·W2b): gấp đôi số tham số của LoRA ở cùng r, nhưng tích Hadamard của hai ma trận hạng r có thể đạt hạng r², nên LoHa r=4 tốn đúng số tham số của LoRA r=8 mà cập nhật có thể đạt hạng 16. LoKr lấy tích Kronecker ΔW = W1 ⊗ W2 của hai thừa số nhỏ có kích thước nhân lại bằng kích thước của trọng số; hạng của nó là rank(W1)·rank(W2), nên vài trăm tham số có thể tạo ra một cập nhật hạng đầy đủ cho một khối 128×128. Cả hai đến từ fine-tuning mô hình sinh ảnh (LyCORIS), nơi một cập nhật hạng cao với file nhỏ có ích. Hạng là năng lực, không phải điểm số: ở đây các cập nhật LoHa và LoKr học được đúng là có hạng cao hơn nhiều so với của LoRA ở cùng hoặc ít tham số hơn, nhưng trên sentiment với ngân sách nhỏ, không phương pháp nào đạt điểm cao hơn LoRA một cách đáng tin cậy; bài toán không cần một cập nhật hạng cao, và độ phân tán giữa các seed lớn hơn mọi chênh lệch."),
    (24, "Vì sao VeRA huấn luyện được với rất ít tham số, và cái giá là gì?",
     "VeRA dùng chung một cặp ma trận ngẫu nhiên đóng băng A (r × d_in) và B (d_out × r) cho mọi lớp được điều chỉnh, và mỗi lớp chỉ huấn luyện hai vector tỉ lệ: ΔW = Λb B Λd A, với λd dài r và λb dài d_out. Tức là r + d_out số huấn luyện được cho mỗi ma trận, so với r·(d_in + d_out) của LoRA, nên r có thể lớn (mặc định 256) gần như không tốn gì, còn cặp ma trận đóng băng được sinh lại từ một seed hoặc lưu một lần. Trên q và v của LLaMA-7B, đó là khoảng 0,28 triệu tham số huấn luyện so với 4,2 triệu của LoRA r=8. Cái giá: cập nhật chỉ có thể co giãn các hướng ngẫu nhiên cố định, nên mỗi tham số phải gánh nhiều hơn, và VeRA cần learning rate cao hơn LoRA một bậc độ lớn (sweep của compare trên sentiment chọn mức gấp mười lần của LoRA); bài báo cho thấy nó ngang LoRA trên các tác vụ cỡ GLUE với mô hình lớn hơn. Ở đây VeRA không thấp hơn LoRA một cách đáng tin cậy: chênh lệch nằm trong nhiễu giữa các seed."),
    (25, "AdaLoRA phân bổ hạng như thế nào, và nó có giúp ích không?",
     "AdaLoRA viết mỗi cập nhật dưới dạng SVD P·Λ·Q, với P và Q được giữ gần trực giao bằng một số hạng điều chuẩn và Λ là các giá trị kỳ dị, và cho mọi ma trận bắt đầu ở hạng init_r. Trong lúc huấn luyện, nó chấm điểm từng bộ ba (Pᵢ, λᵢ, Qᵢ) bằng độ nhạy |w·∇w| đã làm trơn nhân với độ bất định của nó, và một lịch ngân sách giảm tổng số bộ ba được giữ theo hàm bậc ba, từ init_r·n xuống target_r·n giữa tinit và T − tfinal; các bộ ba điểm thấp nhất ở bất cứ đâu trong mô hình bị đặt λ về 0. Như vậy hạng đi về nơi loss nhạy nhất: có ma trận kết thúc với nhiều hơn target_r, có ma trận ít hơn, với cùng tổng. Việc đó có thắng một hạng đồng đều hay không là câu hỏi thực nghiệm. Ở đây bộ phân bổ kết thúc với các hạng không đều và có tổng bằng ngân sách, và nó dồn hạng vào các phép chiếu value, cắt bớt các query: với một tác vụ phân loại, thông tin mà value mang quan trọng hơn việc attention nhìn vào đâu. Nhưng AdaLoRA không đạt điểm cao hơn LoRA thường ở cùng hạng cuối một cách đáng tin cậy; với 8 khối được điều chỉnh và một lần chạy ngắn thì có ít thứ để phân bổ lại, và độ phân tán giữa các seed lớn hơn chênh lệch."),
    (26, "LoRA-FA tiết kiệm được gì khi đóng băng A?",
     "LoRA-FA giữ A ở giá trị khởi tạo ngẫu nhiên và chỉ huấn luyện B. Một nửa số tham số adapter của LoRA khi đó không có gradient và không có trạng thái Adam, và backward không còn cần gradient của A, vốn đọc đầu vào x của lớp (số token × d_in): nó chỉ giữ phép chiếu rộng r là x·Aᵀ. Phần tiết kiệm activation đó là điều bài báo nhắm tới: với batch và độ dài chuỗi lớn, activation chứ không phải tham số mới chiếm phần lớn bộ nhớ của một bước LoRA. Cái giá là khả năng biểu diễn: cập nhật s·B·A nằm trong không gian hàng của một A ngẫu nhiên cố định, vì vậy PEFT chiếu gradient của B lên cập nhật gần nhất mà A cố định có thể tạo ra. Ở đây bộ nhớ tham số, gradient và optimizer của adapter giảm một nửa đúng như phép tính, activation do sổ cái bộ nhớ của Trainer đo được in bên dưới, và điểm số nằm trong nhiễu của LoRA qua các seed."),
    (27, "Vì sao khởi tạo LoRA từ các vector kỳ dị chính (PiSSA) hoặc từ phân rã QR (OLoRA), và chuyện gì xảy ra?",
     "LoRA thường bắt đầu với B = 0, nên các bước đầu di chuyển trong một không gian con hạng thấp ngẫu nhiên với cập nhật rất nhỏ. PiSSA lấy r bộ ba kỳ dị lớn nhất của W, đặt chúng vào A = √S·Vᵀ và B = U·√S, rồi thay trọng số đóng băng bằng phần dư W − s·B·A, nên mô hình không đổi ở bước 0 nhưng việc huấn luyện điều chỉnh các hướng chính, điều được kỳ vọng là hội tụ nhanh hơn; OLoRA làm tương tự với r cột đầu của phân rã QR của W. Vì chúng ghi đè base, không phương pháp nào áp dụng được cho base đã lượng tử hoá (tunelab từ chối, vì lượng tử hoá phần dư sẽ phá vỡ W = phần dư + B·A); sau huấn luyện chúng được chuyển về một LoRA thường hạng 2r trên base gốc. Ở đây loss ở bước 0 bằng của LoRA đến sai số làm tròn f32, và loss huấn luyện của PiSSA trong các bước đầu thấp hơn của LoRA một chút nhưng đáng tin cậy (khởi đầu nhanh hơn như bài báo mô tả, nhỏ ở quy mô này); nhưng cả PiSSA lẫn OLoRA đều không đạt điểm cao hơn LoRA một cách đáng tin cậy: điểm test nằm trong nhiễu giữa các seed, và OLoRA ở learning rate được chọn 9e-3 là rủi ro nhất trong ba (một phiên trước thấy một seed phân kỳ ở đó). Dịch chuyển các hướng chính của một mô hình nhỏ vốn đã đủ tốt không hiển nhiên tốt hơn việc thêm một cập nhật hạng thấp mới."),
    (28, "Gộp (merge) adapter bằng task arithmetic, TIES, DARE như thế nào, và khi nào thì hiệu quả?",
     "Gộp là kết hợp nhiều cập nhật fine-tuning (task vector τᵢ = ΔWᵢ) thành một. Task arithmetic cộng chúng có trọng số, Σ wᵢτᵢ; nó hiệu quả khi các tác vụ chạm vào các hướng khác nhau và thất bại khi chúng giao thoa. TIES cắt mỗi τᵢ chỉ giữ các phần tử lớn nhất (density), bầu một dấu cho mỗi phần tử (dấu của tổng sau khi cắt), và chỉ lấy trung bình các phần tử cùng dấu đó, nên các cập nhật nhỏ trái dấu không triệt tiêu các cập nhật lớn và một phần tử chỉ một tác vụ thay đổi thì không bị pha loãng. DARE bỏ ngẫu nhiên các phần tử với xác suất 1 − density và nhân phần còn lại với 1/density trước khi gộp, giữ nguyên kỳ vọng của cập nhật. Với LoRA, gộp riêng A và B không phải là gộp các cập nhật (B₁A₁ + B₂A₂ ≠ (B₁+B₂)(A₁+A₂)): nối các thừa số lại thì chính xác (hạng n·r), hoặc có thể phân rã lại tổng cập nhật bằng SVD. Head của tác vụ không bao giờ được gộp. Khi nào hiệu quả: các tác vụ có cập nhật xa nhau, ngân sách tương tự và chung một base; luôn đo điểm của từng tác vụ so với adapter riêng của nó. Ở đây mọi cách gộp một adapter sentiment với một adapter NER đều cho điểm trung bình thấp hơn adapter riêng của từng tác vụ, trong khi chuyển adapter theo từng request trong một AdapterSet cho đúng điểm của adapter riêng: ở kích thước này, phục vụ cả hai rẻ hơn là gộp chúng."),
    (29, "Vì sao thêm nhiễu vào embedding (NEFTune) lại có thể giúp instruction tuning?",
     "NEFTune cộng nhiễu đều có tỉ lệ α/√(L·d) vào embedding đầu vào chỉ trong lúc huấn luyện (L token, d là độ rộng), nên embedding của mỗi token dịch đi một vector có chuẩn khoảng α/√(3L). Lập luận là điều chuẩn: trên một tập instruction nhỏ, mô hình overfit vào đúng các chuỗi token, và nhiễu buộc nó phản hồi cả một lân cận của mỗi đầu vào; Jain và cộng sự báo cáo câu trả lời dài hơn, trôi chảy hơn và mức tăng lớn trên AlpacaEval với mô hình 7B. Khi đánh giá thì không có nhiễu. Ở quy mô của gpt-tiny nó không giúp: chênh lệch ghép cặp giữa NEFTune và LoRA thường nằm trong nhiễu giữa các seed (ROUGE-L trên vài chục câu trả lời hội thoại), và các mức tăng được báo cáo là do một mô hình chấm chất lượng câu trả lời dài, tự do đánh giá, thứ mà một mô hình rộng 128 trên các câu trả lời tổng hợp ngắn không tạo ra; nhiễu của nó cũng chiếm một phần lớn chuẩn của embedding nhỏ khi chuỗi ngắn."),
    (30, "Phục vụ nhiều biến thể fine-tune thế nào: một base với N adapter, hay N bản sao đã gộp?",
     "Mỗi biến thể một bản sao đã gộp tốn N lần bộ nhớ của cả mô hình nhưng chạy mỗi request ở tốc độ thường. Phục vụ multi-LoRA (S-LoRA, Punica, hỗ trợ LoRA của vLLM) giữ một base trong bộ nhớ cùng N adapter nhỏ, chọn adapter theo từng request, và cộng s·x·Aᵀ·Bᵀ bên cạnh mỗi Linear được điều chỉnh; các batch trộn nhiều adapter dùng kernel gom theo lô (SGMV của Punica) và adapter được phân trang vào ra bộ nhớ GPU. Phần việc thêm cho mỗi token là khoảng 2r·(d_in + d_out) phép nhân-cộng cho mỗi ma trận được điều chỉnh, nhỏ so với base; bộ nhớ là một base cộng N adapter, mỗi cái vài MB. Với LLaMA-7B ở bf16 và 100 adapter r=16 trên q và v, một base cùng mọi adapter chiếm khoảng 15 GB so với khoảng 1,35 TB cho 100 bản sao. Ở đây bộ nhớ đo được khớp đúng với phép tính, và hai cách cho cùng logits đến sai số làm tròn f32. Số phép nhân-cộng thêm của một adapter vào khoảng 2% của gpt-tiny và khoảng 0,1% của một mô hình 7B, nên cái giá thực sự của phục vụ multi-LoRA là chi phí của nhiều phép nhân ma trận nhỏ và của các batch trộn nhiều adapter, điều mà các kernel của S-LoRA và Punica được xây dựng để loại bỏ. Số request mỗi giây in ra được đo trên một máy 2 nhân đang tải và không phải là một khẳng định về tốc độ: chúng lệch về phía này hay phía kia tuỳ lần chạy."),
];
