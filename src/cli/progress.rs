//! The progress display: indicatif bars on the terminal (hidden when stderr is not one) and
//! timestamped lines for the lab's experiments.

use super::fmt_metrics;
use indicatif::{ProgressBar, ProgressStyle};
use tunelab::train::pretrain::Progress;
use tunelab::train::trainer::{LogEntry, Metrics, TrainProgress};

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
fn println(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// A terminal progress bar for fine-tuning.
pub struct TrainBar {
    pub bar: ProgressBar,
}

impl TrainProgress for TrainBar {
    fn start(&mut self, total: usize, from: usize) {
        self.bar = styled(total as u64, "");
        self.bar.set_position(from as u64);
    }
    fn step(&mut self, e: &LogEntry) {
        self.bar.set_message(format!(
            "loss {:.4} lr {:.1e} grad-norm {:.2} {:.0} tok/s",
            e.loss.unwrap_or(f64::NAN),
            e.learning_rate.unwrap_or(0.0),
            e.grad_norm.unwrap_or(0.0),
            e.tokens_per_sec.unwrap_or(0.0)
        ));
        self.bar.set_position(e.step as u64);
    }
    fn eval(&mut self, step: usize, m: &Metrics) {
        println(
            &self.bar,
            format!("step {step}: validation {}", fmt_metrics(m)),
        );
    }
}

/// A terminal progress bar for long runs.
pub struct Bar {
    bar: ProgressBar,
    val: Option<f64>,
}

impl Bar {
    pub fn new() -> Self {
        Self {
            bar: ProgressBar::hidden(),
            val: None,
        }
    }
}

impl Progress for Bar {
    fn start(&mut self, total: usize) {
        self.bar = styled(total as u64, "");
    }
    fn step(&mut self, step: usize, loss: f64, lr: f64, tokens_per_sec: f64) {
        let val = self.val.map(|v| format!(" val {v:.3}")).unwrap_or_default();
        self.bar.set_message(format!(
            "loss {loss:.3}{val} lr {lr:.1e} {tokens_per_sec:.0} tok/s"
        ));
        self.bar.set_position(step as u64 + 1);
    }
    fn eval(&mut self, step: usize, val_loss: f64) {
        self.val = Some(val_loss);
        self.bar.println(format!(
            "step {:>5}: validation loss {val_loss:.4}",
            step + 1
        ));
    }
    fn message(&mut self, text: &str) {
        eprintln!("{text}");
    }
}

/// Progress lines of the interview and pitfall experiments, with the time since the start.
pub struct LabLines(pub std::time::Instant);

impl tunelab::lab::evidence::Progress for LabLines {
    fn line(&mut self, text: &str) {
        eprintln!("[{:>6.1} s] {text}", self.0.elapsed().as_secs_f64());
    }
}

/// One bar over every optimizer step of the whole comparison; a line per finished method.
pub struct CompareBar {
    bar: ProgressBar,
}

impl CompareBar {
    pub fn new(
        opts: &tunelab::lab::compare::CompareOptions,
        entries: &[tunelab::lab::compare::Entry],
    ) -> Self {
        let per_method = opts.steps + opts.low_data.map_or(0, |_| opts.low_data_steps);
        let methods = tunelab::lab::compare::selected(opts, entries).len();
        Self {
            bar: styled((methods * per_method) as u64, " steps"),
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl tunelab::lab::compare::CompareProgress for CompareBar {
    fn step(&mut self, label: &str, e: &LogEntry) {
        self.bar.inc(1);
        self.bar
            .set_message(format!("{label} loss {:.4}", e.loss.unwrap_or(f64::NAN)));
    }
    fn done(&mut self, r: &tunelab::lab::compare::Row) {
        let low = r
            .low_data_test_score
            .map(|v| format!(", low data {v:.3}"))
            .unwrap_or_default();
        let line = format!(
            "{:<15} test {:.3}{low} in {:.1} s",
            r.method, r.test_score, r.wall_seconds
        );
        println(&self.bar, line);
    }
}
