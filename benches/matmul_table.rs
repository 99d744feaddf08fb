//! A quick table of matmul GFLOP/s per backend at the benchmark GPT's training shapes
//! (`gemm_shapes.rs`), outside criterion:
//!
//! ```sh
//! cargo run --release -p tunelab-benches --features gemm,blas --example matmul_table
//! cargo run --release -p tunelab-benches --features gemm,blas --example matmul_table -- \
//!     --groups gpt_d256,square --rounds 7 --ms 40
//! ```
//!
//! Every backend of the build is timed on each shape in turn, in rounds whose order rotates
//! (A B C, B C A, ...), so a change of load hits all of them alike; each cell is the median over
//! rounds. The 1-minute load average is printed before and after. Threads: `TUNELAB_THREADS`.
//!
//! `--cpu` times the calling thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) instead of the
//! wall clock: with `TUNELAB_THREADS=1` that is each kernel's speed per core, much less
//! disturbed by other work on a shared machine than wall time (which waits for the core).

mod gemm_shapes;

use gemm_shapes::{attention, lora, squares, training, view, Shape};
use ndarray::Array2;
use std::time::Instant;
use tunelab::kernels::{gemm_with, threads, Backend};

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Seconds of CPU time this thread has used (`CLOCK_THREAD_CPUTIME_ID`; Linux).
fn thread_cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    extern "C" {
        fn clock_gettime(clock: i32, t: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut t = Timespec { sec: 0, nsec: 0 };
    // SAFETY: clock_gettime writes one timespec (two 64-bit fields on x86_64 Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut t) };
    assert_eq!(rc, 0, "clock_gettime");
    t.sec as f64 + t.nsec as f64 * 1e-9
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rounds: usize = arg(&args, "--rounds").map_or(5, |s| s.parse().expect("--rounds"));
    let target_ms: f64 = arg(&args, "--ms").map_or(25.0, |s| s.parse().expect("--ms"));
    let cpu = args.iter().any(|a| a == "--cpu");
    let groups = arg(&args, "--groups")
        .unwrap_or_else(|| "gpt_d256,gpt_d512,lora_d256,lora_d512,attention_head,square".into());
    let groups: Vec<&str> = groups.split(',').collect();
    let backends: Vec<Backend> = match arg(&args, "--backends") {
        Some(list) => list
            .split(',')
            .map(|n| {
                *Backend::ALL
                    .iter()
                    .find(|b| b.name() == n)
                    .unwrap_or_else(|| panic!("backend {n:?} is not in this build"))
            })
            .collect(),
        None => Backend::ALL
            .iter()
            .copied()
            .filter(|&b| b != Backend::Naive)
            .collect(),
    };
    let mut shapes: Vec<Shape> = Vec::new();
    shapes.extend(training(256));
    shapes.extend(training(512));
    shapes.extend(lora(256));
    shapes.extend(lora(512));
    shapes.extend(attention());
    shapes.extend(squares());
    shapes.retain(|s| groups.contains(&s.group));

    println!(
        "threads {}, rounds {rounds}, ~{target_ms} ms per cell and round, {} time; load \
         before: {}",
        threads(),
        if cpu { "this thread's CPU" } else { "wall" },
        loadavg()
    );
    if cpu && threads() > 1 {
        println!("warning: --cpu counts the calling thread only; run with TUNELAB_THREADS=1");
    }
    for &b in &backends {
        println!("{}: {}", b.name(), b.describe());
    }
    print!("\n| group | product | shape |");
    for b in &backends {
        print!(" {} |", b.name());
    }
    println!(" best |");
    print!("|---|---|---|");
    for _ in &backends {
        print!("---|");
    }
    println!("---|");
    for shape in &shapes {
        let (a, b, c0) = shape.operands();
        let (av, bv) = (view(&a, shape.ta), view(&b, shape.tb));
        let beta = if shape.accumulate { 1.0 } else { 0.0 };
        let mut c: Array2<f32> = c0.clone();
        let run = |backend: Backend, reps: usize, c: &mut Array2<f32>| {
            let (t0, c0) = (Instant::now(), if cpu { thread_cpu_seconds() } else { 0.0 });
            for _ in 0..reps {
                gemm_with(backend, 1.0, av, bv, beta, &mut c.view_mut());
            }
            if cpu {
                (thread_cpu_seconds() - c0) / reps as f64
            } else {
                t0.elapsed().as_secs_f64() / reps as f64
            }
        };
        // Warm up every backend, then size the batch so one takes about `target_ms`.
        let mut one = f64::INFINITY;
        for &backend in &backends {
            run(backend, 1, &mut c);
            one = one.min(run(backend, 1, &mut c));
        }
        let reps = ((target_ms / 1e3 / one).ceil() as usize).clamp(1, 100_000);
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); backends.len()];
        for r in 0..rounds {
            for i in 0..backends.len() {
                let j = (i + r) % backends.len();
                c.assign(&c0);
                times[j].push(run(backends[j], reps, &mut c));
            }
        }
        let gflops: Vec<f64> = times
            .into_iter()
            .map(|t| shape.flops() as f64 / median(t) / 1e9)
            .collect();
        let best = (0..backends.len())
            .max_by(|&i, &j| gflops[i].total_cmp(&gflops[j]))
            .expect("a backend");
        print!("| {} | {} | {} |", shape.group, shape.name, shape.dims());
        for (i, g) in gflops.iter().enumerate() {
            if i == best {
                print!(" **{g:.1}** |");
            } else {
                print!(" {g:.1} |");
            }
        }
        println!(" {} |", backends[best].name());
    }
    println!("\nload after: {}", loadavg());
}
