//! `compare --report DIR`: one self-contained HTML page of a comparison (inline CSS and SVG, no
//! script, nothing fetched), to open in any browser offline.
//!
//! The page holds the table with its 95% intervals and the paired verdicts, and five charts
//! drawn here by hand: test score against trainable parameters (log scale) with error bars;
//! the paired differences against the baseline (a forest plot: a bar crossing 0 is
//! indistinguishable); the memory ledger of each method's peak step as stacked bars (weights,
//! gradients, optimizer state, activations); the training-loss curves, mean over seeds; and
//! forgetting with its interval. `tools/report_check.py` renders it in headless Chromium.

use super::compare::{self, CompareOptions, Row};
use super::stats::{Estimate, Verdict};
use crate::error::{Error, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The file [`write`] creates in its directory.
pub const FILE: &str = "compare.html";

const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// The memory kinds of the stacked bars, with their colours.
const MEMORY: [(&str, &str); 4] = [
    ("weights", "#4c72b0"),
    ("gradients", "#dd8452"),
    ("optimizer", "#55a868"),
    ("activations", "#c44e52"),
];

/// Writes the report of `rows` to `dir/compare.html` and returns its path.
pub fn write(dir: &Path, opts: &CompareOptions, rows: &[Row]) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let path = dir.join(FILE);
    crate::io::atomic_write(&path, html(opts, rows).as_bytes())?;
    Ok(path)
}

/// The whole page.
pub fn html(opts: &CompareOptions, rows: &[Row]) -> String {
    let metric = rows.first().map_or("score", |r| r.metric.as_str());
    let title = format!(
        "tunelab compare: {} on {}",
        opts.task.name(),
        escape(&opts.base)
    );
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }}
h1 {{ font-size: 22px; margin-bottom: 4px; }} h2 {{ font-size: 17px; margin: 28px 0 6px; }}
p.note {{ color: #555; font-size: 13px; margin: 4px 0; }}
table {{ border-collapse: collapse; font-size: 12px; }}
th, td {{ padding: 3px 7px; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }}
th {{ background: #f3f3f3; }} td:first-child, th:first-child {{ text-align: left; }}
td.better {{ color: #1a7f37; font-weight: 600; }} td.worse {{ color: #b42318; font-weight: 600; }}
td.indistinguishable, td.undecided {{ color: #666; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 16px; }}
svg {{ background: white; border: 1px solid #e4e4e4; }}
</style></head><body>
<h1>{title}</h1>
"#
    );
    let seeds = opts.seed_list();
    let _ = writeln!(
        s,
        r#"<p class="note">{} steps of batch {}, seeds {}; score: test {metric} on {} examples per split; {}</p>"#,
        opts.steps,
        opts.batch_size,
        seeds
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        opts.max_eval_examples,
        escape(&compare::interval_note(rows))
    );
    if let Some(r) = rows.first() {
        let _ = writeln!(
            s,
            r#"<p class="note">{}</p>"#,
            escape(&r.step_timing.describe())
        );
    }
    s.push_str("<h2>The table</h2>\n");
    s.push_str(&table(opts, rows));
    s.push_str(&paired_table(rows));
    s.push_str("<h2>Charts</h2>\n<div class=\"charts\">\n");
    s.push_str(&score_vs_params(rows, metric));
    s.push_str(&paired(rows));
    s.push_str(&memory(rows));
    s.push_str(&loss_curves(rows));
    s.push_str(&forgetting(rows));
    s.push_str("</div>\n");
    let _ = writeln!(
        s,
        r#"<p class="note">Every number on this page was measured by the run that wrote it (tunelab compare --report).</p>"#
    );
    s.push_str("</body></html>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// An estimate as table text: `0.865 ± 0.021` or `0.865 [0.84, 0.89]` or the mean.
fn cell(e: &Estimate) -> String {
    escape(&e.short(3))
}

fn table(opts: &CompareOptions, rows: &[Row]) -> String {
    let low = opts
        .low_data
        .map_or("-".to_string(), |n| format!("test@{n}"));
    let mut s = String::from("<table>\n<tr>");
    for h in [
        "method",
        "trainable",
        "%",
        "weights MB",
        "grads MB",
        "optim MB",
        "activ MB",
        "step ms",
        "val",
        "test",
        &low,
        "forget",
        "adapter KB",
        "wall s",
    ] {
        let _ = write!(s, "<th>{h}</th>");
    }
    s.push_str("</tr>\n");
    for r in rows {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{:.3}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{:.1}</td></tr>",
            escape(&r.method),
            r.trainable_params,
            r.trainable_pct,
            mb(r.memory.weights),
            mb(r.memory.gradients),
            mb(r.memory.optimizer),
            mb(r.memory.activations),
            r.median_step_ms,
            cell(&r.validation),
            cell(&r.test),
            r.low_data_test.as_ref().map_or("-".into(), cell),
            cell(&r.forgetting_delta),
            r.adapter_bytes as f64 / 1024.0,
            r.wall_seconds
        );
    }
    s.push_str("</table>\n");
    s
}

/// The paired comparison: each method's test score minus the baseline's, with the verdict.
fn paired_table(rows: &[Row]) -> String {
    let Some(first) = rows.iter().find_map(|r| r.paired.as_ref()) else {
        return "<p class=\"note\">No paired comparison: the baseline is not among the methods run.</p>\n".into();
    };
    let mut s = format!(
        "<h2>Paired against {0}</h2>\n<p class=\"note\">test score minus {0}'s on the same seed: {1}</p>\n<table>\n<tr><th>method</th><th>difference</th><th>95% interval</th><th>verdict</th></tr>\n",
        escape(&first.baseline),
        escape(&compare::paired_note(first)),
    );
    for r in rows {
        let Some(p) = &r.paired else { continue };
        let e = &p.difference;
        let interval = match (e.lo, e.hi) {
            (Some(lo), Some(hi)) => {
                format!("[{:+.3}, {:+.3}]", compare::tidy(lo), compare::tidy(hi))
            }
            _ => "-".into(),
        };
        let class = match p.verdict {
            Verdict::Undecided => "undecided",
            v => v.name(),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{:+.3}</td><td>{interval}</td><td class=\"{class}\">{}</td></tr>",
            escape(&r.method),
            compare::tidy(e.mean),
            escape(p.verdict.name())
        );
    }
    s.push_str("</table>\n");
    s
}

// ---------------------------------------------------------------------------------------------
// Drawing

/// A linear or base-10 logarithmic scale from data to pixels.
struct Scale {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Scale {
    /// Spans `values` (finite ones) padded by 5%, or exactly `[lo, hi]` when `pad` is false.
    fn new(values: impl Iterator<Item = f64>, log: bool, (from, to): (f64, f64)) -> Self {
        let t = |v: f64| if log { v.max(1e-12).log10() } else { v };
        let (mut lo, mut hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(t(v)), b.max(t(v)))
            });
        if !lo.is_finite() {
            (lo, hi) = (0.0, 1.0);
        }
        if hi - lo < 1e-9 {
            (lo, hi) = (lo - 0.5, hi + 0.5);
        }
        let pad = 0.06 * (hi - lo);
        Self {
            lo: lo - pad,
            hi: hi + pad,
            log,
            from,
            to,
        }
    }

    fn px(&self, v: f64) -> f64 {
        let v = if self.log { v.max(1e-12).log10() } else { v };
        self.from + (v - self.lo) / (self.hi - self.lo) * (self.to - self.from)
    }

    /// Tick positions and labels: powers of ten on a log scale; otherwise multiples of 1, 2 or
    /// 5 times a power of ten, about five of them.
    fn ticks(&self) -> Vec<(f64, String)> {
        if self.log {
            let (a, b) = (self.lo.ceil() as i32, self.hi.floor() as i32);
            return (a..=b)
                .map(|e| {
                    let v = 10f64.powi(e);
                    (self.px(v), format!("1e{e}"))
                })
                .collect();
        }
        let raw = (self.hi - self.lo) / 5.0;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * mag)
            .find(|&s| s >= raw)
            .unwrap_or(10.0 * mag);
        let decimals = (-step.log10().floor()).max(0.0) as usize;
        let first = (self.lo / step).ceil() as i64;
        let last = (self.hi / step).floor() as i64;
        (first..=last)
            .map(|k| {
                let v = k as f64 * step;
                // Snap -0 and float dust to the tick's printed value.
                let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
                (self.px(v), format!("{v:.decimals$}"))
            })
            .collect()
    }

    /// A linear scale from exactly 0 to the largest of `values` (non-negative bar lengths)
    /// plus 6%.
    fn from_zero(values: impl Iterator<Item = f64>, (from, to): (f64, f64)) -> Self {
        let hi = values.filter(|v| v.is_finite()).fold(0.0, f64::max);
        Self {
            lo: 0.0,
            hi: if hi > 0.0 { hi * 1.06 } else { 1.0 },
            log: false,
            from,
            to,
        }
    }
}

/// A chart's frame: the SVG element, title, axes with ticks and labels.
struct Frame {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    fn new(w: f64, h: f64, left: f64, right: f64) -> Self {
        Self {
            w,
            h,
            left,
            right,
            top: 40.0,
            bottom: 48.0,
        }
    }

    fn xs(&self) -> (f64, f64) {
        (self.left, self.w - self.right)
    }

    fn ys(&self) -> (f64, f64) {
        (self.h - self.bottom, self.top)
    }

    /// Opens the SVG and draws the title and the x axis (and the y axis when `y` is given).
    fn open(
        &self,
        s: &mut String,
        title: &str,
        x: &Scale,
        xlabel: &str,
        y: Option<(&Scale, &str)>,
    ) {
        let (w, h) = (self.w, self.h);
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="11">"#
        );
        let _ = writeln!(
            s,
            r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
            w / 2.0,
            escape(title)
        );
        let ((x0, x1), (y0, y1)) = (self.xs(), self.ys());
        let _ = writeln!(
            s,
            r##"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="#333"/>"##
        );
        for (p, l) in x.ticks() {
            let _ = writeln!(
                s,
                r##"<line x1="{p:.1}" y1="{y0}" x2="{p:.1}" y2="{y1}" stroke="#eee"/><line x1="{p:.1}" y1="{y0}" x2="{p:.1}" y2="{}" stroke="#333"/><text x="{p:.1}" y="{}" text-anchor="middle">{l}</text>"##,
                y0 + 4.0,
                y0 + 16.0
            );
        }
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            (x0 + x1) / 2.0,
            h - 10.0,
            escape(xlabel)
        );
        if let Some((y, ylabel)) = y {
            for (p, l) in y.ticks() {
                let _ = writeln!(
                    s,
                    r##"<line x1="{x0}" y1="{p:.1}" x2="{x1}" y2="{p:.1}" stroke="#eee"/><line x1="{}" y1="{p:.1}" x2="{x0}" y2="{p:.1}" stroke="#333"/><text x="{}" y="{:.1}" text-anchor="end">{l}</text>"##,
                    x0 - 4.0,
                    x0 - 7.0,
                    p + 4.0
                );
            }
            let _ = writeln!(
                s,
                r#"<text x="14" y="{0}" text-anchor="middle" transform="rotate(-90 14 {0})">{1}</text>"#,
                (y0 + y1) / 2.0,
                escape(ylabel)
            );
        }
    }
}

/// A method's row label on the left of a horizontal-bar chart, one band per method.
fn band(f: &Frame, rows: usize, i: usize) -> (f64, f64) {
    let (y0, y1) = f.ys();
    let step = (y0 - y1) / rows.max(1) as f64;
    (y1 + step * i as f64, step)
}

fn method_label(s: &mut String, f: &Frame, y: f64, label: &str) {
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
        f.left - 8.0,
        y + 4.0,
        escape(label)
    );
}

/// A vertical or horizontal error bar from `a` to `b` across position `at`, with caps.
fn error_bar(s: &mut String, vertical: bool, at: f64, a: f64, b: f64) {
    let (line, cap1, cap2) = if vertical {
        (
            (at, a, at, b),
            (at - 4.0, a, at + 4.0, a),
            (at - 4.0, b, at + 4.0, b),
        )
    } else {
        (
            (a, at, b, at),
            (a, at - 4.0, a, at + 4.0),
            (b, at - 4.0, b, at + 4.0),
        )
    };
    for (x1, y1, x2, y2) in [line, cap1, cap2] {
        let _ = writeln!(
            s,
            r##"<line x1="{x1:.1}" y1="{y1:.1}" x2="{x2:.1}" y2="{y2:.1}" stroke="#222" stroke-width="1.2"/>"##
        );
    }
}

/// Test score against trainable parameters (log scale), each point with its interval.
fn score_vs_params(rows: &[Row], metric: &str) -> String {
    let f = Frame::new(560.0, 400.0, 60.0, 20.0);
    let x = Scale::new(rows.iter().map(|r| r.trainable_params as f64), true, f.xs());
    let y = Scale::new(
        rows.iter()
            .flat_map(|r| [r.test.lo, r.test.hi, Some(r.test.mean)])
            .flatten(),
        false,
        f.ys(),
    );
    let mut s = String::new();
    f.open(
        &mut s,
        &format!("test {metric} vs trainable parameters (95% intervals)"),
        &x,
        "trainable parameters (log scale)",
        Some((&y, &format!("test {metric}"))),
    );
    let mut placed: Vec<(f64, f64, f64)> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let (cx, cy) = (x.px(r.trainable_params as f64), y.px(r.test.mean));
        if let (Some(lo), Some(hi)) = (r.test.lo, r.test.hi) {
            error_bar(&mut s, true, cx, y.px(lo), y.px(hi));
        }
        // The label beside the point, moved up or down until it overlaps no earlier label
        // (methods with similar parameter counts and scores crowd together).
        let width = 6.2 * r.method.chars().count() as f64;
        let lx = if cx + 9.0 + width > f.w {
            cx - 9.0 - width
        } else {
            cx + 9.0
        };
        let free = |dy: f64| {
            placed.iter().all(|&(x0, x1, y): &(f64, f64, f64)| {
                lx + width < x0 || lx > x1 || (cy + dy - y).abs() >= 12.0
            })
        };
        let dy = [4.0, -8.0, 16.0, -20.0, 28.0, -32.0, 40.0]
            .into_iter()
            .find(|&dy| free(dy))
            .unwrap_or(4.0);
        placed.push((lx, lx + width, cy + dy));
        let color = COLORS[i % COLORS.len()];
        let _ = writeln!(
            s,
            r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="5" fill="{color}"/><text x="{lx:.1}" y="{:.1}" fill="{color}">{}</text>"#,
            cy + dy,
            escape(&r.method)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The paired differences against the baseline: a bar per method; 0 marked.
fn paired(rows: &[Row]) -> String {
    let Some(baseline) = rows
        .iter()
        .find_map(|r| r.paired.as_ref().map(|p| p.baseline.clone()))
    else {
        return String::new();
    };
    let f = Frame::new(560.0, 60.0 + 88.0 + 24.0 * rows.len() as f64, 120.0, 20.0);
    let x = Scale::new(
        rows.iter()
            .filter_map(|r| r.paired.as_ref())
            .flat_map(|p| [p.difference.lo, p.difference.hi, Some(p.difference.mean)])
            .flatten()
            .chain([0.0]),
        false,
        f.xs(),
    );
    let mut s = String::new();
    f.open(
        &mut s,
        &format!("test score minus {baseline}'s, same seeds (95% intervals)"),
        &x,
        &format!("difference from {baseline}"),
        None,
    );
    let (y0, y1) = f.ys();
    let _ = writeln!(
        s,
        r##"<line x1="{0:.1}" y1="{y1}" x2="{0:.1}" y2="{y0}" stroke="#888" stroke-dasharray="4 3"/>"##,
        x.px(0.0)
    );
    for (i, r) in rows.iter().enumerate() {
        let Some(p) = &r.paired else { continue };
        let (top, step) = band(&f, rows.len(), i);
        let cy = top + step / 2.0;
        method_label(&mut s, &f, cy, &r.method);
        let e = &p.difference;
        if let (Some(lo), Some(hi)) = (e.lo, e.hi) {
            error_bar(&mut s, false, cy, x.px(lo), x.px(hi));
        }
        let color = match p.verdict {
            Verdict::Better => "#1a7f37",
            Verdict::Worse => "#b42318",
            _ => "#777",
        };
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="8" height="8" fill="{color}"/>"#,
            x.px(e.mean) - 4.0,
            cy - 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The memory ledger at each method's peak step, stacked by kind.
fn memory(rows: &[Row]) -> String {
    let f = Frame::new(560.0, 100.0 + 88.0 + 24.0 * rows.len() as f64, 120.0, 20.0);
    let parts = |r: &Row| {
        [
            mb(r.memory.weights),
            mb(r.memory.gradients),
            mb(r.memory.optimizer),
            mb(r.memory.activations),
        ]
    };
    let x = Scale::from_zero(rows.iter().map(|r| parts(r).iter().sum::<f64>()), f.xs());
    let mut s = String::new();
    f.open(&mut s, "memory at the peak step (MB)", &x, "", None);
    for (i, r) in rows.iter().enumerate() {
        let (top, step) = band(&f, rows.len(), i);
        method_label(&mut s, &f, top + step / 2.0, &r.method);
        let mut at = 0.0;
        for (v, (kind, color)) in parts(r).iter().zip(MEMORY) {
            let _ = writeln!(
                s,
                r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{kind} {v:.2} MB</title></rect>"#,
                x.px(at),
                top + step * 0.15,
                (x.px(at + v) - x.px(at)).max(0.0),
                step * 0.7
            );
            at += v;
        }
    }
    // The key, under the title.
    for (k, (kind, color)) in MEMORY.iter().enumerate() {
        let kx = f.left + 100.0 * k as f64;
        let _ = writeln!(
            s,
            r#"<rect x="{kx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{kind}</text>"#,
            f.h - 22.0,
            kx + 14.0,
            f.h - 13.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The training loss at every step, mean over seeds, one line per method.
fn loss_curves(rows: &[Row]) -> String {
    let f = Frame::new(560.0, 400.0, 60.0, 130.0);
    let steps = rows.iter().map(|r| r.train_losses.len()).max().unwrap_or(1);
    let x = Scale::new([1.0, steps as f64].into_iter(), false, f.xs());
    let y = Scale::new(
        rows.iter().flat_map(|r| r.train_losses.iter().copied()),
        false,
        f.ys(),
    );
    let seeds = rows.first().map_or(0, |r| r.seeds.len());
    let mut s = String::new();
    f.open(
        &mut s,
        &format!("training loss per step, mean over {seeds} seed(s)"),
        &x,
        "step",
        Some((&y, "training loss")),
    );
    for (i, r) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let d: Vec<String> = r
            .train_losses
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(k, &l)| format!("{:.1},{:.1}", x.px((k + 1) as f64), y.px(l)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.4"/>"#,
            d.join(" ")
        );
        let ly = f.top + 8.0 + 16.0 * i as f64;
        let lx = f.w - f.right + 10.0;
        let _ = writeln!(
            s,
            r#"<rect x="{lx}" y="{}" width="10" height="10" fill="{color}"/><text x="{}" y="{}">{}</text>"#,
            ly - 9.0,
            lx + 14.0,
            ly,
            escape(&r.method)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Forgetting: the change in held-out LM loss, with its interval.
fn forgetting(rows: &[Row]) -> String {
    let f = Frame::new(560.0, 60.0 + 88.0 + 24.0 * rows.len() as f64, 120.0, 20.0);
    let e = |r: &Row| r.forgetting_delta;
    let x = Scale::new(
        rows.iter()
            .flat_map(|r| [e(r).lo, e(r).hi, Some(e(r).mean)])
            .flatten()
            .chain([0.0]),
        false,
        f.xs(),
    );
    let before = rows.first().map_or(f64::NAN, |r| r.forgetting.before);
    let mut s = String::new();
    f.open(
        &mut s,
        &format!("forgetting: change in held-out LM loss (before {before:.3})"),
        &x,
        "after − before (higher: forgot more)",
        None,
    );
    for (i, r) in rows.iter().enumerate() {
        let (top, step) = band(&f, rows.len(), i);
        let cy = top + step / 2.0;
        method_label(&mut s, &f, cy, &r.method);
        let (a, b) = (x.px(0.0), x.px(e(r).mean));
        let _ = writeln!(
            s,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
            a.min(b),
            top + step * 0.2,
            (b - a).abs(),
            step * 0.6,
            COLORS[i % COLORS.len()]
        );
        if let (Some(lo), Some(hi)) = (e(r).lo, e(r).hi) {
            error_bar(&mut s, false, cy, x.px(lo), x.px(hi));
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_scale_ticks_sit_on_powers_of_ten_inside_the_range() {
        let s = Scale::new([1e3, 1e6].into_iter(), true, (0.0, 100.0));
        let ticks = s.ticks();
        assert_eq!(
            ticks.iter().map(|t| t.1.as_str()).collect::<Vec<_>>(),
            ["1e3", "1e4", "1e5", "1e6"]
        );
        assert!(ticks.iter().all(|t| (0.0..=100.0).contains(&t.0)));
        assert!((s.px(1e3) - 100.0 * 0.06 / 1.12).abs() < 1e-9);
    }
}
