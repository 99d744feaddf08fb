//! The small types the exercises share: they live here, not in tunelab, because the exercise
//! crate cannot see tunelab (the graders convert between these and tunelab's own types).

/// The label value that means "no loss here" (PyTorch's `ignore_index`, Hugging Face's −100).
pub const IGNORE_INDEX: i64 = -100;

/// Which side of a row the pads go (Hugging Face's `padding_side`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadSide {
    /// Tokens first, pads after: training.
    Right,
    /// Pads first, tokens after: batched generation with a decoder.
    Left,
}

/// AdamW's hyper-parameters besides the learning rate, with `torch.optim.AdamW`'s defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    /// Decay rate of the first moment (default 0.9).
    pub beta1: f64,
    /// Decay rate of the second moment (default 0.999).
    pub beta2: f64,
    /// Added to √v̂ so the division is safe (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay coefficient (default 0.01).
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// One parameter of a model as the freezing exercises see it: its Hugging Face name
/// (`h.0.attn.c_attn.weight`, …) and whether the optimizer trains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: String,
    pub trainable: bool,
}
