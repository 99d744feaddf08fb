//! Threads for the kernels: how many, and one helper that runs independent pieces of work on
//! them.
//!
//! The count comes from [`set_threads`] (the CLI's `--threads`), else the `TUNELAB_THREADS`
//! environment variable, else the machine's available parallelism. Work is split only into
//! pieces whose results do not depend on the split (rows of a matrix product, one (batch, head)
//! of attention, one row of a layer norm), so every result is bit-for-bit the same for any
//! thread count; reductions across pieces (a bias gradient summed over rows) stay on one thread.
//!
//! Workers are started once, on first use, and sleep on a channel between calls: no worker spins
//! waiting for work, which matters on a machine shared with other work, and a call costs a
//! wake-up instead of starting a thread (starting one costs more than a small product: it was 40%
//! of a decode step's time). One caller uses the pool at a time; a second one at the same moment
//! (tests run side by side) starts scoped threads of its own, as every call once did. Each
//! worker takes the caller's floating-point mode (flushing denormals or not, see
//! [`super::denormal`]) and hands its kernel counts back to the caller.

use super::denormal;
use super::stats::{add_stats, stats, take_stats, KernelStats};
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, SendError, Sender};
use std::sync::{Mutex, TryLockError};

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
    let rest: Vec<Vec<T>> = groups.collect();
    let worker_stats = match POOL.try_lock() {
        Ok(mut pool) => pool.run(rest, mine, &f, mode),
        Err(TryLockError::Poisoned(p)) => p.into_inner().run(rest, mine, &f, mode),
        Err(TryLockError::WouldBlock) => scoped(rest, mine, &f, mode),
    };
    for s in worker_stats {
        add_stats(s);
    }
}

/// Runs `mine` on the calling thread, marked as a worker so nested work stays on it.
fn run_mine<T, F: Fn(T)>(mine: Vec<T>, f: &F) -> std::thread::Result<()> {
    let outer = IN_WORKER.with(|w| w.replace(true));
    let r = catch_unwind(AssertUnwindSafe(|| mine.into_iter().for_each(f)));
    IN_WORKER.with(|w| w.set(outer));
    r
}

/// The groups after the first on threads started for this call, the first on the caller's.
fn scoped<T: Send, F: Fn(T) + Sync>(
    rest: Vec<Vec<T>>,
    mine: Vec<T>,
    f: &F,
    mode: u32,
) -> Vec<KernelStats> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = rest
            .into_iter()
            .map(|g| {
                scope.spawn(move || {
                    denormal::set_mode(mode);
                    IN_WORKER.with(|w| w.set(true));
                    g.into_iter().for_each(f);
                    stats()
                })
            })
            .collect();
        let own = run_mine(mine, f);
        let stats = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| resume_unwind(e)))
            .collect();
        own.unwrap_or_else(|e| resume_unwind(e));
        stats
    })
}

/// A job for a pool worker. Its borrows are the caller's: [`Pool::run`] does not return before
/// every job it sent has finished or been dropped.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The sleeping workers; one caller at a time.
struct Pool {
    workers: Vec<Sender<Job>>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    workers: Vec::new(),
});

impl Pool {
    /// Runs each group of `rest` on a worker and `mine` on the caller, waits for all of them,
    /// and returns the workers' kernel counts; a panic in any piece is resumed on the caller.
    fn run<T: Send, F: Fn(T) + Sync>(
        &mut self,
        rest: Vec<Vec<T>>,
        mine: Vec<T>,
        f: &F,
        mode: u32,
    ) -> Vec<KernelStats> {
        while self.workers.len() < rest.len() {
            let (tx, rx) = channel::<Job>();
            let started = std::thread::Builder::new()
                .name(format!("tunelab-kernel-{}", self.workers.len() + 1))
                .spawn(move || {
                    IN_WORKER.with(|w| w.set(true));
                    for job in rx {
                        job();
                    }
                });
            if started.is_err() {
                // No thread to be had: the caller's thread takes the work of the missing ones.
                break;
            }
            self.workers.push(tx);
        }
        let (done, results) = channel::<std::thread::Result<KernelStats>>();
        for (i, g) in rest.into_iter().enumerate() {
            let done = done.clone();
            let job: Box<dyn FnOnce() + Send + '_> = Box::new(move || {
                denormal::set_mode(mode);
                take_stats();
                let r = catch_unwind(AssertUnwindSafe(|| g.into_iter().for_each(f)));
                let _ = done.send(r.map(|()| take_stats()));
            });
            // SAFETY: the job borrows `f` and the pieces (through `g`) for the caller's lifetime
            // only. It is either run, and then sends on `done`, or dropped (a worker that is gone
            // drops what it was sent), and then drops its clone of `done`. Below, the caller
            // receives until every clone of `done` is gone, so no job outlives this call, even
            // when a piece panics (they are caught, and resumed only after the wait).
            let job: Job = unsafe { std::mem::transmute(job) };
            let sent = match self.workers.get(i) {
                Some(w) => w.send(job),
                // The pool could not start enough threads.
                None => Err(SendError(job)),
            };
            if let Err(SendError(job)) = sent {
                // No worker to take it (or it has gone: forget it): run the job here.
                self.workers.truncate(i);
                job();
            }
        }
        drop(done);
        let own = run_mine(mine, f);
        let mut stats = Vec::new();
        let mut panic = own.err();
        for r in results.iter() {
            match r {
                Ok(s) => stats.push(s),
                Err(e) => panic = panic.or(Some(e)),
            }
        }
        if let Some(e) = panic {
            resume_unwind(e);
        }
        stats
    }
}
