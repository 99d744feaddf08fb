//! Raw numeric kernels. Every matrix product in tunelab goes through [`gemm`], the one seam
//! where matmul backends plug in.
//!
//! Backends:
//! - `matrixmultiply` through ndarray's `general_mat_mul` (the default: pure Rust, so a fresh
//!   machine needs nothing but cargo);
//! - [`gemm_naive`], a triple loop kept as the reference the others are tested against.
//!
//! A per-thread counter of kernel calls and floating-point operations lets tests prove that work
//! was skipped (a frozen weight's gradient is never computed), not merely thrown away.

mod matmul;

pub use matmul::{gemm, gemm_naive, stats, KernelStats};
