use super::{assert_close, randn, rng, tiny_gpt};
use crate::lora_forward::{lora_forward, lora_init};
use ndarray::{Array2, Ix2};
use tunelab::nn::{Hooks, Role, Site};
use tunelab::peft::lora::{Lora, LoraConfig};
use tunelab::Tape;

const MODULE: &str = "h.0.mlp.c_fc";

#[test]
fn forward_matches_tunelab() {
    let (model, base) = tiny_gpt(1);
    for (r, alpha) in [(2, 5.0), (4, 16.0)] {
        let mut store = base.clone();
        let config = LoraConfig {
            r,
            alpha,
            targets: vec!["fc".into()],
            ..LoraConfig::default()
        };
        let lora = Lora::apply(&model, &mut store, config, 3).unwrap();
        let target = &lora.targets[MODULE];
        let pair = &target.pairs[0];
        // Train it a little: random A and B (B is zero at init, which would hide mistakes).
        let mut rng = rng(r as u64);
        let a = randn(store.value(pair.a).raw_dim(), &mut rng);
        let b = randn(store.value(pair.b).raw_dim(), &mut rng);
        store.set_value(pair.a, a.clone()).unwrap();
        store.set_value(pair.b, b.clone()).unwrap();
        let w = store.value(target.linear.weight).clone();
        let x: Array2<f64> = randn((5, target.linear.d_in), &mut rng);

        let mut tape = Tape::new(&store);
        let xv = tape.constant(x.clone().into_dyn());
        let wv = tape.param(target.linear.weight);
        let y = tape.matmul(xv, wv).unwrap();
        let site = Site {
            layer: Some(0),
            module: MODULE,
            role: Role::Fc,
        };
        let out = lora.linear(&mut tape, &site, xv, y).unwrap();
        let want = tape
            .value(out)
            .to_owned()
            .into_dimensionality::<Ix2>()
            .unwrap();

        let got = lora_forward(
            &x,
            &w.into_dimensionality().unwrap(),
            &a.into_dimensionality().unwrap(),
            &b.into_dimensionality().unwrap(),
            alpha,
        );
        assert_close(
            &format!("LoRA output, r = {r}, alpha = {alpha}"),
            &got,
            &want,
            1e-10,
        );
    }
}

#[test]
fn zero_init_leaves_the_model_unchanged() {
    let (d_in, d_out, r) = (16, 24, 4);
    let (a, b) = lora_init(d_in, d_out, r, &mut rng(1));
    assert_eq!(a.dim(), (r, d_in), "A is (r, d_in)");
    assert_eq!(b.dim(), (d_out, r), "B is (d_out, r)");
    assert!(b.iter().all(|&x| x == 0.0), "B must start at exactly zero");
    let bound = 1.0 / (d_in as f64).sqrt();
    assert!(
        a.iter().all(|x| x.abs() <= bound),
        "A must lie in ±1/√d_in = ±{bound}"
    );
    assert!(
        a.iter().any(|x| x.abs() > bound / 2.0),
        "A must be random (uniform in ±1/√d_in), not zero: B would never get a gradient"
    );
    let mut rng = rng(2);
    let x = randn((3, d_in), &mut rng);
    let w = randn((d_in, d_out), &mut rng);
    assert_eq!(
        lora_forward(&x, &w, &a, &b, 16.0),
        x.dot(&w),
        "at init, y must be x·W exactly"
    );
}
