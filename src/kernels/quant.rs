//! A frozen weight stored in fewer bits: bf16, or NF4 as bitsandbytes stores it ([`super::nf4`]),
//! dequantised a tile of rows at a time by the matmul that reads it
//! (`crate::autodiff::ops::quant_matmul`), never kept whole in f32.
//!
//! The weight is held in `nn.Linear` orientation, (out, in), row-major, whatever layout the
//! parameter had: bitsandbytes quantises GPT-2's Conv1D weights (in, out) transposed, so the NF4
//! blocks of 64 run along a row of the (out, in) matrix. [`QuantWeight::in_out`] remembers the
//! parameter's own layout, for the few readers that want the weight back as it was stored
//! (DoRA's column norms, merging).
//!
//! bf16 keeps the top 16 bits of each f32, rounded to nearest-even as PyTorch's
//! `tensor.to(torch.bfloat16)` does: the same 8-bit exponent, 7 bits of mantissa.

use super::nf4::{self, DoubleQuant};
use ndarray::{Array2, ArrayView2};

/// How a frozen weight's values are kept.
#[derive(Debug, Clone, PartialEq)]
pub enum Storage {
    /// bf16 bit patterns, one per value.
    Bf16(Vec<u16>),
    /// NF4 codes, two per byte, and one constant per block of `blocksize` values.
    Nf4 {
        packed: Vec<u8>,
        absmax: Absmax,
        blocksize: usize,
    },
}

/// The block constants of an NF4 weight: f32, or 8-bit codes themselves (double quantisation).
#[derive(Debug, Clone, PartialEq)]
pub enum Absmax {
    F32(Vec<f32>),
    Double(DoubleQuant),
}

impl Absmax {
    /// The constants of blocks `b0..b1`, in f32.
    fn range(&self, b0: usize, b1: usize) -> Vec<f32> {
        match self {
            Absmax::F32(a) => a[b0..b1].to_vec(),
            Absmax::Double(dq) => (b0..b1)
                .map(|b| {
                    nf4::DYNAMIC_MAP[dq.codes[b] as usize]
                        * dq.absmax[b / nf4::DOUBLE_QUANT_BLOCKSIZE]
                        + dq.offset
                })
                .collect(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Absmax::F32(a) => 4 * a.len(),
            // The codes, one f32 per 256 of them, and the offset.
            Absmax::Double(dq) => dq.codes.len() + 4 * dq.absmax.len() + 4,
        }
    }
}

/// A weight of `rows × cols` values ((out, in)) in a compact storage.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantWeight {
    pub rows: usize,
    pub cols: usize,
    /// Whether the parameter itself is laid out (in, out) (GPT-2's Conv1D).
    pub in_out: bool,
    pub storage: Storage,
}

/// f32 → bf16 bits, round to nearest, ties to even (NaN stays NaN).
pub fn f32_to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let rounding = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(rounding) >> 16) as u16
}

/// bf16 bits → f32 (exact).
pub fn bf16_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// The largest finite f16, 65504 = (2 − 2^-10)·2^15.
pub const F16_MAX: f32 = 65504.0;
/// The smallest positive normal f16, 2^-14: below it f16 has subnormals, fewer bits of precision.
pub const F16_MIN_POSITIVE: f32 = 6.103_515_6e-5;

/// f32 → IEEE half (f16) bits, round to nearest, ties to even, as PyTorch's
/// `tensor.to(torch.float16)` and the hardware convert: values from 65520 up (the midpoint
/// between 65504 and 2^16) become infinity, values below 2^-14 become subnormals (multiples of
/// 2^-24), and values at most 2^-25 (half the smallest subnormal, a tie that goes to the even 0)
/// become a signed zero. NaN stays NaN (quiet, its top payload bits kept).
///
/// f16 keeps 10 bits of mantissa and 5 of exponent, bf16 7 and 8: f16 is more precise, bf16
/// covers f32's whole range.
pub fn f32_to_f16(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let abs = bits & 0x7fff_ffff;
    if abs > 0x7f80_0000 {
        return sign | 0x7e00 | ((abs >> 13) & 0x3ff) as u16;
    }
    let exp = abs >> 23; // f32's biased exponent, 0..=255
    if exp >= 113 {
        // A normal f16 (or an overflow): rebias the exponent by 127 − 15 = 112, keep the top
        // 10 mantissa bits and round on the 13 dropped. A carry out of the mantissa moves to the
        // next exponent, and past the largest one to 0x7c00, infinity.
        let half = (abs >> 13) - (112 << 10);
        let rest = abs & 0x1fff;
        let up = rest > 0x1000 || (rest == 0x1000 && half & 1 == 1);
        let h = half + u32::from(up);
        return sign | h.min(0x7c00) as u16;
    }
    if exp < 102 {
        // Below 2^-25: rounds to zero.
        return sign;
    }
    // A subnormal f16: the value in units of 2^-24 is the 24-bit significand shifted right by
    // 126 − exp (14 to 24 places), rounded on the bits shifted out. Rounding up from 0x3ff
    // gives 0x400, the smallest normal, which is the right encoding.
    let m = (abs & 0x7f_ffff) | 0x80_0000;
    let shift = 126 - exp;
    let half = m >> shift;
    let rest = m & ((1 << shift) - 1);
    let midpoint = 1 << (shift - 1);
    let up = rest > midpoint || (rest == midpoint && half & 1 == 1);
    sign | (half + u32::from(up)) as u16
}

/// IEEE half (f16) bits → f32 (exact: every f16 is an f32).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let frac = (h & 0x3ff) as u32;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: renormalise.
            let shift = f.leading_zeros() - 21;
            sign | ((113 - shift) << 23) | ((f << shift) & 0x3ff) << 13
        }
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// `x` rounded to the nearest f16 and back.
pub fn round_f16(x: f32) -> f32 {
    f16_to_f32(f32_to_f16(x))
}

/// `x` rounded to the nearest bf16 and back.
pub fn round_bf16(x: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(x))
}

impl QuantWeight {
    /// `w` (out, in) in bf16.
    pub fn bf16(w: ArrayView2<f32>, in_out: bool) -> Self {
        let (rows, cols) = w.dim();
        let bits = w.iter().map(|&x| f32_to_bf16(x)).collect();
        Self {
            rows,
            cols,
            in_out,
            storage: Storage::Bf16(bits),
        }
    }

    /// `w` (out, in) in NF4 blocks of `blocksize` along its rows, with the block constants
    /// double-quantised when `double_quant` (bitsandbytes' `compress_statistics`).
    pub fn nf4(w: ArrayView2<f32>, in_out: bool, blocksize: usize, double_quant: bool) -> Self {
        let (rows, cols) = w.dim();
        let flat: Vec<f32> = w.iter().copied().collect();
        let (packed, absmax) = nf4::quantize_nf4(&flat, blocksize);
        let absmax = if double_quant {
            Absmax::Double(nf4::double_quantize(&absmax))
        } else {
            Absmax::F32(absmax)
        };
        Self {
            rows,
            cols,
            in_out,
            storage: Storage::Nf4 {
                packed,
                absmax,
                blocksize,
            },
        }
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.rows * self.cols
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held: the codes and the constants.
    pub fn bytes(&self) -> usize {
        match &self.storage {
            Storage::Bf16(b) => 2 * b.len(),
            Storage::Nf4 { packed, absmax, .. } => packed.len() + absmax.bytes(),
        }
    }

    /// A short name of the storage: `bf16`, `nf4`, `nf4+dq`.
    pub fn kind(&self) -> &'static str {
        match &self.storage {
            Storage::Bf16(_) => "bf16",
            Storage::Nf4 {
                absmax: Absmax::F32(_),
                ..
            } => "nf4",
            Storage::Nf4 {
                absmax: Absmax::Double(_),
                ..
            } => "nf4+dq",
        }
    }

    // ANCHOR: dequantize_rows
    /// Rows `r0..r1` of the (out, in) weight, dequantised into `out` (row-major,
    /// (r1 − r0) × cols): x̂ = NF4_CODE[q] · absmax of its block, or the bf16 value widened.
    pub fn dequantize_rows(&self, r0: usize, r1: usize, out: &mut [f32]) {
        let (i0, i1) = (r0 * self.cols, r1 * self.cols);
        assert_eq!(out.len(), i1 - i0, "dequantize_rows: output length");
        match &self.storage {
            Storage::Bf16(bits) => {
                for (o, &b) in out.iter_mut().zip(&bits[i0..i1]) {
                    *o = bf16_to_f32(b);
                }
            }
            Storage::Nf4 {
                packed,
                absmax,
                blocksize,
            } => {
                let (b0, b1) = (i0 / blocksize, (i1 - 1) / blocksize + 1);
                let constants = absmax.range(b0, b1);
                for (o, i) in out.iter_mut().zip(i0..i1) {
                    let q = nf4::nf4_index(packed, i) as usize;
                    *o = nf4::NF4_CODE[q] * constants[i / blocksize - b0];
                }
            }
        }
    }
    // ANCHOR_END: dequantize_rows

    /// The whole weight back in f32, (out, in). For tests, error reports and merging: the
    /// forward and backward never call it.
    pub fn dequantize(&self) -> Array2<f32> {
        let mut out = vec![0.0; self.len()];
        if self.rows > 0 {
            self.dequantize_rows(0, self.rows, &mut out);
        }
        Array2::from_shape_vec((self.rows, self.cols), out).expect("rows × cols values")
    }

    /// The weight back in f32 in the parameter's own layout ((in, out) for a Conv1D weight).
    pub fn dequantize_as_stored(&self) -> Array2<f32> {
        let w = self.dequantize();
        if self.in_out {
            w.reversed_axes().as_standard_layout().into_owned()
        } else {
            w
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even mantissa (1.0).
        assert_eq!(bf16_to_f32(f32_to_bf16(1.0 + 2f32.powi(-8))), 1.0);
        // 1 + 3·2^-8 is halfway too: rounds up to the even 1 + 2^-6.
        assert_eq!(
            bf16_to_f32(f32_to_bf16(1.0 + 3.0 * 2f32.powi(-8))),
            1.0 + 2f32.powi(-6)
        );
        assert_eq!(bf16_to_f32(f32_to_bf16(-2.5)), -2.5);
        assert!(bf16_to_f32(f32_to_bf16(f32::NAN)).is_nan());
        assert_eq!(bf16_to_f32(f32_to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    #[test]
    fn rows_dequantise_as_the_whole_and_blocks_may_straddle_rows() {
        let w = Array2::from_shape_fn((7, 48), |(i, j)| ((i * 48 + j) as f32 * 0.37).sin());
        for q in [
            QuantWeight::nf4(w.view(), false, 64, false),
            QuantWeight::nf4(w.view(), false, 64, true),
            QuantWeight::bf16(w.view(), false),
        ] {
            let whole = q.dequantize();
            for (r0, r1) in [(0, 1), (1, 4), (3, 7), (6, 7)] {
                let mut part = vec![0.0; (r1 - r0) * 48];
                q.dequantize_rows(r0, r1, &mut part);
                let expect: Vec<f32> = whole
                    .slice(ndarray::s![r0..r1, ..])
                    .iter()
                    .copied()
                    .collect();
                assert_eq!(part, expect, "{} rows {r0}..{r1}", q.kind());
            }
            let flat: Vec<f32> = w.iter().copied().collect();
            let (packed, absmax) = nf4::quantize_nf4(&flat, 64);
            if q.kind() == "nf4" {
                let direct = nf4::dequantize_nf4(&packed, &absmax, 64, flat.len());
                assert_eq!(whole.iter().copied().collect::<Vec<_>>(), direct);
            }
        }
    }

    #[test]
    fn bytes_count_codes_and_constants() {
        let w = Array2::<f32>::ones((64, 256));
        let n = 64 * 256;
        assert_eq!(QuantWeight::bf16(w.view(), false).bytes(), 2 * n);
        // 256 blocks: n/2 bytes of codes + 256 f32 constants.
        assert_eq!(
            QuantWeight::nf4(w.view(), false, 64, false).bytes(),
            n / 2 + 4 * 256
        );
        // Double quantisation: 256 one-byte codes, one f32 absmax and the offset.
        assert_eq!(
            QuantWeight::nf4(w.view(), false, 64, true).bytes(),
            n / 2 + 256 + 4 + 4
        );
    }
}
