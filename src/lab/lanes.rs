//! Runs side by side: compare's methods, a sweep's grid points and an experiment's seeds all
//! train several independent runs, one per kernel thread, through [`side_by_side`].

use crate::error::Result;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many runs train side by side: one per kernel thread (each then runs its kernels on
/// one thread, which on small models scales better than splitting every product in two).
/// `runs` counts every (method, seed) pair.
pub fn lanes(runs: usize) -> usize {
    crate::kernels::threads().min(runs).max(1)
}

/// Runs `job(k)` for every `k` in `0..n` on `lanes` threads, each taking the next job when it
/// finishes one, and each single-threaded when there are several (one lane runs on the
/// caller's thread). Returns the results in job order; after a failure no new job starts, and
/// the first failure in job order is the error.
pub fn side_by_side<T: Send>(
    n: usize,
    lanes: usize,
    job: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<T>>>> = Mutex::new((0..n).map(|_| None).collect());
    let work = || loop {
        let k = next.fetch_add(1, Ordering::SeqCst);
        if k >= n {
            break;
        }
        let r = job(k);
        let failed = r.is_err();
        if let Ok(mut all) = results.lock() {
            all[k] = Some(r);
        }
        if failed {
            next.store(n, Ordering::SeqCst); // start nothing new
        }
    };
    if lanes > 1 {
        std::thread::scope(|scope| {
            for _ in 0..lanes {
                scope.spawn(|| crate::kernels::threads::single_threaded(work));
            }
        });
    } else {
        work();
    }
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().flatten().collect()
}
