//! The `tunelab` command line: a thin layer over the library.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "tunelab",
    version,
    about = "A fine-tuning lab: a from-scratch transformer, every fine-tuning method, measured"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check every op's hand-written backward against finite differences in f64.
    ///
    /// Prints one row per case: the op, the input shapes, the largest relative and absolute
    /// error between the tape's gradient and central differences, and whether it is below 1e-6.
    Gradcheck {
        /// Only the cases of this op (matmul, attention, layer_norm, ...).
        #[arg(long)]
        op: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Gradcheck { op } => match tunelab::lab::gradcheck::run(op.as_deref()) {
            Ok(results) if results.is_empty() => {
                eprintln!(
                    "error: no gradient check for op {:?}",
                    op.unwrap_or_default()
                );
                ExitCode::FAILURE
            }
            Ok(results) => {
                print!("{}", tunelab::lab::gradcheck::table(&results));
                if results.iter().all(|r| r.passed) {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
