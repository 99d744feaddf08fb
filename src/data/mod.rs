//! Data: text → token ids ([`tokenizer`]) → padded batches with masks and labels ([`batch`]).

pub mod batch;
pub mod tokenizer;
