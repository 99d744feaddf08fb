//! Times generation on the benchmark GPT (see `tunelab::lab::bench::GenerateBench`) with and
//! without the key/value cache, a quick check outside criterion:
//! `cargo run --release --example generate_speed -- 256 full 4 32 64 3` (d_model, method, batch,
//! prompt tokens, new tokens, runs; optionally `cached` or `uncached` for one path alone). Prints
//! tokens/s of each path and their ratio.

use std::time::Instant;
use tunelab::lab::bench::{methods, BenchShape, GenerateBench};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, default: usize, what: &str| {
        args.get(i)
            .map_or(default, |a| a.parse().unwrap_or_else(|_| panic!("{what}")))
    };
    let d = num(0, 256, "d_model");
    let method = args.get(1).map_or("full", |s| s.as_str());
    let (batch, prompt, new, runs) = (
        num(2, 4, "batch"),
        num(3, 32, "prompt tokens"),
        num(4, 64, "new tokens"),
        num(5, 3, "runs"),
    );
    let (_, spec) = methods()
        .into_iter()
        .find(|(n, _)| *n == method)
        .expect("method: full, lora_r8_qv, houlsby_16, prefix_10, prompt_10, ia3, bitfit");
    let shape = BenchShape {
        batch,
        ..BenchShape::gpt(d)
    };
    let bench = GenerateBench::new(shape, &spec, prompt, new).expect("model");
    let mut rate = [0.0f64; 2];
    let mut outputs = Vec::new();
    // A seventh argument `cached` (or `uncached`) times that path alone, for a profiler.
    let paths: Vec<bool> = match args.get(6).map(String::as_str) {
        Some("cached") => vec![true],
        Some("uncached") => vec![false],
        _ => vec![false, true],
    };
    for &cached in &paths {
        let i = usize::from(cached);
        let mut best = f64::INFINITY;
        for _ in 0..runs {
            let t0 = Instant::now();
            let out = bench.run(cached).expect("generate");
            best = best.min(t0.elapsed().as_secs_f64());
            outputs.push(out);
        }
        rate[i] = bench.tokens() as f64 / best;
        let name = if cached { "cached" } else { "uncached" };
        println!(
            "{name:>8}: best of {runs} {:.3} s for {} tokens, {:.1} tokens/s",
            best,
            bench.tokens(),
            rate[i]
        );
    }
    if paths.len() < 2 {
        return;
    }
    let same = outputs.windows(2).all(|w| w[0] == w[1]);
    println!(
        "cached / uncached: {:.1}x; same tokens in every run: {same}",
        rate[1] / rate[0]
    );
}
