use super::{randn, rng};
use crate::padding_masks::{attention_allowed, pad, PadSide};
use ndarray::{Array2, Array4};
use rand::Rng;
use tunelab::autodiff::AttnMask;
use tunelab::{ParamStore, Tape};

/// tunelab's padding side for the exercise's.
fn theirs(side: PadSide) -> tunelab::data::batch::PadSide {
    match side {
        PadSide::Right => tunelab::data::batch::PadSide::Right,
        PadSide::Left => tunelab::data::batch::PadSide::Left,
    }
}

fn random_seqs(rng: &mut rand::rngs::StdRng) -> Vec<Vec<u32>> {
    let b = rng.random_range(1..5);
    (0..b)
        .map(|_| {
            let n = rng.random_range(1..7);
            (0..n).map(|_| rng.random_range(1..50)).collect()
        })
        .collect()
}

#[test]
fn pad_matches_tunelab() {
    let mut rng = rng(1);
    for side in [PadSide::Right, PadSide::Left] {
        for _ in 0..20 {
            let seqs = random_seqs(&mut rng);
            let want = tunelab::data::batch::pad(&seqs, 99, theirs(side), None).unwrap();
            let got = pad(&seqs, 99, side);
            let what = format!("{side:?} padding of {seqs:?}");
            assert_eq!(got.ids, want.ids, "ids, {what}");
            assert_eq!(
                got.attention_mask, want.attention_mask,
                "attention_mask, {what}"
            );
            assert_eq!(got.positions, want.positions, "positions, {what}");
        }
    }
}

/// Which keys tunelab's attention op gives a non-zero weight: with v = identity, the output is
/// the attention matrix itself.
fn tunelab_allowed(mask: &Array2<bool>, causal: bool, seed: u64) -> Array4<bool> {
    let (b, t) = mask.dim();
    let mut rng = rng(seed);
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let q = tape.constant(randn((b, 1, t, t), &mut rng).into_dyn());
    let k = tape.constant(randn((b, 1, t, t), &mut rng).into_dyn());
    let eye = Array4::from_shape_fn((b, 1, t, t), |(_, _, i, j)| f64::from(u8::from(i == j)));
    let v = tape.constant(eye.into_dyn());
    let m = AttnMask {
        causal,
        key_padding: Some(mask.clone()),
        documents: None,
    };
    let y = tape.attention(q, k, v, &m).unwrap();
    tape.value(y)
        .mapv(|a| a > 0.0)
        .into_dimensionality()
        .unwrap()
}

#[test]
fn attention_rule_matches_tunelab() {
    let mut rng = rng(2);
    for side in [PadSide::Right, PadSide::Left] {
        for causal in [true, false] {
            for seed in 0..5 {
                let seqs = random_seqs(&mut rng);
                let mask = tunelab::data::batch::pad(&seqs, 0, theirs(side), None)
                    .unwrap()
                    .attention_mask;
                let want = tunelab_allowed(&mask, causal, seed);
                let got = attention_allowed(&mask, causal);
                let (b, t) = mask.dim();
                let want = want.into_shape_with_order((b, t, t)).unwrap();
                assert_eq!(got, want, "mask {mask}, causal {causal}");
            }
        }
    }
}
