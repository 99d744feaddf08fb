//! Sequence classification cross-entropy, with PyTorch's label smoothing and class weights.
//!
//! Logits z (B, K) from a [`SequenceHead`](crate::nn::heads::SequenceHead), one label yᵢ per
//! sequence. With pᵢ = softmax(zᵢ), the plain loss is the mean over the batch
//!
//! ```text
//! L = −(1/N) Σᵢ log pᵢ[yᵢ]
//! ```
//!
//! (the notes' −(1/N) Σᵢ yᵢ · log ŷᵢ with yᵢ read as a one-hot vector).
//!
//! # One formula for every variant
//!
//! Write every variant as L = −(1/W) Σᵢ Σ_c A_ic · log p_ic, a constant coefficient matrix A
//! against the log-probabilities, over the counted rows i (rows whose label is not the ignore
//! index). Then, since log p_ic = z_ic − log Σ_k exp z_ik,
//!
//! ```text
//! ∂L/∂z_ij = (1/W) · (p_ij · Σ_c A_ic − A_ij)
//! ```
//!
//! - plain: A = onehot(yᵢ), W = N, so ∂L/∂zᵢ = (pᵢ − onehot(yᵢ)) / N;
//! - label smoothing ε over K classes: A = qᵢ = (1 − ε)·onehot(yᵢ) + ε/K, the smoothed target
//!   distribution; its rows sum to 1, so ∂L/∂zᵢ = (pᵢ − qᵢ) / N. The gradient stops pushing
//!   once pᵢ = qᵢ instead of driving the true logit to +∞;
//! - class weights w: A = w_{yᵢ}·onehot(yᵢ), W = Σᵢ w_{yᵢ}: a weighted *mean*, so scaling every
//!   weight by the same factor changes nothing;
//! - both (PyTorch's exact semantics, `F.cross_entropy(z, y, weight=w, label_smoothing=ε)`):
//!   A_ic = (1 − ε)·w_{yᵢ}·[c = yᵢ] + (ε/K)·w_c and W = Σᵢ w_{yᵢ}. Note the smoothing term
//!   weights each class c by its own w_c, not by the target's weight; this is what PyTorch
//!   computes (`(1 − ε)·nll + (ε/K)·Σ_c −w_c·log p_c / Σ w_{yᵢ}`), so it is what we compute.
//!
//! The plain case goes through the fused [`Tape::cross_entropy`] op; the others are built from
//! tape ops: `log_softmax`, `mul` by the constant A, `sum_all`, `scale` by −1/W. Their backward
//! is then the composition of those ops' backwards, which works out to the formula above.

use crate::autodiff::{Tape, Var, IGNORE_INDEX};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{Array2, IxDyn};

/// Options for classification cross-entropy, with PyTorch's meanings. The default is the plain
/// loss: no smoothing, every class weighted 1.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ClassificationLoss {
    /// ε in [0, 1]: the target becomes (1 − ε)·onehot + ε/K.
    pub label_smoothing: f64,
    /// One non-negative weight per class; the loss is the weighted mean Σ w_{yᵢ}·ℓᵢ / Σ w_{yᵢ}.
    pub class_weights: Option<Vec<f64>>,
}

impl ClassificationLoss {
    /// Sequence classification: logits (B, K) against one class index per sequence.
    pub fn forward<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        logits: Var,
        labels: &[usize],
    ) -> Result<Var> {
        let s = tape.shape(logits);
        if s.len() != 2 || s[0] != labels.len() {
            return shape_err(
                "classification_loss",
                format!(
                    "logits must be (B, K) with B = {} labels, got {}",
                    labels.len(),
                    fmt_shape(s)
                ),
            );
        }
        let targets: Vec<i64> = labels.iter().map(|&y| y as i64).collect();
        self.cross_entropy(tape, logits, &targets)
    }

    /// The general form: logits (..., K) read as N rows, N targets, rows whose target is
    /// [`IGNORE_INDEX`] skipped (used by token classification too).
    pub fn cross_entropy<F: Float>(
        &self,
        tape: &mut Tape<'_, F>,
        logits: Var,
        targets: &[i64],
    ) -> Result<Var> {
        const OP: &str = "cross_entropy";
        let shape = tape.shape(logits).to_vec();
        let Some(&k) = shape.last() else {
            return shape_err(OP, "logits need a class axis");
        };
        let eps = self.label_smoothing;
        if !(0.0..=1.0).contains(&eps) {
            return invalid(OP, format!("label smoothing {eps} is outside [0, 1]"));
        }
        if let Some(w) = &self.class_weights {
            if w.len() != k {
                return invalid(OP, format!("{} class weights for {k} classes", w.len()));
            }
            if let Some((c, x)) = w
                .iter()
                .enumerate()
                .find(|(_, x)| !(x.is_finite() && **x >= 0.0))
            {
                return invalid(
                    OP,
                    format!("class weight {x} for class {c} is not a finite non-negative number"),
                );
            }
        }
        if eps == 0.0 && self.class_weights.is_none() {
            // The plain loss: one fused op, softmax and cross-entropy together.
            return tape.cross_entropy(logits, targets, IGNORE_INDEX);
        }
        let n = shape.iter().product::<usize>() / k.max(1);
        if targets.len() != n {
            return shape_err(
                OP,
                format!(
                    "logits {} hold {n} rows but there are {} targets",
                    fmt_shape(&shape),
                    targets.len()
                ),
            );
        }
        let weight = |c: usize| self.class_weights.as_ref().map_or(1.0, |w| w[c]);
        // A (N, K): the coefficient of each log-probability; W: the normaliser.
        let mut a = Array2::<f64>::zeros((n, k));
        let (mut w_sum, mut counted) = (0.0, 0usize);
        for (i, &t) in targets.iter().enumerate() {
            if t == IGNORE_INDEX {
                continue;
            }
            if t < 0 || t as usize >= k {
                return invalid(OP, format!("target {t} at row {i} is outside 0..{k}"));
            }
            let y = t as usize;
            for c in 0..k {
                a[[i, c]] = eps / k as f64 * weight(c);
            }
            a[[i, y]] += (1.0 - eps) * weight(y);
            w_sum += weight(y);
            counted += 1;
        }
        if counted > 0 && w_sum == 0.0 {
            return invalid(OP, "every counted target has class weight 0");
        }
        let a = a
            .mapv(F::of)
            .into_shape_with_order(IxDyn(&shape))
            .expect("N·K elements");
        let log_p = tape.log_softmax(logits)?;
        let a = tape.constant(a);
        let terms = tape.mul(log_p, a)?;
        let total = tape.sum_all(terms)?;
        // No counted row: A is all zeros and the loss is 0, as the fused op gives.
        let w = if counted == 0 { 1.0 } else { w_sum };
        tape.scale(total, -1.0 / w)
    }
}

/// The plain sequence classification loss: mean cross-entropy of logits (B, K) against one class
/// index per sequence.
pub fn classification_loss<F: Float>(
    tape: &mut Tape<'_, F>,
    logits: Var,
    labels: &[usize],
) -> Result<Var> {
    ClassificationLoss::default().forward(tape, logits, labels)
}
