//! What a method is, as data: the [`MethodSpec`] an adapter's config records, and the option
//! types of its variants. Plain serde types that import no method code, so that the adapter
//! format (`crate::io::adapter`) and every method file can depend on them.

use serde::{Deserialize, Serialize};

/// Which method, with its options; serialised into an adapter's config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum MethodSpec {
    /// Every parameter trains; with `last_k`, only the last k blocks (and the head).
    Full { last_k: Option<usize> },
    /// Biases only.
    Bitfit,
    /// Low-rank updates of chosen Linears.
    Lora(LoraConfig),
    /// LoRA with a learned magnitude per output column.
    Dora(LoraConfig),
    /// LoRA-FA: LoRA with A frozen at its init and B's gradient projected.
    #[serde(rename = "lora-fa")]
    LoraFa(LoraConfig),
    /// AdaLoRA: SVD-form updates P Λ Q whose ranks a budget schedule prunes.
    Adalora(AdaLoraConfig),
    /// LoHa: the Hadamard product of two low-rank products per chosen Linear.
    Loha(LohaConfig),
    /// LoKr: the Kronecker product of two small factors per chosen Linear.
    Lokr(LokrConfig),
    /// VeRA: frozen random projections shared by every chosen Linear, scaled by trained vectors.
    Vera(VeraConfig),
    /// Bottleneck adapters after the attention output and after the MLP (two per block, GELU).
    Houlsby { bottleneck: usize },
    /// Bottleneck adapters after the MLP only (one per block, ReLU).
    Pfeiffer { bottleneck: usize },
    /// Learned rescaling of keys, values and MLP activations.
    Ia3,
    /// Prefix tuning: P learned keys and values prepended in every layer, trained through an
    /// MLP of width `hidden` unless `reparameterize` is false.
    Prefix {
        n_virtual: usize,
        #[serde(default = "default_reparameterize")]
        reparameterize: bool,
        hidden: usize,
    },
    /// Prompt tuning: P soft-prompt embeddings prepended to the input.
    Prompt { n_virtual: usize, init: PromptInit },
}

impl MethodSpec {
    /// The method's name: `--method`'s value, the `method` tag of an adapter config and the
    /// name of its line in [`super::registry::METHODS`].
    pub fn name(&self) -> &'static str {
        match self {
            MethodSpec::Full { .. } => "full",
            MethodSpec::Bitfit => "bitfit",
            MethodSpec::Lora(_) => "lora",
            MethodSpec::Dora(_) => "dora",
            MethodSpec::LoraFa(_) => "lora-fa",
            MethodSpec::Adalora(_) => "adalora",
            MethodSpec::Loha(_) => "loha",
            MethodSpec::Lokr(_) => "lokr",
            MethodSpec::Vera(_) => "vera",
            MethodSpec::Houlsby { .. } => "houlsby",
            MethodSpec::Pfeiffer { .. } => "pfeiffer",
            MethodSpec::Ia3 => "ia3",
            MethodSpec::Prefix { .. } => "prefix",
            MethodSpec::Prompt { .. } => "prompt",
        }
    }
}

/// LoRA's options (DoRA's too).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraConfig {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Target names of [`super::lora::Target`]: q, k, v, o, fc, proj (and qkv for GPT-2's
    /// whole c_attn); aliases and groups (`attn`, `mlp`, `all`) are accepted too.
    pub targets: Vec<String>,
    /// Scale by α/√r instead of α/r.
    pub rslora: bool,
    /// LoRA+: B's learning rate is this many times A's (1 = plain LoRA).
    pub lr_ratio_b: f64,
    /// How A and B start (PEFT's `init_lora_weights`); absent in configs written before it
    /// existed, which mean the default.
    #[serde(default)]
    pub init_lora_weights: LoraInit,
}

/// LoRA's initialisation, by PEFT's `init_lora_weights` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LoraInit {
    /// PEFT's `true`: A uniform(±1/√d_in) (Kaiming-uniform), B = 0.
    #[default]
    #[serde(rename = "true")]
    Default,
    /// A normal(0, 1/r), B = 0.
    #[serde(rename = "gaussian")]
    Gaussian,
    /// PiSSA: A, B from the top-r singular triplets of W, W replaced by the residual.
    #[serde(rename = "pissa")]
    Pissa,
    /// OLoRA: A, B from the QR decomposition of W, W replaced by the residual.
    #[serde(rename = "olora")]
    Olora,
}

impl LoraInit {
    /// Every value, by its PEFT name.
    pub const ALL: [(&'static str, LoraInit); 4] = [
        ("true", LoraInit::Default),
        ("gaussian", LoraInit::Gaussian),
        ("pissa", LoraInit::Pissa),
        ("olora", LoraInit::Olora),
    ];

    /// PEFT's name of the value.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map(|(n, _)| *n)
            .expect("every value is listed")
    }

    /// Whether this init rewrites the base weight into a residual (PiSSA, OLoRA).
    pub fn changes_base(self) -> bool {
        matches!(self, LoraInit::Pissa | LoraInit::Olora)
    }
}

/// AdaLoRA's options, by PEFT's `AdaLoraConfig` names (`deltaT` is `delta_t`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdaLoraConfig {
    /// The rank every targeted Linear starts with.
    pub init_r: usize,
    /// The average rank the budget ends at.
    pub target_r: usize,
    /// The update is scaled by alpha / (init_r + 1e-5) (r when alpha is 0), as PEFT's ranknum.
    pub alpha: f64,
    pub dropout: f64,
    /// LoRA's target vocabulary ([`super::lora::parse_targets`]).
    pub targets: Vec<String>,
    /// Steps of warm-up before any rank is pruned.
    pub tinit: usize,
    /// Steps at the end with the final rank pattern fixed.
    pub tfinal: usize,
    /// Steps between two budget allocations.
    pub delta_t: usize,
    /// EMA coefficient of the sensitivity |w · ∇w|.
    pub beta1: f64,
    /// EMA coefficient of its uncertainty.
    pub beta2: f64,
    /// Weight of the orthogonality regulariser added to the loss.
    pub orth_reg_weight: f64,
    /// The step count the budget schedule spans; `None`: the run's optimizer steps.
    #[serde(default)]
    pub total_step: Option<usize>,
    /// After training: per targeted module (its path, `.q` for a block of a fused c_attn), which
    /// of the init_r triplets are kept.
    #[serde(default)]
    pub rank_pattern: Option<std::collections::BTreeMap<String, Vec<bool>>>,
}

impl Default for AdaLoraConfig {
    /// PEFT's defaults (init_r 12, target_r 8, β 0.85, orthogonality weight 0.5), tunelab's
    /// targets q, v and alpha 16.
    fn default() -> Self {
        Self {
            init_r: 12,
            target_r: 8,
            alpha: 16.0,
            dropout: 0.0,
            targets: vec!["q".into(), "v".into()],
            tinit: 0,
            tfinal: 0,
            delta_t: 1,
            beta1: 0.85,
            beta2: 0.85,
            orth_reg_weight: 0.5,
            total_step: None,
            rank_pattern: None,
        }
    }
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
            init_lora_weights: LoraInit::Default,
        }
    }
}

/// LoHa's options: ΔW = (W1a·W1b) ⊙ (W2a·W2b) · alpha / r on each target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LohaConfig {
    pub r: usize,
    pub alpha: f64,
    /// Target names as LoRA's ([`super::lora::Target`]).
    pub targets: Vec<String>,
}

impl Default for LohaConfig {
    /// PEFT's defaults (r 8, alpha 8) on q and v.
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 8.0,
            targets: vec!["q".into(), "v".into()],
        }
    }
}

/// LoKr's options: ΔW = kron(W1, W2) · alpha / r on each target, W2 (and W1 with
/// `decompose_both`) low-rank when r is small against its sides (PEFT's rule).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LokrConfig {
    pub r: usize,
    pub alpha: f64,
    /// Target names as LoRA's ([`super::lora::Target`]).
    pub targets: Vec<String>,
    /// Also write W1 as a low-rank product when r < max(its sides) / 2.
    pub decompose_both: bool,
    /// Split each dimension as (factor, dim / factor) when factor divides it; -1 splits it into
    /// the two divisors nearest its square root.
    pub decompose_factor: i64,
}

impl Default for LokrConfig {
    /// PEFT's defaults (r 8, alpha 8, no decompose_both, factor -1) on q and v.
    fn default() -> Self {
        Self {
            r: 8,
            alpha: 8.0,
            targets: vec!["q".into(), "v".into()],
            decompose_both: false,
            decompose_factor: -1,
        }
    }
}

/// VeRA's options: Δy = λb ⊙ (B · (λd ⊙ (A · x))) with A, B frozen and shared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VeraConfig {
    /// The rank of the shared projections A (r, in) and B (out, r).
    pub r: usize,
    /// Target names as LoRA's ([`super::lora::Target`]).
    pub targets: Vec<String>,
    /// λd's initial value (λb starts at zero).
    pub d_initial: f64,
    /// The seed A and B are drawn from.
    pub projection_prng_key: u64,
    /// Dropout on the input of the VeRA path.
    pub dropout: f64,
}

impl Default for VeraConfig {
    /// PEFT's defaults (r 256, d_initial 0.1, key 0, no dropout) on q and v.
    fn default() -> Self {
        Self {
            r: 256,
            targets: vec!["q".into(), "v".into()],
            d_initial: 0.1,
            projection_prng_key: 0,
            dropout: 0.0,
        }
    }
}

/// How prompt tuning's soft prompt starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptInit {
    /// normal(0, σ) with σ the standard deviation of the token-embedding table.
    Random,
    /// Row i copies the token embedding of `ids[i % ids.len()]`.
    Vocab(Vec<usize>),
}

/// serde's default for `reparameterize` in a prefix spec.
pub fn default_reparameterize() -> bool {
    true
}
