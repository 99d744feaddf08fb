//! Charts as plain SVG, written by hand: `compare --plot DIR` draws the training-loss curves of
//! every method and each method's test score against its trainable parameters.

use super::compare::{CompareOptions, Row};
use crate::error::{Error, Result};
use std::fmt::Write;
use std::path::{Path, PathBuf};

const W: f64 = 720.0;
const H: f64 = 420.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: &[&str] = &[
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// A linear or base-10 logarithmic axis mapping data to pixels.
struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    from: f64,
    to: f64,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, log: bool, from: f64, to: f64) -> Self {
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
        let pad = 0.05 * (hi - lo);
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

    /// Five ticks: (pixel, label).
    fn ticks(&self) -> Vec<(f64, String)> {
        (0..5)
            .map(|i| {
                let t = self.lo + (self.hi - self.lo) * i as f64 / 4.0;
                let v = if self.log { 10f64.powf(t) } else { t };
                let label = if self.log || v.abs() >= 1000.0 {
                    format!("{v:.2e}")
                } else {
                    format!("{v:.3}")
                };
                let p = self.from + (t - self.lo) / (self.hi - self.lo) * (self.to - self.from);
                (p, label)
            })
            .collect()
    }
}

fn frame(s: &mut String, title: &str, x: &Axis, y: &Axis, xlabel: &str, ylabel: &str) {
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        escape(title)
    );
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, H - BOTTOM, TOP);
    let _ = writeln!(
        s,
        r#"<path d="M{x0},{y1} L{x0},{y0} L{x1},{y0}" fill="none" stroke="black"/>"#
    );
    for (p, l) in x.ticks() {
        let _ = writeln!(
            s,
            r##"<line x1="{p:.1}" y1="{y0}" x2="{p:.1}" y2="{}" stroke="black"/><text x="{p:.1}" y="{}" text-anchor="middle">{l}</text>"##,
            y0 + 5.0,
            y0 + 18.0
        );
    }
    for (p, l) in y.ticks() {
        let _ = writeln!(
            s,
            r##"<line x1="{}" y1="{p:.1}" x2="{x0}" y2="{p:.1}" stroke="black"/><line x1="{x0}" y1="{p:.1}" x2="{x1}" y2="{p:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{l}</text>"##,
            x0 - 5.0,
            x0 - 8.0,
            p + 4.0
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        H - 12.0,
        escape(xlabel)
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(ylabel)
    );
}

fn legend(s: &mut String, i: usize, label: &str) {
    let y = TOP + 10.0 + 18.0 * i as f64;
    let x = W - RIGHT + 15.0;
    let _ = writeln!(
        s,
        r#"<rect x="{x}" y="{}" width="12" height="12" fill="{}"/><text x="{}" y="{}">{}</text>"#,
        y - 10.0,
        COLORS[i % COLORS.len()],
        x + 18.0,
        y,
        escape(label)
    );
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Training loss per step, one line per method (smoothed over 5 steps).
pub fn loss_curves(title: &str, series: &[(String, Vec<f64>)]) -> String {
    let smooth = |v: &[f64]| -> Vec<f64> {
        (0..v.len())
            .map(|i| {
                let w = &v[i.saturating_sub(4)..=i];
                w.iter().sum::<f64>() / w.len() as f64
            })
            .collect()
    };
    let series: Vec<(String, Vec<f64>)> =
        series.iter().map(|(l, v)| (l.clone(), smooth(v))).collect();
    let steps = series.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let x = Axis::new([1.0, steps as f64].into_iter(), false, LEFT, W - RIGHT);
    let y = Axis::new(
        series.iter().flat_map(|(_, v)| v.iter().copied()),
        false,
        H - BOTTOM,
        TOP,
    );
    let mut s = String::new();
    frame(&mut s, title, &x, &y, "step", "training loss");
    for (i, (label, v)) in series.iter().enumerate() {
        let d: Vec<String> = v
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_finite())
            .map(|(k, &l)| format!("{:.1},{:.1}", x.px((k + 1) as f64), y.px(l)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            d.join(" "),
            COLORS[i % COLORS.len()]
        );
        legend(&mut s, i, label);
    }
    s.push_str("</svg>\n");
    s
}

/// One point per method: trainable parameters (log scale) against score.
pub fn score_vs_params(title: &str, ylabel: &str, points: &[(String, f64, f64)]) -> String {
    let x = Axis::new(points.iter().map(|p| p.1), true, LEFT, W - RIGHT);
    let y = Axis::new(points.iter().map(|p| p.2), false, H - BOTTOM, TOP);
    let mut s = String::new();
    frame(
        &mut s,
        title,
        &x,
        &y,
        "trainable parameters (log scale)",
        ylabel,
    );
    for (i, (label, n, score)) in points.iter().enumerate() {
        if score.is_finite() {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="5" fill="{}"/>"#,
                x.px(*n),
                y.px(*score),
                COLORS[i % COLORS.len()]
            );
        }
        legend(&mut s, i, label);
    }
    s.push_str("</svg>\n");
    s
}

/// Writes `loss_curves.svg` and `score_vs_params.svg` for a comparison into `dir`.
pub fn compare_charts(dir: &Path, opts: &CompareOptions, rows: &[Row]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        path: dir.display().to_string(),
        source: e,
    })?;
    let what = format!("{} on {}", opts.task.name(), opts.base);
    let series: Vec<(String, Vec<f64>)> = rows
        .iter()
        .map(|r| (r.method.clone(), r.train_losses.clone()))
        .collect();
    let metric = rows.first().map(|r| r.metric.as_str()).unwrap_or("score");
    let points: Vec<(String, f64, f64)> = rows
        .iter()
        .map(|r| (r.method.clone(), r.trainable_params as f64, r.test_score))
        .collect();
    let files = [
        (
            "loss_curves.svg",
            loss_curves(&format!("training loss, {what}"), &series),
        ),
        (
            "score_vs_params.svg",
            score_vs_params(
                &format!("test {metric} vs trainable parameters, {what}"),
                &format!("test {metric}"),
                &points,
            ),
        ),
    ];
    let mut written = Vec::new();
    for (name, svg) in files {
        let path = dir.join(name);
        crate::io::atomic_write(&path, svg.as_bytes())?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_well_formed_svg_with_one_mark_per_method() {
        let series = vec![
            ("full".to_string(), vec![0.7, 0.6, 0.5]),
            ("lora <r=8>".to_string(), vec![0.7, 0.65, f64::NAN]),
        ];
        let s = loss_curves("loss", &series);
        assert!(s.starts_with("<svg") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), 2);
        assert!(s.contains("lora &lt;r=8&gt;"));
        let p = score_vs_params(
            "score",
            "accuracy",
            &[("a".into(), 10.0, 0.5), ("b".into(), 1e6, 0.9)],
        );
        assert_eq!(p.matches("<circle").count(), 2);
        // Log axis: the points sit at the two ends of the plot area, padded by 5%.
        let a = Axis::new([10.0, 1e6].into_iter(), true, 0.0, 100.0);
        assert!((a.px(10.0) - 100.0 * 0.05 / 1.1).abs() < 1e-9);
    }
}
