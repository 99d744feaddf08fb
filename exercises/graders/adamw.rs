use super::{assert_close, randn, rng};
use crate::adamw::{adamw_step, AdamState, AdamWConfig};
use ndarray::ArrayD;
use tunelab::optim::{AdamW, Optimizer};
use tunelab::{Grads, ParamId, ParamStore, Tape};

/// Grads holding `g` for parameter `id`: the backward of Σ p ⊙ g.
fn grads_of(store: &ParamStore<f64>, id: ParamId, g: &ArrayD<f64>) -> Grads<f64> {
    let mut tape = Tape::new(store);
    let p = tape.param(id);
    let gv = tape.constant(g.clone());
    let pg = tape.mul(p, gv).unwrap();
    let loss = tape.sum_all(pg).unwrap();
    let mut grads = Grads::new(store);
    tape.backward(loss, &mut grads).unwrap();
    grads
}

#[test]
fn five_steps_match_tunelab() {
    let configs = [
        AdamWConfig::default(),
        AdamWConfig {
            beta1: 0.8,
            beta2: 0.95,
            eps: 1e-6,
            weight_decay: 0.1,
        },
    ];
    for (c, cfg) in configs.iter().enumerate() {
        let mut rng = rng(c as u64);
        let p0 = randn(vec![3, 4], &mut rng);
        let mut store = ParamStore::new();
        let id = store.add("w", p0.clone(), true).unwrap();
        let theirs = tunelab::optim::AdamWConfig {
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        };
        let mut opt = AdamW::new(theirs).unwrap();
        let (mut p, mut state) = (p0, AdamState::new(&[3, 4]));
        for step in 0..5 {
            let g = randn(vec![3, 4], &mut rng) * 10f64.powi(step - 2);
            let lr = 1e-2 / (step + 1) as f64;
            let grads = grads_of(&store, id, &g);
            opt.step(&mut store, &grads, lr);
            adamw_step(&mut p, &g, &mut state, lr, cfg);
            assert_eq!(state.t, step as u64 + 1, "t counts the updates");
            let what = format!("parameter after step {} with {cfg:?}", step + 1);
            assert_close(&what, &p, store.value(id), 1e-12);
        }
    }
}
