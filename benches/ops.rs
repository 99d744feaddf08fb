//! Forward, and forward + backward, of the fused heavy ops at the benchmark GPT's shapes
//! (B = 8, T = 128, C = 256, NH = 4, HS = 64, V = 4096): attention, layer norm, cross-entropy.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ndarray::{ArrayD, IxDyn};
use std::time::Duration;
use tunelab::autodiff::AttnMask;
use tunelab::{Grads, ParamStore, Tape, Var};

const B: usize = 8;
const T: usize = 128;
const C: usize = 256;
const NH: usize = 4;
const V: usize = 4096;

fn tensor(shape: &[usize], seed: usize) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let values = (0..n)
        .map(|i| (((i * 31 + seed * 17) % 29) as f32 - 14.0) / 29.0)
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), values).expect("element count")
}

/// Benchmarks `f` on a fresh tape: "forward" only, and "forward+backward" from the sum of its
/// output (or from the loss itself when it is a scalar).
fn bench_op(
    c: &mut Criterion,
    name: &str,
    store: &ParamStore<f32>,
    rows: u64,
    f: impl Fn(&mut Tape<'_, f32>) -> Var,
) {
    let mut g = c.benchmark_group(name);
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(rows));
    g.bench_function("forward", |bench| {
        bench.iter(|| {
            let mut tape = Tape::new(store);
            let y = f(&mut tape);
            std::hint::black_box(tape.value(y).len());
        })
    });
    let mut grads = Grads::new(store);
    g.bench_function("forward+backward", |bench| {
        bench.iter(|| {
            let mut tape = Tape::new(store);
            let y = f(&mut tape);
            let loss = if tape.shape(y).is_empty() {
                y
            } else {
                tape.sum_all(y).unwrap()
            };
            tape.backward(loss, &mut grads).unwrap();
        })
    });
    g.finish();
}

fn attention(c: &mut Criterion) {
    let hs = C / NH;
    let mut store = ParamStore::new();
    let q = store.add("q", tensor(&[B, NH, T, hs], 1), true).unwrap();
    let k = store.add("k", tensor(&[B, NH, T, hs], 2), true).unwrap();
    let v = store.add("v", tensor(&[B, NH, T, hs], 3), true).unwrap();
    let mask = AttnMask::causal();
    bench_op(
        c,
        "attention_causal_b8_nh4_t128_hs64",
        &store,
        (B * T) as u64,
        |tape| {
            let (q, k, v) = (tape.param(q), tape.param(k), tape.param(v));
            tape.attention(q, k, v, &mask).unwrap()
        },
    );
}

fn layer_norm(c: &mut Criterion) {
    let mut store = ParamStore::new();
    let x = store.add("x", tensor(&[B, T, C], 4), true).unwrap();
    let w = store.add("w", tensor(&[C], 5), true).unwrap();
    let b = store.add("b", tensor(&[C], 6), true).unwrap();
    bench_op(
        c,
        "layer_norm_b8_t128_c256",
        &store,
        (B * T) as u64,
        |tape| {
            let (x, w, b) = (tape.param(x), tape.param(w), tape.param(b));
            tape.layer_norm(x, w, b, 1e-5).unwrap()
        },
    );
}

fn cross_entropy(c: &mut Criterion) {
    let mut store = ParamStore::new();
    let z = store.add("logits", tensor(&[B, T, V], 7), true).unwrap();
    let targets: Vec<i64> = (0..B * T).map(|i| ((i * 37) % V) as i64).collect();
    bench_op(
        c,
        "cross_entropy_b8_t128_v4096",
        &store,
        (B * T) as u64,
        |tape| {
            let z = tape.param(z);
            tape.cross_entropy(z, &targets, -100).unwrap()
        },
    );
}

criterion_group!(benches, attention, layer_norm, cross_entropy);
criterion_main!(benches);
