//! Generation tokens/s with and without the key/value cache on the benchmark GPT (C = 256, L = 4,
//! NH = 4, V = 4096, 128 positions, dropout off): 4 prompts of 32 random tokens, 64 greedy new
//! tokens each (`tunelab::lab::bench::GenerateBench`). Criterion's throughput is the 256 tokens
//! produced per run; the target is the cached path at least 5x the uncached one.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tunelab::kernels::Backend;
use tunelab::lab::bench::{BenchShape, GenerateBench};
use tunelab::peft::MethodSpec;

fn bench_generate(c: &mut Criterion) {
    let shape = BenchShape {
        batch: 4,
        ..BenchShape::gpt(256)
    };
    let bench =
        GenerateBench::new(shape, &MethodSpec::Full { last_k: None }, 32, 64).expect("model");
    let group = format!("generate_d256_{}", Backend::default_backend().name());
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(bench.tokens() as u64));
    for (name, cached) in [("cached", true), ("uncached", false)] {
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| bench.run(cached).expect("generate"))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_generate);
criterion_main!(benches);
