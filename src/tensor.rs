//! The float type the engine is generic over, and small array helpers shared by the ops.
//!
//! Training runs in `f32`; gradient checks run the very same op code in `f64`.

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, LinalgScalar, ScalarOperand};
use std::fmt::{Debug, Display};
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A floating-point element type: `f32` for speed, `f64` for truth.
pub trait Float:
    num_traits::Float
    + LinalgScalar
    + ScalarOperand
    + Debug
    + Display
    + Default
    + Send
    + Sync
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + 'static
{
    /// `"f32"` or `"f64"`.
    const NAME: &'static str;
    /// Converts an `f64` constant (rounding for `f32`).
    fn of(x: f64) -> Self;
    /// Converts to `f64` for reporting.
    fn as_f64(self) -> f64;
    /// The error function, for BERT's exact GELU.
    fn erf(self) -> Self;
    /// e^x for the hot loops (GELU, softmax, cross-entropy). In f32 the vectorisable
    /// [`crate::kernels::fastmath::exp_f32`] (within 1 ulp of the exact value where the result
    /// is normal); in f64, where gradients are checked, libm's `exp`.
    fn exp_fast(self) -> Self;
}

impl Float for f32 {
    const NAME: &'static str = "f32";
    fn of(x: f64) -> Self {
        x as f32
    }
    fn as_f64(self) -> f64 {
        self as f64
    }
    fn erf(self) -> Self {
        libm::erff(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        crate::kernels::fastmath::exp_f32(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "f64";
    fn of(x: f64) -> Self {
        x
    }
    fn as_f64(self) -> f64 {
        self
    }
    fn erf(self) -> Self {
        libm::erf(self)
    }
    #[inline(always)]
    fn exp_fast(self) -> Self {
        self.exp()
    }
}

/// Sums `g` down to `shape`, undoing numpy-style broadcasting: leading axes that `shape` lacks
/// are summed away, and axes where `shape` has 1 are summed with the axis kept.
pub fn sum_to_shape<F: Float>(g: ArrayViewD<F>, shape: &[usize]) -> ArrayD<F> {
    if g.shape() == shape {
        return g.to_owned();
    }
    // A bias's gradient, (C) or (1, 1, C) from (B, T, C): the rows summed in order, each row
    // one vectorised add.
    if let (Some(gs), Some((&c, rest))) = (g.as_slice(), shape.split_last()) {
        if g.shape().last() == Some(&c) && c > 0 && rest.iter().all(|&d| d == 1) {
            let mut out = vec![F::zero(); c];
            for row in gs.chunks_exact(c) {
                for (o, &v) in out.iter_mut().zip(row) {
                    *o += v;
                }
            }
            return ArrayD::from_shape_vec(IxDyn(shape), out).expect("c elements");
        }
    }
    let extra = g.ndim() - shape.len();
    let mut out = g.to_owned();
    for _ in 0..extra {
        out = out.sum_axis(Axis(0));
    }
    for (i, &n) in shape.iter().enumerate() {
        if n == 1 && out.shape()[i] != 1 {
            out = out.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    out
}

/// The numpy broadcast shape of `a` and `b`, or `None` when they do not broadcast.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let db = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return None,
        };
    }
    Some(out)
}

/// Product of a shape's dimensions.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A zero array of `shape`.
pub fn zeros<F: Float>(shape: &[usize]) -> ArrayD<F> {
    ArrayD::zeros(IxDyn(shape))
}

/// Formats a shape as `(2, 3, 4)`.
pub fn fmt_shape(shape: &[usize]) -> String {
    let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    format!("({})", parts.join(", "))
}
