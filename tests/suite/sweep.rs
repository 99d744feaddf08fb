//! `tunelab sweep` and the data it is scored on: a user's file splits three ways, a user's own
//! splits are taken as given, a sweep scores validation only and picks the best mean, and the
//! rates it records are the ones compare runs.

use std::path::Path;
use tunelab::data::loaders::{save_jsonl, DataFiles};
use tunelab::data::tasks::{Example, Task};
use tunelab::lab::compare::{self, LrSource};
use tunelab::lab::finetune::{task_data, train_method, FinetuneOptions};
use tunelab::lab::sweep::{self, Settings, SweepOptions};
use tunelab::train::trainer::{Split, TrainTask};
use tunelab::train::TrainingArgs;

/// `n` sentiment reviews whose text says which they are (`review 7 ...`), alternating labels.
fn reviews(n: usize, tag: &str) -> Vec<Example> {
    (0..n)
        .map(|i| Example::Classification {
            text: format!(
                "{tag} review {i}: the food was {}",
                if i % 2 == 1 { "good" } else { "bad" }
            ),
            label: i % 2,
        })
        .collect()
}

fn write(dir: &Path, name: &str, examples: &[Example]) -> std::path::PathBuf {
    let p = dir.join(name);
    save_jsonl(&p, examples, Task::Sentiment.shape()).unwrap();
    p
}

fn texts(examples: &[Example]) -> Vec<String> {
    examples.iter().map(|e| e.input_text()).collect()
}

#[test]
fn one_data_file_splits_into_train_validation_and_test_in_file_order() {
    let dir = crate::common::empty_dir("sweep-split");
    let all = reviews(40, "a");
    let path = write(&dir, "all.jsonl", &all);
    let (d, _) = task_data(Task::Sentiment, Some(&DataFiles::One(path)), None).unwrap();
    assert_eq!(
        (d.train.len(), d.validation.len(), d.test.len()),
        (32, 4, 4)
    );
    assert_eq!(texts(&d.train), texts(&all[..32]));
    assert_eq!(texts(&d.validation), texts(&all[32..36]));
    assert_eq!(texts(&d.test), texts(&all[36..]));
    // Three examples are the least that split: one each.
    let path = write(&dir, "three.jsonl", &all[..3]);
    let (d, _) = task_data(Task::Sentiment, Some(&DataFiles::One(path)), None).unwrap();
    assert_eq!((d.train.len(), d.validation.len(), d.test.len()), (1, 1, 1));
    assert_ne!(texts(&d.validation), texts(&d.test));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_data_file_too_small_to_split_is_an_error_naming_it_and_its_count() {
    let dir = crate::common::empty_dir("sweep-tiny");
    let path = write(&dir, "two.jsonl", &reviews(2, "a"));
    let err = task_data(Task::Sentiment, Some(&DataFiles::One(path.clone())), None)
        .err()
        .expect("two examples do not split three ways")
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("holds 2 examples"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn own_splits_are_taken_whole_and_a_shared_validation_and_test_file_warns() {
    let dir = crate::common::empty_dir("sweep-own");
    let (train, val, test) = (reviews(7, "t"), reviews(3, "v"), reviews(2, "x"));
    let files = DataFiles::Splits {
        train: write(&dir, "train.jsonl", &train),
        validation: write(&dir, "val.jsonl", &val),
        test: Some(write(&dir, "test.jsonl", &test)),
    };
    let (d, _) = task_data(Task::Sentiment, Some(&files), None).unwrap();
    // Every example of the training file trains; nothing is held out of it.
    assert_eq!(texts(&d.train), texts(&train));
    assert_eq!(texts(&d.validation), texts(&val));
    assert_eq!(texts(&d.test), texts(&test));
    assert!(files.warnings().is_empty());
    let DataFiles::Splits {
        train, validation, ..
    } = files
    else {
        unreachable!()
    };
    let same = DataFiles::Splits {
        train,
        test: Some(validation.clone()),
        validation,
    };
    let w = same.warnings();
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(w[0].contains("val.jsonl"), "{w:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_sweep_scores_each_run_on_validation_and_picks_the_best_mean() {
    let dir = crate::common::empty_dir("sweep-run");
    // No test file at all: a sweep never needs (or reads) a test split.
    let files = DataFiles::Splits {
        train: write(&dir, "train.jsonl", &reviews(24, "t")),
        validation: write(&dir, "val.jsonl", &reviews(8, "v")),
        test: None,
    };
    let mut opts = SweepOptions::new("gpt-tiny", Task::Sentiment);
    opts.data = Some(files.clone());
    opts.steps = 3;
    opts.batch_size = 4;
    opts.max_eval_examples = 8;
    opts.seeds = vec![5, 6];
    opts.out_dir = dir.join("runs");
    let points = sweep::grid("bitfit", &[1e-4, 3e-2], &[], &[], None).unwrap();
    let r = sweep::sweep(&opts, "bitfit", &points, &mut ()).unwrap();
    assert_eq!(r.points.len(), 2);
    assert_eq!(r.split, "validation");
    assert_eq!(r.metric, "accuracy");
    for p in &r.points {
        assert_eq!(p.scores.len(), 2);
        assert!((p.mean - (p.scores[0] + p.scores[1]) / 2.0).abs() < 1e-12);
    }
    let means: Vec<f64> = r.points.iter().map(|p| p.mean).collect();
    assert_eq!(r.best, sweep::best_index(&means));
    // A score is the validation score of that point's run with that seed.
    let args = TrainingArgs {
        output_dir: dir.join("again"),
        max_steps: Some(3),
        batch_size: 4,
        learning_rate: 3e-2,
        warmup_steps: 0,
        eval_strategy: tunelab::train::args::Strategy::No,
        seed: 6,
        ..TrainingArgs::default()
    };
    let t = train_method(
        &FinetuneOptions {
            base: "gpt-tiny".into(),
            task: Task::Sentiment,
            data: Some(files),
            spec: points[1].spec.clone(),
            args,
            train_limit: None,
            resume: false,
            base_dtype: Default::default(),
        },
        &mut (),
    )
    .unwrap();
    let m = TrainTask::<f32>::evaluate(
        &t.tm,
        &t.base.store,
        t.method.as_ref(),
        Split::Validation,
        8,
        32,
    )
    .unwrap();
    assert_eq!(m["score"], r.points[1].scores[1]);
    // What --write-settings records is what compare then runs.
    let path = dir.join("compare.toml");
    let mut s = Settings::read(&path).unwrap();
    assert!(s.tasks.is_empty(), "a missing file is an empty one");
    s.record(&r, "bitfit", "tunelab sweep ...");
    s.write(&path).unwrap();
    let back = Settings::read(&path).unwrap();
    let entries = compare::entries_with(Task::Sentiment, vec![], &back);
    for e in &entries {
        if e.label == "bitfit" {
            assert_eq!(e.lr, r.best().point.lr);
            assert_eq!(e.lr_source, LrSource::Sweep);
        } else {
            assert_eq!(e.lr_source, LrSource::Registry, "{}", e.label);
        }
    }
    let other = compare::entries_with(Task::Ner, vec![], &back);
    assert!(other.iter().all(|e| e.lr_source == LrSource::Registry));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped settings file: every entry names a task and a compare row, and its rate is the
/// best mean validation score of its own grid, measured over the seeds it lists.
#[test]
fn every_shipped_setting_is_the_best_mean_of_its_validation_grid() {
    let s = Settings::compiled().unwrap();
    let labels: Vec<String> = compare::entries_with(Task::Sentiment, vec![], &Settings::default())
        .into_iter()
        .map(|e| e.label)
        .collect();
    for (task, entries) in &s.tasks {
        for (label, e) in entries {
            assert!(
                labels.contains(label),
                "[{task}.{label:?}] is no compare row"
            );
            assert!(!e.grid.is_empty(), "[{task}.{label:?}] has no grid");
            let means: Vec<f64> = e.grid.iter().map(|g| g.mean).collect();
            assert_eq!(
                e.lr,
                e.grid[sweep::best_index(&means)].lr,
                "[{task}.{label:?}]"
            );
            for g in &e.grid {
                assert_eq!(g.scores.len(), e.seeds.len(), "[{task}.{label:?}]");
                let (mean, _) = sweep::mean_std(&g.scores);
                assert!((mean - g.mean).abs() < 1e-9, "[{task}.{label:?}]");
            }
            assert!(e.command.contains("tunelab sweep"), "[{task}.{label:?}]");
        }
    }
}
