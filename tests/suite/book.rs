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
