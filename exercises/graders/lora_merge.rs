use super::{assert_close, randn, rng, tiny_gpt};
use crate::lora_merge::{lora_merge, lora_unmerge};
use ndarray::{Array2, Ix2};
use tunelab::peft::lora::{Lora, LoraConfig};

#[test]
fn merge_and_unmerge_match_tunelab() {
    let (model, base) = tiny_gpt(1);
    for (r, alpha) in [(1, 1.0), (3, 8.0)] {
        let mut store = base.clone();
        let config = LoraConfig {
            r,
            alpha,
            targets: vec!["fc".into()],
            ..LoraConfig::default()
        };
        let mut lora = Lora::apply(&model, &mut store, config, 3).unwrap();
        let target = lora.targets["h.0.mlp.c_fc"].clone();
        let unit = &target.pairs[0];
        let mut rng = rng(r as u64);
        let a = randn(store.value(unit.a).raw_dim(), &mut rng);
        let b = randn(store.value(unit.b).raw_dim(), &mut rng);
        store.set_value(unit.a, a.clone()).unwrap();
        store.set_value(unit.b, b.clone()).unwrap();
        let weight = |s: &tunelab::ParamStore<f64>| -> Array2<f64> {
            s.value(target.linear.weight)
                .clone()
                .into_dimensionality::<Ix2>()
                .unwrap()
        };
        let (a, b) = (
            a.into_dimensionality::<Ix2>().unwrap(),
            b.into_dimensionality::<Ix2>().unwrap(),
        );
        let w0 = weight(&store);
        lora.merge(&mut store).unwrap();
        let w1 = weight(&store);
        assert_close(
            &format!("merged W, r = {r}"),
            &lora_merge(&w0, &a, &b, alpha),
            &w1,
            1e-12,
        );
        lora.unmerge(&mut store).unwrap();
        let w2 = weight(&store);
        assert_close(
            &format!("unmerged W, r = {r}"),
            &lora_unmerge(&w1, &a, &b, alpha),
            &w2,
            1e-12,
        );
    }
}
