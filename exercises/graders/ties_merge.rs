use super::{randn, rng};
use crate::ties_merge::ties;
use ndarray::Array1;
use rand::Rng;
use tunelab::lab::merge::{self, MajoritySign};

#[test]
fn matches_tunelab() {
    let mut rng = rng(1);
    for case in 0..40 {
        let inputs = rng.random_range(1..5);
        let n = rng.random_range(1..30);
        let tvs: Vec<Vec<f64>> = (0..inputs).map(|_| randn(n, &mut rng).to_vec()).collect();
        let weights: Vec<f64> = (0..inputs).map(|_| rng.random_range(0.2..1.5)).collect();
        let density = [0.2, 0.5, 0.8, 1.0][case % 4];
        let want = merge::ties(&tvs, &weights, density, MajoritySign::Total);
        let got = ties(&tvs, &weights, density);
        super::assert_close(
            &format!("TIES merge of {inputs} vectors, density {density}"),
            &Array1::from(got),
            &Array1::from(want),
            1e-12,
        );
    }
}

#[test]
fn the_worked_example() {
    let tvs = vec![vec![1.0, -2.0, 0.1, 3.0], vec![2.0, 0.5, -0.2, -1.0]];
    let want = merge::ties(&tvs, &[1.0, 1.0], 0.5, MajoritySign::Total);
    assert_eq!(
        want,
        vec![2.0, -2.0, 0.0, 3.0],
        "tunelab agrees with the doc comment"
    );
    assert_eq!(ties(&tvs, &[1.0, 1.0], 0.5), want);
}
