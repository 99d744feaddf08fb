//! The built-in data: examples per split for each task, and the pre-training corpus.
//!
//! `cargo run --release --example datasets`

use tunelab::data::lm::{CORPUS_SEED, WORLD_SEED};
use tunelab::data::tasks::{build, Task};
use tunelab::data::world::World;
use tunelab::train::pretrain::{Base, PretrainArgs};

fn main() {
    let world = World::generate(WORLD_SEED);
    println!(
        "{:<14} {:>6} {:>11} {:>6}",
        "task", "train", "validation", "test"
    );
    for task in Task::all() {
        let s = build(task, &world, 42);
        println!(
            "{:<14} {:>6} {:>11} {:>6}",
            task.name(),
            s.train.len(),
            s.validation.len(),
            s.test.len()
        );
    }
    let docs = PretrainArgs::new(Base::GptTiny).docs;
    let corpus = world.corpus(docs, CORPUS_SEED);
    let words: usize = corpus.iter().map(|d| d.split_whitespace().count()).sum();
    println!("pre-training corpus: {docs} documents, {words} words");
}
