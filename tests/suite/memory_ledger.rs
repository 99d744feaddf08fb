//! The memory ledger the Trainer keeps (weights, gradients, optimizer state, activations) against
//! what the process really allocated, counted by a global allocator.
//!
//! The other tests of the suite run on parallel threads in the same process, so the allocator
//! counts per thread, only on a thread that is measuring, and the measured work runs with the
//! kernels on that thread alone.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use tunelab::data::tasks::Task;
use tunelab::lab::finetune::{load_base, prepare, task_data};
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::MethodSpec;
use tunelab::train::args::Strategy;
use tunelab::train::trainer::train;
use tunelab::train::TrainingArgs;

struct Counting;

thread_local! {
    /// Whether this thread is measuring; bytes it allocated minus freed since it started; the
    /// highest that difference reached.
    static MEASURING: Cell<bool> = const { Cell::new(false) };
    static CURRENT: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Adds `bytes` (negative for a free) to this thread's count if it is measuring.
fn count(bytes: isize) {
    // try_with: a thread's last frees may come after its thread-locals are gone.
    if MEASURING.try_with(Cell::get).unwrap_or(false) {
        let now = CURRENT.with(|c| {
            c.set(c.get() + bytes);
            c.get()
        });
        PEAK.with(|p| p.set(p.get().max(now)));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            count(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        unsafe { System.dealloc(p, layout) };
        count(-(layout.size() as isize));
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated at the peak of `f`, above what was live when it started, counted on this
/// thread with the kernels kept on it (no worker threads).
fn peak_during<T>(f: impl FnOnce() -> T) -> (T, usize) {
    CURRENT.with(|c| c.set(0));
    PEAK.with(|p| p.set(0));
    MEASURING.with(|m| m.set(true));
    let out = tunelab::kernels::threads::single_threaded(f);
    MEASURING.with(|m| m.set(false));
    (out, PEAK.with(Cell::get).max(0) as usize)
}

#[test]
fn memory_ledger_matches_a_counting_allocator() {
    let lora = MethodSpec::Lora(LoraConfig {
        r: 8,
        alpha: 16.0,
        targets: vec!["q".into(), "v".into()],
        ..Default::default()
    });
    let mut rows = Vec::new();
    for spec in [MethodSpec::Full { last_k: None }, lora] {
        // Weights: what loading the base allocates, against the ledger's weight bytes.
        let (mut base, loaded) = peak_during(|| load_base("gpt-tiny").unwrap());
        let (data, world) = task_data(Task::Sentiment, None, Some(64), 0).unwrap();
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
            train(
                &args,
                &tm,
                &mut base.store,
                method.as_ref(),
                &[],
                false,
                &mut (),
            )
            .unwrap()
        });
        let _ = std::fs::remove_dir_all(dir);
        let m = report.memory;
        let ledger = m.gradients + m.optimizer + m.activations;
        eprintln!(
            "{}: weights ledger {} / loading allocated {}; step ledger {} (grads {}, optimizer {}, activations {}) / training allocated at peak {} ({:.2}x)",
            spec.name(),
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
    let (full, lora) = (&rows[0], &rows[1]);
    assert!(lora.0.gradients * 10 < full.0.gradients);
    assert!(lora.0.optimizer * 10 < full.0.optimizer);
}
