//! The Trainer step for step against Hugging Face's, llm.c style: `tools/trainer_golden.py` trained
//! the tiny random GPT-2 of `tests/fixtures/hf` with transformers' `Trainer` for 8 steps and wrote
//! the micro-batches it fed and the losses it logged (`tests/fixtures/trainer/`, the script's
//! docstring says exactly what is compared). tunelab's Trainer trains the same model on the same
//! micro-batches with the same arguments, and every step's loss must be within 1e-4 of Hugging
//! Face's, for full fine-tuning at batch 9, full fine-tuning at batch 3 × 3 accumulation steps,
//! and LoRA continued from a PEFT adapter at 3 × 3. The gradient norms are compared too (before
//! clipping, which is active in these runs: the norms are above 1).
//!
//! Each comparison prints its max difference (`cargo test --test suite trainer_golden:: --
//! --nocapture`).

use crate::common::temp_dir;
use ndarray::Array2;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use tunelab::autodiff::{ParamStore, Tape, Var, IGNORE_INDEX};
use tunelab::io::hf;
use tunelab::loss::causal_lm_loss;
use tunelab::nn::{Hooks, Input, Transformer};
use tunelab::peft::store::load_adapter;
use tunelab::train::args::{ScheduleKind, Strategy};
use tunelab::train::trainer::{self, Metrics, MicroBatch, Split, TrainReport, TrainTask, Training};
use tunelab::train::TrainingArgs;
use tunelab::Result;

/// Agreement asked of every step's loss (and gradient norm) with Hugging Face's.
const TOL: f64 = 1e-4;

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

#[derive(Deserialize)]
struct Batch {
    input_ids: Vec<Vec<usize>>,
    attention_mask: Vec<Vec<u8>>,
    labels: Vec<Vec<i64>>,
}

#[derive(Deserialize)]
struct FixtureArgs {
    learning_rate: f64,
    weight_decay: f64,
    max_grad_norm: f64,
    warmup_steps: usize,
    batch_size: usize,
    gradient_accumulation_steps: usize,
    max_steps: usize,
}

#[derive(Deserialize)]
struct Golden {
    versions: serde_json::Value,
    args: FixtureArgs,
    micro_batches: Vec<Batch>,
    loss: Vec<f64>,
    grad_norm: Vec<f64>,
}

fn golden(name: &str) -> Golden {
    let path = fixture(&format!("trainer/{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn array<T: Clone, U>(rows: &[Vec<T>], f: impl Fn(&T) -> U) -> Array2<U> {
    let (b, t) = (rows.len(), rows[0].len());
    Array2::from_shape_fn((b, t), |(i, j)| f(&rows[i][j]))
}

/// Causal language modelling on exactly the fixture's micro-batches, in the order the Trainer
/// asks for them (micro-batch `micro` of the run is the fixture's `micro`-th).
struct Fixed<'a> {
    model: &'a Transformer,
    batches: &'a [Batch],
    per_step: usize,
}

impl TrainTask<f32> for Fixed<'_> {
    fn train_len(&self) -> usize {
        self.batches.iter().map(|b| b.input_ids.len()).sum()
    }

    fn loss(
        &self,
        tape: &mut Tape<'_, f32>,
        hooks: &dyn Hooks<f32>,
        batch: &MicroBatch<'_>,
    ) -> Result<(Var, usize)> {
        assert_eq!(batch.micro / self.per_step, batch.step);
        let b = &self.batches[batch.micro];
        let ids = array(&b.input_ids, |&x| x);
        let mask = array(&b.attention_mask, |&m| m == 1);
        let labels = array(&b.labels, |&l| l);
        let input = Input::new(ids.view()).with_mask(mask.view());
        let h = self.model.forward(tape, hooks, &input)?;
        let logits = self.model.lm_logits(tape, hooks, h)?;
        let loss = causal_lm_loss(tape, logits, labels.view())?;
        let terms = labels
            .rows()
            .into_iter()
            .map(|r| r.iter().skip(1).filter(|&&l| l != IGNORE_INDEX).count())
            .sum();
        Ok((loss, terms))
    }

    fn evaluate(
        &self,
        _store: &ParamStore<f32>,
        _hooks: &dyn Hooks<f32>,
        _split: Split,
        _limit: usize,
        _batch_size: usize,
    ) -> Result<Metrics> {
        Ok(Metrics::new())
    }
}

/// Trains gpt2-tiny (with the PEFT adapter `adapter`, if given) through tunelab's Trainer on the
/// fixture's micro-batches under its arguments; returns the report and the trained store.
fn train_like(g: &Golden, adapter: Option<&str>) -> (TrainReport, ParamStore<f32>) {
    let mut m = hf::load::<f32>(&fixture("hf/gpt2-tiny")).unwrap();
    let method = adapter.map(|a| {
        load_adapter(&fixture(a), &m.model, &mut m.store, 0)
            .unwrap()
            .1
    });
    let a = &g.args;
    let args = TrainingArgs {
        output_dir: temp_dir("trainer-golden"),
        max_steps: Some(a.max_steps),
        batch_size: a.batch_size,
        gradient_accumulation_steps: a.gradient_accumulation_steps,
        learning_rate: a.learning_rate,
        schedule: ScheduleKind::Linear,
        warmup_steps: a.warmup_steps,
        weight_decay: a.weight_decay,
        max_grad_norm: a.max_grad_norm,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        logging_steps: 1,
        ..TrainingArgs::default()
    };
    assert_eq!(
        g.micro_batches.len(),
        a.max_steps * a.gradient_accumulation_steps
    );
    let task = Fixed {
        model: &m.model,
        batches: &g.micro_batches,
        per_step: a.gradient_accumulation_steps,
    };
    let mut training = Training::new(&args, &task, &mut m.store)
        .log_file(false)
        // PyTorch keeps subnormal floats unless told otherwise; so does this run.
        .flush_denormals(false);
    if let Some(method) = method.as_deref() {
        training = training.hooks(method);
    }
    let report = trainer::train(training).unwrap();
    (report, m.store)
}

/// Max |ours − theirs| over the steps, printed; fails above [`TOL`].
fn assert_matches(what: &str, ours: &[f64], theirs: &[f64], g: &Golden) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "{what}: step counts differ");
    assert!(ours.len() >= 8, "{what}: at least 8 steps are compared");
    let d = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    let verdict = if d <= TOL { "OK    " } else { "NOT OK" };
    eprintln!(
        "{verdict} {what}: max |tunelab - Hugging Face| {d:.3e} over {} steps (transformers {}, torch {}, peft {})",
        ours.len(),
        g.versions["transformers"],
        g.versions["torch"],
        g.versions["peft"]
    );
    assert!(
        d <= TOL,
        "{what}: tunelab {ours:?}\nHugging Face {theirs:?}"
    );
    d
}

fn grad_norms(r: &TrainReport) -> Vec<f64> {
    r.state.log.iter().map(|e| e.grad_norm.unwrap()).collect()
}

/// Checks one fixture's losses and gradient norms; returns tunelab's report and trained store.
fn check(name: &str, adapter: Option<&str>) -> (TrainReport, ParamStore<f32>) {
    let g = golden(name);
    let (report, store) = train_like(&g, adapter);
    assert_matches(&format!("{name} loss"), &report.state.losses, &g.loss, &g);
    assert_matches(
        &format!("{name} grad norm"),
        &grad_norms(&report),
        &g.grad_norm,
        &g,
    );
    // The runs learn something: the trajectory is not the first step's loss repeated.
    let spread = g.loss.iter().cloned().fold(f64::MIN, f64::max)
        - g.loss.iter().cloned().fold(f64::MAX, f64::min);
    assert!(spread > 1e-2, "{name}: losses barely move ({spread:.2e})");
    (report, store)
}

#[test]
fn full_fine_tuning_at_batch_9_matches_the_hugging_face_trainer() {
    check("full_b9", None);
}

#[test]
fn accumulating_3_batches_of_3_matches_hugging_face_and_tunelabs_batch_of_9() {
    let (acc, acc_store) = check("full_b3x3", None);
    let (one, one_store) = train_like(&golden("full_b9"), None);
    // The same 9 sequences per step, split into 3 micro-batches or not: the same losses and the
    // same weights, up to float rounding (the sums are taken in another order, and Adam divides
    // small gradients by their own size, which makes their rounding count: 1e-4 is a hundredth of
    // one step at this learning rate of 1e-2).
    let d = acc
        .state
        .losses
        .iter()
        .zip(&one.state.losses)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    // The attention's key bias (the middle third of c_attn.bias) has a gradient of exactly zero
    // in exact arithmetic: adding q·b_k to every score of a row leaves the softmax unchanged. What
    // it receives is rounding noise, which Adam divides by its own size into steps of the
    // learning rate, so it differs between any two summation orders; it is left out.
    let c = acc_store.value(acc_store.id("wte.weight").unwrap()).shape()[1];
    let w = acc_store
        .iter()
        .zip(one_store.iter())
        .flat_map(|((_, p), (_, q))| {
            let key_bias = p.name.ends_with("attn.c_attn.bias");
            p.value
                .iter()
                .zip(q.value.iter())
                .enumerate()
                .filter(move |(i, _)| !(key_bias && (c..2 * c).contains(i)))
                .map(|(_, pair)| pair)
        })
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!(
        "tunelab 3 x 3 against batch 9: max loss difference {d:.3e}, max weight difference {w:.3e}"
    );
    assert!(d < 1e-5, "losses differ by {d}");
    assert!(w < 1e-4, "weights differ by {w}");
}

#[test]
fn lora_continued_from_a_peft_adapter_matches_the_hugging_face_trainer() {
    check("lora_b3x3", Some("hf/gpt2-tiny-lora"));
}
