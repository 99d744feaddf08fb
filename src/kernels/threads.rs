//! Threads for the kernels: how many, and one helper that runs independent pieces of work on
//! them.
//!
//! The count comes from [`set_threads`] (the CLI's `--threads`), else the `TUNELAB_THREADS`
//! environment variable, else the machine's available parallelism. Work is split only into
//! pieces whose results do not depend on the split (rows of a matrix product, one (batch, head)
//! of attention, one row of a layer norm), so every result is bit-for-bit the same for any
//! thread count; reductions across pieces (a bias gradient summed over rows) stay on one thread.
//!
//! Workers are scoped threads started per call: no pool spins between calls, which matters on a
//! machine shared with other work. Each worker takes the caller's floating-point mode (flushing
//! denormals or not, see [`super::denormal`]) and hands its kernel counts back to the caller.

use super::denormal;
use super::stats::{add_stats, stats, KernelStats};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// 0: not set, read `TUNELAB_THREADS` or the machine.
static THREADS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Set on worker threads, so that work nested inside a parallel piece stays on its thread.
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Sets the number of threads the kernels use (at least 1).
pub fn set_threads(n: usize) {
    THREADS.store(n.max(1), Ordering::Relaxed);
}

/// The number of threads the kernels use; 1 inside a worker (no nested threads).
pub fn threads() -> usize {
    if IN_WORKER.with(|w| w.get()) {
        return 1;
    }
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = from_env()
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
            // Racing first calls compute the same value.
            THREADS.store(n, Ordering::Relaxed);
            n
        }
        n => n,
    }
}

fn from_env() -> Option<usize> {
    let v = std::env::var("TUNELAB_THREADS").ok()?;
    match v.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Some(n),
        _ => {
            eprintln!("warning: TUNELAB_THREADS={v:?} is not a positive integer; ignored");
            None
        }
    }
}

/// Runs `f` with the kernels on the calling thread only, for callers that parallelise at a
/// coarser grain themselves (`compare` trains two methods side by side, one core each).
pub fn single_threaded<R>(f: impl FnOnce() -> R) -> R {
    let outer = IN_WORKER.with(|w| w.replace(true));
    let r = f();
    IN_WORKER.with(|w| w.set(outer));
    r
}

/// Runs `f` on every piece, spread over up to [`threads`] threads in contiguous groups. The
/// pieces must be independent (typically disjoint mutable views); `f` sees each exactly once.
pub fn for_each_piece<T: Send, F: Fn(T) + Sync>(pieces: Vec<T>, f: F) {
    let n = threads().min(pieces.len());
    if n <= 1 {
        pieces.into_iter().for_each(f);
        return;
    }
    let mode = denormal::current_mode();
    let per = pieces.len().div_ceil(n);
    let mut groups: Vec<Vec<T>> = Vec::with_capacity(n);
    let mut it = pieces.into_iter();
    loop {
        let g: Vec<T> = it.by_ref().take(per).collect();
        if g.is_empty() {
            break;
        }
        groups.push(g);
    }
    let mut groups = groups.into_iter();
    let mine = groups.next().expect("at least one piece");
    let f = &f;
    let worker_stats: Vec<KernelStats> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .map(|g| {
                scope.spawn(move || {
                    denormal::set_mode(mode);
                    IN_WORKER.with(|w| w.set(true));
                    g.into_iter().for_each(f);
                    stats()
                })
            })
            .collect();
        let outer = IN_WORKER.with(|w| w.replace(true));
        mine.into_iter().for_each(f);
        IN_WORKER.with(|w| w.set(outer));
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for s in worker_stats {
        add_stats(s);
    }
}
