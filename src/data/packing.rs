//! Packing: several short examples concatenated into one row of a fixed length, instead of one
//! example per row padded to the longest.
//!
//! A padded batch spends compute on pad tokens (every row as long as the longest); a packed one
//! fills each row with whole examples, one after another, and pads only the tail. Packed naively,
//! a token would attend to the examples before it in its row and its position id would count
//! from the row's start, so its loss would not be the loss it has alone. Packed with
//! **cross-document masking**, each token carries its example's index in the row (its document:
//! attention stays inside it, [`crate::autodiff::AttnMask::documents`]) and positions restart at
//! 0 for every example, so each example computes exactly what it computes unpacked (what
//! Hugging Face's `DataCollatorWithFlattening` gives flash attention through `position_ids`).
//!
//! Labels are token labels (-100 ignored): the first label of every example is set to -100 in the
//! row, because the causal LM loss scores position t on label t + 1, and an example's first
//! token must not be the target of the previous example's last one (unpacked, it is never a
//! target either).

use crate::autodiff::IGNORE_INDEX;
use crate::error::{invalid, Result};
use ndarray::Array2;

/// Examples packed into rows of `row_len` tokens.
#[derive(Debug, Clone)]
pub struct Packed {
    /// (rows, row_len) token ids, pad after the last example of a row.
    pub ids: Array2<usize>,
    /// (rows, row_len) labels, -100 on pads and on every example's first token.
    pub labels: Array2<i64>,
    /// (rows, row_len) position ids, restarting at 0 for every example (0 on pads).
    pub positions: Array2<usize>,
    /// (rows, row_len) the example's index within its row; pads get one more than the last.
    pub documents: Array2<usize>,
    /// (rows, row_len) `true` for real tokens.
    pub mask: Array2<bool>,
    /// Where each example went, in input order: (row, first column, length).
    pub placed: Vec<(usize, usize, usize)>,
}

impl Packed {
    /// Share of the packed rows' tokens that are padding.
    pub fn pad_share(&self) -> f64 {
        let real = self.mask.iter().filter(|&&m| m).count();
        1.0 - real as f64 / self.mask.len().max(1) as f64
    }

    /// The same rows as ordinary positions 0..row_len, all in one document: naive packing.
    pub fn naive_positions(&self) -> Array2<usize> {
        Array2::from_shape_fn(self.ids.dim(), |(_, j)| j)
    }
}

/// Packs `examples` (ids, labels of the same length) into rows of `row_len`, first fit in order:
/// each example goes into the first row with room for it, else it starts a new one. An example
/// longer than `row_len` is an error (naming it).
pub fn pack(examples: &[(Vec<u32>, Vec<i64>)], row_len: usize, pad: u32) -> Result<Packed> {
    if row_len == 0 {
        return invalid("pack", "rows of 0 tokens hold nothing");
    }
    let mut rows: Vec<Vec<usize>> = Vec::new(); // indices of the examples in each row
    let mut used: Vec<usize> = Vec::new(); // tokens taken in each row
    for (i, (ids, labels)) in examples.iter().enumerate() {
        if ids.len() != labels.len() {
            return invalid(
                "pack",
                format!(
                    "example {i} has {} ids and {} labels",
                    ids.len(),
                    labels.len()
                ),
            );
        }
        if ids.is_empty() || ids.len() > row_len {
            return invalid(
                "pack",
                format!(
                    "example {i} has {} tokens; a row holds 1 to {row_len}",
                    ids.len()
                ),
            );
        }
        // First fit: the first row with room, else a new one.
        let r = match used.iter().position(|&u| u + ids.len() <= row_len) {
            Some(r) => r,
            None => {
                rows.push(Vec::new());
                used.push(0);
                rows.len() - 1
            }
        };
        rows[r].push(i);
        used[r] += ids.len();
    }
    let shape = (rows.len(), row_len);
    let mut out = Packed {
        ids: Array2::from_elem(shape, pad as usize),
        labels: Array2::from_elem(shape, IGNORE_INDEX),
        positions: Array2::zeros(shape),
        documents: Array2::zeros(shape),
        mask: Array2::from_elem(shape, false),
        placed: vec![(0, 0, 0); examples.len()],
    };
    for (r, members) in rows.iter().enumerate() {
        let mut col = 0;
        for (d, &i) in members.iter().enumerate() {
            let (ids, labels) = &examples[i];
            for (j, (&id, &label)) in ids.iter().zip(labels).enumerate() {
                out.ids[[r, col + j]] = id as usize;
                out.labels[[r, col + j]] = if j == 0 { IGNORE_INDEX } else { label };
                out.positions[[r, col + j]] = j;
                out.documents[[r, col + j]] = d;
                out.mask[[r, col + j]] = true;
            }
            out.placed[i] = (r, col, ids.len());
            col += ids.len();
        }
        for j in col..row_len {
            out.documents[[r, j]] = members.len();
        }
    }
    Ok(out)
}

/// Share of pad tokens when `lengths` are batched `batch` at a time, each batch padded to its
/// longest row (right padding, as [`crate::data::batch::pad`] does).
pub fn padded_pad_share(lengths: &[usize], batch: usize) -> f64 {
    let (mut real, mut total) = (0usize, 0usize);
    for chunk in lengths.chunks(batch.max(1)) {
        let longest = chunk.iter().copied().max().unwrap_or(0);
        real += chunk.iter().sum::<usize>();
        total += longest * chunk.len();
    }
    1.0 - real as f64 / total.max(1) as f64
}
