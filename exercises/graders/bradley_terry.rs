use super::{assert_close, assert_written_without_tunelab, numeric_grad, on_tape, randn, rng};
use crate::bradley_terry::{bradley_terry_grad, bradley_terry_loss};
use approx::abs_diff_eq;
use ndarray::{array, Array1, Ix1};
use tunelab::loss::RewardLoss;

#[cfg(not(feature = "solutions"))]
const SOURCE: &str = include_str!("../08_alignment/bradley_terry.rs");
#[cfg(feature = "solutions")]
const SOURCE: &str = include_str!("../../solutions/08_alignment/bradley_terry.rs");

/// Random rewards for 7 pairs, of the given scale.
fn case(seed: u64, scale: f64) -> (Array1<f64>, Array1<f64>) {
    let mut rng = rng(seed);
    (randn(7, &mut rng) * scale, randn(7, &mut rng) * scale)
}

/// tunelab's loss and gradients (chosen, rejected), on a tape in f64.
fn tunelab(c: &Array1<f64>, r: &Array1<f64>, eta: f64) -> (f64, Array1<f64>, Array1<f64>) {
    let loss = RewardLoss {
        center_rewards_coefficient: (eta != 0.0).then_some(eta),
    };
    let (value, grads) = on_tape(
        &[c.clone().into_dyn(), r.clone().into_dyn()],
        None,
        |t, x| loss.forward(t, x[0], x[1], None).unwrap(),
    );
    let g = |i: usize| grads[i].clone().into_dimensionality::<Ix1>().unwrap();
    (*value.first().unwrap(), g(0), g(1))
}

fn assert_loss(c: &Array1<f64>, r: &Array1<f64>, eta: f64) {
    let (want, _, _) = tunelab(c, r, eta);
    let got = bradley_terry_loss(c, r, eta);
    assert!(
        abs_diff_eq!(got, want, epsilon = 1e-10 * want.abs().max(1.0)),
        "loss {got}, tunelab {want} (η = {eta}, chosen {c:.3}, rejected {r:.3})"
    );
}

fn assert_grad(c: &Array1<f64>, r: &Array1<f64>, eta: f64) {
    let (_, want_c, want_r) = tunelab(c, r, eta);
    let (got_c, got_r) = bradley_terry_grad(c, r, eta);
    assert_close("dL/dchosen", &got_c, &want_c, 1e-10);
    assert_close("dL/drejected", &got_r, &want_r, 1e-10);
}

#[test]
fn loss_matches_tunelab() {
    for (seed, scale, eta) in [(1, 1.0, 0.0), (2, 5.0, 0.0), (3, 2.0, 0.01)] {
        let (c, r) = case(seed, scale);
        assert_loss(&c, &r, eta);
    }
}

#[test]
fn gradient_matches_tunelab() {
    for (seed, scale, eta) in [(4, 1.0, 0.0), (5, 5.0, 0.0), (6, 2.0, 0.01)] {
        let (c, r) = case(seed, scale);
        assert_grad(&c, &r, eta);
    }
}

#[test]
fn large_margins_stay_finite() {
    // Pairs ranked right and wrong by 1000: log(1 / (1 + e^1000)) would be −inf.
    let c = array![1000.0, -1000.0, 0.0, 500.0];
    let r = array![0.0, 0.0, 1000.0, -500.0];
    assert_loss(&c, &r, 0.0);
    assert_grad(&c, &r, 0.0);
}

#[test]
fn gradient_passes_gradcheck() {
    let (c, r) = case(7, 2.0);
    for eta in [0.0, 0.05] {
        let (got_c, got_r) = bradley_terry_grad(&c, &r, eta);
        let num_c = numeric_grad(&c, |c| bradley_terry_loss(c, &r, eta));
        let num_r = numeric_grad(&r, |r| bradley_terry_loss(&c, r, eta));
        assert_close(
            "dL/dchosen against central differences",
            &got_c,
            &num_c,
            1e-6,
        );
        assert_close(
            "dL/drejected against central differences",
            &got_r,
            &num_r,
            1e-6,
        );
    }
}

#[test]
fn written_without_tunelab() {
    assert_written_without_tunelab("bradley_terry", SOURCE);
}
