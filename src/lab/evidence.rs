//! What an interview answer or a pitfall demonstration hands back: the measurements of its runs,
//! rendered as text, and the claims they test, each judged on every seed.
//!
//! Every experiment returns its own struct of numbers for one seed (so tests assert on fields)
//! and implements [`Evidence`]: its tables and its [`Claim`]s, each with whether it held in that
//! run and the quantity it tests (a margin such as "LoRA − full test accuracy"). One run is one
//! draw: head and adapter initialisation, data order and dropout all come from the seed
//! (`TrainingArgs.seed`, as Hugging Face's `seed`), and at this scale a difference of a few
//! points of accuracy flips from one seed to the next. So [`over_seeds`] runs an experiment on
//! several seeds (side by side, one per core) and [`Judged::verdicts`] merges the claims by
//! their text: in how many seeds each held, and the range of what it measured. Experiments that
//! train nothing (parameter counts, padding, one batch's losses, memory arithmetic) give the
//! same numbers for every seed and run once ([`Judged::once`]). An experiment that reports a mean
//! and a 95% interval over its seeds runs them itself and is judged once on all of them together
//! ([`Judged::pooled`]).
//!
//! A claim that does not hold is printed as such: the text says what the notes expect, the
//! verdict says what the runs showed.

use crate::error::Result;
use crate::train::progress::{LogEntry, Progress};
use serde::Serialize;
use std::fmt::Write;
use std::sync::Mutex;

/// The first seed, `TrainingArgs`' default; seed i of a multi-seed run is `FIRST_SEED + i`.
pub const FIRST_SEED: u64 = 42;

/// Seeds a claim is judged on unless told otherwise: the fewest that can tell a result from one
/// run's luck.
pub const DEFAULT_SEEDS: usize = 3;

/// The seeds of an `n`-seed run: 42, 43, ...
pub fn seed_list(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| FIRST_SEED + i).collect()
}

/// How a measured quantity is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Fmt {
    /// With a sign and `d` decimals: `+0.031` (margins).
    Signed(usize),
    /// `d` decimals: `0.031`.
    Fixed(usize),
    /// Scientific with `d` decimals: `3.1e-2`.
    Sci(usize),
    /// A ratio with `d` decimals and an `x`: `2.31x`.
    Times(usize),
    /// A share, given as a fraction, printed as a percentage with `d` decimals.
    Percent(usize),
}

impl Fmt {
    pub fn show(self, x: f64) -> String {
        match self {
            Fmt::Signed(d) => format!("{x:+.d$}"),
            Fmt::Fixed(d) => format!("{x:.d$}"),
            Fmt::Sci(d) => format!("{x:.d$e}"),
            Fmt::Times(d) => format!("{x:.d$}x"),
            Fmt::Percent(d) => format!("{:.d$}%", 100.0 * x),
        }
    }
}

/// The quantity a claim tests, as one run measured it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measure {
    /// What was measured, e.g. "LoRA − full test accuracy".
    pub what: String,
    pub value: f64,
    pub fmt: Fmt,
}

/// A statement the measurements of one run test.
///
/// `text` is the claim's identity across seeds, so it names no number of its run: the numbers
/// go in [`Claim::measured`]. (A claim of an experiment that runs once may quote its numbers.)
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    pub text: String,
    pub holds: bool,
    pub measure: Option<Measure>,
}

impl Claim {
    pub fn new(text: impl Into<String>, holds: bool) -> Self {
        Self {
            text: text.into(),
            holds,
            measure: None,
        }
    }

    /// The quantity the claim tests and its value in this run.
    pub fn measured(mut self, what: impl Into<String>, value: f64, fmt: Fmt) -> Self {
        self.measure = Some(Measure {
            what: what.into(),
            value,
            fmt,
        });
        self
    }

    /// The measured value, if the claim carries one.
    pub fn value(&self) -> Option<f64> {
        self.measure.as_ref().map(|m| m.value)
    }
}

/// The measured evidence of one run of an experiment.
pub trait Evidence {
    /// The measurements as text (tables and short lines), every number from this run.
    fn render(&self) -> String;
    /// The claims the measurements test.
    fn claims(&self) -> Vec<Claim>;
}

/// One claim judged over every run that tested it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verdict {
    pub text: String,
    /// Runs that tested the claim, and those in which it held.
    pub runs: usize,
    pub held: usize,
    /// What the claim measures and how it prints, and the value in each run that tested it.
    pub what: Option<String>,
    pub fmt: Option<Fmt>,
    pub values: Vec<f64>,
}

impl Verdict {
    /// Held in every run that tested it.
    pub fn always(&self) -> bool {
        self.runs > 0 && self.held == self.runs
    }

    /// Held in at least `k` runs.
    pub fn holds_in(&self, k: usize) -> bool {
        self.held >= k
    }

    pub fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::min)
    }

    pub fn max(&self) -> f64 {
        self.values.iter().copied().fold(f64::NAN, f64::max)
    }

    pub fn mean(&self) -> f64 {
        super::stats::mean(&self.values)
    }

    /// The sample standard deviation (n − 1), NaN for fewer than two values.
    pub fn sd(&self) -> f64 {
        super::stats::sample_sd(&self.values)
    }

    /// "what: min .. max (mean ± sd)", or the one value when every run measured the same.
    pub fn spread(&self) -> Option<String> {
        let (what, fmt) = (self.what.as_ref()?, self.fmt?);
        if self.values.is_empty() {
            return None;
        }
        let (lo, hi) = (self.min(), self.max());
        // A run that diverged measures ±inf or NaN: said so, and no mean or sd over it.
        let bad = self.values.iter().filter(|x| !x.is_finite()).count();
        let note = if bad > 0 {
            format!(
                " ({bad} of {} runs not finite: diverged)",
                self.values.len()
            )
        } else {
            String::new()
        };
        if self.values.len() == 1 || lo == hi || self.values.iter().all(|&x| x == self.values[0]) {
            return Some(format!("{what}: {}{note}", fmt.show(self.values[0])));
        }
        if bad > 0 {
            let shown: Vec<String> = self.values.iter().map(|&x| fmt.show(x)).collect();
            return Some(format!("{what}: {}{note}", shown.join(", ")));
        }
        Some(format!(
            "{what}: {} .. {} (mean {} ± {})",
            fmt.show(lo),
            fmt.show(hi),
            fmt.show(self.mean()),
            match fmt {
                Fmt::Signed(d) => format!("{:.d$}", self.sd()),
                f => f.show(self.sd()),
            }
        ))
    }
}

/// Merges the claims of several runs by their text, in order of first appearance.
pub fn merge(runs: &[Vec<Claim>]) -> Vec<Verdict> {
    let mut out: Vec<Verdict> = Vec::new();
    for claims in runs {
        for c in claims {
            let i = match out.iter().position(|v| v.text == c.text) {
                Some(i) => i,
                None => {
                    out.push(Verdict {
                        text: c.text.clone(),
                        runs: 0,
                        held: 0,
                        what: c.measure.as_ref().map(|m| m.what.clone()),
                        fmt: c.measure.as_ref().map(|m| m.fmt),
                        values: Vec::new(),
                    });
                    out.len() - 1
                }
            };
            let v = &mut out[i];
            v.runs += 1;
            v.held += usize::from(c.holds);
            if let Some(x) = c.value() {
                v.values.push(x);
            }
        }
    }
    out
}

/// An experiment's runs: one per seed, or one run when nothing in it depends on a seed.
#[derive(Debug, Clone, Serialize)]
pub struct Judged<E> {
    pub seeds: Vec<u64>,
    pub runs: Vec<E>,
    /// The experiment trains nothing: every seed would measure the same, so it ran once.
    pub deterministic: bool,
    /// The one run trained on every seed of `seeds` itself, and its claims test what the seeds
    /// measured together (means and intervals over them).
    pub pooled: bool,
}

impl<E: Evidence> Judged<E> {
    /// A deterministic experiment's single run.
    pub fn once(e: E) -> Self {
        Self {
            seeds: vec![FIRST_SEED],
            runs: vec![e],
            deterministic: true,
            pooled: false,
        }
    }

    /// An experiment that ran on every seed of `seeds` itself and judges its claims once, on
    /// what the seeds measured together.
    pub fn pooled(seeds: Vec<u64>, e: E) -> Self {
        Self {
            seeds,
            runs: vec![e],
            deterministic: false,
            pooled: true,
        }
    }

    /// The first seed's run (the one whose tables are printed).
    pub fn first(&self) -> &E {
        &self.runs[0]
    }

    /// Every claim, merged over the runs.
    pub fn verdicts(&self) -> Vec<Verdict> {
        merge(&self.runs.iter().map(Evidence::claims).collect::<Vec<_>>())
    }

    /// The verdict whose text starts with `prefix`.
    pub fn verdict(&self, prefix: &str) -> Option<Verdict> {
        self.verdicts()
            .into_iter()
            .find(|v| v.text.starts_with(prefix))
    }
}

/// What the CLI prints: the first run's tables and the merged claims.
pub trait Judgement {
    fn render(&self) -> String;
    fn verdicts(&self) -> Vec<Verdict>;
    fn seeds(&self) -> &[u64];
    fn deterministic(&self) -> bool;
    /// One run over every seed, its claims judged once ([`Judged::pooled`]).
    fn pooled(&self) -> bool;
}

impl<E: Evidence> Judgement for Judged<E> {
    fn render(&self) -> String {
        self.first().render()
    }
    fn verdicts(&self) -> Vec<Verdict> {
        Judged::verdicts(self)
    }
    fn seeds(&self) -> &[u64] {
        &self.seeds
    }
    fn deterministic(&self) -> bool {
        self.deterministic
    }
    fn pooled(&self) -> bool {
        self.pooled
    }
}

fn seed_names(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The tables, then every claim with the number of runs it held in and the spread of what it
/// measured.
pub fn report(j: &dyn Judgement) -> String {
    let seeds = j.seeds();
    let mut s = String::new();
    let once = j.deterministic() || j.pooled();
    if !once && seeds.len() > 1 {
        let _ = writeln!(
            s,
            "(tables: seed {}, the first of {} seeds; the claims below are judged on every seed)\n",
            seeds[0],
            seeds.len()
        );
    }
    s.push_str(&j.render());
    if !s.ends_with('\n') {
        s.push('\n');
    }
    let verdicts = j.verdicts();
    if verdicts.is_empty() {
        return s;
    }
    if j.deterministic() {
        s.push_str(
            "\nclaims (deterministic: 1 run; nothing here trains, so every seed measures the same):\n",
        );
    } else if j.pooled() {
        let _ = writeln!(
            s,
            "\nclaims (judged once, on what seed{} {} measured together):",
            if seeds.len() == 1 { "" } else { "s" },
            seed_names(seeds)
        );
        if seeds.len() < DEFAULT_SEEDS {
            let _ = writeln!(
                s,
                "  (only {} seed{}: too few for an interval that means much; use --seeds {DEFAULT_SEEDS} or more)",
                seeds.len(),
                if seeds.len() == 1 { "" } else { "s" },
            );
        }
    } else {
        let _ = writeln!(
            s,
            "\nclaims over {} seed{} ({}): in how many seeds each holds, and the range of what it measures:",
            seeds.len(),
            if seeds.len() == 1 { "" } else { "s" },
            seed_names(seeds)
        );
        if seeds.len() < DEFAULT_SEEDS {
            let _ = writeln!(
                s,
                "  (only {} seed{}: too few to tell a result from one run's luck; use --seeds {DEFAULT_SEEDS} or more)",
                seeds.len(),
                if seeds.len() == 1 { "" } else { "s" },
            );
        }
    }
    for v in verdicts {
        let mark = if once {
            if v.always() {
                "[holds]".to_string()
            } else {
                "[does not hold]".to_string()
            }
        } else if v.always() {
            format!("[{}/{} hold]", v.held, v.runs)
        } else {
            format!("[{}/{}]", v.held, v.runs)
        };
        let _ = writeln!(s, "  {mark:<15} {}", v.text);
        if let Some(sp) = v.spread() {
            let _ = writeln!(s, "  {:<15} {sp}", "");
        }
    }
    s
}

/// The shared reporter of runs side by side: each forwarded line names its seed.
struct SeedLane<'a, 'p> {
    shared: &'a Mutex<&'p mut (dyn Progress + Send)>,
    seed: u64,
    tag: bool,
}

impl Progress for SeedLane<'_, '_> {
    fn step(&mut self, run: &str, e: &LogEntry) {
        if let Ok(mut p) = self.shared.lock() {
            p.step(run, e);
        }
    }
    fn line(&mut self, text: &str) {
        if let Ok(mut p) = self.shared.lock() {
            if self.tag {
                p.line(&format!("seed {}: {text}", self.seed));
            } else {
                p.line(text);
            }
        }
    }
}

/// Runs `experiment` once per seed of [`seed_list`]`(n)`, side by side when `parallel` (one
/// seed per kernel thread, each then single-threaded, as compare runs its methods), and keeps
/// the runs in seed order. The numbers do not depend on how many run at once. The first
/// failure, in seed order, is the error.
///
/// `parallel` is false for an experiment that already trains side by side itself (question 2
/// runs compare).
pub fn over_seeds<E: Send>(
    n: usize,
    parallel: bool,
    progress: &mut (dyn Progress + Send),
    experiment: impl Fn(u64, &mut dyn Progress) -> Result<E> + Sync,
) -> Result<Judged<E>> {
    let seeds = seed_list(n.max(1));
    let lanes = if parallel {
        crate::kernels::threads().min(seeds.len()).max(1)
    } else {
        1
    };
    let tag = seeds.len() > 1;
    let shared = Mutex::new(progress);
    let runs = super::lanes::side_by_side(seeds.len(), lanes, |i| {
        let seed = seeds[i];
        let mut lane = SeedLane {
            shared: &shared,
            seed,
            tag,
        };
        experiment(seed, &mut lane)
    })?;
    Ok(Judged {
        seeds,
        runs,
        deterministic: false,
        pooled: false,
    })
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
