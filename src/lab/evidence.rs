//! What an interview answer or a pitfall demonstration hands back: the measurements of one run,
//! rendered as text, and the claims they test, each with whether it held in that run.
//!
//! Every experiment returns its own struct of numbers (so tests assert on fields) and implements
//! [`Evidence`] (so the CLI prints it). A claim that does not hold is printed as such: the text
//! says what the notes expect, `holds` says what this run showed.

use std::fmt::Write;

/// A statement the measurements test.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Claim {
    pub text: String,
    pub holds: bool,
}

impl Claim {
    pub fn new(text: impl Into<String>, holds: bool) -> Self {
        Self {
            text: text.into(),
            holds,
        }
    }
}

/// The measured evidence of one experiment.
pub trait Evidence {
    /// The measurements as text (tables and short lines), every number from this run.
    fn render(&self) -> String;
    /// The claims the measurements test.
    fn claims(&self) -> Vec<Claim>;
}

/// The render and the claims, one claim per line marked `[holds]` or `[does not hold here]`.
pub fn report(e: &dyn Evidence) -> String {
    let mut s = e.render();
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let claims = e.claims();
    if !claims.is_empty() {
        s.push_str("\nclaims, checked against the numbers above:\n");
        for c in claims {
            let mark = if c.holds {
                "[holds]            "
            } else {
                "[does not hold here]"
            };
            let _ = writeln!(s, "  {mark} {}", c.text);
        }
    }
    s
}

/// Small budgets for tests and demos, or the real demonstration (about a minute each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quick,
    Full,
}

impl Mode {
    pub fn pick<T>(self, quick: T, full: T) -> T {
        match self {
            Mode::Quick => quick,
            Mode::Full => full,
        }
    }

    pub fn name(self) -> &'static str {
        self.pick("quick", "full")
    }
}

/// A plain text table: a header row, a rule, and right-aligned columns after the first.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            let pad = w - c.chars().count();
            if i == 0 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str("  ");
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.trim_end().to_string()
    };
    let mut s = line(headers.to_vec());
    s.push('\n');
    s.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * n.saturating_sub(1)));
    s.push('\n');
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
        s.push('\n');
    }
    s
}

/// A number with `d` decimals (NaN and inf as they are).
pub fn num(x: f64, d: usize) -> String {
    format!("{x:.d$}")
}

/// NaN read as +inf, so a run whose number blew up compares as the worst.
pub fn nan_as_inf(x: f64) -> f64 {
    if x.is_nan() {
        f64::INFINITY
    } else {
        x
    }
}
