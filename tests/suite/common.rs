//! Helpers that several modules of the suite share: temporary directories, the head of a
//! classification model made trainable, the tolerance of the hand-worked checks, and the loss
//! tests' evaluation of a loss with its gradients and its finite-difference check.

use ndarray::ArrayD;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use tunelab::autodiff::gradcheck::STEP;
use tunelab::nn::SequenceHead;
use tunelab::{Grads, ParamStore, Result, Tape, Var};

/// Agreement asked of values worked out by hand: absolute, 1e-12, what f64 keeps through the
/// few operations of a formula on paper.
pub const HAND_TOL: f64 = 1e-12;

/// A path under the system temp dir for one test, unique to this process and this call, with
/// nothing at it yet (the code under test creates it).
pub fn temp_dir(name: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("tunelab-test-{}-{n}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Like [`temp_dir`], but the directory exists (empty), for tests that write files into it.
pub fn empty_dir(name: &str) -> PathBuf {
    let dir = temp_dir(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes a sequence head's output layer (weight and bias) trainable: a frozen-base method
/// trains its own parameters and the task head.
pub fn unfreeze_head<F: tunelab::Float>(store: &mut ParamStore<F>, head: &SequenceHead) {
    store.set_trainable(head.out.weight, true);
    if let Some(b) = head.out.bias {
        store.set_trainable(b, true);
    }
}

/// Fails unless every value is finite: "the outputs differ" only means something between
/// numbers (approx calls NaN different from everything).
pub fn assert_finite<'a, D: ndarray::Dimension>(values: impl Into<ndarray::ArrayView<'a, f64, D>>) {
    let values = values.into();
    assert!(values.iter().all(|v| v.is_finite()), "non-finite values");
}

/// Seeds every training interview experiment and pitfall is judged on.
pub const SEEDS: usize = 3;

/// The experiment on [`SEEDS`] seeds, side by side, with a non-empty list of claims.
pub fn judged<E: tunelab::lab::evidence::Evidence + Send>(
    experiment: impl Fn(u64, &mut dyn tunelab::train::progress::Progress) -> tunelab::error::Result<E>
        + Sync,
) -> tunelab::lab::evidence::Judged<E> {
    let j = tunelab::lab::evidence::over_seeds(SEEDS, true, &mut (), experiment).unwrap();
    assert_eq!(j.runs.len(), SEEDS);
    assert!(
        !j.verdicts().is_empty(),
        "no claims:\n{}",
        tunelab::lab::evidence::report(&j)
    );
    j
}

/// The claim starting with `prefix` was tested in every run and held in at least `k`.
pub fn holds_in<E: tunelab::lab::evidence::Evidence>(
    j: &tunelab::lab::evidence::Judged<E>,
    prefix: &str,
    k: usize,
) {
    let v = j.verdict(prefix).unwrap_or_else(|| {
        panic!(
            "no claim starts with {prefix:?}:\n{}",
            tunelab::lab::evidence::report(j)
        )
    });
    assert_eq!(v.runs, j.runs.len(), "{prefix:?} not tested in every run");
    assert!(
        v.held >= k,
        "{prefix:?} held in {}/{}, expected at least {k}:\n{}",
        v.held,
        v.runs,
        tunelab::lab::evidence::report(j)
    );
}

/// Inputs as trainable parameters; `build` returns the loss. Gives its value and gradients.
pub fn eval(
    inputs: &[ArrayD<f64>],
    build: impl Fn(&mut Tape<'_, f64>, &[Var]) -> Result<Var>,
) -> (f64, Vec<ArrayD<f64>>) {
    let mut store = ParamStore::<f64>::new();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| store.add(format!("x{i}"), x.clone(), true).unwrap())
        .collect();
    let mut tape = Tape::new(&store);
    let vars: Vec<Var> = ids.iter().map(|&id| tape.param(id)).collect();
    let loss = build(&mut tape, &vars).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(loss, &mut grads).unwrap();
    let g = ids
        .iter()
        .zip(inputs)
        .map(|(&id, x)| {
            grads
                .get(id)
                .cloned()
                .unwrap_or_else(|| ArrayD::zeros(x.raw_dim()))
        })
        .collect();
    (tape.scalar(loss).unwrap(), g)
}

/// The tape's gradient of a scalar against central differences, in the manner of
/// `tunelab::autodiff::gradcheck`: the largest |analytic − numeric| / max(|a|, |n|, 1e-3).
pub fn gradcheck(
    inputs: &[ArrayD<f64>],
    build: impl Fn(&mut Tape<'_, f64>, &[Var]) -> Result<Var>,
) -> f64 {
    let value = |xs: &[ArrayD<f64>]| {
        let mut store = ParamStore::<f64>::new();
        for (i, x) in xs.iter().enumerate() {
            store.add(format!("x{i}"), x.clone(), true).unwrap();
        }
        let mut tape = Tape::inference(&store);
        let vars: Vec<Var> = store.ids().map(|id| tape.param(id)).collect();
        let loss = build(&mut tape, &vars).unwrap();
        tape.scalar(loss).unwrap()
    };
    let (_, analytic) = eval(inputs, &build);
    let mut worst = 0.0f64;
    let mut probe = inputs.to_vec();
    for (k, g) in analytic.iter().enumerate() {
        for (i, &a) in g.iter().enumerate() {
            let x0 = inputs[k].as_slice().unwrap()[i];
            probe[k].as_slice_mut().unwrap()[i] = x0 + STEP;
            let up = value(&probe);
            probe[k].as_slice_mut().unwrap()[i] = x0 - STEP;
            let down = value(&probe);
            probe[k].as_slice_mut().unwrap()[i] = x0;
            let n = (up - down) / (2.0 * STEP);
            worst = worst.max((a - n).abs() / a.abs().max(n.abs()).max(1e-3));
        }
    }
    worst
}
