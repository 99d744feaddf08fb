//! Batching tests: padding on either side, masks, position ids, labels at pads, causal-LM prompt
//! masking, NER label alignment, truncation, and errors instead of panics.

use ndarray::array;
use tunelab::autodiff::IGNORE_INDEX as I;
use tunelab::data::batch::{align_word_labels, pad, pad_with_labels, PadSide};
use tunelab::Error;

const PAD: u32 = 9;

fn seqs() -> Vec<Vec<u32>> {
    vec![vec![1, 2, 3], vec![4], vec![5, 6]]
}

#[test]
fn pad_right_masks_and_ids() {
    let b = pad(&seqs(), PAD, PadSide::Right, None).unwrap();
    assert_eq!((b.batch_size(), b.seq_len()), (3, 3));
    assert_eq!(b.ids, array![[1, 2, 3], [4, 9, 9], [5, 6, 9]]);
    assert_eq!(
        b.attention_mask,
        array![
            [true, true, true],
            [true, false, false],
            [true, true, false]
        ]
    );
    assert_eq!(b.lengths(), vec![3, 1, 2]);
    assert_eq!(b.labels, None);
}

#[test]
fn pad_right_positions() {
    let b = pad(&seqs(), PAD, PadSide::Right, None).unwrap();
    assert_eq!(b.positions, array![[0, 1, 2], [0, 0, 0], [0, 1, 0]]);
}

#[test]
fn pad_left_masks_and_ids() {
    let b = pad(&seqs(), PAD, PadSide::Left, None).unwrap();
    assert_eq!(b.ids, array![[1, 2, 3], [9, 9, 4], [9, 5, 6]]);
    assert_eq!(
        b.attention_mask,
        array![
            [true, true, true],
            [false, false, true],
            [false, true, true]
        ]
    );
    // Every row's last real token is in the last column.
    assert!(b.attention_mask.column(2).iter().all(|&m| m));
}

#[test]
fn pad_left_positions() {
    let b = pad(&seqs(), PAD, PadSide::Left, None).unwrap();
    // Positions count from each row's first real token: left pads do not shift them.
    assert_eq!(b.positions, array![[0, 1, 2], [0, 0, 0], [0, 0, 1]]);
    // A left-padded row has the positions of the same sequence alone.
    let alone = pad(&seqs()[2..], PAD, PadSide::Left, None).unwrap();
    assert_eq!(alone.positions.row(0).to_vec(), vec![0, 1]);
    assert_eq!(
        b.positions.row(2).to_vec()[1..],
        alone.positions.row(0).to_vec()[..]
    );
}

#[test]
fn pad_labels_ignore_index_at_pads() {
    let labels = vec![vec![10, 11, 12], vec![13], vec![I, 15]];
    let right = pad_with_labels(&seqs(), &labels, PAD, PadSide::Right, None).unwrap();
    assert_eq!(
        right.labels.unwrap(),
        array![[10, 11, 12], [13, I, I], [I, 15, I]]
    );
    let left = pad_with_labels(&seqs(), &labels, PAD, PadSide::Left, None).unwrap();
    assert_eq!(
        left.labels.unwrap(),
        array![[10, 11, 12], [I, I, 13], [I, I, 15]]
    );
}

#[test]
fn pad_truncate_right_keeps_first_tokens() {
    let labels = vec![vec![10, 11, 12], vec![13], vec![14, 15]];
    let b = pad_with_labels(&seqs(), &labels, PAD, PadSide::Right, Some(2)).unwrap();
    assert_eq!(b.ids, array![[1, 2], [4, 9], [5, 6]]);
    assert_eq!(b.labels.unwrap(), array![[10, 11], [13, I], [14, 15]]);
    assert_eq!(b.positions, array![[0, 1], [0, 0], [0, 1]]);
}

#[test]
fn pad_truncate_left_keeps_last_tokens() {
    let labels = vec![vec![10, 11, 12], vec![13], vec![14, 15]];
    let b = pad_with_labels(&seqs(), &labels, PAD, PadSide::Left, Some(2)).unwrap();
    assert_eq!(b.ids, array![[2, 3], [9, 4], [5, 6]]);
    assert_eq!(b.labels.unwrap(), array![[11, 12], [I, 13], [14, 15]]);
    assert_eq!(b.positions, array![[0, 1], [0, 0], [0, 1]]);
    // max_len above the longest sequence changes nothing.
    let wide = pad(&seqs(), PAD, PadSide::Left, Some(10)).unwrap();
    assert_eq!(wide, pad(&seqs(), PAD, PadSide::Left, None).unwrap());
}

#[test]
fn align_word_labels_first_subtoken_only() {
    // [CLS] w0 w1 w1 w1 w2 [SEP]
    let word_ids = [None, Some(0), Some(1), Some(1), Some(1), Some(2), None];
    assert_eq!(
        align_word_labels(&word_ids, &[4, 5, 6]).unwrap(),
        vec![I, 4, 5, I, I, 6, I]
    );
    // A word label of IGNORE_INDEX stays ignored.
    assert_eq!(
        align_word_labels(&[Some(0), Some(1)], &[I, 3]).unwrap(),
        vec![I, 3]
    );
    assert!(matches!(
        align_word_labels(&[Some(0), Some(3)], &[1, 2]),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn pad_errors_instead_of_panics() {
    let invalid = |r| matches!(r, Err(Error::Invalid { .. }));
    let shape = |r| matches!(r, Err(Error::Shape { .. }));
    assert!(invalid(pad(&[], PAD, PadSide::Right, None)));
    assert!(invalid(pad(&[vec![1], vec![]], PAD, PadSide::Left, None)));
    assert!(invalid(pad(&seqs(), PAD, PadSide::Right, Some(0))));
    // Two label rows for three sequences.
    assert!(shape(pad_with_labels(
        &seqs(),
        &[vec![1, 2, 3], vec![4]],
        PAD,
        PadSide::Right,
        None
    )));
    // A label row of the wrong length.
    assert!(shape(pad_with_labels(
        &seqs(),
        &[vec![1, 2, 3], vec![4, 4], vec![5, 6]],
        PAD,
        PadSide::Right,
        None
    )));
    // A negative label that is not IGNORE_INDEX.
    assert!(invalid(pad_with_labels(
        &seqs(),
        &[vec![1, 2, 3], vec![-1], vec![5, 6]],
        PAD,
        PadSide::Right,
        None
    )));
}
