//! Cross-entropy from logits with an ignore index, fused with the softmax and numerically stable
//! for large logits (log-sum-exp with the row max subtracted).
//!
//! logits (..., V) are read as N rows; targets has N entries. Rows whose target equals the
//! ignore index (−100, as in PyTorch and Hugging Face) contribute nothing. The loss is the mean
//! over the M counted rows: L = −(1/M) Σ log softmax(z_i)[y_i].
//!
//! Backward: dz_i = (softmax(z_i) − onehot(y_i)) · g / M for counted rows, 0 for ignored rows.
//! The probabilities are the cache. Rows are spread over the kernel threads; the loss is summed
//! on one thread in row order, so it does not depend on the thread count.

use crate::autodiff::tape::{Backward, BackwardCtx, Saves, Tape, Var};
use crate::error::{invalid, shape_err, Result};
use crate::kernels::{fastmath, for_each_piece};
use crate::tensor::{fmt_shape, Float};
use ndarray::{arr0, Array2, ArrayD, ArrayView2, ArrayViewD, Axis, IxDyn, Zip};
use std::borrow::Cow;
use std::mem::MaybeUninit;

/// Rows are independent: pieces of this many rows go to the kernel threads.
const ROWS_PER_PIECE: usize = 32;

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
    // The probabilities are the cache: the logits themselves are not read again.
    fn saves(&self, _needs: &dyn Fn(Var) -> bool) -> Saves {
        Saves::nothing()
    }

    fn saved_bytes(&self) -> usize {
        self.probs.len() * std::mem::size_of::<F>() + self.targets.len() * 8
    }

    fn backward(&self, ctx: &mut BackwardCtx<'_, '_, F>, _y: ArrayViewD<'_, F>, g: &ArrayD<F>) {
        if self.count == 0 {
            return;
        }
        let scale = *g.iter().next().expect("scalar gradient") / F::of(self.count as f64);
        // Every element is written below (ignored rows with zeros), so no zero-fill first.
        let mut d = Array2::<F>::uninit(self.probs.raw_dim());
        let pieces: Vec<_> = d
            .axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE)
            .zip(self.probs.axis_chunks_iter(Axis(0), ROWS_PER_PIECE))
            .zip(self.targets.chunks(ROWS_PER_PIECE))
            .collect();
        for_each_piece(pieces, |((mut d, p), targets)| {
            for ((mut dr, pr), &t) in d.outer_iter_mut().zip(p.outer_iter()).zip(targets) {
                if t == self.ignore_index {
                    dr.fill(MaybeUninit::new(F::zero()));
                    continue;
                }
                Zip::from(&mut dr)
                    .and(&pr)
                    .for_each(|d, &p| *d = MaybeUninit::new(p * scale));
                dr[t as usize] = MaybeUninit::new((pr[t as usize] - F::one()) * scale);
            }
        });
        // SAFETY: the loop above wrote every row (each row is either ignored or counted).
        let d = unsafe { d.assume_init() };
        let shape = IxDyn(ctx.shape(self.logits));
        ctx.accumulate(
            self.logits,
            d.into_shape_with_order(shape).expect("element count"),
        );
    }
}
// ANCHOR_END: backward

// ANCHOR: backward_reference
/// The gradient of [`Tape::cross_entropy`]'s loss with respect to the logits (N, V), written
/// plainly, one row at a time: the row's softmax, minus one at the target, times g / M for the M
/// counted rows; an ignored row gets no gradient. The op's backward above computes the same
/// numbers from the cached probabilities, rows spread over the kernel threads; a test checks
/// that the two agree on random inputs.
pub fn cross_entropy_backward_reference<F: Float>(
    logits: ArrayView2<'_, F>,
    targets: &[i64],
    ignore_index: i64,
    g: F,
) -> Array2<F> {
    let counted = targets.iter().filter(|&&t| t != ignore_index).count();
    let mut dz = Array2::zeros(logits.raw_dim());
    for (i, &t) in targets.iter().enumerate() {
        if t == ignore_index {
            continue;
        }
        let z = logits.row(i);
        let max = z.fold(F::neg_infinity(), |m, &x| m.max(x));
        let sum = z.fold(F::zero(), |s, &x| s + (x - max).exp());
        for j in 0..z.len() {
            let p = (z[j] - max).exp() / sum;
            let onehot = if j == t as usize { F::one() } else { F::zero() };
            dz[[i, j]] = (p - onehot) * g / F::of(counted as f64);
        }
    }
    dz
}
// ANCHOR_END: backward_reference

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
        // One pass per row: max, exponentials and their sum, then normalise; the loss of the row
        // is −log p[y] = log Σ exp(z − max) − (z[y] − max).
        let mut probs = Array2::<F>::zeros((n, v));
        let mut row_loss = vec![0.0f64; n];
        {
            let z = self.value(logits);
            let z = z.to_shape((n, v)).expect("element count");
            let z = &z;
            let pieces: Vec<_> = probs
                .axis_chunks_iter_mut(Axis(0), ROWS_PER_PIECE)
                .zip(row_loss.chunks_mut(ROWS_PER_PIECE))
                .enumerate()
                .collect();
            for_each_piece(pieces, |(p, (mut probs, losses))| {
                for (i, (mut pr, loss)) in probs.outer_iter_mut().zip(losses).enumerate() {
                    let r = p * ROWS_PER_PIECE + i;
                    let t = targets[r];
                    if t == ignore_index {
                        continue;
                    }
                    let zr = z.row(r);
                    let zr: Cow<[F]> = zr
                        .as_slice()
                        .map_or_else(|| Cow::Owned(zr.to_vec()), Cow::Borrowed);
                    let pr = pr.as_slice_mut().expect("standard layout");
                    let max = fastmath::max(&zr);
                    for (p, &x) in pr.iter_mut().zip(zr.iter()) {
                        *p = (x - max).exp_fast();
                    }
                    let sum = fastmath::sum(pr);
                    let inv = F::one() / sum;
                    for p in pr.iter_mut() {
                        *p *= inv;
                    }
                    *loss = sum.ln().as_f64() - (zr[t as usize] - max).as_f64();
                }
            });
        }
        // Summed in row order on one thread: the same loss for any thread count.
        let count = targets.iter().filter(|&&t| t != ignore_index).count();
        let sum: f64 = row_loss.iter().sum();
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
