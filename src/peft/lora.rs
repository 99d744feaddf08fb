//! LoRA (Hu et al., 2021): a frozen weight W gets a trainable low-rank update,
//! y = x W + s · (x Aᵀ) Bᵀ with A (r, d_in), B (d_out, r) and s = α / r (or α / √r with rsLoRA,
//! Kalajdzievski 2023). B starts at zero, so the model is unchanged at step 0; A starts
//! uniform(±1/√d_in) as PEFT's Kaiming init. The update costs 2·r·(d_in + d_out) FLOPs per token
//! instead of a d_in × d_out weight gradient, and only A and B need optimizer state.
//!
//! Targets are named in one vocabulary ([`Target`], [`parse_targets`]) that `finetune --targets`,
//! adapter configs and `estimate --targets` share: q, k, v, o, fc, proj (the short names of
//! [`Role`]), gate (LLaMA's SwiGLU gate, absent from tunelab's models), aliases such as `q_proj`
//! or `fc1`, and the groups `attn`, `mlp` and `all`. GPT-2 fuses q, k and v into one `c_attn`
//! Linear; there each targeted block of its output columns gets its own A and B (named
//! `…c_attn.lora_A.q.weight`), and the target `qkv` puts one pair on the whole of `c_attn` as
//! PEFT does for GPT-2.
//!
//! Merging adds s·B·A into W (so serving costs nothing extra); unmerging subtracts it again.
//! DoRA and LoRA-FA wrap the same pairs (see [`super::dora`], [`super::lora_fa`]).
//!
//! ## Initialisations (PEFT's `init_lora_weights`)
//!
//! Besides the default (`true`) and `gaussian` (A normal(0, 1/r)), two start from the weight W
//! (taken as (d_out, d_in), per pair's block of output columns) and leave the model unchanged by
//! replacing W with a residual:
//!
//! - **PiSSA** (Meng et al., 2024): W = U S Vᵀ; with S_r the top r singular values divided by s,
//!   A = √S_r V_rᵀ, B = U_r √S_r, and W_res = W − s·B A (the principal part trains, the rest is
//!   frozen). As PEFT's `pissa_init` (the exact SVD; not its `pissa_niter_N` fast variant).
//! - **OLoRA** (Büyükakyüz, 2024): W = Q R; B = Q[:, :r], A = R[:r, :], W_res = W − s·B A, as
//!   PEFT's `olora_init` on `nn.Linear` (PEFT's OLoRA does not transpose GPT-2's Conv1D weights
//!   and fails on them; tunelab decomposes the (d_out, d_in) view for every layout).
//!
//! Both change the base, so an adapter is only right on the residual base. tunelab therefore
//! saves them as PEFT does with `save_pretrained(..., path_initial_model_for_weight_conversion)`:
//! at [`Method::finalize`] the original W is put back and each pair becomes a plain LoRA pair of
//! rank 2r, A' = [A; A0], B' = [B, −B0] (A0, B0 the initial values), so s·B'A' = s·(B A − B0 A0)
//! is exactly the update on the original base; the saved config says r = 2r, alpha = 2·alpha (so
//! s is unchanged; √2·alpha with rsLoRA) and `init_lora_weights = true`. That adapter loads on the
//! unmodified base, in tunelab and in PEFT, and can be switched like any LoRA adapter.

use super::linalg;
use super::method::{CompareExample, ExampleContext, Examples, Method, MethodEntry};
use super::options::MethodOptions;
pub use super::spec::LoraConfig;
use super::spec::{LoraInit, MethodSpec};
use crate::autodiff::{ParamId, ParamStore, Tape, Var};
use crate::error::{invalid, Result};
use crate::nn::BaseDtype;
use crate::nn::{Hooks, Layout, Linear, Role, Site, Transformer};
use crate::tensor::Float;
use ndarray::{Array2, ArrayD, Ix2};
use ndarray_rand::rand_distr::{Normal, Uniform};
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;

/// LoRA's line in the registry.
pub const ENTRY: MethodEntry = MethodEntry {
    name: "lora",
    help: "low-rank updates B·A of chosen Linears (--r, --alpha, --targets, --rslora, --lora-plus-ratio)",
    identity_at_init: true,
    spec: |o, _| Ok(MethodSpec::Lora(config(o)?)),
    examples,
};

/// LoRA's options from the command line's.
pub fn config(o: &MethodOptions) -> Result<LoraConfig> {
    let targets = parse_targets(&o.targets.join(","))?;
    Ok(LoraConfig {
        r: o.r,
        alpha: o.alpha,
        dropout: o.lora_dropout,
        targets: targets.iter().map(|t| t.name().to_string()).collect(),
        rslora: o.rslora,
        lr_ratio_b: o.lora_plus_ratio,
        init_lora_weights: parse_init(&o.init_lora_weights)?,
    })
}

/// `--init-lora-weights`'s value: PEFT's names true (or default), gaussian, pissa, olora.
pub fn parse_init(s: &str) -> Result<LoraInit> {
    let word = s.trim().to_ascii_lowercase();
    if word == "default" {
        return Ok(LoraInit::Default);
    }
    LoraInit::ALL
        .iter()
        .find(|(n, _)| *n == word)
        .map(|(_, v)| *v)
        .ok_or_else(|| crate::error::Error::Invalid {
            op: "--init-lora-weights",
            detail: format!(
                "unknown initialisation {s:?}: use true, gaussian, pissa or olora                  (pissa_niter_N, PEFT's fast approximate SVD, is not implemented)"
            ),
        })
}

/// r = 8 on q and v, the LoRA paper's choice, with alpha 32: compare's LoRA and DoRA rows.
pub fn compare_config() -> LoraConfig {
    LoraConfig {
        r: 8,
        alpha: 32.0,
        targets: vec!["q".into(), "v".into()],
        ..Default::default()
    }
}

/// The tests' small LoRA (and DoRA): rank 2, alpha 4, on q and v, or also on fc.
pub fn test_config(with_fc: bool) -> LoraConfig {
    let targets: &[&str] = if with_fc {
        &["q", "v", "fc"]
    } else {
        &["q", "v"]
    };
    LoraConfig {
        r: 2,
        alpha: 4.0,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn examples(_: &ExampleContext) -> Examples {
    let rslora = |r, targets: [&str; 3]| LoraConfig {
        r,
        targets: targets.iter().map(|t| t.to_string()).collect(),
        rslora: true,
        ..test_config(false)
    };
    Examples {
        compare: vec![
            CompareExample {
                label: "lora r=8 q,v",
                spec: MethodSpec::Lora(compare_config()),
                lr: 3e-3,
                base_dtype: BaseDtype::F32,
            },
            CompareExample {
                // QLoRA (Dettmers et al., 2023): the same LoRA on the base stored in NF4 with
                // double-quantised constants.
                label: "qlora r=8 q,v",
                spec: MethodSpec::Lora(compare_config()),
                lr: 3e-3,
                base_dtype: BaseDtype::Nf4 { double_quant: true },
            },
            CompareExample {
                label: "pissa r=8 q,v",
                spec: MethodSpec::Lora(with_init(compare_config(), LoraInit::Pissa)),
                lr: 3e-3,
                base_dtype: BaseDtype::F32,
            },
            CompareExample {
                label: "olora r=8 q,v",
                spec: MethodSpec::Lora(with_init(compare_config(), LoraInit::Olora)),
                lr: 9e-3,
                base_dtype: BaseDtype::F32,
            },
        ],
        bench: vec![
            ("lora_r8_qv", MethodSpec::Lora(LoraConfig::default())),
            (
                "pissa_r8_qv",
                MethodSpec::Lora(with_init(LoraConfig::default(), LoraInit::Pissa)),
            ),
            (
                "olora_r8_qv",
                MethodSpec::Lora(with_init(LoraConfig::default(), LoraInit::Olora)),
            ),
        ],
        tests: vec![
            ("lora", MethodSpec::Lora(test_config(false))),
            ("lora_fc", MethodSpec::Lora(test_config(true))),
            (
                "pissa",
                MethodSpec::Lora(with_init(test_config(true), LoraInit::Pissa)),
            ),
            (
                "olora_qkv",
                MethodSpec::Lora(with_init(rslora(2, ["qkv", "o", "proj"]), LoraInit::Olora)),
            ),
            (
                "lora_gaussian",
                MethodSpec::Lora(with_init(test_config(false), LoraInit::Gaussian)),
            ),
            (
                "lora_qkv_o",
                MethodSpec::Lora(rslora(3, ["qkv", "o", "fc"])),
            ),
            (
                "lora_qkv_proj",
                MethodSpec::Lora(rslora(2, ["qkv", "o", "proj"])),
            ),
        ],
    }
}

/// `config` with another initialisation.
pub fn with_init(config: LoraConfig, init: LoraInit) -> LoraConfig {
    LoraConfig {
        init_lora_weights: init,
        ..config
    }
}

/// A LoRA target: a kind of Linear of a transformer block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Q,
    K,
    V,
    O,
    /// GPT-2's fused c_attn as a whole (one pair on all 3C output columns).
    Qkv,
    /// SwiGLU's gate projection (LLaMA `gate_proj`); tunelab's models have none.
    Gate,
    /// The MLP's first Linear (GPT-2 `c_fc`, BERT `intermediate.dense`, LLaMA `up_proj`).
    Fc,
    /// The MLP's second Linear (GPT-2 `mlp.c_proj`, BERT `output.dense`, LLaMA `down_proj`).
    Proj,
}

impl Target {
    /// Every Linear of a block, as `all` means it (qkv is q, k and v).
    pub const ALL: [Target; 7] = [
        Target::Q,
        Target::K,
        Target::V,
        Target::O,
        Target::Gate,
        Target::Fc,
        Target::Proj,
    ];

    /// The canonical name: q, k, v, o, qkv, gate, fc, proj (a [`Role`]'s short name).
    pub fn name(self) -> &'static str {
        match self {
            Target::Q => "q",
            Target::K => "k",
            Target::V => "v",
            Target::O => "o",
            Target::Qkv => "qkv",
            Target::Gate => "gate",
            Target::Fc => "fc",
            Target::Proj => "proj",
        }
    }

    /// The target a Linear of this role is, if any.
    pub fn of_role(role: Role) -> Option<Target> {
        Some(match role {
            Role::Qkv => Target::Qkv,
            Role::Query => Target::Q,
            Role::Key => Target::K,
            Role::Value => Target::V,
            Role::AttnOut => Target::O,
            Role::Fc => Target::Fc,
            Role::Proj => Target::Proj,
            Role::Other => return None,
        })
    }
}

/// Parses a comma-separated target list, in order of first mention and without repeats:
/// the names of [`Target`] (a `_proj` suffix is dropped, so `q_proj`, `gate_proj` work), the
/// aliases `query`/`key`/`value`, `out`, `c_attn`, `up`/`fc1`/`c_fc`/`fc_in` (fc) and
/// `down`/`fc2`/`fc_out` (proj), and the groups `attn` (q, k, v, o), `mlp` (gate, fc, proj) and
/// `all` / `all-linear` (every Linear of the blocks, as QLoRA and PEFT's "all-linear"; never
/// the LM head).
pub fn parse_targets(s: &str) -> Result<Vec<Target>> {
    use Target::*;
    let mut out: Vec<Target> = Vec::new();
    for raw in s.split(',') {
        let word = raw.trim().to_ascii_lowercase();
        let word = word.strip_suffix("_proj").unwrap_or(&word);
        let add: &[Target] = match word {
            "q" | "query" => &[Q],
            "k" | "key" => &[K],
            "v" | "value" => &[V],
            "o" | "out" => &[O],
            "qkv" | "c_attn" => &[Qkv],
            "gate" => &[Gate],
            "fc" | "up" | "fc1" | "c_fc" | "fc_in" => &[Fc],
            "proj" | "down" | "fc2" | "fc_out" => &[Proj],
            "attn" => &[Q, K, V, O],
            "mlp" => &[Gate, Fc, Proj],
            "all" | "all-linear" | "all_linear" => &Target::ALL,
            other => {
                return invalid(
                    "lora targets",
                    format!(
                        "unknown LoRA target {other:?}: use q, k, v, o, qkv, gate, fc (up), \
                         proj (down), or the groups attn, mlp, all"
                    ),
                )
            }
        };
        for t in add {
            if !out.contains(t) {
                out.push(*t);
            }
        }
    }
    Ok(out)
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

/// One low-rank pair A, B on (a block of) one Linear's output.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: ParamId,
    pub b: ParamId,
    /// The output columns this pair updates (all of them, or one of q/k/v in a fused c_attn).
    pub cols: (usize, usize),
}

/// A targeted Linear and its pairs.
#[derive(Debug, Clone)]
pub struct LoraLinear {
    pub linear: Linear,
    pub pairs: Vec<LoraPair>,
}

/// LoRA applied to a model.
pub struct Lora {
    pub config: LoraConfig,
    /// The targeted Linears by module path.
    pub targets: HashMap<String, LoraLinear>,
    /// A and B of every pair, in the order they were added to the store.
    params: Vec<ParamId>,
    merged: bool,
    /// PiSSA / OLoRA only, until [`Method::finalize`] converts them: the original weights of the
    /// targeted Linears (in their layout), and A0, B0 of every pair (aligned with `params`'
    /// pairs), as the store's precision rounded them.
    residual: Option<Residual>,
}

/// What a weight-changing init (PiSSA, OLoRA) keeps to convert the adapter back to a plain
/// LoRA on the original base.
struct Residual {
    weights: Vec<(ParamId, ArrayD<f64>)>,
    init: Vec<(Array2<f64>, Array2<f64>)>,
}

/// The blocks of a Linear's output columns that get a pair: each one's name suffix (`.q` for a
/// block of GPT-2's fused c_attn, else empty) and its columns.
pub type Blocks = Vec<(String, (usize, usize))>;

/// The Linears `wanted` targets, each with its [`Blocks`].
pub fn target_blocks<'m>(model: &'m Transformer, wanted: &[Target]) -> Vec<(&'m Linear, Blocks)> {
    let c = model.config.d_model;
    let wants = |t: Target| wanted.contains(&t);
    block_linears(model)
        .into_iter()
        .filter_map(|lin| {
            let blocks: Blocks = match lin.role {
                Role::Qkv if wants(Target::Qkv) => vec![(String::new(), (0, 3 * c))],
                Role::Qkv => [(Target::Q, 0), (Target::K, 1), (Target::V, 2)]
                    .into_iter()
                    .filter(|&(t, _)| wants(t))
                    .map(|(t, i)| (format!(".{}", t.name()), (i * c, (i + 1) * c)))
                    .collect(),
                role if Target::of_role(role).is_some_and(wants) => {
                    vec![(String::new(), (0, lin.d_out))]
                }
                _ => vec![],
            };
            (!blocks.is_empty()).then_some((lin, blocks))
        })
        .collect()
}

/// The block `cols` of a weight as (cols, d_in), in f64.
pub fn weight_block<F: Float>(w: &ArrayD<F>, layout: Layout, cols: (usize, usize)) -> Array2<f64> {
    let w2 = w.view().into_dimensionality::<Ix2>().expect("2-D weight");
    match layout {
        Layout::OutIn => w2
            .slice(ndarray::s![cols.0..cols.1, ..])
            .mapv(|x| x.as_f64()),
        Layout::InOut => w2
            .slice(ndarray::s![.., cols.0..cols.1])
            .t()
            .mapv(|x| x.as_f64()),
    }
}

// ANCHOR: init_from_weight
/// PiSSA's or OLoRA's A (r, d_in) and B (cols, r) from a weight block W (cols, d_in), for the
/// scaling s. The residual is W − s·B A.
pub fn init_from_weight(
    w: &Array2<f64>,
    r: usize,
    scaling: f64,
    init: LoraInit,
) -> (Array2<f64>, Array2<f64>) {
    match init {
        LoraInit::Olora => {
            let (q, rr) = linalg::qr(w);
            (
                rr.slice(ndarray::s![..r, ..]).to_owned(),
                q.slice(ndarray::s![.., ..r]).to_owned(),
            )
        }
        _ => {
            let (u, sv, vt) = linalg::svd(w);
            // √(S_r / s): A = √S_r V_rᵀ, B = U_r √S_r.
            let root = sv.slice(ndarray::s![..r]).mapv(|x| (x / scaling).sqrt());
            let mut a = vt.slice(ndarray::s![..r, ..]).to_owned();
            let mut b = u.slice(ndarray::s![.., ..r]).to_owned();
            for (k, &g) in root.iter().enumerate() {
                a.row_mut(k).mapv_inplace(|x| x * g);
                b.column_mut(k).mapv_inplace(|x| x * g);
            }
            (a, b)
        }
    }
}
// ANCHOR_END: init_from_weight

/// Every Linear of the blocks, with the role it plays ([`Transformer::block_linears`]).
pub fn block_linears(model: &Transformer) -> Vec<&Linear> {
    model.block_linears()
}

impl Lora {
    pub fn apply<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LoraConfig,
        seed: u64,
    ) -> Result<Self> {
        Self::build(model, store, config, seed, |_, _, _, _| Ok(()))
    }

    /// Adds a pair A, B to every targeted Linear, initialised as `config.init_lora_weights`
    /// says (random A drawn from `seed` and B zero, or, for PiSSA and OLoRA, both from the
    /// weight, which becomes the residual). `after_pair(store, linear, pair, tag)` runs right
    /// after each pair is added, `tag` being the pair's name suffix (`.q` for a block of a fused
    /// c_attn, else empty): DoRA adds its magnitude there, so each pair's parameters sit together
    /// in the store.
    pub fn build<F: Float>(
        model: &Transformer,
        store: &mut ParamStore<F>,
        config: LoraConfig,
        seed: u64,
        mut after_pair: impl FnMut(&mut ParamStore<F>, &Linear, &LoraPair, &str) -> Result<()>,
    ) -> Result<Self> {
        if config.r == 0 {
            return invalid("lora", "rank r must be at least 1");
        }
        let wanted = parse_targets(&config.targets.join(","))?;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut targets = HashMap::new();
        let mut params = Vec::new();
        let init = config.init_lora_weights;
        if init.changes_base() && store.has_quantized() {
            return invalid(
                "--init-lora-weights",
                "PiSSA and OLoRA write a residual into the base weights, which a quantised base \
                 (--base-dtype bf16, nf4) keeps frozen in its own format: load the base in f32",
            );
        }
        let mut residual = init.changes_base().then(|| Residual {
            weights: Vec::new(),
            init: Vec::new(),
        });
        for (lin, blocks) in target_blocks(model, &wanted) {
            if let Some(res) = residual.as_mut() {
                res.weights
                    .push((lin.weight, store.value(lin.weight).mapv(|x| x.as_f64())));
            }
            let mut pairs = Vec::new();
            for (sep, cols) in blocks {
                let r = config.r;
                let (a0, b0) = match init {
                    LoraInit::Default => {
                        let bound = 1.0 / (lin.d_in as f64).sqrt();
                        let a = Array2::<f64>::random_using(
                            (r, lin.d_in),
                            Uniform::new(-bound, bound).expect("bound > 0"),
                            &mut rng,
                        );
                        (a, Array2::zeros((cols.1 - cols.0, r)))
                    }
                    LoraInit::Gaussian => {
                        let a = Array2::<f64>::random_using(
                            (r, lin.d_in),
                            Normal::new(0.0, 1.0 / r as f64).expect("std > 0"),
                            &mut rng,
                        );
                        (a, Array2::zeros((cols.1 - cols.0, r)))
                    }
                    LoraInit::Pissa | LoraInit::Olora => {
                        let w = weight_block(store.value(lin.weight), lin.layout, cols);
                        if r > w.nrows().min(w.ncols()) {
                            return invalid(
                                "--r",
                                format!(
                                    "{} init: r = {r} exceeds the rank of {}'s ({}, {}) weight \
                                     block",
                                    init.name(),
                                    lin.module,
                                    w.nrows(),
                                    w.ncols()
                                ),
                            );
                        }
                        init_from_weight(&w, r, config.scaling(), init)
                    }
                };
                // The values as the store holds them (rounded to F).
                let a0 = a0.mapv(|x| F::of(x).as_f64());
                let b0 = b0.mapv(|x| F::of(x).as_f64());
                let a = store.add(
                    format!("{}.lora_A{sep}.weight", lin.module),
                    a0.mapv(F::of).into_dyn(),
                    true,
                )?;
                let b = store.add(
                    format!("{}.lora_B{sep}.weight", lin.module),
                    b0.mapv(F::of).into_dyn(),
                    true,
                )?;
                params.extend([a, b]);
                let pair = LoraPair { a, b, cols };
                if let Some(res) = residual.as_mut() {
                    // W ← W − s·B A on the pair's columns.
                    fold_block(store, lin, cols, &b0.dot(&a0), -config.scaling());
                    res.init.push((a0, b0));
                }
                after_pair(store, lin, &pair, &sep)?;
                pairs.push(pair);
            }
            targets.insert(
                lin.module.clone(),
                LoraLinear {
                    linear: lin.clone(),
                    pairs,
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
            targets,
            params,
            merged: false,
            residual,
        })
    }

    /// PiSSA / OLoRA to a plain LoRA on the original base (see the module's doc): the original
    /// weights back, each pair A' = [A; A0], B' = [B, −B0], r and alpha doubled (alpha·√2 with
    /// rsLoRA), init `true`. The model computes the same function before and after. Nothing to
    /// do for the other inits, or once converted.
    pub fn convert_to_plain<F: Float>(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        let Some(res) = self.residual.take() else {
            return Ok(());
        };
        let was_merged = self.merged;
        self.unmerge(store)?;
        for (id, w) in &res.weights {
            store.set_value(*id, w.mapv(F::of))?;
        }
        for (ab, (a0, b0)) in self.params.chunks(2).zip(&res.init) {
            let a = store.value(ab[0]).mapv(|x| x.as_f64());
            let b = store.value(ab[1]).mapv(|x| x.as_f64());
            let a = a.into_dimensionality::<Ix2>().expect("A is 2-D");
            let b = b.into_dimensionality::<Ix2>().expect("B is 2-D");
            let a2 = ndarray::concatenate(ndarray::Axis(0), &[a.view(), a0.view()])
                .expect("A and A0 have d_in columns");
            let b2 = ndarray::concatenate(ndarray::Axis(1), &[b.view(), (-b0).view()])
                .expect("B and B0 have the block's rows");
            store.get_mut(ab[0]).value = a2.mapv(F::of).into_dyn();
            store.get_mut(ab[1]).value = b2.mapv(F::of).into_dyn();
        }
        let c = &mut self.config;
        c.r *= 2;
        c.alpha *= if c.rslora { 2f64.sqrt() } else { 2.0 };
        c.init_lora_weights = LoraInit::Default;
        if was_merged {
            self.merge(store)?;
        }
        Ok(())
    }

    // ANCHOR: delta
    /// The low-rank update of one pair for input x: s · dropout(x) Aᵀ Bᵀ, (…, cols).
    pub fn delta<F: Float>(&self, tape: &mut Tape<'_, F>, x: Var, pair: &LoraPair) -> Result<Var> {
        let x = tape.dropout(x, self.config.dropout)?;
        let a = tape.param(pair.a);
        let b = tape.param(pair.b);
        let h = tape.matmul_t(x, a, false, true)?; // (…, r)
        let d = tape.matmul_t(h, b, false, true)?; // (…, cols)
        tape.scale(d, self.config.scaling())
    }
    // ANCHOR_END: delta

    // ANCHOR: fold
    /// W += sign · s · (B A) on each target's columns, in the weight's own layout.
    fn fold<F: Float>(&self, store: &mut ParamStore<F>, sign: f64) -> Result<()> {
        let s = F::of(sign * self.config.scaling());
        if let Some(t) = self
            .targets
            .values()
            .find(|t| store.quantized(t.linear.weight).is_some())
        {
            return invalid(
                "merge",
                format!(
                    "{}.weight is stored quantised (--base-dtype); merging into it would round the \
                     update away: load the base in f32 to merge",
                    t.linear.module
                ),
            );
        }
        for t in self.targets.values() {
            for u in &t.pairs {
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
}

/// W[cols] += factor · D for a block update D (cols, d_in), in the weight's own layout.
fn fold_block<F: Float>(
    store: &mut ParamStore<F>,
    lin: &Linear,
    cols: (usize, usize),
    d: &Array2<f64>,
    factor: f64,
) {
    let w = &mut store.get_mut(lin.weight).value;
    let mut w2 = w.view_mut().into_dimensionality::<Ix2>().expect("W is 2-D");
    let (c0, c1) = cols;
    let d = d.mapv(|x| F::of(factor * x));
    match lin.layout {
        Layout::OutIn => w2
            .slice_mut(ndarray::s![c0..c1, ..])
            .scaled_add(F::one(), &d),
        Layout::InOut => w2
            .slice_mut(ndarray::s![.., c0..c1])
            .scaled_add(F::one(), &d.t()),
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
        for p in &target.pairs {
            let d = self.delta(tape, x, p)?;
            y = if p.cols == (0, width) {
                tape.add(y, d)?
            } else {
                // Only a block of the fused output: add the update to those columns.
                let last = tape.shape(y).len() - 1;
                tape.add_at(y, d, last, p.cols.0)?
            };
        }
        Ok(y)
    }
}

impl<F: Float> Method<F> for Lora {
    fn name(&self) -> &'static str {
        "lora"
    }

    fn params(&self) -> &[ParamId] {
        &self.params
    }

    /// PiSSA and OLoRA become plain LoRA on the original base ([`Lora::convert_to_plain`]).
    fn finalize(&mut self, store: &mut ParamStore<F>) -> Result<()> {
        self.convert_to_plain(store)
    }

    fn saved_spec(&self, spec: &MethodSpec) -> MethodSpec {
        match spec {
            MethodSpec::Lora(_) => MethodSpec::Lora(self.config.clone()),
            other => other.clone(),
        }
    }

    /// LoRA+ (Hayou et al., 2024): every B at `lr_ratio_b` times the base rate (none when
    /// the ratio is 1).
    fn lr_multipliers(&self) -> Vec<(ParamId, f64)> {
        if self.config.lr_ratio_b == 1.0 {
            return Vec::new();
        }
        // `params` holds each pair's A, B in the order the pairs were added.
        self.params
            .chunks(2)
            .map(|ab| (ab[1], self.config.lr_ratio_b))
            .collect()
    }

    fn merge_into_base(mut self: Box<Self>, store: &mut ParamStore<F>) -> Result<()> {
        self.merge(store)
    }
}
