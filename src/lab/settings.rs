//! compare's settings file, `configs/compare.toml`: per task and per compare entry, the learning
//! rate `tunelab sweep` chose on the validation split, with the whole grid's scores, the budget,
//! the seeds and the command that wrote it. `compare` reads the copy compiled into the binary;
//! `sweep --write-settings` records into it ([`Settings::record`] lives beside the sweep, so that
//! this file needs neither `compare` nor `sweep`).

use crate::data::tasks::Task;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// One compare entry's chosen learning rate on one task, with what chose it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    /// The chosen learning rate: the best mean validation score of `grid`.
    pub lr: f64,
    /// The validation metric (`accuracy`, `rouge_l`, ...).
    pub metric: String,
    pub steps: usize,
    pub batch_size: usize,
    pub max_eval_examples: usize,
    pub seeds: Vec<u64>,
    /// The command that wrote this entry.
    pub command: String,
    /// Every learning rate tried, with its validation scores.
    pub grid: Vec<GridScore>,
}

/// One learning rate of a setting's grid and its validation scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridScore {
    pub lr: f64,
    pub mean: f64,
    pub std: f64,
    /// One score per seed, in `seeds` order.
    pub scores: Vec<f64>,
}

/// The settings file: task name → compare entry label → its setting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub tasks: BTreeMap<String, BTreeMap<String, Setting>>,
}

/// The settings file in the repository, as compiled into this binary.
const COMPILED: &str = include_str!("../../configs/compare.toml");

/// Where the repository keeps the settings file, relative to its root.
pub const SETTINGS_PATH: &str = "configs/compare.toml";

const HEADER: &str = "\
# compare's learning rates, per task and per compare entry (its label), each chosen by
# `tunelab sweep` as the best mean VALIDATION score over the grid and seeds below (test is never
# evaluated by a sweep). Written by `tunelab sweep --write-settings`; rerun an entry's `command`
# to reproduce it. `tunelab compare` falls back to the registry's rate
# (src/peft/registry.rs, compare_examples) for an entry missing here, and says so.
";

impl Settings {
    /// Parses a settings file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        let tasks: BTreeMap<String, BTreeMap<String, Setting>> =
            toml::from_str(text).map_err(|e| Error::Invalid {
                op: "settings",
                detail: format!("{origin}: {e}"),
            })?;
        for name in tasks.keys() {
            Task::from_name(name).map_err(|_| Error::Invalid {
                op: "settings",
                detail: format!("{origin}: [{name}] is not a task"),
            })?;
        }
        Ok(Self { tasks })
    }

    /// The settings compiled into this binary (the repository's `configs/compare.toml` when it
    /// was built).
    pub fn compiled() -> Result<Self> {
        Self::parse(COMPILED, SETTINGS_PATH)
    }

    /// Reads a settings file; a missing file is an empty one (the first sweep creates it).
    pub fn read(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(Error::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// The setting of `label` on `task`, if a sweep wrote one.
    pub fn get(&self, task: Task, label: &str) -> Option<&Setting> {
        self.tasks.get(task.name())?.get(label)
    }

    /// The file's text: a header, then a table per task and entry, its grid as an array.
    pub fn to_toml(&self) -> String {
        let mut s = String::from(HEADER);
        for (task, entries) in &self.tasks {
            for (label, e) in entries {
                let key = format!("{}.{}", quote(task), quote(label));
                let _ = writeln!(s, "\n[{key}]");
                let _ = writeln!(s, "lr = {}", float(e.lr));
                let _ = writeln!(s, "metric = {}", quote(&e.metric));
                let _ = writeln!(s, "steps = {}", e.steps);
                let _ = writeln!(s, "batch_size = {}", e.batch_size);
                let _ = writeln!(s, "max_eval_examples = {}", e.max_eval_examples);
                let seeds: Vec<String> = e.seeds.iter().map(u64::to_string).collect();
                let _ = writeln!(s, "seeds = [{}]", seeds.join(", "));
                let _ = writeln!(s, "command = {}", quote(&e.command));
                let _ = writeln!(s, "grid = [");
                for g in &e.grid {
                    let scores: Vec<String> = g.scores.iter().map(|&v| float(v)).collect();
                    let _ = writeln!(
                        s,
                        "  {{ lr = {}, mean = {}, std = {}, scores = [{}] }},",
                        float(g.lr),
                        float(g.mean),
                        float(g.std),
                        scores.join(", ")
                    );
                }
                let _ = writeln!(s, "]");
            }
        }
        s
    }

    /// Writes the file (atomically).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        crate::io::atomic_write(path, self.to_toml().as_bytes())
    }
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML float that reads back to the same f64 (`nan` and `inf` spelled as TOML spells them).
fn float(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        format!("{v:?}")
    }
}
