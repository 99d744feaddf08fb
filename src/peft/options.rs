//! The method options of the command line: one vocabulary of knobs shared by every method. Each
//! method reads the ones it uses (its `spec` function, listed in [`super::registry::METHODS`]);
//! `--method` itself is [`super::registry::MethodArgs`].

use clap::Args;

/// Options of the fine-tuning methods (each applies to the methods named at the start of its
/// help line; the others ignore it).
#[derive(Args, Debug, Clone)]
pub struct MethodOptions {
    /// full: train only the last k blocks (and the head).
    #[arg(long)]
    pub last_k: Option<usize>,
    /// lora/dora/lora-fa/loha/lokr/vera: rank r (VeRA: of the shared random projections).
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// lora/dora/lora-fa/adalora/loha/lokr: alpha (the update is scaled by alpha / r;
    /// adalora: by alpha / init_r).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// lora/dora/lora-fa/adalora/vera: dropout on the low-rank path's input.
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// lora/dora/lora-fa/adalora/loha/lokr/vera: target Linears: q, k, v, o, fc, proj, qkv
    /// (GPT-2's whole c_attn), or the groups attn, mlp, all (HF names such as q_proj, up_proj,
    /// fc1 work too).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub targets: Vec<String>,
    /// lora/dora/lora-fa: scale by alpha / sqrt(r) (rsLoRA).
    #[arg(long)]
    pub rslora: bool,
    /// lora/dora/lora-fa: LoRA+ learning-rate ratio of B to A.
    #[arg(long, default_value_t = 1.0)]
    pub lora_plus_ratio: f64,
    /// lora/lora-fa: how A and B start (PEFT's init_lora_weights): true (A uniform ±1/√d_in,
    /// B = 0), gaussian (A normal(0, 1/r)), pissa (A, B from the top-r singular triplets of W,
    /// W replaced by the residual), olora (A, B from W's QR, W replaced by the residual). A PiSSA
    /// or OLoRA adapter is saved converted to a plain LoRA of rank 2r on the original base.
    #[arg(long, default_value = "true")]
    pub init_lora_weights: String,
    /// adalora: the rank each targeted Linear starts with.
    #[arg(long, default_value_t = 12)]
    pub init_r: usize,
    /// adalora: the average rank the budget schedule ends at (below --init-r).
    #[arg(long, default_value_t = 8)]
    pub target_r: usize,
    /// adalora: warm-up steps before any rank is pruned.
    #[arg(long, default_value_t = 0)]
    pub tinit: usize,
    /// adalora: final steps that keep the final rank pattern fixed.
    #[arg(long, default_value_t = 0)]
    pub tfinal: usize,
    /// adalora: steps between two budget allocations (PEFT's deltaT).
    #[arg(long, default_value_t = 1)]
    pub delta_t: usize,
    /// adalora: EMA coefficient of the importance |w · ∇w|.
    #[arg(long, default_value_t = 0.85)]
    pub beta1: f64,
    /// adalora: EMA coefficient of the importance's uncertainty.
    #[arg(long, default_value_t = 0.85)]
    pub beta2: f64,
    /// adalora: weight of the orthogonality regulariser ‖PᵀP − I‖ + ‖QQᵀ − I‖ added to the loss.
    #[arg(long, default_value_t = 0.5)]
    pub orth_reg_weight: f64,
    /// adalora: the steps the budget schedule spans (default: the run's optimizer steps).
    #[arg(long)]
    pub total_step: Option<usize>,
    /// lokr: also write the left Kronecker factor W1 as a low-rank product when r < max(its
    /// sides) / 2 (W2 is always low-rank then).
    #[arg(long)]
    pub decompose_both: bool,
    /// lokr: split each dimension d as (f, d / f) when f divides it; -1 (default) splits it
    /// into the two divisors nearest the square root of d.
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub decompose_factor: i64,
    /// vera: initial value of the per-rank scaling vector λd (λb starts at zero).
    #[arg(long, default_value_t = 0.1)]
    pub vera_d_initial: f64,
    /// vera: seed of the frozen random projections A and B shared by every targeted Linear.
    #[arg(long, default_value_t = 0)]
    pub projection_prng_key: u64,
    /// houlsby/pfeiffer: bottleneck width.
    #[arg(long, default_value_t = 16)]
    pub bottleneck: usize,
    /// prefix/prompt: number of virtual tokens.
    #[arg(long, default_value_t = 10)]
    pub n_virtual: usize,
    /// prefix: hidden width of the reparameterization MLP.
    #[arg(long, default_value_t = 128)]
    pub prefix_hidden: usize,
    /// prefix: train the prefixes directly, without the reparameterization MLP.
    #[arg(long)]
    pub no_reparam: bool,
    /// prompt: initialise the soft prompt from these words' embeddings (else randomly).
    #[arg(long)]
    pub prompt_init_text: Option<String>,
}
