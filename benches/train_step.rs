//! One training step (forward, backward, AdamW) per fine-tuning method on the same GPT
//! (C = 256, L = 4, NH = 4, T = 128, B = 8, V = 4096, dropout off): time per step, and tokens/s
//! as criterion's throughput. Also: full and LoRA at C = 512, and the full step with denormals
//! kept (`noflush`) against flushed (the training default).
//!
//! Groups are named `train_step_d256_<backend>`: the default backend of the build, or the one
//! `TUNELAB_BACKEND` names. `benches/pytorch_reference.py` reads the results from
//! target/criterion/train_step_*/.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use tunelab::kernels::{Backend, FlushDenormals};
use tunelab::lab::bench::{methods, BenchShape, StepBench};

/// Benchmarks the methods named in `only` (all when empty), each also with denormals kept when
/// named in `noflush`.
fn bench_steps(c: &mut Criterion, group: &str, d: usize, only: &[&str], noflush: &[&str]) {
    let shape = BenchShape::gpt(d);
    // The backend is part of the group's name, so runs with TUNELAB_BACKEND=matrixmultiply and
    // with the blas default sit side by side under target/criterion.
    let group = format!("{group}_{}", Backend::default_backend().name());
    let mut g = c.benchmark_group(group);
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(shape.tokens() as u64));
    for (name, spec) in methods() {
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let modes: &[bool] = if noflush.contains(&name) {
            &[true, false]
        } else {
            &[true]
        };
        for &on in modes {
            let mut bench = StepBench::new(shape, &spec).expect("benchmark model");
            let id = if on {
                name.to_string()
            } else {
                format!("{name}_noflush")
            };
            g.bench_function(BenchmarkId::from_parameter(id), |b| {
                let _mode = FlushDenormals::new(on);
                b.iter(|| bench.step().expect("step"))
            });
        }
    }
    g.finish();
}

fn d256(c: &mut Criterion) {
    bench_steps(c, "train_step_d256", 256, &[], &["full", "lora_r8_qv"]);
}

fn d512(c: &mut Criterion) {
    bench_steps(c, "train_step_d512", 512, &["full", "lora_r8_qv"], &[]);
}

criterion_group!(benches, d256, d512);
criterion_main!(benches);
