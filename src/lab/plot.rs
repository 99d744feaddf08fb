//! Charts as plain SVG, written by hand: `compare --plot DIR` draws the training-loss curves of
//! every method and each method's test score against its trainable parameters; `sweep --plot
//! FILE` draws a sweep's validation score against the option it varies, the mean over seeds with
//! its 95% Student-t interval as a bar, one line per value of the other options.

use super::compare::{CompareOptions, Row};
use super::stats::{t_interval, IntervalKind};
use super::sweep::SweepReport;
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

/// The white page, the title, both axes with their ticks (`xticks`: pixel and label) and labels.
fn frame(
    s: &mut String,
    title: &str,
    xticks: &[(f64, String)],
    y: &Axis,
    xlabel: &str,
    ylabel: &str,
) {
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
    for (p, l) in xticks {
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
    frame(&mut s, title, &x.ticks(), &y, "step", "training loss");
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
        &x.ticks(),
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

/// The option a sweep's chart puts on its x axis: the swept option with the most distinct values
/// (the learning rate, `lr`, when no other option varies more).
pub fn sweep_x_option(r: &SweepReport) -> String {
    let mut best = ("lr".to_string(), distinct(r, "lr").len());
    if let Some(p) = r.points.first() {
        for k in p.point.options.keys() {
            let n = distinct(r, k).len();
            if n > best.1 {
                best = (k.clone(), n);
            }
        }
    }
    best.0
}

/// A point's value of option `key` (`lr` is the learning rate), as the sweep printed it.
fn option_value(p: &super::sweep::PointScores, key: &str) -> String {
    if key == "lr" {
        format!("{:e}", p.point.lr)
    } else {
        p.point.options.get(key).cloned().unwrap_or_default()
    }
}

/// The values option `key` takes over the sweep, in grid order, each once.
fn distinct(r: &SweepReport, key: &str) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for p in &r.points {
        let x = option_value(p, key);
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// A sweep's validation score against its swept option (see [`sweep_x_option`]): for every
/// grid point the mean over seeds as a dot and its 95% Student-t interval over seeds as a bar
/// (none with one seed), the points that share the other options' values joined by a line. A
/// numeric option spanning a factor of 8 or more is drawn on a log axis; an option with a
/// non-numeric value is drawn as evenly spaced categories.
pub fn sweep_chart(r: &SweepReport) -> String {
    let key = sweep_x_option(r);
    let values = distinct(r, &key);
    let numbers: Option<Vec<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
    let numbers = numbers.filter(|n| n.iter().all(|v| v.is_finite()));
    let log = numbers.as_ref().is_some_and(|n| {
        let lo = n.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = n.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lo > 0.0 && hi / lo >= 8.0
    });
    // Where each value sits on the data axis: its number, or its index as a category.
    let at = |v: &str| -> f64 {
        match &numbers {
            Some(_) => v.parse().unwrap_or(f64::NAN),
            None => values.iter().position(|x| x == v).unwrap_or(0) as f64,
        }
    };
    let x = Axis::new(values.iter().map(|v| at(v)), log, LEFT, W - RIGHT);
    let xticks: Vec<(f64, String)> = values.iter().map(|v| (x.px(at(v)), v.clone())).collect();
    // Each point's mean and interval over seeds.
    let est: Vec<_> = r
        .points
        .iter()
        .map(|p| t_interval(&p.scores, IntervalKind::TOverSeeds))
        .collect();
    let y = Axis::new(
        est.iter()
            .flat_map(|e| [Some(e.mean), e.lo, e.hi])
            .flatten(),
        false,
        H - BOTTOM,
        TOP,
    );
    // One line per combination of the other options, in grid order.
    let others = |p: &super::sweep::PointScores| -> String {
        let mut parts: Vec<String> = Vec::new();
        if key != "lr" {
            parts.push(format!("lr {:e}", p.point.lr));
        }
        parts.extend(
            p.point
                .options
                .iter()
                .filter(|(k, _)| **k != key)
                .map(|(k, v)| format!("{k} {v}")),
        );
        parts.join(", ")
    };
    let mut lines: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, p) in r.points.iter().enumerate() {
        let label = others(p);
        match lines.iter_mut().find(|(l, _)| *l == label) {
            Some((_, idx)) => idx.push(i),
            None => lines.push((label, vec![i])),
        }
    }
    let interval = if r.seeds.len() >= 2 {
        format!("mean and 95% interval over {} seeds", r.seeds.len())
    } else {
        "one seed, no interval".to_string()
    };
    let mut s = String::new();
    frame(
        &mut s,
        &format!("{} on {}: validation {}", r.method, r.task, r.metric),
        &xticks,
        &y,
        &format!(
            "{key}{} ({} steps of batch {}; {interval})",
            if log { ", log scale" } else { "" },
            r.steps,
            r.batch_size
        ),
        &format!("validation {}", r.metric),
    );
    for (li, (label, idx)) in lines.iter().enumerate() {
        let color = COLORS[li % COLORS.len()];
        let mut idx = idx.clone();
        idx.sort_by(|&a, &b| {
            at(&option_value(&r.points[a], &key)).total_cmp(&at(&option_value(&r.points[b], &key)))
        });
        let xy: Vec<(f64, f64)> = idx
            .iter()
            .filter(|&&i| est[i].mean.is_finite())
            .map(|&i| {
                (
                    x.px(at(&option_value(&r.points[i], &key))),
                    y.px(est[i].mean),
                )
            })
            .collect();
        let d: Vec<String> = xy.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let _ = writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
            d.join(" ")
        );
        for &i in &idx {
            let e = &est[i];
            if !e.mean.is_finite() {
                continue;
            }
            let px = x.px(at(&option_value(&r.points[i], &key)));
            if let (Some(lo), Some(hi)) = (e.lo, e.hi) {
                let _ = writeln!(
                    s,
                    r#"<path class="interval" d="M{px:.1},{:.1} L{px:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1} M{:.1},{:.1} L{:.1},{:.1}" stroke="{color}" fill="none"/>"#,
                    y.px(lo),
                    y.px(hi),
                    px - 4.0,
                    y.px(lo),
                    px + 4.0,
                    y.px(lo),
                    px - 4.0,
                    y.px(hi),
                    px + 4.0,
                    y.px(hi)
                );
            }
            let _ = writeln!(
                s,
                r#"<circle cx="{px:.1}" cy="{:.1}" r="4" fill="{color}"/>"#,
                y.px(e.mean)
            );
        }
        let label = if label.is_empty() {
            r.method.as_str()
        } else {
            label.as_str()
        };
        legend(&mut s, li, label);
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

    #[test]
    fn a_sweep_chart_draws_one_line_per_other_option_and_each_interval_over_seeds() {
        use crate::lab::stats::{t_interval, IntervalKind};
        use crate::lab::sweep::{grid, Axis as Opt, PointScores, SweepReport};
        let opt = Opt {
            flag: "r".into(),
            values: vec!["2".into(), "8".into(), "32".into()],
        };
        let points = grid("lora", &[1e-3, 3e-3], &[opt], &[], None).unwrap();
        let scores = |i: usize| vec![0.5 + 0.01 * i as f64, 0.6, 0.7 - 0.02 * i as f64];
        let report = SweepReport {
            task: "sentiment".into(),
            method: "lora".into(),
            metric: "accuracy".into(),
            split: "validation",
            steps: 10,
            batch_size: 4,
            max_eval_examples: 8,
            seeds: vec![1, 2, 3],
            points: points
                .into_iter()
                .enumerate()
                .map(|(i, point)| {
                    let s = scores(i);
                    PointScores {
                        point,
                        mean: s.iter().sum::<f64>() / 3.0,
                        std: 0.0,
                        losses: vec![0.0; 3],
                        scores: s,
                    }
                })
                .collect(),
            best: 0,
            wall_seconds: 0.0,
        };
        // r has three values, lr two: r is the x axis, one line per learning rate.
        assert_eq!(sweep_x_option(&report), "r");
        let svg = sweep_chart(&report);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 6);
        assert_eq!(svg.matches(r#"class="interval""#).count(), 6);
        assert!(svg.contains(">lr 1e-3<") && svg.contains(">lr 3e-3<"));
        assert!(svg.contains("r, log scale"), "2..32 spans a factor of 16");
        // Each bar spans the Student-t interval over the three seeds: the y axis covers exactly
        // the lowest and highest interval ends (plus 5% padding each side), so the widest
        // point's bar ends sit at those pixels.
        let est: Vec<_> = (0..6)
            .map(|i| t_interval(&scores(i), IntervalKind::TOverSeeds))
            .collect();
        let lo = est
            .iter()
            .map(|e| e.lo.unwrap())
            .fold(f64::INFINITY, f64::min);
        let hi = est
            .iter()
            .map(|e| e.hi.unwrap())
            .fold(f64::NEG_INFINITY, f64::max);
        let y = Axis::new([lo, hi].into_iter(), false, H - BOTTOM, TOP);
        let widest = (0..6)
            .max_by(|&a, &b| {
                let w = |e: &crate::lab::stats::Estimate| e.hi.unwrap() - e.lo.unwrap();
                w(&est[a]).total_cmp(&w(&est[b]))
            })
            .unwrap();
        let bar = format!(
            "L{:.1},{:.1} M",
            Axis::new([2.0, 32.0].into_iter(), true, LEFT, W - RIGHT)
                .px([2.0, 8.0, 32.0][widest % 3]),
            y.px(est[widest].hi.unwrap())
        );
        assert!(svg.contains(&bar), "{bar} not in the chart");
        // One seed: dots, no bars.
        let mut one = report.clone();
        one.seeds = vec![1];
        for p in &mut one.points {
            p.scores.truncate(1);
        }
        let svg = sweep_chart(&one);
        assert_eq!(svg.matches(r#"class="interval""#).count(), 0);
        assert!(svg.contains("one seed, no interval"));
    }
}
