//! Small cases worked out by hand, so the formulas in the docs are checked against arithmetic a
//! reader can redo on paper.

use crate::common::HAND_TOL;
use approx::assert_abs_diff_eq;
use ndarray::{arr2, array, Array2, ArrayD};
use tunelab::autodiff::IGNORE_INDEX;
use tunelab::{Grads, ParamStore, Tape};

/// logits [[1, 2, 3], [1, 1, 1]], targets [2, 0]:
/// softmax row 0 = e^(x−3)/Σ = [e⁻², e⁻¹, 1] / (e⁻² + e⁻¹ + 1); row 1 = [1/3, 1/3, 1/3].
/// loss = −(log p₀[2] + log p₁[0]) / 2; d logits = (softmax − onehot) / N.
#[test]
fn hand_softmax_cross_entropy_gradient_is_softmax_minus_onehot_over_n() {
    let mut store = ParamStore::<f64>::new();
    let z = store
        .add(
            "z",
            array![[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]].into_dyn(),
            true,
        )
        .unwrap();
    let mut tape = Tape::new(&store);
    let zv = tape.param(z);
    let loss = tape.cross_entropy(zv, &[2, 0], IGNORE_INDEX).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();

    let s = (-2f64).exp() + (-1f64).exp() + 1.0;
    let p0 = [(-2f64).exp() / s, (-1f64).exp() / s, 1.0 / s];
    let expected_loss = -(p0[2].ln() + (1.0f64 / 3.0).ln()) / 2.0;
    assert_abs_diff_eq!(
        tape.scalar(loss).unwrap(),
        expected_loss,
        epsilon = HAND_TOL
    );

    let expected: ArrayD<f64> = array![
        [p0[0] / 2.0, p0[1] / 2.0, (p0[2] - 1.0) / 2.0],
        [(1.0 / 3.0 - 1.0) / 2.0, 1.0 / 6.0, 1.0 / 6.0]
    ]
    .into_dyn();
    let g = grads.get(z).unwrap();
    assert_abs_diff_eq!(*g, expected, epsilon = HAND_TOL);
}

/// An ignored row adds nothing to the loss and gets zero gradient; the mean is over counted rows.
#[test]
fn hand_cross_entropy_ignore_index() {
    let mut store = ParamStore::<f64>::new();
    let z = store
        .add("z", array![[0.0, 0.0], [5.0, -5.0]].into_dyn(), true)
        .unwrap();
    let mut tape = Tape::new(&store);
    let zv = tape.param(z);
    let loss = tape
        .cross_entropy(zv, &[1, IGNORE_INDEX], IGNORE_INDEX)
        .unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();
    assert_abs_diff_eq!(tape.scalar(loss).unwrap(), 2f64.ln(), epsilon = HAND_TOL);
    let g = grads.get(z).unwrap();
    assert_eq!(g.as_slice().unwrap(), &[0.5, -0.5, 0.0, 0.0]);
}

/// Cross-entropy stays finite and exact for logits far beyond exp's range.
#[test]
fn hand_cross_entropy_large_logits_are_stable() {
    let mut store = ParamStore::<f32>::new();
    let z = store
        .add(
            "z",
            array![[1000.0f32, 0.0], [-1000.0, 1000.0]].into_dyn(),
            true,
        )
        .unwrap();
    let mut tape = Tape::new(&store);
    let zv = tape.param(z);
    let loss = tape.cross_entropy(zv, &[1, 1], IGNORE_INDEX).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();
    // Row 0: −log softmax = 1000; row 1: ≈ 0. Mean 500.
    assert_eq!(tape.scalar(loss).unwrap(), 500.0);
    assert!(grads.get(z).unwrap().iter().all(|g| g.is_finite()));
}

/// Layer norm of x = [1, 2, 3] with γ = 1, β = 0: μ = 2, σ² = 2/3, y = (x − 2)/√(2/3 + ε).
/// With upstream gradient g = [1, 0, 0]: dβ = g, dγ = g ⊙ n, and
/// dx = rstd (g − mean(g) − n · mean(g ⊙ n)) = rstd ([1, 0, 0] − 1/3 − n · n₀/3).
#[test]
fn hand_layer_norm_1x3() {
    let eps = 1e-5;
    let mut store = ParamStore::<f64>::new();
    let x = store
        .add("x", array![[1.0, 2.0, 3.0]].into_dyn(), true)
        .unwrap();
    let gamma = store
        .add("gamma", array![1.0, 1.0, 1.0].into_dyn(), true)
        .unwrap();
    let beta = store
        .add("beta", array![0.0, 0.0, 0.0].into_dyn(), true)
        .unwrap();
    let mut tape = Tape::new(&store);
    let (xv, gv, bv) = (tape.param(x), tape.param(gamma), tape.param(beta));
    let y = tape.layer_norm(xv, gv, bv, eps).unwrap();
    let pick = tape.constant(array![[1.0, 0.0, 0.0]].into_dyn());
    let picked = tape.mul(y, pick).unwrap();
    let loss = tape.sum_all(picked).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();

    let rstd = 1.0 / (2.0f64 / 3.0 + eps).sqrt();
    let n = [-rstd, 0.0, rstd];
    let yv = tape.value(y);
    assert_abs_diff_eq!(yv, arr2(&[n]).into_dyn(), epsilon = HAND_TOL);
    let g = [1.0, 0.0, 0.0];
    let mean_g = 1.0 / 3.0;
    let mean_gn = n[0] / 3.0;
    let dx = grads.get(x).unwrap();
    let want = Array2::from_shape_fn((1, 3), |(_, j)| rstd * (g[j] - mean_g - n[j] * mean_gn));
    assert_abs_diff_eq!(*dx, want.into_dyn(), epsilon = HAND_TOL);
    assert_eq!(grads.get(beta).unwrap().as_slice().unwrap(), &g);
    let dgamma = grads.get(gamma).unwrap();
    assert_abs_diff_eq!(dgamma[0], n[0], epsilon = HAND_TOL);
    assert!(dgamma[1] == 0.0);
    assert!(dgamma[2] == 0.0);
}
