//! # NF4: QLoRA's 4-bit NormalFloat, quantise and dequantise
//!
//! QLoRA (Dettmers et al., 2023) keeps the frozen base in 4 bits per weight and trains LoRA on
//! top. The 4-bit code is NormalFloat-4: 16 levels, [`NF4_CODE`], placed at quantiles of a
//! standard normal distribution and scaled to [−1, 1], with an exact 0. Trained weights are
//! roughly normal, so levels that are equally likely to be used waste fewer codes than evenly
//! spaced ones, which crowd the rare tails and starve the dense middle.
//!
//! bitsandbytes' `quantize_4bit(quant_type="nf4")`, which this exercise reproduces bit for bit:
//!
//! - cut the values into blocks of `blocksize` consecutive values (64 in QLoRA; the last block
//!   may be shorter). Each block keeps its absolute maximum, `absmax`, as an f32;
//! - scale each value into [−1, 1]: y = x / absmax (bitsandbytes multiplies by 1 / absmax; for
//!   these inputs both give the same codes). A block of zeros keeps absmax 0 and every y is 0;
//! - the value's code is the index of the nearest level to y. "Nearest" is bitsandbytes' exact
//!   rule: the number of midpoints between consecutive levels, (NF4_CODE[i] + NF4_CODE[i+1]) / 2
//!   computed in f32, that lie strictly below y. So a value exactly at a midpoint takes the
//!   lower level;
//! - two 4-bit codes share a byte, the first value's in the high nibble: byte k holds values 2k
//!   and 2k + 1. An odd count pads the last low nibble with 7, the index of the level 0.
//!
//! Dequantising is one multiply: x̂ = NF4_CODE[code] · absmax of the value's block.
//!
//! Storage: 4 bits per value plus 32 per block of 64, 4.5 bits per value (QLoRA's double
//! quantisation then stores the absmax constants in 8 bits too: about 4.127).
//!
//! Graded against tunelab's `kernels::nf4` (which is checked against bitsandbytes itself) on
//! random weights, odd counts, blocks of zeros, blocksizes 64 and 128, and values exactly at the
//! midpoints.

/// The 16 NF4 levels, as bitsandbytes' `get_4bit_type("nf4")` holds them (f32).
pub const NF4_CODE: [f32; 16] = [
    -1.0,
    -0.696_192_8,
    -0.525_073_05,
    -0.394_917_5,
    -0.284_441_38,
    -0.184_773_43,
    -0.091_050_036,
    0.0,
    0.079_580_3,
    0.160_930_2,
    0.246_112_3,
    0.337_915_24,
    0.440_709_83,
    0.562_617,
    0.722_956_84,
    1.0,
];

/// NF4-quantises `values` in blocks of `blocksize`: the packed codes (two per byte, the first in
/// the high nibble; ⌈n / 2⌉ bytes) and each block's absmax (⌈n / blocksize⌉ of them).
///
///     values [1.0, −0.5, 0.1, 0.0, 2.0], blocksize 4
///         absmax [1.0, 2.0]
///         y      [1.0, −0.5, 0.1, 0.0 | 1.0]
///         codes  [15, 2, 8, 7 | 15] (−0.5 is nearer −0.525 than −0.395; 0.1 nearer 0.0796)
///         packed [0xF2, 0x87, 0xF7] (the odd count pads with 7)
pub fn quantize_nf4(values: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    // TODO: the 15 midpoints of NF4_CODE; for each block its absmax and, for each value, the
    // count of midpoints strictly below x / absmax (0 when absmax is 0); then pack the codes two
    // to a byte, high nibble first, padding an odd count with 7.
    todo!()
}

/// The first `n` values back from `packed` and their blocks' `absmax`:
/// x̂_i = NF4_CODE[code_i] · absmax[i / blocksize].
///
///     dequantize_nf4([0xF2, 0x87, 0xF7], [1.0, 2.0], 4, 5)
///         → [1.0, −0.52507305, 0.0795803, 0.0, 2.0]
pub fn dequantize_nf4(packed: &[u8], absmax: &[f32], blocksize: usize, n: usize) -> Vec<f32> {
    // TODO: code i is the high nibble of byte i / 2 when i is even, the low nibble when odd.
    todo!()
}
