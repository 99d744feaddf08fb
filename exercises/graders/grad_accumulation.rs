use super::{assert_close, on_tape, randn, rng};
use crate::grad_accumulation::{accumulate, MicroBatch};
use approx::assert_relative_eq;
use ndarray::{concatenate, Array2, Axis, Ix2};
use rand::Rng;
use tunelab::autodiff::IGNORE_INDEX;

/// The mean token cross-entropy of x·W (rows of x are tokens) against `targets` (−100 skipped)
/// and its gradient with respect to W, by tunelab's tape.
fn tunelab(x: &Array2<f64>, w: &Array2<f64>, targets: &[i64]) -> (f64, Array2<f64>) {
    let xd = x.clone().into_dyn();
    let (loss, grads) = on_tape(&[w.clone().into_dyn()], None, |t, v| {
        let xv = t.constant(xd);
        let z = t.matmul(xv, v[0]).unwrap();
        t.cross_entropy(z, targets, IGNORE_INDEX).unwrap()
    });
    (
        *loss.first().unwrap(),
        grads[0].clone().into_dimensionality::<Ix2>().unwrap(),
    )
}

#[test]
fn micro_batches_give_the_whole_batch() {
    let mut rng = rng(1);
    let (d, v) = (4, 6);
    for case in 0..10 {
        let w = randn((d, v), &mut rng);
        // Micro-batches of very different sizes, with some tokens ignored.
        let k = rng.random_range(2..5);
        let mut xs = Vec::new();
        let mut all_targets = Vec::new();
        let mut micro = Vec::new();
        for m in 0..k {
            let n = if m == 0 { 1 } else { rng.random_range(2..12) };
            let x = randn((n, d), &mut rng);
            let mut targets: Vec<i64> = (0..n).map(|_| rng.random_range(0..v as i64)).collect();
            for t in targets.iter_mut().skip(1) {
                if rng.random_bool(0.3) {
                    *t = IGNORE_INDEX;
                }
            }
            let (mean_loss, grad) = tunelab(&x, &w, &targets);
            let num_items = targets.iter().filter(|&&t| t != IGNORE_INDEX).count();
            micro.push(MicroBatch {
                mean_loss,
                grad,
                num_items,
            });
            xs.push(x);
            all_targets.extend(targets);
        }
        let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
        let x_all = concatenate(Axis(0), &views).unwrap();
        let (want_loss, want_grad) = tunelab(&x_all, &w, &all_targets);
        let (loss, grad) = accumulate(&micro);
        assert_relative_eq!(loss, want_loss, max_relative = 1e-10);
        assert_close(
            &format!("accumulated gradient, case {case} ({k} micro-batches)"),
            &grad,
            &want_grad,
            1e-10,
        );
    }
}

#[test]
fn no_items_gives_zero() {
    let micro = [MicroBatch {
        mean_loss: 0.0,
        grad: Array2::zeros((2, 3)),
        num_items: 0,
    }];
    let (loss, grad) = accumulate(&micro);
    assert_eq!(loss, 0.0, "no counted tokens: the loss is 0, not NaN");
    assert!(
        grad.iter().all(|&g| g == 0.0),
        "no counted tokens: a zero gradient"
    );
}
