use super::{assert_close, numeric_grad, on_tape, randn, rng};
use crate::cross_entropy::{cross_entropy, cross_entropy_grad};
use approx::abs_diff_eq;
use ndarray::{Array2, Ix2};
use rand::Rng;
use tunelab::autodiff::IGNORE_INDEX;

fn case(seed: u64, scale: f64) -> (Array2<f64>, Vec<usize>) {
    let mut rng = rng(seed);
    let z = randn((6, 5), &mut rng) * scale;
    let y = (0..6).map(|_| rng.random_range(0..5)).collect();
    (z, y)
}

fn tunelab(z: &Array2<f64>, y: &[usize]) -> (f64, Array2<f64>) {
    let targets: Vec<i64> = y.iter().map(|&c| c as i64).collect();
    let (loss, grads) = on_tape(&[z.clone().into_dyn()], None, |t, x| {
        t.cross_entropy(x[0], &targets, IGNORE_INDEX).unwrap()
    });
    let g = grads[0].clone().into_dimensionality::<Ix2>().unwrap();
    (*loss.first().unwrap(), g)
}

#[test]
fn loss_matches_tunelab() {
    for (seed, scale) in [(1, 1.0), (2, 30.0)] {
        let (z, y) = case(seed, scale);
        let (want, _) = tunelab(&z, &y);
        let got = cross_entropy(&z, &y);
        assert!(
            abs_diff_eq!(got, want, epsilon = 1e-10 * want.abs().max(1.0)),
            "loss {got}, tunelab {want}"
        );
    }
}

#[test]
fn gradient_matches_tunelab() {
    for (seed, scale) in [(3, 1.0), (4, 30.0)] {
        let (z, y) = case(seed, scale);
        let (_, want) = tunelab(&z, &y);
        assert_close("dL/dlogits", &cross_entropy_grad(&z, &y), &want, 1e-10);
    }
}

#[test]
fn gradient_passes_gradcheck() {
    let (z, y) = case(5, 1.0);
    let numeric = numeric_grad(&z, |z| cross_entropy(z, &y));
    assert_close(
        "dL/dlogits against central differences",
        &cross_entropy_grad(&z, &y),
        &numeric,
        1e-6,
    );
}
