use ndarray::Array2;
use std::time::Instant;
use tunelab::nn::{Config, Input, NoHooks, Transformer};
use tunelab::{Grads, ParamStore, Tape};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let (d, l, b, t, v) = (args[0], args[1], args[2], args[3], args[4]);
    let mut store = ParamStore::<f32>::new();
    let model = Transformer::new(Config::gpt(v, d, d / 64, l, t), &mut store, 1).unwrap();
    let ids = Array2::from_shape_fn((b, t), |(i, j)| (i * 7 + j * 13) % v);
    let targets: Vec<i64> = ids.iter().map(|&x| ((x + 1) % v) as i64).collect();
    let mut grads = Grads::new(&store);
    for step in 0..6 {
        let t0 = Instant::now();
        let mut tape = Tape::new(&store);
        let h = model
            .forward(&mut tape, &NoHooks, &Input::new(ids.view()))
            .unwrap();
        let logits = model.lm_logits(&mut tape, &NoHooks, h).unwrap();
        let loss = tape.cross_entropy(logits, &targets, -100).unwrap();
        let t1 = Instant::now();
        tape.backward(loss, &mut grads).unwrap();
        let t2 = Instant::now();
        println!(
            "step {step}: fwd {:.1} ms, bwd {:.1} ms",
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3
        );
    }
}
