//! Matrix multiply: `C = alpha * A·B + beta * C` on 2-D views of any strides.
//!
//! Transposed operands are passed as views (`a.t()`), never copied; accumulation into an existing
//! gradient uses `beta = 1` so nothing is allocated.

use crate::tensor::Float;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2};
use std::cell::Cell;

/// Counts of kernel work done on this thread since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Number of `gemm` calls.
    pub gemm_calls: u64,
    /// Multiply-adds times two, summed over calls.
    pub gemm_flops: u64,
}

thread_local! {
    static STATS: Cell<KernelStats> = const { Cell::new(KernelStats { gemm_calls: 0, gemm_flops: 0 }) };
}

/// The kernel work done on the calling thread so far. Take the difference of two readings.
pub fn stats() -> KernelStats {
    STATS.with(|s| s.get())
}

fn count(m: usize, k: usize, n: usize) {
    STATS.with(|s| {
        let mut v = s.get();
        v.gemm_calls += 1;
        v.gemm_flops += 2 * (m * k * n) as u64;
        s.set(v);
    });
}

// ANCHOR: gemm
/// `C = alpha * A·B + beta * C`, with A (M, K), B (K, N), C (M, N). Shapes are checked by the
/// callers (the ops), which report errors with tensor names; here a mismatch is a bug.
pub fn gemm<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    debug_assert_eq!(b.dim().0, k);
    debug_assert_eq!(c.dim(), (m, n));
    count(m, k, n);
    general_mat_mul(alpha, &a, &b, beta, c);
}
// ANCHOR_END: gemm

/// The reference kernel: a plain triple loop, accumulated in `F`. Slow and obviously right.
pub fn gemm_naive<F: Float>(
    alpha: F,
    a: ArrayView2<F>,
    b: ArrayView2<F>,
    beta: F,
    c: &mut ArrayViewMut2<F>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    for i in 0..m {
        for j in 0..n {
            let mut acc = F::zero();
            for p in 0..k {
                acc += a[[i, p]] * b[[p, j]];
            }
            let prev = if beta == F::zero() {
                F::zero()
            } else {
                beta * c[[i, j]]
            };
            c[[i, j]] = alpha * acc + prev;
        }
    }
}
