//! Hostile input: every option out of range is refused naming its flag before any work, TOML
//! settings are checked by key, data errors name the file and the 1-based line, every split is
//! encoded (and refused) before the first step, output targets are checked before training, and
//! a non-finite result is an error rather than a printed NaN.

use crate::common::{empty_dir, temp_dir};
use std::path::Path;
use std::process::Command;
use tunelab::data::loaders::DataFiles;
use tunelab::data::tasks::{Task, TaskShape};
use tunelab::data::tokenizer::{Preset, Tokenizer};
use tunelab::data::world::World;
use tunelab::error::Error;
use tunelab::lab::finetune::task_data;
use tunelab::nn::{Config, Transformer};
use tunelab::train::task::{check_fits, TaskData, TaskModel};
use tunelab::train::trainer::{train, Metrics, MicroBatch, Split, TrainTask, Training};
use tunelab::train::TrainingArgs;
use tunelab::{ParamStore, Var};

/// Runs the binary in `dir` with `args`: exit code and stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The command fails with exit code 1 (not a panic's 101, not success) and an error that
/// contains every one of `words`.
fn refused(dir: &Path, args: &[&str], words: &[&str]) {
    let (code, err) = run(dir, args);
    assert_eq!(code, Some(1), "{args:?}: exit {code:?}, stderr:\n{err}");
    for w in words {
        assert!(err.contains(w), "{args:?}: {w:?} not in:\n{err}");
    }
    assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
}

#[test]
fn numeric_options_out_of_range_are_refused_naming_the_flag_before_any_work() {
    let dir = empty_dir("hostile-flags");
    let out = dir.join("out");
    let out = out.to_str().unwrap();
    let ft = |extra: &[&'static str]| {
        let mut v = vec!["finetune", "--output-dir", out];
        v.extend_from_slice(extra);
        v
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            ft(&["--batch-size", "9223372036854775808", "--grad-accum", "2"]),
            "--batch-size",
        ),
        (ft(&["--batch-size", "0"]), "--batch-size"),
        (ft(&["--epochs", "inf"]), "--epochs"),
        (ft(&["--epochs", "nan"]), "--epochs"),
        (ft(&["--epochs", "0"]), "--epochs"),
        (
            ft(&["--grad-accum", "18446744073709551615"]),
            "--grad-accum",
        ),
        (ft(&["--max-steps", "18446744073709551615"]), "--max-steps"),
        (ft(&["--max-grad-norm", "nan"]), "--max-grad-norm"),
        (ft(&["--lr", "0"]), "--lr"),
        (ft(&["--lr=-1"]), "--lr"),
        (ft(&["--lr", "inf"]), "--lr"),
        (ft(&["--weight-decay", "nan"]), "--weight-decay"),
        (
            ft(&["--warmup-steps", "18446744073709551615"]),
            "--warmup-steps",
        ),
        (ft(&["--eval-steps", "0"]), "--eval-steps"),
        (ft(&["--save-steps", "0"]), "--save-steps"),
        (
            ft(&["--early-stopping-patience", "0"]),
            "--early-stopping-patience",
        ),
        (ft(&["--threads", "0"]), "--threads"),
        (ft(&["--train-limit", "0"]), "--train-limit"),
        (
            ft(&["--metric-for-best-model", "nosuch"]),
            "--metric-for-best-model",
        ),
        // A budget that would not end: epochs times the steps of one epoch, checked once the
        // training set's size is known, before the first step.
        (ft(&["--epochs", "1e5"]), "--epochs"),
        (
            vec!["pretrain", "--preset", "gpt-tiny", "--batch-size", "0"],
            "--batch-size",
        ),
        (
            vec!["pretrain", "--preset", "bert-tiny", "--mask-prob", "1.5"],
            "--mask-prob",
        ),
        (
            vec!["pretrain", "--preset", "gpt-tiny", "--layers", "0"],
            "--layers",
        ),
        (
            vec!["pretrain", "--preset", "gpt-tiny", "--lr", "0"],
            "--lr",
        ),
        (
            vec!["pretrain", "--preset", "gpt-tiny", "--steps", "0"],
            "--steps",
        ),
        (
            vec!["pretrain", "--preset", "gpt-tiny", "--seq-len", "1"],
            "--seq-len",
        ),
        (
            vec!["pretrain", "--preset", "gpt-tiny", "--d-model", "130"],
            "--d-model",
        ),
        (
            vec!["generate", "--prompt", "hi", "--temperature", "nan"],
            "--temperature",
        ),
        (
            vec!["generate", "--prompt", "hi", "--temperature=-1"],
            "--temperature",
        ),
        (
            vec!["generate", "--prompt", "hi", "--top-k", "0"],
            "--top-k",
        ),
        (
            vec!["generate", "--prompt", "hi", "--max-new-tokens", "0"],
            "--max-new-tokens",
        ),
        (vec!["compare", "--steps", "0"], "--steps"),
        (vec!["compare", "--seeds", "0"], "--seeds"),
        (vec!["compare", "--batch-size", "0"], "--batch-size"),
        (vec!["sweep", "--lr", "nan"], "--lr"),
        (vec!["sweep", "--steps", "0"], "--steps"),
        (vec!["estimate", "7B", "--batch", "0"], "--batch"),
    ];
    for (args, flag) in &cases {
        refused(&dir, args, &[flag]);
    }
    // Nothing was trained or written: the refusals came before any work.
    assert!(!dir.join("out").join("log.jsonl").exists());
    assert!(!dir.join("models").exists(), "pretrain wrote a model");
}

#[test]
fn toml_settings_are_refused_by_file_line_and_key() {
    let err = |text: &str| TrainingArgs::from_toml(text, "run.toml").unwrap_err();
    // An unknown key, by name.
    let e = err("max_steps = 1\nlearning_rat = 0.1\n");
    assert!(matches!(e, Error::Data { line: 2, .. }), "{e}");
    assert!(e.to_string().contains("learning_rat"), "{e}");
    // A metric no task reports, under its old name too, listing the valid names.
    for key in ["metric_for_best", "metric_for_best_model"] {
        let e = err(&format!("max_steps = 1\n{key} = \"nosuch\"\n"));
        let msg = e.to_string();
        assert!(matches!(e, Error::Data { line: 2, .. }), "{msg}");
        assert!(
            msg.starts_with("run.toml:2: metric_for_best_model \"nosuch\"")
                && msg.contains("accuracy")
                && msg.contains("rouge_l"),
            "{msg}"
        );
    }
    // Non-finite and out-of-range values name their key and line.
    for (text, key, line) in [
        ("epochs = nan\n", "epochs", 1),
        ("seed = 1\nlearning_rate = inf\n", "learning_rate", 2),
        ("max_len = 0\n", "max_len", 1),
        ("eval_batch_size = 0\n", "eval_batch_size", 1),
        ("logging_steps = 0\n", "logging_steps", 1),
        ("max_steps = 1\nmax_grad_norm = -1.0\n", "max_grad_norm", 2),
    ] {
        let e = err(text);
        assert!(
            matches!(&e, Error::Data { line: l, detail, .. } if *l == line && detail.starts_with(key)),
            "{text:?}: {e}"
        );
    }
    // A valid file still reads.
    let a = TrainingArgs::from_toml("max_len = 16\nmetric_for_best = \"accuracy\"\n", "ok.toml")
        .unwrap();
    assert_eq!(a.max_len, Some(16));
}

/// A tiny tokenizer and a decoder (or encoder) of `max_len` positions.
fn tiny(causal: bool, max_len: usize) -> (Tokenizer, Transformer, ParamStore<f32>, World) {
    let world = World::generate(0);
    let preset = if causal { Preset::Gpt } else { Preset::Bert };
    let tok = Tokenizer::train_bpe(&world.corpus(300, 1), 400, preset).unwrap();
    let config = if causal {
        Config::gpt(tok.vocab_size(), 16, 2, 1, max_len)
    } else {
        Config::bert(tok.vocab_size(), 16, 2, 1, max_len)
    };
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 1).unwrap();
    (tok, model, store, world)
}

/// The task bound to a tiny decoder, with the data of `files`.
fn bind(task: Task, files: &DataFiles, max_len: usize) -> tunelab::Result<TaskModel> {
    let (tok, model, mut store, world) = tiny(true, max_len);
    let (data, _) = task_data(task, Some(files), None)?;
    TaskModel::builtin(task, model, &mut store, tok, world, data, 3)
}

fn write(dir: &Path, name: &str, text: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The error is a data error at `file`'s line `line` whose detail contains every one of `words`.
fn at_line(e: &Error, file: &Path, line: usize, words: &[&str]) {
    let msg = e.to_string();
    assert!(
        matches!(e, Error::Data { path, line: l, .. } if path == &file.display().to_string() && *l == line),
        "expected {}:{line}, got: {msg}",
        file.display()
    );
    for w in words {
        assert!(msg.contains(w), "{w:?} not in: {msg}");
    }
    assert_eq!(msg.matches("invalid argument").count(), 0, "{msg}");
}

#[test]
fn data_errors_name_the_file_line_and_field() {
    let dir = empty_dir("hostile-data");
    let load = |name: &str, text: &[u8], shape: TaskShape| {
        let p = write(&dir, name, text);
        (tunelab::data::loaders::load(&p, shape).unwrap_err(), p)
    };
    let sentiment = Task::Sentiment.shape();
    // An empty text (it used to reach the batcher: "sequence 1 is empty").
    let (e, p) = load(
        "empty.jsonl",
        b"{\"text\": \"good\", \"label\": 1}\n{\"text\": \"  \", \"label\": 0}\n",
        sentiment,
    );
    at_line(&e, &p, 2, &["\"text\"", "empty"]);
    let (e, p) = load("empty.csv", b"text,label\ngood,1\n,0\n", sentiment);
    at_line(&e, &p, 3, &["\"text\"", "empty"]);
    // Invalid UTF-8: the line and the byte.
    let (e, p) = load(
        "utf8.jsonl",
        b"{\"text\": \"good\", \"label\": 1}\n{\"text\": \"b\xffd\", \"label\": 0}\n",
        sentiment,
    );
    at_line(&e, &p, 2, &["UTF-8", "byte 12"]);
    // BIO tags: an I- with no B- before it, and an I- of another type.
    let ner = Task::Ner.shape();
    let (e, p) = load(
        "ner1.jsonl",
        b"{\"tokens\": [\"in\", \"Hanoi\"], \"tags\": [\"O\", \"I-LOC\"]}\n",
        ner,
    );
    at_line(&e, &p, 1, &["\"tags\"", "I-LOC", "B-LOC"]);
    let (e, p) = load(
        "ner2.jsonl",
        b"{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n{\"tokens\": [\"Anna\", \"Hanoi\"], \"tags\": [\"B-PER\", \"I-LOC\"]}\n",
        ner,
    );
    at_line(&e, &p, 2, &["\"tags\"", "I-LOC", "B-PER"]);
    let ok = write(
        &dir,
        "ner_ok.jsonl",
        b"{\"tokens\": [\"Anna\", \"Lee\", \"in\", \"Hanoi\"], \"tags\": [\"B-PER\", \"I-PER\", \"O\", \"B-LOC\"]}\n",
    );
    assert_eq!(tunelab::data::loaders::load(&ok, ner).unwrap().len(), 1);
    // An empty prompt.
    let (e, p) = load(
        "gen.jsonl",
        b"{\"prompt\": \"hi\", \"response\": \"x\"}\n{\"prompt\": \"\", \"response\": \"x\"}\n",
        TaskShape::Generation,
    );
    at_line(&e, &p, 2, &["\"prompt\"", "empty"]);
    // A QA example too long for max_len: its own file's line, not an index in a split, and the
    // message said once.
    let row = |ctx: &str| {
        format!(
            "{{\"context\": \"{ctx} Hanoi.\", \"question\": \"Where?\", \"answer\": \"Hanoi\"}}\n"
        )
    };
    let short = row("It is in");
    let long = row(&"word ".repeat(60));
    let train = write(&dir, "qa_train.jsonl", short.repeat(4).as_bytes());
    let val = write(
        &dir,
        "qa_val.jsonl",
        format!("{short}\n{short}{long}").as_bytes(),
    );
    let files = DataFiles::Splits {
        train,
        validation: val.clone(),
        test: None,
    };
    let e = bind(Task::Qa, &files, 32).err().unwrap();
    at_line(&e, &val, 4, &["\"question\"", "\"context\"", "max_len 32"]);
    assert_eq!(e.to_string().matches("encode").count(), 0, "{e}");
    // In one file split three ways, the line is the file's.
    let mut one = short.repeat(9);
    one.push_str(&long);
    let one_file = write(&dir, "qa_one.jsonl", one.as_bytes());
    let e = bind(Task::Qa, &DataFiles::One(one_file.clone()), 32)
        .err()
        .unwrap();
    at_line(&e, &one_file, 10, &["max_len 32"]);
}

#[test]
fn every_split_is_encoded_and_checked_before_the_first_step() {
    let dir = empty_dir("hostile-splits");
    let ok = "{\"prompt\": \"User: hi\\nAssistant:\", \"response\": \"Hello!\"}\n";
    let train = write(&dir, "train.jsonl", ok.repeat(4).as_bytes());
    let validation = write(&dir, "validation.jsonl", ok.repeat(2).as_bytes());
    // A test example whose prompt leaves no room for a response (it panicked in evaluation,
    // after training): refused when the task is bound, naming the test file's line.
    let long = format!(
        "{{\"prompt\": \"{}\", \"response\": \"x\"}}\n",
        "hello ".repeat(60)
    );
    let test = write(&dir, "test.jsonl", format!("{ok}{long}").as_bytes());
    let files = DataFiles::Splits {
        train: train.clone(),
        validation: validation.clone(),
        test: Some(test.clone()),
    };
    let e = bind(Task::Dialogue, &files, 48).err().unwrap();
    at_line(&e, &test, 2, &["\"prompt\"", "max_len is 48", "response"]);
    // The same example in validation.
    let files = DataFiles::Splits {
        train: train.clone(),
        validation: test.clone(),
        test: None,
    };
    let e = bind(Task::Dialogue, &files, 48).err().unwrap();
    at_line(&e, &test, 2, &["\"prompt\""]);
    // Built-in data names the split and the 1-based example.
    let (tok, model, mut store, world) = tiny(true, 24);
    let data = TaskData {
        train: vec![tunelab::data::tasks::Example::Generation {
            prompt: "User: hi".into(),
            response: "Hello".into(),
        }],
        validation: vec![tunelab::data::tasks::Example::Generation {
            prompt: "hello ".repeat(60),
            response: "x".into(),
        }],
        ..TaskData::default()
    };
    let e = TaskModel::builtin(Task::Dialogue, model, &mut store, tok, world, data, 3)
        .err()
        .unwrap();
    assert!(e.to_string().contains("validation example 1"), "{e}");
    // TOML's max_len is honoured: every sequence is cut to it, and a QA example over it is
    // refused; more than the model's is refused by name.
    let qa = "{\"context\": \"It is in Hanoi, the capital city of the country.\", \"question\": \"Where is it?\", \"answer\": \"Hanoi\"}\n";
    let qa_file = write(&dir, "qa.jsonl", qa.repeat(3).as_bytes());
    let (tok, model, mut store, world) = tiny(true, 64);
    let (mut data, _) = task_data(Task::Qa, Some(&DataFiles::One(qa_file.clone())), None).unwrap();
    data.max_len = Some(8);
    let e = TaskModel::builtin(Task::Qa, model, &mut store, tok, world, data, 3)
        .err()
        .unwrap();
    at_line(&e, &qa_file, 1, &["max_len 8"]);
    let (tok, model, mut store, world) = tiny(true, 64);
    let (mut data, _) = task_data(Task::Sentiment, None, None).unwrap();
    data.max_len = Some(6);
    let tm = TaskModel::builtin(Task::Sentiment, model, &mut store, tok, world, data, 3).unwrap();
    assert_eq!(tm.max_len, 6);
    assert!(tm.train.iter().all(|i| i.encoded.ids.len() <= 6));
    let (tok, model, mut store, world) = tiny(true, 64);
    let (mut data, _) = task_data(Task::Sentiment, None, None).unwrap();
    data.max_len = Some(65);
    let e = TaskModel::builtin(Task::Sentiment, model, &mut store, tok, world, data, 3)
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with("max_len: ") && e.to_string().contains("65"),
        "{e}"
    );
    // A generation task on an encoder is refused before any data is read, naming the base.
    let (_, encoder, _, _) = tiny(false, 32);
    let e = check_fits(Task::Dialogue, &encoder, "bert-tiny").unwrap_err();
    assert!(
        e.to_string().contains("needs a decoder")
            && e.to_string().contains("bert-tiny is an encoder"),
        "{e}"
    );
    assert!(check_fits(Task::Sentiment, &encoder, "bert-tiny").is_ok());
}

#[test]
fn output_targets_and_names_are_checked_before_training() {
    let dir = empty_dir("hostile-outputs");
    let file = write(&dir, "a-file", b"x");
    let file = file.to_str().unwrap();
    let under_file = format!("{file}/x.json");
    // Each would train for minutes before writing; each fails at once.
    refused(
        &dir,
        &["compare", "--quick", "--plot", "/etc/passwd"],
        &["--plot", "/etc/passwd", "not a directory"],
    );
    refused(
        &dir,
        &["compare", "--quick", "--report", file],
        &["--report"],
    );
    refused(
        &dir,
        &["compare", "--quick", "--json-out", &under_file],
        &["--json-out"],
    );
    refused(&dir, &["sweep", "--json-out", &under_file], &["--json-out"]);
    refused(
        &dir,
        &["sweep", "--write-settings", &under_file, "--all"],
        &["--write-settings"],
    );
    refused(
        &dir,
        &["finetune", "--output-dir", file, "--max-steps", "1"],
        &["--output-dir", "not a directory"],
    );
    // A method name that is not in compare's line-up, listing the line-up.
    refused(
        &dir,
        &["compare", "--quick", "--only", "nosuch"],
        &["--only", "nosuch", "lora"],
    );
    // A generation task on an encoder, before any data is loaded.
    refused(
        &dir,
        &[
            "finetune",
            "--task",
            "dialogue",
            "--base",
            "bert-tiny",
            "--output-dir",
            dir.join("o").to_str().unwrap(),
        ],
        &["--task", "needs a decoder", "bert-tiny is an encoder"],
    );
    assert!(!dir.join("o").join("log.jsonl").exists());
    // estimate suggests only flags that exist.
    let (code, err) = run(&dir, &["estimate", "1000"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        !err.contains("--vocab") && err.contains("too small"),
        "{err}"
    );
}

/// A task whose loss is the bound task's and whose validation metrics are NaN.
struct NanEval<'a>(&'a TaskModel);

impl TrainTask<f32> for NanEval<'_> {
    fn train_len(&self) -> usize {
        TrainTask::<f32>::train_len(self.0)
    }
    fn loss(
        &self,
        tape: &mut tunelab::Tape<'_, f32>,
        hooks: &dyn tunelab::nn::Hooks<f32>,
        batch: &MicroBatch<'_>,
    ) -> tunelab::Result<(Var, usize)> {
        self.0.loss(tape, hooks, batch)
    }
    fn evaluate(
        &self,
        _: &ParamStore<f32>,
        _: &dyn tunelab::nn::Hooks<f32>,
        _: Split,
        _: usize,
        _: usize,
    ) -> tunelab::Result<Metrics> {
        Ok(Metrics::from([
            ("loss".to_string(), f64::NAN),
            ("accuracy".to_string(), 0.5625),
        ]))
    }
}

#[test]
fn non_finite_results_are_errors_not_printed_numbers() {
    let (tok, model, mut store, world) = tiny(true, 32);
    let (mut data, _) = task_data(Task::Sentiment, None, None).unwrap();
    data.train.truncate(16);
    data.validation.truncate(8);
    data.test.truncate(8);
    let tm = TaskModel::builtin(Task::Sentiment, model, &mut store, tok, world, data, 3).unwrap();
    for id in tm.head.params() {
        store.set_trainable(id, true);
    }
    // A NaN validation metric stops training, naming it and the step.
    let out = temp_dir("hostile-nan");
    let args = TrainingArgs {
        output_dir: out,
        max_steps: Some(2),
        batch_size: 4,
        eval_strategy: tunelab::train::args::Strategy::Steps,
        eval_steps: 1,
        ..TrainingArgs::default()
    };
    let e = train(Training::new(&args, &NanEval(&tm), &mut store).log_file(false)).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("validation loss became NaN at step 1"),
        "{msg}"
    );
    // A test score over non-finite outputs is an error naming the metric.
    let w = tm.head.params()[0];
    let mut v = store.value(w).clone();
    v.fill(f32::NAN);
    store.set_value(w, v).unwrap();
    let e = TrainTask::<f32>::evaluate(&tm, &store, &tunelab::nn::NoHooks, Split::Test, 0, 8)
        .unwrap_err();
    assert!(e.to_string().contains("test loss is NaN"), "{e}");
}
