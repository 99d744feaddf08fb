//! The task losses: small cases worked out by hand, finite-difference gradient checks in f64,
//! PyTorch's label-smoothing and class-weight formulas, prompt masking and the ignore index.
//!
//! Most hand cases use two rows whose softmax is easy:
//!   z = [0, ln 3] → p = [1/4, 3/4]        z = [ln 2, 0] → p = [2/3, 1/3]

use crate::common::{eval, gradcheck, HAND_TOL};
use approx::assert_abs_diff_eq;
use ndarray::{array, s, Array, Array2, ArrayD, IxDyn};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tunelab::autodiff::gradcheck::TOLERANCE;
use tunelab::autodiff::IGNORE_INDEX;
use tunelab::loss::{
    causal_lm_loss, causal_lm_loss_sum, classification_loss, instruction_labels, instruction_loss,
    lm_labels, span_loss, token_classification_loss, token_classification_loss_with,
    ClassificationLoss,
};
use tunelab::{Grads, ParamStore, Tape};

const LN2: f64 = std::f64::consts::LN_2;

fn ln(x: f64) -> f64 {
    x.ln()
}

/// The two easy rows above, as a (2, 2) array.
fn two_rows() -> ArrayD<f64> {
    array![[0.0, ln(3.0)], [LN2, 0.0]].into_dyn()
}

fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array::random_using(IxDyn(shape), StandardNormal, &mut rng)
}

// ---------------------------------------------------------------------------------------------
// Sequence classification

/// Rows [0, ln 3] (label 1) and [ln 2, 0] (label 1):
///   ℓ₀ = −ln(3/4) = ln(4/3), ℓ₁ = −ln(1/3) = ln 3, L = (ln(4/3) + ln 3) / 2 = ln 4 / 2 = ln 2.
///   dz = (p − onehot) / 2: row 0 ([1/4, 3/4] − [0, 1]) / 2 = [1/8, −1/8],
///                          row 1 ([2/3, 1/3] − [0, 1]) / 2 = [1/3, −1/3].
#[test]
fn hand_classification_is_mean_nll_with_softmax_minus_onehot_gradient() {
    let (loss, g) = eval(&[two_rows()], |t, x| classification_loss(t, x[0], &[1, 1]));
    assert_abs_diff_eq!(loss, LN2, epsilon = HAND_TOL);
    let want = array![[1.0 / 8.0, -1.0 / 8.0], [1.0 / 3.0, -1.0 / 3.0]].into_dyn();
    assert_abs_diff_eq!(g[0], want, epsilon = HAND_TOL);
}

/// ε = 0.2, K = 2: targets q = (1 − ε)·onehot + ε/K.
///   row 0, label 1: q = [0.1, 0.9], ℓ₀ = −(0.1 ln(1/4) + 0.9 ln(3/4)) = ln 4 − 0.9 ln 3
///   row 1, label 0: q = [0.9, 0.1], ℓ₁ = −(0.9 ln(2/3) + 0.1 ln(1/3)) = ln 3 − 0.9 ln 2
///   L = (ℓ₀ + ℓ₁) / 2 = (1.1 ln 2 + 0.1 ln 3) / 2
/// PyTorch computes (1 − ε)·nll + (ε/K)·mean_i Σ_c −log p_ic; both must agree.
///   dz = (p − q) / 2: row 0 [0.15, −0.15] / 2, row 1 [2/3 − 0.9, 1/3 − 0.1] / 2.
#[test]
fn label_smoothing_matches_pytorch_formula_by_hand() {
    let eps = 0.2;
    let opts = ClassificationLoss {
        label_smoothing: eps,
        class_weights: None,
    };
    let (loss, g) = eval(&[two_rows()], |t, x| opts.forward(t, x[0], &[1, 0]));

    let by_hand = (1.1 * LN2 + 0.1 * ln(3.0)) / 2.0;
    assert_abs_diff_eq!(loss, by_hand, epsilon = HAND_TOL);

    let p = [[0.25, 0.75], [2.0 / 3.0, 1.0 / 3.0]];
    let y = [1, 0];
    let nll = (-ln(p[0][y[0]]) - ln(p[1][y[1]])) / 2.0;
    let smooth = (-ln(p[0][0]) - ln(p[0][1]) - ln(p[1][0]) - ln(p[1][1])) / 2.0;
    let pytorch = (1.0 - eps) * nll + eps / 2.0 * smooth;
    assert_abs_diff_eq!(loss, pytorch, epsilon = HAND_TOL);

    let want = array![
        [0.075, -0.075],
        [(2.0 / 3.0 - 0.9) / 2.0, (1.0 / 3.0 - 0.1) / 2.0]
    ];
    assert_abs_diff_eq!(g[0], want.into_dyn(), epsilon = HAND_TOL);
}

/// ε = 0 with no weights is the plain fused loss; ε = 1 makes the target uniform, so the loss
/// is the mean of −(1/K) Σ_c log p_c and no longer depends on the labels.
#[test]
fn label_smoothing_limits() {
    let zero = ClassificationLoss::default();
    let (a, _) = eval(&[two_rows()], |t, x| zero.forward(t, x[0], &[1, 0]));
    let (b, _) = eval(&[two_rows()], |t, x| classification_loss(t, x[0], &[1, 0]));
    assert_abs_diff_eq!(a, b, epsilon = HAND_TOL);
    let one = ClassificationLoss {
        label_smoothing: 1.0,
        class_weights: None,
    };
    let (c, _) = eval(&[two_rows()], |t, x| one.forward(t, x[0], &[1, 0]));
    let (d, _) = eval(&[two_rows()], |t, x| one.forward(t, x[0], &[0, 0]));
    let uniform = (-(ln(0.25) + ln(0.75)) / 2.0 - (ln(2.0 / 3.0) + ln(1.0 / 3.0)) / 2.0) / 2.0;
    assert_abs_diff_eq!(c, uniform, epsilon = HAND_TOL);
    assert_abs_diff_eq!(d, uniform, epsilon = HAND_TOL);
}

/// Weights w = [1, 3], labels [1, 0]: ℓ₀ = ln(4/3) with weight 3, ℓ₁ = ln(3/2) with weight 1.
///   L = (3 ln(4/3) + ln(3/2)) / (3 + 1) = (5 ln 2 − 2 ln 3) / 4
///   dz = w_y (p − onehot) / 4: row 0 (3/4)·[1/4, −1/4] = [3/16, −3/16],
///                              row 1 (1/4)·[2/3 − 1, 1/3] = [−1/12, 1/12].
#[test]
fn class_weights_give_a_weighted_mean_by_hand() {
    let opts = ClassificationLoss {
        label_smoothing: 0.0,
        class_weights: Some(vec![1.0, 3.0]),
    };
    let (loss, g) = eval(&[two_rows()], |t, x| opts.forward(t, x[0], &[1, 0]));
    let by_hand = (5.0 * LN2 - 2.0 * ln(3.0)) / 4.0;
    assert_abs_diff_eq!(loss, by_hand, epsilon = HAND_TOL);
    let want = array![[3.0 / 16.0, -3.0 / 16.0], [-1.0 / 12.0, 1.0 / 12.0]].into_dyn();
    assert_abs_diff_eq!(g[0], want, epsilon = HAND_TOL);
}

/// Equal weights, whatever their size, give the plain loss and gradient (a weighted *mean*), and
/// the composite path (log_softmax · constant) agrees with the fused op.
#[test]
fn equal_class_weights_match_the_fused_plain_loss() {
    let z = random(&[4, 5], 1);
    let labels = [0, 4, 2, 2];
    let opts = ClassificationLoss {
        label_smoothing: 0.0,
        class_weights: Some(vec![2.5; 5]),
    };
    let (a, ga) = eval(std::slice::from_ref(&z), |t, x| {
        opts.forward(t, x[0], &labels)
    });
    let (b, gb) = eval(&[z], |t, x| classification_loss(t, x[0], &labels));
    assert_abs_diff_eq!(a, b, epsilon = HAND_TOL);
    assert_abs_diff_eq!(ga[0], gb[0], epsilon = HAND_TOL);
}

/// Weights and smoothing together, against PyTorch's formula written out independently:
///   L = (1 − ε)·Σᵢ w_{yᵢ}·(−log p_{i,yᵢ}) / Σᵢ w_{yᵢ} + (ε/K)·Σᵢ Σ_c w_c·(−log p_ic) / Σᵢ w_{yᵢ}
#[test]
fn weights_with_smoothing_match_pytorch_formula() {
    let z = random(&[3, 4], 2);
    let (labels, w, eps) = ([3usize, 0, 3], [0.5, 2.0, 1.0, 4.0], 0.3);
    let opts = ClassificationLoss {
        label_smoothing: eps,
        class_weights: Some(w.to_vec()),
    };
    let (loss, _) = eval(std::slice::from_ref(&z), |t, x| {
        opts.forward(t, x[0], &labels)
    });

    let k = 4.0;
    let (mut nll, mut smooth, mut wsum) = (0.0, 0.0, 0.0);
    for (i, &y) in labels.iter().enumerate() {
        let row = z.slice(s![i, ..]);
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        nll += w[y] * (lse - row[y]);
        smooth += (0..4).map(|c| w[c] * (lse - row[c])).sum::<f64>();
        wsum += w[y];
    }
    let pytorch = (1.0 - eps) * nll / wsum + eps / k * smooth / wsum;
    assert_abs_diff_eq!(loss, pytorch, epsilon = HAND_TOL);
}

#[test]
fn classification_rejects_bad_options_and_labels() {
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let z = tape.constant(two_rows());
    assert!(classification_loss(&mut tape, z, &[0]).is_err());
    assert!(classification_loss(&mut tape, z, &[0, 2]).is_err());
    let bad = [
        ClassificationLoss {
            label_smoothing: 1.5,
            class_weights: None,
        },
        ClassificationLoss {
            label_smoothing: 0.0,
            class_weights: Some(vec![1.0]),
        },
        ClassificationLoss {
            label_smoothing: 0.1,
            class_weights: Some(vec![1.0, -1.0]),
        },
        ClassificationLoss {
            label_smoothing: 0.0,
            class_weights: Some(vec![0.0, 1.0]),
        },
    ];
    for opts in &bad {
        // (the last one: both targets are class 0, whose weight is 0, so Σ w_y = 0)
        assert!(opts.forward(&mut tape, z, &[0, 0]).is_err(), "{opts:?}");
    }
}

#[test]
fn gradcheck_classification_variants() {
    let labels = [2, 0, 1];
    let variants = [
        ClassificationLoss::default(),
        ClassificationLoss {
            label_smoothing: 0.1,
            class_weights: None,
        },
        ClassificationLoss {
            label_smoothing: 0.0,
            class_weights: Some(vec![0.2, 1.0, 3.0, 0.7]),
        },
        ClassificationLoss {
            label_smoothing: 0.25,
            class_weights: Some(vec![0.2, 1.0, 3.0, 0.7]),
        },
    ];
    for (i, opts) in variants.iter().enumerate() {
        let err = gradcheck(&[random(&[3, 4], 10 + i as u64)], |t, x| {
            opts.forward(t, x[0], &labels)
        });
        assert!(err < TOLERANCE, "{opts:?}: max rel err {err:e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Causal LM

/// ids [0, 1, 1], V = 2. Position 0 predicts id 1 from z₀ = [0, ln 3] (p = 3/4), position 1
/// predicts id 1 from z₁ = [ln 2, 0] (p = 1/3), position 2 predicts nothing.
///   sum S = ln(4/3) + ln 3 = ln 4, count M = 2, mean = ln 2.
///   mean's dz: t0 [1/4, −1/4] / 2, t1 [2/3, −2/3] / 2, t2 0.  sum's dz: the same times 2.
/// With the first two tokens as the prompt only id 1 at t = 2 is learned, from z₁:
///   loss = ln 3, dz₀ = 0, dz₁ = [2/3, −2/3], dz₂ = 0.
#[test]
fn hand_causal_lm_shift_sum_and_prompt_mask() {
    let z = array![[[0.0, ln(3.0)], [LN2, 0.0], [5.0, -5.0]]].into_dyn();
    let ids = array![[0usize, 1, 1]];
    let labels = lm_labels(ids.view(), None).unwrap();
    assert_eq!(labels, array![[0i64, 1, 1]]);

    let (mean, g) = eval(std::slice::from_ref(&z), |t, x| {
        causal_lm_loss(t, x[0], labels.view())
    });
    assert_abs_diff_eq!(mean, LN2, epsilon = HAND_TOL);
    let want = array![[[0.125, -0.125], [1.0 / 3.0, -1.0 / 3.0], [0.0, 0.0]]].into_dyn();
    assert_abs_diff_eq!(g[0], want, epsilon = HAND_TOL);

    let (sum, g) = eval(std::slice::from_ref(&z), |t, x| {
        let (s, m) = causal_lm_loss_sum(t, x[0], labels.view())?;
        assert_eq!(m, 2);
        Ok(s)
    });
    assert_abs_diff_eq!(sum, 2.0 * LN2, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[0], want * 2.0, epsilon = HAND_TOL);

    let (masked, g) = eval(&[z], |t, x| {
        instruction_loss(t, x[0], ids.view(), None, &[2])
    });
    assert_abs_diff_eq!(masked, ln(3.0), epsilon = HAND_TOL);
    let want = array![[[0.0, 0.0], [2.0 / 3.0, -2.0 / 3.0], [0.0, 0.0]]].into_dyn();
    assert_abs_diff_eq!(g[0], want, epsilon = HAND_TOL);
}

/// Labels follow the mask on either padding side; the prompt is counted in real tokens.
#[test]
fn lm_and_instruction_labels_with_padding() {
    let ids = array![[5usize, 6, 7, 0], [0, 0, 8, 9]];
    let mask = array![[true, true, true, false], [false, false, true, true]];
    let i = IGNORE_INDEX;
    assert_eq!(
        lm_labels(ids.view(), Some(mask.view())).unwrap(),
        array![[5, 6, 7, i], [i, i, 8, 9]]
    );
    assert_eq!(
        instruction_labels(ids.view(), Some(mask.view()), &[2, 1]).unwrap(),
        array![[i, i, 7, i], [i, i, i, 9]]
    );
    // A prompt longer than the row, a wrong number of prompt lengths, a mask of another shape.
    assert!(instruction_labels(ids.view(), Some(mask.view()), &[4, 0]).is_err());
    assert!(instruction_labels(ids.view(), None, &[1]).is_err());
    assert!(lm_labels(ids.view(), Some(mask.slice(s![.., 1..]))).is_err());
}

/// Masking the prompt changes the loss, and the logits whose next token is a prompt token (or
/// padding, or nothing) get exactly zero gradient; those that predict a response token do not.
#[test]
fn prompt_masking_changes_loss_and_zeroes_prompt_gradients() {
    let (b, t, v) = (2, 6, 5);
    let z = random(&[b, t, v], 3);
    let ids = array![[1usize, 4, 2, 3, 0, 2], [3, 3, 1, 4, 2, 0]];
    let mask = array![[true; 6], [true, true, true, true, true, false]];
    let prompt_lens = [2, 3];

    let full = lm_labels(ids.view(), Some(mask.view())).unwrap();
    let (l_full, _) = eval(std::slice::from_ref(&z), |tp, x| {
        causal_lm_loss(tp, x[0], full.view())
    });
    let (l_resp, g) = eval(&[z], |tp, x| {
        instruction_loss(tp, x[0], ids.view(), Some(mask.view()), &prompt_lens)
    });
    assert!((l_full - l_resp).abs() > 1e-6, "{l_full} vs {l_resp}");

    let g = &g[0];
    for (row, &p) in prompt_lens.iter().enumerate() {
        let real = mask.row(row).iter().filter(|&&m| m).count();
        for pos in 0..t {
            // Position pos is scored on token pos + 1: a response token iff p ≤ pos + 1 < real.
            let scored = pos + 1 >= p && pos + 1 < real;
            let norm: f64 = g.slice(s![row, pos, ..]).iter().map(|x| x.abs()).sum();
            if scored {
                assert!(norm > 1e-8, "row {row} pos {pos} should learn");
            } else {
                assert_eq!(norm, 0.0, "row {row} pos {pos} should get no gradient");
            }
        }
    }
}

#[test]
fn causal_lm_rejects_mismatched_shapes() {
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let z = tape.constant(ArrayD::zeros(IxDyn(&[2, 3, 4])));
    let labels = Array2::<i64>::zeros((2, 4));
    assert!(causal_lm_loss(&mut tape, z, labels.view()).is_err());
    let labels = array![[0i64, 1, 9], [0, 1, 2]]; // 9 is outside the vocabulary
    assert!(causal_lm_loss(&mut tape, z, labels.view()).is_err());
}

#[test]
fn gradcheck_causal_lm() {
    let i = IGNORE_INDEX;
    let labels = array![[i, i, 3, 1, 0], [i, 2, 2, 4, i]];
    let err = gradcheck(&[random(&[2, 5, 5], 4)], |t, x| {
        causal_lm_loss(t, x[0], labels.view())
    });
    assert!(err < TOLERANCE, "mean: max rel err {err:e}");
    let err = gradcheck(&[random(&[2, 5, 5], 5)], |t, x| {
        Ok(causal_lm_loss_sum(t, x[0], labels.view())?.0)
    });
    assert!(err < TOLERANCE, "sum: max rel err {err:e}");
}

// ---------------------------------------------------------------------------------------------
// Token classification

/// One sentence of three positions, K = 2, labels [1, 0, ignored]:
///   ℓ₀ = −ln(3/4) = ln(4/3), ℓ₁ = −ln(2/3) = ln(3/2), L = (ln(4/3) + ln(3/2)) / 2 = ln 2 / 2.
///   dz₀ = [1/4, −1/4] / 2, dz₁ = [2/3 − 1, 1/3] / 2, dz₂ = 0 (ignored, not in the mean).
#[test]
fn hand_token_classification_with_ignore_index() {
    let z = array![[[0.0, ln(3.0)], [LN2, 0.0], [9.0, -9.0]]].into_dyn();
    let labels = array![[1, 0, IGNORE_INDEX]];
    let (loss, g) = eval(&[z], |t, x| {
        token_classification_loss(t, x[0], labels.view())
    });
    assert_abs_diff_eq!(loss, LN2 / 2.0, epsilon = HAND_TOL);
    let want = array![[[0.125, -0.125], [-1.0 / 6.0, 1.0 / 6.0], [0.0, 0.0]]].into_dyn();
    assert_abs_diff_eq!(g[0], want, epsilon = HAND_TOL);
}

/// A sentence with every position ignored (all padding) has loss 0 and no gradient, in both the
/// fused and the composite path.
#[test]
fn all_ignored_gives_zero_loss_and_gradient() {
    let z = random(&[1, 3, 4], 6);
    let labels = Array2::from_elem((1, 3), IGNORE_INDEX);
    let smoothed = ClassificationLoss {
        label_smoothing: 0.1,
        class_weights: None,
    };
    for opts in [ClassificationLoss::default(), smoothed] {
        let (loss, g) = eval(std::slice::from_ref(&z), |t, x| {
            token_classification_loss_with(t, x[0], labels.view(), &opts)
        });
        assert_eq!(loss, 0.0);
        assert!(g[0].iter().all(|&x| x == 0.0));
    }
}

/// "Ann Leeson lives" tokenized [CLS] Ann Lee ##son lives [SEP] [PAD]: word ids
/// [-, 0, 1, 1, 2, -, -], word tags [B-PER=1, I-PER=2, O=0].
#[test]
fn gradcheck_token_classification() {
    let i = IGNORE_INDEX;
    let labels = array![[0, 3, i, 1], [2, i, i, 0]];
    let err = gradcheck(&[random(&[2, 4, 4], 7)], |t, x| {
        token_classification_loss(t, x[0], labels.view())
    });
    assert!(err < TOLERANCE, "plain: max rel err {err:e}");
    let opts = ClassificationLoss {
        label_smoothing: 0.1,
        class_weights: Some(vec![0.1, 1.0, 2.0, 1.0]),
    };
    let err = gradcheck(&[random(&[2, 4, 4], 8)], |t, x| {
        token_classification_loss_with(t, x[0], labels.view(), &opts)
    });
    assert!(err < TOLERANCE, "smoothed, weighted: max rel err {err:e}");
}

// ---------------------------------------------------------------------------------------------
// Span (extractive QA)

/// T = 4 with the last position padded. Start logits [0, ln 3, 0, 7] → masked softmax
/// [1/5, 3/5, 1/5, 0], start 1: −ln(3/5) = ln(5/3). End logits [ln 2, 0, 0, 7] → [1/2, 1/4, 1/4, 0],
/// end 2: −ln(1/4) = ln 4. L = (ln(5/3) + ln 4) / 2.
///   d start = ([1/5, 3/5, 1/5, 0] − [0, 1, 0, 0]) / 2 = [1/10, −1/5, 1/10, 0]
///   d end   = ([1/2, 1/4, 1/4, 0] − [0, 0, 1, 0]) / 2 = [1/4, 1/8, −3/8, 0]
/// Unmasked, the pad's logit 7 would take most of the mass: start ℓ = −ln(3 / (5 + e⁷)).
#[test]
fn hand_span_loss_masks_padding() {
    let start = array![[0.0, ln(3.0), 0.0, 7.0]].into_dyn();
    let end = array![[LN2, 0.0, 0.0, 7.0]].into_dyn();
    let mask = array![[true, true, true, false]];
    let (loss, g) = eval(&[start.clone(), end.clone()], |t, x| {
        span_loss(t, x[0], x[1], &[1], &[2], Some(mask.view()))
    });
    assert_abs_diff_eq!(loss, (ln(5.0 / 3.0) + ln(4.0)) / 2.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(
        g[0],
        array![[0.1, -0.2, 0.1, 0.0]].into_dyn(),
        epsilon = HAND_TOL
    );
    assert_abs_diff_eq!(
        g[1],
        array![[0.25, 0.125, -0.375, 0.0]].into_dyn(),
        epsilon = HAND_TOL
    );

    let (unmasked, _) = eval(&[start, end], |t, x| {
        span_loss(t, x[0], x[1], &[1], &[2], None)
    });
    let e7 = 7f64.exp();
    let want = (-ln(3.0 / (5.0 + e7)) - ln(1.0 / (4.0 + e7))) / 2.0;
    assert_abs_diff_eq!(unmasked, want, epsilon = HAND_TOL);
}

#[test]
fn span_rejects_positions_outside_or_masked() {
    let store = ParamStore::<f64>::new();
    let mut tape = Tape::new(&store);
    let s = tape.constant(ArrayD::zeros(IxDyn(&[1, 3])));
    let e = tape.constant(ArrayD::zeros(IxDyn(&[1, 3])));
    let mask = array![[true, true, false]];
    assert!(span_loss(&mut tape, s, e, &[0], &[3], None).is_err());
    assert!(span_loss(&mut tape, s, e, &[0], &[2], Some(mask.view())).is_err());
    assert!(span_loss(&mut tape, s, e, &[0, 1], &[1, 1], None).is_err());
}

#[test]
fn gradcheck_span() {
    let mask = array![
        [true, true, true, true, false],
        [true, true, true, false, false]
    ];
    let inputs = [random(&[2, 5], 9), random(&[2, 5], 10)];
    let err = gradcheck(&inputs, |t, x| {
        span_loss(t, x[0], x[1], &[1, 0], &[3, 2], Some(mask.view()))
    });
    assert!(err < TOLERANCE, "masked: max rel err {err:e}");
    let err = gradcheck(&inputs, |t, x| {
        span_loss(t, x[0], x[1], &[4, 0], &[4, 1], None)
    });
    assert!(err < TOLERANCE, "unmasked: max rel err {err:e}");
}

/// The losses run in f32 too (training precision) and agree with f64.
#[test]
fn losses_run_in_f32() {
    let z64 = random(&[2, 3, 4], 11);
    let z32 = z64.mapv(|x| x as f32);
    let labels = array![[0i64, 3, IGNORE_INDEX], [1, 1, 2]];
    let mut store = ParamStore::<f32>::new();
    let id = store.add("z", z32, true).unwrap();
    let mut tape = Tape::new(&store);
    let zv = tape.param(id);
    let opts = ClassificationLoss {
        label_smoothing: 0.1,
        class_weights: None,
    };
    let l32 = token_classification_loss_with(&mut tape, zv, labels.view(), &opts).unwrap();
    let mut grads = Grads::new(&store);
    tape.backward(l32, &mut grads).unwrap();
    let (l64, _) = eval(&[z64], |t, x| {
        token_classification_loss_with(t, x[0], labels.view(), &opts)
    });
    assert_abs_diff_eq!(tape.scalar(l32).unwrap() as f64, l64, epsilon = 1e-5);
}
