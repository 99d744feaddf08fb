use super::{assert_close, numeric_grad, on_tape, randn, rng};
use crate::layer_norm_backward::{layer_norm_backward, layer_norm_forward};
use ndarray::{Array1, Array2, Ix1, Ix2};

const EPS: f64 = 1e-5;

struct Case {
    x: Array2<f64>,
    gamma: Array1<f64>,
    beta: Array1<f64>,
    /// dL/dy: L = Σ y ⊙ dy.
    dy: Array2<f64>,
}

fn case(seed: u64) -> Case {
    let mut rng = rng(seed);
    Case {
        x: randn((4, 6), &mut rng) * 2.0 + 0.5,
        gamma: randn(6, &mut rng),
        beta: randn(6, &mut rng),
        dy: randn((4, 6), &mut rng),
    }
}

#[test]
fn matches_tunelab() {
    for seed in [1, 2, 3] {
        let c = case(seed);
        let inputs = [
            c.x.clone().into_dyn(),
            c.gamma.clone().into_dyn(),
            c.beta.clone().into_dyn(),
        ];
        let (_, g) = on_tape(&inputs, Some(&c.dy.clone().into_dyn()), |t, v| {
            t.layer_norm(v[0], v[1], v[2], EPS).unwrap()
        });
        let (_, cache) = layer_norm_forward(&c.x, &c.gamma, &c.beta, EPS);
        let got = layer_norm_backward(&c.dy, &c.x, &c.gamma, &cache);
        let want_dx = g[0].clone().into_dimensionality::<Ix2>().unwrap();
        assert_close("dx", &got.dx, &want_dx, 1e-10);
        let want_dgamma = g[1].clone().into_dimensionality::<Ix1>().unwrap();
        assert_close("dgamma", &got.dgamma, &want_dgamma, 1e-10);
        let want_dbeta = g[2].clone().into_dimensionality::<Ix1>().unwrap();
        assert_close("dbeta", &got.dbeta, &want_dbeta, 1e-10);
    }
}

#[test]
fn passes_gradcheck() {
    let c = case(4);
    let loss = |x: &Array2<f64>, gamma: &Array1<f64>, beta: &Array1<f64>| {
        (layer_norm_forward(x, gamma, beta, EPS).0 * &c.dy).sum()
    };
    let (_, cache) = layer_norm_forward(&c.x, &c.gamma, &c.beta, EPS);
    let got = layer_norm_backward(&c.dy, &c.x, &c.gamma, &cache);
    let dx = numeric_grad(&c.x, |x| loss(x, &c.gamma, &c.beta));
    assert_close("dx against central differences", &got.dx, &dx, 1e-6);
    let dgamma = numeric_grad(&c.gamma, |g| loss(&c.x, g, &c.beta));
    assert_close(
        "dgamma against central differences",
        &got.dgamma,
        &dgamma,
        1e-6,
    );
    let dbeta = numeric_grad(&c.beta, |b| loss(&c.x, &c.gamma, b));
    assert_close(
        "dbeta against central differences",
        &got.dbeta,
        &dbeta,
        1e-6,
    );
}
