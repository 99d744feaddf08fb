//! Formulas rendered when the book is built, so it reads offline.
//!
//! The book writes LaTeX between MathJax's delimiters as they look in markdown source: `\\[ … \\]`
//! for a displayed formula, `\\( … \\)` inline (markdown turns `\\` into `\`, so MathJax saw
//! `\[ … \]`), and `$$ … $$` for display too. Loading MathJax from a CDN meant that a reader
//! without network saw raw LaTeX. This crate replaces each formula by MathML before mdbook renders
//! the page: MathML Core is drawn by the browser itself (Chromium and Firefox), with no script and
//! no font to fetch.
//!
//! Three steps, one function each:
//! - [`formulas`] finds the formulas in a chapter's markdown, skipping fenced code blocks and
//!   inline code spans (a `\\(` inside backticks is code, not math);
//! - [`latex_to_mathml`] converts one formula with `pulldown-latex`, failing on any parser error
//!   (an unknown command would otherwise be drawn in red inside the page);
//! - [`convert`] puts the two together for a chapter and [`preprocess`] for mdbook's JSON.
//!
//! The LaTeX a formula holds is what MathJax used to see: the markdown source with markdown's
//! backslash escapes undone (`\\,` is `\,`, `\_` is `_`). The MathML written back is kept on one
//! line and its text is written as character references wherever markdown could read it as
//! syntax (`*`, `_`, `\`, `|`, …), so the markdown renderer passes it through untouched.

use pulldown_latex::config::DisplayMode;
use pulldown_latex::{Parser, RenderConfig, Storage};

/// One formula found in a chapter.
#[derive(Debug, Clone, PartialEq)]
pub struct Formula {
    /// Byte range in the chapter's markdown, delimiters included.
    pub start: usize,
    pub end: usize,
    /// 1-based line of the opening delimiter.
    pub line: usize,
    /// `\\[ … \\]` and `$$ … $$` are displayed; `\\( … \\)` is inline.
    pub display: bool,
    /// The LaTeX between the delimiters, markdown escapes undone.
    pub latex: String,
}

/// A formula that could not be converted, or an opening delimiter with no closing one.
#[derive(Debug, Clone, PartialEq)]
pub struct FormulaError {
    pub line: usize,
    pub latex: String,
    pub message: String,
}

impl std::fmt::Display for FormulaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}: {} in `{}`",
            self.line, self.message, self.latex
        )
    }
}

const DELIMITERS: [(&str, &str, bool); 3] = [
    ("\\\\[", "\\\\]", true),
    ("\\\\(", "\\\\)", false),
    ("$$", "$$", true),
];

/// The opening fence of a fenced code block (three or more backticks or tildes), if `line` is one.
fn fence(line: &str) -> Option<(char, usize)> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None; // indented four or more: an indented code line, not a fence
    }
    let c = t.chars().next()?;
    if c != '`' && c != '~' {
        return None;
    }
    let n = t.chars().take_while(|&x| x == c).count();
    (n >= 3).then_some((c, n))
}

/// Markdown's backslash escapes undone: `\` before ASCII punctuation stands for that character.
fn unescape_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(&n) = chars.peek() {
                if n.is_ascii_punctuation() {
                    out.push(n);
                    chars.next();
                    continue;
                }
            }
        }
        out.push(c);
    }
    out
}

/// Every formula in `markdown` outside code, in order; an opening delimiter that is never closed
/// is an error.
pub fn formulas(markdown: &str) -> Result<Vec<Formula>, FormulaError> {
    // Byte ranges of code (fenced blocks and inline spans), where delimiters are not looked for.
    let mut code: Vec<(usize, usize)> = Vec::new();
    let mut offset = 0;
    let mut open: Option<(char, usize, usize)> = None; // fence char, length, start
    for line in markdown.split_inclusive('\n') {
        match (open, fence(line)) {
            (None, Some((c, n))) => open = Some((c, n, offset)),
            // A closing fence: the same character, at least as many, nothing after them.
            (Some((c, n, start)), Some((c2, n2)))
                if c2 == c && n2 >= n && line.trim().chars().all(|x| x == c) =>
            {
                code.push((start, offset + line.len()));
                open = None;
            }
            _ => {}
        }
        offset += line.len();
    }
    if let Some((_, _, start)) = open {
        code.push((start, markdown.len()));
    }
    // Inline code spans: a run of n backticks up to the next run of exactly n (outside blocks).
    let bytes = markdown.as_bytes();
    let in_block = |i: usize, code: &[(usize, usize)]| code.iter().any(|&(s, e)| s <= i && i < e);
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'`' && !in_block(i, &code) {
            let n = bytes[i..].iter().take_while(|&&b| b == b'`').count();
            let mut j = i + n;
            let mut closed = None;
            while j < bytes.len() {
                if bytes[j] == b'`' {
                    let m = bytes[j..].iter().take_while(|&&b| b == b'`').count();
                    if m == n {
                        closed = Some(j + m);
                        break;
                    }
                    j += m;
                } else {
                    j += 1;
                }
            }
            match closed {
                Some(end) => {
                    spans.push((i, end));
                    i = end;
                }
                None => i += n,
            }
        } else {
            i += 1;
        }
    }
    code.extend(spans);

    let line_of = |i: usize| markdown[..i].matches('\n').count() + 1;
    let mut found = Vec::new();
    let mut i = 0;
    while i < markdown.len() {
        if !markdown.is_char_boundary(i) || in_block(i, &code) {
            i += 1;
            continue;
        }
        let rest = &markdown[i..];
        let Some(&(open, close, display)) = DELIMITERS.iter().find(|(o, _, _)| rest.starts_with(o))
        else {
            i += 1;
            continue;
        };
        let body = i + open.len();
        let Some(k) = markdown[body..].find(close) else {
            return Err(FormulaError {
                line: line_of(i),
                latex: markdown[body..].chars().take(60).collect(),
                message: format!("`{open}` is never closed by `{close}`"),
            });
        };
        let end = body + k + close.len();
        found.push(Formula {
            start: i,
            end,
            line: line_of(i),
            display,
            latex: unescape_markdown(markdown[body..body + k].trim()),
        });
        i = end;
    }
    Ok(found)
}

/// One formula as MathML (`<math>…</math>`, `display="block"` when displayed), or the parser's
/// error.
pub fn latex_to_mathml(latex: &str, display: bool) -> Result<String, String> {
    let storage = Storage::new();
    let mut events = Vec::new();
    for event in Parser::new(latex, &storage) {
        events.push(event.map_err(|e| e.to_string())?);
    }
    let config = RenderConfig {
        display_mode: if display {
            DisplayMode::Block
        } else {
            DisplayMode::Inline
        },
        ..RenderConfig::default()
    };
    let mut mathml = String::new();
    pulldown_latex::push_mathml(
        &mut mathml,
        events.into_iter().map(Ok::<_, std::convert::Infallible>),
        config,
    )
    .map_err(|e| e.to_string())?;
    Ok(markdown_safe(&mathml))
}

/// MathML that markdown leaves alone: on one line, and every ASCII punctuation character in text
/// (outside tags, outside entities) written as a character reference. Attributes are separated by
/// a space: pulldown-latex 0.8 writes `stretchy="true"minsize="1.2em"` for `\big(`, which browsers
/// forgive but mdbook's HTML checker reads as a broken tag.
fn markdown_safe(mathml: &str) -> String {
    let mut out = String::with_capacity(mathml.len());
    let mut in_tag = false;
    let mut in_quote = false;
    let mut in_entity = false;
    let mut chars = mathml.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' => out.push(' '),
            '"' if in_tag => {
                out.push(c);
                in_quote = !in_quote;
                if !in_quote && chars.peek().is_some_and(|n| n.is_alphanumeric()) {
                    out.push(' ');
                }
            }
            '>' if in_tag && !in_quote => {
                in_tag = false;
                out.push(c);
            }
            _ if in_tag => out.push(c),
            '<' if !in_entity => {
                in_tag = true;
                out.push(c);
            }
            '&' => {
                in_entity = true;
                out.push(c);
            }
            ';' if in_entity => {
                in_entity = false;
                out.push(c);
            }
            _ if in_entity => out.push(c),
            _ if c.is_ascii_punctuation() => out.push_str(&format!("&#{};", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// A chapter with every formula replaced by MathML, or every formula that failed.
pub fn convert(markdown: &str) -> Result<String, Vec<FormulaError>> {
    let found = formulas(markdown).map_err(|e| vec![e])?;
    let mut out = String::with_capacity(markdown.len() * 2);
    let mut errors = Vec::new();
    let mut last = 0;
    for f in found {
        out.push_str(&markdown[last..f.start]);
        match latex_to_mathml(&f.latex, f.display) {
            Ok(m) => out.push_str(&m),
            Err(message) => errors.push(FormulaError {
                line: f.line,
                latex: f.latex.clone(),
                message,
            }),
        }
        last = f.end;
    }
    out.push_str(&markdown[last..]);
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// mdbook's preprocessor input (`[context, book]` as JSON) to its output (the book as JSON), every
/// chapter's formulas converted; the error names each chapter and formula that failed.
pub fn preprocess(input: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(input).map_err(|e| format!("the book JSON on stdin: {e}"))?;
    let serde_json::Value::Array(mut pair) = value else {
        return Err("the book JSON on stdin is not [context, book]".into());
    };
    if pair.len() != 2 {
        return Err(format!(
            "expected [context, book], got {} items",
            pair.len()
        ));
    }
    let mut book = pair.pop().expect("two items");
    let mut errors = Vec::new();
    walk(&mut book, &mut errors);
    if !errors.is_empty() {
        return Err(format!(
            "{} formula(s) did not convert:\n{}",
            errors.len(),
            errors.join("\n")
        ));
    }
    serde_json::to_string(&book).map_err(|e| e.to_string())
}

/// Converts the `content` of every `{"Chapter": {...}}` in the book, sub-chapters included.
fn walk(value: &mut serde_json::Value, errors: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(chapter)) = map.get_mut("Chapter") {
                let path = chapter
                    .get("path")
                    .and_then(|p| p.as_str())
                    .unwrap_or("(a draft chapter)")
                    .to_string();
                if let Some(serde_json::Value::String(content)) = chapter.get_mut("content") {
                    match convert(content) {
                        Ok(converted) => *content = converted,
                        Err(es) => errors.extend(es.iter().map(|e| format!("{path}: {e}"))),
                    }
                }
            }
            for v in map.values_mut() {
                walk(v, errors);
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                walk(v, errors);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_inline_formulas_become_mathml() {
        let md = "A \\\\( y = a\\\\,b \\\\) and\n\n\\\\[ \\frac{1}{N} \\sum_i x_i \\\\]\n";
        let out = convert(md).expect("converts");
        assert!(out.starts_with("A <math"), "{out}");
        assert!(out.contains("<math display=\"block\""), "{out}");
        assert!(out.contains("<mfrac>"), "{out}");
        assert!(!out.contains("\\\\(") && !out.contains("\\\\["), "{out}");
        // The markdown escape `\\,` reached the parser as `\,` (a thin space, not an error).
        assert_eq!(formulas(md).unwrap()[0].latex, "y = a\\,b");
    }

    #[test]
    fn code_is_left_alone() {
        let md = "```rust\nlet s = \"\\\\[ x \\\\]\";\n```\nand `\\\\( y \\\\)` in a span\n";
        assert_eq!(formulas(md).unwrap(), vec![]);
        assert_eq!(convert(md).unwrap(), md);
    }

    #[test]
    fn unknown_commands_and_unclosed_delimiters_are_errors() {
        let e = convert("\\\\[ \\notacommand{x} \\\\]").unwrap_err();
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].line, 1);
        let e = convert("text\n\\\\( x + 1\n").unwrap_err();
        assert_eq!(e[0].line, 2);
        assert!(e[0].message.contains("never closed"), "{}", e[0]);
    }

    #[test]
    fn markdown_punctuation_in_text_is_escaped() {
        assert_eq!(
            markdown_safe("<mo stretchy=\"false\">*</mo>\n<mi>_</mi><mo>&amp;</mo>"),
            "<mo stretchy=\"false\">&#42;</mo> <mi>&#95;</mi><mo>&amp;</mo>"
        );
        assert_eq!(
            markdown_safe(r#"<mo stretchy="true"minsize="1.2em">(</mo>"#),
            r#"<mo stretchy="true" minsize="1.2em">&#40;</mo>"#
        );
        let m = latex_to_mathml("|x| + (y)", false).unwrap();
        assert!(
            !m.contains('|') && !m.contains('(') && !m.contains('+'),
            "{m}"
        );
    }

    #[test]
    fn the_book_json_round_trips_with_chapters_converted() {
        let input = r#"[{"root":"."},{"items":[{"Chapter":{"name":"c","content":"\\\\( x^2 \\\\)","path":"c.md","sub_items":[{"Chapter":{"name":"d","content":"plain","path":"d.md","sub_items":[]}}]}}]}]"#;
        let out = preprocess(input).expect("preprocesses");
        let book: serde_json::Value = serde_json::from_str(&out).unwrap();
        let c = book["items"][0]["Chapter"]["content"].as_str().unwrap();
        assert!(c.starts_with("<math") && c.contains("<msup>"), "{c}");
        assert_eq!(
            book["items"][0]["Chapter"]["sub_items"][0]["Chapter"]["content"],
            "plain"
        );
        let err = preprocess(&input.replace("x^2", "\\\\bogus")).unwrap_err();
        assert!(err.contains("c.md") && err.contains("line 1"), "{err}");
    }
}
