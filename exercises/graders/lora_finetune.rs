use super::{assert_close, on_tape, randn, rng};
use crate::lora_finetune::{finetune, lora_grads, FinetuneConfig};
use ndarray::{Array2, Axis, Ix2};
use tunelab::autodiff::IGNORE_INDEX;

/// A task the frozen classifier gets wrong: labels from W + a rank-2 change.
struct Task {
    w: Array2<f64>,
    train: (Array2<f64>, Vec<usize>),
    test: (Array2<f64>, Vec<usize>),
}

fn argmax_rows(z: &Array2<f64>) -> Vec<usize> {
    z.axis_iter(Axis(0))
        .map(|row| {
            row.iter()
                .enumerate()
                .fold((0, f64::NEG_INFINITY), |(bi, bv), (i, &v)| {
                    if v > bv {
                        (i, v)
                    } else {
                        (bi, bv)
                    }
                })
                .0
        })
        .collect()
}

fn task(seed: u64) -> Task {
    let (d, k, n) = (12, 4, 256);
    let mut rng = rng(seed);
    let w = randn((d, k), &mut rng) * 0.5;
    let change = randn((d, 2), &mut rng).dot(&randn((2, k), &mut rng));
    let teacher = &w + &change;
    let mut split = || {
        let x = randn((n, d), &mut rng);
        let y = argmax_rows(&x.dot(&teacher));
        (x, y)
    };
    let train = split();
    let test = split();
    Task { w, train, test }
}

/// The mean cross-entropy and the accuracy of x W + s·(x Aᵀ) Bᵀ, by tunelab's autodiff, with
/// the gradients of the loss with respect to A and B.
fn tunelab_eval(
    x: &Array2<f64>,
    y: &[usize],
    w: &Array2<f64>,
    a: &Array2<f64>,
    b: &Array2<f64>,
    s: f64,
) -> (f64, f64, Array2<f64>, Array2<f64>) {
    let targets: Vec<i64> = y.iter().map(|&c| c as i64).collect();
    let (xd, wd) = (x.clone().into_dyn(), w.clone().into_dyn());
    let mut logits = None;
    let (loss, grads) = on_tape(
        &[a.clone().into_dyn(), b.clone().into_dyn()],
        None,
        |t, v| {
            let (xv, wv) = (t.constant(xd), t.constant(wd));
            let base = t.matmul(xv, wv).unwrap();
            let at = t.transpose(v[0], 0, 1).unwrap();
            let bt = t.transpose(v[1], 0, 1).unwrap();
            let u = t.matmul(xv, at).unwrap();
            let delta = t.matmul(u, bt).unwrap();
            let delta = t.scale(delta, s).unwrap();
            let z = t.add(base, delta).unwrap();
            logits = Some(t.value(z).to_owned());
            t.cross_entropy(z, &targets, IGNORE_INDEX).unwrap()
        },
    );
    let z = logits.unwrap().into_dimensionality::<Ix2>().unwrap();
    let correct = argmax_rows(&z)
        .iter()
        .zip(y)
        .filter(|(p, t)| p == t)
        .count();
    let two_d = |g: &ndarray::ArrayD<f64>| g.clone().into_dimensionality::<Ix2>().unwrap();
    (
        *loss.first().unwrap(),
        correct as f64 / y.len() as f64,
        two_d(&grads[0]),
        two_d(&grads[1]),
    )
}

#[test]
fn gradients_match_tunelab() {
    let t = task(1);
    let mut rng = rng(2);
    let (x, y) = &t.train;
    let a = randn((3, 12), &mut rng);
    let b = randn((4, 3), &mut rng);
    let (_, _, want_da, want_db) = tunelab_eval(x, y, &t.w, &a, &b, 2.5);
    let (da, db) = lora_grads(x, y, &t.w, &a, &b, 2.5);
    assert_close("dA of the mean cross-entropy", &da, &want_da, 1e-10);
    assert_close("dB of the mean cross-entropy", &db, &want_db, 1e-10);
}

#[test]
fn reaches_the_target_accuracy_on_held_out_data() {
    let cfg = FinetuneConfig {
        r: 4,
        alpha: 8.0,
        steps: 300,
        lr: 0.02,
    };
    for seed in [1, 2] {
        let t = task(seed);
        let (d, k) = t.w.dim();
        let (x_test, y_test) = &t.test;
        let zero_a = Array2::zeros((cfg.r, d));
        let zero_b = Array2::zeros((k, cfg.r));
        let s = cfg.alpha / cfg.r as f64;
        let (base_loss, base_acc, _, _) = tunelab_eval(x_test, y_test, &t.w, &zero_a, &zero_b, s);
        let (a, b) = finetune(&t.train.0, &t.train.1, &t.w, &cfg, &mut rng(seed));
        assert_eq!(a.dim(), (cfg.r, d), "A is (r, d)");
        assert_eq!(b.dim(), (k, cfg.r), "B is (K, r)");
        let (loss, acc, _, _) = tunelab_eval(x_test, y_test, &t.w, &a, &b, s);
        assert!(
            acc >= 0.9,
            "task {seed}: held-out accuracy {acc:.3} (frozen classifier {base_acc:.3}, loss \
             {base_loss:.3} → {loss:.3}); the target is 0.9"
        );
        assert!(
            loss < 0.5 * base_loss,
            "task {seed}: held-out loss {base_loss:.3} → {loss:.3}, not halved"
        );
    }
}
