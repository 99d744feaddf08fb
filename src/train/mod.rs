//! Training: the Trainer (the one training loop), its arguments, the task binding that fine-tunes
//! on a task, pre-training the base models as a Trainer task, and the progress reports.

pub mod args;
pub mod grpo;
pub mod pretrain;
pub mod progress;
pub mod task;
pub mod trainer;

pub use args::TrainingArgs;
pub use progress::Progress;
