//! # Capstone: fine-tune a frozen classifier with LoRA, from scratch
//!
//! Everything of the LoRA exercises at once, with nothing given but ndarray: a frozen linear
//! classifier W (d, K) gets the wrong answers on a task (its labels come from a different
//! weight, W plus a low-rank change). Train a LoRA adapter A (r, d), B (K, r) on it so that
//!
//!     logits = x W + s·(x Aᵀ) Bᵀ,      s = α / r
//!
//! classifies the task, W never changing. The loop is the one every fine-tune runs:
//!
//! 1. init: A uniform in ±1/√d, B = 0 (so step 0 is the base model);
//! 2. forward: the logits above;
//! 3. loss: the mean cross-entropy over the N examples, and its gradient dz = (softmax(z) −
//!    onehot(y)) / N;
//! 4. backward: LoRA's dA and dB from dz (the `lora_backward` exercise);
//! 5. an Adam step on A and B (β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay), `steps` times on the
//!    full batch.
//!
//! Graded by tunelab: your A and B are loaded into tunelab's autodiff (its matmul and
//! cross-entropy ops) to measure the loss and the accuracy on held-out examples the adapter never
//! saw. The adapter must reach 90% held-out accuracy where the frozen classifier is far below it,
//! and your first gradient of A and B must equal the one tunelab's autodiff computes.

use ndarray::Array2;
use rand::rngs::StdRng;
use rand::Rng;

/// The training run's settings.
#[derive(Debug, Clone)]
pub struct FinetuneConfig {
    pub r: usize,
    pub alpha: f64,
    pub steps: usize,
    pub lr: f64,
}

/// The gradients of the mean cross-entropy of x W + s·(x Aᵀ) Bᵀ against `labels` with respect
/// to A and B: (dA (r, d), dB (K, r)).
pub fn lora_grads(
    x: &Array2<f64>,
    labels: &[usize],
    w: &Array2<f64>,
    a: &Array2<f64>,
    b: &Array2<f64>,
    s: f64,
) -> (Array2<f64>, Array2<f64>) {
    let n = x.nrows();
    let u = x.dot(&a.t());
    let z = x.dot(w) + u.dot(&b.t()) * s;
    let mut dz = z;
    for (i, mut row) in dz.rows_mut().into_iter().enumerate() {
        let max = row.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        row.mapv_inplace(|v| (v - max).exp());
        let sum = row.sum();
        row /= sum;
        row[labels[i]] -= 1.0;
    }
    dz /= n as f64;
    let db = dz.t().dot(&u) * s;
    let da = (dz.dot(b) * s).t().dot(x);
    (da, db)
}

/// Trains A and B on (x (N, d), labels) with W (d, K) frozen, and returns them.
pub fn finetune(
    x: &Array2<f64>,
    labels: &[usize],
    w: &Array2<f64>,
    cfg: &FinetuneConfig,
    rng: &mut StdRng,
) -> (Array2<f64>, Array2<f64>) {
    let (d, k) = w.dim();
    let bound = 1.0 / (d as f64).sqrt();
    let mut a = Array2::from_shape_fn((cfg.r, d), |_| rng.random_range(-bound..bound));
    let mut b = Array2::zeros((k, cfg.r));
    let s = cfg.alpha / cfg.r as f64;
    let mut adam_a = Adam::new(a.dim());
    let mut adam_b = Adam::new(b.dim());
    for _ in 0..cfg.steps {
        let (da, db) = lora_grads(x, labels, w, &a, &b, s);
        adam_a.step(&mut a, &da, cfg.lr);
        adam_b.step(&mut b, &db, cfg.lr);
    }
    (a, b)
}

/// Adam's moments for one matrix (β₁ 0.9, β₂ 0.999, ε 1e-8, no weight decay).
struct Adam {
    m: Array2<f64>,
    v: Array2<f64>,
    t: i32,
}

impl Adam {
    fn new(dim: (usize, usize)) -> Self {
        Self {
            m: Array2::zeros(dim),
            v: Array2::zeros(dim),
            t: 0,
        }
    }

    fn step(&mut self, p: &mut Array2<f64>, g: &Array2<f64>, lr: f64) {
        let (b1, b2, eps) = (0.9, 0.999, 1e-8);
        self.t += 1;
        self.m = &self.m * b1 + g * (1.0 - b1);
        self.v = &self.v * b2 + &g.mapv(|x| x * x) * (1.0 - b2);
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        ndarray::Zip::from(p)
            .and(&self.m)
            .and(&self.v)
            .for_each(|p, &m, &v| *p -= lr * (m / c1) / ((v / c2).sqrt() + eps));
    }
}
