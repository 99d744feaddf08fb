//! A small mutation fuzzer on stable Rust, over the readers of every file a user hands tunelab:
//! the safetensors reader, config.json, adapter configs of both dialects, tokenizer.json and the
//! JSONL and CSV task loaders, and the preference and KTO readers.
//!
//! Each target starts from valid seed inputs and mutates them with a seeded [`StdRng`]: bit
//! flips, byte inserts and deletes, truncation, splicing two seeds, duplicated chunks, a JSON
//! number replaced by an extreme value (0, -1, 1e308, 2^63, u64::MAX, "NaN", ...) and, for
//! safetensors, a huge header length. A case passes when the call returns (Ok or Err) without a
//! panic. Every target runs in a child process of the suite binary whose address space is
//! capped (8 GiB, `ulimit -v`), so an absurd allocation aborts the child and fails the test
//! instead of going unnoticed; the input being run is kept in `<target>.current` under
//! `CARGO_TARGET_TMPDIR/fuzz` so an abort can be reproduced, and a panicking input is saved
//! there as `<target>-case<N>.bin`.
//!
//! 20,000 cases per target by default; `TUNELAB_FUZZ_CASES=1000000` for a long run.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use std::os::unix::fs::FileExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tunelab::data::loaders;
use tunelab::data::tasks::{Task, TaskShape};
use tunelab::data::tokenizer::{Preset, Tokenizer};
use tunelab::io::adapter::{self, export_peft, CONFIG, WEIGHTS};
use tunelab::io::{checkpoint, hf, safetensors};
use tunelab::nn::{Config, Transformer};
use tunelab::peft::lora::LoraConfig;
use tunelab::peft::registry;
use tunelab::peft::store::{load_adapter, load_adapter_files, save_adapter};
use tunelab::peft::{apply, MethodSpec};
use tunelab::ParamStore;

const CHILD: &str = "TUNELAB_FUZZ_CHILD";

fn cases() -> usize {
    std::env::var("TUNELAB_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000)
}

fn fuzz_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fuzz");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// In the parent: runs `test` (this module's test of that name) alone in a child process with
/// a capped address space and fails if the child fails or dies. In the child: `false`, the
/// caller fuzzes.
fn in_child(test: &str) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return false;
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -v 8388608 && exec \"$0\" \"$@\"")
        .arg(exe)
        .args([
            &format!("fuzz::{test}"),
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The child's summary may follow its "test ... " on the same line.
    for line in stdout.lines().filter(|l| l.contains(" cases in ")) {
        println!("{}", &line[line.find("fuzz ").unwrap_or(0)..]);
    }
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "fuzz target {test} failed or died ({}); the input it was running is in {}\n{stdout}\n{}",
        out.status,
        fuzz_dir().join(format!("{test}.current")).display(),
        stderr
            .chars()
            .rev()
            .take(4000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
    true
}

/// Values that break parsers and size arithmetic.
const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "1",
    "2",
    "1e308",
    "-1e308",
    "1e-320",
    "0.5",
    "1e9",
    "1e12",
    "65537",
    "4294967296",
    "4611686018427387904",
    "9223372036854775807",
    "9223372036854775808",
    "18446744073709551615",
    "18446744073709551616",
    "\"NaN\"",
    "NaN",
    "null",
    "true",
    "[]",
    "{}",
    "\"\"",
];

/// One mutated input from `seeds`: 1 to 4 mutations of a random seed.
fn mutate(rng: &mut StdRng, seeds: &[Vec<u8>], safetensors: bool) -> (usize, Vec<u8>) {
    let which = rng.random_range(0..seeds.len());
    let mut b = seeds[which].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = b.len();
        match rng.random_range(0..9) {
            0 if len > 0 => {
                let i = rng.random_range(0..len);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=len);
                b.insert(i, rng.random());
            }
            2 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=16.min(len - i));
                b.drain(i..i + n);
            }
            3 => b.truncate(rng.random_range(0..=len)),
            4 => {
                let other = &seeds[rng.random_range(0..seeds.len())];
                let i = rng.random_range(0..=len);
                let j = rng.random_range(0..=other.len());
                b.truncate(i);
                b.extend_from_slice(&other[j..]);
            }
            5 if len > 0 => {
                let i = rng.random_range(0..len);
                let n = rng.random_range(1..=64.min(len - i));
                let chunk = b[i..i + n].to_vec();
                let at = rng.random_range(0..=len);
                b.splice(at..at, chunk);
            }
            6 if safetensors && len >= 8 => {
                let n: u64 = match rng.random_range(0..4) {
                    0 => u64::MAX,
                    1 => 1 << rng.random_range(0..64),
                    2 => rng.random(),
                    _ => (len as u64).saturating_sub(rng.random_range(0..16)),
                };
                b[..8].copy_from_slice(&n.to_le_bytes());
            }
            _ => replace_number(rng, &mut b),
        }
    }
    (which, b)
}

/// Replaces a run of number characters (or, failing that, any position) with an extreme value.
fn replace_number(rng: &mut StdRng, b: &mut Vec<u8>) {
    let is_num = |c: u8| c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'e' | b'E' | b'+');
    let starts: Vec<usize> = (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !is_num(b[i - 1])))
        .collect();
    let value = EXTREMES[rng.random_range(0..EXTREMES.len())].as_bytes();
    if starts.is_empty() {
        let i = rng.random_range(0..=b.len());
        b.splice(i..i, value.iter().copied());
        return;
    }
    let s = starts[rng.random_range(0..starts.len())];
    let mut e = s;
    while e < b.len() && is_num(b[e]) {
        e += 1;
    }
    b.splice(s..e, value.iter().copied());
}

/// Runs `cases()` mutated inputs of `seeds` through `run`, which gets the seed's index and the
/// bytes. Panics (after saving the input) if any call panicked.
fn fuzz(
    name: &str,
    seed: u64,
    seeds: &[Vec<u8>],
    safetensors: bool,
    mut run: impl FnMut(usize, &[u8]) -> bool,
) {
    let n = cases();
    let dir = fuzz_dir();
    // Rewritten in place before every case (one write and one truncation, no reopening).
    let current = std::fs::File::create(dir.join(format!("{name}.current"))).unwrap();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut ok, mut panics) = (0usize, Vec::new());
    let mut slowest = Duration::ZERO;
    let start = Instant::now();
    for case in 0..n {
        let (which, input) = mutate(&mut rng, seeds, safetensors);
        current.write_all_at(&input, 0).unwrap();
        current.set_len(input.len() as u64).unwrap();
        let t = Instant::now();
        match catch_unwind(AssertUnwindSafe(|| run(which, &input))) {
            Ok(true) => ok += 1,
            Ok(false) => {}
            Err(_) => {
                let path = dir.join(format!("{name}-case{case}.bin"));
                std::fs::write(&path, &input).unwrap();
                panics.push(path);
            }
        }
        slowest = slowest.max(t.elapsed());
    }
    println!(
        "fuzz {name}: {n} cases in {:.1} s, {ok} Ok, {} Err, {} panics, slowest case {:.1} ms",
        start.elapsed().as_secs_f64(),
        n - ok - panics.len(),
        panics.len(),
        slowest.as_secs_f64() * 1e3
    );
    assert!(
        panics.is_empty(),
        "{name}: inputs that panicked: {panics:?}"
    );
}

/// A tiny GPT (V 29, C 8, NH 2, L 2, T ≤ 16) and its store.
fn tiny_gpt() -> (Transformer, ParamStore<f32>) {
    let mut store = ParamStore::new();
    let model = Transformer::new(Config::gpt(29, 8, 2, 2, 16), &mut store, 5).unwrap();
    (model, store)
}

fn scratch(name: &str) -> PathBuf {
    let d = fuzz_dir().join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn safetensors_reader() {
    if in_child("safetensors_reader") {
        return;
    }
    let dir = scratch("safetensors-seeds");
    let (_, store) = tiny_gpt();
    let views: Vec<_> = store
        .iter()
        .take(3)
        .map(|(_, p)| (p.name.as_str(), p.value.view()))
        .collect();
    let path = dir.join("a.safetensors");
    safetensors::save(&path, &views, &[("format", "pt")]).unwrap();
    // A hand-made file with F16, BF16 and I64 tensors.
    let header = json!({
        "h": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
        "b": {"dtype": "BF16", "shape": [4], "data_offsets": [8, 16]},
        "i": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]},
        "e": {"dtype": "F32", "shape": [0, 3], "data_offsets": [24, 24]},
    });
    let h = serde_json::to_vec(&header).unwrap();
    let mut other = (h.len() as u64).to_le_bytes().to_vec();
    other.extend(h);
    other.extend((0..24u8).collect::<Vec<_>>());
    let seeds = vec![std::fs::read(&path).unwrap(), other];
    fuzz("safetensors_reader", 1, &seeds, true, |_, b| {
        safetensors::parse::<f32>(b, "fuzz.safetensors").is_ok()
    });
}

#[test]
fn config_json() {
    if in_child("config_json") {
        return;
    }
    let mut seeds = Vec::new();
    let mut weights = Vec::new();
    for (i, config) in [Config::gpt(29, 8, 2, 2, 16), Config::bert(31, 8, 2, 1, 12)]
        .into_iter()
        .enumerate()
    {
        let dir = scratch(&format!("config-seed{i}"));
        let mut store = ParamStore::<f32>::new();
        Transformer::new(config.clone(), &mut store, 0).unwrap();
        checkpoint::save(&dir, &config, &store).unwrap();
        seeds.push(std::fs::read(dir.join("config.json")).unwrap());
        weights.push(std::fs::read(dir.join("model.safetensors")).unwrap());
    }
    let dir = PathBuf::from("fuzz");
    fuzz("config_json", 2, &seeds, false, |which, b| {
        hf::load_bytes::<f32>(&dir, b, &weights[which]).is_ok()
    });
}

/// Fuzzes adapter configs: `seeds` are adapter directories (config and weights); each case
/// parses the mutated config with its seed's weights, in memory, as `load_adapter` does after
/// reading the files, and loads the result onto a fresh tiny GPT.
fn fuzz_adapters(name: &str, seed: u64, dirs: &[PathBuf]) {
    let (model, base) = tiny_gpt();
    let seeds: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| std::fs::read(d.join(CONFIG)).unwrap())
        .collect();
    let weights: Vec<Vec<u8>> = dirs
        .iter()
        .map(|d| std::fs::read(d.join(WEIGHTS)).unwrap())
        .collect();
    // The seeds load from their files and from their bytes alike.
    for (i, dir) in dirs.iter().enumerate() {
        let mut store = base.clone();
        load_adapter(dir, &model, &mut store, 0).unwrap();
        let files = adapter::parse::<f32>(dir, &seeds[i], || Ok(weights[i].clone())).unwrap();
        let mut store = base.clone();
        load_adapter_files(dir, files, &model, &mut store, 0).unwrap();
    }
    fuzz(name, seed, &seeds, false, |which, b| {
        let dir = &dirs[which];
        let Ok(files) = adapter::parse::<f32>(dir, b, || Ok(weights[which].clone())) else {
            return false;
        };
        let mut store = base.clone();
        load_adapter_files(dir, files, &model, &mut store, 0).is_ok()
    });
}

#[test]
fn adapter_config_tunelab() {
    if in_child("adapter_config_tunelab") {
        return;
    }
    let (model, base) = tiny_gpt();
    let mut dirs = Vec::new();
    for (_, label, spec) in registry::test_examples() {
        let mut store = base.clone();
        let Ok(mut method) = apply(&spec, &model, &mut store, 1) else {
            continue;
        };
        let dir = scratch(&format!("tunelab-seed-{label}"));
        save_adapter(
            &dir,
            &spec,
            method.as_mut(),
            &mut store,
            &[],
            json!({"task": "sentiment"}),
        )
        .unwrap();
        dirs.push(dir);
    }
    assert!(dirs.len() >= 9, "a seed adapter per method");
    fuzz_adapters("adapter_config_tunelab", 3, &dirs);
}

#[test]
fn adapter_config_peft() {
    if in_child("adapter_config_peft") {
        return;
    }
    let (model, base) = tiny_gpt();
    let mut dirs = Vec::new();
    for (i, targets) in [vec!["qkv"], vec!["qkv", "o", "fc", "proj"]]
        .iter()
        .enumerate()
    {
        let spec = MethodSpec::Lora(LoraConfig {
            r: 2,
            alpha: 4.0,
            targets: targets.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        });
        let mut store = base.clone();
        let mut method = apply(&spec, &model, &mut store, 1).unwrap();
        let own = scratch(&format!("peft-own{i}"));
        save_adapter(&own, &spec, method.as_mut(), &mut store, &[], json!({})).unwrap();
        let dir = scratch(&format!("peft-seed{i}"));
        export_peft(&own, &model.config, "tiny", &dir).unwrap();
        dirs.push(dir);
    }
    fuzz_adapters("adapter_config_peft", 4, &dirs);
}

#[test]
fn tokenizer_json() {
    if in_child("tokenizer_json") {
        return;
    }
    let corpus: Vec<String> = [
        "the cat sat on the mat",
        "a dog, a log; naïve café",
        "QA: who?",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let dir = scratch("tokenizer-seeds");
    let mut seeds = Vec::new();
    for (i, preset) in [Preset::Gpt, Preset::Bert].into_iter().enumerate() {
        let tok = Tokenizer::train_bpe(&corpus, 280, preset).unwrap();
        let path = dir.join(format!("t{i}.json"));
        tok.save(&path).unwrap();
        seeds.push(std::fs::read(&path).unwrap());
    }
    let config = Config::gpt(280, 8, 2, 1, 16);
    let path = dir.join("tokenizer.json");
    fuzz("tokenizer_json", 5, &seeds, false, |_, b| {
        let Ok(tok) = Tokenizer::from_bytes(b, "fuzz/tokenizer.json") else {
            return false;
        };
        let fits = hf::check_tokenizer(&tok, &config, &path).is_ok();
        let ids = tok.encode("the naïve cat", true).unwrap_or_default();
        let _ = tok.decode(&ids, true);
        fits
    });
}

/// Seeds for the task loaders: one file per task shape, in `format` ("jsonl" or "csv").
fn loader_seeds(format: &str) -> Vec<(TaskShape<'static>, Vec<u8>)> {
    let shape = |name| Task::from_name(name).unwrap().shape();
    let files: [(&str, &str, &str); 4] = [
        (
            "sentiment",
            "{\"text\": \"The pho was not bad.\", \"label\": \"positive\"}\n{\"text\": \"Cold.\", \"label\": 0}\n",
            "text,label\n\"The pho, hot\",positive\nCold.,0\n",
        ),
        (
            "ner",
            "{\"tokens\": [\"Anna\", \"Lee\", \"ran\"], \"tags\": [\"B-PER\", \"I-PER\", \"O\"]}\n",
            "tokens,tags\nAnna Lee ran,B-PER I-PER O\n",
        ),
        (
            "qa",
            "{\"context\": \"Pho is from Hanoi.\", \"question\": \"Where?\", \"answer\": \"Hanoi\", \"answer_start\": 12}\n",
            "context,question,answer,answer_start\n\"Pho is from Hanoi.\",Where?,Hanoi,12\n",
        ),
        (
            "dialogue",
            "{\"prompt\": \"User: hi\\nAssistant:\", \"response\": \"Hello!\"}\n",
            "prompt,response\n\"User: hi\",Hello!\n",
        ),
    ];
    files
        .iter()
        .map(|(task, jsonl, csv)| {
            let text = if format == "jsonl" { jsonl } else { csv };
            (shape(task), text.as_bytes().to_vec())
        })
        .collect()
}

fn fuzz_loader(name: &str, seed: u64, format: &str) {
    let seeds = loader_seeds(format);
    for (shape, bytes) in &seeds {
        let path = scratch(&format!("{name}-check")).join(format!("seed.{format}"));
        std::fs::write(&path, bytes).unwrap();
        loaders::load(&path, *shape).unwrap();
    }
    let shapes: Vec<TaskShape<'static>> = seeds.iter().map(|s| s.0).collect();
    let bytes: Vec<Vec<u8>> = seeds.into_iter().map(|s| s.1).collect();
    let path = PathBuf::from(format!("fuzz/data.{format}"));
    fuzz(name, seed, &bytes, false, |which, b| {
        loaders::parse_lines(b, &path, shapes[which]).is_ok()
    });
}

#[test]
fn jsonl_loader() {
    if in_child("jsonl_loader") {
        return;
    }
    fuzz_loader("jsonl_loader", 6, "jsonl");
}

#[test]
fn csv_loader() {
    if in_child("csv_loader") {
        return;
    }
    fuzz_loader("csv_loader", 7, "csv");
}

/// Seeds for the preference and KTO readers: TRL's string and conversational forms, in JSONL and
/// CSV, each with whether it is a KTO file.
const PREFERENCE_SEEDS: [(bool, &str, &str); 6] = [
    (
        false,
        "jsonl",
        "{\"prompt\": \"Q: where?\\nAnswer:\", \"chosen\": \"In Lima.\", \"rejected\": \"I don't know.\"}\n",
    ),
    (
        false,
        "jsonl",
        "{\"chosen\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Hello!\"}], \"rejected\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Go.\"}]}\n",
    ),
    (
        false,
        "jsonl",
        "{\"prompt\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"2+2?\"}], \"chosen\": [{\"role\": \"assistant\", \"content\": \"4\"}], \"rejected\": [{\"role\": \"assistant\", \"content\": \"5\"}]}\n",
    ),
    (
        false,
        "csv",
        "prompt,chosen,rejected\n\"Q: where?\nAnswer:\",\"In Lima, Peru.\",No.\n",
    ),
    (
        true,
        "jsonl",
        "{\"prompt\": \"Q?\", \"completion\": \"Yes.\", \"label\": true}\n{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}], \"completion\": [{\"role\": \"assistant\", \"content\": \"Go.\"}], \"label\": false}\n",
    ),
    (true, "csv", "prompt,completion,label\nQ?,Yes.,true\nQ?,No.,false\n"),
];

#[test]
fn preference_loader() {
    if in_child("preference_loader") {
        return;
    }
    let dir = scratch("preference_loader-check");
    for (i, (kto, ext, text)) in PREFERENCE_SEEDS.iter().enumerate() {
        let path = dir.join(format!("seed{i}.{ext}"));
        std::fs::write(&path, text).unwrap();
        if *kto {
            loaders::load_kto(&path).unwrap();
        } else {
            loaders::load_preference(&path).unwrap();
        }
    }
    let bytes: Vec<Vec<u8>> = PREFERENCE_SEEDS
        .iter()
        .map(|s| s.2.as_bytes().to_vec())
        .collect();
    let paths: Vec<PathBuf> = PREFERENCE_SEEDS
        .iter()
        .map(|s| PathBuf::from(format!("fuzz/data.{}", s.1)))
        .collect();
    fuzz("preference_loader", 8, &bytes, false, |which, b| {
        if PREFERENCE_SEEDS[which].0 {
            loaders::parse_kto(b, &paths[which]).is_ok()
        } else {
            loaders::parse_preference(b, &paths[which]).is_ok()
        }
    });
}

/// The mutator itself: deterministic for a seed, and it really changes its input.
#[test]
fn the_mutator_is_deterministic_and_changes_its_input() {
    let seeds = vec![br#"{"r": 8, "alpha": 16.0}"#.to_vec()];
    let run = |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..100)
            .map(|_| mutate(&mut rng, &seeds, false).1)
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(9), run(9));
    assert_eq!(a, b);
    assert!(a.iter().filter(|m| **m != seeds[0]).count() > 90);
    let parsed: Vec<Value> = a
        .iter()
        .filter_map(|m| serde_json::from_slice(m).ok())
        .collect();
    assert!(
        parsed
            .iter()
            .any(|v| v["r"] == json!(9223372036854775808u64) || v["r"] == json!(1e308)),
        "number replacement reaches the extremes"
    );
}
