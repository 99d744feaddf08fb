//! Learning-rate schedules: `lr(step) = base_lr * factor(step)`, with the factors of Hugging Face
//! transformers (`get_constant_schedule`, `get_constant_schedule_with_warmup`,
//! `get_linear_schedule_with_warmup`, `get_cosine_schedule_with_warmup`).
//!
//! `step` counts optimizer steps from 0: the first update uses `factor(0)`, exactly as a
//! `LambdaLR` stepped after each `optimizer.step()`.
//!
//! ```text
//! warmup   (step < W):  factor = step / max(1, W)                     0 -> 1 linearly
//! linear   (step >= W): factor = max(0, (N - step) / max(1, N - W))  1 -> 0 at step N
//! cosine   (step >= W): p = (step - W) / max(1, N - W)
//!                       factor = max(0, 0.5 * (1 + cos(pi * p)))      1 -> 0 at step N
//! ```
//!
//! with `W = warmup_steps` and `N = total_steps`. Warmup matters for fine-tuning: Adam's first
//! steps move every weight by about `lr` whatever the gradient, and a pre-trained model is
//! easily knocked off its good region (forgetting) before the moment estimates settle.
//!
//! As in transformers, the cosine is not clamped past `total_steps`: it rises again (half a
//! cycle per `N - W` steps), so `total_steps` should be the real number of training steps.

use std::f64::consts::PI;

/// A learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// factor 1 throughout.
    Constant,
    /// Linear warmup from 0, then 1.
    ConstantWithWarmup { warmup_steps: usize },
    /// Linear warmup from 0 to 1, then linear decay to 0 at `total_steps`.
    Linear {
        warmup_steps: usize,
        total_steps: usize,
    },
    /// Linear warmup from 0 to 1, then half a cosine down to 0 at `total_steps`.
    Cosine {
        warmup_steps: usize,
        total_steps: usize,
    },
}

impl Schedule {
    // ANCHOR: factor
    /// The multiplier of the base learning rate at optimizer step `step` (from 0).
    pub fn factor(&self, step: usize) -> f64 {
        let s = step as f64;
        let warm = |w: usize| s / w.max(1) as f64;
        match *self {
            Schedule::Constant => 1.0,
            Schedule::ConstantWithWarmup { warmup_steps } => {
                if step < warmup_steps {
                    warm(warmup_steps)
                } else {
                    1.0
                }
            }
            Schedule::Linear {
                warmup_steps,
                total_steps,
            } => {
                if step < warmup_steps {
                    return warm(warmup_steps);
                }
                let left = total_steps as f64 - s;
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                (left / span).max(0.0)
            }
            Schedule::Cosine {
                warmup_steps,
                total_steps,
            } => {
                if step < warmup_steps {
                    return warm(warmup_steps);
                }
                let span = total_steps.saturating_sub(warmup_steps).max(1) as f64;
                let progress = (step - warmup_steps) as f64 / span;
                // transformers: 0.5 * (1 + cos(pi * num_cycles * 2 * progress)), num_cycles 0.5
                (0.5 * (1.0 + (PI * 0.5 * 2.0 * progress).cos())).max(0.0)
            }
        }
    }
    // ANCHOR_END: factor

    /// The learning rate at optimizer step `step`: `base_lr * factor(step)`.
    pub fn lr(&self, base_lr: f64, step: usize) -> f64 {
        base_lr * self.factor(step)
    }

    /// The steps spent warming up.
    pub fn warmup_steps(&self) -> usize {
        match *self {
            Schedule::Constant => 0,
            Schedule::ConstantWithWarmup { warmup_steps }
            | Schedule::Linear { warmup_steps, .. }
            | Schedule::Cosine { warmup_steps, .. } => warmup_steps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_endpoints() {
        let s = Schedule::Cosine {
            warmup_steps: 10,
            total_steps: 110,
        };
        assert_eq!(s.factor(0), 0.0);
        assert_eq!(s.factor(5), 0.5);
        assert_eq!(s.factor(10), 1.0);
        assert!((s.factor(60) - 0.5).abs() < 1e-15);
        assert!(s.factor(110).abs() < 1e-15);
        assert_eq!(s.lr(3e-4, 10), 3e-4);
    }

    #[test]
    fn linear_reaches_zero_and_stays() {
        let s = Schedule::Linear {
            warmup_steps: 2,
            total_steps: 6,
        };
        let f: Vec<f64> = (0..9).map(|i| s.factor(i)).collect();
        assert_eq!(f, [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn degenerate_spans_do_not_divide_by_zero() {
        let s = Schedule::Cosine {
            warmup_steps: 5,
            total_steps: 3,
        };
        assert!(s.factor(7).is_finite());
        assert_eq!(
            Schedule::ConstantWithWarmup { warmup_steps: 0 }.factor(0),
            1.0
        );
    }
}
