//! NF4: QLoRA's 4-bit NormalFloat, stored exactly as bitsandbytes stores it, with its double
//! quantisation of the block constants.
//!
//! # The 4-bit code
//!
//! A frozen weight is cut into blocks of `blocksize` consecutive values (64 by default; the
//! weight in `nn.Linear` layout (out, in), row-major, so GPT-2's Conv1D weights are transposed
//! first). Each block keeps its absolute maximum `absmax` in f32 and, per value, the index of the
//! nearest of 16 levels [`NF4_CODE`] to `x / absmax`:
//!
//! ```text
//! q = nearest level index of clamp(x · (1 / absmax), −1, 1)      x̂ = NF4_CODE[q] · absmax
//! ```
//!
//! The levels are quantiles of a standard normal distribution, scaled to [−1, 1] (Dettmers et al.,
//! 2023), with an exact zero: weights are roughly normal, so equal-probability levels waste fewer
//! codes than uniform ones. Two indices share a byte, the first in the high nibble; an odd count
//! is padded with the index of 0. "Nearest" is bitsandbytes': the number of midpoints between
//! consecutive levels that lie strictly below the value (`torch.bucketize`), so a value exactly at
//! a midpoint takes the lower level. A block of zeros keeps absmax 0 and index 7 (the level 0).
//! 4 bits per value plus 32 per block: 4.5 bits per value at blocksize 64.
//!
//! # Double quantisation
//!
//! QLoRA's second step (bitsandbytes' `compress_statistics`) quantises the f32 absmax constants
//! themselves: subtract their mean (the `offset`), then quantise them to 8 bits in blocks of 256
//! with bitsandbytes' signed dynamic map [`DYNAMIC_MAP`], each block with its own f32 absmax. Per
//! value that is 8/64 + 32/(64·256) bits for the constants instead of 32/64: 4.127 bits in all.
//! The 8-bit codes follow bitsandbytes' CPU kernel (`quantize_cpu` in `csrc/cpu_ops.cpp`), which
//! rounds through a 65,536-entry table of the range [−1, 1] rather than searching the code book
//! per value; [`quantize_blockwise`] does the same, so the codes are bitsandbytes' to the last one.
//!
//! `tests/suite/nf4.rs` checks every code, constant and dequantised value against
//! `tests/fixtures/nf4_golden.json`, written by `tools/nf4_golden.py` with bitsandbytes itself.

/// The 16 NF4 levels, as bitsandbytes' `get_4bit_type("nf4")` holds them (f32 bit patterns).
pub const NF4_CODE: [f32; 16] = {
    const BITS: [u32; 16] = [
        0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f, 0xbdba7871,
        0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a, 0x3ee1a4b8, 0x3f1007ab,
        0x3f3913b3, 0x3f800000,
    ];
    let mut out = [0.0f32; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = f32::from_bits(BITS[i]);
        i += 1;
    }
    out
};

/// bitsandbytes' signed dynamic 8-bit map (`create_dynamic_map(signed=True)`, sorted; f32 bit
/// patterns): for each decimal exponent −6 … 0, evenly spaced fractions in (0.1, 1), both signs,
/// plus 0 and 1. Dense near zero, sparse near one, as the constants' deviations from their mean
/// are.
pub const DYNAMIC_MAP: [f32; 256] = {
    const BITS: [u32; 256] = [
        0xbf7e3333, 0xbf7a999a, 0xbf770000, 0xbf736666, 0xbf6fcccd, 0xbf6c3333, 0xbf68999a,
        0xbf650000, 0xbf616666, 0xbf5dcccd, 0xbf5a3333, 0xbf56999a, 0xbf530000, 0xbf4f6666,
        0xbf4bcccd, 0xbf483333, 0xbf44999a, 0xbf410000, 0xbf3d6666, 0xbf39cccd, 0xbf363334,
        0xbf32999a, 0xbf2f0000, 0xbf2b6666, 0xbf27cccd, 0xbf243334, 0xbf20999a, 0xbf1d0000,
        0xbf196666, 0xbf15cccd, 0xbf123334, 0xbf0e999a, 0xbf0b0000, 0xbf076666, 0xbf03cccc,
        0xbf003333, 0xbef93332, 0xbef20000, 0xbeeacccc, 0xbee3999a, 0xbedc6666, 0xbed53333,
        0xbece0000, 0xbec6cccc, 0xbebf999a, 0xbeb86666, 0xbeb13333, 0xbeaa0000, 0xbea2cccc,
        0xbe9b999a, 0xbe946666, 0xbe8d3334, 0xbe860000, 0xbe7d9999, 0xbe6f3333, 0xbe60cccd,
        0xbe526666, 0xbe440000, 0xbe35999a, 0xbe273333, 0xbe18cccd, 0xbe0a6666, 0xbdf80000,
        0xbddb3334, 0xbdc9eb85, 0xbdc428f7, 0xbdbe6667, 0xbdb8a3d7, 0xbdb2e148, 0xbdad1eb8,
        0xbda75c2a, 0xbda1999a, 0xbd9bd70a, 0xbd96147b, 0xbd9051eb, 0xbd8a8f5d, 0xbd84cccd,
        0xbd7e147b, 0xbd728f5d, 0xbd670a3d, 0xbd5b851f, 0xbd500000, 0xbd447ae1, 0xbd38f5c3,
        0xbd2d70a3, 0xbd21eb85, 0xbd166667, 0xbd0ae148, 0xbcfeb852, 0xbce7ae15, 0xbcd0a3d7,
        0xbcb9999a, 0xbca28f5d, 0xbc8b851f, 0xbc68f5c3, 0xbc3ae148, 0xbc1f3b64, 0xbc160418,
        0xbc0ccccd, 0xbc039581, 0xbbf4bc6a, 0xbbe24dd3, 0xbbcfdf3b, 0xbbbd70a4, 0xbbab020d,
        0xbb989374, 0xbb8624dd, 0xbb676c8a, 0xbb428f5c, 0xbb1db22d, 0xbaf1a9fc, 0xbaa7ef9d,
        0xba7765ff, 0xba59e83e, 0xba3c6a80, 0xba1eecc1, 0xba016f01, 0xb9c7e283, 0xb98ce705,
        0xb923d70b, 0xb8ba1f4b, 0xb88aefb3, 0xb8378034, 0xb7b24206, 0xb70205ff, 0xb65a1a94,
        0xb513a3b7, 0x00000000, 0x3513a3b7, 0x365a1a94, 0x370205ff, 0x37b24206, 0x38378034,
        0x388aefb3, 0x38ba1f4b, 0x3923d70b, 0x398ce705, 0x39c7e283, 0x3a016f01, 0x3a1eecc1,
        0x3a3c6a80, 0x3a59e83e, 0x3a7765ff, 0x3aa7ef9d, 0x3af1a9fc, 0x3b1db22d, 0x3b428f5c,
        0x3b676c8a, 0x3b8624dd, 0x3b989374, 0x3bab020d, 0x3bbd70a4, 0x3bcfdf3b, 0x3be24dd3,
        0x3bf4bc6a, 0x3c039581, 0x3c0ccccd, 0x3c160418, 0x3c1f3b64, 0x3c3ae148, 0x3c68f5c3,
        0x3c8b851f, 0x3ca28f5d, 0x3cb9999a, 0x3cd0a3d7, 0x3ce7ae15, 0x3cfeb852, 0x3d0ae148,
        0x3d166667, 0x3d21eb85, 0x3d2d70a3, 0x3d38f5c3, 0x3d447ae1, 0x3d500000, 0x3d5b851f,
        0x3d670a3d, 0x3d728f5d, 0x3d7e147b, 0x3d84cccd, 0x3d8a8f5d, 0x3d9051eb, 0x3d96147b,
        0x3d9bd70a, 0x3da1999a, 0x3da75c2a, 0x3dad1eb8, 0x3db2e148, 0x3db8a3d7, 0x3dbe6667,
        0x3dc428f7, 0x3dc9eb85, 0x3ddb3334, 0x3df80000, 0x3e0a6666, 0x3e18cccd, 0x3e273333,
        0x3e35999a, 0x3e440000, 0x3e526666, 0x3e60cccd, 0x3e6f3333, 0x3e7d9999, 0x3e860000,
        0x3e8d3334, 0x3e946666, 0x3e9b999a, 0x3ea2cccc, 0x3eaa0000, 0x3eb13333, 0x3eb86666,
        0x3ebf999a, 0x3ec6cccc, 0x3ece0000, 0x3ed53333, 0x3edc6666, 0x3ee3999a, 0x3eeacccc,
        0x3ef20000, 0x3ef93332, 0x3f003333, 0x3f03cccc, 0x3f076666, 0x3f0b0000, 0x3f0e999a,
        0x3f123334, 0x3f15cccd, 0x3f196666, 0x3f1d0000, 0x3f20999a, 0x3f243334, 0x3f27cccd,
        0x3f2b6666, 0x3f2f0000, 0x3f32999a, 0x3f363334, 0x3f39cccd, 0x3f3d6666, 0x3f410000,
        0x3f44999a, 0x3f483333, 0x3f4bcccd, 0x3f4f6666, 0x3f530000, 0x3f56999a, 0x3f5a3333,
        0x3f5dcccd, 0x3f616666, 0x3f650000, 0x3f68999a, 0x3f6c3333, 0x3f6fcccd, 0x3f736666,
        0x3f770000, 0x3f7a999a, 0x3f7e3333, 0x3f800000,
    ];
    let mut out = [0.0f32; 256];
    let mut i = 0;
    while i < 256 {
        out[i] = f32::from_bits(BITS[i]);
        i += 1;
    }
    out
};

/// The 4-bit block sizes bitsandbytes accepts.
pub const BLOCKSIZES: [usize; 8] = [32, 64, 128, 256, 512, 1024, 2048, 4096];

/// The index of 0 in [`NF4_CODE`], also the padding nibble of an odd count.
const ZERO_INDEX: u8 = 7;

/// Each block's absolute maximum and its values scaled into [−1, 1], as bitsandbytes' reference
/// scales them: full blocks multiply by the reciprocal, the shorter last block divides.
fn scaled_blocks(values: &[f32], blocksize: usize) -> (Vec<f32>, Vec<f32>) {
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    let mut scaled = Vec::with_capacity(values.len());
    for block in values.chunks(blocksize) {
        let a = block.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        absmax.push(a);
        let a = a.max(1e-38);
        if block.len() == blocksize {
            let inv = 1.0 / a;
            scaled.extend(block.iter().map(|&x| (x * inv).clamp(-1.0, 1.0)));
        } else {
            scaled.extend(block.iter().map(|&x| (x / a).clamp(-1.0, 1.0)));
        }
    }
    (absmax, scaled)
}

/// The index of the level nearest `x` in the sorted `code`: how many midpoints lie strictly
/// below it.
fn nearest(x: f32, midpoints: &[f32]) -> u8 {
    midpoints.partition_point(|&m| m < x) as u8
}

/// Midpoints between consecutive levels of a sorted code book, in f32 as bitsandbytes computes
/// them.
fn midpoints(code: &[f32]) -> Vec<f32> {
    code.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect()
}

/// NF4-quantises `values` in blocks of `blocksize`: the packed indices (two per byte, the first
/// in the high nibble) and each block's absmax. bitsandbytes' `quantize_4bit(quant_type="nf4")`.
pub fn quantize_nf4(values: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    assert!(blocksize > 0, "blocksize must be positive");
    let (absmax, scaled) = scaled_blocks(values, blocksize);
    let mids = midpoints(&NF4_CODE);
    let index = |i: usize| scaled.get(i).map_or(ZERO_INDEX, |&x| nearest(x, &mids));
    let packed = (0..values.len().div_ceil(2))
        .map(|b| (index(2 * b) << 4) | index(2 * b + 1))
        .collect();
    (packed, absmax)
}

/// The 4-bit index of value `i` in `packed`.
#[inline]
pub fn nf4_index(packed: &[u8], i: usize) -> u8 {
    let byte = packed[i / 2];
    if i.is_multiple_of(2) {
        byte >> 4
    } else {
        byte & 0xF
    }
}

/// Dequantises the first `n` values of `packed` with their blocks' `absmax`:
/// x̂ = NF4_CODE[q] · absmax. bitsandbytes' `dequantize_4bit`.
pub fn dequantize_nf4(packed: &[u8], absmax: &[f32], blocksize: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| NF4_CODE[nf4_index(packed, i) as usize] * absmax[i / blocksize])
        .collect()
}

/// The second level of double quantisation: the absmax constants as 8-bit codes.
#[derive(Debug, Clone, PartialEq)]
pub struct DoubleQuant {
    /// The mean of the constants, subtracted before quantising them.
    pub offset: f32,
    /// One 8-bit code per constant, an index into [`DYNAMIC_MAP`].
    pub codes: Vec<u8>,
    /// The absmax of each block of [`DOUBLE_QUANT_BLOCKSIZE`] constants.
    pub absmax: Vec<f32>,
}

/// The block size of the constants' own quantisation (bitsandbytes' fixed 256).
pub const DOUBLE_QUANT_BLOCKSIZE: usize = 256;

/// Quantises the absmax constants of a 4-bit tensor, as bitsandbytes' `compress_statistics`:
/// subtract their mean, then [`quantize_blockwise`] with [`DYNAMIC_MAP`] in blocks of 256.
pub fn double_quantize(absmax: &[f32]) -> DoubleQuant {
    let offset = mean_f32(absmax);
    let centred: Vec<f32> = absmax.iter().map(|&a| a - offset).collect();
    let (codes, absmax2) = quantize_blockwise(&centred, &DYNAMIC_MAP, DOUBLE_QUANT_BLOCKSIZE);
    DoubleQuant {
        offset,
        codes,
        absmax: absmax2,
    }
}

/// The absmax constants back from their 8-bit codes: code[c] · absmax₂ + offset.
pub fn double_dequantize(dq: &DoubleQuant) -> Vec<f32> {
    dequantize_blockwise(&dq.codes, &dq.absmax, &DYNAMIC_MAP, DOUBLE_QUANT_BLOCKSIZE)
        .into_iter()
        .map(|a| a + dq.offset)
        .collect()
}

/// The mean of f32 values as torch's `absmax.mean()` comes out: torch sums f32 in a vectorised
/// cascade, accurate enough that its result is the exact mean rounded to f32 (checked against
/// torch on gpt-tiny's constants, 256 to 1,024 of them, by `tools/qlora_golden.py`'s fixture);
/// an f64 sum rounded once gives that, where an f32 sum in order can be an ulp or two off.
fn mean_f32(xs: &[f32]) -> f32 {
    if xs.is_empty() {
        return 0.0;
    }
    (xs.iter().map(|&x| x as f64).sum::<f64>() / xs.len() as f64) as f32
}

/// Entries of bitsandbytes' rounding table over [−1, 1].
const LUT_SIZE: usize = 65536;

/// bitsandbytes' CPU rounding table: for each of 65,536 evenly spaced points of [−1, 1], the
/// index of the first level whose upper midpoint is not below it.
fn rounding_table(code: &[f32; 256]) -> Vec<u8> {
    let mids = midpoints(code);
    let mut idx = 0usize;
    (0..LUT_SIZE)
        .map(|i| {
            let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_SIZE - 1) as f32;
            while idx < mids.len() && mids[idx] < val {
                idx += 1;
            }
            idx as u8
        })
        .collect()
}

/// A value of [−1, 1] to its entry of the rounding table (bitsandbytes' `norm_to_lut_index`;
/// its x86 build contracts the last multiply and add into one FMA).
fn table_index(x: f32) -> usize {
    let x = x.clamp(-1.0, 1.0);
    ((x + 1.0) * 0.5).mul_add((LUT_SIZE - 1) as f32, 0.5) as usize
}

/// 8-bit blockwise quantisation with a 256-level `code`, as bitsandbytes' CPU kernel: per block
/// its absmax, then each value times 1/absmax rounded through the table. A block of zeros gets
/// code 0 and absmax 0.
pub fn quantize_blockwise(
    values: &[f32],
    code: &[f32; 256],
    blocksize: usize,
) -> (Vec<u8>, Vec<f32>) {
    let table = rounding_table(code);
    let mut codes = Vec::with_capacity(values.len());
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize));
    for block in values.chunks(blocksize) {
        let a = block.iter().fold(0.0f32, |m, &x| m.max(x.abs()));
        absmax.push(a);
        if a == 0.0 {
            codes.extend(std::iter::repeat_n(0, block.len()));
            continue;
        }
        let inv = 1.0 / a;
        codes.extend(block.iter().map(|&x| table[table_index(x * inv)]));
    }
    (codes, absmax)
}

/// The values back from 8-bit codes: code[c] · absmax of the block.
pub fn dequantize_blockwise(
    codes: &[u8],
    absmax: &[f32],
    code: &[f32; 256],
    blocksize: usize,
) -> Vec<f32> {
    codes
        .iter()
        .enumerate()
        .map(|(i, &c)| code[c as usize] * absmax[i / blocksize])
        .collect()
}

/// Bits per value of an NF4 tensor of `n` values: 4 for the codes, plus the constants (32 bits
/// per block, or 8 per block plus 32 per 256 blocks and the offset with double quantisation).
pub fn bits_per_value(n: usize, blocksize: usize, double: bool) -> f64 {
    let blocks = n.div_ceil(blocksize);
    let constants = if double {
        8 * blocks + 32 * blocks.div_ceil(DOUBLE_QUANT_BLOCKSIZE) + 32
    } else {
        32 * blocks
    };
    (4 * n.div_ceil(2) * 2 + constants) as f64 / n as f64
}
