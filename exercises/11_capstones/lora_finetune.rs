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
    // TODO: the forward, the softmax cross-entropy's gradient dz, then LoRA's backward.
    todo!()
}

/// Trains A and B on (x (N, d), labels) with W (d, K) frozen, and returns them.
pub fn finetune(
    x: &Array2<f64>,
    labels: &[usize],
    w: &Array2<f64>,
    cfg: &FinetuneConfig,
    rng: &mut StdRng,
) -> (Array2<f64>, Array2<f64>) {
    // TODO: init A and B; then `cfg.steps` times: lora_grads, and an Adam step on each.
    todo!()
}
