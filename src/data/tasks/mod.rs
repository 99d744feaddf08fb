//! The six use cases of the seed notes as datasets drawn from the [`World`]: sentiment
//! classification, NER, extractive QA, summarization, dialogue and code-like generation.
//!
//! Every split is deterministic in `(world, task, seed)`. Training examples speak only about
//! [`Partition::Seen`] entities (the ones the pre-training corpus knows); validation and test speak
//! only about [`Partition::HeldOut`] ones, so a model must read its input rather than recall facts.
//! [`leaks`] checks that no validation or test text made it into a corpus.
//!
//! Generation examples ([`Example::Generation`]) are meant to be read as `prompt + " " + response`:
//! the prompt ends with a label such as `Summary:`, `Assistant:` or `Code:`, and the response does
//! not start with a space.
//!
//! This file draws the splits ([`build`]); each task's generator has its own file, and the shapes
//! they return are in `example.rs`. The generators read the world and the shared sentences of
//! `data/text.rs`, never the corpus, which is written from them (`data/corpus.rs`).

use std::collections::HashSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::data::world::{Partition, Picker, World};

pub(crate) mod codegen;
pub(crate) mod dialogue;
mod example;
mod leaks;
pub(crate) mod ner;
pub(crate) mod qa;
pub(crate) mod sentiment;
pub(crate) mod summarization;
#[cfg(test)]
mod tests;

pub use codegen::{execute, same_answer};
pub use example::{Example, Task, TaskShape, NER_TAGS, SENTIMENT_LABELS};
pub use leaks::leaks;
pub use ner::detokenize;

#[derive(Clone, Debug, Default)]
pub struct Splits {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
}

/// How many examples [`build_with`] draws for each split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub train: usize,
    pub validation: usize,
    pub test: usize,
}

impl Default for Sizes {
    /// 2000 / 300 / 300 for every task: enough to fine-tune a small model in minutes, and a test
    /// set large enough that one example moves accuracy by a third of a point.
    fn default() -> Self {
        Sizes {
            train: 2000,
            validation: 300,
            test: 300,
        }
    }
}

/// The seed of the built-in tasks' splits: every run trains and is scored on these examples,
/// whatever its own seed.
pub const DATA_SEED: u64 = 42;

/// The splits of `task` with the default [`Sizes`].
pub fn build(task: Task, world: &World, seed: u64) -> Splits {
    build_with(task, world, seed, Sizes::default())
}

/// The splits of `task`: test first, then validation, both from held-out entities and disjoint
/// from each other; then train from seen entities. Classification labels are balanced.
pub fn build_with(task: Task, world: &World, seed: u64, sizes: Sizes) -> Splits {
    let held = Picker::new(world, Partition::HeldOut);
    let seen = Picker::new(world, Partition::Seen);
    let salt = task as u64 + 1;
    let rng = |split: u64| StdRng::seed_from_u64(seed ^ (salt << 32) ^ (split << 48));
    let mut taken = HashSet::new();
    Splits {
        test: split(task, &held, &mut rng(1), sizes.test, &mut taken),
        validation: split(task, &held, &mut rng(2), sizes.validation, &mut taken),
        train: split(task, &seen, &mut rng(3), sizes.train, &mut taken),
    }
}

/// `n` examples whose inputs are not in `taken` when that can be had in a few tries (small
/// held-out pools can run out of distinct texts; then a repeat is better than a short split).
fn split(
    task: Task,
    pick: &Picker,
    rng: &mut StdRng,
    n: usize,
    taken: &mut HashSet<String>,
) -> Vec<Example> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let positive = i % 2 == 1;
        let mut ex = example(task, pick, rng, positive);
        for _ in 0..50 {
            if !taken.contains(&ex.input_text()) {
                break;
            }
            ex = example(task, pick, rng, positive);
        }
        taken.insert(ex.input_text());
        out.push(ex);
    }
    out.shuffle(rng);
    out
}

/// One example of `task`; `positive` chooses the sentiment class so that splits are balanced.
fn example(task: Task, pick: &Picker, rng: &mut StdRng, positive: bool) -> Example {
    match task {
        Task::Sentiment => Example::Classification {
            text: sentiment::review(pick, rng, positive),
            label: positive as usize,
        },
        Task::Ner => ner::ner(pick, rng),
        Task::Qa => qa::qa(pick, rng),
        Task::Summarization => {
            let (story, summary) = summarization::story(pick, rng);
            Example::Generation {
                prompt: format!("Story: {story}\nSummary:"),
                response: summary,
            }
        }
        Task::Dialogue => {
            let turns = dialogue::dialogue(pick, rng);
            let mut prompt = String::new();
            let (last, context) = turns.split_last().unzip();
            for (user, text) in context.unwrap_or_default() {
                let who = if *user { "User" } else { "Assistant" };
                prompt.push_str(&format!("{who}: {text}\n"));
            }
            prompt.push_str("Assistant:");
            Example::Generation {
                prompt,
                response: last.map(|t| t.1.clone()).unwrap_or_default(),
            }
        }
        Task::Codegen => {
            let (request, code) = codegen::code_request(pick, rng);
            Example::Generation {
                prompt: format!("Request: {request}\nCode:"),
                response: code,
            }
        }
    }
}
