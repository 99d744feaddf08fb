use super::tiny_gpt;
use crate::lora_params::lora_params;
use tunelab::lab::estimate::{self, named_shape, LoraConfig as EstimateLora, NAMED_SIZES};
use tunelab::peft::lora::{Lora, LoraConfig};
use tunelab::peft::Method;

#[test]
fn matches_the_estimator_on_real_shapes() {
    for size in NAMED_SIZES {
        let shape = named_shape(size).unwrap();
        for r in [1, 8, 64] {
            for cfg in [EstimateLora::qv(r), EstimateLora::all_linear(r)] {
                let want = estimate::lora_params(&shape, &cfg).unwrap();
                let targets: Vec<(usize, usize)> = shape
                    .linears()
                    .into_iter()
                    .filter(|(m, _, _)| cfg.targets.contains(m))
                    .map(|(_, d_in, d_out)| (d_in, d_out))
                    .collect();
                let got = lora_params(shape.layers, &targets, r);
                assert_eq!(got, want, "{} with r = {r} on {targets:?}", shape.name);
            }
        }
    }
}

#[test]
fn matches_what_lora_adds_to_a_model() {
    let (model, base) = tiny_gpt(2);
    let c = model.config.d_model;
    for r in [1, 3] {
        let mut store = base.clone();
        let config = LoraConfig {
            r,
            targets: vec!["fc".into(), "proj".into()],
            ..LoraConfig::default()
        };
        let lora = Lora::apply(&model, &mut store, config, 0).unwrap();
        let added: usize = Method::<f64>::params(&lora)
            .iter()
            .map(|&id| store.value(id).len())
            .sum();
        let got = lora_params(2, &[(c, 4 * c), (4 * c, c)], r);
        assert_eq!(
            got, added as u64,
            "LoRA r = {r} on fc and proj of a 2-layer model"
        );
    }
}
