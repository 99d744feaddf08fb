//! NEFTune: uniform noise of bound α/√(L·d) on the token embeddings, in training only,
//! deterministic per seed, and invisible to the gradients' correctness.

use ndarray::{Array2, ArrayD, IxDyn};
use tunelab::io::hf;
use tunelab::nn::{Input, NoHooks};
use tunelab::train::neftune::{add_noise, noise_magnitude, Neftune};
use tunelab::Tape;

fn gpt2_tiny() -> hf::Loaded<f32> {
    hf::load::<f32>(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf/gpt2-tiny"),
    )
    .unwrap()
}

/// The embeddings with NEFTune minus those without, on a tape in training mode seeded `seed`
/// (or in evaluation mode).
fn noise(alpha: f64, seed: u64, train: bool) -> (Vec<f64>, usize, usize) {
    let m = gpt2_tiny();
    let ids = Array2::from_shape_fn((3, 7), |(b, t)| (b * 13 + t * 5) % 90);
    let input = Input::new(ids.view());
    let hooks = Neftune {
        inner: &NoHooks,
        alpha,
    };
    let run = |noisy: bool| {
        let mut tape = Tape::new(&m.store);
        tape.set_train(train);
        tape.seed(seed);
        let x = if noisy {
            m.model.embed_with(&mut tape, &hooks, &input).unwrap()
        } else {
            m.model.embed(&mut tape, &input).unwrap()
        };
        tape.value(x)
            .iter()
            .map(|&v| v as f64)
            .collect::<Vec<f64>>()
    };
    let (with, without) = (run(true), run(false));
    let d = with.iter().zip(&without).map(|(a, b)| a - b).collect();
    (d, 7, m.model.config.d_model)
}

#[test]
fn neftune_noise_is_uniform_within_alpha_over_root_l_times_d() {
    let (d, l, c) = noise(5.0, 1, true);
    let mag = noise_magnitude(5.0, l, c);
    assert!((mag - 5.0 / ((7 * 48) as f64).sqrt()).abs() < 1e-15);
    let max = d.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mean = d.iter().sum::<f64>() / d.len() as f64;
    let var = d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64;
    // f32 embeddings: the difference carries rounding of about 1e-7 on top of the noise.
    assert!(max <= mag * (1.0 + 1e-5) + 1e-6, "max {max} > mag {mag}");
    assert!(
        max > 0.95 * mag,
        "{} values fill ±{mag}: max {max}",
        d.len()
    );
    assert!(mean.abs() < 0.1 * mag, "mean {mean}");
    // uniform(−m, m) has variance m²/3.
    assert!((var / (mag * mag / 3.0) - 1.0).abs() < 0.1, "var {var}");
}

#[test]
fn neftune_adds_nothing_in_evaluation_or_at_alpha_zero() {
    for (alpha, train) in [(5.0, false), (0.0, true)] {
        let (d, ..) = noise(alpha, 1, train);
        assert!(d.iter().all(|&x| x == 0.0), "alpha {alpha}, train {train}");
    }
}

#[test]
fn neftune_noise_is_deterministic_per_seed() {
    let (a, ..) = noise(5.0, 9, true);
    let (b, ..) = noise(5.0, 9, true);
    let (c, ..) = noise(5.0, 10, true);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn gradients_through_neftune_pass_a_finite_difference_check() {
    // loss = Σ gelu(noisy(x) ⊙ w)², the same noise in every evaluation (same seed).
    let build = |xs: &[ArrayD<f64>]| -> (f64, Vec<ArrayD<f64>>) {
        let mut store = tunelab::ParamStore::<f64>::new();
        let ids: Vec<_> = xs
            .iter()
            .enumerate()
            .map(|(i, x)| store.add(format!("x{i}"), x.clone(), true).unwrap())
            .collect();
        let mut tape = Tape::new(&store);
        tape.seed(4);
        let (x, w) = (tape.param(ids[0]), tape.param(ids[1]));
        let x = add_noise(&mut tape, x, 3.0).unwrap();
        let y = tape.mul(x, w).unwrap();
        let y = tape.gelu_tanh(y).unwrap();
        let y = tape.square(y).unwrap();
        let loss = tape.sum_all(y).unwrap();
        let mut grads = tunelab::autodiff::Grads::new(&store);
        tape.backward(loss, &mut grads).unwrap();
        let g = ids
            .iter()
            .map(|&id| grads.get(id).unwrap().clone())
            .collect();
        (tape.scalar(loss).unwrap(), g)
    };
    let x = ArrayD::from_shape_fn(IxDyn(&[2, 3, 4]), |i| {
        (i[0] + 2 * i[1]) as f64 * 0.3 - i[2] as f64 * 0.2
    });
    let w = ArrayD::from_shape_fn(IxDyn(&[4]), |i| 0.5 + i[0] as f64 * 0.1);
    let inputs = [x, w];
    let (_, analytic) = build(&inputs);
    let step = 1e-6;
    let mut worst = 0.0f64;
    let mut probe = inputs.to_vec();
    for (k, g) in analytic.iter().enumerate() {
        for (i, &a) in g.iter().enumerate() {
            let x0 = inputs[k].as_slice().unwrap()[i];
            probe[k].as_slice_mut().unwrap()[i] = x0 + step;
            let up = build(&probe).0;
            probe[k].as_slice_mut().unwrap()[i] = x0 - step;
            let down = build(&probe).0;
            probe[k].as_slice_mut().unwrap()[i] = x0;
            let n = (up - down) / (2.0 * step);
            worst = worst.max((a - n).abs() / a.abs().max(n.abs()).max(1e-3));
        }
    }
    println!("NEFTune gradcheck: worst relative error {worst:.2e}");
    assert!(worst < 1e-6, "{worst}");
}
