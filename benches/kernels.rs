//! Matrix multiply per backend, as GFLOP/s: square sizes 256 to 2048, the products of one
//! training step of the benchmark GPT at C = 256 and C = 512 (B·T = 1024 rows, V = 4096; forward,
//! input gradients G·Wᵀ and weight gradients Xᵀ·G, with the layouts the ops use), and one
//! attention head (T 128, head size 64), and LoRA r = 8's low-rank products. The shapes are in
//! `gemm_shapes.rs`, shared with the `matmul_table` example.
//!
//! One criterion group per product (`matmul_gpt_d256/qkv`, ...), one bench per backend of the
//! build (`--features gemm,blas` for all of them), so criterion's report puts the backends side
//! by side. Throughput is the product's FLOPs (2·M·K·N) as "elements", so criterion's `Gelem/s`
//! column reads as GFLOP/s. Threads: `TUNELAB_THREADS` (default: all cores).

mod gemm_shapes;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use gemm_shapes::{attention, lora, squares, training, view, Shape};
use std::time::Duration;
use tunelab::kernels::{gemm_with, Backend};

fn fast_backends() -> impl Iterator<Item = Backend> {
    Backend::ALL
        .iter()
        .copied()
        .filter(|&b| b != Backend::Naive)
}

fn bench_shapes(c: &mut Criterion, shapes: Vec<Shape>, measure: Duration) {
    for shape in shapes {
        let mut g = c.benchmark_group(format!("matmul_{}/{}", shape.group, shape.name));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(measure)
            .throughput(Throughput::Elements(shape.flops()));
        let (a, b, mut out) = shape.operands();
        let (av, bv) = (view(&a, shape.ta), view(&b, shape.tb));
        // Accumulating products add into C; the values stay small over criterion's iterations.
        let beta = if shape.accumulate { 1.0 } else { 0.0 };
        for backend in fast_backends() {
            g.bench_function(BenchmarkId::new(backend.name(), shape.dims()), |bench| {
                bench.iter(|| gemm_with(backend, 1.0, av, bv, beta, &mut out.view_mut()))
            });
        }
        g.finish();
    }
}

fn square(c: &mut Criterion) {
    bench_shapes(c, squares(), Duration::from_secs(2));
}

fn gpt_d256(c: &mut Criterion) {
    bench_shapes(c, training(256), Duration::from_secs(1));
}

fn gpt_d512(c: &mut Criterion) {
    bench_shapes(c, training(512), Duration::from_secs(1));
}

fn lora_r8(c: &mut Criterion) {
    let mut shapes = lora(256);
    shapes.extend(lora(512));
    bench_shapes(c, shapes, Duration::from_millis(500));
}

fn attention_head(c: &mut Criterion) {
    bench_shapes(c, attention(), Duration::from_millis(500));
}

criterion_group!(benches, square, gpt_d256, gpt_d512, lora_r8, attention_head);
criterion_main!(benches);
