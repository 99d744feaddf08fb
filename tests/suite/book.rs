//! The book's structure, checked without mdbook (which only warns on some of these): every
//! chapter listed in `book/src/SUMMARY.md` exists, every `{{#include file:anchor}}` names a file
//! that exists and an anchor that file defines, and every relative link resolves.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src")
}

/// The targets of markdown links `[text](target)` in `text`.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(j) = rest.find(')') {
            out.push(rest[..j].to_string());
            rest = &rest[j..];
        }
    }
    out
}

/// The chapters SUMMARY.md lists, relative to book/src.
fn chapters() -> Vec<String> {
    let summary = std::fs::read_to_string(src().join("SUMMARY.md")).expect("SUMMARY.md");
    links(&summary)
        .into_iter()
        .filter(|l| !l.is_empty())
        .collect()
}

/// The `{{#include path}}` / `{{#include path:anchor}}` / `{{#rustdoc_include ...}}` directives.
fn includes(text: &str) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for directive in ["{{#include ", "{{#rustdoc_include "] {
        let mut rest = text;
        while let Some(i) = rest.find(directive) {
            rest = &rest[i + directive.len()..];
            let end = rest.find("}}").expect("closed directive");
            let arg = rest[..end].trim();
            let (path, anchor) = match arg.split_once(':') {
                // A line range (`file:10:20`, `file:5:`) is not an anchor.
                Some((p, a)) if !a.starts_with(|c: char| c.is_ascii_digit()) => {
                    (p, Some(a.to_string()))
                }
                Some((p, _)) => (p, None),
                None => (arg, None),
            };
            out.push((path.to_string(), anchor));
            rest = &rest[end..];
        }
    }
    out
}

/// Strips fenced code blocks, where `](` is code, not a link.
fn prose(text: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_listed_chapter_exists_and_has_content() {
    let chapters = chapters();
    assert!(
        chapters.len() >= 20,
        "SUMMARY.md lists {} chapters",
        chapters.len()
    );
    for c in &chapters {
        let path = src().join(c);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("chapter {c} in SUMMARY.md: {e}"));
        let words = text.split_whitespace().count();
        assert!(words >= 100, "chapter {c} has only {words} words");
    }
}

#[test]
fn every_include_and_anchor_exists() {
    let mut missing = Vec::new();
    for c in chapters() {
        let chapter = src().join(&c);
        let text = std::fs::read_to_string(&chapter).expect("chapter exists");
        for (file, anchor) in includes(&text) {
            let path = chapter.parent().expect("in src").join(&file);
            let Ok(body) = std::fs::read_to_string(&path) else {
                missing.push(format!("{c}: {file} does not exist"));
                continue;
            };
            if let Some(a) = anchor {
                let defined = body.lines().any(|l| {
                    let l = l.trim_start();
                    ["// ANCHOR: ", "# ANCHOR: ", "<!-- ANCHOR: "]
                        .iter()
                        .find_map(|p| l.strip_prefix(p))
                        .is_some_and(|n| n.trim().trim_end_matches("-->").trim() == a)
                });
                let closed = body
                    .lines()
                    .any(|l| l.contains(&format!("ANCHOR_END: {a}")));
                if !(defined && closed) {
                    missing.push(format!(
                        "{c}: anchor {a:?} not defined (or not closed) in {file}"
                    ));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "broken includes:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_relative_link_resolves() {
    let listed: BTreeSet<String> = chapters().into_iter().collect();
    let mut broken = Vec::new();
    for c in &listed {
        let chapter = src().join(c);
        let text = std::fs::read_to_string(&chapter).expect("chapter exists");
        for link in links(&prose(&text)) {
            let target = link.split(['#', ' ']).next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let path = chapter.parent().expect("in src").join(target);
            if !path.exists() {
                broken.push(format!("{c}: {link}"));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// Every markdown file under `dir`, recursively (generated outputs are text, not markdown).
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(markdown_files(&path));
        } else if path.extension().is_some_and(|e| e == "md") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The books: the English one, and the Vietnamese edition where it exists.
fn book_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("book");
    [root.join("src"), root.join("vi/src")]
        .into_iter()
        .filter(|p| p.is_dir())
        .collect()
}

#[test]
fn every_formula_in_both_books_converts_to_mathml() {
    let mut failed = Vec::new();
    let mut converted = 0;
    for dir in book_sources() {
        for path in markdown_files(&dir) {
            let text = std::fs::read_to_string(&path).expect("readable chapter");
            let name = path
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(&path);
            converted += tunelab_book_math::formulas(&text).map_or(0, |f| f.len());
            match tunelab_book_math::convert(&text) {
                Ok(out) => {
                    // Nothing that MathJax would have read as a delimiter (`\\[`, `\\(`, `$$`)
                    // is left outside code.
                    match tunelab_book_math::formulas(&out) {
                        Ok(left) if left.is_empty() => {}
                        Ok(left) => failed.push(format!(
                            "{}: {} formula(s) left after converting",
                            name.display(),
                            left.len()
                        )),
                        Err(e) => failed.push(format!("{}: {e}", name.display())),
                    }
                }
                Err(errors) => {
                    failed.extend(errors.iter().map(|e| format!("{}: {e}", name.display())))
                }
            }
        }
    }
    assert!(
        failed.is_empty(),
        "formulas that did not convert:\n{}",
        failed.join("\n")
    );
    // The book has formulas: a scan that finds none is broken, not clean.
    assert!(
        converted >= 100,
        "only {converted} formulas found in the books"
    );
}

#[test]
fn the_book_uses_no_formula_script_from_the_network() {
    let toml = std::fs::read_to_string(src().join("../book.toml")).expect("book.toml");
    assert!(
        !toml.contains("mathjax-support = true"),
        "book.toml loads MathJax from a CDN; formulas are rendered at build time by book/math"
    );
    assert!(
        toml.contains("[preprocessor.math]") && toml.contains("tunelab-book-math"),
        "book.toml does not run the formula preprocessor"
    );
}

#[test]
fn chapter_numbers_are_not_doubled_in_the_sidebar() {
    // SUMMARY's titles carry the notes' numbers ("3.1 The losses"), so mdbook's own section
    // labels must be off, or the sidebar reads "3.1. 3.1 The losses".
    let summary = std::fs::read_to_string(src().join("SUMMARY.md")).expect("SUMMARY.md");
    let numbered = summary.lines().any(|l| {
        l.trim_start()
            .trim_start_matches("- ")
            .trim_start_matches('[')
            .starts_with(|c: char| c.is_ascii_digit())
    });
    let toml = std::fs::read_to_string(src().join("../book.toml")).expect("book.toml");
    assert!(
        numbered,
        "SUMMARY.md has no numbered titles: this check is stale"
    );
    assert!(
        toml.lines()
            .any(|l| l.replace(' ', "") == "no-section-label=true"),
        "numbered titles in SUMMARY.md need `no-section-label = true` in book.toml"
    );
}

#[test]
fn every_interview_question_is_in_the_book() {
    let mut text = String::new();
    for path in markdown_files(&src()) {
        text.push_str(&std::fs::read_to_string(&path).expect("readable chapter"));
    }
    let missing: Vec<usize> = tunelab::lab::interview::QUESTIONS
        .iter()
        .map(|q| q.number)
        .filter(|n| !text.contains(&format!("generated/interview-{n}.txt}}}}")))
        .collect();
    assert!(
        missing.is_empty(),
        "interview questions with no `{{{{#include …/generated/interview-N.txt}}}}` in book/src: {missing:?}"
    );
    for q in tunelab::lab::interview::QUESTIONS {
        let path = src().join(format!("generated/interview-{}.txt", q.number));
        assert!(
            path.exists(),
            "{} does not exist: run tools/book_outputs.sh interview",
            path.display()
        );
    }
}

#[test]
fn the_readme_lists_every_command_and_how_to_read_the_book() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .arg("--help")
        .output()
        .expect("runs tunelab --help");
    let help = String::from_utf8(help.stdout).expect("utf-8");
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 15, "parsed only {commands:?} from --help");
    let readme = std::fs::read_to_string(src().join("../../README.md")).expect("README.md");
    let missing: Vec<&&str> = commands
        .iter()
        .filter(|c| !readme.contains(&format!("| `{c}")))
        .collect();
    assert!(
        missing.is_empty(),
        "README's command table has no row for {missing:?}"
    );
    assert!(
        readme.contains("mdbook serve book"),
        "README does not say how to read the book"
    );
}
