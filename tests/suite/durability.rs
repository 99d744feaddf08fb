//! Nothing lost or corrupted: adapter and checkpoint directories replaced as a whole, one run per
//! output directory, resumes that match, no non-finite checkpoint, nothing overwritten unasked,
//! adapters checked against the task and base they were trained for, signals that save and exit
//! non-zero, logs without repeated steps, and a child process killed at random points (and at
//! every write's crash points) that always leaves loadable, consistent directories.

use crate::common::{empty_dir, temp_dir};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tunelab::io::{adapter, checkpoint, safetensors};
use tunelab::peft::spec::{LoraConfig, MethodSpec};

const BIN: &str = env!("CARGO_BIN_EXE_tunelab");

/// A tiny fine-tuning run: LoRA on 32 sentiment examples, a checkpoint every step.
fn tiny(out: &Path, steps: usize) -> Vec<String> {
    [
        "finetune",
        "--task",
        "sentiment",
        "--method",
        "lora",
        "--train-limit",
        "32",
        "--batch-size",
        "4",
        "--max-steps",
        &steps.to_string(),
        "--save-strategy",
        "steps",
        "--save-steps",
        "1",
        "--eval-strategy",
        "no",
        "--max-eval-examples",
        "8",
        "--threads",
        "1",
        "--output-dir",
        out.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn run(args: &[String]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn with(mut args: Vec<String>, more: &[&str]) -> Vec<String> {
    args.extend(more.iter().map(|s| s.to_string()));
    args
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// Runs and asserts success.
fn ok(args: &[String]) -> String {
    let o = run(args);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

/// Runs and asserts a clean failure (exit 1, no panic) whose message contains every `needle`.
fn fails(args: &[String], needles: &[&str]) -> String {
    let o = run(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{args:?}: {}{err}", stdout(&o));
    for n in needles {
        assert!(err.contains(n), "{args:?}: {n:?} not in {err}");
    }
    err
}

fn steps_of(dir: &Path) -> Vec<usize> {
    checkpoint::training_checkpoints(dir)
        .into_iter()
        .map(|(s, _)| s)
        .collect()
}

fn spec() -> MethodSpec {
    MethodSpec::Lora(LoraConfig::default())
}

fn one_tensor(v: f32) -> ndarray::ArrayD<f32> {
    ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, 3]), v)
}

/// The value the adapter in `dir` holds (every tensor written by [`write_adapter`] is constant).
fn adapter_value(dir: &Path) -> f32 {
    let files = adapter::read::<f32>(dir).unwrap();
    files.tensors[0].1[[0, 0]]
}

fn write_adapter(dir: &Path, v: f32) {
    let t = one_tensor(v);
    adapter::write(dir, &spec(), false, json!({"v": v}), &[("w", t.view())]).unwrap();
}

#[test]
fn an_adapter_directory_is_replaced_as_a_whole_and_a_torn_one_is_refused() {
    let root = empty_dir("atomic-adapter");
    let dir = root.join("adapter");
    write_adapter(&dir, 1.0);
    write_adapter(&dir, 2.0);
    assert_eq!(adapter_value(&dir), 2.0);
    // Only the directory itself: no temporary or set-aside sibling is left.
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["adapter"]);

    // A kill between the two renames: no `adapter`, the committed one set aside, the new one
    // complete in its temporary directory. The committed one is read; the next write clears both.
    let other = root.join("other");
    write_adapter(&other, 3.0);
    std::fs::rename(&dir, root.join("adapter.old-999999")).unwrap();
    std::fs::rename(&other, root.join("adapter.tmp-999998")).unwrap();
    assert_eq!(adapter_value(&dir), 2.0);
    write_adapter(&dir, 4.0);
    assert_eq!(adapter_value(&dir), 4.0);
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names, ["adapter"], "leftovers were not cleared");

    // One save's config beside another save's weights (same names, same shapes): refused.
    let b = root.join("b");
    write_adapter(&b, 5.0);
    std::fs::copy(b.join(adapter::CONFIG), dir.join(adapter::CONFIG)).unwrap();
    let err = adapter::read::<f32>(&dir).err().unwrap().to_string();
    assert!(
        err.contains("adapter_model.safetensors") && err.contains("mixes two saves"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(root);
}

/// A `trainer_state.json` recording `run` at `step`, as a checkpoint directory.
fn fake_checkpoint(out: &Path, step: usize, run: &Value) {
    let d = out.join(checkpoint::training_dir_name(step));
    std::fs::create_dir_all(&d).unwrap();
    let state = json!({"step": step, "best_metric": null, "best_step": null,
        "evals_without_improvement": 0, "losses": [], "log": [], "run": run});
    std::fs::write(d.join(checkpoint::TRAINER_STATE), state.to_string()).unwrap();
}

#[test]
fn a_new_run_refuses_another_runs_checkpoints_unless_told_and_prunes_only_its_own() {
    let out = temp_dir("foreign");
    ok(&tiny(&out, 3));
    assert_eq!(steps_of(&out), [2, 3]);
    // The same command again: the old run's checkpoints are neither resumed nor pruned away.
    let err = fails(
        &with(tiny(&out, 3), &["--seed", "7"]),
        &[
            "holds the checkpoints of an earlier run (checkpoint-2, checkpoint-3)",
            "--resume",
            "--overwrite-output-dir",
        ],
    );
    assert!(!err.contains("panicked"));
    // Told to: the old checkpoints go, the new run's stay (every one records seed 7).
    ok(&with(
        tiny(&out, 2),
        &["--seed", "7", "--overwrite-output-dir"],
    ));
    assert_eq!(steps_of(&out), [1, 2]);
    for (_, d) in checkpoint::training_checkpoints(&out) {
        assert_eq!(checkpoint::run_of(&d).unwrap()["seed"], 7);
    }
    // Pruning keeps the newest k of this run's checkpoints and never touches another run's.
    let dir = empty_dir("prune");
    let (mine, theirs) = (json!({"seed": 1}), json!({"seed": 2}));
    for s in [1, 2, 3] {
        fake_checkpoint(&dir, s, &mine);
    }
    for s in [10, 20] {
        fake_checkpoint(&dir, s, &theirs);
    }
    checkpoint::prune_training(&dir, 2, &mine);
    assert_eq!(steps_of(&dir), [2, 3, 10, 20]);
    for d in [out, dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn resume_refuses_a_checkpoint_written_with_other_arguments_naming_them() {
    let out = temp_dir("mismatch");
    ok(&tiny(&out, 2));
    fails(
        &with(tiny(&out, 4), &["--resume", "--seed", "7"]),
        &[
            "checkpoint-2 was written by a run with other arguments",
            "seed 42 (this run: 7)",
        ],
    );
    fails(
        &with(tiny(&out, 4), &["--resume", "--r", "4"]),
        &["method", "\"r\":8", "\"r\":4"],
    );
    let mut ner = with(tiny(&out, 4), &["--resume"]);
    ner[2] = "ner".into();
    fails(&ner, &["task \"sentiment\" (this run: \"ner\")"]);
    // The same arguments (a longer budget is not an argument of the run) resume.
    let s = ok(&with(tiny(&out, 4), &["--resume"]));
    assert!(
        s.contains("trained 2 steps (resumed at step 2; 4 steps in all)"),
        "{s}"
    );
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn the_nan_guard_never_writes_a_non_finite_checkpoint_and_names_the_last_good_one() {
    let out = temp_dir("nan");
    // The first step's update already makes every weight non-finite: nothing is saved.
    fails(
        &with(tiny(&out, 4), &["--lr", "1e38"]),
        &[
            "the weights became non-finite at step 1",
            "not finite",
            "no checkpoint was saved",
        ],
    );
    assert!(steps_of(&out).is_empty());
    // Two good steps, then the same learning rate: the run stops, naming the newest checkpoint
    // it kept, and every checkpoint kept is finite.
    ok(&tiny(&out, 2));
    let err = fails(
        &with(tiny(&out, 4), &["--resume", "--lr", "1e38"]),
        &["stopping", "the last good checkpoint is"],
    );
    let newest = checkpoint::training_checkpoints(&out).pop().unwrap().1;
    assert!(
        err.contains(&format!("the last good checkpoint is {}", newest.display())),
        "{err}"
    );
    for (_, d) in checkpoint::training_checkpoints(&out) {
        for f in [checkpoint::TRAINABLE, checkpoint::OPTIMIZER] {
            let t = safetensors::load::<f32>(&d.join(f)).unwrap();
            for (name, v) in t.tensors {
                assert!(
                    v.iter().all(|x| x.is_finite()),
                    "{}/{f}: {name}",
                    d.display()
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(out);
}

#[test]
fn export_peft_and_pretrain_never_overwrite_unasked_and_shipped_names_mean_shipped_models() {
    let out = temp_dir("export");
    // PEFT takes LoRA on GPT-2's whole fused c_attn only.
    ok(&with(tiny(&out, 1), &["--targets", "qkv"]));
    let ad = out.join("adapter");
    let peft_dir = out.join("peft");
    let export = |to: &Path, more: &[&str]| {
        with(
            vec![
                "export-peft".into(),
                "--adapter".into(),
                ad.display().to_string(),
                "--out".into(),
                to.display().to_string(),
            ],
            more,
        )
    };
    ok(&export(&peft_dir, &[]));
    fails(&export(&peft_dir, &[]), &["already exists", "--force"]);
    ok(&export(&peft_dir, &["--force"]));
    // Never onto, into or around the adapter being read, even with --force.
    fails(&export(&ad, &["--force"]), &["is the adapter directory"]);
    fails(
        &export(&ad.join("sub"), &["--force"]),
        &["is inside the adapter directory"],
    );
    fails(
        &export(&out, &["--force"]),
        &["contains the adapter directory"],
    );
    assert!(adapter::read::<f32>(&ad).is_ok(), "the adapter was damaged");
    // A GPT adapter is not exported under a BERT base's names.
    fails(
        &export(&out.join("peft-bert"), &["--base", "bert-tiny"]),
        &[
            "was trained on gpt-tiny (gpt2), not on bert-tiny",
            "model_type",
        ],
    );
    assert!(!out.join("peft-bert").exists());

    // pretrain: an existing --out is refused before any training; no --out is not models/.
    let existing = empty_dir("pretrain-out");
    std::fs::write(existing.join("keep"), "x").unwrap();
    let pre = |o: &str| -> Vec<String> {
        ["pretrain", "--preset", "gpt-tiny", "--out", o]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let t = Instant::now();
    fails(
        &pre(existing.to_str().unwrap()),
        &["already exists", "--force"],
    );
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(std::fs::read_to_string(existing.join("keep")).unwrap(), "x");
    let help = ok(&["pretrain".to_string(), "--help".to_string()]);
    assert!(help.contains("runs/pretrain-<preset>"), "{help}");

    // A models/gpt-tiny in the current directory does not shadow the shipped model.
    let cwd = empty_dir("shadow");
    std::fs::create_dir_all(cwd.join("models/gpt-tiny")).unwrap();
    std::fs::write(cwd.join("models/gpt-tiny/config.json"), "not json").unwrap();
    let o = Command::new(BIN)
        .current_dir(&cwd)
        .args(["eval", "--model", "gpt-tiny", "--max-eval-examples", "4"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // ... while the path means the path.
    let o = Command::new(BIN)
        .current_dir(&cwd)
        .args([
            "eval",
            "--model",
            "./models/gpt-tiny",
            "--max-eval-examples",
            "4",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("models/gpt-tiny/config.json"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        tunelab::lab::finetune::resolve_base("gpt-tiny").unwrap(),
        tunelab::lab::finetune::shipped_models_dir().join("gpt-tiny")
    );
    for d in [out, existing, cwd] {
        let _ = std::fs::remove_dir_all(d);
    }
}

#[test]
fn an_adapter_for_another_task_or_base_is_refused_naming_both() {
    let out = temp_dir("identity");
    ok(&tiny(&out, 1));
    let ad = out.join("adapter").display().to_string();
    let eval = |more: &[&str]| -> Vec<String> {
        with(
            vec![
                "eval".into(),
                "--adapter".into(),
                ad.clone(),
                "--max-eval-examples".into(),
                "4".into(),
            ],
            more,
        )
    };
    ok(&eval(&["--task", "sentiment"]));
    fails(
        &eval(&["--task", "ner"]),
        &[
            "was trained for the task sentiment, not ner",
            "--task sentiment",
        ],
    );
    fails(
        &eval(&["--task", "sentiment", "--model", "bert-tiny"]),
        &["was trained on gpt-tiny (gpt2), not on bert-tiny"],
    );
    let mut cont = with(tiny(&temp_dir("identity-ft"), 1), &["--adapter", &ad]);
    cont[2] = "ner".into();
    fails(&cont, &["was trained for the task sentiment, not ner"]);
    // An adapter from before the record was kept (no task, no base) still loads.
    let cpath = out.join("adapter").join(adapter::CONFIG);
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&cpath).unwrap()).unwrap();
    let meta = config["meta"].as_object_mut().unwrap();
    for k in ["task", "base", "base_name", "base_config"] {
        meta.remove(k);
    }
    std::fs::write(&cpath, config.to_string()).unwrap();
    ok(&eval(&["--task", "sentiment"]));
    let _ = std::fs::remove_dir_all(out);
}

/// Waits until `path` exists (the child reached that point), at most 60 s.
fn wait_for(path: &Path) {
    let t = Instant::now();
    while !path.exists() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(sig: &str, pid: u32) {
    let s = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(s.success());
}

#[test]
fn sigint_and_sigterm_save_a_checkpoint_and_exit_130_and_143() {
    for (sig, code) in [("-INT", 130), ("-TERM", 143)] {
        let out = temp_dir("signal");
        let mut args = tiny(&out, 100_000);
        args[14] = "1000000".into(); // --save-steps: only the signal saves
        let child = Command::new(BIN)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The log is opened when training starts.
        wait_for(&out.join("log.jsonl"));
        std::thread::sleep(Duration::from_millis(300));
        kill(sig, child.id());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "{sig}: {}", stderr(&o));
        let s = stdout(&o);
        assert!(
            s.contains("interrupted at step") && s.contains("--resume"),
            "{s}"
        );
        let steps = steps_of(&out);
        assert_eq!(steps.len(), 1, "{sig}: one checkpoint, at the step reached");
        assert!(
            !out.join("adapter").exists(),
            "an interrupted run writes no adapter"
        );
        let _ = std::fs::remove_dir_all(out);
    }
    // While the data is loading (a FIFO nobody writes: loading blocks), SIGINT exits at once.
    let dir = empty_dir("signal-fifo");
    let fifo = dir.join("data.jsonl");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let child = Command::new(BIN)
        .args(["finetune", "--data", fifo.to_str().unwrap(), "--output-dir"])
        .arg(dir.join("out"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    kill("-INT", child.id());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130));
    assert!(t.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(dir);
}

fn logged_steps(out: &Path) -> Vec<usize> {
    std::fs::read_to_string(out.join("log.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["step"]
                .as_u64()
                .unwrap() as usize
        })
        .collect()
}

#[test]
fn a_resumed_run_logs_no_step_twice_and_counts_its_own_steps() {
    let out = temp_dir("log");
    // Saved at step 15 only, logged at 10 and 20: as if killed after step 20.
    let mut args = tiny(&out, 20);
    args[14] = "15".into();
    ok(&args);
    assert_eq!(logged_steps(&out), [10, 20]);
    assert_eq!(steps_of(&out), [15]);
    args[10] = "30".into();
    let s = ok(&with(args, &["--resume"]));
    assert!(
        s.contains("trained 15 steps (resumed at step 15; 30 steps in all)"),
        "{s}"
    );
    assert_eq!(logged_steps(&out), [10, 20, 30]);
    let _ = std::fs::remove_dir_all(out);
}

/// The tensors of a safetensors file, by name.
fn tensors(path: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut t: Vec<_> = safetensors::load::<f32>(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .tensors
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.iter().copied().collect()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

fn names_shapes(t: &[(String, Vec<usize>, Vec<f32>)]) -> Vec<(String, Vec<usize>)> {
    t.iter().map(|(n, s, _)| (n.clone(), s.clone())).collect()
}

/// Every directory of the run in `out` is loadable and consistent with the reference run `r`:
/// each checkpoint's state is its step's, its tensors are the reference's names and shapes and
/// finite; the adapter (if one is committed) reads whole (config and weights of one save); the
/// log is whole lines of increasing steps.
fn check_consistent(out: &Path, r: &Path, when: &str) {
    let ref_ckpt = checkpoint::training_checkpoints(r).pop().unwrap().1;
    for (step, d) in checkpoint::training_checkpoints(out) {
        let state: Value =
            checkpoint::read_trainer_state(&d).unwrap_or_else(|e| panic!("{when}: {e}"));
        assert_eq!(state["step"], step, "{when}: {}", d.display());
        assert_eq!(state["run"]["seed"], 42);
        for f in [checkpoint::TRAINABLE, checkpoint::OPTIMIZER] {
            let (got, want) = (tensors(&d.join(f)), tensors(&ref_ckpt.join(f)));
            assert_eq!(
                names_shapes(&got),
                names_shapes(&want),
                "{when}: {}/{f}",
                d.display()
            );
            assert!(got.iter().all(|t| t.2.iter().all(|x| x.is_finite())));
        }
    }
    if tunelab::io::committed_dir(&out.join("adapter")).is_some() {
        let files =
            adapter::read::<f32>(&out.join("adapter")).unwrap_or_else(|e| panic!("{when}: {e}"));
        let want = tensors(&r.join("adapter").join(adapter::WEIGHTS));
        let mut got: Vec<_> = files
            .tensors
            .iter()
            .map(|(n, v)| (n.clone(), v.shape().to_vec()))
            .collect();
        got.sort();
        assert_eq!(got, names_shapes(&want), "{when}: adapter");
    }
    if out.join("log.jsonl").exists() {
        let steps = logged_steps(out);
        assert!(
            steps.windows(2).all(|w| w[0] < w[1]),
            "{when}: log steps {steps:?}"
        );
    }
}

/// Runs `args` in a child, killed with SIGKILL after `delay` or at the crash point `crash`;
/// returns whether it was killed (did not exit 0).
fn killed_run(args: &[String], crash: Option<&str>, delay: Option<Duration>) -> bool {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    if let Some(c) = crash {
        cmd.env("TUNELAB_CRASH_AT", c);
    }
    let mut child = cmd.spawn().unwrap();
    if let Some(d) = delay {
        std::thread::sleep(d);
        let _ = Command::new("kill")
            .args(["-9", &child.id().to_string()])
            .status();
    }
    child.wait().unwrap().code() != Some(0)
}

fn sorted_tensors(t: Vec<(String, ndarray::ArrayD<f32>)>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut t: Vec<_> = t
        .into_iter()
        .map(|(n, v)| (n, v.shape().to_vec(), v.iter().copied().collect()))
        .collect();
    t.sort_by(|a, b| a.0.cmp(&b.0));
    t
}

#[test]
fn a_run_killed_at_random_points_and_mid_write_always_leaves_loadable_directories() {
    let started = Instant::now();
    const STEPS: usize = 8;
    let r = temp_dir("kill-ref");
    ok(&tiny(&r, STEPS));

    // SIGKILL from outside at random instants (fixed seed) of a run too long to finish, a
    // checkpoint written every step: after each kill every directory loads, and the next run
    // resumes from a checkpoint at least as new as the last one seen.
    let long = temp_dir("kill-random");
    let resume_long = with(tiny(&long, 100_000), &["--resume"]);
    let mut rng = StdRng::seed_from_u64(16);
    let mut newest = 0;
    let mut kills = 0;
    for i in 0..8 {
        let delay = Duration::from_millis(rng.random_range(200..1800));
        assert!(
            killed_run(&resume_long, None, Some(delay)),
            "random kill {i} came too late"
        );
        kills += 1;
        check_consistent(&long, &r, &format!("random kill {i} after {delay:?}"));
        let now = steps_of(&long).last().copied().unwrap_or(0);
        assert!(
            now >= newest,
            "kill {i}: the newest checkpoint went from {newest} to {now}"
        );
        newest = now;
    }
    assert!(newest > 0, "no random kill left a checkpoint");

    // Killed at the crash points inside the writes (the n-th time the child reaches one: a file
    // half written, a checkpoint's first file written, a directory complete before its renames,
    // between the renames, after them, a pruned checkpoint renamed aside), each run resuming the
    // last: the chain ends with exactly the uninterrupted run's adapter and log.
    let k = temp_dir("kill");
    let resume = with(tiny(&k, STEPS), &["--resume"]);
    for c in [
        "atomic_write:half:2",
        "checkpoint:trainable_written:1",
        "replace_dir:written:2",
        "replace_dir:set_aside:1",
        "replace_dir:renamed:3",
        "checkpoint:pruned_aside:1",
    ] {
        assert!(killed_run(&resume, Some(c), None), "{c} was not reached");
        kills += 1;
        check_consistent(&k, &r, c);
    }
    ok(&resume);
    // The finished run's adapter written again, killed before, between and after its renames:
    // readers get a whole adapter each time.
    for c in [
        "adapter:config_written:1",
        "replace_dir:set_aside:1",
        "replace_dir:renamed:1",
    ] {
        assert!(killed_run(&resume, Some(c), None), "{c} was not reached");
        kills += 1;
        check_consistent(&k, &r, c);
        let got = sorted_tensors(adapter::read::<f32>(&k.join("adapter")).unwrap().tensors);
        assert_eq!(
            got,
            tensors(&r.join("adapter").join(adapter::WEIGHTS)),
            "{c}"
        );
    }
    ok(&resume);
    check_consistent(&k, &r, "end");
    let got = sorted_tensors(adapter::read::<f32>(&k.join("adapter")).unwrap().tensors);
    assert_eq!(
        got,
        tensors(&r.join("adapter").join(adapter::WEIGHTS)),
        "resumed weights differ"
    );
    assert_eq!(logged_steps(&k), logged_steps(&r));
    let leftovers: Vec<PathBuf> = std::fs::read_dir(&k)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("adapter."))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(kills >= 10);
    eprintln!(
        "kill test: {kills} kills in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for d in [r, long, k] {
        let _ = std::fs::remove_dir_all(d);
    }
}
