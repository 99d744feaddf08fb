//! `tunelab exercises`: progress, grading and hints for the graded exercises in `exercises/`.
//!
//! The exercises are the modules of the `tunelab-exercises` crate (a workspace member) and its
//! integration test grades them, one test module per exercise (`graders::<name>::<check>`). The
//! crate's library does not depend on tunelab (only its test does), so an exercise cannot call
//! the implementation it is graded against. Grading runs `cargo test` on that crate, as
//! rustlings shells out to the compiler, and reads which checks passed; an exercise passes when
//! all its checks do.
//!
//! **One broken exercise never blocks the others.** Cargo's JSON messages say which file each
//! compile error is in; the exercises (or graders) with errors are left out of the build through
//! `TUNELAB_EXERCISES_SKIP` (the crate's `build.rs` turns it into `skip_<name>` cfgs) and the
//! build is retried, at most once per exercise. A skipped exercise fails with the compiler's first
//! error (file:line and message). `exercises/info.toml` gives the order, the files, the levels,
//! the topics and the hints in three tiers.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One entry of `info.toml`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Exercise {
    /// The module name, also the grader module's.
    pub name: String,
    /// The file, relative to `exercises/` (and to `solutions/`).
    pub path: String,
    /// How hard it is: warm-up, core, hard or capstone (the list is ordered by it).
    pub level: String,
    pub topic: String,
    /// Three tiers: a nudge, the idea, the formula (`tunelab exercises hint N --tier K`).
    pub hints: Vec<String>,
}

/// The levels in order of difficulty.
pub const LEVELS: [&str; 4] = ["warm-up", "core", "hard", "capstone"];

#[derive(Deserialize)]
struct Info {
    exercises: Vec<Exercise>,
}

/// The outcome of one exercise's checks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grade {
    /// 1-based position in `info.toml`.
    pub n: usize,
    pub name: String,
    pub path: String,
    pub level: String,
    pub topic: String,
    pub passed: bool,
    /// Each check by name, with whether it passed.
    pub checks: Vec<(String, bool)>,
    /// The first failing check's message, or the compiler's first error if it did not compile.
    pub failure: Option<String>,
    /// Whether it was left out of the build because it (or its grader) did not compile.
    pub compile_error: bool,
}

/// How to run the grading build.
#[derive(Debug, Clone, Default)]
pub struct GradeOptions {
    /// Grade the reference solutions (`--features solutions`).
    pub solutions: bool,
    /// Build with `--release` (the profile the rest of tunelab was built with, to reuse it).
    pub release: bool,
    /// `CARGO_TARGET_DIR` for the build (default: cargo's own choice).
    pub target_dir: Option<PathBuf>,
}

/// The repository root holding `exercises/info.toml`: the current directory if it has one,
/// else the source tree this binary was built from.
pub fn find_root() -> Result<PathBuf> {
    let here = PathBuf::from(".");
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [here, built]
        .into_iter()
        .find(|d| d.join("exercises/info.toml").is_file())
        .ok_or_else(|| Error::Invalid {
            op: "exercises",
            detail: "no exercises/info.toml here or in the source tree; run from the repository"
                .into(),
        })
}

/// Reads `exercises/info.toml` under `root`.
pub fn load(root: &Path) -> Result<Vec<Exercise>> {
    let path = root.join("exercises/info.toml");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })?;
    let info: Info = toml::from_str(&text).map_err(|e| Error::Data {
        path: path.display().to_string(),
        line: e
            .span()
            .map_or(0, |s| text[..s.start].lines().count().max(1)),
        detail: e.message().to_string(),
    })?;
    for e in &info.exercises {
        let problem = if e.hints.len() != 3 || e.hints.iter().any(|h| h.trim().is_empty()) {
            Some("needs three non-empty hints (a nudge, the idea, the formula)".to_string())
        } else if !LEVELS.contains(&e.level.as_str()) {
            Some(format!("level {:?} is not one of {LEVELS:?}", e.level))
        } else if !e
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            Some("the name must be a Rust identifier".to_string())
        } else {
            None
        };
        if let Some(detail) = problem {
            return Err(Error::Data {
                path: path.display().to_string(),
                line: text
                    .find(&format!("name = \"{}\"", e.name))
                    .map_or(0, |at| text[..at].lines().count() + 1),
                detail: format!("exercise {}: {detail}", e.name),
            });
        }
    }
    Ok(info.exercises)
}

/// The hint of tier `tier` (1 to 3) of an exercise, or all three with `None`, with how to see
/// the next tier.
pub fn hint(n: usize, e: &Exercise, tier: Option<usize>) -> Result<String> {
    let head = format!(
        "{n}. {} (exercises/{}, {}): {}\n",
        e.name, e.path, e.level, e.topic
    );
    let names = ["a nudge", "the idea", "the formula"];
    let Some(tier) = tier else {
        let all: Vec<String> = e
            .hints
            .iter()
            .zip(names)
            .enumerate()
            .map(|(i, (h, name))| format!("hint {} ({name}): {}", i + 1, h.trim()))
            .collect();
        return Ok(head + &all.join("\n") + "\n");
    };
    let text = tier
        .checked_sub(1)
        .and_then(|i| e.hints.get(i))
        .ok_or_else(|| Error::Invalid {
            op: "exercises hint",
            detail: format!("--tier {tier}: the tiers are 1 to {}", e.hints.len()),
        })?;
    let mut s = head + &format!("hint {tier} ({}): {}\n", names[tier - 1], text.trim());
    if tier < e.hints.len() {
        s += &format!(
            "(more: `tunelab exercises hint {n} --tier {}`, or `--all`)\n",
            tier + 1
        );
    }
    Ok(s)
}

/// The exercise named by `key`: its 1-based number or its name.
pub fn find<'a>(exercises: &'a [Exercise], key: &str) -> Result<(usize, &'a Exercise)> {
    let by_number = key
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|i| exercises.get(i).map(|e| (i + 1, e)));
    by_number
        .or_else(|| {
            exercises
                .iter()
                .enumerate()
                .find(|(_, e)| e.name == key)
                .map(|(i, e)| (i + 1, e))
        })
        .ok_or_else(|| Error::Invalid {
            op: "exercises",
            detail: format!(
                "no exercise {key:?}: give a number from 1 to {} or a name",
                exercises.len()
            ),
        })
}

/// Compiles and grades every exercise (or, with `solutions`, every reference solution) of the
/// repository at `root`.
pub fn grade(root: &Path, solutions: bool) -> Result<Vec<Grade>> {
    grade_with(
        root,
        &GradeOptions {
            solutions,
            ..GradeOptions::default()
        },
    )
}

/// [`grade`] with the build's options. Exercises whose files (or graders) do not compile are
/// skipped and the build retried, so the others are still graded; each skipped one fails with
/// the compiler's first error.
pub fn grade_with(root: &Path, options: &GradeOptions) -> Result<Vec<Grade>> {
    let exercises = load(root)?;
    // Skipped exercises, with the first error found in each.
    let mut skipped: BTreeMap<String, String> = BTreeMap::new();
    for _ in 0..=exercises.len() {
        let out = run_cargo(root, options, &skipped)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let errors = compile_errors(&stdout);
        if errors.is_empty() {
            let mut grades = parse(&stdout, &exercises);
            if grades.iter().all(|g| g.checks.is_empty()) && skipped.len() < exercises.len() {
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(Error::Invalid {
                    op: "exercises",
                    detail: format!("cargo test ran no grader:\n{}", tail_lines(&stderr, 30)),
                });
            }
            for g in &mut grades {
                if let Some(error) = skipped.get(&g.name) {
                    g.failure = Some(error.clone());
                    g.compile_error = true;
                }
            }
            return Ok(grades);
        }
        let mut new = Vec::new();
        for e in &errors {
            match owner(&e.file, &exercises) {
                Some(name) if !skipped.contains_key(name) => {
                    skipped.insert(name.to_string(), e.to_string());
                    new.push(name);
                }
                Some(_) => {}
                None => {
                    return Err(Error::Invalid {
                        op: "exercises",
                        detail: format!(
                            "the exercise crate does not compile, outside any exercise:\n{e}"
                        ),
                    })
                }
            }
        }
        if new.is_empty() {
            let first = &errors[0];
            return Err(Error::Invalid {
                op: "exercises",
                detail: format!("an exercise still does not compile after skipping it: {first}"),
            });
        }
    }
    Err(Error::Invalid {
        op: "exercises",
        detail: format!(
            "still not compiling after skipping {}",
            skipped.keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    })
}

/// Runs `cargo test` on the exercise crate with `skipped` left out of the build.
fn run_cargo(
    root: &Path,
    options: &GradeOptions,
    skipped: &BTreeMap<String, String>,
) -> Result<std::process::Output> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = root.join("exercises/Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .arg("test")
        .arg("--manifest-path")
        .arg(&manifest)
        .args(["--no-fail-fast", "--message-format=json"])
        .env("RUST_BACKTRACE", "0")
        .env(
            "TUNELAB_EXERCISES_SKIP",
            skipped.keys().cloned().collect::<Vec<_>>().join(","),
        );
    if options.solutions {
        cmd.args(["--features", "solutions"]);
    }
    if options.release {
        cmd.arg("--release");
    }
    if let Some(dir) = &options.target_dir {
        cmd.env("CARGO_TARGET_DIR", dir);
    }
    cmd.output().map_err(|source| Error::Io {
        path: "cargo".into(),
        source,
    })
}

/// The last `n` lines of `text`.
fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// One compile error: where its primary span is, and the message.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: error: {}", self.file, self.line, self.message)
    }
}

/// The errors among cargo's JSON messages (`"reason": "compiler-message"`, level `error`), each
/// at its primary span; errors without a span (the "aborting" summary) are left out.
pub fn compile_errors(json_lines: &str) -> Vec<CompileError> {
    json_lines
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["reason"] == "compiler-message" && v["message"]["level"] == "error")
        .filter_map(|v| {
            let m = &v["message"];
            let span = m["spans"]
                .as_array()?
                .iter()
                .find(|s| s["is_primary"] == true)?;
            Some(CompileError {
                file: span["file_name"].as_str()?.to_string(),
                line: span["line_start"].as_u64().unwrap_or(0) as usize,
                message: m["message"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect()
}

/// The exercise a file belongs to: its exercise or solution file, or its grader.
pub fn owner<'a>(file: &str, exercises: &'a [Exercise]) -> Option<&'a str> {
    let file = file.replace('\\', "/");
    exercises
        .iter()
        .find(|e| {
            file.ends_with(&format!("/{}", e.path))
                || file == e.path
                || file.ends_with(&format!("graders/{}.rs", e.name))
        })
        .map(|e| e.name.as_str())
}

/// Reads libtest's output: `test graders::<name>::<check> ... ok|FAILED` lines, and each
/// failure's message from its `---- graders::<name>::<check> stdout ----` section.
pub fn parse(output: &str, exercises: &[Exercise]) -> Vec<Grade> {
    let mut checks: BTreeMap<&str, Vec<(String, bool)>> = BTreeMap::new();
    let mut failures: BTreeMap<&str, String> = BTreeMap::new();
    let mut lines = output.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("test graders::") {
            let Some((test, result)) = rest.split_once(" ... ") else {
                continue;
            };
            if let Some((name, check)) = test.split_once("::") {
                checks
                    .entry(name)
                    .or_default()
                    .push((check.to_string(), result.trim() == "ok"));
            }
        } else if let Some(test) = line
            .strip_prefix("---- graders::")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            let name = test.split("::").next().unwrap_or(test);
            let mut message = Vec::new();
            while lines.next_if(|l| l.is_empty()).is_some() {}
            while let Some(l) = lines.next_if(|l| !l.starts_with("---- ") && !l.is_empty()) {
                if !l.starts_with("note: run with") {
                    message.push(l);
                }
            }
            failures.entry(name).or_insert_with(|| message.join("\n"));
        }
    }
    exercises
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let c = checks.remove(e.name.as_str()).unwrap_or_default();
            Grade {
                n: i + 1,
                name: e.name.clone(),
                path: e.path.clone(),
                level: e.level.clone(),
                topic: e.topic.clone(),
                passed: !c.is_empty() && c.iter().all(|(_, ok)| *ok),
                checks: c,
                failure: failures.get(e.name.as_str()).cloned(),
                compile_error: false,
            }
        })
        .collect()
}

/// The progress list: one line per exercise under its level (the list rises in difficulty),
/// then the next one to do.
pub fn progress(grades: &[Grade]) -> String {
    let mut s = String::new();
    let mut level = "";
    for g in grades {
        if g.level != level {
            level = &g.level;
            s += &format!("{}{level}\n", if s.is_empty() { "" } else { "\n" });
        }
        let mark = match (g.passed, g.compile_error) {
            (true, _) => "✓",
            (false, true) => "✗",
            (false, false) => "·",
        };
        s += &format!(
            "{mark} {:>2}  {:<20} {:<42} {}\n",
            g.n,
            g.name,
            format!("exercises/{}", g.path),
            g.topic
        );
    }
    let broken = grades.iter().filter(|g| g.compile_error).count();
    if broken > 0 {
        s += &format!(
            "\n✗ does not compile ({broken}): left out of the build so the others were graded; \
             `tunelab exercises verify` shows the error.\n"
        );
    }
    let done = grades.iter().filter(|g| g.passed).count();
    s += &format!("\n{done}/{} done", grades.len());
    match grades.iter().find(|g| !g.passed) {
        Some(g) => {
            s += &format!(
                ". Next: {} exercises/{} (`tunelab exercises hint {}` for a hint).\n",
                g.n, g.path, g.n
            )
        }
        None => s += ". All graded exercises pass.\n",
    }
    s
}

/// The verification report: every exercise with each failing check and its message, and the
/// score.
pub fn report(grades: &[Grade]) -> String {
    let mut s = String::new();
    for g in grades {
        let passed = g.checks.iter().filter(|(_, ok)| *ok).count();
        let mark = if g.passed { "PASS" } else { "FAIL" };
        let checks = if g.compile_error {
            "does not compile".to_string()
        } else {
            format!("{passed}/{} checks", g.checks.len())
        };
        s += &format!("{mark} {:>2} {:<20} {checks}\n", g.n, g.name);
        if !g.passed {
            for (check, _) in g.checks.iter().filter(|(_, ok)| !*ok) {
                s += &format!("       ✗ {check}\n");
            }
            if let Some(m) = &g.failure {
                for l in m.lines().take(4) {
                    s += &format!("         {l}\n");
                }
            }
        }
    }
    let done = grades.iter().filter(|g| g.passed).count();
    let pct = 100.0 * done as f64 / grades.len().max(1) as f64;
    s += &format!("\nScore: {done}/{} exercises ({pct:.0}%)\n", grades.len());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(name: &str) -> Exercise {
        Exercise {
            name: name.into(),
            path: format!("01_x/{name}.rs"),
            level: "core".into(),
            topic: String::new(),
            hints: vec!["a".into(), "b".into(), "c".into()],
        }
    }

    #[test]
    fn parses_libtest_output() {
        let out = "\
running 3 tests
test graders::softmax::matches_tunelab ... ok
test graders::adamw::five_steps ... FAILED
test graders::adamw::other ... ok

failures:

---- graders::adamw::five_steps stdout ----

thread 'graders::adamw::five_steps' panicked at exercises/06_optim/adamw.rs:3:5:
not yet implemented
note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace

";
        let grades = parse(out, &[ex("softmax"), ex("adamw"), ex("bitfit")]);
        assert!(grades[0].passed);
        assert!(!grades[1].passed);
        assert_eq!(grades[1].checks.len(), 2);
        assert!(grades[1]
            .failure
            .as_deref()
            .unwrap()
            .contains("not yet implemented"));
        assert!(!grades[2].passed && grades[2].checks.is_empty());
        assert_eq!(grades[2].n, 3);
    }

    #[test]
    fn info_toml_lists_every_exercise_and_solution() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let exercises = load(root).unwrap();
        assert!(exercises.len() >= 32, "{} exercises", exercises.len());
        for e in &exercises {
            assert!(root.join("exercises").join(&e.path).is_file(), "{}", e.path);
            assert!(root.join("solutions").join(&e.path).is_file(), "{}", e.path);
            let grader = root
                .join("exercises/graders")
                .join(format!("{}.rs", e.name));
            assert!(grader.is_file(), "{} has no grader", e.name);
        }
        // A rising curve: the levels never go back down, and it ends on capstones.
        let rank = |e: &Exercise| LEVELS.iter().position(|l| *l == e.level).unwrap();
        assert!(
            exercises.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
            "info.toml is not ordered by level"
        );
        assert_eq!(exercises.last().unwrap().level, "capstone");
        assert_eq!(find(&exercises, "1").unwrap().1.name, exercises[0].name);
        assert_eq!(find(&exercises, &exercises[2].name).unwrap().0, 3);
        assert!(find(&exercises, "0").is_err() && find(&exercises, "nope").is_err());
    }

    #[test]
    fn hints_come_one_tier_at_a_time() {
        let e = ex("softmax");
        let first = hint(3, &e, Some(1)).unwrap();
        assert!(first.contains("hint 1 (a nudge): a"), "{first}");
        assert!(
            !first.contains(": b"),
            "the first tier shows only the nudge: {first}"
        );
        assert!(first.contains("hint 3 --tier 2"), "{first}");
        let last = hint(3, &e, Some(3)).unwrap();
        assert!(last.contains("hint 3 (the formula): c") && !last.contains("more:"));
        let all = hint(3, &e, None).unwrap();
        assert!(all.contains(": a") && all.contains(": b") && all.contains(": c"));
        assert!(hint(3, &e, Some(4)).is_err() && hint(3, &e, Some(0)).is_err());
    }

    #[test]
    fn compile_errors_are_attributed_to_their_exercise() {
        let json = r#"{"reason":"compiler-artifact","package_id":"x"}
{"reason":"compiler-message","message":{"level":"warning","message":"unused","spans":[{"file_name":"exercises/01_x/adamw.rs","line_start":1,"is_primary":true}]}}
{"reason":"compiler-message","message":{"level":"error","message":"expected `;`","spans":[{"file_name":"exercises/../solutions/01_x/softmax.rs","line_start":7,"is_primary":true}]}}
{"reason":"compiler-message","message":{"level":"error","message":"mismatched types","spans":[{"file_name":"exercises/graders/adamw.rs","line_start":12,"is_primary":true}]}}
{"reason":"compiler-message","message":{"level":"error","message":"aborting due to 1 previous error","spans":[]}}
test graders::bitfit::ok ... ok"#;
        let errors = compile_errors(json);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(
            errors[0].to_string(),
            "exercises/../solutions/01_x/softmax.rs:7: error: expected `;`"
        );
        let list = [ex("softmax"), ex("adamw")];
        assert_eq!(owner(&errors[0].file, &list), Some("softmax"));
        assert_eq!(owner(&errors[1].file, &list), Some("adamw"));
        assert_eq!(owner("exercises/lib.rs", &list), None);
    }
}
