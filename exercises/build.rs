//! Lets grading skip exercises that do not compile, so that one broken exercise never blocks the
//! grading of the others. `TUNELAB_EXERCISES_SKIP=name1,name2` emits `cfg(skip_name1)`, … and
//! `lib.rs` and the graders gate each exercise's module on `not(skip_<name>)`. Every exercise
//! named in `info.toml` gets its cfg declared, so the names are checked (`check-cfg`).
//! `tunelab exercises` sets the variable after reading which files the compiler rejected; only
//! this crate recompiles when it changes.

use std::env;
use std::fs;

fn main() {
    println!("cargo::rerun-if-changed=info.toml");
    println!("cargo::rerun-if-env-changed=TUNELAB_EXERCISES_SKIP");
    let info = fs::read_to_string("info.toml").expect("exercises/info.toml is readable");
    // The `name = "…"` lines of info.toml: one per exercise.
    for line in info.lines() {
        if let Some(name) = line
            .trim()
            .strip_prefix("name = \"")
            .and_then(|rest| rest.strip_suffix('"'))
        {
            println!("cargo::rustc-check-cfg=cfg(skip_{name})");
        }
    }
    let skip = env::var("TUNELAB_EXERCISES_SKIP").unwrap_or_default();
    for name in skip.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        // Only identifiers: anything else is not an exercise name and would break the cfg.
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            println!("cargo::rustc-cfg=skip_{name}");
        }
    }
}
