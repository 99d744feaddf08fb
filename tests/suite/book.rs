//! The books' structure, checked without mdbook (which only warns on some of these): every
//! chapter listed in a `SUMMARY.md` exists, every `{{#include file:anchor}}` names a file that
//! exists and an anchor that file defines, and every relative link resolves. Two books build into
//! one site: the English one (`book/src`, built at the root of `book/build`) and the Vietnamese
//! one (`book/vi/src`, built under `book/build/vi`), which includes the English book's generated
//! outputs and tunelab's code rather than copying them.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One of the two books: its source directory and where it lands in the built site.
struct Book {
    src: PathBuf,
    /// The directory under book/build it is built into ("" for the English book).
    site_dir: &'static str,
}

fn english() -> Book {
    Book {
        src: Path::new(env!("CARGO_MANIFEST_DIR")).join("book/src"),
        site_dir: "",
    }
}

fn vietnamese() -> Book {
    Book {
        src: Path::new(env!("CARGO_MANIFEST_DIR")).join("book/vi/src"),
        site_dir: "vi",
    }
}

fn src() -> PathBuf {
    english().src
}

/// The source file behind a relative link `target` from `chapter` of `book`, followed as the
/// browser follows it in the built site (a link may cross from one book into the other), with a
/// built page (`.html`) mapped back to its chapter (`.md`); None if it climbs above the site.
fn link_source(book: &Book, chapter: &str, target: &str) -> Option<PathBuf> {
    let mut parts: Vec<&str> = book.site_dir.split('/').filter(|p| !p.is_empty()).collect();
    parts.extend(chapter.split('/'));
    parts.pop(); // the chapter's own file name
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    let (root, rest) = match parts.split_first() {
        Some((&"vi", rest)) => (vietnamese().src, rest),
        _ => (english().src, &parts[..]),
    };
    let mut path = root.join(rest.join("/"));
    if path.extension().is_some_and(|e| e == "html") {
        path.set_extension("md");
    }
    Some(path)
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

/// The chapters the English SUMMARY.md lists, relative to book/src.
fn chapters() -> Vec<String> {
    chapters_of(&english())
}

/// The chapters `book`'s SUMMARY.md lists, relative to its src.
fn chapters_of(book: &Book) -> Vec<String> {
    let summary = std::fs::read_to_string(book.src.join("SUMMARY.md")).expect("SUMMARY.md");
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

/// Every `{{#include}}` of `book`'s chapters that names a missing file or an undefined anchor.
fn broken_includes(book: &Book) -> Vec<String> {
    let mut missing = Vec::new();
    for c in chapters_of(book) {
        let chapter = book.src.join(&c);
        let text = std::fs::read_to_string(&chapter).expect("chapter exists");
        for (file, anchor) in includes(&text) {
            // mdbook resolves an include relative to the chapter's own directory.
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
    missing
}

/// Every relative link of `book`'s chapters whose target does not exist in the built site.
fn broken_links(book: &Book) -> Vec<String> {
    let mut broken = Vec::new();
    for c in chapters_of(book) {
        let text = std::fs::read_to_string(book.src.join(&c)).expect("chapter exists");
        for link in links(&prose(&text)) {
            let target = link.split(['#', ' ']).next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !link_source(book, &c, target).is_some_and(|p| p.exists()) {
                broken.push(format!("{c}: {link}"));
            }
        }
    }
    broken
}

#[test]
fn every_include_and_anchor_exists() {
    let missing = broken_includes(&english());
    assert!(
        missing.is_empty(),
        "broken includes:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_relative_link_resolves() {
    let broken = broken_links(&english());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The Vietnamese edition: the notes' ten chapters, the interview answers and an introduction,
/// each with content, sharing the English book's generated outputs and code through includes.
#[test]
fn vietnamese_book_chapters_exist_and_have_content() {
    let vi = vietnamese();
    let vi_chapters = chapters_of(&vi);
    assert!(
        vi_chapters.len() >= 13,
        "book/vi/src/SUMMARY.md lists {} chapters",
        vi_chapters.len()
    );
    for c in &vi_chapters {
        let text = std::fs::read_to_string(vi.src.join(c))
            .unwrap_or_else(|e| panic!("chapter {c} in book/vi/src/SUMMARY.md: {e}"));
        let words = text.split_whitespace().count();
        assert!(words >= 100, "chapter {c} has only {words} words");
    }
    // Every notes chapter of the English book has its Vietnamese counterpart, of the same name.
    let translated: BTreeSet<&String> = vi_chapters.iter().collect();
    for c in chapters().iter().filter(|c| c.starts_with("notes/")) {
        assert!(translated.contains(c), "{c} has no Vietnamese chapter");
    }
    let toml = std::fs::read_to_string(vi.src.parent().unwrap().join("book.toml")).unwrap();
    assert!(toml.contains("language = \"vi\""), "{toml}");
    assert!(toml.contains("build-dir = \"../build/vi\""), "{toml}");
}

#[test]
fn every_vietnamese_include_points_to_an_existing_file() {
    let vi = vietnamese();
    let missing = broken_includes(&vi);
    assert!(
        missing.is_empty(),
        "broken includes in the Vietnamese book:\n{}",
        missing.join("\n")
    );
    // The interview chapters (9 and its sub-pages) show every question's Vietnamese answer and
    // English evidence.
    let shown: Vec<(String, Option<String>)> = chapters_of(&vi)
        .iter()
        .filter(|c| c.starts_with("notes/09-interview"))
        .flat_map(|c| includes(&std::fs::read_to_string(vi.src.join(c)).unwrap()))
        .collect();
    for n in tunelab::lab::interview::QUESTIONS.iter().map(|q| q.number) {
        for file in [
            format!("interview-{n}.vi.txt"),
            format!("interview-{n}.txt"),
        ] {
            assert!(
                shown.iter().any(|(p, _)| p.ends_with(&format!("/{file}"))),
                "no Vietnamese interview chapter includes {file}"
            );
        }
    }
}

#[test]
fn every_vietnamese_link_resolves_and_the_editions_link_each_other() {
    let broken = broken_links(&vietnamese());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    let en = std::fs::read_to_string(src().join("introduction.md")).unwrap();
    assert!(
        links(&en).iter().any(|l| l == "vi/introduction.html"),
        "the English introduction does not link to the Vietnamese edition"
    );
    let vi = std::fs::read_to_string(vietnamese().src.join("introduction.md")).unwrap();
    assert!(
        links(&vi).iter().any(|l| l == "../introduction.html"),
        "the Vietnamese introduction does not link back to the English edition"
    );
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

/// A formula written with one backslash (`\(`, which markdown reads as an escaped parenthesis)
/// or mangled by a string escape (a tab or carriage return where `\t…`/`\r…` was meant) shows as
/// plain text; the preprocessor cannot see it, so check the sources for both.
#[test]
fn no_formula_is_lost_to_a_single_backslash_or_an_escape() {
    let mut bad = Vec::new();
    for dir in book_sources() {
        for path in markdown_files(&dir) {
            let text = std::fs::read_to_string(&path).expect("readable chapter");
            let mut in_code = false;
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("```") {
                    in_code = !in_code;
                }
                if in_code {
                    continue;
                }
                let single = line.match_indices("\\(").any(|(at, _)| {
                    !line[..at].ends_with('\\')
                        && !line[at + 2..].starts_with(')')
                        && line[at..].contains("\\)")
                });
                let control = line.chars().any(|c| c.is_control());
                if single || control {
                    bad.push(format!("{}:{}: {line}", path.display(), i + 1));
                }
            }
        }
    }
    assert!(
        bad.is_empty(),
        "formulas that will not render:\n{}",
        bad.join("\n")
    );
}
