//! Progress: how long work reports what it is doing, so the library never prints.
//!
//! One trait for every reporter: the Trainer's runs (fine-tuning and pre-training), `compare`'s
//! methods trained side by side, and the interview and pitfall experiments. The CLI draws bars
//! and prints lines from these calls; tests and library users stay silent with `()`. Every
//! method has a no-op default, so a reporter implements only the events it shows.
//!
//! The events, in the order a run sends them: [`Progress::start`] (a phase of known length),
//! [`Progress::step`] after each optimizer step with its [`LogEntry`], [`Progress::eval`] after
//! each evaluation, [`Progress::line`] for anything said in words, [`Progress::finish`] at the end.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Metric name → value (`loss` always, plus the task's metrics).
pub type Metrics = BTreeMap<String, f64>;

/// One optimizer step as reported, and one line of the Trainer's JSONL log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogEntry {
    pub step: usize,
    pub epoch: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eval: Option<Metrics>,
}

/// Receives progress events (the CLI draws a bar; `()` ignores them all).
pub trait Progress {
    /// A phase of `total` steps begins, `done` of them already done (a resumed run starts there).
    fn start(&mut self, _total: usize, _done: usize) {}
    /// An optimizer step of run `run` finished. The Trainer sends `""`; a reporter shared by
    /// several runs (compare's methods side by side) receives each run's name.
    fn step(&mut self, _run: &str, _entry: &LogEntry) {}
    /// An evaluation after optimizer step `step` (counted from 1) measured `metrics`.
    fn eval(&mut self, _step: usize, _metrics: &Metrics) {}
    /// A line of text: what an experiment is doing now, a finished result.
    fn line(&mut self, _text: &str) {}
    /// The phase started by [`Progress::start`] is over.
    fn finish(&mut self) {}
    /// Asked after every optimizer step: `true` stops training as Ctrl-C does (a checkpoint is
    /// saved).
    fn should_stop(&mut self, _step: usize) -> bool {
        false
    }
}

/// Silent progress.
impl Progress for () {}
