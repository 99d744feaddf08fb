//! Pitfall: no checkpoints, so a crash loses the run. A LoRA fine-tune is killed midway, right
//! after a periodic checkpoint, and then either resumed from that checkpoint or restarted from
//! nothing (what a run without checkpoints must do). The Trainer is deterministic from the seed
//! (batch order per epoch, dropout per step), so the resumed run must compute exactly the
//! losses and weights of an uninterrupted one, and the restart pays again for every step done.
//!
//! Judged over seeds, the weights and the whole loss history are bit-identical: the losses
//! logged before the kill are read back from `trainer_state.json`, which holds every float
//! exactly (serde_json writes the shortest representation that parses back to the same bits,
//! and parses with its `float_roundtrip` feature; without it, one loss in a few runs came back
//! different in its last bit).

use crate::data::tasks::Task;
use crate::error::Result;
use crate::lab::evidence::{table, Claim, Evidence, Fmt, Mode};
use crate::lab::runs::{prepare_run, temp_dir, Recorder, Run};
use crate::peft::lora::LoraConfig;
use crate::peft::MethodSpec;
use crate::train::args::Strategy;
use crate::train::progress::{LogEntry, Metrics, Progress};
use crate::train::trainer::{self, Split, TrainTask, Training};
use crate::ParamStore;
use serde::Serialize;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Serialize)]
pub struct CheckpointPitfall {
    pub total_steps: usize,
    pub save_steps: usize,
    pub killed_at: usize,
    /// The uninterrupted run's training loss per step.
    pub losses: Vec<f64>,
    /// The interrupted-then-resumed run's losses, both parts joined.
    pub resumed_losses: Vec<f64>,
    /// The step the resumed run continued from.
    pub resumed_from: usize,
    /// The largest difference of any trained weight, resumed versus uninterrupted.
    pub max_weight_diff: f64,
    /// The largest difference of a step's loss, resumed versus uninterrupted: over every step
    /// (those before the kill are read back from the checkpoint's `trainer_state.json`), and
    /// over the steps trained after the resume only.
    pub max_loss_diff: f64,
    pub max_loss_diff_after_resume: f64,
    pub accuracy_uninterrupted: f64,
    pub accuracy_resumed: f64,
    pub accuracy_restarted: f64,
    /// Optimizer steps computed in all, for each way of reaching the end.
    pub steps_uninterrupted: usize,
    pub steps_with_resume: usize,
    pub steps_with_restart: usize,
    pub seconds_uninterrupted: f64,
    pub seconds_with_resume: f64,
    pub seconds_with_restart: f64,
}

/// Records like [`Recorder`] and asks the Trainer to stop (as Ctrl-C does) at `stop_at`.
struct KillAt {
    stop_at: Option<usize>,
    record: Recorder,
}

impl Progress for KillAt {
    fn step(&mut self, run: &str, e: &LogEntry) {
        self.record.step(run, e);
    }
    fn should_stop(&mut self, step: usize) -> bool {
        Some(step) == self.stop_at
    }
}

struct Leg {
    store: ParamStore<f32>,
    losses: Vec<f64>,
    from: usize,
    accuracy: f64,
    seconds: f64,
}

/// Loads the base afresh (a new process), trains in `dir`, optionally resuming, optionally killed.
fn leg(run: &Run, dir: &Path, resume: bool, stop_at: Option<usize>, val: usize) -> Result<Leg> {
    let started = Instant::now();
    let (mut base, tm, method) = prepare_run(run)?;
    let mut args = run.args.clone();
    args.output_dir = dir.to_path_buf();
    let mut p = KillAt {
        stop_at,
        record: Recorder::default(),
    };
    let report = trainer::train(
        Training::new(&args, &tm, &mut base.store)
            .hooks(method.as_ref())
            .resume(resume)
            .progress(&mut p),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let m: Metrics = TrainTask::<f32>::evaluate(
        &tm,
        &base.store,
        method.as_ref(),
        Split::Validation,
        val,
        32,
    )?;
    Ok(Leg {
        store: base.store,
        from: report.state.step - p.record.losses.len(),
        losses: report.state.losses,
        accuracy: m["accuracy"],
        seconds,
    })
}

fn max_trainable_diff(a: &ParamStore<f32>, b: &ParamStore<f32>) -> f64 {
    a.iter()
        .filter(|(_, p)| p.trainable)
        .map(|(id, p)| {
            (&p.value - b.value(id))
                .iter()
                .fold(0.0f64, |m, &d| m.max((d as f64).abs()))
        })
        .fold(0.0, f64::max)
}

pub fn run(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<CheckpointPitfall> {
    let total = mode.pick(8, 60);
    let save_steps = mode.pick(2, 10);
    let killed_at = mode.pick(4, 30);
    let val = mode.pick(32, 300);
    let mut run = Run::new(
        Task::Sentiment,
        MethodSpec::Lora(LoraConfig::default()),
        3e-3,
        total,
        8,
    )
    .seed(seed);
    run.args.save_strategy = Strategy::Steps;
    run.args.save_steps = save_steps;
    run.args.schedule = crate::train::args::ScheduleKind::Linear;
    run.args.warmup_steps = total / 10;

    progress.line(&format!("uninterrupted LoRA run of {total} steps"));
    let dir_a = temp_dir("ckpt-a");
    let a = leg(&run, &dir_a, false, None, val)?;
    progress.line(&format!("run killed at step {killed_at}, then resumed"));
    let dir_b = temp_dir("ckpt-b");
    let first = leg(&run, &dir_b, false, Some(killed_at), val)?;
    let b = leg(&run, &dir_b, true, None, val)?;
    progress.line("no checkpoint: restart from nothing");
    let dir_c = temp_dir("ckpt-c");
    let c = leg(&run, &dir_c, true, None, val)?;
    for d in [dir_a, dir_b, dir_c] {
        let _ = std::fs::remove_dir_all(d);
    }
    let loss_diff = |from: usize| {
        a.losses
            .iter()
            .zip(&b.losses)
            .skip(from)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    };
    let (max_loss_diff, max_loss_diff_after_resume) = (loss_diff(0), loss_diff(b.from));
    Ok(CheckpointPitfall {
        max_loss_diff,
        max_loss_diff_after_resume,
        total_steps: total,
        save_steps,
        killed_at,
        max_weight_diff: max_trainable_diff(&a.store, &b.store),
        losses: a.losses,
        resumed_losses: b.losses,
        resumed_from: b.from,
        accuracy_uninterrupted: a.accuracy,
        accuracy_resumed: b.accuracy,
        accuracy_restarted: c.accuracy,
        steps_uninterrupted: total,
        steps_with_resume: first.losses.len() + (total - b.from),
        steps_with_restart: first.losses.len() + (total - c.from),
        seconds_uninterrupted: a.seconds,
        seconds_with_resume: first.seconds + b.seconds,
        seconds_with_restart: first.seconds + c.seconds,
    })
}

impl Evidence for CheckpointPitfall {
    fn render(&self) -> String {
        let mut s = format!(
            "LoRA on sentiment, {} steps, a checkpoint every {} steps, killed at step {}\n\n",
            self.total_steps, self.save_steps, self.killed_at
        );
        let rows = vec![
            vec![
                "uninterrupted".to_string(),
                self.steps_uninterrupted.to_string(),
                format!("{:.1}", self.seconds_uninterrupted),
                format!("{:.3}", self.accuracy_uninterrupted),
            ],
            vec![
                format!("killed, resumed from step {}", self.resumed_from),
                self.steps_with_resume.to_string(),
                format!("{:.1}", self.seconds_with_resume),
                format!("{:.3}", self.accuracy_resumed),
            ],
            vec![
                "killed, restarted from nothing".to_string(),
                self.steps_with_restart.to_string(),
                format!("{:.1}", self.seconds_with_restart),
                format!("{:.3}", self.accuracy_restarted),
            ],
        ];
        s.push_str(&table(
            &["run", "steps computed", "seconds", "val acc"],
            &rows,
        ));
        s.push_str(&format!(
            "\nresumed run: {} of {} step losses identical to the uninterrupted run; largest trained-weight difference {:.1e}\n",
            self.losses
                .iter()
                .zip(&self.resumed_losses)
                .filter(|(a, b)| a == b)
                .count(),
            self.losses.len(),
            self.max_weight_diff
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        vec![
            Claim::new(
                "the resumed run continues from the checkpoint saved at the kill",
                self.resumed_from == self.killed_at,
            ),
            Claim::new(
                "the resumed run ends with exactly the uninterrupted run's weights",
                self.max_weight_diff == 0.0,
            )
            .measured(
                "largest trained-weight difference",
                self.max_weight_diff,
                Fmt::Sci(1),
            ),
            Claim::new(
                "the steps trained after the resume compute exactly the uninterrupted run's losses",
                self.max_loss_diff_after_resume == 0.0,
            )
            .measured(
                "largest loss difference after the resume",
                self.max_loss_diff_after_resume,
                Fmt::Sci(1),
            ),
            Claim::new(
                "the whole loss history, the part before the kill read back from the checkpoint, is bit-identical",
                self.losses == self.resumed_losses,
            )
            .measured(
                "largest loss difference, every step",
                self.max_loss_diff,
                Fmt::Sci(1),
            ),
            Claim::new(
                "without a checkpoint the steps done before the kill are computed again",
                self.steps_with_restart == self.steps_with_resume + self.killed_at,
            )
            .measured(
                "steps computed again",
                self.steps_with_restart as f64 - self.steps_with_resume as f64,
                Fmt::Fixed(0),
            ),
        ]
    }
}
