//! Matrix multiply per backend, as GFLOP/s: square sizes 256 to 2048, then the products of one
//! training step of the benchmark GPT (C = 256, B·T = 1024 rows, V = 4096).
//!
//! Criterion's throughput is set to the product's FLOPs (2·M·K·N) as "elements", so its
//! `Gelem/s` column reads as GFLOP/s. Threads: `TUNELAB_THREADS` (default: all cores).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array2, ArrayView2};
use std::time::Duration;
use tunelab::kernels::{gemm_with, Backend};

fn matrix(m: usize, n: usize, seed: usize) -> Array2<f32> {
    Array2::from_shape_fn((m, n), |(i, j)| {
        (((i * 31 + j * 17 + seed * 7) % 23) as f32 - 11.0) / 23.0
    })
}

fn fast_backends() -> impl Iterator<Item = Backend> {
    Backend::ALL
        .iter()
        .copied()
        .filter(|&b| b != Backend::Naive)
}

fn bench_product(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    a: ArrayView2<f32>,
    b: ArrayView2<f32>,
) {
    let (m, k) = a.dim();
    let n = b.dim().1;
    g.throughput(Throughput::Elements(2 * (m * k * n) as u64));
    let mut c = Array2::<f32>::zeros((m, n));
    for backend in fast_backends() {
        g.bench_function(BenchmarkId::new(backend.name(), name), |bench| {
            bench.iter(|| gemm_with(backend, 1.0, a, b, 0.0, &mut c.view_mut()))
        });
    }
}

fn square(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul_square");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [256, 512, 1024, 2048] {
        let (a, b) = (matrix(n, n, 1), matrix(n, n, 2));
        bench_product(&mut g, &n.to_string(), a.view(), b.view());
    }
    g.finish();
}

fn transformer(c: &mut Criterion) {
    let (rows, ch, v, t, hs) = (1024, 256, 4096, 128, 64);
    let mut g = c.benchmark_group("matmul_gpt_d256");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let x = matrix(rows, ch, 1);
    let h = matrix(rows, 4 * ch, 2);
    let w_qkv = matrix(ch, 3 * ch, 3);
    let w_fc = matrix(ch, 4 * ch, 4);
    let w_proj = matrix(4 * ch, ch, 5);
    let wte = matrix(v, ch, 6); // tied LM head, used transposed
    let dy = matrix(rows, 4 * ch, 7);
    let q = matrix(t, hs, 8);
    bench_product(&mut g, "qkv x(1024,256)·W(256,768)", x.view(), w_qkv.view());
    bench_product(&mut g, "fc x(1024,256)·W(256,1024)", x.view(), w_fc.view());
    bench_product(
        &mut g,
        "proj h(1024,1024)·W(1024,256)",
        h.view(),
        w_proj.view(),
    );
    bench_product(
        &mut g,
        "lm_head x(1024,256)·wteT(256,4096)",
        x.view(),
        wte.t(),
    );
    bench_product(&mut g, "dW_fc xT(256,1024)·dY(1024,1024)", x.t(), dy.view());
    bench_product(&mut g, "scores q(128,64)·kT(64,128)", q.view(), q.t());
    g.finish();
}

criterion_group!(benches, square, transformer);
criterion_main!(benches);
