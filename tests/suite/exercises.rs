//! The exercises cannot be gamed, and one broken exercise does not block the others: grading a
//! copy of the exercise crate with the reference solutions, one of them broken (a syntax error)
//! and one rewritten to call tunelab's implementation of what it asks (the reference), fails
//! exactly those two, each with its compiler error, and passes every other exercise.
//!
//! The copy is a workspace of its own whose tunelab dependency is this repository, built into
//! this repository's target directory with the profile this test was built with, so tunelab is
//! not compiled again: only the exercise crate is, once per grading round (two or three rounds).

use std::fs;
use std::path::{Path, PathBuf};
use tunelab::lab::exercises::{self, GradeOptions};

/// Copies `from` into `to`, recursively.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A standalone copy of `exercises/` and `solutions/` whose tunelab is this repository, with the
/// workspace's profiles (and tunelab's settings as a member, so its build is reused).
fn prepare_copy(repo: &Path) -> PathBuf {
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("exercises_gaming");
    let _ = fs::remove_dir_all(&root);
    copy_tree(&repo.join("exercises"), &root.join("exercises"));
    copy_tree(&repo.join("solutions"), &root.join("solutions"));
    let manifest = root.join("exercises/Cargo.toml");
    let text = fs::read_to_string(&manifest).unwrap();
    let dependency = "tunelab = { path = \"..\" }";
    assert!(
        text.contains(dependency),
        "exercises/Cargo.toml: {dependency} not found"
    );
    let workspace = fs::read_to_string(repo.join("Cargo.toml")).unwrap();
    let profiles = &workspace[workspace
        .find("\n[profile.")
        .expect("the workspace's profiles")..];
    let text = text.replace(
        dependency,
        &format!("tunelab = {{ path = {:?} }}", repo.display().to_string()),
    ) + "\n[workspace]\n"
        + profiles
        // As a non-member, tunelab would take `package."*"`'s settings: give it back the ones it
        // has as a member (dev's, and test's opt-level), so that its build is reused.
        + "\n[profile.dev.package.tunelab]\nopt-level = 1\ndebug = \"line-tables-only\"\n\
           \n[profile.test.package.tunelab]\nopt-level = 2\n";
    fs::write(&manifest, text).unwrap();
    fs::copy(repo.join("Cargo.lock"), root.join("exercises/Cargo.lock")).unwrap();
    root
}

#[test]
fn a_broken_exercise_and_one_calling_tunelab_fail_alone() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = prepare_copy(repo);
    // Broken: a syntax error at the end of softmax's solution.
    let softmax = root.join("solutions/01_losses/softmax.rs");
    let mut text = fs::read_to_string(&softmax).unwrap();
    text += "\npub fn broken( {\n";
    fs::write(&softmax, text).unwrap();
    // Gamed: the TIES exercise answered by calling tunelab's own TIES merge.
    let ties = root.join("solutions/10_merging/ties_merge.rs");
    let text = fs::read_to_string(&ties).unwrap();
    let at = text.find("pub fn ties(").unwrap();
    let gamed = text[..at].to_string()
        + "pub fn ties(task_vectors: &[Vec<f64>], weights: &[f64], density: f64) -> Vec<f64> {\n    \
           use tunelab::lab::merge::{ties, MajoritySign};\n    \
           ties(task_vectors, weights, density, MajoritySign::Total)\n}\n";
    fs::write(&ties, gamed).unwrap();

    let options = GradeOptions {
        solutions: true,
        release: !cfg!(debug_assertions),
        target_dir: Some(repo.join("target")),
    };
    let grades = exercises::grade_with(&root, &options).unwrap();
    assert!(grades.len() >= 32, "{} exercises", grades.len());
    let by_name = |name: &str| grades.iter().find(|g| g.name == name).unwrap();

    let broken = by_name("softmax");
    assert!(!broken.passed && broken.compile_error, "{broken:?}");
    let message = broken.failure.as_deref().unwrap();
    assert!(
        message.contains("solutions/01_losses/softmax.rs:"),
        "the failure names the file and line: {message}"
    );

    let gamed = by_name("ties_merge");
    assert!(!gamed.passed && gamed.compile_error, "{gamed:?}");
    let message = gamed.failure.as_deref().unwrap();
    assert!(
        message.contains("solutions/10_merging/ties_merge.rs:") && message.contains("tunelab"),
        "the failure says the exercise cannot use tunelab: {message}"
    );

    for g in &grades {
        if g.name != "softmax" && g.name != "ties_merge" {
            assert!(
                g.passed && !g.checks.is_empty(),
                "{} should pass: {:?}",
                g.name,
                g.failure
            );
        }
    }
}
