//! Counts of kernel work (matrix-multiply calls and FLOPs) per thread, so tests and benchmarks can
//! prove what a step computed (frozen weights cost no products) rather than time it.

use std::cell::Cell;

/// Counts of kernel work done on this thread (and on the workers it started) since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Number of `gemm` calls.
    pub gemm_calls: u64,
    /// Multiply-adds times two, summed over calls.
    pub gemm_flops: u64,
}

thread_local! {
    static STATS: Cell<KernelStats> = const { Cell::new(KernelStats { gemm_calls: 0, gemm_flops: 0 }) };
}

/// The kernel work done on the calling thread so far. Take the difference of two readings.
pub fn stats() -> KernelStats {
    STATS.with(|s| s.get())
}

/// The kernel work done on the calling thread since the last call, resetting the counts: what a
/// pool worker hands back after each job.
pub(super) fn take_stats() -> KernelStats {
    STATS.with(|s| s.take())
}

/// Adds a worker's counts to the calling thread's.
pub(super) fn add_stats(w: KernelStats) {
    STATS.with(|s| {
        let mut v = s.get();
        v.gemm_calls += w.gemm_calls;
        v.gemm_flops += w.gemm_flops;
        s.set(v);
    });
}
