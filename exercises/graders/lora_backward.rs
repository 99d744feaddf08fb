use super::{assert_close, numeric_grad, randn, rng, tiny_gpt};
use crate::lora_backward::lora_backward;
use ndarray::{Array2, Ix2};
use tunelab::nn::{Hooks, Role, Site};
use tunelab::peft::lora::{Lora, LoraConfig};
use tunelab::{Grads, Tape};

const MODULE: &str = "h.0.mlp.c_fc";

#[test]
fn gradients_match_tunelab_through_its_lora_hook() {
    let (model, base) = tiny_gpt(1);
    for (r, alpha, rslora) in [(2, 5.0, false), (4, 16.0, false), (3, 8.0, true)] {
        let mut store = base.clone();
        let config = LoraConfig {
            r,
            alpha,
            rslora,
            targets: vec!["fc".into()],
            ..LoraConfig::default()
        };
        let lora = Lora::apply(&model, &mut store, config.clone(), 3).unwrap();
        let target = &lora.targets[MODULE];
        let pair = &target.pairs[0];
        let mut rng = rng(r as u64);
        // Random A and B: at init B = 0 would hide a wrong dA.
        let a = randn(store.value(pair.a).raw_dim(), &mut rng);
        let b = randn(store.value(pair.b).raw_dim(), &mut rng);
        store.set_value(pair.a, a.clone()).unwrap();
        store.set_value(pair.b, b.clone()).unwrap();
        let w = store.value(target.linear.weight).clone();
        let x: Array2<f64> = randn((5, target.linear.d_in), &mut rng);
        let dy: Array2<f64> = randn((5, target.linear.d_out), &mut rng);
        let x_id = store.add("x", x.clone().into_dyn(), true).unwrap();

        // L = Σ y ⊙ dy through tunelab's hook, so ∂L/∂y = dy.
        let mut tape = Tape::new(&store);
        let xv = tape.param(x_id);
        let wv = tape.param(target.linear.weight);
        let y = tape.matmul(xv, wv).unwrap();
        let site = Site {
            layer: Some(0),
            module: MODULE,
            role: Role::Fc,
        };
        let out = lora.linear(&mut tape, &site, xv, y).unwrap();
        let dyv = tape.constant(dy.clone().into_dyn());
        let weighted = tape.mul(out, dyv).unwrap();
        let loss = tape.sum_all(weighted).unwrap();
        let mut grads = Grads::new(&store);
        tape.backward(loss, &mut grads).unwrap();
        let grad = |id| {
            grads
                .get(id)
                .unwrap()
                .clone()
                .into_dimensionality::<Ix2>()
                .unwrap()
        };

        // The exercise takes α and divides by r; rsLoRA's α/√r is the same scale as α' = s·r.
        let alpha_eff = config.scaling() * r as f64;
        let got = lora_backward(
            &x,
            &w.into_dimensionality().unwrap(),
            &a.into_dimensionality().unwrap(),
            &b.into_dimensionality().unwrap(),
            alpha_eff,
            &dy,
        );
        let what = |g: &str| format!("{g}, r = {r}, alpha = {alpha}, rslora = {rslora}");
        assert_close(&what("dx"), &got.dx, &grad(x_id), 1e-10);
        assert_close(&what("dA"), &got.da, &grad(pair.a), 1e-10);
        assert_close(&what("dB"), &got.db, &grad(pair.b), 1e-10);
    }
}

#[test]
fn gradients_match_central_differences() {
    let mut rng = rng(7);
    let (n, d_in, d_out, r, alpha) = (3, 4, 5, 2, 6.0);
    let x = randn((n, d_in), &mut rng);
    let w = randn((d_in, d_out), &mut rng);
    let a = randn((r, d_in), &mut rng);
    let b = randn((d_out, r), &mut rng);
    let dy = randn((n, d_out), &mut rng);
    let s = alpha / r as f64;
    let loss = |x: &Array2<f64>, a: &Array2<f64>, b: &Array2<f64>| {
        let y = x.dot(&w) + x.dot(&a.t()).dot(&b.t()) * s;
        (&y * &dy).sum()
    };
    let got = lora_backward(&x, &w, &a, &b, alpha, &dy);
    assert_close("dx", &got.dx, &numeric_grad(&x, |x| loss(x, &a, &b)), 1e-6);
    assert_close("dA", &got.da, &numeric_grad(&a, |a| loss(&x, a, &b)), 1e-6);
    assert_close("dB", &got.db, &numeric_grad(&b, |b| loss(&x, &a, b)), 1e-6);
}

#[test]
fn at_init_only_b_moves() {
    let mut rng = rng(8);
    let x = randn((4, 6), &mut rng);
    let w = randn((6, 3), &mut rng);
    let a = randn((2, 6), &mut rng);
    let b = Array2::zeros((3, 2));
    let dy = randn((4, 3), &mut rng);
    let got = lora_backward(&x, &w, &a, &b, 4.0, &dy);
    assert!(got.da.iter().all(|&g| g == 0.0), "with B = 0, dA must be 0");
    assert!(
        got.db.iter().any(|&g| g != 0.0),
        "with A random, dB must not be 0"
    );
}
