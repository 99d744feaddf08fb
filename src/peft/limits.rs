//! A method's options checked against the base before anything is allocated: every size the
//! method would allocate (LoRA's r, an adapter's bottleneck, prefix and prompt tuning's P and
//! the prefix MLP's width) multiplied with overflow checks, and every float finite and in range.
//!
//! The limits ([`crate::io::limits`]): a method adds at most as many parameters as the base has
//! (what a full fine-tune trains), or 2^24 on bases smaller than that; prompt tuning's P leaves
//! room for at least one input token in the model's positions, and prefix tuning's P is at most
//! the model's positions (its keys and values are attended to like as many tokens); LoRA's
//! scaling α/r is at most 10^4 in magnitude, its dropout in [0, 1), LoRA+'s ratio positive and at
//! most 10^6. LoHa's and LoKr's α/r are bounded as LoRA's; LoKr's `decompose_factor` is -1 or
//! positive; VeRA's d_initial is finite and its dropout in [0, 1), and its count includes the
//! shared frozen projections.
//!
//! [`check`] names the spec's field (as an adapter config writes it); [`SpecLimit::flag`] the
//! command-line option that sets it. [`super::registry::apply`] reports the flag,
//! [`super::store`] the adapter config file and field.

use super::adapter::AdapterConfig;
use super::blocks::{blocks, Block};
use super::lokr::LokrShape;
use super::lora::{block_linears, parse_targets, Target};
use super::spec::{LoraConfig, MethodSpec};
use crate::io::limits::{self, grouped, mul, sum};
use crate::nn::{Role, Transformer};

/// A spec value out of range: the spec's field and what is wrong (a sentence that starts with
/// the field's name).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecLimit {
    /// The field as the adapter config names it (`r`, `bottleneck`, `n_virtual`, ...).
    pub field: &'static str,
    pub detail: String,
}

impl SpecLimit {
    /// The command-line option that sets the field.
    pub fn flag(&self) -> &'static str {
        match self.field {
            "r" => "--r",
            "alpha" => "--alpha",
            "dropout" => "--lora-dropout",
            "lr_ratio_b" => "--lora-plus-ratio",
            "targets" => "--targets",
            "bottleneck" => "--bottleneck",
            "n_virtual" => "--n-virtual",
            "hidden" => "--prefix-hidden",
            "last_k" => "--last-k",
            "init_lora_weights" => "--init-lora-weights",
            "init_r" => "--init-r",
            "target_r" => "--target-r",
            "tinit" => "--tinit",
            "tfinal" => "--tfinal",
            "delta_t" => "--delta-t",
            "beta1" => "--beta1",
            "beta2" => "--beta2",
            "orth_reg_weight" => "--orth-reg-weight",
            "total_step" => "--total-step",
            "decompose_factor" => "--decompose-factor",
            "d_initial" => "--vera-d-initial",
            _ => "--method",
        }
    }
}

fn limit(field: &'static str, detail: String) -> SpecLimit {
    SpecLimit { field, detail }
}

/// Checks `spec` against `model` (see the module docs). Allocates nothing.
pub fn check(spec: &MethodSpec, model: &Transformer) -> Result<(), SpecLimit> {
    let config = &model.config;
    let base = config.param_count().unwrap_or(u64::MAX);
    let cap = limits::method_params_cap(base);
    // The field that sets the size, its value, and the parameters the method would add.
    let (field, value, added): (&'static str, usize, Option<u64>) = match spec {
        MethodSpec::Full { .. } | MethodSpec::Bitfit | MethodSpec::Ia3 => return Ok(()),
        MethodSpec::Lora(c) | MethodSpec::Dora(c) | MethodSpec::LoraFa(c) => {
            check_lora_floats(c)?;
            if c.r == 0 {
                return Err(limit("r", "r = 0: the rank must be at least 1".into()));
            }
            let wanted = parse_targets(&c.targets.join(","))
                .map_err(|e| limit("targets", format!("targets {:?}: {e}", c.targets)))?;
            let dora = matches!(spec, MethodSpec::Dora(_));
            if c.init_lora_weights.changes_base() {
                check_weight_init(model, &wanted, c, dora)?;
            }
            ("r", c.r, lora_params(model, &wanted, c.r as u64, dora))
        }
        MethodSpec::Adalora(c) => {
            check_adalora(c)?;
            let wanted = parse_targets(&c.targets.join(","))
                .map_err(|e| limit("targets", format!("targets {:?}: {e}", c.targets)))?;
            // A, B as LoRA's of rank init_r, plus init_r λ per block.
            let r = c.init_r as u64;
            let ab = lora_params(model, &wanted, r, false);
            let n = block_count(model, &wanted);
            let added = sum(&[ab, n.and_then(|n| mul(n, r))]);
            ("init_r", c.init_r, added)
        }
        MethodSpec::Loha(c) => {
            check_alpha(c.alpha, c.r)?;
            let r = c.r as u64;
            let added = sum(&target_blocks(model, &c.targets)?
                .iter()
                .map(|b| mul(mul(2, r)?, (b.width() + b.linear.d_in) as u64))
                .collect::<Vec<_>>());
            ("r", c.r, added)
        }
        MethodSpec::Lokr(c) => {
            check_alpha(c.alpha, c.r)?;
            if c.decompose_factor == 0 || c.decompose_factor < -1 {
                return Err(limit(
                    "decompose_factor",
                    format!(
                        "decompose_factor = {} is neither -1 (split near the square root) nor a \
                         positive factor",
                        c.decompose_factor
                    ),
                ));
            }
            let added = sum(&target_blocks(model, &c.targets)?
                .iter()
                .map(|b| LokrShape::of(b.width(), b.linear.d_in, c).count(c.r))
                .collect::<Vec<_>>());
            ("r", c.r, added)
        }
        MethodSpec::Vera(c) => {
            if c.r == 0 {
                return Err(limit("r", "r = 0: the rank must be at least 1".into()));
            }
            if !c.d_initial.is_finite() {
                return Err(limit(
                    "d_initial",
                    format!("d_initial = {} is not finite", c.d_initial),
                ));
            }
            if !(0.0..1.0).contains(&c.dropout) {
                return Err(limit(
                    "dropout",
                    format!("dropout = {} is outside [0, 1)", short(c.dropout)),
                ));
            }
            let found = target_blocks(model, &c.targets)?;
            let r = c.r as u64;
            let in_max = found.iter().map(|b| b.linear.d_in).max().unwrap_or(0) as u64;
            let out_max = found.iter().map(Block::width).max().unwrap_or(0) as u64;
            let mut parts = vec![mul(r, in_max), mul(out_max, r)];
            parts.extend(
                found
                    .iter()
                    .map(|b| sum(&[Some(r), Some(b.width() as u64)])),
            );
            ("r", c.r, sum(&parts))
        }
        MethodSpec::Houlsby { bottleneck } | MethodSpec::Pfeiffer { bottleneck } => {
            let a = match spec {
                MethodSpec::Houlsby { .. } => AdapterConfig::houlsby(*bottleneck),
                _ => AdapterConfig::pfeiffer(*bottleneck),
            };
            let m = *bottleneck as u64;
            let added = sum(&block_linears(model)
                .iter()
                .filter(|l| a.placement.wants(l.role))
                .map(|l| {
                    let c = l.d_out as u64;
                    sum(&[mul(mul(2, m)?, c), Some(m), Some(c)])
                })
                .collect::<Vec<_>>());
            ("bottleneck", *bottleneck, added)
        }
        MethodSpec::Prefix {
            n_virtual,
            reparameterize,
            hidden,
        } => {
            if *n_virtual > config.max_len {
                return Err(limit(
                    "n_virtual",
                    format!(
                        "n_virtual = {n_virtual} exceeds the model's {} positions (the prefix is \
                         attended to like that many tokens in every layer)",
                        config.max_len
                    ),
                ));
            }
            let (p, c) = (*n_virtual as u64, config.d_model as u64);
            let width = mul(mul(2, config.n_layers as u64).unwrap_or(u64::MAX), c);
            if *reparameterize {
                let h = *hidden as u64;
                let added = sum(&[
                    mul(p, c),
                    mul(h, c),
                    Some(h),
                    width.and_then(|w| mul(w, h)),
                    width,
                ]);
                ("hidden", *hidden, added)
            } else {
                ("n_virtual", *n_virtual, width.and_then(|w| mul(p, w)))
            }
        }
        MethodSpec::Prompt { n_virtual, .. } => {
            if *n_virtual >= config.max_len {
                return Err(limit(
                    "n_virtual",
                    format!(
                        "n_virtual = {n_virtual} leaves no room for the input: the soft prompt \
                         and the text share the model's {} positions",
                        config.max_len
                    ),
                ));
            }
            (
                "n_virtual",
                *n_virtual,
                mul(*n_virtual as u64, config.d_model as u64),
            )
        }
    };
    match added {
        Some(n) if n <= cap => Ok(()),
        n => Err(limit(
            field,
            format!(
                "{field} = {value} would add {} parameters, more than the limit of {} (the base's \
                 {} parameters, or 2^24 for smaller bases: a method may not be larger than a full \
                 fine-tune)",
                n.map_or("more than 2^64".into(), grouped),
                grouped(cap),
                grouped(base)
            ),
        )),
    }
}

/// A float for a message: 1e308, not 309 digits.
fn short(x: f64) -> String {
    if x != 0.0 && x.is_finite() && !(1e-4..1e6).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        x.to_string()
    }
}

fn check_lora_floats(c: &LoraConfig) -> Result<(), SpecLimit> {
    if !c.alpha.is_finite() {
        return Err(limit("alpha", format!("alpha = {} is not finite", c.alpha)));
    }
    let s = c.scaling();
    if s.is_nan() || s.abs() > limits::MAX_LORA_SCALING {
        return Err(limit(
            "alpha",
            format!(
                "alpha = {} gives the scaling {} = {s:e}, beyond ±{} (an update that large \
                 swamps the base weights)",
                short(c.alpha),
                if c.rslora { "alpha/√r" } else { "alpha/r" },
                limits::MAX_LORA_SCALING
            ),
        ));
    }
    if !(0.0..1.0).contains(&c.dropout) {
        return Err(limit(
            "dropout",
            format!("dropout = {} is outside [0, 1)", short(c.dropout)),
        ));
    }
    if !(c.lr_ratio_b > 0.0 && c.lr_ratio_b <= limits::MAX_LR_RATIO) {
        return Err(limit(
            "lr_ratio_b",
            format!(
                "lr_ratio_b = {} is not in (0, {:e}]",
                short(c.lr_ratio_b),
                limits::MAX_LR_RATIO
            ),
        ));
    }
    Ok(())
}

/// The blocks LoHa, LoKr and VeRA put their updates on ([`blocks`]), or the targets' error.
fn target_blocks(model: &Transformer, targets: &[String]) -> Result<Vec<Block>, SpecLimit> {
    blocks(model, targets, "targets")
        .map_err(|e| limit("targets", format!("targets {targets:?}: {e}")))
}

/// LoHa's and LoKr's r and alpha: r ≥ 1, α finite and α / r within LoRA's bound.
fn check_alpha(alpha: f64, r: usize) -> Result<(), SpecLimit> {
    if r == 0 {
        return Err(limit("r", "r = 0: the rank must be at least 1".into()));
    }
    let s = alpha / r as f64;
    if !alpha.is_finite() || s.abs() > limits::MAX_LORA_SCALING {
        return Err(limit(
            "alpha",
            format!(
                "alpha = {} gives the scaling alpha/r = {s:e}, beyond ±{} (an update that large \
                 swamps the base weights)",
                short(alpha),
                limits::MAX_LORA_SCALING
            ),
        ));
    }
    Ok(())
}

/// PiSSA and OLoRA: not with DoRA, and r at most the rank of every targeted weight block.
fn check_weight_init(
    model: &Transformer,
    wanted: &[Target],
    c: &LoraConfig,
    dora: bool,
) -> Result<(), SpecLimit> {
    let name = c.init_lora_weights.name();
    if dora {
        return Err(limit(
            "init_lora_weights",
            format!("init_lora_weights = {name}: DoRA starts from LoRA's default init only"),
        ));
    }
    for (lin, blocks) in super::lora::target_blocks(model, wanted) {
        for (_, (c0, c1)) in blocks {
            let rank = (c1 - c0).min(lin.d_in);
            if c.r > rank {
                return Err(limit(
                    "r",
                    format!(
                        "r = {} exceeds the rank {rank} of {}'s ({}, {}) weight block, which                          {name} decomposes",
                        c.r,
                        lin.module,
                        c1 - c0,
                        lin.d_in
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// AdaLoRA's ranks, schedule and floats (PEFT's `AdaLoraConfig` checks, and the ones its
/// allocator needs).
fn check_adalora(c: &super::spec::AdaLoraConfig) -> Result<(), SpecLimit> {
    if c.init_r == 0 {
        return Err(limit(
            "init_r",
            "init_r = 0: the rank must be at least 1".into(),
        ));
    }
    if c.target_r >= c.init_r {
        return Err(limit(
            "target_r",
            format!(
                "target_r = {} is not below init_r = {}: the budget must shrink",
                c.target_r, c.init_r
            ),
        ));
    }
    if !c.alpha.is_finite()
        || c.alpha < 0.0
        || c.alpha / (c.init_r as f64) > limits::MAX_LORA_SCALING
    {
        return Err(limit(
            "alpha",
            format!(
                "alpha = {} is not a finite scaling in [0, {} · init_r]",
                short(c.alpha),
                limits::MAX_LORA_SCALING
            ),
        ));
    }
    if !(0.0..1.0).contains(&c.dropout) {
        return Err(limit(
            "dropout",
            format!("dropout = {} is outside [0, 1)", short(c.dropout)),
        ));
    }
    for (field, b) in [("beta1", c.beta1), ("beta2", c.beta2)] {
        if !(b > 0.0 && b < 1.0) {
            return Err(limit(
                field,
                format!("{field} = {} is outside (0, 1)", short(b)),
            ));
        }
    }
    if !(c.orth_reg_weight >= 0.0 && c.orth_reg_weight <= 1e6) {
        return Err(limit(
            "orth_reg_weight",
            format!(
                "orth_reg_weight = {} is not in [0, 1e6]",
                short(c.orth_reg_weight)
            ),
        ));
    }
    if c.delta_t == 0 {
        return Err(limit(
            "delta_t",
            "delta_t = 0: allocate every 1 or more steps".into(),
        ));
    }
    if let Some(t) = c.total_step {
        if t == 0 || c.tinit.saturating_add(c.tfinal) >= t {
            return Err(limit(
                "total_step",
                format!(
                    "total_step = {t} with tinit = {} and tfinal = {} leaves no budgeting phase                      (PEFT requires tinit < total_step − tfinal)",
                    c.tinit, c.tfinal
                ),
            ));
        }
    }
    if let Some(p) = &c.rank_pattern {
        if let Some((k, v)) = p.iter().find(|(_, v)| v.len() != c.init_r) {
            return Err(limit(
                "rank_pattern",
                format!(
                    "rank_pattern[{k:?}] has {} entries, init_r = {}",
                    v.len(),
                    c.init_r
                ),
            ));
        }
    }
    Ok(())
}

/// The number of blocks LoRA's targets put a pair on.
fn block_count(model: &Transformer, wanted: &[Target]) -> Option<u64> {
    Some(
        super::lora::target_blocks(model, wanted)
            .iter()
            .map(|(_, b)| b.len() as u64)
            .sum(),
    )
}

/// The parameters LoRA (with DoRA's magnitudes when `dora`) adds for rank `r`, as
/// [`super::lora::Lora::build`] places the pairs.
fn lora_params(model: &Transformer, wanted: &[Target], r: u64, dora: bool) -> Option<u64> {
    let c = model.config.d_model as u64;
    let mut total = Some(0u64);
    for lin in block_linears(model) {
        let (d_in, d_out) = (lin.d_in as u64, lin.d_out as u64);
        let blocks: Vec<u64> = match lin.role {
            Role::Qkv if wanted.contains(&Target::Qkv) => vec![d_out],
            Role::Qkv => [Target::Q, Target::K, Target::V]
                .iter()
                .filter(|t| wanted.contains(t))
                .map(|_| c)
                .collect(),
            role if Target::of_role(role).is_some_and(|t| wanted.contains(&t)) => vec![d_out],
            _ => vec![],
        };
        for cols in blocks {
            let pair = sum(&[
                mul(r, d_in),
                mul(r, cols),
                Some(if dora { cols } else { 0 }),
            ]);
            total = sum(&[total, pair]);
        }
    }
    total
}
