//! `tunelab estimate`: memory and compute arithmetic for fine-tuning real model sizes.
//!
//! Nothing here trains anything: given a model shape, a batch size B and a sequence length T,
//! it counts parameters, bytes and FLOPs for six ways of fine-tuning, so that "how much memory
//! does LoRA save on a 7B model?" is answered with a worked computation instead of folklore.
//! Every constant below names the paper it comes from; the rendered table ends with a footer
//! that lists the same assumptions.
//!
//! Dimension letters follow the crate: L layers, C channels (`h` in Korthikanti et al.),
//! NH heads (`a`), V vocabulary, T sequence length (`s`), B batch (`b`), N parameters.
//!
//! # Model states (bytes per parameter)
//!
//! | method | weights | grads | optimizer | total |
//! |---|---|---|---|---|
//! | full, fp32 + Adam | 4 | 4 | 8 (m, v) | 16 |
//! | full, mixed precision + Adam | 2 (fp16/bf16) | 2 | 12 (fp32 master 4 + m 4 + v 4) | 16 |
//! | LoRA | 2 per frozen base param, 4 per adapter param | 4 per adapter param | 8 per adapter param | 2·N + 16·N_lora |
//! | QLoRA | ≈ 0.516 per quantized base param, 2 per adapter param | 2 per adapter param | 8 per adapter param | |
//! | prefix / prompt tuning | 2 per frozen base param, 4 per trainable | 4 | 8 | 2·N + 16·N_train |
//!
//! The mixed-precision row is the ZeRO paper's accounting (Rajbhandari et al. 2020, §3.1):
//! 2Ψ for the fp16 parameters, 2Ψ for the fp16 gradients and KΨ with K = 12 for the fp32 copy
//! of the parameters, momentum and variance that Adam keeps, 16Ψ in all. It costs as much as
//! fp32 training per parameter; the saving of mixed precision is in activations and speed.
//!
//! # Activations
//!
//! Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models"
//! (§4.1): one GPT-3 style transformer layer trained in 16-bit stores
//! `s·b·h·(34 + 5·a·s/h)` bytes for its backward pass. The 34 counts 16-bit tensors of shape
//! (s, b, h) (2 bytes each) plus 1-byte dropout masks: attention 11·sbh (QKV input 2, Q and K 4,
//! V 2, output-projection input 2, dropout mask 1), MLP 19·sbh (input 2, GeLU input 8, GeLU
//! output 8, dropout mask 1), two LayerNorm inputs 4·sbh. The 5·a·s²·b is the attention matrix:
//! softmax output (2 bytes), its dropout mask (1) and the dropout output (2). Written per
//! element size e (bytes of an activation), that is `s·b·h·(16·e + 2) + a·s·s_k·b·(2·e + 1)`,
//! which gives 34 and 5 for e = 2 and 66 and 9 for fp32 training (e = 4); `s_k` is the key
//! length (T plus any prefix). The same paper keeps the output layer's logits in fp32 for the
//! cross-entropy, 4·s·b·V bytes, which we add once.
//!
//! With full recomputation (gradient checkpointing of every layer) only each layer's input is
//! kept, 2·s·b·h bytes per layer in 16-bit (Korthikanti et al.); during the backward pass one
//! layer at a time is recomputed, so its full `s·b·h·(34 + 5·a·s/h)` is added once to the peak.
//!
//! Frozen-base methods (LoRA, QLoRA, prefix, prompt tuning) are given the same activations as
//! full fine-tuning: the gradient must still flow back through every layer to reach the adapters,
//! the prefixes or the soft prompt. (A framework could skip saving the inputs of frozen Linears,
//! whose weight gradient is never needed; PyTorch layers generally do not, so this is an upper
//! bound for them.)
//!
//! # ZeRO and FSDP: model states per GPU
//!
//! Data parallelism over N GPUs keeps a whole copy of the model states on each. ZeRO
//! (Rajbhandari et al. 2020, §5) partitions them instead: stage 1 (P_os) gives each GPU 1/N of
//! the optimizer states, stage 2 (P_os+g) the gradients too, stage 3 (P_os+g+p) the parameters
//! too; PyTorch's FSDP with `FULL_SHARD` is stage 3, `SHARD_GRAD_OP` stage 2. With mixed-precision
//! Adam (2Ψ + 2Ψ + KΨ, K = 12) a GPU holds (2 + 2 + K)Ψ, (2 + 2)Ψ + KΨ/N, 2Ψ + (2 + K)Ψ/N and
//! (2 + 2 + K)Ψ/N bytes: the paper's Figure 1 gives 120, 31.4, 16.6 and 1.9 GB for Ψ = 7.5B and
//! N = 64 ([`Zero::shard`]). Activations are not partitioned (each GPU runs its own micro-batch).
//! Communication per step (§7): data parallelism all-reduces the gradients, a reduce-scatter and
//! an all-gather of Ψ elements each, 2Ψ per GPU; stages 1 and 2 move the same 2Ψ (the gradients
//! reduce-scattered, the updated parameters all-gathered); stage 3 all-gathers the parameters
//! before the forward and again before the backward, 3Ψ in all, 1.5× ([`Zero::comm_elements`]).
//! With LoRA only the adapters' gradients are reduced; under stage 3 the frozen base is still
//! gathered for every forward and backward.
//!
//! # FLOPs per token
//!
//! A matmul with N weights costs 2·N FLOPs per token forward (a multiply and an add per
//! weight). Backward costs 2·N for the gradient with respect to the input and 2·N for the
//! gradient with respect to the weights, so full fine-tuning is 6·N per token (Kaplan et al.
//! 2020, §2.1). When the base is frozen its weight gradients are skipped, but the input
//! gradients must still be computed through every frozen matmul so that they reach the adapters
//! below: 2·N + 2·N = 4·N for the base, plus 6·N_lora for the LoRA matrices themselves, which
//! are trained fully. Gradient checkpointing recomputes one forward pass: +2·N (+2·N_lora).
//! Here N counts the weights that take part in a matmul per token (every Linear of the blocks
//! plus the LM head); the embedding lookup is free, and the attention-score matmuls (which grow
//! with T, 6·L·T·C more per token) are left out, as in the 6·N rule.

use crate::error::{invalid, Result};
use serde::Serialize;
use std::fmt::Write;

/// Bytes in a gigabyte as printed: 10⁹ (not GiB).
pub const GB: f64 = 1e9;

/// Adam keeps two fp32 moments per trained parameter (m and v): 8 bytes.
pub const ADAM_BYTES: f64 = 8.0;

/// Bits per parameter of NF4 with double quantization (Dettmers et al. 2023, §3): 4-bit codes in
/// blocks of 64 whose absmax constants are themselves quantized to 8 bits, with one fp32
/// second-level constant per 256 first-level constants:
/// 4 + 8/64 + 32/(64·256) = 4 + 0.125 + 0.00195 ≈ 4.127 bits. (Without double quantization the
/// fp32 constants cost 32/64 = 0.5 bits per parameter.)
pub fn nf4_bits_per_param() -> f64 {
    const CODE_BITS: f64 = 4.0;
    const BLOCK: f64 = 64.0;
    const CONST_BITS: f64 = 8.0;
    const BLOCK2: f64 = 256.0;
    const CONST2_BITS: f64 = 32.0;
    CODE_BITS + CONST_BITS / BLOCK + CONST2_BITS / (BLOCK * BLOCK2)
}

/// The aspect ratio C / L used to derive a shape from a bare parameter count: 128, the ratio of
/// LLaMA 7B (4096 / 32) and 13B (5120 / 40) and of GPT-3 175B (12288 / 96). Kaplan et al. 2020
/// (§3.1, fig. 5) found the loss changes by only a few percent over aspect ratios from about
/// 20 to 200, so any value in that range is plausible.
pub const ASPECT_RATIO: f64 = 128.0;

// Limits that keep every count inside u64 and every estimate meaningful.
const MAX_LAYERS: usize = 10_000;
const MAX_HIDDEN: usize = 1 << 20;
const MAX_VOCAB: usize = 1 << 24;
const MAX_TOKENS: usize = 1 << 24;
const MAX_PARAMS: f64 = 1e15;

// ---------------------------------------------------------------------------------------------
// Model shapes

/// What a block looks like, which decides how its parameters are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// GPT-3 (Brown et al. 2020, §2.1, which follows GPT-2): learned positions, LayerNorm with
    /// bias, biases on every Linear, MLP C → d_ff → C with GeLU, LM head tied to the token
    /// embedding.
    Gpt3,
    /// LLaMA (Touvron et al. 2023, §2.2): RoPE (no position parameters), RMSNorm (weight only),
    /// no biases, SwiGLU MLP with three matrices (gate, up: C → d_ff; down: d_ff → C), untied
    /// LM head.
    Llama,
}

/// A transformer's shape: everything parameter, memory and FLOP counts need.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shape {
    /// Display name, e.g. "LLaMA 7B".
    pub name: String,
    /// Where the numbers come from.
    pub source: String,
    pub family: Family,
    /// L
    pub layers: usize,
    /// C (d_model)
    pub hidden: usize,
    /// NH, query heads
    pub heads: usize,
    /// Key/value heads (= NH without grouped-query attention).
    pub kv_heads: usize,
    /// Output width of the k and v projections (= C without grouped-query attention).
    pub kv_dim: usize,
    /// d_ff, the MLP's inner width
    pub ffn: usize,
    /// V
    pub vocab: usize,
    /// The context the model was trained with (the size of the position table for GPT-3).
    pub max_positions: usize,
}

/// One Linear of a transformer block, the unit LoRA attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Module {
    Q,
    K,
    V,
    O,
    /// SwiGLU's gate projection (LLaMA `gate_proj`); GPT-3 has none.
    Gate,
    /// The MLP's first projection (LLaMA `up_proj`, GPT `c_fc` / `fc1`).
    Up,
    /// The MLP's second projection (LLaMA `down_proj`, GPT `c_proj` / `fc2`).
    Down,
}

impl Module {
    pub const ALL: [Module; 7] = [
        Module::Q,
        Module::K,
        Module::V,
        Module::O,
        Module::Gate,
        Module::Up,
        Module::Down,
    ];

    /// Short name used in labels: q, k, v, o, gate, up, down.
    pub fn name(self) -> &'static str {
        match self {
            Module::Q => "q",
            Module::K => "k",
            Module::V => "v",
            Module::O => "o",
            Module::Gate => "gate",
            Module::Up => "up",
            Module::Down => "down",
        }
    }

    /// Parses a comma-separated target list with LoRA's target vocabulary
    /// ([`crate::peft::lora::parse_targets`], shared with `finetune --targets`): `fc` is `up`,
    /// `proj` is `down`, and the groups `attn` (q,k,v,o), `mlp` (gate,up,down) and `all` work.
    /// GPT-2's fused `qkv` is refused: the estimate counts q, k and v as separate Linears.
    /// Sorted in the order of [`Module::ALL`].
    pub fn parse_list(s: &str) -> Result<Vec<Module>> {
        use crate::peft::lora::Target;
        let mut out: Vec<Module> = Vec::new();
        for t in crate::peft::lora::parse_targets(s)? {
            let m = match t {
                Target::Q => Module::Q,
                Target::K => Module::K,
                Target::V => Module::V,
                Target::O => Module::O,
                Target::Gate => Module::Gate,
                Target::Fc => Module::Up,
                Target::Proj => Module::Down,
                Target::Qkv => {
                    return invalid(
                        "estimate",
                        "target qkv (GPT-2's fused c_attn): the estimate counts q, k and v as \
                         separate Linears; use q,k,v",
                    )
                }
            };
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out.sort_by_key(|m| Module::ALL.iter().position(|a| a == m));
        Ok(out)
    }
}

/// Parameter counts of a shape, split the ways the estimates need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ParamCounts {
    /// Everything.
    pub total: u64,
    /// Token embedding (V, C).
    pub embedding: u64,
    /// Learned position table (max_positions, C); 0 for RoPE.
    pub positions: u64,
    /// The LM head (V, C) if untied; 0 when tied to the embedding.
    pub head: u64,
    /// Weights of the Linears inside the blocks (what QLoRA quantizes).
    pub block_linear: u64,
    /// Biases and norm parameters (blocks and final norm).
    pub small: u64,
    /// Weights used in a matmul per token: block Linears plus the LM head (V·C, tied or not).
    /// The N of the FLOP formulas.
    pub matmul: u64,
}

impl Shape {
    /// The Linears of one block: (module, d_in, d_out).
    pub fn linears(&self) -> Vec<(Module, usize, usize)> {
        let c = self.hidden;
        let mut v = vec![
            (Module::Q, c, c),
            (Module::K, c, self.kv_dim),
            (Module::V, c, self.kv_dim),
            (Module::O, c, c),
        ];
        if self.family == Family::Llama {
            v.push((Module::Gate, c, self.ffn));
        }
        v.push((Module::Up, c, self.ffn));
        v.push((Module::Down, self.ffn, c));
        v
    }

    /// Counts the parameters.
    ///
    /// GPT-3: per layer 4·C² (attention) + 2·C·d_ff (MLP) + biases (3C + C + d_ff + C) + two
    /// LayerNorms (4C); with d_ff = 4C that is 12·C² + 13·C. Plus V·C + T_max·C embeddings and a
    /// final LayerNorm (2C). LLaMA: per layer 2·C² + 2·C·kv_dim + 3·C·d_ff + two RMSNorms (2C),
    /// plus V·C embedding, V·C head and a final RMSNorm (C).
    pub fn params(&self) -> ParamCounts {
        let (l, c, f, v) = (
            self.layers as u64,
            self.hidden as u64,
            self.ffn as u64,
            self.vocab as u64,
        );
        let linear_per_layer: u64 = self
            .linears()
            .iter()
            .map(|&(_, i, o)| i as u64 * o as u64)
            .sum();
        let block_linear = l * linear_per_layer;
        let embedding = v * c;
        let (positions, head, small) = match self.family {
            Family::Gpt3 => {
                let biases = 2 * c + self.kv_dim as u64 * 2 + f + c;
                let norms = 4 * c;
                (
                    self.max_positions as u64 * c,
                    0,
                    l * (biases + norms) + 2 * c,
                )
            }
            Family::Llama => (0, v * c, l * 2 * c + c),
        };
        ParamCounts {
            total: embedding + positions + head + block_linear + small,
            embedding,
            positions,
            head,
            block_linear,
            small,
            matmul: block_linear + v * c,
        }
    }

    fn describe(&self) -> String {
        let attn = if self.kv_heads != self.heads {
            format!("NH={} (GQA, {} kv heads)", self.heads, self.kv_heads)
        } else {
            format!("NH={}", self.heads)
        };
        let arch = match self.family {
            Family::Gpt3 => "GeLU MLP, LayerNorm, learned positions, tied head",
            Family::Llama => "SwiGLU MLP, RMSNorm, RoPE, untied head",
        };
        format!(
            "L={} C={} {} d_ff={} V={}; {}",
            self.layers, self.hidden, attn, self.ffn, self.vocab, arch
        )
    }
}

/// The named sizes `estimate` knows, in the order of the table below.
pub const NAMED_SIZES: [&str; 8] = ["125M", "350M", "1.3B", "175B", "7B", "13B", "65B", "70B"];

fn gpt3(name: &str, layers: usize, hidden: usize, heads: usize) -> Shape {
    Shape {
        name: format!("GPT-3 {name}"),
        source: "Brown et al. 2020, Language Models are Few-Shot Learners, Table 2.1".into(),
        family: Family::Gpt3,
        layers,
        hidden,
        heads,
        kv_heads: heads,
        kv_dim: hidden,
        ffn: 4 * hidden,
        vocab: 50257,
        max_positions: 2048,
    }
}

fn llama(name: &str, layers: usize, hidden: usize, heads: usize, ffn: usize) -> Shape {
    Shape {
        name: format!("LLaMA {name}"),
        source: "Touvron et al. 2023, LLaMA: Open and Efficient Foundation Language Models, \
                 Table 2; d_ff from the released params (2/3·4C rounded up to 256)"
            .into(),
        family: Family::Llama,
        layers,
        hidden,
        heads,
        kv_heads: heads,
        kv_dim: hidden,
        ffn,
        vocab: 32000,
        max_positions: 2048,
    }
}

/// The published shape of a named size (case-insensitive), or `None`.
///
/// - GPT-3 (Brown et al. 2020, Table 2.1; V = 50257, context 2048, d_ff = 4C):
///   125M: L=12, C=768, 12 heads; 350M: L=24, C=1024, 16 heads; 1.3B: L=24, C=2048, 24 heads
///   (the table lists d_head = 128 for it; its q, k, v, o are C × C as the 1.3B total requires);
///   175B: L=96, C=12288, 96 heads.
/// - LLaMA (Touvron et al. 2023, Table 2; V = 32000, context 2048): 7B: L=32, C=4096, 32 heads,
///   d_ff 11008; 13B: L=40, C=5120, 40 heads, d_ff 13824; 65B: L=80, C=8192, 64 heads,
///   d_ff 22016 (d_ff from the released checkpoints' configs).
/// - LLaMA 2 70B (Touvron et al. 2023b, Llama 2, §2.2 and Table 1: grouped-query attention for
///   34B and 70B; shape from the released config): L=80, C=8192, 64 heads, 8 kv heads,
///   d_ff 28672, V = 32000, context 4096.
pub fn named_shape(name: &str) -> Option<Shape> {
    let shape = match name.trim().to_ascii_uppercase().as_str() {
        "125M" => gpt3("125M", 12, 768, 12),
        "350M" => gpt3("350M", 24, 1024, 16),
        "1.3B" => gpt3("1.3B", 24, 2048, 24),
        "175B" => gpt3("175B", 96, 12288, 96),
        "7B" => llama("7B", 32, 4096, 32, 11008),
        "13B" => llama("13B", 40, 5120, 40, 13824),
        "65B" => llama("65B", 80, 8192, 64, 22016),
        "70B" => Shape {
            name: "LLaMA 2 70B".into(),
            source: "Touvron et al. 2023, Llama 2: Open Foundation and Fine-Tuned Chat Models, \
                     Table 1 (GQA); shape from the released config"
                .into(),
            kv_heads: 8,
            kv_dim: 8 * 128,
            max_positions: 4096,
            ..llama("70B", 80, 8192, 64, 28672)
        },
        _ => return None,
    };
    Some(shape)
}

/// Parses a bare parameter count: `125000000`, `1.5e9`, `2.7B`, `350m`, `500K`, `1T`.
pub fn parse_param_count(s: &str) -> Result<f64> {
    let t = s.trim();
    let (num, mult) = match t.chars().last().map(|c| c.to_ascii_uppercase()) {
        Some('K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        Some('B') | Some('G') => (&t[..t.len() - 1], 1e9),
        Some('T') => (&t[..t.len() - 1], 1e12),
        _ => (t, 1.0),
    };
    let n = match num.trim().parse::<f64>() {
        Ok(x) => x * mult,
        Err(_) => {
            let names = NAMED_SIZES.join(", ");
            return invalid(
                "estimate",
                format!("unknown model size {s:?}: use one of {names} or a count like 2.7B, 1.5e9"),
            );
        }
    };
    if !n.is_finite() || n < 1.0 {
        return invalid(
            "estimate",
            format!("parameter count {s:?} must be a positive number"),
        );
    }
    if n > MAX_PARAMS {
        return invalid(
            "estimate",
            format!("parameter count {s:?} is above the 1e15 this estimate handles"),
        );
    }
    Ok(n)
}

/// Optional shape numbers that replace the named or derived ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ShapeOverrides {
    pub layers: Option<usize>,
    pub hidden: Option<usize>,
    pub heads: Option<usize>,
    pub vocab: Option<usize>,
}

fn head_dim_for(hidden: usize) -> usize {
    if hidden >= 1024 && hidden.is_multiple_of(128) {
        128
    } else {
        64
    }
}

/// LLaMA's d_ff rule: 2/3 of 4C, rounded up to a multiple of 256.
fn llama_ffn(hidden: usize) -> usize {
    (8 * hidden / 3).div_ceil(256) * 256
}

fn derived(layers: usize, hidden: usize, heads: Option<usize>, vocab: usize) -> Shape {
    let heads = heads.unwrap_or_else(|| (hidden / head_dim_for(hidden)).max(1));
    Shape {
        name: String::new(),
        source: String::new(),
        family: Family::Llama,
        layers,
        hidden,
        heads,
        kv_heads: heads,
        kv_dim: hidden,
        ffn: llama_ffn(hidden),
        vocab,
        max_positions: 2048,
    }
}

/// Derives a plausible LLaMA-style shape for a bare parameter count `n`.
///
/// The block is LLaMA's (SwiGLU with d_ff = 8C/3 rounded up to 256, so a layer holds about
/// 4C² + 3·C·(8C/3) = 12·C², the same as GPT-3's 12·C² with d_ff = 4C), V = 32000 unless
/// overridden. Without overrides, N ≈ 12·L·C² + 2·V·C is solved with C / L =
/// [`ASPECT_RATIO`]: C runs over multiples of 64, L = round((N − embeddings) / per-layer), and the
/// candidate closest to the aspect ratio wins, with a heavy penalty for missing N (rounding L
/// matters for small models). With `hidden` given, L follows from N; with `layers` given, C is
/// the multiple of 64 that best matches N; with both, N follows from the shape. Head size is
/// 128 from C = 1024 up (as in LLaMA) and 64 below.
pub fn derive_shape(n: f64, over: &ShapeOverrides) -> Result<Shape> {
    let vocab = over.vocab.unwrap_or(32000);
    let count = |l: usize, c: usize| derived(l, c, over.heads, vocab).params().total as f64;
    let layers_for = |c: usize| -> Option<usize> {
        let zero = count(0, c);
        let per_layer = count(1, c) - zero;
        let l = ((n - zero) / per_layer).round();
        (l >= 1.0 && l <= MAX_LAYERS as f64).then_some(l as usize)
    };
    let (layers, hidden) = match (over.layers, over.hidden) {
        (Some(l), Some(c)) => (l, c),
        (None, Some(c)) => match layers_for(c) {
            Some(l) => (l, c),
            None => {
                return invalid(
                    "estimate",
                    format!(
                        "{n:.3e} parameters do not fit a model with C={c} and V={vocab}: \
                         the embeddings alone take {:.3e}",
                        count(0, c)
                    ),
                )
            }
        },
        (Some(l), None) => {
            let best = (1..=MAX_HIDDEN / 64)
                .map(|k| 64 * k)
                .map(|c| (c, (count(l, c) / n).ln().abs()))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            match best {
                Some((c, _)) => (l, c),
                None => return invalid("estimate", "no hidden size fits"),
            }
        }
        (None, None) => {
            let mut best: Option<(usize, usize, f64)> = None;
            for c in (1..=(1 << 17) / 64).map(|k| 64 * k) {
                let Some(l) = layers_for(c) else { continue };
                let aspect = (c as f64 / l as f64 / ASPECT_RATIO).ln().abs();
                let miss = (count(l, c) / n).ln().abs();
                let score = aspect + 20.0 * miss;
                if best.is_none_or(|b| score < b.2) {
                    best = Some((l, c, score));
                }
            }
            match best {
                Some((l, c, _)) => (l, c),
                None => {
                    return invalid(
                        "estimate",
                        format!(
                            "{n:.3e} parameters is too small for a transformer with V={vocab}: \
                             the embeddings of the smallest width (C=64) take {:.3e}; \
                             give a size of at least that many parameters",
                            count(0, 64)
                        ),
                    )
                }
            }
        }
    };
    let mut shape = derived(layers, hidden, over.heads, vocab);
    shape.name = format!("derived {}", fmt_count(n));
    shape.source = format!(
        "shape derived from the parameter count: LLaMA-style block, C/L near {ASPECT_RATIO} \
         (LLaMA 7B/13B), N ≈ 12·L·C² + 2·V·C"
    );
    Ok(shape)
}

fn check_range(what: &str, v: usize, max: usize) -> Result<()> {
    if v == 0 || v > max {
        return invalid(
            "estimate",
            format!("{what} = {v} is out of range 1..={max}"),
        );
    }
    Ok(())
}

/// Resolves a size (a name from [`NAMED_SIZES`] or a bare count) and the overrides into a shape.
/// Also returns the requested count for bare counts.
///
/// On a named size the overrides replace its numbers; a new `hidden` scales d_ff and the k/v
/// width in proportion (d_ff rounded up to 256 for LLaMA, 4C for GPT-3) and keeps the head count.
pub fn resolve_shape(size: &str, over: &ShapeOverrides) -> Result<(Shape, Option<f64>)> {
    if let Some(l) = over.layers {
        check_range("layers", l, MAX_LAYERS)?;
    }
    if let Some(c) = over.hidden {
        check_range("hidden", c, MAX_HIDDEN)?;
    }
    if let Some(v) = over.vocab {
        check_range("vocab", v, MAX_VOCAB)?;
    }
    if let Some(h) = over.heads {
        check_range("heads", h, over.hidden.unwrap_or(MAX_HIDDEN))?;
    }
    let (mut shape, requested) = match named_shape(size) {
        Some(mut s) => {
            let changed = over.layers.is_some()
                || over.hidden.is_some()
                || over.heads.is_some()
                || over.vocab.is_some();
            if let Some(c) = over.hidden {
                let old = s.hidden;
                s.kv_dim = (s.kv_dim * c).div_ceil(old).max(1);
                s.ffn = match s.family {
                    Family::Gpt3 => 4 * c,
                    Family::Llama => ((s.ffn * c).div_ceil(old)).div_ceil(256) * 256,
                };
                s.hidden = c;
            }
            if let Some(l) = over.layers {
                s.layers = l;
            }
            if let Some(h) = over.heads {
                s.heads = h;
                s.kv_heads = s.kv_heads.min(h);
            }
            if let Some(v) = over.vocab {
                s.vocab = v;
            }
            if changed {
                s.name.push_str(" (modified)");
            }
            (s, None)
        }
        None => {
            let n = parse_param_count(size)?;
            (derive_shape(n, over)?, Some(n))
        }
    };
    if shape.heads > shape.hidden {
        return invalid(
            "estimate",
            format!("heads = {} exceeds hidden = {}", shape.heads, shape.hidden),
        );
    }
    shape.kv_heads = shape.kv_heads.max(1);
    Ok((shape, requested))
}

// ---------------------------------------------------------------------------------------------
// LoRA, prefix and prompt parameter counts

/// Where LoRA goes and at what rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoraConfig {
    /// r
    pub r: usize,
    /// Block Linears that get an adapter (targets absent from the architecture are skipped,
    /// e.g. `gate` on GPT-3).
    pub targets: Vec<Module>,
}

impl LoraConfig {
    /// r on W_q and W_v, the LoRA paper's choice for GPT-3 (Hu et al. 2021, §4.2 and §7.1).
    pub fn qv(r: usize) -> Self {
        LoraConfig {
            r,
            targets: vec![Module::Q, Module::V],
        }
    }

    /// r on every Linear of the blocks, the QLoRA setting (Dettmers et al. 2023, §4: LoRA on all
    /// linear transformer block layers, r = 64).
    pub fn all_linear(r: usize) -> Self {
        LoraConfig {
            r,
            targets: Module::ALL.to_vec(),
        }
    }

    fn label(&self, shape: &Shape) -> String {
        let present: Vec<Module> = shape.linears().iter().map(|x| x.0).collect();
        let names: Vec<&str> = self
            .targets
            .iter()
            .filter(|m| present.contains(m))
            .map(|m| m.name())
            .collect();
        if names.len() == present.len() {
            format!("r={} all linear", self.r)
        } else {
            format!("r={} {}", self.r, names.join(","))
        }
    }
}

/// Trainable LoRA parameters: for each targeted d_in × d_out Linear of each layer, A (r, d_in)
/// and B (d_out, r), r·(d_in + d_out) in all (Hu et al. 2021, §4.1).
pub fn lora_params(shape: &Shape, cfg: &LoraConfig) -> Result<u64> {
    if cfg.r == 0 {
        return invalid("estimate", "LoRA rank r must be at least 1");
    }
    if cfg.r > shape.hidden {
        return invalid(
            "estimate",
            format!("LoRA rank r = {} exceeds hidden = {}", cfg.r, shape.hidden),
        );
    }
    let per_layer: u64 = shape
        .linears()
        .iter()
        .filter(|(m, _, _)| cfg.targets.contains(m))
        .map(|&(_, i, o)| cfg.r as u64 * (i + o) as u64)
        .sum();
    if per_layer == 0 {
        return invalid(
            "estimate",
            format!(
                "none of the LoRA targets exists in {} (it has {})",
                shape.name,
                shape
                    .linears()
                    .iter()
                    .map(|x| x.0.name())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        );
    }
    Ok(shape.layers as u64 * per_layer)
}

/// Trainable prefix-tuning parameters (Li & Liang 2021): P key and P value vectors per layer,
/// P·2·L·kv_dim. With the MLP reparameterization of hidden width H (PEFT's `PrefixEncoder`
/// with `prefix_projection`), training instead holds E (P, C), Linear C→H and Linear
/// H→2·L·kv_dim with biases.
pub fn prefix_params(shape: &Shape, len: usize, mlp_hidden: Option<usize>) -> u64 {
    let (p, c, l, kv) = (
        len as u64,
        shape.hidden as u64,
        shape.layers as u64,
        shape.kv_dim as u64,
    );
    match mlp_hidden {
        None => p * 2 * l * kv,
        Some(h) => {
            let h = h as u64;
            p * c + (c * h + h) + (h * 2 * l * kv + 2 * l * kv)
        }
    }
}

/// Trainable prompt-tuning parameters (Lester et al. 2021): P soft-prompt vectors, P·C.
pub fn prompt_params(shape: &Shape, len: usize) -> u64 {
    len as u64 * shape.hidden as u64
}

// ---------------------------------------------------------------------------------------------
// Activations

/// Activation memory for one forward/backward, in bytes (Korthikanti et al. 2022, see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Activations {
    /// One layer without recomputation: s·b·h·(16e + 2) + a·s·s_k·b·(2e + 1).
    pub per_layer: f64,
    /// The LM head's fp32 logits for the cross-entropy: 4·s·b·V.
    pub logits: f64,
    /// No recomputation: L·per_layer + logits.
    pub full: f64,
    /// Full recomputation: the layer inputs e·s·b·h·L, one layer recomputed at a time
    /// (per_layer) and the logits.
    pub checkpointed: f64,
}

/// Activation bytes for `batch` sequences of `seq` queries attending over `key_len` keys, with
/// activations of `elem_bytes` bytes (2 in 16-bit training, 4 in fp32).
pub fn activations(
    shape: &Shape,
    batch: usize,
    seq: usize,
    key_len: usize,
    elem_bytes: f64,
) -> Activations {
    let (s, sk, b, h, a, l, v) = (
        seq as f64,
        key_len as f64,
        batch as f64,
        shape.hidden as f64,
        shape.heads as f64,
        shape.layers as f64,
        shape.vocab as f64,
    );
    let e = elem_bytes;
    let per_layer = s * b * h * (16.0 * e + 2.0) + a * s * sk * b * (2.0 * e + 1.0);
    let logits = 4.0 * s * b * v;
    Activations {
        per_layer,
        logits,
        full: l * per_layer + logits,
        checkpointed: l * e * s * b * h + per_layer + logits,
    }
}

// ---------------------------------------------------------------------------------------------
// The estimate

/// The six ways of fine-tuning that the table compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    FullFp32,
    FullMixed,
    Lora,
    Qlora,
    Prefix,
    Prompt,
}

/// Model states of full fine-tuning with Adam, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct States {
    pub weights: f64,
    pub grads: f64,
    pub optimizer: f64,
}

impl States {
    pub fn total(&self) -> f64 {
        self.weights + self.grads + self.optimizer
    }
}

/// Full fine-tuning with Adam: fp32 is 4 + 4 + 8 bytes per parameter; mixed precision is
/// 2 (fp16/bf16 weights) + 2 (fp16/bf16 grads) + 12 (fp32 master 4, m 4, v 4) as ZeRO counts
/// it (Rajbhandari et al. 2020, §3.1: 16Ψ bytes for Ψ parameters).
pub fn full_states(params: f64, mixed: bool) -> States {
    if mixed {
        States {
            weights: 2.0 * params,
            grads: 2.0 * params,
            optimizer: (4.0 + ADAM_BYTES) * params,
        }
    } else {
        States {
            weights: 4.0 * params,
            grads: 4.0 * params,
            optimizer: ADAM_BYTES * params,
        }
    }
}

/// The most GPUs `--gpus` accepts.
pub const MAX_GPUS: usize = 1 << 20;

/// ZeRO's data-parallel partitioning (Rajbhandari et al. 2020): `stage` 0 (plain data
/// parallelism), 1 (optimizer states), 2 (+ gradients) or 3 (+ parameters; FSDP full-shard)
/// over `gpus` GPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Zero {
    pub gpus: usize,
    pub stage: u8,
}

impl Zero {
    /// Checks the stage (0 to 3) and the GPU count (1 to [`MAX_GPUS`]).
    pub fn new(gpus: usize, stage: u8) -> Result<Self> {
        if stage > 3 {
            return invalid(
                "--zero-stage",
                format!("must be 0, 1, 2 or 3 (3 is FSDP's full shard), got {stage}"),
            );
        }
        check_range("--gpus", gpus, MAX_GPUS)?;
        Ok(Self { gpus, stage })
    }

    /// "ZeRO-2", or "no ZeRO" for stage 0.
    pub fn name(&self) -> String {
        match self.stage {
            0 => "data parallel, no ZeRO".into(),
            3 => "ZeRO-3 (FSDP full shard)".into(),
            s => format!("ZeRO-{s}"),
        }
    }

    /// What one GPU holds of `s`: stage 1 divides the optimizer state by N, stage 2 the
    /// gradients too, stage 3 the weights too.
    pub fn shard(&self, s: States) -> States {
        let n = self.gpus as f64;
        let part = |x: f64, from: u8| if self.stage >= from { x / n } else { x };
        States {
            weights: part(s.weights, 3),
            grads: part(s.grads, 2),
            optimizer: part(s.optimizer, 1),
        }
    }

    /// Elements each GPU sends and receives per optimizer step (ZeRO §7), for `trainable`
    /// parameters whose gradients are reduced out of `total` held: 2·trainable (reduce-scatter
    /// plus all-gather, as an all-reduce) up to stage 2; stage 3 adds an all-gather of every
    /// parameter before the forward and again before the backward and drops the all-gather of
    /// the update: 2·total + trainable. One GPU communicates nothing.
    pub fn comm_elements(&self, trainable: f64, total: f64) -> f64 {
        if self.gpus == 1 {
            0.0
        } else if self.stage < 3 {
            2.0 * trainable
        } else {
            2.0 * total + trainable
        }
    }
}

/// One method's model states per GPU under [`Zero`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZeroRow {
    pub method: Method,
    pub label: String,
    /// Weights, gradients and optimizer state on one GPU.
    pub states: States,
    /// The same plus the activations with gradient checkpointing (not partitioned).
    pub total_ckpt_bytes: f64,
    /// Elements communicated per step per GPU ([`Zero::comm_elements`]).
    pub comm_elements: f64,
}

/// One row of the table: one method's parameters, memory and compute.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodEstimate {
    pub method: Method,
    /// e.g. "LoRA r=8 q,v"
    pub label: String,
    pub trainable: u64,
    /// trainable / total base parameters, in percent
    pub trainable_pct: f64,
    /// All weights held: the base (at its precision) plus any trainable extra.
    pub weights_bytes: f64,
    pub grads_bytes: f64,
    /// Adam moments and any fp32 master copy.
    pub optimizer_bytes: f64,
    pub activations_bytes: f64,
    pub activations_ckpt_bytes: f64,
    /// weights + grads + optimizer + activations
    pub total_bytes: f64,
    /// the same with gradient checkpointing
    pub total_ckpt_bytes: f64,
    pub flops_per_token: f64,
    pub flops_per_token_ckpt: f64,
}

impl MethodEstimate {
    /// Weights, gradients and optimizer state.
    pub fn states_bytes(&self) -> f64 {
        self.weights_bytes + self.grads_bytes + self.optimizer_bytes
    }
}

/// What to estimate: a size and the run's numbers. [`EstimateArgs::new`] fills the defaults.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EstimateArgs {
    /// A named size from [`NAMED_SIZES`] or a bare parameter count ("2.7B", "1.5e9").
    pub size: String,
    pub overrides: ShapeOverrides,
    /// B
    pub batch: usize,
    /// T
    pub seq: usize,
    /// The LoRA row (default r = 8 on q, v).
    pub lora: LoraConfig,
    /// The QLoRA row (default r = 64 on all linear layers, as in the QLoRA paper).
    pub qlora: LoraConfig,
    /// Prefix length P for prefix tuning (default 20).
    pub prefix_len: usize,
    /// Hidden width of prefix tuning's reparameterization MLP, if used (default none).
    pub prefix_mlp_hidden: Option<usize>,
    /// Soft-prompt length P for prompt tuning (default 20).
    pub prompt_len: usize,
    /// Model states per GPU under ZeRO/FSDP (default none: one device).
    pub zero: Option<Zero>,
}

impl EstimateArgs {
    /// Defaults: B = 1, T = 512, LoRA r = 8 on q,v, QLoRA r = 64 on all linear layers, prefix
    /// and prompt length 20, no prefix MLP.
    pub fn new(size: impl Into<String>) -> Self {
        EstimateArgs {
            size: size.into(),
            overrides: ShapeOverrides::default(),
            batch: 1,
            seq: 512,
            lora: LoraConfig::qv(8),
            qlora: LoraConfig::all_linear(64),
            prefix_len: 20,
            prefix_mlp_hidden: None,
            prompt_len: 20,
            zero: None,
        }
    }
}

/// The whole estimate: the shape, its parameters, one row per method, and the assumptions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub shape: Shape,
    pub params: ParamCounts,
    /// The count asked for, when the shape was derived from a bare count.
    pub requested_params: Option<f64>,
    pub batch: usize,
    pub seq: usize,
    pub lora: LoraConfig,
    pub qlora: LoraConfig,
    pub prefix_len: usize,
    pub prefix_mlp_hidden: Option<usize>,
    pub prompt_len: usize,
    pub rows: Vec<MethodEstimate>,
    /// Under ZeRO/FSDP: the partitioning and every method's states per GPU.
    pub zero: Option<(Zero, Vec<ZeroRow>)>,
    /// The footer of the rendered table: every assumption the numbers rest on.
    pub assumptions: Vec<String>,
}

impl Report {
    /// The row of `method`.
    pub fn row(&self, method: Method) -> Option<&MethodEstimate> {
        self.rows.iter().find(|r| r.method == method)
    }
}

#[allow(clippy::too_many_arguments)]
fn row(
    method: Method,
    label: String,
    trainable: u64,
    base_params: u64,
    states: States,
    act: &Activations,
    flops: f64,
    recompute_flops: f64,
) -> MethodEstimate {
    let states_total = states.total();
    MethodEstimate {
        method,
        label,
        trainable,
        trainable_pct: 100.0 * trainable as f64 / base_params as f64,
        weights_bytes: states.weights,
        grads_bytes: states.grads,
        optimizer_bytes: states.optimizer,
        activations_bytes: act.full,
        activations_ckpt_bytes: act.checkpointed,
        total_bytes: states_total + act.full,
        total_ckpt_bytes: states_total + act.checkpointed,
        flops_per_token: flops,
        flops_per_token_ckpt: flops + recompute_flops,
    }
}

/// Computes the estimate. Errors (never panics) on an unknown size, a zero or oversized batch,
/// sequence, rank or prefix length, and targets that do not exist in the model.
pub fn estimate(args: &EstimateArgs) -> Result<Report> {
    check_range("batch", args.batch, MAX_TOKENS)?;
    check_range("seq", args.seq, MAX_TOKENS)?;
    check_range("prefix length", args.prefix_len, MAX_TOKENS)?;
    check_range("prompt length", args.prompt_len, MAX_TOKENS)?;
    if let Some(h) = args.prefix_mlp_hidden {
        check_range("prefix MLP hidden", h, MAX_HIDDEN)?;
    }
    let (shape, requested) = resolve_shape(&args.size, &args.overrides)?;
    if shape.family == Family::Gpt3 && args.seq > shape.max_positions {
        return invalid(
            "estimate",
            format!(
                "seq = {} exceeds {}'s learned position table ({} positions)",
                args.seq, shape.name, shape.max_positions
            ),
        );
    }
    let p = shape.params();
    let n = p.total as f64;
    let n_mm = p.matmul as f64;
    let (b, s) = (args.batch, args.seq);

    let act16 = activations(&shape, b, s, s, 2.0);
    let act32 = activations(&shape, b, s, s, 4.0);
    let act_prefix = activations(&shape, b, s, s + args.prefix_len, 2.0);
    let act_prompt = activations(&shape, b, s + args.prompt_len, s + args.prompt_len, 2.0);

    let mut rows = Vec::with_capacity(6);
    rows.push(row(
        Method::FullFp32,
        "full FT, fp32 + Adam".into(),
        p.total,
        p.total,
        full_states(n, false),
        &act32,
        6.0 * n_mm,
        2.0 * n_mm,
    ));
    rows.push(row(
        Method::FullMixed,
        "full FT, mixed + Adam".into(),
        p.total,
        p.total,
        full_states(n, true),
        &act16,
        6.0 * n_mm,
        2.0 * n_mm,
    ));

    // LoRA: frozen base in fp16 (2 B/param); adapters in fp32 with fp32 grads and Adam
    // (4 + 4 + 8 = 16 B/param), as PEFT trains them under autocast.
    let n_lora = lora_params(&shape, &args.lora)?;
    let nl = n_lora as f64;
    rows.push(row(
        Method::Lora,
        format!("LoRA {}", args.lora.label(&shape)),
        n_lora,
        p.total,
        States {
            weights: 2.0 * n + 4.0 * nl,
            grads: 4.0 * nl,
            optimizer: ADAM_BYTES * nl,
        },
        &act16,
        4.0 * n_mm + 6.0 * nl,
        2.0 * n_mm + 2.0 * nl,
    ));

    // QLoRA: block Linears in NF4 with double quantization; embeddings, LM head, norms and biases
    // stay 16-bit (bitsandbytes quantizes nn.Linear layers only and transformers keeps the LM head
    // unquantized). Adapters in bf16 with bf16 grads and 32-bit Adam: 2 + 2 + 8 = 12 B/param
    // (the QLoRA code casts the LoRA modules to bf16 and uses 32-bit paged AdamW).
    let n_qlora = lora_params(&shape, &args.qlora)?;
    let nq = n_qlora as f64;
    let quantized = p.block_linear as f64 * nf4_bits_per_param() / 8.0;
    let kept16 = 2.0 * (p.total - p.block_linear) as f64;
    rows.push(row(
        Method::Qlora,
        format!("QLoRA NF4, {}", args.qlora.label(&shape)),
        n_qlora,
        p.total,
        States {
            weights: quantized + kept16 + 2.0 * nq,
            grads: 2.0 * nq,
            optimizer: ADAM_BYTES * nq,
        },
        &act16,
        4.0 * n_mm + 6.0 * nq,
        2.0 * n_mm + 2.0 * nq,
    ));

    // Prefix and prompt tuning: frozen fp16 base, trainable tensors at 16 B/param like LoRA's.
    let n_prefix = prefix_params(&shape, args.prefix_len, args.prefix_mlp_hidden);
    let np = n_prefix as f64;
    rows.push(row(
        Method::Prefix,
        match args.prefix_mlp_hidden {
            None => format!("prefix P={}", args.prefix_len),
            Some(h) => format!("prefix P={} MLP {h}", args.prefix_len),
        },
        n_prefix,
        p.total,
        States {
            weights: 2.0 * n + 4.0 * np,
            grads: 4.0 * np,
            optimizer: ADAM_BYTES * np,
        },
        &act_prefix,
        4.0 * n_mm,
        2.0 * n_mm,
    ));
    let n_prompt = prompt_params(&shape, args.prompt_len);
    let npr = n_prompt as f64;
    // The P soft-prompt positions run through the model too: per data token the work grows by
    // (T + P) / T.
    let stretch = (s + args.prompt_len) as f64 / s as f64;
    rows.push(row(
        Method::Prompt,
        format!("prompt P={}", args.prompt_len),
        n_prompt,
        p.total,
        States {
            weights: 2.0 * n + 4.0 * npr,
            grads: 4.0 * npr,
            optimizer: ADAM_BYTES * npr,
        },
        &act_prompt,
        4.0 * n_mm * stretch,
        2.0 * n_mm * stretch,
    ));

    let zero = args.zero.map(|z| {
        let per_gpu = rows
            .iter()
            .map(|r| {
                let states = z.shard(States {
                    weights: r.weights_bytes,
                    grads: r.grads_bytes,
                    optimizer: r.optimizer_bytes,
                });
                ZeroRow {
                    method: r.method,
                    label: r.label.clone(),
                    total_ckpt_bytes: states.total() + r.activations_ckpt_bytes,
                    states,
                    comm_elements: z.comm_elements(r.trainable as f64, p.total as f64),
                }
            })
            .collect();
        (z, per_gpu)
    });
    let assumptions = assumptions(&shape, args, requested, &p);
    Ok(Report {
        shape,
        params: p,
        requested_params: requested,
        batch: b,
        seq: s,
        lora: args.lora.clone(),
        qlora: args.qlora.clone(),
        prefix_len: args.prefix_len,
        prefix_mlp_hidden: args.prefix_mlp_hidden,
        prompt_len: args.prompt_len,
        rows,
        zero,
        assumptions,
    })
}

fn assumptions(
    shape: &Shape,
    args: &EstimateArgs,
    requested: Option<f64>,
    p: &ParamCounts,
) -> Vec<String> {
    let mut a = vec![
        format!("shape: {}", shape.source),
        format!(
            "GB = 10^9 bytes; {}; CUDA context, allocator fragmentation and temporary \
             workspaces are not counted",
            match args.zero {
                None => "one device, no ZeRO/FSDP sharding (the table above)".to_string(),
                Some(z) => format!(
                    "the table above is one device; the ZeRO table partitions the model states \
                     over {} GPUs at stage {} (Rajbhandari et al. 2020: 1 optimizer states, \
                     2 + gradients, 3 + parameters)",
                    z.gpus, z.stage
                ),
            }
        ),
        "full fp32: weights 4 + grads 4 + Adam m,v 8 = 16 B/param".to_string(),
        "full mixed precision: fp16/bf16 weights 2 + grads 2 + fp32 master 4 + Adam m,v 8 \
         = 16 B/param (ZeRO's 2+2+12, Rajbhandari et al. 2020)"
            .to_string(),
        "LoRA: frozen base fp16 2 B/param; adapters fp32 weights 4 + grads 4 + Adam 8 = 16 B/param"
            .to_string(),
        format!(
            "QLoRA: block Linears NF4 with double quantization, 4 + 8/64 + 32/(64*256) = {:.3} \
             bits/param (Dettmers et al. 2023); embeddings, LM head and norms stay 16-bit; \
             adapters bf16 2 + grads 2 + 32-bit Adam 8 = 12 B/param; paged optimizers ignored",
            nf4_bits_per_param()
        ),
        format!(
            "prefix/prompt tuning: frozen fp16 base; trainable tensors 16 B/param; prefix adds \
             P keys and values per layer (s_k = T + {}), the prompt lengthens the input to T + {}",
            args.prefix_len, args.prompt_len
        ),
        "activations (Korthikanti et al. 2022): per layer s*b*h*(34 + 5*a*s/h) bytes in 16-bit \
         (GPT-3 block with dropout, attention matrix materialized: FlashAttention would remove \
         most of the 5*a*s/h term), s*b*h*(66 + 9*a*s/h) in fp32; plus fp32 logits 4*s*b*V"
            .to_string(),
        "gradient checkpointing: keep each layer's input (2*s*b*h bytes in 16-bit) and recompute \
         one layer at a time during backward"
            .to_string(),
        "frozen-base methods keep the same activations as full FT: the gradient still flows \
         back through every layer"
            .to_string(),
        format!(
            "FLOPs/token: full 6N, frozen base 4N + 6N_adapter, checkpointing +2N (+2N_adapter); \
             N = {} matmul weights (block Linears + LM head), attention scores not counted",
            fmt_count(p.matmul as f64)
        ),
    ];
    if shape.family == Family::Llama {
        a.push(
            "LLaMA's SwiGLU MLP, RMSNorm and no dropout differ from the GPT-3 block the \
             activation formula was derived for; the formula is used as an approximation"
                .to_string(),
        );
        if args.seq > shape.max_positions {
            a.push(format!(
                "T = {} exceeds the {} positions {} was trained on (RoPE runs, quality is \
                 another matter)",
                args.seq, shape.max_positions, shape.name
            ));
        }
    }
    if let Some(n) = requested {
        a.push(format!(
            "requested {} parameters; the derived shape has {} ({:+.1}%)",
            fmt_count(n),
            fmt_count(p.total as f64),
            100.0 * (p.total as f64 / n - 1.0)
        ));
    }
    a
}

// ---------------------------------------------------------------------------------------------
// Output

/// 6738415616 → "6.74B", 4194304 → "4.19M".
pub fn fmt_count(n: f64) -> String {
    let (v, suffix) = if n >= 1e12 {
        (n / 1e12, "T")
    } else if n >= 1e9 {
        (n / 1e9, "B")
    } else if n >= 1e6 {
        (n / 1e6, "M")
    } else if n >= 1e3 {
        (n / 1e3, "K")
    } else {
        return format!("{n:.0}");
    };
    format!("{v:.2}{suffix}")
}

fn fmt_pct(p: f64) -> String {
    if p >= 1.0 {
        format!("{p:.2}")
    } else if p >= 0.001 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// The table `tunelab estimate` prints: a header with the shape, one row per method (memory in
/// GB, per-token GFLOPs), and the assumptions as a numbered footer.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "tunelab estimate: {}", r.shape.name);
    let _ = writeln!(s, "shape: {}", r.shape.describe());
    let _ = writeln!(
        s,
        "parameters: {} ({}), batch B={}, sequence T={}",
        fmt_count(r.params.total as f64),
        r.params.total,
        r.batch,
        r.seq
    );
    let _ = writeln!(s);
    let w = r
        .rows
        .iter()
        .map(|x| x.label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let groups = format!(
        "{:<w$} {:>9} {:>8} | {:^26} | {:^17} | {:^17} | {:^19}",
        "", "", "", "model states (GB)", "activations (GB)", "total (GB)", "GFLOP/token"
    );
    let _ = writeln!(s, "{}", groups.trim_end());
    let columns = format!(
        "{:<w$} {:>9} {:>8} | {:>8} {:>8} {:>8} | {:>8} {:>8} | {:>8} {:>8} | {:>9} {:>9}",
        "method",
        "trainable",
        "%",
        "weights",
        "grads",
        "optim",
        "no ckpt",
        "ckpt",
        "no ckpt",
        "ckpt",
        "no ckpt",
        "ckpt"
    );
    let _ = writeln!(s, "{columns}");
    let _ = writeln!(s, "{}", "-".repeat(columns.chars().count()));
    for x in &r.rows {
        let pad = w - x.label.chars().count();
        let _ = writeln!(
            s,
            "{}{} {:>9} {:>8} | {:>8.2} {:>8.2} {:>8.2} | {:>8.2} {:>8.2} | {:>8.2} {:>8.2} | {:>9.1} {:>9.1}",
            x.label,
            " ".repeat(pad),
            fmt_count(x.trainable as f64),
            fmt_pct(x.trainable_pct),
            x.weights_bytes / GB,
            x.grads_bytes / GB,
            x.optimizer_bytes / GB,
            x.activations_bytes / GB,
            x.activations_ckpt_bytes / GB,
            x.total_bytes / GB,
            x.total_ckpt_bytes / GB,
            x.flops_per_token / 1e9,
            x.flops_per_token_ckpt / 1e9,
        );
    }
    let _ = writeln!(
        s,
        "\nckpt = full gradient checkpointing; optim = Adam m, v plus any fp32 master weights"
    );
    if let Some((z, rows)) = &r.zero {
        let _ = writeln!(
            s,
            "\n{} on {} GPU{}: model states per GPU (GB), activations not partitioned",
            z.name(),
            z.gpus,
            if z.gpus == 1 { "" } else { "s" }
        );
        let columns = format!(
            "{:<w$} | {:>8} {:>8} {:>8} {:>8} | {:>10} | {:>12}",
            "method", "weights", "grads", "optim", "states", "total ckpt", "comm/step"
        );
        let _ = writeln!(s, "{columns}");
        let _ = writeln!(s, "{}", "-".repeat(columns.chars().count()));
        for x in rows {
            let pad = w - x.label.chars().count();
            let _ = writeln!(
                s,
                "{}{} | {:>8.2} {:>8.2} {:>8.2} {:>8.2} | {:>10.2} | {:>12}",
                x.label,
                " ".repeat(pad),
                x.states.weights / GB,
                x.states.grads / GB,
                x.states.optimizer / GB,
                x.states.total() / GB,
                x.total_ckpt_bytes / GB,
                fmt_count(x.comm_elements),
            );
        }
        let _ = writeln!(
            s,
            "comm/step = elements each GPU sends and receives per step: 2 x trainable up to stage 2 \
             (the gradients' reduce-scatter and all-gather), stage 3 adds an all-gather of every \
             parameter before the forward and again before the backward (2 x all + trainable)"
        );
    }
    let _ = writeln!(s, "assumptions:");
    for (i, a) in r.assumptions.iter().enumerate() {
        let _ = writeln!(s, "  {:>2}. {a}", i + 1);
    }
    s
}

/// The report as JSON for `tunelab estimate --json`: every field of [`Report`], bytes and FLOPs
/// as plain numbers.
pub fn to_json(r: &Report) -> serde_json::Value {
    serde_json::to_value(r).unwrap_or(serde_json::Value::Null)
}
