//! `tunelab gradcheck`: every op's finite-difference check, as a table.

use crate::autodiff::gradcheck::{self, CheckResult, TOLERANCE};
use crate::error::Result;
use std::fmt::Write;

/// Runs the whole suite (or one op's cases).
pub fn run(op: Option<&str>) -> Result<Vec<CheckResult>> {
    gradcheck::run(op)
}

/// The table `tunelab gradcheck` prints: op, shapes, max relative error, pass/fail, and a count.
pub fn table(results: &[CheckResult]) -> String {
    let wcase = results
        .iter()
        .map(|r| r.case.chars().count())
        .max()
        .unwrap_or(4)
        .max(6);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<13} {:<wcase$} {:>12} {:>12}  result",
        "op", "shapes", "max rel err", "max abs err"
    );
    let _ = writeln!(s, "{}", "-".repeat(13 + wcase + 36));
    for r in results {
        let pad = wcase - r.case.chars().count();
        let _ = writeln!(
            s,
            "{:<13} {}{} {:>12.2e} {:>12.2e}  {}",
            r.op,
            r.case,
            " ".repeat(pad),
            r.max_rel_err,
            r.max_abs_err,
            if r.passed { "ok" } else { "FAIL" }
        );
    }
    let passed = results.iter().filter(|r| r.passed).count();
    let _ = writeln!(s, "\ntolerance {TOLERANCE:.0e} (f64, central differences)");
    let _ = writeln!(
        s,
        "gradcheck: {} passed, {} failed",
        passed,
        results.len() - passed
    );
    s
}
