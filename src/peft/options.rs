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
    /// lora/dora: rank r.
    #[arg(long, default_value_t = 8)]
    pub r: usize,
    /// lora/dora: alpha (the update is scaled by alpha / r).
    #[arg(long, default_value_t = 16.0)]
    pub alpha: f64,
    /// lora/dora: dropout on the low-rank path's input.
    #[arg(long, default_value_t = 0.0)]
    pub lora_dropout: f64,
    /// lora/dora: target Linears: q, k, v, o, fc, proj, qkv (GPT-2's whole c_attn), or the
    /// groups attn, mlp, all (HF names such as q_proj, up_proj, fc1 work too).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub targets: Vec<String>,
    /// lora/dora: scale by alpha / sqrt(r) (rsLoRA).
    #[arg(long)]
    pub rslora: bool,
    /// lora/dora: LoRA+ learning-rate ratio of B to A.
    #[arg(long, default_value_t = 1.0)]
    pub lora_plus_ratio: f64,
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
