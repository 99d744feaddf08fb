//! Flushing denormals to zero while training.
//!
//! Floats smaller than about 1.2e-38 (f32) are *subnormal*: they trade precision for range, and
//! x86 CPUs handle them in a slow microcode path, many times slower than normal arithmetic.
//! Training produces them: tiny gradients, and AdamW's second moment v = β₂·v + (1 − β₂)·g²
//! which squares those gradients. Two bits of the x86-64 MXCSR register make the hardware
//! replace them by zero instead: FTZ (bit 15, results that would be subnormal become 0) and DAZ
//! (bit 6, subnormal inputs are read as 0). PyTorch's `torch.set_flush_denormal(True)` sets the
//! same bits. The effect on training is nil at f32 (values that small do not move a weight).
//!
//! MXCSR is per thread: [`super::threads::for_each_piece`] gives its workers the caller's mode.
//! Threads of an external BLAS are not covered (OpenBLAS is run single-threaded per piece, so
//! its work happens on our threads). On other architectures this is a no-op.

use std::sync::atomic::{AtomicBool, Ordering};

/// MXCSR flush-to-zero (bit 15) and denormals-are-zero (bit 6).
pub const FTZ_DAZ: u32 = (1 << 15) | (1 << 6);

static FLUSH_WHILE_TRAINING: AtomicBool = AtomicBool::new(true);

/// Whether training flushes denormals (on unless turned off, e.g. by `--no-flush-denormals`).
pub fn flush_while_training() -> bool {
    FLUSH_WHILE_TRAINING.load(Ordering::Relaxed)
}

/// Turns flushing during training on or off for the whole process.
pub fn set_flush_while_training(on: bool) {
    FLUSH_WHILE_TRAINING.store(on, Ordering::Relaxed);
}

/// The calling thread's floating-point control word (MXCSR on x86-64, 0 elsewhere).
pub fn current_mode() -> u32 {
    #[cfg(target_arch = "x86_64")]
    {
        let mut x: u32 = 0;
        // SAFETY: stmxcsr stores the 32-bit MXCSR to the given address, which is valid.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut x, options(nostack, preserves_flags));
        }
        x
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        0
    }
}

/// Sets the calling thread's floating-point control word (from [`current_mode`]).
pub fn set_mode(mode: u32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: ldmxcsr loads MXCSR from a valid address; the value came from stmxcsr (with at most
    // the FTZ/DAZ bits changed), so no reserved bit is set.
    unsafe {
        std::arch::asm!("ldmxcsr [{}]", in(reg) &mode, options(nostack, readonly, preserves_flags));
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = mode;
}

/// Whether the calling thread currently flushes denormals.
pub fn flushing() -> bool {
    cfg!(target_arch = "x86_64") && current_mode() & FTZ_DAZ == FTZ_DAZ
}

/// Sets FTZ and DAZ on this thread (or clears them) until dropped, then restores the old mode.
#[must_use = "the mode is restored when the guard is dropped"]
pub struct FlushDenormals {
    saved: u32,
}

impl FlushDenormals {
    /// `on`: flush denormals; `off`: make sure they are kept (IEEE behaviour).
    pub fn new(on: bool) -> Self {
        let saved = current_mode();
        let mode = if on {
            saved | FTZ_DAZ
        } else {
            saved & !FTZ_DAZ
        };
        set_mode(mode);
        Self { saved }
    }

    /// The training setting: flushes unless [`set_flush_while_training`] turned it off.
    pub fn for_training() -> Self {
        Self::new(flush_while_training())
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        set_mode(self.saved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guard_flushes_and_restores() {
        let before = current_mode();
        let tiny = std::hint::black_box(1e-39f32); // subnormal
        {
            let _g = FlushDenormals::new(true);
            if cfg!(target_arch = "x86_64") {
                assert!(flushing());
                // DAZ: the subnormal input reads as zero.
                assert_eq!(std::hint::black_box(tiny) * 1.0, 0.0);
            }
        }
        assert_eq!(current_mode(), before);
        assert!(std::hint::black_box(tiny) * 1.0 > 0.0);
    }
}
