//! Batching with dynamic padding: sequences of different lengths → one (B, T) batch, T the
//! longest sequence (or `max_len`), with the mask, position ids and labels the model and the loss
//! need.
//!
//! Pad side matters (pitfall 6 of the seed notes):
//! - [`PadSide::Right`] for training: real tokens at 0..n, pads after. Causal attention never
//!   lets a real token see a pad that follows it.
//! - [`PadSide::Left`] for batched generation with a decoder: every row's last real token sits at
//!   T-1, so the next token of every row is read from the same column. Position ids then count
//!   from each row's first real token, so a left-padded prompt gets the same positions as alone.
//!
//! Labels follow the loss convention of [`crate::autodiff`]'s cross-entropy: `labels[b, t]` is
//! the target for the logits at `[b, t]`, and [`IGNORE_INDEX`] (-100) wherever no loss applies
//! (pads, prompt tokens, special tokens, word continuations).

use ndarray::Array2;

use crate::autodiff::IGNORE_INDEX;
use crate::error::{Error, Result};

/// Which end of a row the padding goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PadSide {
    /// Pads after the tokens: for training.
    Right,
    /// Pads before the tokens: for batched decoder generation.
    Left,
}

/// A padded batch. Every array is (B, T).
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Token ids; pad slots hold the pad id. (B, T)
    pub ids: Array2<usize>,
    /// `true` for a real token, `false` for a pad. (B, T)
    pub attention_mask: Array2<bool>,
    /// Position ids: 0, 1, ... from each row's first real token, whatever the pad side; 0 in pad
    /// slots. (B, T)
    pub positions: Array2<usize>,
    /// Loss targets, [`IGNORE_INDEX`] where no loss applies (always at pads). (B, T)
    pub labels: Option<Array2<i64>>,
}

impl Batch {
    /// B, the number of rows.
    pub fn batch_size(&self) -> usize {
        self.ids.nrows()
    }

    /// T, the padded length.
    pub fn seq_len(&self) -> usize {
        self.ids.ncols()
    }

    /// The number of real tokens in each row.
    pub fn lengths(&self) -> Vec<usize> {
        self.attention_mask
            .rows()
            .into_iter()
            .map(|row| row.iter().filter(|&&m| m).count())
            .collect()
    }
}

/// Pads `seqs` into one batch without labels.
///
/// T is the longest sequence, capped at `max_len`. A longer sequence is truncated: with
/// [`PadSide::Right`] its first `max_len` tokens are kept (the start of a training text); with
/// [`PadSide::Left`] its last `max_len` tokens are kept (the end of a prompt, next to the tokens
/// to generate).
///
/// Errors: no sequences, an empty sequence (a row with no real token would attend to nothing),
/// or `max_len` of 0.
pub fn pad(seqs: &[Vec<u32>], pad_id: u32, side: PadSide, max_len: Option<usize>) -> Result<Batch> {
    build(seqs, None, pad_id, side, max_len)
}

/// Pads `seqs` and their per-token `labels` (same length as each sequence, for instance from
/// [`crate::loss::instruction_labels`] or [`align_word_labels`]) into one batch; labels at pads are [`IGNORE_INDEX`].
/// Truncation is as in [`pad`], applied to ids and labels alike.
///
/// Errors: those of [`pad`], a label count or label length that does not match the sequences,
/// or a label that is negative but not [`IGNORE_INDEX`].
pub fn pad_with_labels(
    seqs: &[Vec<u32>],
    labels: &[Vec<i64>],
    pad_id: u32,
    side: PadSide,
    max_len: Option<usize>,
) -> Result<Batch> {
    build(seqs, Some(labels), pad_id, side, max_len)
}

fn build(
    seqs: &[Vec<u32>],
    labels: Option<&[Vec<i64>]>,
    pad_id: u32,
    side: PadSide,
    max_len: Option<usize>,
) -> Result<Batch> {
    const OP: &str = "batch::pad";
    if seqs.is_empty() {
        return Err(invalid(OP, "no sequences to batch".into()));
    }
    if max_len == Some(0) {
        return Err(invalid(OP, "max_len must be at least 1".into()));
    }
    if let Some(i) = seqs.iter().position(|s| s.is_empty()) {
        return Err(invalid(OP, format!("sequence {i} is empty")));
    }
    if let Some(labels) = labels {
        if labels.len() != seqs.len() {
            return Err(shape(
                OP,
                format!("{} label rows for {} sequences", labels.len(), seqs.len()),
            ));
        }
        for (i, (s, l)) in seqs.iter().zip(labels).enumerate() {
            if s.len() != l.len() {
                return Err(shape(
                    OP,
                    format!("sequence {i} has {} tokens but {} labels", s.len(), l.len()),
                ));
            }
            if let Some(&bad) = l.iter().find(|&&x| x < 0 && x != IGNORE_INDEX) {
                return Err(invalid(
                    OP,
                    format!("sequence {i}: label {bad} is negative but not IGNORE_INDEX ({IGNORE_INDEX})"),
                ));
            }
        }
    }

    let longest = seqs.iter().map(Vec::len).max().unwrap_or(0);
    let t_len = max_len.map_or(longest, |m| longest.min(m));
    let b = seqs.len();
    let mut ids = Array2::from_elem((b, t_len), pad_id as usize); // (B, T)
    let mut attention_mask = Array2::from_elem((b, t_len), false); // (B, T)
    let mut positions = Array2::zeros((b, t_len)); // (B, T)
    let mut label_arr = labels.map(|_| Array2::from_elem((b, t_len), IGNORE_INDEX)); // (B, T)

    for (i, seq) in seqs.iter().enumerate() {
        let n = seq.len().min(t_len);
        // kept: the range of seq that survives truncation; first: its first column in the row.
        let (kept, first) = match side {
            PadSide::Right => (0..n, 0),
            PadSide::Left => (seq.len() - n..seq.len(), t_len - n),
        };
        for (k, src) in kept.enumerate() {
            let t = first + k;
            ids[[i, t]] = seq[src] as usize;
            attention_mask[[i, t]] = true;
            positions[[i, t]] = k;
            if let (Some(arr), Some(labels)) = (label_arr.as_mut(), labels) {
                arr[[i, t]] = labels[i][src];
            }
        }
    }
    Ok(Batch {
        ids,
        attention_mask,
        positions,
        labels: label_arr,
    })
}

/// Token labels for token classification (NER) from one label per word.
///
/// `word_ids` is the word index of each token, `None` for special tokens (as returned by
/// [`crate::data::tokenizer::Tokenizer::encode_words`]). The first token of each word gets its
/// word's label; continuation sub-tokens and special tokens get [`IGNORE_INDEX`], so each word
/// counts once in the loss and in the metric.
///
/// ```
/// use tunelab::data::batch::align_word_labels;
/// use tunelab::autodiff::IGNORE_INDEX as I;
/// // [CLS] New York ##er [SEP]: words 0 and 1, word 1 split in two.
/// let word_ids = [None, Some(0), Some(1), Some(1), None];
/// assert_eq!(align_word_labels(&word_ids, &[3, 4]).unwrap(), vec![I, 3, 4, I, I]);
/// ```
///
/// Errors: a word index with no label.
pub fn align_word_labels(word_ids: &[Option<usize>], word_labels: &[i64]) -> Result<Vec<i64>> {
    let mut previous = None;
    word_ids
        .iter()
        .map(|&w| {
            let first = w.is_some() && w != previous;
            previous = w;
            match w {
                Some(w) if first => word_labels.get(w).copied().ok_or_else(|| {
                    shape(
                        "batch::align_word_labels",
                        format!("word {w} has no label ({} labels)", word_labels.len()),
                    )
                }),
                _ => Ok(IGNORE_INDEX),
            }
        })
        .collect()
}

fn invalid(op: &'static str, detail: String) -> Error {
    Error::Invalid { op, detail }
}

fn shape(op: &'static str, detail: String) -> Error {
    Error::Shape { op, detail }
}
