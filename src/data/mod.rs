//! Data: a small synthetic world, the task datasets drawn from it, loaders for user files, and the
//! path from text to batches: text → token ids ([`tokenizer`]) → per-task targets ([`encode`]) →
//! padded batches with masks and labels ([`batch`]); for pre-training, text → token windows →
//! causal or masked LM batches ([`lm`]).
//!
//! Why a synthetic world: the lab pre-trains its own ~1M parameter models on CPU, so it needs a
//! language small enough to learn in minutes, and tasks whose answers it can check exactly.
//! [`world::World`] is that language: people, cities, organisations, foods and events with facts
//! linking them, written out as a pre-training corpus ([`world::World::corpus`], in [`corpus`]).
//! [`tasks::build`] turns the same world into the six use cases of the seed notes (sentiment, NER,
//! extractive QA, summarization, dialogue, code-like generation), with a hold-out that makes
//! memorisation useless: validation and test speak about entities that neither the corpus nor the
//! training split ever mention. [`loaders`] reads the same example shapes from JSONL or CSV files a
//! user brings; [`preference`] draws preference pairs (a chosen and a rejected response) from the
//! same world with the same hold-out, for the reward model and preference tuning.
//!
//! Data flows one way: [`world`] (entities) ← `text` (sentences both sides share) ← [`tasks`] (one
//! generator per task) ← [`corpus`] (pre-training text, some of it written by the task generators).
//! No file here imports a file that imports it back.

pub mod batch;
pub mod corpus;
pub mod encode;
pub mod lm;
pub mod loaders;
pub mod packing;
pub mod preference;
pub mod retrieval;
pub mod tasks;
pub(crate) mod text;
pub mod tokenizer;
pub mod world;
