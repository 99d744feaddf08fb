use super::{assert_close, randn, rng, tiny_gpt};
use crate::bottleneck_adapter::{adapter_forward, adapter_init, adapter_params, Bottleneck};
use ndarray::{Array2, Ix1, Ix2};
use tunelab::peft::adapter::{Adapter, AdapterConfig};
use tunelab::peft::Method;
use tunelab::Tape;

#[test]
fn forward_matches_tunelab() {
    let (model, base) = tiny_gpt(1);
    let mut store = base.clone();
    let adapter = Adapter::apply(&model, &mut store, AdapterConfig::pfeiffer(3), 1).unwrap();
    let b = &adapter.adapters["h.0.mlp.c_proj"];
    let mut rng = rng(2);
    for id in [b.down_weight, b.down_bias, b.up_weight, b.up_bias] {
        let value = randn(store.value(id).raw_dim(), &mut rng);
        store.set_value(id, value).unwrap();
    }
    let mine = Bottleneck {
        down_weight: store
            .value(b.down_weight)
            .clone()
            .into_dimensionality::<Ix2>()
            .unwrap(),
        down_bias: store
            .value(b.down_bias)
            .clone()
            .into_dimensionality::<Ix1>()
            .unwrap(),
        up_weight: store
            .value(b.up_weight)
            .clone()
            .into_dimensionality::<Ix2>()
            .unwrap(),
        up_bias: store
            .value(b.up_bias)
            .clone()
            .into_dimensionality::<Ix1>()
            .unwrap(),
    };
    let h: Array2<f64> = randn((6, model.config.d_model), &mut rng);
    let mut tape = Tape::new(&store);
    let hv = tape.constant(h.clone().into_dyn());
    let out = adapter.forward(&mut tape, b, hv).unwrap();
    let want = tape
        .value(out)
        .to_owned()
        .into_dimensionality::<Ix2>()
        .unwrap();
    assert_close("adapter output", &adapter_forward(&h, &mine), &want, 1e-12);
}

#[test]
fn init_is_the_identity() {
    let (c, m) = (16, 4);
    let ad = adapter_init(c, m, &mut rng(1));
    assert_eq!(ad.down_weight.dim(), (m, c), "down weight is (m, C)");
    assert_eq!(ad.up_weight.dim(), (c, m), "up weight is (C, m)");
    assert_eq!(
        (ad.down_bias.len(), ad.up_bias.len()),
        (m, c),
        "biases are (m) and (C)"
    );
    assert!(
        ad.up_weight.iter().chain(&ad.up_bias).all(|&x| x == 0.0),
        "up must start at zero"
    );
    let bound = 1.0 / (c as f64).sqrt();
    assert!(
        ad.down_weight.iter().all(|x| x.abs() <= bound),
        "down must lie in ±1/√C"
    );
    assert!(
        ad.down_weight.iter().any(|x| x.abs() > bound / 2.0),
        "down must be random"
    );
    let h = randn((3, c), &mut rng(2));
    assert_eq!(
        adapter_forward(&h, &ad),
        h,
        "at init the adapter must return h exactly"
    );
}

#[test]
fn parameter_count_matches_a_model() {
    for layers in [1, 2] {
        for m in [1, 4] {
            let (model, mut store) = tiny_gpt(layers);
            let adapter = Adapter::apply(&model, &mut store, AdapterConfig::houlsby(m), 0).unwrap();
            let added: usize = Method::<f64>::params(&adapter)
                .iter()
                .map(|&id| store.value(id).len())
                .sum();
            // Houlsby: two adapters per block.
            let want = added / (2 * layers);
            assert_eq!(
                adapter_params(model.config.d_model, m),
                want,
                "C = 8, m = {m}"
            );
        }
    }
}
