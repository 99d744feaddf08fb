use super::{assert_close, assert_written_without_tunelab, randn, rng};
use crate::grpo_advantages::group_advantages;
use ndarray::Array1;
use rand::Rng;
use tunelab::loss::grpo::{self, ScaleRewards};

#[cfg(not(feature = "solutions"))]
const SOURCE: &str = include_str!("../08_alignment/grpo_advantages.rs");
#[cfg(feature = "solutions")]
const SOURCE: &str = include_str!("../../solutions/08_alignment/grpo_advantages.rs");

fn assert_matches(rewards: &[f64], g: usize) {
    let want = grpo::group_advantages(rewards, g, ScaleRewards::Group).unwrap();
    let got = group_advantages(rewards, g);
    assert_close(
        &format!("advantages of {rewards:?} in groups of {g}"),
        &Array1::from(got),
        &Array1::from(want),
        1e-10,
    );
}

#[test]
fn matches_tunelab_on_random_rewards() {
    let mut rng = rng(1);
    for (b, g) in [(1, 2), (3, 4), (2, 8), (5, 3)] {
        let rewards = (randn(b * g, &mut rng) * 3.0).to_vec();
        assert_matches(&rewards, g);
    }
}

#[test]
fn matches_tunelab_on_verifiable_rewards() {
    // 0/1 rewards, as the code task's execution reward gives.
    let mut rng = rng(2);
    for (b, g) in [(4, 4), (3, 8), (6, 2)] {
        let rewards: Vec<f64> = (0..b * g)
            .map(|_| f64::from(u8::from(rng.random_bool(0.4))))
            .collect();
        assert_matches(&rewards, g);
    }
}

#[test]
fn an_all_equal_group_gets_zero_advantage() {
    let rewards = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.3, 0.3, 0.3, 0.3];
    assert_matches(&rewards, 4);
    let got = group_advantages(&rewards, 4);
    assert!(
        got[..4].iter().chain(&got[8..]).all(|&a| a == 0.0),
        "the all-right and the all-0.3 groups must get exactly 0, got {got:?}"
    );
}

#[test]
fn written_without_tunelab() {
    assert_written_without_tunelab("grpo_advantages", SOURCE);
}
