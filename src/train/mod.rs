//! Training: the Trainer (the one training loop), its arguments, the task binding that fine-tunes
//! on a task, pre-training the base models as a Trainer task, the reward model, preference tuning
//! (DPO and its family), GRPO, and the progress reports.

pub mod args;
pub mod grpo;
pub mod neftune;
pub mod preference;
pub mod pretrain;
pub mod progress;
pub mod replay;
pub mod reward;
pub mod task;
pub mod trainer;

pub use args::TrainingArgs;
pub use progress::Progress;
