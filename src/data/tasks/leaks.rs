//! The leak check: which texts of task examples occur verbatim in a pre-training corpus.

use std::collections::HashMap;

use super::example::Example;
use super::ner::detokenize;

/// The texts of `examples` (each text, QA question and answer sentence, prompt and response) that
/// occur verbatim in some corpus document. Empty means the corpus never showed the model these
/// examples. Speaker and field labels (`User:`, `Visitor:`, `Story:`...) are ignored on both
/// sides, so a conversation leaks whatever labels the corpus gives its turns.
///
/// A word index keeps this fast on a full corpus: a probe can only occur in documents containing
/// its rarest inner word (the first and last words may be cut out of longer corpus words).
pub fn leaks(corpus: &[String], examples: &[Example]) -> Vec<String> {
    let corpus: Vec<String> = corpus.iter().map(|d| unlabel(d)).collect();
    let mut index: HashMap<&str, Vec<usize>> = HashMap::new();
    for (d, doc) in corpus.iter().enumerate() {
        for word in words(doc) {
            let docs = index.entry(word).or_default();
            if docs.last() != Some(&d) {
                docs.push(d);
            }
        }
    }
    let all: Vec<usize> = (0..corpus.len()).collect();
    let mut found = Vec::new();
    for probe in examples.iter().flat_map(probes) {
        let ws: Vec<&str> = words(&probe).collect();
        let docs = if ws.len() < 3 {
            Some(&all)
        } else {
            ws[1..ws.len() - 1]
                .iter()
                .map(|w| index.get(w))
                .min_by_key(|docs| docs.map_or(0, |d| d.len()))
                .flatten()
        };
        let hit = docs.is_some_and(|docs| docs.iter().any(|&d| corpus[d].contains(&probe)));
        if hit && !found.contains(&probe) {
            found.push(probe);
        }
    }
    found
}

/// The texts of `example` that must never occur in a pre-training corpus: its text, the
/// question and the sentence holding a QA answer, the prompt's content (its lines without
/// their `User:`-style labels) and the response.
fn probes(example: &Example) -> Vec<String> {
    match example {
        Example::Classification { text, .. } => vec![text.clone()],
        Example::Tagging { tokens, .. } => vec![detokenize(tokens)],
        Example::Span {
            context,
            question,
            answer_start,
            ..
        } => vec![question.clone(), sentence_at(context, *answer_start)],
        Example::Generation { prompt, response } => vec![unlabel(prompt), response.clone()],
    }
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
}

/// The sentence of `context` that contains byte `at`.
fn sentence_at(context: &str, at: usize) -> String {
    let at = at.min(context.len());
    let is_end = |c: char| matches!(c, '.' | '?' | '!');
    let start = context
        .get(..at)
        .and_then(|s| s.rfind(is_end))
        .map_or(0, |i| i + 1);
    let end = context
        .get(at..)
        .and_then(|s| s.find(is_end))
        .map_or(context.len(), |i| at + i + 1);
    context
        .get(start..end)
        .unwrap_or(context)
        .trim()
        .to_string()
}

/// Text without its `User:` / `Story:`-style line labels, lines joined by spaces.
fn unlabel(text: &str) -> String {
    let strip = |line: &'_ str| -> String {
        match line.split_once(':') {
            Some((label, rest)) if !label.is_empty() && label.chars().all(char::is_alphabetic) => {
                rest.trim().to_string()
            }
            _ => line.trim().to_string(),
        }
    };
    let lines: Vec<String> = text.lines().map(strip).filter(|l| !l.is_empty()).collect();
    lines.join(" ")
}
