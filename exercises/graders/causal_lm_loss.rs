use super::{assert_close, numeric_grad, on_tape, randn, rng};
use crate::causal_lm_loss::{causal_lm_grad, causal_lm_loss, IGNORE_INDEX};
use approx::abs_diff_eq;
use ndarray::{Array2, Array3, Ix3};
use rand::Rng;

/// Logits (3, 5, 6) and labels with a masked prompt, padding, and one row fully ignored.
fn case(seed: u64) -> (Array3<f64>, Array2<i64>) {
    let mut rng = rng(seed);
    let z = randn((3, 5, 6), &mut rng) * 2.0;
    let mut labels = Array2::from_shape_fn((3, 5), |_| rng.random_range(0..6i64));
    labels[[0, 0]] = IGNORE_INDEX;
    labels[[0, 1]] = IGNORE_INDEX;
    labels[[1, 4]] = IGNORE_INDEX;
    labels.row_mut(2).fill(IGNORE_INDEX);
    (z, labels)
}

fn tunelab(z: &Array3<f64>, labels: &Array2<i64>) -> (f64, Array3<f64>) {
    let (loss, grads) = on_tape(&[z.clone().into_dyn()], None, |t, x| {
        tunelab::loss::causal_lm_loss(t, x[0], labels.view()).unwrap()
    });
    let g = grads[0].clone().into_dimensionality::<Ix3>().unwrap();
    (*loss.first().unwrap(), g)
}

#[test]
fn loss_matches_tunelab() {
    for seed in [1, 2] {
        let (z, labels) = case(seed);
        let (want, _) = tunelab(&z, &labels);
        let got = causal_lm_loss(&z, &labels);
        assert!(
            abs_diff_eq!(got, want, epsilon = 1e-10),
            "loss {got}, tunelab {want}"
        );
    }
}

#[test]
fn nothing_counted_gives_zero() {
    let (z, _) = case(3);
    let labels = Array2::from_elem((3, 5), IGNORE_INDEX);
    assert_eq!(causal_lm_loss(&z, &labels), 0.0);
}

#[test]
fn gradient_matches_tunelab() {
    let (z, labels) = case(4);
    let (_, want) = tunelab(&z, &labels);
    assert_close("dL/dlogits", &causal_lm_grad(&z, &labels), &want, 1e-10);
}

#[test]
fn gradient_passes_gradcheck() {
    let (z, labels) = case(5);
    let numeric = numeric_grad(&z, |z| causal_lm_loss(z, &labels));
    assert_close(
        "dL/dlogits against central differences",
        &causal_lm_grad(&z, &labels),
        &numeric,
        1e-6,
    );
}
