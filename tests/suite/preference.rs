//! Preference tuning: the objectives (DPO, conservative DPO, IPO, SimPO, ORPO, KTO) worked out by
//! hand, checked against central differences in f64 and against TRL's own loss code
//! (`tests/fixtures/trl_preference_golden.json`, written by `tools/trl_golden.py`); the response
//! log-probabilities they train on (`tunelab::loss::logprobs`); the options and the registry; and
//! one small DPO run with LoRA on the shipped gpt-tiny.

use crate::common::{eval, gradcheck, HAND_TOL};
use approx::assert_abs_diff_eq;
use ndarray::{array, Array, Array2, ArrayD, IxDyn};
use ndarray_rand::rand_distr::StandardNormal;
use ndarray_rand::RandomExt;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::Deserialize;
use std::collections::HashMap;
use tunelab::autodiff::gradcheck::TOLERANCE;
use tunelab::autodiff::IGNORE_INDEX;
use tunelab::loss::preference::{
    find, KtoInputs, Objective, PairInputs, PreferenceLoss, PreferenceOptions, OBJECTIVES,
};
use tunelab::loss::{sequence_logps, token_logps};
use tunelab::{Error, Grads, ParamStore, Result, Tape, Var};

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn random(shape: &[usize], seed: u64) -> ArrayD<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    Array::random_using(IxDyn(shape), StandardNormal, &mut rng)
}

/// A batch of pairs as plain numbers: the policy's summed log-probabilities are inputs 0 and 1,
/// the chosen NLL input 2 (shape (1,)).
#[derive(Clone)]
struct Pairs {
    chosen: Vec<f64>,
    rejected: Vec<f64>,
    chosen_tokens: Vec<usize>,
    rejected_tokens: Vec<usize>,
    ref_chosen: Vec<f64>,
    ref_rejected: Vec<f64>,
    nll: f64,
}

impl Pairs {
    fn inputs(&self) -> Vec<ArrayD<f64>> {
        vec![
            ArrayD::from_shape_vec(IxDyn(&[self.chosen.len()]), self.chosen.clone()).unwrap(),
            ArrayD::from_shape_vec(IxDyn(&[self.rejected.len()]), self.rejected.clone()).unwrap(),
            ArrayD::from_shape_vec(IxDyn(&[1]), vec![self.nll]).unwrap(),
        ]
    }

    /// The objective on the tape, from the three input variables.
    fn loss(&self, o: &Objective, t: &mut Tape<'_, f64>, x: &[Var]) -> Result<PreferenceLoss> {
        let nll = t.sum_all(x[2])?;
        let reference = o.needs_reference();
        o.pair_loss(
            t,
            &PairInputs {
                chosen: x[0],
                rejected: x[1],
                chosen_tokens: &self.chosen_tokens,
                rejected_tokens: &self.rejected_tokens,
                ref_chosen: reference.then_some(&self.ref_chosen[..]),
                ref_rejected: reference.then_some(&self.ref_rejected[..]),
                chosen_nll: Some(nll),
            },
        )
    }

    /// Loss, gradients (chosen, rejected, nll) and stats.
    fn run(
        &self,
        o: &Objective,
    ) -> (
        f64,
        Vec<ArrayD<f64>>,
        tunelab::loss::preference::PreferenceStats,
    ) {
        let stats = std::cell::RefCell::new(None);
        let (loss, grads) = eval(&self.inputs(), |t, x| {
            let out = self.loss(o, t, x)?;
            *stats.borrow_mut() = Some(out.stats);
            Ok(out.loss)
        });
        (loss, grads, stats.into_inner().unwrap())
    }

    fn gradcheck(&self, o: &Objective) -> f64 {
        gradcheck(&self.inputs(), |t, x| Ok(self.loss(o, t, x)?.loss))
    }

    /// Random pairs: mean token log-probabilities in (−2.5, −0.02), counts 1..=12.
    fn random(b: usize, seed: u64) -> Self {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut seq = |n: usize| -> f64 { n as f64 * -rng.random_range(0.02..2.5) };
        let chosen_tokens: Vec<usize> = (0..b).map(|i| 1 + (i * 7 + seed as usize) % 12).collect();
        let rejected_tokens: Vec<usize> = (0..b).map(|i| 1 + (i * 5 + 3) % 12).collect();
        let chosen: Vec<f64> = chosen_tokens.iter().map(|&n| seq(n)).collect();
        let rejected: Vec<f64> = rejected_tokens.iter().map(|&n| seq(n)).collect();
        let noise = random(&[2 * b], seed + 100);
        let ref_chosen = chosen
            .iter()
            .zip(noise.iter())
            .map(|(c, e)| c + 1.5 * e)
            .collect();
        let ref_rejected = rejected
            .iter()
            .zip(noise.iter().skip(b))
            .map(|(r, e)| r + 1.5 * e)
            .collect();
        Self {
            chosen,
            rejected,
            chosen_tokens,
            rejected_tokens,
            ref_chosen,
            ref_rejected,
            nll: 1.3,
        }
    }
}

fn options(loss_type: &str) -> PreferenceOptions {
    PreferenceOptions {
        loss_type: loss_type.into(),
        ..PreferenceOptions::default()
    }
}

fn objective(loss_type: &str, f: impl FnOnce(&mut PreferenceOptions)) -> Objective {
    let mut o = options(loss_type);
    f(&mut o);
    o.objective().unwrap()
}

fn one_pair(c: f64, r: f64, nc: usize, nr: usize, refc: f64, refr: f64, nll: f64) -> Pairs {
    Pairs {
        chosen: vec![c],
        rejected: vec![r],
        chosen_tokens: vec![nc],
        rejected_tokens: vec![nr],
        ref_chosen: vec![refc],
        ref_rejected: vec![refr],
        nll,
    }
}

// ---------------------------------------------------------------------------------------------
// Worked by hand

/// β = 1, log π = (−1, −2), log π_ref = (−1, −1): h = 1, ℓ = log(1 + e^(−1)),
/// ∂ℓ/∂ log π_c = −σ(−1) = −∂ℓ/∂ log π_r; rewards (0, −1), margin 1, accuracy 1.
#[test]
fn hand_dpo_is_the_bradley_terry_nll_of_the_implicit_reward() {
    let p = one_pair(-1.0, -2.0, 3, 4, -1.0, -1.0, 0.0);
    let (loss, g, stats) = p.run(&objective("sigmoid", |o| o.beta = Some(1.0)));
    assert_abs_diff_eq!(loss, (1.0 + (-1.0f64).exp()).ln(), epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[0][0], -sigmoid(-1.0), epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[1][0], sigmoid(-1.0), epsilon = HAND_TOL);
    assert_eq!(g[2][0], 0.0, "DPO reads no NLL");
    assert_abs_diff_eq!(stats.rewards_chosen[0], 0.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(stats.rewards_rejected[0], -1.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(stats.mean_margin(), 1.0, epsilon = HAND_TOL);
    assert_eq!(stats.accuracy(), 1.0);
}

/// Conservative DPO with ε on the same pair: (1 − ε) log(1 + e^(−1)) + ε log(1 + e); gradient
/// −[(1 − ε) σ(−1) − ε σ(1)]. Its minimum over h is at β h = log((1 − ε)/ε), not at infinity.
#[test]
fn hand_conservative_dpo_mixes_the_flipped_label() {
    let eps = 0.2;
    let o = objective("sigmoid", |o| {
        o.beta = Some(1.0);
        o.label_smoothing = eps;
    });
    let p = one_pair(-1.0, -2.0, 3, 4, -1.0, -1.0, 0.0);
    let (loss, g, _) = p.run(&o);
    let e = std::f64::consts::E;
    let want = (1.0 - eps) * (1.0 + 1.0 / e).ln() + eps * (1.0 + e).ln();
    assert_abs_diff_eq!(loss, want, epsilon = HAND_TOL);
    let dh = -((1.0 - eps) * sigmoid(-1.0) - eps * sigmoid(1.0));
    assert_abs_diff_eq!(g[0][0], dh, epsilon = HAND_TOL);
    // At h* = log(4) the gradient vanishes: the loss stops pushing the margin.
    let h_star = ((1.0 - eps) / eps).ln();
    let p = one_pair(-1.0, -1.0 - h_star, 1, 1, -1.0, -1.0, 0.0);
    let (_, g, _) = p.run(&o);
    assert_abs_diff_eq!(g[0][0], 0.0, epsilon = HAND_TOL);
}

/// IPO, β = 0.5 (target 1): δ = 1 − (−1) = 2, ℓ = 1, gradients ±2; with 2 and 4 tokens the
/// log-ratios are averaged first: δ = 2/2 − (−2)/4 = 1.5, ℓ = 0.25, ∂/∂ log π_c = 2·0.5/2.
#[test]
fn hand_ipo_regresses_the_averaged_log_ratio_onto_one_over_two_beta() {
    let o = objective("ipo", |o| o.beta = Some(0.5));
    let (loss, g, stats) = one_pair(-1.0, -3.0, 1, 1, -2.0, -2.0, 0.0).run(&o);
    assert_abs_diff_eq!(loss, 1.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[0][0], 2.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[1][0], -2.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(stats.rewards_chosen[0], 0.5, epsilon = HAND_TOL);
    let (loss, g, _) = one_pair(0.0, -4.0, 2, 4, -2.0, -2.0, 0.0).run(&o);
    assert_abs_diff_eq!(loss, 0.25, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[0][0], 2.0 * 0.5 / 2.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[1][0], -2.0 * 0.5 / 4.0, epsilon = HAND_TOL);
    // Past the target the gradient changes sign: IPO pulls an over-separated pair back.
    let (_, g, _) = one_pair(0.0, -8.0, 1, 1, -2.0, -2.0, 0.0).run(&o);
    assert!(g[0][0] > 0.0, "{}", g[0][0]);
}

/// SimPO, β = 2, γ = 1: a_c = −2/2 = −1, a_r = −6/3 = −2, u = 2(1 − 0.5) = 1, ℓ = log(1 + e^(−1)),
/// ∂ℓ/∂ log π_c = −σ(−1)·2/2; rewards (−2, −4); no reference read (the reference numbers are
/// garbage here); cpo_alpha adds α·NLL with gradient α.
#[test]
fn hand_simpo_uses_length_normalised_log_probs_and_a_margin() {
    let p = one_pair(-2.0, -6.0, 2, 3, f64::NAN, f64::NAN, 0.7);
    let o = objective("simpo", |o| {
        o.beta = Some(2.0);
        o.simpo_gamma = Some(1.0);
        o.cpo_alpha = Some(0.0);
    });
    let (loss, g, stats) = p.run(&o);
    assert_abs_diff_eq!(loss, (1.0 + (-1.0f64).exp()).ln(), epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[0][0], -sigmoid(-1.0), epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[1][0], sigmoid(-1.0) * 2.0 / 3.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(stats.rewards_chosen[0], -2.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(stats.rewards_rejected[0], -4.0, epsilon = HAND_TOL);
    let o = objective("simpo", |o| {
        o.beta = Some(2.0);
        o.simpo_gamma = Some(1.0);
        o.cpo_alpha = Some(0.5);
    });
    let (with_nll, g, _) = p.run(&o);
    assert_abs_diff_eq!(with_nll, loss + 0.5 * 0.7, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[2][0], 0.5, epsilon = HAND_TOL);
}

/// ORPO, λ = 1, P_c = 1/2, P_r = 1/3 (one token each): t = ln 2, loss = NLL + log 1.5,
/// ∂/∂ log π_c = −σ(−ln 2)/(1 − 1/2) = −2/3, ∂/∂ log π_r = σ(−ln 2)/(1 − 1/3) = 1/2, ∂/∂NLL = 1.
#[test]
fn hand_orpo_adds_the_log_odds_ratio_to_the_nll() {
    let p = one_pair(
        0.5f64.ln(),
        (1.0f64 / 3.0).ln(),
        1,
        1,
        f64::NAN,
        f64::NAN,
        0.25,
    );
    let (loss, g, stats) = p.run(&objective("orpo", |o| o.beta = Some(1.0)));
    assert_abs_diff_eq!(loss, 0.25 + 1.5f64.ln(), epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[0][0], -2.0 / 3.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[1][0], 0.5, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[2][0], 1.0, epsilon = HAND_TOL);
    assert_abs_diff_eq!(stats.rewards_chosen[0], 0.5f64.ln(), epsilon = HAND_TOL);
}

/// KTO, β = 1: a desirable row with log-ratio 1 and an undesirable one with log-ratio 0, KL
/// samples averaging −0.5 (z0 clamps to 0): L = ((1 − σ(1)) + (1 − σ(0))) / 2. With KL samples
/// averaging 0.5, z0 = 0.5 shifts both.
#[test]
fn hand_kto_compares_each_reward_with_the_kl_reference_point() {
    let o = objective("kto", |o| o.beta = Some(1.0));
    let run = |kl: &[f64], weights: (f64, f64)| {
        let o = match o {
            Objective::Kto { beta, .. } => Objective::Kto {
                beta,
                desirable_weight: weights.0,
                undesirable_weight: weights.1,
            },
            _ => unreachable!(),
        };
        let stats = std::cell::RefCell::new(None);
        let (loss, g) = eval(&[array![-1.0, -2.0].into_dyn()], |t, x| {
            let out = o.unpaired_loss(
                t,
                &KtoInputs {
                    logps: x[0],
                    labels: &[true, false],
                    ref_logps: &[-2.0, -2.0],
                    kl_logps: kl,
                    ref_kl_logps: &[0.0, 0.0],
                },
            )?;
            *stats.borrow_mut() = Some(out.stats);
            Ok(out.loss)
        });
        (loss, g, stats.into_inner().unwrap())
    };
    let (loss, g, stats) = run(&[-1.0, 0.0], (1.0, 1.0));
    assert_abs_diff_eq!(loss, ((1.0 - sigmoid(1.0)) + 0.5) / 2.0, epsilon = HAND_TOL);
    assert_eq!(stats.kl, 0.0, "a negative KL estimate clamps to 0");
    // ∂/∂x_0 = −β σ(1) σ(−1) / 2, ∂/∂x_1 = +β σ(0)² / 2.
    assert_abs_diff_eq!(
        g[0][0],
        -sigmoid(1.0) * sigmoid(-1.0) / 2.0,
        epsilon = HAND_TOL
    );
    assert_abs_diff_eq!(g[0][1], 0.25 / 2.0, epsilon = HAND_TOL);
    assert_eq!(stats.rewards_chosen, vec![1.0]);
    assert_eq!(stats.rewards_rejected, vec![0.0]);
    let (loss, _, stats) = run(&[0.0, 1.0], (2.0, 1.0));
    assert_abs_diff_eq!(stats.kl, 0.5, epsilon = HAND_TOL);
    let want = (2.0 * (1.0 - sigmoid(0.5)) + (1.0 - sigmoid(0.5))) / 2.0;
    assert_abs_diff_eq!(loss, want, epsilon = HAND_TOL);
}

// ---------------------------------------------------------------------------------------------
// Gradient checks

/// Every objective, at two batch sizes and several hyperparameters, against central differences.
#[test]
fn gradcheck_every_objective() {
    let configs: Vec<(&str, Objective)> = vec![
        ("dpo", objective("sigmoid", |o| o.beta = Some(0.5))),
        (
            "cdpo",
            objective("sigmoid", |o| {
                o.beta = Some(1.0);
                o.label_smoothing = 0.25;
            }),
        ),
        ("ipo", objective("ipo", |o| o.beta = Some(0.3))),
        (
            "simpo",
            objective("simpo", |o| {
                o.cpo_alpha = Some(0.7);
                o.label_smoothing = 0.1;
            }),
        ),
        ("orpo", objective("orpo", |o| o.beta = Some(0.8))),
    ];
    for b in [1, 5] {
        for (name, o) in &configs {
            let p = Pairs::random(b, 3 + b as u64);
            let err = p.gradcheck(o);
            assert!(err < TOLERANCE, "{name} B={b}: max rel err {err:e}");
        }
    }
    // KTO, with a positive reference point and mixed labels.
    let o = objective("kto", |o| {
        o.beta = Some(0.7);
        o.desirable_weight = 1.3;
        o.undesirable_weight = 0.6;
    });
    let x = random(&[5], 9) - 3.0;
    let err = gradcheck(&[x], |t, x| {
        Ok(o.unpaired_loss(
            t,
            &KtoInputs {
                logps: x[0],
                labels: &[true, false, false, true, false],
                ref_logps: &[-3.5, -2.0, -3.1, -2.2, -4.0],
                kl_logps: &[-2.0, -3.0, -1.0],
                ref_kl_logps: &[-2.5, -3.2, -1.1],
            },
        )?
        .loss)
    });
    assert!(err < TOLERANCE, "kto: max rel err {err:e}");
}

/// ORPO's log(1 − e^a) on both sides of TRL's −ln 2 branch, against the formula and central
/// differences; it is the one place the tape takes an op as its tangent line.
#[test]
fn log1m_exp_is_exact_in_value_and_gradient() {
    use tunelab::loss::preference::orpo::{log1m_exp, log1m_exp_f64};
    for x in [-5.0, -1.0, -0.7, -0.69, -0.1, -1e-6] {
        let want: f64 = (1.0 - f64::exp(x)).ln();
        let tol = 1e-12 * (1.0 / (1.0 - f64::exp(x))).max(1.0);
        assert!(
            (log1m_exp_f64(x) - want).abs() < tol,
            "{x}: {}",
            log1m_exp_f64(x)
        );
        let (v, g) = eval(&[ArrayD::from_elem(IxDyn(&[1]), x)], |t, v| {
            let y = log1m_exp(t, v[0])?;
            t.sum_all(y)
        });
        assert!((v - want).abs() < tol, "{x}: {v}");
        // d/dx log(1 − e^x) = −e^x / (1 − e^x)
        let dwant = -f64::exp(x) / (1.0 - f64::exp(x));
        assert!(
            (g[0][0] - dwant).abs() < 1e-9 * dwant.abs().max(1.0),
            "{x}: {}",
            g[0][0]
        );
    }
    let err = gradcheck(&[array![-3.0, -0.8, -0.3].into_dyn()], |t, v| {
        let y = log1m_exp(t, v[0])?;
        t.sum_all(y)
    });
    assert!(err < TOLERANCE, "max rel err {err:e}");
}

// ---------------------------------------------------------------------------------------------
// Against TRL

#[derive(Deserialize)]
struct Golden {
    trl_version: String,
    torch_version: String,
    cases: Vec<GoldenCase>,
}

#[derive(Deserialize)]
struct GoldenCase {
    name: String,
    objective: String,
    params: HashMap<String, f64>,
    trl_call: String,
    #[serde(default)]
    chosen: Vec<f64>,
    #[serde(default)]
    rejected: Vec<f64>,
    #[serde(default)]
    chosen_tokens: Vec<usize>,
    #[serde(default)]
    rejected_tokens: Vec<usize>,
    #[serde(default)]
    ref_chosen: Vec<f64>,
    #[serde(default)]
    ref_rejected: Vec<f64>,
    #[serde(default)]
    nll: Option<f64>,
    #[serde(default)]
    logps: Vec<f64>,
    #[serde(default)]
    labels: Vec<bool>,
    #[serde(default)]
    ref_logps: Vec<f64>,
    #[serde(default)]
    kl_logps: Vec<f64>,
    #[serde(default)]
    ref_kl_logps: Vec<f64>,
    loss: f64,
    #[serde(default)]
    grad_chosen: Vec<f64>,
    #[serde(default)]
    grad_rejected: Vec<f64>,
    #[serde(default)]
    grad_nll: Option<f64>,
    #[serde(default)]
    grad_logps: Vec<f64>,
    reward_chosen: Option<f64>,
    reward_rejected: Option<f64>,
    margin: Option<f64>,
    #[serde(default)]
    accuracy: Option<f64>,
    #[serde(default)]
    kl: Option<f64>,
}

impl GoldenCase {
    fn objective(&self) -> Objective {
        let p = |k: &str| self.params.get(k).copied();
        let loss_type = match self.objective.as_str() {
            "cdpo" => "sigmoid",
            o => o,
        };
        PreferenceOptions {
            loss_type: loss_type.into(),
            beta: p("beta"),
            label_smoothing: p("label_smoothing").unwrap_or(0.0),
            simpo_gamma: p("simpo_gamma"),
            cpo_alpha: p("cpo_alpha"),
            desirable_weight: p("desirable_weight").unwrap_or(1.0),
            undesirable_weight: p("undesirable_weight").unwrap_or(1.0),
        }
        .objective()
        .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }
}

fn max_diff(a: &[f64], b: &[f64], what: &str, case: &str) -> f64 {
    assert_eq!(a.len(), b.len(), "{case}: {what} lengths");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Every case of the fixture replayed in f64: loss, gradients with respect to the policy
/// log-probabilities (and the NLL), and TRL's logged rewards, margins, accuracies and KL.
#[test]
fn objectives_match_trl_golden_file() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/trl_preference_golden.json"
    );
    let text = std::fs::read_to_string(path).expect("read the TRL golden fixture");
    let golden: Golden = serde_json::from_str(&text).expect("parse the TRL golden fixture");
    assert!(golden.cases.len() >= 30, "{} cases", golden.cases.len());
    let mut worst: HashMap<String, f64> = HashMap::new();
    let mut calls: HashMap<String, String> = HashMap::new();
    let mut worst_accuracy = 0.0f64;
    for c in &golden.cases {
        let o = c.objective();
        let mut d = 0.0f64;
        let opt = |a: Option<f64>, b: f64| a.map_or(0.0, |a| (a - b).abs());
        if c.objective == "kto" {
            let stats = std::cell::RefCell::new(None);
            let (loss, g) = eval(
                &[ArrayD::from_shape_vec(IxDyn(&[c.logps.len()]), c.logps.clone()).unwrap()],
                |t, x| {
                    let out = o.unpaired_loss(
                        t,
                        &KtoInputs {
                            logps: x[0],
                            labels: &c.labels,
                            ref_logps: &c.ref_logps,
                            kl_logps: &c.kl_logps,
                            ref_kl_logps: &c.ref_kl_logps,
                        },
                    )?;
                    *stats.borrow_mut() = Some(out.stats);
                    Ok(out.loss)
                },
            );
            let s = stats.into_inner().unwrap();
            d = d.max((loss - c.loss).abs());
            d = d.max(max_diff(
                g[0].as_slice().unwrap(),
                &c.grad_logps,
                "grad",
                &c.name,
            ));
            let mean = tunelab::loss::preference::mean;
            if !s.rewards_chosen.is_empty() {
                d = d.max(opt(c.reward_chosen, mean(&s.rewards_chosen)));
            }
            if !s.rewards_rejected.is_empty() {
                d = d.max(opt(c.reward_rejected, mean(&s.rewards_rejected)));
            }
            if !s.rewards_chosen.is_empty() && !s.rewards_rejected.is_empty() {
                d = d.max(opt(c.margin, s.mean_margin()));
            }
            d = d.max(opt(c.kl, s.kl));
        } else {
            let p = Pairs {
                chosen: c.chosen.clone(),
                rejected: c.rejected.clone(),
                chosen_tokens: c.chosen_tokens.clone(),
                rejected_tokens: c.rejected_tokens.clone(),
                ref_chosen: c.ref_chosen.clone(),
                ref_rejected: c.ref_rejected.clone(),
                nll: c.nll.unwrap_or(0.0),
            };
            let (loss, g, s) = p.run(&o);
            d = d.max((loss - c.loss).abs());
            d = d.max(max_diff(
                g[0].as_slice().unwrap(),
                &c.grad_chosen,
                "grad_chosen",
                &c.name,
            ));
            d = d.max(max_diff(
                g[1].as_slice().unwrap(),
                &c.grad_rejected,
                "grad_rejected",
                &c.name,
            ));
            d = d.max(opt(c.grad_nll, g[2][0]));
            let mean = tunelab::loss::preference::mean;
            d = d.max(opt(c.reward_chosen, mean(&s.rewards_chosen)));
            d = d.max(opt(c.reward_rejected, mean(&s.rewards_rejected)));
            d = d.max(opt(c.margin, s.mean_margin()));
            // TRL averages `(chosen_rewards > rejected_rewards).float()`: a float32 mean, so 2/3
            // is 0.66666669; compared at float32's precision, apart from the 1e-9 of the rest.
            let acc = opt(c.accuracy, s.accuracy());
            assert!(
                acc < 1e-7,
                "{}: accuracy differs from TRL's by {acc:e}",
                c.name
            );
            worst_accuracy = worst_accuracy.max(acc);
        }
        assert!(d < 1e-9, "{}: max difference {d:e} from TRL", c.name);
        let w = worst.entry(c.objective.clone()).or_insert(0.0);
        *w = w.max(d);
        calls.insert(c.objective.clone(), c.trl_call.clone());
    }
    let mut names: Vec<_> = worst.keys().cloned().collect();
    names.sort();
    eprintln!(
        "TRL {} (torch {}), {} cases, max difference per objective:",
        golden.trl_version,
        golden.torch_version,
        golden.cases.len()
    );
    for n in &names {
        eprintln!("  {n:<8} {:.3e}   ({})", worst[n], calls[n]);
    }
    eprintln!("  preference accuracies (TRL's float32 mean): {worst_accuracy:.3e}");
    for want in ["sigmoid", "cdpo", "ipo", "simpo", "orpo", "kto"] {
        assert!(worst.contains_key(want), "no {want} case in the fixture");
    }
}

// ---------------------------------------------------------------------------------------------
// Options and the registry

#[test]
fn every_objective_is_in_the_registry() {
    let all = [
        objective("sigmoid", |_| {}),
        objective("ipo", |_| {}),
        objective("simpo", |_| {}),
        objective("orpo", |_| {}),
        objective("kto", |_| {}),
    ];
    assert_eq!(all.len(), OBJECTIVES.len());
    for o in all {
        let e = o.entry();
        assert_eq!(find(e.name).map(|f| f.name), Some(e.name));
        assert!(
            OBJECTIVES.iter().any(|x| x.name == e.name),
            "{} is not in OBJECTIVES",
            e.name
        );
        assert!(
            !e.help.is_empty() && e.default_value("beta").is_some(),
            "{}",
            e.name
        );
        // Defaults fill in what the options leave out.
        assert_eq!(o.beta(), e.default_value("beta").unwrap(), "{}", e.name);
    }
    assert_eq!(find("dpo").unwrap().name, "sigmoid");
    assert!(find("sigmoid").unwrap().needs_reference);
    assert!(!find("simpo").unwrap().needs_reference);
    assert!(!find("orpo").unwrap().needs_reference);
    let table = tunelab::loss::preference::help_table();
    for e in OBJECTIVES {
        assert!(table.contains(e.name), "{table}");
    }
}

/// Each bad option is refused with an error naming it.
#[test]
fn bad_options_are_refused_naming_the_option() {
    let cases: Vec<(&str, PreferenceOptions)> = vec![
        ("--loss-type", options("dpoo")),
        (
            "--beta",
            PreferenceOptions {
                beta: Some(0.0),
                ..options("sigmoid")
            },
        ),
        (
            "--beta",
            PreferenceOptions {
                beta: Some(f64::NAN),
                ..options("ipo")
            },
        ),
        (
            "--beta",
            PreferenceOptions {
                beta: Some(-1.0),
                ..options("orpo")
            },
        ),
        (
            "--label-smoothing",
            PreferenceOptions {
                label_smoothing: 0.5,
                ..options("sigmoid")
            },
        ),
        (
            "--label-smoothing",
            PreferenceOptions {
                label_smoothing: -0.1,
                ..options("simpo")
            },
        ),
        (
            "--simpo-gamma",
            PreferenceOptions {
                simpo_gamma: Some(-1.0),
                ..options("simpo")
            },
        ),
        (
            "--cpo-alpha",
            PreferenceOptions {
                cpo_alpha: Some(f64::INFINITY),
                ..options("simpo")
            },
        ),
        (
            "--desirable-weight",
            PreferenceOptions {
                desirable_weight: -1.0,
                ..options("kto")
            },
        ),
        (
            "--undesirable-weight",
            PreferenceOptions {
                undesirable_weight: f64::NAN,
                ..options("kto")
            },
        ),
        (
            "--desirable-weight",
            PreferenceOptions {
                desirable_weight: 0.0,
                undesirable_weight: 0.0,
                ..options("kto")
            },
        ),
    ];
    for (flag, o) in cases {
        match o.objective() {
            Err(Error::Invalid { op, detail }) => {
                assert_eq!(op, flag, "{o:?}: {detail}")
            }
            other => panic!("{o:?}: expected an error naming {flag}, got {other:?}"),
        }
    }
}

/// Wrong shapes and missing inputs are errors, not panics or NaNs.
#[test]
fn objectives_refuse_bad_inputs() {
    fn inputs<'a>(
        p: &'a Pairs,
        chosen: Var,
        rejected: Var,
        ref_chosen: Option<&'a [f64]>,
    ) -> PairInputs<'a> {
        PairInputs {
            chosen,
            rejected,
            chosen_tokens: &p.chosen_tokens,
            rejected_tokens: &p.rejected_tokens,
            ref_chosen,
            ref_rejected: Some(&p.ref_rejected),
            chosen_nll: None,
        }
    }
    let p = Pairs::random(3, 1);
    let dpo = objective("sigmoid", |_| {});
    let mut store = ParamStore::<f64>::new();
    let c = store
        .add("c", array![-1.0, -2.0, -3.0].into_dyn(), true)
        .unwrap();
    let r = store.add("r", array![-1.0, -2.0].into_dyn(), true).unwrap();
    let mut t = Tape::new(&store);
    let (cv, rv) = (t.param(c), t.param(r));
    let good: &[f64] = &p.ref_chosen;
    // (3,) against (2,).
    assert!(dpo
        .pair_loss(&mut t, &inputs(&p, cv, rv, Some(good)))
        .is_err());
    // It works with matching shapes, so the refusals below are about what they change.
    assert!(dpo
        .pair_loss(&mut t, &inputs(&p, cv, cv, Some(good)))
        .is_ok());
    // No reference for an objective that needs one.
    assert!(dpo.pair_loss(&mut t, &inputs(&p, cv, cv, None)).is_err());
    // A reference of the wrong length, or not finite.
    let short: &[f64] = &[0.0];
    assert!(dpo
        .pair_loss(&mut t, &inputs(&p, cv, cv, Some(short)))
        .is_err());
    let nan: &[f64] = &[0.0, f64::NAN, 0.0];
    assert!(dpo
        .pair_loss(&mut t, &inputs(&p, cv, cv, Some(nan)))
        .is_err());
    // ORPO without its NLL; SimPO with a zero-token response; KTO given pairs.
    let orpo = objective("orpo", |_| {});
    assert!(orpo.pair_loss(&mut t, &inputs(&p, cv, cv, None)).is_err());
    let zero = [0, 1, 1];
    let simpo_in = PairInputs {
        chosen_tokens: &zero,
        ..inputs(&p, cv, cv, None)
    };
    assert!(objective("simpo", |_| {})
        .pair_loss(&mut t, &simpo_in)
        .is_err());
    assert!(objective("kto", |_| {})
        .pair_loss(&mut t, &inputs(&p, cv, cv, Some(good)))
        .is_err());
    // ORPO on a mean log-probability of 0 (probability 1): infinite odds, refused.
    let one = [1, 1, 1];
    let nll = t.sum_all(cv).unwrap();
    let z = t.scale(cv, 0.0).unwrap();
    let orpo_in = PairInputs {
        chosen: z,
        chosen_tokens: &one,
        rejected_tokens: &one,
        chosen_nll: Some(nll),
        ..inputs(&p, cv, cv, None)
    };
    assert!(orpo.pair_loss(&mut t, &orpo_in).is_err());
    // ... and on a probability below 1 it is fine.
    let ok_in = PairInputs {
        chosen_tokens: &one,
        rejected_tokens: &one,
        chosen_nll: Some(nll),
        ..inputs(&p, cv, cv, None)
    };
    assert!(orpo.pair_loss(&mut t, &ok_in).is_ok());
    // KTO: labels of the wrong length.
    let kto = objective("kto", |_| {});
    let kto_in = KtoInputs {
        logps: cv,
        labels: &[true],
        ref_logps: &[0.0, 0.0, 0.0],
        kl_logps: &[],
        ref_kl_logps: &[],
    };
    assert!(kto.unpaired_loss(&mut t, &kto_in).is_err());
    assert!(kto
        .unpaired_loss(
            &mut t,
            &KtoInputs {
                labels: &[true, false, true],
                ..kto_in
            }
        )
        .is_ok());
}

// ---------------------------------------------------------------------------------------------
// Response log-probabilities (tunelab::loss::logprobs)

/// V = 3, one row of three tokens [prompt, y1, y2] (labels [ignored, 1, 2]):
///   z₀ = [0, ln 3, 0] → p = [1/5, 3/5, 1/5], ℓ₀ = ln(3/5);  z₁ = [0, 0, ln 2] → ℓ₁ = ln(1/2);
///   the last position predicts nothing. Sum ln(3/10), mean ln(3/10)/2; gradient of the sum:
///   onehot − softmax on z₀ and z₁, 0 on z₂. A second row [prompt, y1, pad] (labels [ignored, 0,
///   ignored]) counts only ℓ = log p₀ under its z₀ and has no gradient elsewhere.
#[test]
fn hand_logprobs_count_response_tokens_only() {
    let l3 = 3.0f64.ln();
    let l2 = 2.0f64.ln();
    let logits = array![
        [[0.0, l3, 0.0], [0.0, 0.0, l2], [5.0, -1.0, 2.0]],
        [[l2, 0.0, 0.0], [7.0, 1.0, -3.0], [0.5, 0.5, 0.5]]
    ]
    .into_dyn();
    let i = IGNORE_INDEX;
    let labels = array![[i, 1, 2], [i, 0, i]];
    // per-token values
    let mut store = ParamStore::<f64>::new();
    let id = store.add("z", logits.clone(), true).unwrap();
    let mut t = Tape::new(&store);
    let z = t.param(id);
    let per = token_logps(&mut t, z, labels.view()).unwrap();
    let pv = t.value(per).to_owned();
    assert_eq!(pv.shape(), &[2, 2]);
    assert_abs_diff_eq!(pv[[0, 0]], (3.0f64 / 5.0).ln(), epsilon = HAND_TOL);
    assert_abs_diff_eq!(pv[[0, 1]], 0.5f64.ln(), epsilon = HAND_TOL);
    assert_abs_diff_eq!(pv[[1, 0]], 0.5f64.ln(), epsilon = HAND_TOL); // [ln 2, 0, 0] → p₀ = 1/2
    assert_eq!(pv[[1, 1]], 0.0, "padding scores nothing");
    assert_eq!(
        tunelab::loss::completion_mask(labels.view()),
        array![[true, true], [true, false]]
    );
    // sums and means, and the counts
    let (sum, counts) = sequence_logps(&mut t, z, labels.view(), false).unwrap();
    assert_eq!(counts, vec![2, 1]);
    let sv = t.value(sum).to_owned();
    assert_abs_diff_eq!(sv[[0]], 0.3f64.ln(), epsilon = HAND_TOL);
    assert_abs_diff_eq!(sv[[1]], 0.5f64.ln(), epsilon = HAND_TOL);
    let (avg, _) = sequence_logps(&mut t, z, labels.view(), true).unwrap();
    assert_abs_diff_eq!(t.value(avg)[[0]], 0.3f64.ln() / 2.0, epsilon = HAND_TOL);
    // gradient of the two rows' sum
    let total = t.sum_all(sum).unwrap();
    let mut grads = Grads::new(&store);
    t.backward(total, &mut grads).unwrap();
    let g = grads.get(id).unwrap();
    let want0 = [[-0.2, 0.4, -0.2], [-0.25, -0.25, 0.5], [0.0, 0.0, 0.0]];
    for (j, row) in want0.iter().enumerate() {
        for (k, &w) in row.iter().enumerate() {
            assert_abs_diff_eq!(g[[0, j, k]], w, epsilon = HAND_TOL);
        }
    }
    // row 1: onehot(0) − [1/2, 1/4, 1/4] on z₀, nothing on the padded positions
    assert_abs_diff_eq!(g[[1, 0, 0]], 0.5, epsilon = HAND_TOL);
    assert_abs_diff_eq!(g[[1, 0, 1]], -0.25, epsilon = HAND_TOL);
    for j in 1..3 {
        for k in 0..3 {
            assert_eq!(g[[1, j, k]], 0.0, "padded position {j}");
        }
    }
}

/// Changing the logits where the next label is ignored (the prompt's positions but the last, the
/// padding, the final position) changes no sequence log-probability.
#[test]
fn prompt_and_padding_logits_do_not_matter() {
    let i = IGNORE_INDEX;
    let labels = array![[i, i, i, 3, 1, 0], [i, i, 2, 2, i, i]];
    let a = random(&[2, 6, 5], 11);
    let mut b = a.clone();
    let scored = |r: usize, j: usize| j + 1 < 6 && labels[[r, j + 1]] != i;
    for r in 0..2 {
        for j in 0..6 {
            if !scored(r, j) {
                for k in 0..5 {
                    b[[r, j, k]] += 10.0 * (k as f64 - 2.0);
                }
            }
        }
    }
    let seq = |z: &ArrayD<f64>| {
        let mut store = ParamStore::<f64>::new();
        let id = store.add("z", z.clone(), false).unwrap();
        let mut t = Tape::inference(&store);
        let v = t.param(id);
        let (s, n) = sequence_logps(&mut t, v, labels.view(), false).unwrap();
        (t.value(s).to_owned(), n)
    };
    let ((sa, na), (sb, _)) = (seq(&a), seq(&b));
    assert_eq!(na, vec![3, 2]);
    for r in 0..2 {
        assert_abs_diff_eq!(sa[[r]], sb[[r]], epsilon = HAND_TOL);
    }
}

#[test]
fn gradcheck_token_and_sequence_logps() {
    let i = IGNORE_INDEX;
    let labels: Array2<i64> = array![[i, i, 3, 1, 0], [i, 2, 2, 4, i], [i, i, i, i, 1]];
    let w = random(&[3, 4], 21);
    let err = gradcheck(&[random(&[3, 5, 5], 20)], |t, x| {
        let per = token_logps(t, x[0], labels.view())?;
        let wv = t.constant(w.clone());
        let y = t.mul(per, wv)?;
        t.sum_all(y)
    });
    assert!(err < TOLERANCE, "token_logps: max rel err {err:e}");
    for average in [false, true] {
        let w = random(&[3], 22);
        let err = gradcheck(&[random(&[3, 5, 5], 23)], |t, x| {
            let (s, _) = sequence_logps(t, x[0], labels.view(), average)?;
            let wv = t.constant(w.clone());
            let y = t.mul(s, wv)?;
            t.sum_all(y)
        });
        assert!(
            err < TOLERANCE,
            "sequence_logps average={average}: max rel err {err:e}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Training

/// Hand-written facts: (country, its capital, a wrong city).
const FACTS: [(&str, &str, &str); 32] = [
    ("Norland", "Oslo", "Lima"),
    ("Estmark", "Paris", "Cairo"),
    ("Valoria", "Tokyo", "Dublin"),
    ("Brenna", "Lagos", "Seoul"),
    ("Kestria", "Quito", "Hanoi"),
    ("Olvania", "Seoul", "Paris"),
    ("Durmont", "Dublin", "Oslo"),
    ("Sarnia", "Hanoi", "Quito"),
    ("Telmar", "Cairo", "Tokyo"),
    ("Ustria", "Lima", "Lagos"),
    ("Parvia", "Oslo", "Cairo"),
    ("Morvan", "Paris", "Hanoi"),
    ("Lindor", "Tokyo", "Lima"),
    ("Caldera", "Lagos", "Dublin"),
    ("Fenwick", "Quito", "Seoul"),
    ("Gristol", "Seoul", "Tokyo"),
    ("Halvard", "Dublin", "Paris"),
    ("Istra", "Hanoi", "Lagos"),
    ("Jorvik", "Cairo", "Quito"),
    ("Korsa", "Lima", "Oslo"),
    ("Lumen", "Oslo", "Seoul"),
    ("Marwen", "Paris", "Lima"),
    ("Nerim", "Tokyo", "Cairo"),
    ("Ostra", "Lagos", "Hanoi"),
    ("Pellam", "Quito", "Dublin"),
    ("Quorra", "Seoul", "Lagos"),
    ("Rhovan", "Dublin", "Tokyo"),
    ("Sylvar", "Hanoi", "Paris"),
    ("Tarsis", "Cairo", "Oslo"),
    ("Umbria", "Lima", "Quito"),
    ("Varden", "Oslo", "Tokyo"),
    ("Wexley", "Paris", "Seoul"),
];

fn fact_pairs() -> Vec<tunelab::data::preference::PreferencePair> {
    FACTS
        .iter()
        .map(
            |(country, right, wrong)| tunelab::data::preference::PreferencePair {
                prompt: format!("The capital of {country} is"),
                chosen: format!("{right}."),
                rejected: format!("{wrong}."),
            },
        )
        .collect()
}

/// DPO with LoRA (r 8 on q and v) on gpt-tiny, β 0.1, 32 hand-written pairs: the preference
/// accuracy and the reward margin on the training pairs rise from their values at the start
/// (margin 0: the policy is the reference), and the reference log-probabilities do not move,
/// because the reference is the base without LoRA's hooks and no base weight is trained.
#[test]
fn dpo_with_lora_raises_preference_accuracy_and_leaves_the_reference_alone() {
    use tunelab::lab::finetune::load_base;
    use tunelab::peft::MethodSpec;
    use tunelab::train::preference::{
        PreferenceData, PreferenceTask, PreferenceTrainOptions, ReferenceKind,
    };
    use tunelab::train::trainer::{train, Split, TrainTask, Training};
    use tunelab::train::TrainingArgs;

    let mut base = load_base("gpt-tiny").unwrap();
    let before: Vec<ArrayD<f32>> = base.store.iter().map(|(_, p)| p.value.clone()).collect();
    let spec = MethodSpec::Lora(tunelab::peft::lora::compare_config());
    let method = tunelab::peft::apply(&spec, &base.model, &mut base.store, 7).unwrap();
    let pairs = fact_pairs();
    let data = PreferenceData {
        train: pairs.clone(),
        validation: pairs,
        ..Default::default()
    };
    let opts = PreferenceTrainOptions {
        objective: PreferenceOptions {
            beta: Some(0.1),
            ..options("sigmoid")
        },
        ..Default::default()
    };
    let task = PreferenceTask::new(
        base.model.clone(),
        &base.store,
        method.params(),
        base.tok.clone(),
        data,
        opts,
    )
    .unwrap();
    assert_eq!(task.reference_kind(), Some(ReferenceKind::BaseWithoutHooks));
    assert_eq!(task.reference_bytes(), 0, "no second copy of the weights");
    let evaluate = |store: &ParamStore<f32>| {
        TrainTask::<f32>::evaluate(&task, store, method.as_ref(), Split::Validation, 0, 16).unwrap()
    };
    let start = evaluate(&base.store);
    // LoRA starts at B = 0: the policy is the reference, every reward 0, the loss log 2.
    assert!(start["margin"].abs() < 1e-6, "{start:?}");
    assert!((start["loss"] - 2f64.ln()).abs() < 1e-5, "{start:?}");
    let dir = crate::common::temp_dir("dpo-lora");
    let args = TrainingArgs {
        output_dir: dir.clone(),
        max_steps: Some(40),
        batch_size: 8,
        learning_rate: 5e-3,
        eval_strategy: tunelab::train::args::Strategy::No,
        ..TrainingArgs::default()
    };
    let report = train(
        Training::new(&args, &task, &mut base.store)
            .hooks(method.as_ref())
            .log_file(false),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let end = evaluate(&base.store);
    eprintln!(
        "DPO LoRA β 0.1, 40 steps: train accuracy {:.3} → {:.3}, margin {:.4} → {:.4}, \
         logps chosen {:.3} → {:.3} (ref {:.3} → {:.3}), rejected {:.3} → {:.3}, kl {:.3}, \
         loss {:.4} → {:.4} ({:.1} s)",
        start["accuracy"],
        end["accuracy"],
        start["margin"],
        end["margin"],
        start["logps_chosen"],
        end["logps_chosen"],
        start["ref_logps_chosen"],
        end["ref_logps_chosen"],
        start["logps_rejected"],
        end["logps_rejected"],
        end["kl"],
        start["loss"],
        end["loss"],
        report.seconds,
    );
    assert!(end["accuracy"] >= 0.9, "{end:?}");
    assert!(end["accuracy"] > start["accuracy"], "{start:?} {end:?}");
    assert!(end["margin"] > start["margin"] + 0.2, "{start:?} {end:?}");
    assert!(end["loss"] < start["loss"] - 0.1, "{start:?} {end:?}");
    // The reference did not move, and neither did any base weight.
    assert_eq!(start["ref_logps_chosen"], end["ref_logps_chosen"]);
    assert_eq!(start["ref_logps_rejected"], end["ref_logps_rejected"]);
    for ((_, p), b) in base.store.iter().zip(&before) {
        assert_eq!(&p.value, b, "base weight {} moved", p.name);
    }
}

/// The reference's cost by kind: a frozen copy holds the weights again, precomputed log-probs
/// hold numbers and agree with the base without hooks; full fine-tuning cannot use the base
/// without hooks (it trains the base).
#[test]
fn reference_kinds_cost_what_they_hold_and_agree() {
    use tunelab::lab::finetune::load_base;
    use tunelab::peft::MethodSpec;
    use tunelab::train::preference::{
        PreferenceData, PreferenceTask, PreferenceTrainOptions, ReferenceKind,
    };
    use tunelab::train::trainer::{Split, TrainTask};

    let mut base = load_base("gpt-tiny").unwrap();
    let pairs: Vec<_> = fact_pairs().into_iter().take(6).collect();
    let data = PreferenceData {
        train: pairs.clone(),
        validation: pairs,
        ..Default::default()
    };
    let lora = MethodSpec::Lora(tunelab::peft::lora::compare_config());
    let method = tunelab::peft::apply(&lora, &base.model, &mut base.store, 7).unwrap();
    let build = |store: &ParamStore<f32>, params: &[tunelab::ParamId], kind| {
        PreferenceTask::new(
            base.model.clone(),
            store,
            params,
            base.tok.clone(),
            data.clone(),
            PreferenceTrainOptions {
                reference: kind,
                ..Default::default()
            },
        )
    };
    let free = build(&base.store, method.params(), None).unwrap();
    let copy = build(
        &base.store,
        method.params(),
        Some(ReferenceKind::FrozenCopy),
    )
    .unwrap();
    let pre = build(
        &base.store,
        method.params(),
        Some(ReferenceKind::Precomputed),
    )
    .unwrap();
    assert_eq!(free.reference_bytes(), 0);
    assert_eq!(copy.reference_bytes(), base.store.bytes());
    assert_eq!(
        pre.reference_bytes(),
        24 * 8,
        "two responses of 6 pairs in train and of 6 in validation"
    );
    let ev = |t: &PreferenceTask<f32>| {
        TrainTask::<f32>::evaluate(t, &base.store, method.as_ref(), Split::Validation, 0, 4)
            .unwrap()
    };
    let (a, b, c) = (ev(&free), ev(&copy), ev(&pre));
    for k in ["ref_logps_chosen", "ref_logps_rejected", "loss"] {
        let tol = 1e-5 * a[k].abs().max(1.0);
        assert!(
            (a[k] - b[k]).abs() < tol && (a[k] - c[k]).abs() < tol,
            "{k}: {a:?} {b:?} {c:?}"
        );
    }
    // Full fine-tuning: the automatic reference is a frozen copy; the base without hooks is refused.
    let mut full = load_base("gpt-tiny").unwrap();
    let m = tunelab::peft::apply(
        &MethodSpec::Full { last_k: None },
        &full.model,
        &mut full.store,
        7,
    )
    .unwrap();
    let auto = build(&full.store, m.params(), None).unwrap();
    assert_eq!(auto.reference_kind(), Some(ReferenceKind::FrozenCopy));
    match build(
        &full.store,
        m.params(),
        Some(ReferenceKind::BaseWithoutHooks),
    ) {
        Err(Error::Invalid { op, .. }) => assert_eq!(op, "--reference"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("the base without hooks was accepted for full fine-tuning"),
    }
}

/// Every objective of the registry trains through the task (a few LoRA steps on gpt-tiny):
/// finite losses, every evaluation metric reported and finite, and the LoRA weights moved.
#[test]
fn every_objective_trains_through_the_task() {
    use tunelab::lab::finetune::load_base;
    use tunelab::peft::MethodSpec;
    use tunelab::train::preference::{
        PreferenceData, PreferenceTask, PreferenceTrainOptions, METRICS,
    };
    use tunelab::train::trainer::{train, Split, TrainTask, Training};
    use tunelab::train::TrainingArgs;

    let pairs: Vec<_> = fact_pairs().into_iter().take(8).collect();
    for entry in OBJECTIVES {
        let mut base = load_base("gpt-tiny").unwrap();
        let spec = MethodSpec::Lora(tunelab::peft::lora::compare_config());
        let method = tunelab::peft::apply(&spec, &base.model, &mut base.store, 7).unwrap();
        let lora: Vec<ArrayD<f32>> = method
            .params()
            .iter()
            .map(|&id| base.store.value(id).clone())
            .collect();
        let task = PreferenceTask::new(
            base.model.clone(),
            &base.store,
            method.params(),
            base.tok.clone(),
            PreferenceData {
                train: pairs.clone(),
                validation: pairs.clone(),
                ..Default::default()
            },
            PreferenceTrainOptions {
                objective: options(entry.name),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(task.train_len(), if entry.name == "kto" { 16 } else { 8 });
        let dir = crate::common::temp_dir(&format!("pref-{}", entry.name));
        let args = TrainingArgs {
            output_dir: dir.clone(),
            max_steps: Some(3),
            batch_size: 4,
            learning_rate: 1e-3,
            eval_strategy: tunelab::train::args::Strategy::No,
            ..TrainingArgs::default()
        };
        let report = train(
            Training::new(&args, &task, &mut base.store)
                .hooks(method.as_ref())
                .log_file(false),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
        let _ = std::fs::remove_dir_all(dir);
        assert_eq!(report.state.losses.len(), 3);
        assert!(
            report.state.losses.iter().all(|l| l.is_finite()),
            "{}: {:?}",
            entry.name,
            report.state.losses
        );
        let m = TrainTask::<f32>::evaluate(
            &task,
            &base.store,
            method.as_ref(),
            Split::Validation,
            0,
            4,
        )
        .unwrap();
        for k in METRICS {
            assert!(
                m.get(k).is_some_and(|v| v.is_finite()),
                "{}: {k} in {m:?}",
                entry.name
            );
        }
        let moved = method
            .params()
            .iter()
            .zip(&lora)
            .any(|(&id, before)| base.store.value(id) != before);
        assert!(moved, "{}: no LoRA weight moved", entry.name);
    }
}

/// Full fine-tuning changes the base weights, so the reference is a frozen copy: after a few DPO
/// steps the policy's log-probabilities moved and the reference's did not.
#[test]
fn full_fine_tuning_keeps_a_frozen_reference() {
    use tunelab::lab::finetune::load_base;
    use tunelab::peft::MethodSpec;
    use tunelab::train::preference::{
        PreferenceData, PreferenceTask, PreferenceTrainOptions, ReferenceKind,
    };
    use tunelab::train::trainer::{train, Split, TrainTask, Training};
    use tunelab::train::TrainingArgs;

    let mut base = load_base("gpt-tiny").unwrap();
    let spec = MethodSpec::Full { last_k: None };
    let method = tunelab::peft::apply(&spec, &base.model, &mut base.store, 7).unwrap();
    let pairs: Vec<_> = first_eight_pairs();
    let task = PreferenceTask::new(
        base.model.clone(),
        &base.store,
        method.params(),
        base.tok.clone(),
        PreferenceData {
            train: pairs.clone(),
            validation: pairs,
            ..Default::default()
        },
        PreferenceTrainOptions::default(),
    )
    .unwrap();
    assert_eq!(task.reference_kind(), Some(ReferenceKind::FrozenCopy));
    assert_eq!(
        task.reference_bytes(),
        base.store.bytes(),
        "one more copy of the weights"
    );
    let evaluate = |store: &ParamStore<f32>| {
        TrainTask::<f32>::evaluate(&task, store, method.as_ref(), Split::Validation, 0, 8).unwrap()
    };
    let start = evaluate(&base.store);
    let dir = crate::common::temp_dir("dpo-full");
    let args = TrainingArgs {
        output_dir: dir.clone(),
        max_steps: Some(5),
        batch_size: 8,
        learning_rate: 1e-4,
        eval_strategy: tunelab::train::args::Strategy::No,
        ..TrainingArgs::default()
    };
    train(
        Training::new(&args, &task, &mut base.store)
            .hooks(method.as_ref())
            .log_file(false),
    )
    .unwrap();
    let _ = std::fs::remove_dir_all(dir);
    let end = evaluate(&base.store);
    assert_eq!(start["ref_logps_chosen"], end["ref_logps_chosen"]);
    assert_eq!(start["ref_logps_rejected"], end["ref_logps_rejected"]);
    assert!(
        (end["logps_chosen"] - start["logps_chosen"]).abs() > 1e-3,
        "the policy did not move: {start:?} {end:?}"
    );
    assert!(end["margin"] > start["margin"], "{start:?} {end:?}");
}

fn first_eight_pairs() -> Vec<tunelab::data::preference::PreferencePair> {
    fact_pairs().into_iter().take(8).collect()
}
