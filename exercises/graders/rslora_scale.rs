use super::rng;
use crate::rslora_scale::lora_scaling;
use approx::assert_relative_eq;
use rand::Rng;
use tunelab::peft::lora::LoraConfig;

#[test]
fn matches_tunelab_with_and_without_rslora() {
    let mut rng = rng(1);
    for _ in 0..50 {
        let r = rng.random_range(1..257);
        let alpha = rng.random_range(0.5..64.0);
        for rslora in [false, true] {
            let config = LoraConfig {
                r,
                alpha,
                rslora,
                ..LoraConfig::default()
            };
            let want = config.scaling();
            let got = lora_scaling(alpha, r, rslora);
            assert_relative_eq!(got, want, max_relative = 1e-12);
        }
    }
}
