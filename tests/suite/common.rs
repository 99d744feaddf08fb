//! Helpers that several modules of the suite share: temporary directories, the head of a
//! classification model made trainable, and the tolerance of the hand-worked checks.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use tunelab::nn::SequenceHead;
use tunelab::ParamStore;

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
