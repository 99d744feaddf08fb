//! `tunelab exercises`: progress, grading and hints for the graded exercises in `exercises/`.
//!
//! The exercises are the modules of the `tunelab-exercises` crate (a workspace member) and its
//! tests grade them, one test module per exercise (`graders::<name>::<check>`). Grading runs
//! `cargo test -p tunelab-exercises` once, as rustlings shells out to the compiler, and reads
//! which checks passed; an exercise passes when all its checks do. `exercises/info.toml` gives
//! the order, the files, the topics and the hints.

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
    pub topic: String,
    pub hint: String,
}

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
    pub topic: String,
    pub passed: bool,
    /// Each check by name, with whether it passed.
    pub checks: Vec<(String, bool)>,
    /// The first failing check's message, if any.
    pub failure: Option<String>,
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
    Ok(info.exercises)
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

/// Compiles and grades every exercise (or, with `solutions`, every reference solution).
pub fn grade(root: &Path, solutions: bool) -> Result<Vec<Grade>> {
    let exercises = load(root)?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["test", "-p", "tunelab-exercises", "--no-fail-fast"])
        .env("RUST_BACKTRACE", "0");
    if solutions {
        cmd.args(["--features", "solutions"]);
    }
    let out = cmd.output().map_err(|source| Error::Io {
        path: "cargo".into(),
        source,
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let grades = parse(&stdout, &exercises);
    if grades.iter().all(|g| g.checks.is_empty()) {
        // Nothing ran: the exercises did not compile. Show the compiler's errors.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let errors: Vec<&str> = stderr
            .lines()
            .skip_while(|l| !l.starts_with("error"))
            .take(60)
            .collect();
        return Err(Error::Invalid {
            op: "exercises",
            detail: format!("the exercises do not compile:\n{}", errors.join("\n")),
        });
    }
    Ok(grades)
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
                topic: e.topic.clone(),
                passed: !c.is_empty() && c.iter().all(|(_, ok)| *ok),
                checks: c,
                failure: failures.get(e.name.as_str()).cloned(),
            }
        })
        .collect()
}

/// The progress list: one line per exercise, then the next one to do.
pub fn progress(grades: &[Grade]) -> String {
    let mut s = String::new();
    for g in grades {
        let mark = if g.passed { "✓" } else { "·" };
        s += &format!(
            "{mark} {:>2}  {:<20} {:<42} {}\n",
            g.n,
            g.name,
            format!("exercises/{}", g.path),
            g.topic
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
        s += &format!(
            "{mark} {:>2} {:<20} {passed}/{} checks\n",
            g.n,
            g.name,
            g.checks.len()
        );
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
            topic: String::new(),
            hint: String::new(),
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
        assert!(exercises.len() >= 18);
        for e in &exercises {
            assert!(root.join("exercises").join(&e.path).is_file(), "{}", e.path);
            assert!(root.join("solutions").join(&e.path).is_file(), "{}", e.path);
            assert!(!e.hint.trim().is_empty(), "{} has no hint", e.name);
        }
        assert_eq!(find(&exercises, "1").unwrap().1.name, exercises[0].name);
        assert_eq!(find(&exercises, &exercises[2].name).unwrap().0, 3);
        assert!(find(&exercises, "0").is_err() && find(&exercises, "nope").is_err());
    }
}
