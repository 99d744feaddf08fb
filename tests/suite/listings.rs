//! The plain reference versions of the fused ops the book shows (`*_backward_reference`, beside
//! each op), checked against the ops' own backward on random inputs, in f64 to 1e-12. The book
//! teaches from the reference and says the fast one exists and is tested equal: these tests are
//! that claim.

use ndarray::{Array, Array2, ArrayD, Dimension, IxDyn, ShapeBuilder};
use tunelab::autodiff::ops::attention::{attention_backward_reference, AttnMask};
use tunelab::autodiff::ops::cross_entropy::cross_entropy_backward_reference;
use tunelab::autodiff::ops::layernorm::layer_norm_backward_reference;
use tunelab::autodiff::ops::softmax::softmax_backward_reference;
use tunelab::autodiff::IGNORE_INDEX;
use tunelab::{Grads, ParamStore, Tape};

const TOL: f64 = 1e-12;

/// Deterministic uniform values in [-scale, scale) (xorshift64*), so a failure reproduces.
fn random<Sh: ShapeBuilder>(shape: Sh, seed: u64, scale: f64) -> Array<f64, Sh::Dim>
where
    Sh::Dim: Dimension,
{
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    Array::from_shape_simple_fn(shape, || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
        (2.0 * u - 1.0) * scale
    })
}

fn assert_close(what: &str, got: &ArrayD<f64>, want: &ArrayD<f64>) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    let worst = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst <= TOL,
        "{what}: the op's backward and the reference differ by up to {worst:e}"
    );
    // Not trivially equal: the gradients are not all zero.
    assert!(want.iter().any(|&x| x.abs() > 1e-6), "{what}: all zero");
}

#[test]
fn cross_entropy_backward_equals_its_reference() {
    for (seed, (rows, classes)) in [(1, (7, 5)), (2, (70, 33)), (3, (129, 8))] {
        let logits = random((rows, classes), seed, 4.0);
        // Some rows ignored, the others with targets spread over the classes.
        let targets: Vec<i64> = (0..rows)
            .map(|i| match i % 4 {
                3 => IGNORE_INDEX,
                _ => ((i * 7 + seed as usize) % classes) as i64,
            })
            .collect();
        let mut store = ParamStore::<f64>::new();
        let z = store.add("z", logits.clone().into_dyn(), true).unwrap();
        let mut tape = Tape::new(&store);
        let zv = tape.param(z);
        let loss = tape.cross_entropy(zv, &targets, IGNORE_INDEX).unwrap();
        let mut grads = Grads::new(&store);
        tape.backward(loss, &mut grads).unwrap();
        let want = cross_entropy_backward_reference(logits.view(), &targets, IGNORE_INDEX, 1.0);
        assert_close("cross-entropy", grads.get(z).unwrap(), &want.into_dyn());
        // Ignored rows get exactly nothing.
        let dz = grads.get(z).unwrap();
        for (i, _) in targets
            .iter()
            .enumerate()
            .filter(|(_, t)| **t == IGNORE_INDEX)
        {
            assert!(dz.index_axis(ndarray::Axis(0), i).iter().all(|&x| x == 0.0));
        }
    }
}

/// loss = Σ y ⊙ w for a fixed random w, so the output's gradient is w.
fn weighted_sum(tape: &mut Tape<'_, f64>, y: tunelab::Var, w: &Array2<f64>) -> tunelab::Var {
    let wv = tape.constant(w.clone().into_dyn());
    let prod = tape.mul(y, wv).unwrap();
    tape.sum_all(prod).unwrap()
}

#[test]
fn softmax_and_log_softmax_backward_equal_their_reference() {
    for log in [false, true] {
        for (seed, shape) in [(4, (3, 6)), (5, (40, 65))] {
            let x = random(shape, seed, 3.0);
            let w = random(shape, seed + 100, 1.0);
            let mut store = ParamStore::<f64>::new();
            let xid = store.add("x", x.into_dyn(), true).unwrap();
            let mut tape = Tape::new(&store);
            let xv = tape.param(xid);
            let y = if log {
                tape.log_softmax(xv).unwrap()
            } else {
                tape.softmax(xv).unwrap()
            };
            let loss = weighted_sum(&mut tape, y, &w);
            let mut grads = Grads::new(&store);
            tape.backward(loss, &mut grads).unwrap();
            let yv = tape
                .value(y)
                .to_owned()
                .into_dimensionality::<ndarray::Ix2>()
                .unwrap();
            let want = softmax_backward_reference(yv.view(), w.view(), log);
            let what = if log { "log-softmax" } else { "softmax" };
            assert_close(what, grads.get(xid).unwrap(), &want.into_dyn());
        }
    }
}

#[test]
fn layer_norm_backward_equals_its_reference() {
    let eps = 1e-5;
    // More rows than one thread's piece (64), so the threaded path is the one compared.
    for (seed, (rows, c)) in [(6, (5, 8)), (7, (150, 48))] {
        let x = random((rows, c), seed, 2.0) + 0.5;
        let gamma = random(c, seed + 1, 1.0) + 1.0;
        let beta = random(c, seed + 2, 0.5);
        let w = random((rows, c), seed + 3, 1.0);
        let mut store = ParamStore::<f64>::new();
        let xid = store.add("x", x.clone().into_dyn(), true).unwrap();
        let gid = store.add("gamma", gamma.clone().into_dyn(), true).unwrap();
        let bid = store.add("beta", beta.into_dyn(), true).unwrap();
        let mut tape = Tape::new(&store);
        let (xv, gv, bv) = (tape.param(xid), tape.param(gid), tape.param(bid));
        let y = tape.layer_norm(xv, gv, bv, eps).unwrap();
        let loss = weighted_sum(&mut tape, y, &w);
        let mut grads = Grads::new(&store);
        tape.backward(loss, &mut grads).unwrap();
        let (dx, dgamma, dbeta) =
            layer_norm_backward_reference(x.view(), gamma.view(), w.view(), eps);
        assert_close("layer norm dx", grads.get(xid).unwrap(), &dx.into_dyn());
        assert_close("layer norm dγ", grads.get(gid).unwrap(), &dgamma.into_dyn());
        assert_close("layer norm dβ", grads.get(bid).unwrap(), &dbeta.into_dyn());
    }
}

#[test]
fn attention_backward_equals_its_reference_per_head() {
    // S > T: two extra keys in front, as prefix tuning adds, which every causal query sees.
    for (causal, seed) in [(true, 8), (false, 9)] {
        let (b, nh, t, s, hs) = (2, 3, 5, 7, 4);
        let q = random((b, nh, t, hs), seed, 1.5);
        let k = random((b, nh, s, hs), seed + 1, 1.5);
        let v = random((b, nh, s, hs), seed + 2, 1.5);
        let w = random((b, nh, t, hs), seed + 3, 1.0);
        let mut store = ParamStore::<f64>::new();
        let qid = store.add("q", q.clone().into_dyn(), true).unwrap();
        let kid = store.add("k", k.clone().into_dyn(), true).unwrap();
        let vid = store.add("v", v.clone().into_dyn(), true).unwrap();
        let mut tape = Tape::new(&store);
        let (qv, kv, vv) = (tape.param(qid), tape.param(kid), tape.param(vid));
        let mask = if causal {
            AttnMask::causal()
        } else {
            AttnMask::default()
        };
        let y = tape.attention(qv, kv, vv, &mask).unwrap();
        let wv = tape.constant(w.clone().into_dyn());
        let prod = tape.mul(y, wv).unwrap();
        let loss = tape.sum_all(prod).unwrap();
        let mut grads = Grads::new(&store);
        tape.backward(loss, &mut grads).unwrap();
        let (gq, gk, gv) = (
            grads.get(qid).unwrap(),
            grads.get(kid).unwrap(),
            grads.get(vid).unwrap(),
        );
        for bi in 0..b {
            for h in 0..nh {
                let at = |a: &ArrayD<f64>| {
                    a.slice(ndarray::s![bi, h, .., ..])
                        .to_owned()
                        .into_dyn()
                        .into_shape_with_order(IxDyn(&[a.shape()[2], hs]))
                        .unwrap()
                };
                let head =
                    |a: &ndarray::Array4<f64>| a.slice(ndarray::s![bi, h, .., ..]).to_owned();
                let (hq, hk, hv, hw) = (head(&q), head(&k), head(&v), head(&w));
                let (dq, dk, dv) = attention_backward_reference(
                    hq.view(),
                    hk.view(),
                    hv.view(),
                    hw.view(),
                    causal,
                );
                let what = format!("attention (causal {causal}) b {bi} h {h}");
                assert_close(&format!("{what} dq"), &at(gq), &dq.into_dyn());
                assert_close(&format!("{what} dk"), &at(gk), &dk.into_dyn());
                assert_close(&format!("{what} dv"), &at(gv), &dv.into_dyn());
            }
        }
    }
}
