//! The Trainer: resume equals an uninterrupted run (with AdamW or SGD), NaN stops training,
//! early stopping, TOML arguments, and a short pre-training run whose loss falls.

use crate::common::temp_dir;
use tunelab::data::tasks::{self, Task};
use tunelab::data::tokenizer::{Preset, Tokenizer};
use tunelab::data::world::World;
use tunelab::nn::{Config, Transformer};
use tunelab::optim::{Optimizer, Sgd, SgdConfig};
use tunelab::peft::{self, MethodSpec};
use tunelab::train::args::Strategy;
use tunelab::train::pretrain::{pretrain, Base, PretrainArgs};
use tunelab::train::progress::Progress;
use tunelab::train::task::{TaskData, TaskModel};
use tunelab::train::trainer::{train, Training};
use tunelab::train::TrainingArgs;
use tunelab::ParamStore;

/// A tiny decoder on the sentiment task, with LoRA on q and v.
fn setup() -> (TaskModel, ParamStore<f32>, Box<dyn peft::Method<f32>>) {
    let world = World::generate(0);
    let tok = Tokenizer::train_bpe(&world.corpus(300, 1), 400, Preset::Gpt).unwrap();
    let mut config = Config::gpt(tok.vocab_size(), 16, 2, 1, 64);
    config.dropout = 0.1;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 1).unwrap();
    let s = tasks::build(Task::Sentiment, &world, 0);
    let data = TaskData {
        train: s.train[..48].to_vec(),
        validation: s.validation[..16].to_vec(),
        test: s.test[..16].to_vec(),
    };
    let tm = TaskModel::builtin(
        Task::Sentiment,
        model.clone(),
        &mut store,
        tok,
        world,
        data,
        3,
    )
    .unwrap();
    let method = peft::apply(&MethodSpec::Lora(Default::default()), &model, &mut store, 3).unwrap();
    for id in tm.head.params() {
        store.set_trainable(id, true);
    }
    (tm, store, method)
}

fn args(dir: &std::path::Path) -> TrainingArgs {
    TrainingArgs {
        output_dir: dir.to_path_buf(),
        max_steps: Some(6),
        batch_size: 8,
        learning_rate: 1e-2,
        eval_strategy: Strategy::No,
        save_strategy: Strategy::No,
        ..TrainingArgs::default()
    }
}

struct StopAt(usize);

impl Progress for StopAt {
    fn should_stop(&mut self, step: usize) -> bool {
        step == self.0
    }
}

#[test]
fn resume_from_checkpoint_equals_an_uninterrupted_run() {
    let (tm, store0, method) = setup();
    let dir = temp_dir("resume-a");
    let mut store = store0.clone();
    let full = train(Training::new(&args(&dir), &tm, &mut store).hooks(method.as_ref())).unwrap();
    assert_eq!(full.state.losses.len(), 6);

    let dir = temp_dir("resume-b");
    let mut store = store0.clone();
    let first = train(
        Training::new(&args(&dir), &tm, &mut store)
            .hooks(method.as_ref())
            .progress(&mut StopAt(3)),
    )
    .unwrap();
    assert!(first.interrupted);
    assert_eq!(first.state.losses, full.state.losses[..3]);
    assert!(dir
        .join("checkpoint-3")
        .join("trainable.safetensors")
        .exists());
    // A fresh process: the base weights as loaded, everything else from the checkpoint.
    let mut store = store0.clone();
    let resumed = train(
        Training::new(&args(&dir), &tm, &mut store)
            .hooks(method.as_ref())
            .resume(true),
    )
    .unwrap();
    assert_eq!(
        resumed.state.losses, full.state.losses,
        "resumed losses differ from the uninterrupted run"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn sgd() -> Box<dyn Optimizer<f32>> {
    Box::new(
        Sgd::new(SgdConfig {
            momentum: 0.9,
            ..SgdConfig::default()
        })
        .unwrap(),
    )
}

#[test]
fn resume_with_sgd_equals_an_uninterrupted_run_and_refuses_another_optimizer() {
    let (tm, store0, method) = setup();
    let dir = temp_dir("resume-sgd-a");
    let mut store = store0.clone();
    let full = train(
        Training::new(&args(&dir), &tm, &mut store)
            .hooks(method.as_ref())
            .optimizer(sgd()),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = temp_dir("resume-sgd-b");
    let mut store = store0.clone();
    let first = train(
        Training::new(&args(&dir), &tm, &mut store)
            .hooks(method.as_ref())
            .optimizer(sgd())
            .progress(&mut StopAt(3)),
    )
    .unwrap();
    assert_eq!(first.state.losses, full.state.losses[..3]);
    // The momentum buffers come back from the checkpoint: without them step 4 would differ.
    let mut store = store0.clone();
    let resumed = train(
        Training::new(&args(&dir), &tm, &mut store)
            .hooks(method.as_ref())
            .optimizer(sgd())
            .resume(true),
    )
    .unwrap();
    assert_eq!(
        resumed.state.losses, full.state.losses,
        "resumed SGD losses differ from the uninterrupted run"
    );
    // The same checkpoint with AdamW: refused, naming both optimizers.
    let mut store = store0.clone();
    let err = train(
        Training::new(&args(&dir), &tm, &mut store)
            .hooks(method.as_ref())
            .resume(true),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("SGD") && err.contains("AdamW"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn nan_loss_stops_training_naming_the_step() {
    let (tm, mut store, method) = setup();
    let dir = temp_dir("nan");
    let head = tm.head.params()[0];
    let poisoned = store.value(head).mapv(|_| f32::NAN);
    store.set_value(head, poisoned).unwrap();
    let err = train(Training::new(&args(&dir), &tm, &mut store).hooks(method.as_ref()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("NaN") && err.contains("step 1"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn early_stopping_stops_when_the_metric_stalls() {
    let (tm, mut store, method) = setup();
    let dir = temp_dir("early");
    let mut a = args(&dir);
    a.max_steps = Some(20);
    a.learning_rate = 1e-12; // nothing can improve
    a.eval_strategy = Strategy::Steps;
    a.eval_steps = 1;
    a.metric_for_best_model = "accuracy".into();
    a.early_stopping_patience = Some(2);
    let r = train(Training::new(&a, &tm, &mut store).hooks(method.as_ref())).unwrap();
    assert!(r.stopped_early);
    assert_eq!(
        r.state.step, 3,
        "best at step 1, then two evaluations without improvement"
    );
    let log = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 3, "one JSONL line per evaluated step");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn training_args_read_from_toml_with_clear_errors() {
    let a = TrainingArgs::from_toml(
        "learning_rate = 0.005\nbatch_size = 4\neval_strategy = \"steps\"\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(
        (a.learning_rate, a.batch_size, a.eval_strategy),
        (0.005, 4, Strategy::Steps)
    );
    assert_eq!(
        a.epochs,
        TrainingArgs::default().epochs,
        "unset keys keep their defaults"
    );
    let err = TrainingArgs::from_toml("batch_size = 4\nlearnin_rate = 0.1\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("t.toml:2:") && err.contains("learnin_rate"),
        "{err}"
    );
    let err = TrainingArgs::from_toml("batch_size = \"four\"\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("t.toml:1:"), "{err}");
    let err = TrainingArgs::from_toml("batch_size = 0\n", "t.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("batch"), "{err}");
}

#[test]
fn pretrain_short_run_loss_falls() {
    for base in [Base::GptTiny, Base::BertTiny] {
        let mut a = PretrainArgs::new(base);
        (a.vocab_size, a.d_model, a.n_heads, a.n_layers, a.seq_len) = (300, 32, 2, 1, 32);
        (a.docs, a.steps, a.batch_size, a.warmup, a.eval_every, a.lr) = (300, 40, 8, 5, 20, 3e-3);
        let dir = temp_dir(base.name());
        let r = pretrain(&a, &dir, &mut ()).unwrap();
        let first = r.history.first().unwrap().train_loss;
        let vals: Vec<f64> = r.history.iter().filter_map(|p| p.val_loss).collect();
        assert!(
            r.val_loss < first - 0.5,
            "{}: validation loss {} did not fall from {first}",
            base.name(),
            r.val_loss
        );
        assert!(
            vals.windows(2).all(|w| w[1] < w[0]),
            "{}: validation losses {vals:?}",
            base.name()
        );
        assert!(dir.join("tokenizer.json").exists() && dir.join("model.safetensors").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
