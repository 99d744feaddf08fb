//! Training: pre-training the base models (and, next, the Trainer that fine-tunes them).

pub mod pretrain;
