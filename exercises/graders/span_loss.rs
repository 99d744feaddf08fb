use super::{assert_close, numeric_grad, on_tape, randn, rng};
use crate::span_loss::span_loss;
use approx::assert_relative_eq;
use ndarray::{Array2, Ix2};
use rand::Rng;

type Case = (
    Array2<f64>,
    Array2<f64>,
    Vec<usize>,
    Vec<usize>,
    Array2<bool>,
);

/// Random logits, a mask with a few positions of each row masked, and allowed answers.
fn case(rng: &mut rand::rngs::StdRng, scale: f64) -> Case {
    let (b, t) = (rng.random_range(1..5), rng.random_range(3..9));
    let s = randn((b, t), rng) * scale;
    let e = randn((b, t), rng) * scale;
    let mask = Array2::from_shape_fn((b, t), |_| rng.random_bool(0.7));
    let mut mask = mask;
    let mut starts = Vec::new();
    let mut ends = Vec::new();
    for r in 0..b {
        let (st, en) = (rng.random_range(0..t), rng.random_range(0..t));
        mask[[r, st]] = true;
        mask[[r, en]] = true;
        starts.push(st);
        ends.push(en);
    }
    (s, e, starts, ends, mask)
}

fn tunelab(c: &Case) -> (f64, Array2<f64>, Array2<f64>) {
    let (s, e, starts, ends, mask) = c;
    let (loss, grads) = on_tape(
        &[s.clone().into_dyn(), e.clone().into_dyn()],
        None,
        |t, x| tunelab::loss::span_loss(t, x[0], x[1], starts, ends, Some(mask.view())).unwrap(),
    );
    let two_d = |g: &ndarray::ArrayD<f64>| g.clone().into_dimensionality::<Ix2>().unwrap();
    (*loss.first().unwrap(), two_d(&grads[0]), two_d(&grads[1]))
}

#[test]
fn loss_and_gradients_match_tunelab() {
    let mut rng = rng(1);
    for i in 0..20 {
        let c = case(&mut rng, 1.0 + (i % 4) as f64 * 3.0);
        let (want, want_ds, want_de) = tunelab(&c);
        let (loss, ds, de) = span_loss(&c.0, &c.1, &c.2, &c.3, &c.4);
        assert_relative_eq!(loss, want, max_relative = 1e-9);
        assert_close(&format!("∂L/∂start, case {i}"), &ds, &want_ds, 1e-9);
        assert_close(&format!("∂L/∂end, case {i}"), &de, &want_de, 1e-9);
    }
}

#[test]
fn masked_positions_get_no_probability_and_no_gradient() {
    let mut rng = rng(2);
    let (s, e, starts, ends, mask) = case(&mut rng, 1.0);
    // A huge logit at a masked position must change nothing.
    let mut s_big = s.clone();
    if let Some(((r, t), _)) = mask.indexed_iter().find(|(_, &m)| !m) {
        s_big[[r, t]] = 1e6;
    }
    let (l0, ds, _) = span_loss(&s, &e, &starts, &ends, &mask);
    let (l1, _, _) = span_loss(&s_big, &e, &starts, &ends, &mask);
    assert_relative_eq!(l0, l1, max_relative = 1e-12);
    for ((r, t), &m) in mask.indexed_iter() {
        if !m {
            assert_eq!(ds[[r, t]], 0.0, "gradient at masked position ({r}, {t})");
        }
    }
}

#[test]
fn gradient_matches_central_differences() {
    let mut rng = rng(3);
    let (s, e, starts, ends, mask) = case(&mut rng, 1.0);
    let (_, ds, de) = span_loss(&s, &e, &starts, &ends, &mask);
    let num_s = numeric_grad(&s, |s| span_loss(s, &e, &starts, &ends, &mask).0);
    let num_e = numeric_grad(&e, |e| span_loss(&s, e, &starts, &ends, &mask).0);
    assert_close("∂L/∂start against central differences", &ds, &num_s, 1e-6);
    assert_close("∂L/∂end against central differences", &de, &num_e, 1e-6);
}
