use super::{assert_close, randn, rng};
use crate::softmax::softmax;
use approx::abs_diff_eq;
use ndarray::{array, Ix2};
use tunelab::{ParamStore, Tape};

#[test]
fn matches_tunelab() {
    let mut rng = rng(1);
    for scale in [1.0, 10.0, 1000.0] {
        let z = randn((5, 7), &mut rng) * scale;
        let store = ParamStore::<f64>::new();
        let mut tape = Tape::new(&store);
        let zv = tape.constant(z.clone().into_dyn());
        let p = tape.softmax(zv).unwrap();
        let want = tape
            .value(p)
            .to_owned()
            .into_dimensionality::<Ix2>()
            .unwrap();
        assert_close(
            &format!("softmax of logits ×{scale}"),
            &softmax(&z),
            &want,
            1e-12,
        );
    }
}

#[test]
fn large_logits_give_no_nan() {
    let p = softmax(&array![[1000.0, 1000.0, 990.0]]);
    assert!(p.iter().all(|x| x.is_finite()), "NaN or infinity: {p}");
    assert!(
        abs_diff_eq!(p.sum(), 1.0, epsilon = 1e-12),
        "row does not sum to 1: {p}"
    );
}
