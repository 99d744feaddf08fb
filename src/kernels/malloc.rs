//! Keep freed memory in the process.
//!
//! A training step allocates and frees the same large buffers (activations, their gradients,
//! matmul outputs) again and again. glibc's malloc serves blocks above its mmap threshold with
//! fresh `mmap`s and returns them on `free`, and trims the heap's top whenever it shrinks, so
//! each step faults every page of those buffers in anew and the kernel zeroes them: a fifth of
//! a short `compare` run went to page faults. [`keep_freed_memory`] raises the mmap threshold
//! to its maximum (32 MiB on 64-bit glibc) and stops trimming, so freed blocks are reused. It
//! changes no result, only where memory comes from. Elsewhere than glibc it does nothing.

/// Tells glibc's malloc to reuse freed blocks instead of returning them to the kernel. Call
/// once, early (the CLI does; tests and benches may).
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // From glibc's malloc.h.
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_TOP_PAD: i32 = -2;
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only sets allocator parameters; any value is accepted or refused
        // (it returns 0), and these are within glibc's documented ranges.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
            mallopt(M_TOP_PAD, 64 << 20);
        }
    }
}
