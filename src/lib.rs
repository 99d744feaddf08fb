//! tunelab — a fine-tuning lab: a from-scratch transformer on `ndarray` with hand-written
//! reverse-mode autodiff, and every classic fine-tuning method built on it.
//!
//! Data flows one way: text → tokens → batches → model (+ method) → loss → tape.backward →
//! optimizer → checkpoint/metrics. This crate is the library; `src/main.rs` is a thin CLI over it.
//!
//! Dimension letters, used in code, comments and the book:
//! B batch, T time (sequence length), S key length (T plus any prefix), C channels (d_model),
//! NH heads, HS head size (C / NH), V vocabulary, L layers, N rows (B*T flattened).

pub mod autodiff;
pub mod data;
pub mod error;
pub mod io;
pub mod kernels;
pub mod lab;
pub mod loss;
pub mod metrics;
pub mod nn;
pub mod optim;
pub mod peft;
pub mod tensor;
pub mod train;

pub use autodiff::{Grads, ParamId, ParamStore, Tape, Var};
pub use error::{Error, Result};
pub use tensor::Float;
