//! Intervals and paired comparisons: how sure a compare row's numbers are.
//!
//! A score from one fine-tuning run mixes what the method does with the luck of that run (head
//! and adapter initialisation, data order, dropout) and of the test set. `tunelab compare
//! --seeds N` repeats every run with N seeds and reports, for each column, the mean and a 95%
//! interval:
//!
//! - **N ≥ 2: Student's t over seeds.** mean ± t(0.975, N−1) · s / √N, s the sample standard
//!   deviation of the N per-seed values. With few seeds t is large (12.706 for N = 2, 4.303 for
//!   N = 3), which is the honest price of having few runs.
//! - **N = 1: the same formula over test examples** (each example's 0/1 or per-example score is
//!   one observation), which captures the test set's sampling noise but not the run's luck.
//! - **Paired differences.** Two methods trained with the same seed share that seed's data order
//!   and see the same test examples, so `method − baseline` per seed (or per example, with one
//!   seed) cancels what they share; its interval decides *better*, *worse* or
//!   *indistinguishable* at 95% (the interval excludes 0 or not). With one seed the paired
//!   interval is a percentile bootstrap over test examples.
//!
//! The t quantile is computed (the inverse of the regularised incomplete beta function), not
//! read from a table, so any number of seeds works.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// The confidence level of every interval compare prints.
pub const LEVEL: f64 = 0.95;

/// Resamples of every bootstrap interval.
pub const BOOTSTRAP_RESAMPLES: usize = 2000;

/// How an interval was computed, in the words the table prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalKind {
    /// Student's t over per-seed values.
    TOverSeeds,
    /// Student's t over per-example values of one run.
    TOverExamples,
    /// A percentile bootstrap over per-example values of one run.
    BootstrapOverExamples,
    /// One value and nothing to spread it: no interval.
    None,
}

impl IntervalKind {
    pub fn describe(self) -> &'static str {
        match self {
            IntervalKind::TOverSeeds => "Student-t over seeds",
            IntervalKind::TOverExamples => "Student-t over test examples (one seed)",
            IntervalKind::BootstrapOverExamples => "paired bootstrap over test examples (one seed)",
            IntervalKind::None => "n=1, no interval",
        }
    }
}

/// A mean with its 95% interval (`lo`, `hi`; both `None` when there is no interval).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub mean: f64,
    pub lo: Option<f64>,
    pub hi: Option<f64>,
    /// Observations the interval rests on (seeds, or test examples).
    pub n: usize,
    pub kind: IntervalKind,
}

impl Estimate {
    /// A single value, no interval.
    pub fn point(v: f64) -> Self {
        Self {
            mean: v,
            lo: None,
            hi: None,
            n: 1,
            kind: IntervalKind::None,
        }
    }

    /// Half the interval's width (`None` without an interval).
    pub fn half_width(&self) -> Option<f64> {
        Some((self.hi? - self.lo?) / 2.0)
    }

    /// Whether `v` lies in the interval (false without one).
    pub fn contains(&self, v: f64) -> bool {
        matches!((self.lo, self.hi), (Some(lo), Some(hi)) if lo <= v && v <= hi)
    }

    /// `0.865±0.021` (t intervals are symmetric), or the mean alone without an interval.
    pub fn short(&self, decimals: usize) -> String {
        match self.half_width() {
            Some(h) if self.kind != IntervalKind::BootstrapOverExamples => {
                format!("{:.d$}±{:.d$}", self.mean, h, d = decimals)
            }
            Some(_) => format!(
                "{:.d$} [{:.d$}, {:.d$}]",
                self.mean,
                self.lo.unwrap_or(f64::NAN),
                self.hi.unwrap_or(f64::NAN),
                d = decimals
            ),
            None => format!("{:.d$}", self.mean, d = decimals),
        }
    }
}

/// The arithmetic mean (NaN for no values).
pub fn mean(xs: &[f64]) -> f64 {
    xs.iter().sum::<f64>() / xs.len() as f64
}

/// The sample standard deviation (n − 1 in the denominator; NaN below two values).
pub fn sample_sd(xs: &[f64]) -> f64 {
    let m = mean(xs);
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (xs.len() as f64 - 1.0)).sqrt()
}

/// The `level` t-interval of the mean of `xs`: mean ± t((1+level)/2, n−1) · s/√n. One value
/// gives the value with no interval.
pub fn t_interval(xs: &[f64], kind: IntervalKind) -> Estimate {
    let n = xs.len();
    if n < 2 {
        return Estimate::point(xs.first().copied().unwrap_or(f64::NAN));
    }
    let m = mean(xs);
    let h = t_quantile((1.0 + LEVEL) / 2.0, (n - 1) as f64) * sample_sd(xs) / (n as f64).sqrt();
    Estimate {
        mean: m,
        lo: Some(m - h),
        hi: Some(m + h),
        n,
        kind,
    }
}

/// A percentile bootstrap interval of the mean of `xs`: `resamples` means of n values drawn
/// with replacement, and their (1−level)/2 and (1+level)/2 quantiles. Seeded, so reruns agree.
pub fn bootstrap_interval(xs: &[f64], resamples: usize, seed: u64) -> Estimate {
    let n = xs.len();
    if n < 2 || resamples == 0 {
        return Estimate::point(xs.first().copied().unwrap_or(f64::NAN));
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| xs[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let q = |p: f64| means[((p * resamples as f64).floor() as usize).min(resamples - 1)];
    Estimate {
        mean: mean(xs),
        lo: Some(q((1.0 - LEVEL) / 2.0)),
        hi: Some(q((1.0 + LEVEL) / 2.0)),
        n,
        kind: IntervalKind::BootstrapOverExamples,
    }
}

/// What a paired interval says about a method against the baseline (higher scores are better).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval of `method − baseline` is above 0.
    Better,
    /// The whole interval is below 0.
    Worse,
    /// The interval contains 0.
    Indistinguishable,
    /// There is no interval (one seed and no per-example scores).
    Undecided,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Indistinguishable => "indistinguishable",
            Verdict::Undecided => "needs --seeds >= 2",
        }
    }

    /// The verdict of an interval of differences: better or worse only when it excludes 0.
    pub fn of(e: &Estimate) -> Self {
        match (e.lo, e.hi) {
            (Some(lo), _) if lo > 0.0 => Verdict::Better,
            (_, Some(hi)) if hi < 0.0 => Verdict::Worse,
            (Some(_), Some(_)) => Verdict::Indistinguishable,
            _ => Verdict::Undecided,
        }
    }
}

/// A method against the baseline on the same seeds (or the same test examples).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Paired {
    pub baseline: String,
    /// `method − baseline`, per seed (or, with one seed, per test example: not serialised).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<f64>,
    pub difference: Estimate,
    pub verdict: Verdict,
}

/// Paired t over seeds: `method[i] − baseline[i]` for each seed i (the slices in seed order).
pub fn paired_t(baseline: &str, method: &[f64], base: &[f64]) -> Paired {
    let differences: Vec<f64> = method.iter().zip(base).map(|(m, b)| m - b).collect();
    let difference = t_interval(&differences, IntervalKind::TOverSeeds);
    Paired {
        baseline: baseline.to_string(),
        verdict: Verdict::of(&difference),
        differences,
        difference,
    }
}

/// Paired bootstrap over test examples of one seed: resamples the examples, the same draw for
/// both methods (which is what resampling their per-example differences does).
pub fn paired_bootstrap(baseline: &str, method: &[f64], base: &[f64], seed: u64) -> Paired {
    let d: Vec<f64> = method.iter().zip(base).map(|(m, b)| m - b).collect();
    let difference = bootstrap_interval(&d, BOOTSTRAP_RESAMPLES, seed);
    Paired {
        baseline: baseline.to_string(),
        verdict: Verdict::of(&difference),
        differences: vec![],
        difference,
    }
}

/// Unpaired (Welch) t-interval of `mean(method) − mean(base)`: each method's runs treated as
/// independent samples, with unequal variances and Welch–Satterthwaite degrees of freedom. What
/// a comparison of two methods run on *different* seeds can claim; on the same seeds
/// [`paired_t`] cancels what a seed does to both, and is usually much narrower.
pub fn unpaired_t(baseline: &str, method: &[f64], base: &[f64]) -> Paired {
    let (n1, n2) = (method.len() as f64, base.len() as f64);
    let mean_diff = mean(method) - mean(base);
    let difference = if method.len() < 2 || base.len() < 2 {
        Estimate::point(mean_diff)
    } else {
        let (v1, v2) = (sample_sd(method).powi(2) / n1, sample_sd(base).powi(2) / n2);
        let se = (v1 + v2).sqrt();
        let df = if v1 + v2 > 0.0 {
            (v1 + v2).powi(2) / (v1 * v1 / (n1 - 1.0) + v2 * v2 / (n2 - 1.0))
        } else {
            n1 + n2 - 2.0
        };
        let h = t_quantile((1.0 + LEVEL) / 2.0, df) * se;
        Estimate {
            mean: mean_diff,
            lo: Some(mean_diff - h),
            hi: Some(mean_diff + h),
            n: method.len().min(base.len()),
            kind: IntervalKind::TOverSeeds,
        }
    };
    Paired {
        baseline: baseline.to_string(),
        differences: vec![],
        verdict: Verdict::of(&difference),
        difference,
    }
}

/// The standard error of an accuracy `p` measured on `n` test examples, √(p(1 − p)/n): the
/// test set's sampling noise alone, what one run's score would wobble by on another draw of
/// examples from the same distribution.
pub fn binomial_se(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

/// The fewest seeds (2 to `max`) at which a paired t-interval of differences with standard
/// deviation `sd` around a mean `gap` excludes 0: t(0.975, n − 1)·sd/√n < |gap|. `None` when
/// even `max` seeds would not, or the gap is 0 or not finite.
pub fn seeds_to_separate(gap: f64, sd: f64, max: usize) -> Option<usize> {
    if !(gap.is_finite() && sd.is_finite()) || gap == 0.0 {
        return None;
    }
    (2..=max).find(|&n| {
        t_quantile((1.0 + LEVEL) / 2.0, (n - 1) as f64) * sd / (n as f64).sqrt() < gap.abs()
    })
}

// ---------------------------------------------------------------------------------------------
// Student's t distribution

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients: about 15 significant digits).
pub fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1−x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let t = x + 7.5;
    let a = G[1..]
        .iter()
        .enumerate()
        .fold(G[0], |a, (i, g)| a + g / (x + i as f64 + 1.0));
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// The regularised incomplete beta function I_x(a, b), by its continued fraction (modified
/// Lentz), using the symmetry I_x(a,b) = 1 − I_{1−x}(b,a) where the fraction converges slowly.
pub fn inc_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    if x > (a + 1.0) / (a + b + 2.0) {
        return 1.0 - inc_beta(1.0 - x, b, a);
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    const TINY: f64 = 1e-300;
    let (mut c, mut d) = (1.0, 1.0 - (a + b) * x / (a + 1.0));
    d = 1.0 / if d.abs() < TINY { TINY } else { d };
    let mut f = d;
    for m in 1..=300 {
        let m = m as f64;
        // The even step, then the odd step, of the fraction's terms.
        for num in [
            m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0)),
        ] {
            d = 1.0 + num * d;
            d = 1.0 / if d.abs() < TINY { TINY } else { d };
            c = 1.0 + num / c;
            c = if c.abs() < TINY { TINY } else { c };
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    ln_front.exp() * f / a
}

/// The CDF of Student's t with `df` degrees of freedom: for t ≥ 0,
/// 1 − ½ I_{df/(df+t²)}(df/2, ½).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * inc_beta(df / (df + t * t), df / 2.0, 0.5);
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The `p` quantile of Student's t with `df` degrees of freedom (`t_quantile(0.975, 1)` is
/// 12.706): the CDF inverted by bisection, to 1e-12.
pub fn t_quantile(p: f64, df: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || df <= 0.0 || p.is_nan() || df.is_nan() {
        return f64::NAN;
    }
    if p == 0.5 {
        return 0.0;
    }
    if p < 0.5 {
        return -t_quantile(1.0 - p, df);
    }
    let mut hi = 1.0;
    while t_cdf(hi, df) < p {
        hi *= 2.0;
        if hi > 1e12 {
            return f64::INFINITY;
        }
    }
    let mut lo = 0.0;
    while hi - lo > 1e-12 * hi.max(1.0) {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}
