//! Training: pre-training the base models, and the Trainer that fine-tunes them.

pub mod args;
pub mod pretrain;
pub mod task;
pub mod trainer;

pub use args::TrainingArgs;
