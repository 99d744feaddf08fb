use super::{assert_close, assert_written_without_tunelab, numeric_grad, on_tape, randn, rng};
use crate::dpo_loss::{dpo_loss, dpo_loss_grad, PairLogps};
use approx::abs_diff_eq;
use ndarray::{array, Array1, Ix1};
use tunelab::loss::preference::dpo;
use tunelab::loss::preference::PairInputs;

#[cfg(not(feature = "solutions"))]
const SOURCE: &str = include_str!("../08_alignment/dpo_loss.rs");
#[cfg(feature = "solutions")]
const SOURCE: &str = include_str!("../../solutions/08_alignment/dpo_loss.rs");

/// 6 random pairs: sequence log-probabilities around −20, the policy's within `spread` of the
/// reference's.
fn case(seed: u64, spread: f64) -> PairLogps {
    let mut rng = rng(seed);
    let mut logps = || randn(6, &mut rng).mapv(|z: f64| -20.0 - 5.0 * z.abs());
    let (ref_c, ref_r) = (logps(), logps());
    let mut rng = super::rng(seed + 100);
    PairLogps {
        chosen_logps: &ref_c + &(randn(6, &mut rng) * spread),
        rejected_logps: &ref_r + &(randn(6, &mut rng) * spread),
        ref_chosen_logps: ref_c,
        ref_rejected_logps: ref_r,
    }
}

/// tunelab's DPO loss (sigmoid, no label smoothing) and its gradients with respect to the
/// policy's chosen and rejected log-probabilities, on a tape in f64.
fn tunelab(x: &PairLogps, beta: f64) -> (f64, Array1<f64>, Array1<f64>) {
    let tokens = vec![1; x.chosen_logps.len()];
    let ref_c = x.ref_chosen_logps.to_vec();
    let ref_r = x.ref_rejected_logps.to_vec();
    let (value, grads) = on_tape(
        &[
            x.chosen_logps.clone().into_dyn(),
            x.rejected_logps.clone().into_dyn(),
        ],
        None,
        |t, v| {
            let inputs = PairInputs {
                chosen: v[0],
                rejected: v[1],
                chosen_tokens: &tokens,
                rejected_tokens: &tokens,
                ref_chosen: Some(&ref_c),
                ref_rejected: Some(&ref_r),
                chosen_nll: None,
            };
            dpo::dpo_loss(t, &inputs, beta, 0.0).unwrap().loss
        },
    );
    let g = |i: usize| grads[i].clone().into_dimensionality::<Ix1>().unwrap();
    (*value.first().unwrap(), g(0), g(1))
}

fn assert_loss(x: &PairLogps, beta: f64) {
    let (want, _, _) = tunelab(x, beta);
    let got = dpo_loss(x, beta);
    let h = (&x.chosen_logps - &x.ref_chosen_logps) - (&x.rejected_logps - &x.ref_rejected_logps);
    assert!(
        abs_diff_eq!(got, want, epsilon = 1e-10 * want.abs().max(1.0)),
        "loss {got}, tunelab {want} (β = {beta}, margins h = {h:.3})"
    );
}

fn assert_grad(x: &PairLogps, beta: f64) {
    let (_, want_c, want_r) = tunelab(x, beta);
    let (got_c, got_r) = dpo_loss_grad(x, beta);
    assert_close("dL/dchosen_logps", &got_c, &want_c, 1e-10);
    assert_close("dL/drejected_logps", &got_r, &want_r, 1e-10);
}

#[test]
fn loss_matches_tunelab() {
    for (seed, spread, beta) in [(1, 1.0, 0.1), (2, 5.0, 0.5), (3, 0.3, 2.0)] {
        assert_loss(&case(seed, spread), beta);
    }
}

#[test]
fn gradient_matches_tunelab() {
    for (seed, spread, beta) in [(4, 1.0, 0.1), (5, 5.0, 0.5), (6, 0.3, 2.0)] {
        assert_grad(&case(seed, spread), beta);
    }
}

#[test]
fn large_margins_stay_finite() {
    // β·h = 1000, −1000, −500, 500: pairs ranked right and wrong by far.
    let x = PairLogps {
        chosen_logps: array![-10.0, -3000.0, -1020.0, -30.0],
        rejected_logps: array![-2010.0, -1000.0, -20.0, -30.0],
        ref_chosen_logps: array![-10.0, -1000.0, -20.0, -1030.0],
        ref_rejected_logps: array![-10.0, -1000.0, -20.0, -30.0],
    };
    assert_loss(&x, 0.5);
    assert_grad(&x, 0.5);
}

#[test]
fn gradient_passes_gradcheck() {
    let x = case(7, 2.0);
    for beta in [0.1, 1.0] {
        let (got_c, got_r) = dpo_loss_grad(&x, beta);
        let num_c = numeric_grad(&x.chosen_logps, |c| {
            let y = PairLogps {
                chosen_logps: c.clone(),
                ..x.clone()
            };
            dpo_loss(&y, beta)
        });
        let num_r = numeric_grad(&x.rejected_logps, |r| {
            let y = PairLogps {
                rejected_logps: r.clone(),
                ..x.clone()
            };
            dpo_loss(&y, beta)
        });
        assert_close(
            "dL/dchosen_logps against central differences",
            &got_c,
            &num_c,
            1e-6,
        );
        assert_close(
            "dL/drejected_logps against central differences",
            &got_r,
            &num_r,
            1e-6,
        );
    }
}

#[test]
fn written_without_tunelab() {
    assert_written_without_tunelab("dpo_loss", SOURCE);
}
