//! An `exp` and the row reductions (sum, dot, max) that the compiler can vectorise.
//!
//! libm's `expf` is a function call per element, so a loop that calls it (GELU, softmax,
//! cross-entropy) runs one element at a time. [`exp_f32`] is Cephes' `expf` written without
//! calls or branches, so a loop over a slice compiles to SIMD code:
//!
//! 1. x = n ln 2 + r with n = round(x / ln 2) and |r| ≤ ln 2 / 2 (ln 2 split in two constants,
//!    the first with few bits so that n · ln2_hi is exact);
//! 2. e^r by Cephes' degree-5 polynomial: 1 + r + r² p(r);
//! 3. e^x = e^r · 2^n, with 2^n built from its exponent bits in two halves so that n from −150
//!    to 128 (subnormal results and overflow to +∞) needs no special case.
//!
//! Rounding to the nearest integer uses the "magic number" trick (adding 1.5 · 2²³ rounds to an
//! integer, whose low bits are then n), since `round` is a call without SSE4.1. NaN stays NaN,
//! +∞ gives +∞ and −∞ (a masked attention score) gives exactly 0. Accuracy against the exact
//! value, checked for every f32 in −104.5..89 and tested on a sweep in `tests/suite/kernels.rs`: at
//! most 1 ulp where the result is a normal float (x ≥ −87.33), and an absolute error below 2⁻¹⁴⁹
//! (the smallest subnormal) where it is subnormal.

/// What the lane-wise reductions need of a float (tensor's `Float` has it; this module cannot
/// name that trait, which itself uses this module's `exp_f32`).
pub trait Lane: num_traits::Float + std::ops::AddAssign {}

impl<T: num_traits::Float + std::ops::AddAssign> Lane for T {}

/// e^x in f32 (see the module docs for the method and its accuracy).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 = LN2_HI + LN2_LO; LN2_HI has 9 significant bits, so n · LN2_HI is exact.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 · 2^23: adding it rounds to an integer held in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    // Beyond these e^x is +∞ or rounds to 0 anyway; clamping keeps n in −150..=128.
    let x = x.clamp(-104.0, 88.8);
    let t = x * LOG2E + MAGIC;
    let n = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let nf = t - MAGIC;
    let r = x - nf * LN2_HI - nf * LN2_LO;
    let p = ((((1.987_569_2e-4 * r + 1.398_2e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5; // Cephes writes 5.0000001201e-1, which is 0.5 in f32
    let er = p * (r * r) + r + 1.0;
    // 2^n = 2^n1 · 2^n2 with both halves normal floats.
    let n1 = n >> 1;
    let n2 = n - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    er * s1 * s2
}

/// Lanes of the reductions below: eight partial results, each a strided subsequence of the
/// input, combined in a fixed tree at the end. A plain left-to-right sum cannot be vectorised
/// (reordering float additions changes the result, so the compiler may not); eight lanes give
/// it independent additions. The order depends only on the slice, never on threads.
const LANES: usize = 8;

#[inline(always)]
fn combine<F: Lane>(a: [F; LANES], op: impl Fn(F, F) -> F) -> F {
    op(
        op(op(a[0], a[4]), op(a[1], a[5])),
        op(op(a[2], a[6]), op(a[3], a[7])),
    )
}

/// Σ x, in eight lanes.
#[inline]
pub fn sum<F: Lane>(x: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += c[i];
        }
    }
    rest.iter().fold(combine(acc, |a, b| a + b), |s, &v| s + v)
}

/// Σ x·y over two slices of one length, in eight lanes.
#[inline]
pub fn dot<F: Lane>(x: &[F], y: &[F]) -> F {
    assert_eq!(x.len(), y.len());
    let mut acc = [F::zero(); LANES];
    let (cx, cy) = (x.chunks_exact(LANES), y.chunks_exact(LANES));
    let (rx, ry) = (cx.remainder(), cy.remainder());
    for (a, b) in cx.zip(cy) {
        for i in 0..LANES {
            acc[i] += a[i] * b[i];
        }
    }
    rx.iter()
        .zip(ry)
        .fold(combine(acc, |a, b| a + b), |s, (&a, &b)| s + a * b)
}

/// max x (−∞ for an empty slice; NaNs are skipped, as by `f32::max`), in eight lanes.
#[inline]
pub fn max<F: Lane>(x: &[F]) -> F {
    let mut acc = [F::neg_infinity(); LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] = acc[i].max(c[i]);
        }
    }
    rest.iter()
        .fold(combine(acc, |a, b| a.max(b)), |m, &v| m.max(v))
}
