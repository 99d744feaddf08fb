use super::{assert_close, randn, rng, tiny_gpt};
use crate::dora_weight::{column_norms, dora_weight};
use ndarray::{Array1, Array2, Ix1, Ix2};
use tunelab::peft::dora::{self, Dora};
use tunelab::peft::lora::LoraConfig;

const MODULE: &str = "h.0.mlp.c_fc";

#[test]
fn magnitude_init_matches_tunelab() {
    let (model, mut store) = tiny_gpt(1);
    let config = LoraConfig {
        r: 2,
        alpha: 4.0,
        targets: vec!["fc".into()],
        ..LoraConfig::default()
    };
    let d = Dora::apply(&model, &mut store, config, 3).unwrap();
    let target = &d.lora.targets[MODULE];
    let w: Array2<f64> = store
        .value(target.linear.weight)
        .clone()
        .into_dimensionality::<Ix2>()
        .unwrap();
    let m: Array1<f64> = store
        .value(d.magnitudes[MODULE][0])
        .clone()
        .into_dimensionality::<Ix1>()
        .unwrap();
    assert_close(
        "column norms (DoRA's initial m)",
        &column_norms(&w),
        &m,
        1e-12,
    );
}

#[test]
fn merged_weight_matches_tunelab() {
    let (model, base) = tiny_gpt(1);
    for (r, alpha, rslora) in [(2, 4.0, false), (4, 8.0, true)] {
        let mut store = base.clone();
        let config = LoraConfig {
            r,
            alpha,
            rslora,
            targets: vec!["fc".into()],
            ..LoraConfig::default()
        };
        let s = config.scaling();
        let d = Dora::apply(&model, &mut store, config, 3).unwrap();
        let target = &d.lora.targets[MODULE];
        let pair = &target.pairs[0];
        let m_id = d.magnitudes[MODULE][0];
        let mut rng = rng(r as u64);
        let a = randn(store.value(pair.a).raw_dim(), &mut rng);
        let b = randn(store.value(pair.b).raw_dim(), &mut rng);
        let m = randn(store.value(m_id).raw_dim(), &mut rng).mapv(|x| 1.0 + x.abs());
        store.set_value(pair.a, a.clone()).unwrap();
        store.set_value(pair.b, b.clone()).unwrap();
        store.set_value(m_id, m.clone()).unwrap();
        let w = store.value(target.linear.weight).clone();
        dora::fold(&d, &mut store).unwrap();
        let want: Array2<f64> = store
            .value(target.linear.weight)
            .clone()
            .into_dimensionality()
            .unwrap();
        let got = dora_weight(
            &w.into_dimensionality().unwrap(),
            &a.into_dimensionality().unwrap(),
            &b.into_dimensionality().unwrap(),
            &m.into_dimensionality().unwrap(),
            s,
        );
        assert_close(
            &format!("DoRA's merged weight, r = {r}, rslora = {rslora}"),
            &got,
            &want,
            1e-10,
        );
    }
}

#[test]
fn unchanged_at_init() {
    let mut rng = rng(5);
    let w = randn((6, 4), &mut rng);
    let a = randn((2, 6), &mut rng);
    let b = Array2::zeros((4, 2));
    let m = column_norms(&w);
    assert_close(
        "W' with B = 0 and m = ‖W‖",
        &dora_weight(&w, &a, &b, &m, 3.0),
        &w,
        1e-12,
    );
}
