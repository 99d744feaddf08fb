//! The memory ledger the Trainer keeps (weights, gradients, optimizer state, activations) against
//! what the process really allocated, counted by a global allocator.
//!
//! The counter is global and the suite's tests run on parallel threads, so the test runs itself
//! again in a child process of the suite binary with only this test selected, where nothing
//! else allocates; the allocator counts only there.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use tunelab::data::tasks::Task;
use tunelab::lab::finetune::{load_base, prepare, task_data};
use tunelab::nn::BaseDtype;
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::MethodSpec;
use tunelab::train::args::Strategy;
use tunelab::train::trainer::{train, Training};
use tunelab::train::TrainingArgs;

struct Counting;

/// Set only in the child process: the rest of the suite allocates uncounted.
static COUNTING: AtomicBool = AtomicBool::new(false);
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && COUNTING.load(Relaxed) {
            let now = CURRENT.fetch_add(layout.size(), SeqCst) + layout.size();
            PEAK.fetch_max(now, SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        if COUNTING.load(Relaxed) {
            // Blocks allocated before counting began can be freed during it: saturate at 0.
            let _ = CURRENT.fetch_update(SeqCst, SeqCst, |c| Some(c.saturating_sub(layout.size())));
        }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live when it started.
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = CURRENT.load(SeqCst);
    PEAK.store(start, SeqCst);
    let out = f();
    (out, PEAK.load(SeqCst) - start)
}

const CHILD: &str = "TUNELAB_MEMORY_LEDGER_CHILD";

#[test]
fn memory_ledger_matches_a_counting_allocator() {
    if std::env::var_os(CHILD).is_some() {
        COUNTING.store(true, SeqCst);
        return ledger_against_allocator();
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "memory_ledger::memory_ledger_matches_a_counting_allocator",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "the child run failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test:\n{stdout}"
    );
}

/// The assertions, run in the child process where only this test allocates.
fn ledger_against_allocator() {
    let lora = MethodSpec::Lora(LoraConfig {
        r: 8,
        alpha: 16.0,
        targets: vec!["q".into(), "v".into()],
        ..Default::default()
    });
    let mut rows = Vec::new();
    let nf4 = BaseDtype::Nf4 { double_quant: true };
    for (spec, dtype) in [
        (MethodSpec::Full { last_k: None }, BaseDtype::F32),
        (lora.clone(), BaseDtype::F32),
        (lora, nf4),
    ] {
        // Weights: what loading the base allocates, against the ledger's weight bytes.
        let (mut base, mut loaded) = peak_during(|| load_base("gpt-tiny").unwrap());
        if dtype != BaseDtype::F32 {
            // What stays allocated once the block Linears are quantised (the f32 copies freed).
            let live = CURRENT.load(SeqCst);
            base.quantize(dtype).unwrap();
            let freed = live - CURRENT.load(SeqCst);
            let q = base.quant.clone().unwrap();
            eprintln!(
                "{}: quantising freed {freed} bytes (the f32 weights {} minus their {} stored bytes: {})",
                dtype.name(),
                q.bytes_f32,
                q.bytes,
                q.bytes_f32 - q.bytes
            );
            assert!(
                freed + 64 * 1024 >= q.bytes_f32 - q.bytes,
                "quantising freed {freed} bytes, less than the f32 weights it replaced"
            );
            loaded -= freed.min(loaded);
        }
        let (data, world) = task_data(Task::Sentiment, None, Some(64)).unwrap();
        let (tm, method) = prepare(&mut base, Task::Sentiment, data, world, &spec, 0).unwrap();
        let dir = crate::common::temp_dir(&format!("ledger-{}", spec.name()));
        let args = TrainingArgs {
            output_dir: dir.clone(),
            max_steps: Some(4),
            batch_size: 16,
            eval_strategy: Strategy::No,
            save_strategy: Strategy::No,
            ..TrainingArgs::default()
        };
        let (report, step_peak) = peak_during(|| {
            train(Training::new(&args, &tm, &mut base.store).hooks(method.as_ref())).unwrap()
        });
        let _ = std::fs::remove_dir_all(dir);
        let m = report.memory;
        let ledger = m.gradients + m.optimizer + m.activations;
        eprintln!(
            "{} {}: weights ledger {} / loading allocated {}; step ledger {} (grads {}, optimizer {}, activations {}) / training allocated at peak {} ({:.2}x)",
            spec.name(),
            dtype.name(),
            m.weights,
            loaded,
            ledger,
            m.gradients,
            m.optimizer,
            m.activations,
            step_peak,
            step_peak as f64 / ledger as f64
        );
        // Loading holds the weights (plus the tokenizer and parse buffers).
        assert!(
            loaded >= m.weights,
            "{}: loading allocated less than the weights",
            spec.name()
        );
        // The ledger never claims more than was allocated, and accounts for most of it: what it
        // leaves out are temporaries (gradients of intermediate values during backward, batch
        // encoding, matmul packing buffers).
        assert!(
            ledger <= step_peak,
            "{}: ledger {ledger} exceeds the allocated peak {step_peak}",
            spec.name()
        );
        assert!(
            ledger as f64 >= 0.5 * step_peak as f64,
            "{}: ledger {ledger} explains less than half of the allocated peak {step_peak}",
            spec.name()
        );
        rows.push((m, step_peak));
    }
    // What the ledger says LoRA saves is real: less allocated in training than full fine-tuning.
    let (full, lora, qlora) = (&rows[0], &rows[1], &rows[2]);
    assert!(lora.0.gradients * 10 < full.0.gradients);
    assert!(lora.0.optimizer * 10 < full.0.optimizer);
    // QLoRA: the base's weights at about a quarter of bf16's (4.13 of 16 bits), and no
    // full-precision copy of them at any time: training allocates no more at its peak than LoRA
    // on the f32 base, give or take the dequantised tiles (64 rows of a weight at a time).
    assert!(qlora.0.weights * 3 < lora.0.weights, "{:?}", qlora.0);
    let tiles = 2 * 64 * 512 * 4;
    assert!(
        qlora.1 <= lora.1 + tiles,
        "QLoRA's training peak {} exceeds LoRA's {} by more than two tiles",
        qlora.1,
        lora.1
    );
}
