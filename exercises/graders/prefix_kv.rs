use super::{assert_close, randn, rng, tiny_gpt};
use crate::prefix_kv::prefix_keys_values;
use ndarray::{Array4, Ix2, Ix4};
use tunelab::nn::Hooks;
use tunelab::peft::prefix::{Prefix, PrefixConfig, Source};
use tunelab::Tape;

#[test]
fn matches_tunelab_in_every_layer() {
    let (model, mut store) = tiny_gpt(2);
    let config = PrefixConfig {
        n_virtual: 3,
        reparameterize: false,
        hidden: 0,
    };
    let prefix = Prefix::apply(&model, &mut store, config, 1).unwrap();
    let Source::Table(table_id) = prefix.source else {
        panic!("a prefix trained directly has a table");
    };
    let mut rng = rng(2);
    let table = randn(store.value(table_id).raw_dim(), &mut rng);
    store.set_value(table_id, table.clone()).unwrap();
    let table = table.into_dimensionality::<Ix2>().unwrap();
    let (nh, hs) = (model.config.n_heads, model.config.head_size());
    for layer in 0..2 {
        let k: Array4<f64> = randn((2, nh, 4, hs), &mut rng);
        let v: Array4<f64> = randn((2, nh, 4, hs), &mut rng);
        let mut tape = Tape::new(&store);
        let (kv, vv) = (
            tape.constant(k.clone().into_dyn()),
            tape.constant(v.clone().into_dyn()),
        );
        let (k2, v2) = prefix.key_value(&mut tape, layer, kv, vv).unwrap();
        let want_k = tape
            .value(k2)
            .to_owned()
            .into_dimensionality::<Ix4>()
            .unwrap();
        let want_v = tape
            .value(v2)
            .to_owned()
            .into_dimensionality::<Ix4>()
            .unwrap();
        let (got_k, got_v) = prefix_keys_values(&table, layer, &k, &v);
        assert_close(&format!("layer {layer} keys"), &got_k, &want_k, 1e-12);
        assert_close(&format!("layer {layer} values"), &got_v, &want_v, 1e-12);
    }
}
