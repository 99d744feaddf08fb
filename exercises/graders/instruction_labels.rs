use super::rng;
use crate::instruction_labels::instruction_labels;
use rand::Rng;
use tunelab::data::batch::{pad, PadSide};

#[test]
fn matches_tunelab_both_pad_sides() {
    let mut rng = rng(1);
    for side in [PadSide::Right, PadSide::Left] {
        for _ in 0..20 {
            let b = rng.random_range(1..5);
            let seqs: Vec<Vec<u32>> = (0..b)
                .map(|_| {
                    let n = rng.random_range(2..9);
                    (0..n).map(|_| rng.random_range(1..50)).collect()
                })
                .collect();
            let prompt_lens: Vec<usize> =
                seqs.iter().map(|s| rng.random_range(0..s.len())).collect();
            let batch = pad(&seqs, 0, side, None).unwrap();
            let (ids, mask) = (batch.ids, batch.attention_mask);
            let want =
                tunelab::loss::instruction_labels(ids.view(), Some(mask.view()), &prompt_lens)
                    .unwrap();
            let got = instruction_labels(&ids, &mask, &prompt_lens);
            assert_eq!(
                got, want,
                "{side:?} padding, ids {ids}, mask {mask}, prompt_lens {prompt_lens:?}"
            );
        }
    }
}
