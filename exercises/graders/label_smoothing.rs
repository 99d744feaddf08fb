use super::{assert_close, numeric_grad, on_tape, randn, rng};
use crate::label_smoothing::smoothed_cross_entropy;
use approx::assert_relative_eq;
use ndarray::{Array2, Ix2};
use rand::Rng;
use tunelab::loss::classification::ClassificationLoss;

fn tunelab(z: &Array2<f64>, y: &[usize], eps: f64) -> (f64, Array2<f64>) {
    let loss = ClassificationLoss {
        label_smoothing: eps,
        class_weights: None,
    };
    let (value, grads) = on_tape(&[z.clone().into_dyn()], None, |t, x| {
        loss.forward(t, x[0], y).unwrap()
    });
    let g = grads[0].clone().into_dimensionality::<Ix2>().unwrap();
    (*value.first().unwrap(), g)
}

#[test]
fn loss_and_gradient_match_tunelab() {
    let mut rng = rng(1);
    for (case, eps) in [0.0, 0.1, 0.3, 1.0].into_iter().enumerate() {
        let (n, k) = (rng.random_range(1..7), rng.random_range(2..6));
        let z = randn((n, k), &mut rng) * (1.0 + case as f64);
        let y: Vec<usize> = (0..n).map(|_| rng.random_range(0..k)).collect();
        let (want_loss, want_grad) = tunelab(&z, &y, eps);
        let (loss, grad) = smoothed_cross_entropy(&z, &y, eps);
        assert_relative_eq!(loss, want_loss, max_relative = 1e-9);
        assert_close(&format!("gradient, ε = {eps}"), &grad, &want_grad, 1e-9);
    }
}

#[test]
fn gradient_matches_central_differences() {
    let mut rng = rng(2);
    let z = randn((3, 4), &mut rng);
    let y = [1, 3, 0];
    let (_, grad) = smoothed_cross_entropy(&z, &y, 0.2);
    let numeric = numeric_grad(&z, |z| smoothed_cross_entropy(z, &y, 0.2).0);
    assert_close(
        "gradient against central differences",
        &grad,
        &numeric,
        1e-6,
    );
}

#[test]
fn large_logits_stay_finite() {
    let z = ndarray::array![[1000.0, -1000.0, 0.0], [-800.0, 800.0, 5.0]];
    let y = [1, 0];
    let (loss, grad) = smoothed_cross_entropy(&z, &y, 0.1);
    let (want_loss, want_grad) = tunelab(&z, &y, 0.1);
    assert!(loss.is_finite(), "the loss overflowed: {loss}");
    assert_relative_eq!(loss, want_loss, max_relative = 1e-9);
    assert_close("gradient at large logits", &grad, &want_grad, 1e-9);
}
