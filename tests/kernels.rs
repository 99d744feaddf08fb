//! The default matmul backend against the naive reference kernel, on odd shapes and strided
//! (transposed, sliced) views.

use ndarray::{s, Array, Array2};
use tunelab::kernels::{gemm, gemm_naive};

fn matrix(m: usize, n: usize, seed: usize) -> Array2<f64> {
    Array::from_shape_fn((m, n), |(i, j)| {
        (((i * 31 + j * 17 + seed * 7) % 23) as f64 - 11.0) / 7.0
    })
}

fn max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn kernels_default_matches_naive_on_odd_shapes() {
    for &(m, k, n) in &[
        (1, 1, 1),
        (3, 5, 7),
        (17, 1, 9),
        (33, 65, 31),
        (64, 127, 3),
        (130, 70, 129),
    ] {
        let (a, b) = (matrix(m, k, 1), matrix(k, n, 2));
        let (mut fast, mut slow) = (matrix(m, n, 3), matrix(m, n, 3));
        gemm(0.5, a.view(), b.view(), 2.0, &mut fast.view_mut());
        gemm_naive(0.5, a.view(), b.view(), 2.0, &mut slow.view_mut());
        assert!(
            max_diff(&fast, &slow) < 1e-10,
            "({m}, {k}, {n}): max diff {}",
            max_diff(&fast, &slow)
        );
    }
}

#[test]
fn kernels_default_matches_naive_on_transposed_and_sliced_views() {
    let a = matrix(41, 29, 4); // used as aᵀ: (29, 41)
    let b = matrix(50, 60, 5); // a strided window of it: (41, 13)
    let b_view = b.slice(s![3..44, 1..40;3]);
    let mut c_fast = Array2::<f64>::zeros((13, 29));
    let mut c_slow = Array2::<f64>::zeros((13, 29));
    // Write into a transposed view of C as well: C (13, 29) viewed as (29, 13).
    gemm(
        1.0,
        a.t(),
        b_view,
        0.0,
        &mut c_fast.view_mut().reversed_axes(),
    );
    gemm_naive(
        1.0,
        a.t(),
        b_view,
        0.0,
        &mut c_slow.view_mut().reversed_axes(),
    );
    assert!(max_diff(&c_fast, &c_slow) < 1e-10);
}

#[test]
fn kernels_f32_matches_f64_reference() {
    let (a, b) = (matrix(37, 53, 6), matrix(53, 19, 7));
    let mut want = Array2::<f64>::zeros((37, 19));
    gemm_naive(1.0, a.view(), b.view(), 0.0, &mut want.view_mut());
    let (a32, b32) = (a.mapv(|x| x as f32), b.mapv(|x| x as f32));
    let mut got = Array2::<f32>::zeros((37, 19));
    gemm(1.0, a32.view(), b32.view(), 0.0, &mut got.view_mut());
    let diff = got
        .iter()
        .zip(&want)
        .map(|(x, y)| (*x as f64 - y).abs())
        .fold(0.0, f64::max);
    assert!(diff < 1e-4, "f32 kernel off by {diff}");
}
