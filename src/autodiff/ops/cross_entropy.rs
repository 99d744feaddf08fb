//! Cross-entropy from logits with an ignore index, fused with the softmax and numerically stable
//! for large logits (log-sum-exp with the row max subtracted).
//!
//! logits (..., V) are read as N rows; targets has N entries. Rows whose target equals the
//! ignore index (−100, as in PyTorch and Hugging Face) contribute nothing. The loss is the mean
//! over the M counted rows: L = −(1/M) Σ log softmax(z_i)[y_i].
//!
//! Backward: dz_i = (softmax(z_i) − onehot(y_i)) · g / M for counted rows, 0 for ignored rows.
//! The probabilities are the cache.

use super::softmax::softmax_inplace;
use crate::autodiff::tape::{Backward, BackwardCtx, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::tensor::{fmt_shape, Float};
use ndarray::{arr0, Array2, ArrayD, ArrayViewD};

/// The label value that means "no loss here".
pub const IGNORE_INDEX: i64 = -100;

struct CrossEntropy<F: Float> {
    logits: Var,
    targets: Vec<i64>,
    ignore_index: i64,
    probs: Array2<F>,
    count: usize,
}

// ANCHOR: backward
impl<F: Float> Backward<F> for CrossEntropy<F> {
    fn saved_bytes(&self) -> usize {
        self.probs.len() * std::mem::size_of::<F>() + self.targets.len() * 8
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        if self.count == 0 {
            return;
        }
        let scale = *g.iter().next().expect("scalar gradient") / F::of(self.count as f64);
        let mut d = self.probs.clone();
        for (mut row, &t) in d.rows_mut().into_iter().zip(&self.targets) {
            if t == self.ignore_index {
                row.fill(F::zero());
                continue;
            }
            row[t as usize] -= F::one();
            row.mapv_inplace(|x| x * scale);
        }
        let shape = ctx.value(self.logits).raw_dim();
        ctx.accumulate(
            self.logits,
            d.into_shape_with_order(shape).expect("element count"),
        );
    }
}
// ANCHOR_END: backward

impl<F: Float> Tape<'_, F> {
    /// Mean cross-entropy of `logits` (..., V) against `targets` (one per row), skipping rows
    /// whose target is `ignore_index`. Returns a 0-d tensor (0 when every row is ignored).
    pub fn cross_entropy(
        &mut self,
        logits: Var,
        targets: &[i64],
        ignore_index: i64,
    ) -> Result<Var> {
        let ls = self.shape(logits).to_vec();
        let Some(&v) = ls.last() else {
            return shape_err("cross_entropy", "logits need a class axis");
        };
        let n = ls.iter().product::<usize>() / v.max(1);
        if targets.len() != n {
            return shape_err(
                "cross_entropy",
                format!(
                    "logits {} hold {n} rows but there are {} targets",
                    fmt_shape(&ls),
                    targets.len()
                ),
            );
        }
        if let Some((i, &t)) = targets
            .iter()
            .enumerate()
            .find(|(_, &t)| t != ignore_index && (t < 0 || t as usize >= v))
        {
            return invalid(
                "cross_entropy",
                format!("target {t} at row {i} is outside 0..{v}"),
            );
        }
        let mut probs = self
            .value(logits)
            .to_shape((n, v))
            .expect("element count")
            .into_owned();
        let (mut sum, mut count) = (0.0f64, 0usize);
        for (row, &t) in probs.rows_mut().into_iter().zip(targets) {
            if t == ignore_index {
                continue;
            }
            let max = row.fold(F::neg_infinity(), |m, &x| m.max(x));
            let lse = max + row.fold(F::zero(), |s, &x| s + (x - max).exp()).ln();
            sum -= (row[t as usize] - lse).as_f64();
            count += 1;
            softmax_inplace(row);
        }
        let loss = if count == 0 { 0.0 } else { sum / count as f64 };
        let y = arr0(F::of(loss)).into_dyn();
        let op = CrossEntropy {
            logits,
            targets: targets.to_vec(),
            ignore_index,
            probs,
            count,
        };
        Ok(self.push("cross_entropy", y, &[logits], op))
    }
}
