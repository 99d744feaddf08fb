//! The Trainer: resume equals an uninterrupted run (with AdamW or SGD), NaN stops training,
//! early stopping, token-weighted gradient accumulation on every task shape,
//! `load_best_model_at_end` (in memory and through a resumed checkpoint), continuing a saved
//! adapter, TOML arguments, and a short pre-training run whose loss falls.

use crate::common::temp_dir;
use tunelab::data::tasks::{self, Task};
use tunelab::data::tokenizer::{Preset, Tokenizer};
use tunelab::data::world::World;
use tunelab::lab::finetune::{
    finetune, finetune_from, load_base, prepare_continued, task_data, FinetuneOptions,
};
use tunelab::nn::{Config, Transformer};
use tunelab::optim::{Optimizer, Sgd, SgdConfig};
use tunelab::peft::{self, MethodSpec};
use tunelab::train::args::Strategy;
use tunelab::train::pretrain::{pretrain, Base, PretrainArgs};
use tunelab::train::progress::Progress;
use tunelab::train::task::{TaskData, TaskModel};
use tunelab::train::trainer::{train, Split, TrainTask, Training};
use tunelab::train::TrainingArgs;
use tunelab::ParamStore;

/// A tiny decoder on the sentiment task, with LoRA on q and v.
fn setup() -> (TaskModel, ParamStore<f32>, Box<dyn peft::Method<f32>>) {
    setup_task(Task::Sentiment, 0.1, 64)
}

/// A tiny decoder of `max_len` positions on `task` with dropout `dropout`, with LoRA on q and v.
fn setup_task(
    task: Task,
    dropout: f64,
    max_len: usize,
) -> (TaskModel, ParamStore<f32>, Box<dyn peft::Method<f32>>) {
    let world = World::generate(0);
    let tok = Tokenizer::train_bpe(&world.corpus(300, 1), 400, Preset::Gpt).unwrap();
    let mut config = Config::gpt(tok.vocab_size(), 16, 2, 1, max_len);
    config.dropout = dropout;
    let mut store = ParamStore::new();
    let model = Transformer::new(config, &mut store, 1).unwrap();
    let s = tasks::build(task, &world, 0);
    let data = TaskData {
        train: s.train[..48].to_vec(),
        validation: s.validation[..16].to_vec(),
        test: s.test[..16].to_vec(),
        ..TaskData::default()
    };
    let tm = TaskModel::builtin(task, model.clone(), &mut store, tok, world, data, 3).unwrap();
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

/// Max |a − b| over two stores' trainable parameters.
fn max_trainable_diff(a: &ParamStore<f32>, b: &ParamStore<f32>) -> f32 {
    max_trainable_diff_except(a, b, "")
}

/// Max |a − b| over two stores' trainable parameters but the one named `skip`.
fn max_trainable_diff_except(a: &ParamStore<f32>, b: &ParamStore<f32>, skip: &str) -> f32 {
    a.iter()
        .zip(b.iter())
        .filter(|((_, p), _)| p.trainable && p.name != skip)
        .flat_map(|((_, p), (_, q))| p.value.iter().zip(q.value.iter()))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn accumulated_micro_batches_train_as_one_batch_on_every_task_shape() {
    // Classification and span losses average over examples, tagging and LM losses over counted
    // tokens, which differ between micro-batches: 4 × 2 and 2 × 4 must give the losses and
    // weights of 1 × 8 for each (dropout off, so nothing but the grouping differs).
    // 256 positions: this tiny tokenizer (400 tokens) spells some dialogue prompts in more than
    // 128, which a prompt must leave room after for its response.
    for task in [Task::Sentiment, Task::Ner, Task::Qa, Task::Dialogue] {
        let (tm, store, method) = setup_task(task, 0.0, 256);
        let run = |batch_size: usize, accum: usize| {
            let mut store = store.clone();
            let dir = temp_dir("accum");
            let a = TrainingArgs {
                max_steps: Some(4),
                batch_size,
                gradient_accumulation_steps: accum,
                ..args(&dir)
            };
            let r = train(Training::new(&a, &tm, &mut store).hooks(method.as_ref())).unwrap();
            let _ = std::fs::remove_dir_all(&dir);
            (r.state.losses, store)
        };
        let (one, one_store) = run(8, 1);
        for (b, k) in [(4, 2), (2, 4)] {
            let (acc, acc_store) = run(b, k);
            let d = acc
                .iter()
                .zip(&one)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            // The span head's bias adds one constant to every position's start (or end) logit,
            // which the softmax over positions ignores: its gradient is zero in exact arithmetic,
            // rounding noise here, and Adam divides that noise by its own size into steps of the
            // learning rate. It is left out of the comparison.
            let w = max_trainable_diff_except(&acc_store, &one_store, "qa_outputs.bias");
            eprintln!(
                "{}: {k} x {b} against 1 x 8: max loss difference {d:.2e}, weights {w:.2e}",
                task.name()
            );
            assert!(
                d < 1e-5,
                "{}: {k} x {b}: {acc:?} against {one:?}",
                task.name()
            );
            assert!(
                w < 1e-5,
                "{}: {k} x {b}: weights differ by {w}",
                task.name()
            );
        }
    }
}

/// A run that overfits: a high learning rate on 48 examples, evaluated every step.
fn overfitting_args(dir: &std::path::Path) -> TrainingArgs {
    TrainingArgs {
        max_steps: Some(12),
        learning_rate: 0.1,
        eval_strategy: Strategy::Steps,
        eval_steps: 1,
        load_best_model_at_end: true,
        ..args(dir)
    }
}

#[test]
fn load_best_model_at_end_restores_the_best_evaluations_weights() {
    let (tm, mut store, method) = setup();
    let dir = temp_dir("best");
    let a = overfitting_args(&dir);
    let r = train(Training::new(&a, &tm, &mut store).hooks(method.as_ref())).unwrap();
    let best = r.restored_best.clone().expect("a best model was restored");
    let evals: Vec<(usize, f64)> = r
        .state
        .log
        .iter()
        .filter_map(|e| Some((e.step, *e.eval.as_ref()?.get("loss")?)))
        .collect();
    let (min_step, min_loss) = evals
        .iter()
        .copied()
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap();
    assert_eq!(best.step, min_step, "the lowest validation loss: {evals:?}");
    assert!(
        best.step < r.state.step,
        "the run must have got worse after its best step for this test to mean anything: {evals:?}"
    );
    assert_eq!(r.state.best_step, Some(best.step));
    assert_eq!(
        r.final_eval.as_ref(),
        Some(&best.metrics),
        "final_eval is the best evaluation's"
    );
    // The weights the run ended with give the recorded best validation loss again.
    let again =
        TrainTask::<f32>::evaluate(&tm, &store, method.as_ref(), Split::Validation, 0, 32).unwrap();
    assert_eq!(again["loss"], min_loss, "restored weights, re-evaluated");
    let last = evals.last().unwrap().1;
    assert!(last > min_loss, "last {last}, best {min_loss}");
    // greater_is_better flips the choice: the highest loss is then "best".
    let (tm2, mut store2, method2) = setup();
    let flipped = TrainingArgs {
        greater_is_better: Some(true),
        ..overfitting_args(&temp_dir("best-flipped"))
    };
    let r2 = train(Training::new(&flipped, &tm2, &mut store2).hooks(method2.as_ref())).unwrap();
    let max_step = evals
        .iter()
        .copied()
        .max_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap()
        .0;
    assert_eq!(r2.restored_best.unwrap().step, max_step);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&flipped.output_dir);
}

#[test]
fn a_resumed_run_still_restores_the_best_model_from_checkpoint_best() {
    let (tm, store, method) = setup();
    let whole = {
        let mut store = store.clone();
        let a = overfitting_args(&temp_dir("best-whole"));
        let r = train(Training::new(&a, &tm, &mut store).hooks(method.as_ref())).unwrap();
        let _ = std::fs::remove_dir_all(&a.output_dir);
        (r, store)
    };
    let dir = temp_dir("best-resumed");
    let a = TrainingArgs {
        save_strategy: Strategy::Steps,
        save_steps: 1,
        save_total_limit: 1,
        ..overfitting_args(&dir)
    };
    let best_step = whole.0.restored_best.as_ref().unwrap().step;
    // Stopped after the best step (as Ctrl-C would), then resumed in a new process's store.
    let mut first = store.clone();
    let stop_at = best_step + 2;
    let r = train(
        Training::new(&a, &tm, &mut first)
            .hooks(method.as_ref())
            .progress(&mut StopAt(stop_at)),
    )
    .unwrap();
    assert!(
        r.interrupted && r.restored_best.is_none(),
        "interrupted runs keep their weights"
    );
    assert!(dir
        .join("checkpoint-best")
        .join("trainable.safetensors")
        .exists());
    let mut resumed = store.clone();
    let r = train(
        Training::new(&a, &tm, &mut resumed)
            .hooks(method.as_ref())
            .resume(true),
    )
    .unwrap();
    assert_eq!(r.restored_best.as_ref().map(|b| b.step), Some(best_step));
    assert_eq!(r.restored_best, whole.0.restored_best);
    assert_eq!(max_trainable_diff(&resumed, &whole.1), 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `finetune` options for a short LoRA run on the shipped gpt-tiny.
fn finetune_opts(task: Task, dir: &std::path::Path, steps: usize) -> FinetuneOptions {
    FinetuneOptions {
        base: "gpt-tiny".into(),
        task,
        data: None,
        spec: MethodSpec::Lora(Default::default()),
        args: TrainingArgs {
            output_dir: dir.to_path_buf(),
            max_steps: Some(steps),
            batch_size: 4,
            learning_rate: 5e-3,
            eval_strategy: Strategy::No,
            save_strategy: Strategy::No,
            max_eval_examples: 8,
            ..TrainingArgs::default()
        },
        train_limit: Some(64),
        resume: false,
        base_dtype: Default::default(),
    }
}

/// The tensors of an adapter directory, by name.
fn adapter_tensors(dir: &std::path::Path) -> Vec<(String, ndarray::ArrayD<f32>)> {
    tunelab::io::adapter::read::<f32>(dir).unwrap().tensors
}

#[test]
fn finetune_continues_a_saved_adapter_from_its_weights_with_its_trainable_set() {
    let first_dir = temp_dir("continue-first");
    let first = finetune(&finetune_opts(Task::Sentiment, &first_dir, 5), &mut ()).unwrap();
    let saved = adapter_tensors(&first.adapter_dir);

    // Loaded for training: the adapter's values, and exactly its tensors trainable (LoRA's A and
    // B and the classification head it saved), as PEFT's is_trainable=True.
    let mut base = load_base("gpt-tiny").unwrap();
    let (data, world) = task_data(Task::Sentiment, None, Some(64)).unwrap();
    let (_, _, spec) = prepare_continued(
        &mut base,
        Task::Sentiment,
        data,
        world,
        &first.adapter_dir,
        None,
        42,
    )
    .unwrap();
    assert_eq!(spec.name(), "lora");
    let mut trainable: Vec<&str> = base
        .store
        .iter()
        .filter(|(_, p)| p.trainable)
        .map(|(_, p)| p.name.as_str())
        .collect();
    let mut in_file: Vec<&str> = saved.iter().map(|(n, _)| n.as_str()).collect();
    trainable.sort_unstable();
    in_file.sort_unstable();
    assert_eq!(trainable, in_file);
    for (name, value) in &saved {
        assert_eq!(
            base.store.value(base.store.id(name).unwrap()),
            value,
            "{name}"
        );
    }

    // Continued for 0 steps, it is the first run's model: the same test metrics, the same tensors.
    let zero_dir = temp_dir("continue-zero");
    let zero = finetune_from(
        &finetune_opts(Task::Sentiment, &zero_dir, 0),
        Some(&first.adapter_dir),
        &mut (),
    )
    .unwrap();
    assert_eq!(zero.test, first.test);
    assert_eq!(adapter_tensors(&zero.adapter_dir), saved);

    // Continued for 5 steps, it trains the same set further from there.
    let more_dir = temp_dir("continue-more");
    let more = finetune_from(
        &finetune_opts(Task::Sentiment, &more_dir, 5),
        Some(&first.adapter_dir),
        &mut (),
    )
    .unwrap();
    assert_eq!(more.trainable, first.trainable);
    let after = adapter_tensors(&more.adapter_dir);
    assert_eq!(
        after.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        saved.iter().map(|(n, _)| n).collect::<Vec<_>>()
    );
    assert!(
        after.iter().zip(&saved).any(|((_, a), (_, b))| a != b),
        "continued training changed nothing"
    );

    // Another method asked for alongside is an error naming both.
    let mut wrong = finetune_opts(Task::Sentiment, &more_dir, 1);
    wrong.spec = MethodSpec::Ia3;
    let err = finetune_from(&wrong, Some(&first.adapter_dir), &mut ())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("ia3") && err.contains("lora"), "{err}");
    for d in [first_dir, zero_dir, more_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn finetune_continues_a_peft_lora_adapter() {
    // A tunelab LoRA adapter written in PEFT's dialect (export_peft), then continued through
    // `finetune --adapter`'s path: the PEFT reader gives back the same model (0 steps: the same
    // test metrics) and trains its LoRA tensors.
    let first_dir = temp_dir("peft-first");
    let mut opts = finetune_opts(Task::Dialogue, &first_dir, 3);
    // Scoring generates text, the slow part: a few examples show the same model.
    opts.args.max_eval_examples = 3;
    // PEFT puts LoRA on GPT-2's whole fused c_attn (and on c_fc and c_proj), not on q and v.
    opts.spec = MethodSpec::Lora(tunelab::peft::spec::LoraConfig {
        targets: vec!["qkv".into(), "fc".into()],
        ..Default::default()
    });
    let first = finetune(&opts, &mut ()).unwrap();
    let base = load_base("gpt-tiny").unwrap();
    let peft_dir = first_dir.join("peft");
    tunelab::io::adapter::export_peft(
        &first.adapter_dir,
        &base.model.config,
        "gpt-tiny",
        &peft_dir,
    )
    .unwrap();
    let config = std::fs::read_to_string(peft_dir.join("adapter_config.json")).unwrap();
    assert!(config.contains("peft_type"), "{config}");
    let zero_dir = temp_dir("peft-zero");
    let zero = finetune_from(
        &FinetuneOptions {
            args: TrainingArgs {
                output_dir: zero_dir.clone(),
                max_steps: Some(0),
                ..opts.args.clone()
            },
            ..opts.clone()
        },
        Some(&peft_dir),
        &mut (),
    )
    .unwrap();
    assert_eq!(zero.test, first.test);
    assert_eq!(zero.trainable, first.trainable);
    let more_dir = temp_dir("peft-more");
    let more = finetune_from(
        &FinetuneOptions {
            args: TrainingArgs {
                output_dir: more_dir.clone(),
                max_steps: Some(2),
                ..opts.args.clone()
            },
            ..opts.clone()
        },
        Some(&peft_dir),
        &mut (),
    )
    .unwrap();
    assert_eq!(more.trainable, first.trainable);
    assert!(more.report.state.losses.iter().all(|l| l.is_finite()));
    for d in [first_dir, zero_dir, more_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn best_model_arguments_read_from_toml_under_hugging_faces_names_and_the_old_one() {
    let a = TrainingArgs::from_toml(
        "metric_for_best_model = \"accuracy\"\ngreater_is_better = false\nload_best_model_at_end = true\n",
        "t.toml",
    )
    .unwrap();
    assert_eq!(a.metric_for_best_model, "accuracy");
    assert_eq!(a.greater_is_better, Some(false));
    assert!(a.load_best_model_at_end && !a.resolved_greater_is_better());
    let old = TrainingArgs::from_toml("metric_for_best = \"entity_f1\"\n", "t.toml").unwrap();
    assert_eq!(old.metric_for_best_model, "entity_f1");
    assert!(old.resolved_greater_is_better(), "F1 is maximised");
    let d = TrainingArgs::default();
    assert!(
        !d.load_best_model_at_end && !d.resolved_greater_is_better(),
        "loss is minimised"
    );
    for (metric, greater) in [
        ("loss", false),
        ("eval_loss", false),
        ("perplexity", false),
        ("accuracy", true),
    ] {
        assert_eq!(
            tunelab::train::args::default_greater_is_better(metric),
            greater,
            "{metric}"
        );
    }
    let err = TrainingArgs::from_toml(
        "load_best_model_at_end = true\neval_strategy = \"no\"\n",
        "t.toml",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("load_best_model_at_end"), "{err}");
}

#[test]
fn an_interrupted_run_without_a_save_strategy_keeps_its_best_weights_for_the_resumed_run() {
    let (tm, store, method) = setup();
    let whole = {
        let mut store = store.clone();
        let a = overfitting_args(&temp_dir("best-nosave-whole"));
        let r = train(Training::new(&a, &tm, &mut store).hooks(method.as_ref())).unwrap();
        let _ = std::fs::remove_dir_all(&a.output_dir);
        (r, store)
    };
    let best_step = whole.0.restored_best.as_ref().unwrap().step;
    let dir = temp_dir("best-nosave");
    let a = overfitting_args(&dir);
    let mut first = store.clone();
    train(
        Training::new(&a, &tm, &mut first)
            .hooks(method.as_ref())
            .progress(&mut StopAt(best_step + 1)),
    )
    .unwrap();
    let mut resumed = store.clone();
    let r = train(
        Training::new(&a, &tm, &mut resumed)
            .hooks(method.as_ref())
            .resume(true),
    )
    .unwrap();
    assert_eq!(r.restored_best, whole.0.restored_best);
    assert_eq!(max_trainable_diff(&resumed, &whole.1), 0.0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finetune_with_load_best_model_at_end_scores_and_saves_the_best_model() {
    let dir = temp_dir("finetune-best");
    let mut opts = finetune_opts(Task::Sentiment, &dir, 8);
    opts.args.learning_rate = 0.05;
    opts.args.eval_strategy = Strategy::Steps;
    opts.args.eval_steps = 1;
    opts.args.load_best_model_at_end = true;
    let r = finetune(&opts, &mut ()).unwrap();
    let best = r.report.restored_best.clone().expect("a best model");
    assert!(
        best.step < r.report.state.step,
        "the best model is not the last one here"
    );
    assert_eq!(r.report.final_eval.as_ref(), Some(&best.metrics));
    // The saved adapter is the best step's model: loaded again, it gives the best validation
    // loss and the test metrics the run reported.
    let mut base = load_base("gpt-tiny").unwrap();
    let (data, world) = task_data(Task::Sentiment, None, Some(64)).unwrap();
    let (tm, method, _) = prepare_continued(
        &mut base,
        Task::Sentiment,
        data,
        world,
        &r.adapter_dir,
        None,
        42,
    )
    .unwrap();
    let m = |split| {
        TrainTask::<f32>::evaluate(&tm, &base.store, method.as_ref(), split, 8, 32).unwrap()
    };
    assert_eq!(m(Split::Validation)["loss"], best.metrics["loss"]);
    assert_eq!(m(Split::Test), r.test);
    let _ = std::fs::remove_dir_all(&dir);
}
