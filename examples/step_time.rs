//! Times training steps of one method on the benchmark GPT (see `tunelab::lab::bench`), a
//! quick check outside criterion: `cargo run --release --example step_time -- 256 full 5`.
//! Prints each step's time, the matrix-product FLOPs the kernels counted, and the loss.
//! Memory is set up as the CLI sets it ([`StepBench::new`] keeps freed memory in the process).

use std::time::Instant;
use tunelab::kernels::{stats, FlushDenormals};
use tunelab::lab::bench::{methods, BenchShape, StepBench};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let d: usize = args.first().map_or(256, |a| a.parse().expect("d_model"));
    let method = args.get(1).map_or("full", |s| s.as_str());
    let steps: usize = args.get(2).map_or(5, |a| a.parse().expect("steps"));
    let flush = !args.iter().any(|a| a == "--no-flush-denormals");
    let (_, spec) = methods()
        .into_iter()
        .find(|(n, _)| *n == method)
        .expect("method: full, lora_r8_qv, houlsby_16, prefix_10, prompt_10, ia3, bitfit");
    let mut bench = StepBench::new(BenchShape::gpt(d), &spec).expect("model");
    let _mode = FlushDenormals::new(flush);
    for step in 0..steps {
        let (t0, s0) = (Instant::now(), stats());
        let loss = bench.step().expect("step");
        let dt = t0.elapsed().as_secs_f64();
        let flops = (stats().gemm_flops - s0.gemm_flops) as f64;
        println!(
            "step {step}: {:.1} ms, {:.2} GFLOP in matmuls ({:.1} GFLOP/s overall), loss {loss:.4}",
            dt * 1e3,
            flops / 1e9,
            flops / dt / 1e9
        );
    }
}
