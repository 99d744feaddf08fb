//! The command line's pieces: argument groups shared by several commands, the progress display,
//! and one function per command (`src/main.rs` only parses and dispatches).
//!
//! Each command module holds its clap `Args` struct and a `run` that calls the library and
//! prints; nothing here computes a number the library does not.

pub mod align;
pub mod args;
pub mod compare;
pub mod finetune;
pub mod infer;
pub mod lab;
pub mod merge;
pub mod pretrain;
pub mod progress;
pub mod sweep;

use std::process::ExitCode;
use tunelab::train::trainer::Metrics;

/// What every command returns: an exit code, or an error `main` prints.
pub type Outcome = tunelab::Result<ExitCode>;

/// Prints the error and fails.
pub fn fail(e: tunelab::Error) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

/// `name value, name value` with four decimals.
pub fn fmt_metrics(m: &Metrics) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v:.4}"))
        .collect::<Vec<_>>()
        .join(", ")
}
