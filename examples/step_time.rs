//! Times training steps of one method on the benchmark GPT (see `tunelab::lab::bench`), a
//! quick check outside criterion: `cargo run --release --example step_time -- 256 full 5`.
//! Prints each step's time, the matrix-product FLOPs the kernels counted, the activation memory
//! the tape held for backward, the peak of all memory allocated during the step (a counting
//! allocator: activations, gradients of intermediate values, temporaries), and the loss.
//! `--gradient-checkpointing` recomputes each block in backward.
//! Memory is set up as the CLI sets it ([`StepBench::new`] keeps freed memory in the process).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Instant;
use tunelab::kernels::{stats, FlushDenormals};
use tunelab::lab::bench::{methods, BenchShape, StepBench};

/// Counts live bytes and their peak; the counting is two relaxed atomics per allocation.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        LIVE.fetch_sub(layout.size(), Relaxed);
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let d: usize = args.first().map_or(256, |a| a.parse().expect("d_model"));
    let method = args.get(1).map_or("full", |s| s.as_str());
    let steps: usize = args.get(2).map_or(5, |a| a.parse().expect("steps"));
    let flush = !args.iter().any(|a| a == "--no-flush-denormals");
    let checkpointing = args.iter().any(|a| a == "--gradient-checkpointing");
    let (_, spec) = methods()
        .into_iter()
        .find(|(n, _)| *n == method)
        .expect("method: full, lora_r8_qv, houlsby_16, prefix_10, prompt_10, ia3, bitfit");
    let mut bench = StepBench::new(BenchShape::gpt(d), &spec)
        .expect("model")
        .with_gradient_checkpointing(checkpointing);
    let _mode = FlushDenormals::new(flush);
    for step in 0..steps {
        let live = LIVE.load(Relaxed);
        PEAK.store(live, Relaxed);
        let (t0, s0) = (Instant::now(), stats());
        let report = bench.step_measured().expect("step");
        let dt = t0.elapsed().as_secs_f64();
        let peak = PEAK.load(Relaxed) - live;
        let flops = (stats().gemm_flops - s0.gemm_flops) as f64;
        println!(
            "step {step}: {:.1} ms, {:.2} GFLOP in matmuls ({:.1} GFLOP/s overall), activations {:.1} MB, peak {:.1} MB above the model, loss {:.4}",
            dt * 1e3,
            flops / 1e9,
            flops / dt / 1e9,
            report.activation_bytes as f64 / 1e6,
            peak as f64 / 1e6,
            report.loss
        );
    }
}
