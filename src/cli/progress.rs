//! The progress display: indicatif bars on the terminal (hidden when stderr is not one) and
//! timestamped lines for the lab's experiments, all through the library's one
//! [`Progress`] trait.

use super::fmt_metrics;
use indicatif::{ProgressBar, ProgressStyle};
use tunelab::lab::compare::{total_steps, CompareOptions, Entry};
use tunelab::train::progress::{LogEntry, Metrics, Progress};

fn styled(total: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{bar:30}} {{pos}}/{{len}}{unit} [{{elapsed_precise}} < {{eta_precise}}] {{msg}}"
        ))
        .expect("valid template"),
    );
    bar
}

/// Prints above the bar, or to stderr when the bar is hidden.
fn println(bar: &ProgressBar, line: &str) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A bar over the optimizer steps of one training run (fine-tuning or pre-training), with the
/// last step's loss, learning rate, gradient norm and speed, and a line per evaluation.
pub struct TrainBar {
    bar: ProgressBar,
    /// The last validation loss, shown beside the training loss.
    val: Option<f64>,
}

impl TrainBar {
    pub fn new() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            val: None,
        }
    }
}

impl Progress for TrainBar {
    fn start(&mut self, total: usize, done: usize) {
        self.bar = styled(total as u64, "");
        self.bar.set_position(done as u64);
    }
    fn step(&mut self, _run: &str, e: &LogEntry) {
        let val = self.val.map(|v| format!(" val {v:.4}")).unwrap_or_default();
        self.bar.set_message(format!(
            "loss {:.4}{val} lr {:.1e} grad-norm {:.2} {:.0} tok/s",
            e.loss.unwrap_or(f64::NAN),
            e.learning_rate.unwrap_or(0.0),
            e.grad_norm.unwrap_or(0.0),
            e.tokens_per_sec.unwrap_or(0.0)
        ));
        self.bar.set_position(e.step as u64);
    }
    fn eval(&mut self, step: usize, m: &Metrics) {
        self.val = m.get("loss").copied();
        println(
            &self.bar,
            &format!("step {step}: validation {}", fmt_metrics(m)),
        );
    }
    fn line(&mut self, text: &str) {
        println(&self.bar, text);
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Progress lines of the interview and pitfall experiments, with the time since the start.
pub struct LabLines(pub std::time::Instant);

impl Progress for LabLines {
    fn line(&mut self, text: &str) {
        eprintln!("[{:>6.1} s] {text}", self.0.elapsed().as_secs_f64());
    }
}

/// One bar over every optimizer step of the whole comparison; a line per finished run.
pub struct CompareBar {
    bar: ProgressBar,
}

impl CompareBar {
    pub fn new(opts: &CompareOptions, entries: &[Entry]) -> Self {
        Self::steps(total_steps(opts, entries))
    }

    /// A bar over `total` optimizer steps of any line-up (`align compare`'s).
    pub fn steps(total: usize) -> Self {
        Self {
            bar: styled(total as u64, " steps"),
        }
    }
}

impl Progress for CompareBar {
    fn step(&mut self, label: &str, e: &LogEntry) {
        self.bar.inc(1);
        self.bar
            .set_message(format!("{label} loss {:.4}", e.loss.unwrap_or(f64::NAN)));
    }
    /// A (method, seed) run is complete ([`tunelab::lab::compare::SeedRun::progress_line`]).
    fn line(&mut self, line: &str) {
        println(&self.bar, line);
    }
    fn finish(&mut self) {
        self.bar.finish_and_clear();
    }
}
