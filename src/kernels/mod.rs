//! Raw numeric kernels. Every matrix product in tunelab goes through [`gemm`], the one seam
//! where matmul backends plug in.
//!
//! Backends ([`Backend`]):
//! - `matrixmultiply` (the default: pure Rust, so a fresh machine needs nothing but cargo);
//! - the `gemm` crate (pure Rust) with the `gemm` cargo feature, and with its own rayon threads
//!   with `gemm-rayon`: a backend to choose (`TUNELAB_BACKEND=gemm`), not the default;
//! - a system BLAS (OpenBLAS through CBLAS) with the `blas` cargo feature, which then becomes
//!   the default: `apt-get install libopenblas-dev`, then `cargo build --release --features blas`
//!   (`blas-threaded` lets OpenBLAS thread a whole product itself);
//! - [`gemm_naive`], a triple loop kept as the reference the others are tested against.
//!
//! [`threads`] sets how many threads the kernels and the heavy ops use (`--threads`,
//! `TUNELAB_THREADS`); results do not depend on it. [`denormal`] flushes subnormal floats to
//! zero while training. [`malloc`] keeps freed memory for reuse instead of returning it to the
//! kernel after every step. [`fastmath`] holds an `exp` that loops vectorise. [`nf4`] quantises
//! frozen weights to QLoRA's 4-bit NormalFloat exactly as bitsandbytes stores them.
//!
//! A per-thread counter of kernel calls and floating-point operations lets tests prove that work
//! was skipped (a frozen weight's gradient is never computed), not merely thrown away.

pub mod denormal;
pub mod fastmath;
pub mod malloc;
mod matmul;
pub mod nf4;
pub mod quant;
mod stats;
pub mod threads;

pub use denormal::FlushDenormals;
pub use malloc::keep_freed_memory;
pub use matmul::{gemm, gemm_naive, gemm_with, Backend};
pub use stats::{stats, KernelStats};
pub use threads::{for_each_piece, set_threads, threads};
