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
    /// lora/dora/loha/lokr/vera: rank r (VeRA: of the shared random projections).
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// lora/dora/loha/lokr: alpha (the update is scaled by alpha / r).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// lora/dora/vera: dropout on the low-rank path's input.
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// lora/dora/loha/lokr/vera: target Linears: q, k, v, o, fc, proj, qkv (GPT-2's whole
    /// c_attn), or the groups attn, mlp, all (HF names such as q_proj, up_proj, fc1 work too).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub targets: Vec<String>,
    /// lora/dora: scale by alpha / sqrt(r) (rsLoRA).
    #[arg(long)]
    pub rslora: bool,
    /// lora/dora: LoRA+ learning-rate ratio of B to A.
    #[arg(long, default_value_t = 1.0)]
    pub lora_plus_ratio: f64,
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
