use super::{assert_close, assert_written_without_tunelab, numeric_grad, randn, rng};
use crate::grpo_clipped::{clipped_objective, grpo_loss, grpo_loss_grad, LossType, Rollout};
use approx::abs_diff_eq;
use ndarray::Array2;
use rand::Rng;
use tunelab::loss::grpo::{self, GrpoInputs, GrpoLossConfig};
use tunelab::{Grads, ParamStore, Tape};

#[cfg(not(feature = "solutions"))]
const SOURCE: &str = include_str!("../08_alignment/grpo_clipped.rs");
#[cfg(feature = "solutions")]
const SOURCE: &str = include_str!("../../solutions/08_alignment/grpo_clipped.rs");

/// B completions of T tokens: log-probabilities of sampled tokens, old ones within `spread` of
/// them in log space (so ratios fall on both sides of the clip range), signed advantages, and a
/// mask of completions of random lengths (padding on the right).
fn case(seed: u64, b: usize, t: usize, spread: f64) -> (Array2<f64>, Rollout) {
    let mut rng = rng(seed);
    let logps = randn((b, t), &mut rng).mapv(|z: f64| -0.5 - z.abs());
    let old_logps = &logps + &(randn((b, t), &mut rng) * spread);
    let advantages = randn(b, &mut rng).to_vec();
    let lens: Vec<usize> = (0..b).map(|_| rng.random_range(1..=t)).collect();
    let mask = Array2::from_shape_fn((b, t), |(i, j)| j < lens[i]);
    let rollout = Rollout {
        old_logps,
        advantages,
        mask,
    };
    (logps, rollout)
}

fn tunelab_loss_type(loss_type: LossType) -> grpo::LossType {
    match loss_type {
        LossType::Grpo => grpo::LossType::Grpo,
        LossType::Dapo => grpo::LossType::Dapo,
    }
}

/// tunelab's GRPO loss with β = 0 and ε_high = ε, and its gradient with respect to `logps`.
fn tunelab(
    logps: &Array2<f64>,
    x: &Rollout,
    mask: &Array2<bool>,
    epsilon: f64,
    loss_type: LossType,
) -> (f64, Array2<f64>) {
    let mut store = ParamStore::<f64>::new();
    let id = store.add("logps", logps.clone().into_dyn(), true).unwrap();
    let mut tape = Tape::new(&store);
    let v = tape.param(id);
    let config = GrpoLossConfig {
        loss_type: tunelab_loss_type(loss_type),
        beta: 0.0,
        epsilon,
        epsilon_high: epsilon,
        max_completion_length: logps.ncols(),
        ..GrpoLossConfig::default()
    };
    let inputs = GrpoInputs {
        old_logps: Some(x.old_logps.view()),
        ref_logps: None,
        advantages: &x.advantages,
        mask: mask.view(),
    };
    let out = grpo::grpo_loss(&mut tape, v, &inputs, &config).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(out.loss, &mut grads).unwrap();
    let loss = *tape.value(out.loss).first().unwrap();
    let grad = grads
        .get(id)
        .cloned()
        .unwrap()
        .into_dimensionality()
        .unwrap();
    (loss, grad)
}

const CASES: [(u64, usize, usize, f64, f64); 3] = [
    (1, 4, 6, 0.3, 0.2),
    (2, 6, 5, 0.1, 0.2),
    (3, 3, 8, 0.5, 0.1),
];

#[test]
fn objective_per_token_matches_tunelab() {
    // tunelab reports no per-token values: on a mask of one token, the per-token (dapo) loss is
    // minus that token's objective.
    for (seed, b, t, spread, eps) in CASES {
        let (logps, x) = case(seed, b, t, spread);
        let want = Array2::from_shape_fn((b, t), |(i, j)| {
            let one = Array2::from_shape_fn((b, t), |p| p == (i, j));
            -tunelab(&logps, &x, &one, eps, LossType::Dapo).0
        });
        assert_close(
            "min(ρA, clip(ρ, 1 − ε, 1 + ε)A) per token",
            &clipped_objective(&logps, &x, eps),
            &want,
            1e-10,
        );
    }
}

#[test]
fn loss_matches_tunelab() {
    for loss_type in [LossType::Grpo, LossType::Dapo] {
        for (seed, b, t, spread, eps) in CASES {
            let (logps, x) = case(seed, b, t, spread);
            let (want, _) = tunelab(&logps, &x, &x.mask, eps, loss_type);
            let got = grpo_loss(&logps, &x, eps, loss_type);
            assert!(
                abs_diff_eq!(got, want, epsilon = 1e-10 * want.abs().max(1.0)),
                "{loss_type:?} loss {got}, tunelab {want} (case {seed})"
            );
        }
    }
}

#[test]
fn a_completion_without_tokens_counts_one() {
    for loss_type in [LossType::Grpo, LossType::Dapo] {
        let (logps, mut x) = case(4, 3, 4, 0.3);
        x.mask.row_mut(1).fill(false);
        let (want, want_grad) = tunelab(&logps, &x, &x.mask, 0.2, loss_type);
        let got = grpo_loss(&logps, &x, 0.2, loss_type);
        assert!(
            abs_diff_eq!(got, want, epsilon = 1e-10 * want.abs().max(1.0)),
            "{loss_type:?} loss {got} with an empty completion, tunelab {want}"
        );
        assert_close(
            &format!("{loss_type:?} dL/dlogps with an empty completion"),
            &grpo_loss_grad(&logps, &x, 0.2, loss_type),
            &want_grad,
            1e-10,
        );
    }
}

#[test]
fn gradient_matches_tunelab() {
    for loss_type in [LossType::Grpo, LossType::Dapo] {
        for (seed, b, t, spread, eps) in CASES {
            let (logps, x) = case(seed, b, t, spread);
            let (_, want) = tunelab(&logps, &x, &x.mask, eps, loss_type);
            assert_close(
                &format!("{loss_type:?} dL/dlogps (case {seed})"),
                &grpo_loss_grad(&logps, &x, eps, loss_type),
                &want,
                1e-10,
            );
        }
    }
}

#[test]
fn gradient_passes_gradcheck() {
    // Random ratios never sit exactly on a clip bound, where the objective has a kink.
    for loss_type in [LossType::Grpo, LossType::Dapo] {
        let (logps, x) = case(5, 4, 5, 0.3);
        let numeric = numeric_grad(&logps, |l| grpo_loss(l, &x, 0.2, loss_type));
        assert_close(
            &format!("{loss_type:?} dL/dlogps against central differences"),
            &grpo_loss_grad(&logps, &x, 0.2, loss_type),
            &numeric,
            1e-6,
        );
    }
}

#[test]
fn written_without_tunelab() {
    assert_written_without_tunelab("grpo_clipped", SOURCE);
}
