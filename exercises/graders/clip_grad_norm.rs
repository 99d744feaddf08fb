use super::{assert_close, randn, rng};
use crate::clip_grad_norm::clip_grad_norm;
use approx::abs_diff_eq;
use ndarray::ArrayD;
use tunelab::{Grads, ParamStore, Tape};

#[test]
fn matches_tunelab() {
    let shapes = [vec![3, 4], vec![5], vec![2, 2, 2]];
    let mut rng = rng(1);
    for scale in [0.01, 1.0, 100.0] {
        for max_norm in [1.0, 5.0] {
            let gs: Vec<ArrayD<f64>> = shapes
                .iter()
                .map(|s| randn(s.clone(), &mut rng) * scale)
                .collect();
            // tunelab's Grads with these values: the backward of Σ_i Σ p_i ⊙ g_i.
            let mut store = ParamStore::new();
            let ids: Vec<_> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    store
                        .add(format!("p{i}"), ArrayD::zeros(s.clone()), true)
                        .unwrap()
                })
                .collect();
            let mut grads = Grads::new(&store);
            {
                let mut tape = Tape::new(&store);
                let mut total = None;
                for (&id, g) in ids.iter().zip(&gs) {
                    let p = tape.param(id);
                    let gv = tape.constant(g.clone());
                    let pg = tape.mul(p, gv).unwrap();
                    let s = tape.sum_all(pg).unwrap();
                    total = Some(match total {
                        None => s,
                        Some(t) => tape.add(t, s).unwrap(),
                    });
                }
                tape.backward(total.unwrap(), &mut grads).unwrap();
            }
            let want_norm = tunelab::optim::clip_grad_norm(&mut grads, max_norm).unwrap();
            let mut mine = gs.clone();
            let norm = clip_grad_norm(&mut mine, max_norm);
            assert!(
                abs_diff_eq!(norm, want_norm, epsilon = 1e-10 * want_norm),
                "returned norm {norm}, tunelab {want_norm} (it must be the norm before clipping)"
            );
            for (i, (&id, g)) in ids.iter().zip(&mine).enumerate() {
                let what = format!("gradient {i}, scale {scale}, max_norm {max_norm}");
                assert_close(&what, g, grads.get(id).unwrap(), 1e-12);
            }
        }
    }
}
