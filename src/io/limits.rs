//! The largest sizes tunelab accepts from a file or an option, checked before anything is
//! allocated. Each limit is far beyond any model tunelab can train on a CPU (and beyond the
//! largest published transformers), so it only ever stops a wrong or hostile number, with a
//! message naming the file and field (or the flag) instead of an allocation failure.
//!
//! | what | limit | largest in use (for scale) |
//! |---|---|---|
//! | vocabulary (`vocab_size`) | 2^24 = 16,777,216 | 256,000 |
//! | width C (`n_embd`, `hidden_size`) | 2^16 = 65,536 | 18,432 |
//! | MLP width (`n_inner`, `intermediate_size`) | 2^18 = 262,144 | 73,728 |
//! | blocks L (`n_layer`, `num_hidden_layers`) | 1,024 | 126 |
//! | positions (`n_positions`, `max_position_embeddings`) | 2^20 = 1,048,576 | 131,072 |
//! | token types (`type_vocab_size`) | 1,024 | 2 |
//! | a model's parameters | 10^10 (40 GB in f32) | |
//! | a method's added parameters | the base's parameter count (a full fine-tune's size), or 2^24 for bases smaller than that | |
//!
//! A model directory is also checked against its own weights: config.json may not imply more
//! parameters than model.safetensors can hold ([`crate::io::hf`]), and a safetensors header's
//! shapes (multiplied with overflow checks) must match its byte ranges ([`super::safetensors`]).

pub const MAX_VOCAB: usize = 1 << 24;
pub const MAX_WIDTH: usize = 1 << 16;
pub const MAX_MLP_WIDTH: usize = 1 << 18;
pub const MAX_LAYERS: usize = 1024;
pub const MAX_POSITIONS: usize = 1 << 20;
pub const MAX_TYPE_VOCAB: usize = 1024;
/// A model's parameters, all tensors together.
pub const MAX_PARAMS: u64 = 10_000_000_000;
/// A method's added parameters on a base smaller than this (else the base's own count).
pub const MIN_METHOD_PARAMS_CAP: u64 = 1 << 24;
/// The largest LoRA scaling α/r (or α/√r) in magnitude: an update this many times B·A already
/// swamps the base weights.
pub const MAX_LORA_SCALING: f64 = 1e4;
/// The largest LoRA+ learning-rate ratio of B to A (the paper uses 16).
pub const MAX_LR_RATIO: f64 = 1e6;

/// The cap on a method's added parameters for a base of `base_params` parameters.
pub fn method_params_cap(base_params: u64) -> u64 {
    base_params.max(MIN_METHOD_PARAMS_CAP)
}

/// `a * b` and `a + b` that give `None` instead of wrapping.
pub fn mul(a: u64, b: u64) -> Option<u64> {
    a.checked_mul(b)
}

/// Σ terms, `None` on overflow.
pub fn sum(terms: &[Option<u64>]) -> Option<u64> {
    terms
        .iter()
        .try_fold(0u64, |acc, t| t.and_then(|t| acc.checked_add(t)))
}

/// A number for messages: 951296 → "951,296".
pub fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_numbers_read_in_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(951_296), "951,296");
        assert_eq!(grouped(10_000_000_000), "10,000,000,000");
    }

    #[test]
    fn sums_and_products_report_overflow() {
        assert_eq!(sum(&[Some(1), Some(2)]), Some(3));
        assert_eq!(sum(&[Some(u64::MAX), Some(1)]), None);
        assert_eq!(sum(&[mul(1 << 62, 4)]), None);
    }
}
